/* gs:// backend: the Google Cloud Storage JSON API over the per-core HTTP client pool
 * (rx/httpc.h), OAuth2 service-account tokens (sto/gcsauth.h), JSON documents (sto/gcsjson.h).
 * One store per base URI per core; everything on the loop thread.
 *
 * Operations: GET (alt=media, ranges; TTFB = first response byte), PUT (uploadType=media, or at
 * or above opts.multipart_threshold a resumable upload: POST uploadType=resumable, then the body
 * PUT to the session URL in chunks of opts.part_size rounded down to a multiple of 256 KiB, each
 * with Content-Range; a chunk failing with a retryable error is followed by a status query and
 * the upload resumes where the service says, at most CHUNK_RETRIES times; a failed upload is
 * cancelled), HEAD (object metadata: the size), LIST (paged by pageToken, delimiter '/' unless
 * recursive; prefixes are the directories), DEL. MKDIR and RMDIR are STO_ENOTSUP; there is no
 * batch delete. With create_base, open checks the bucket with a one-key listing on a private
 * loop and creates it when missing (POST /storage/v1/b?project=...).
 *
 * Tokens (see sto/gcsauth.h for the policy): the store keeps a copy of the shared token and a
 * reference-counted "Bearer ..." string that each request in flight holds, so a refresh never
 * changes the headers of a request already handed to the HTTP client.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "rx/err.h"
#include "rx/httpc.h"
#include "rx/log.h"
#include "rx/stream.h"
#include "rx/time.h"
#include "sto/backend.h"
#include "sto/err.h"
#include "sto/gcsauth.h"
#include "sto/gcsjson.h"
#include "sto_internal.h"

#define EBUF_MAX (64u * 1024) /* error bodies kept (longer ones are cut) */
#define META_MAX (64u * 1024) /* object metadata, token and bucket documents */
#define CHUNK_RETRIES 2
#define GRANULE (256u * 1024) /* resumable chunks are multiples of this */
#define TARGET_MAX 12288
#define MAX_HDR 10
#define LIST_PAGE "1000"

enum kind {
    K_GET,
    K_PUT,
    K_HEAD,
    K_LIST,
    K_DEL,
    K_RSM_INIT,
    K_RSM_CHUNK,
    K_RSM_QUERY,
    K_RSM_CANCEL,
    K_BUCKET_PROBE,
    K_BUCKET_CREATE,
};

typedef struct gcs_store gcs_store_t;
typedef struct gcs_op gcs_op_t;

/* "Bearer <token>", shared by the requests that carry it (loop thread only). */
typedef struct authstr {
    int refs;
    size_t len;
    char s[];
} authstr_t;

typedef struct rsm {
    char *url; /* session target: path and query of the Location */
    uint64_t total;
    uint64_t chunk; /* bytes per chunk (multiple of GRANULE) */
    uint64_t off;   /* first byte of the chunk in flight (= bytes the service has) */
    uint64_t len;   /* bytes of the chunk in flight */
    int tries;
    /* the failure being reported while the session is cancelled */
    int error, retryable, http_status;
    char code[48];
    char detail[256];
} rsm_t;

typedef struct tokfetch tokfetch_t;

struct gcs_op {
    gcs_store_t *ss;
    sto_req_t *r; /* NULL for internal requests (bucket probe) */
    enum kind kind;
    rx_httpc_req_t h;
    rx_http1_header_t hdr[MAX_HDR];
    size_t nhdr;
    const char *method;
    const struct iovec *bodyv;
    int nbody;
    int64_t body_len;
    authstr_t *auth;
    char target[TARGET_MAX];
    char range[80];
    char crange[96];
    char xlen[32];
    /* response */
    char *body;
    size_t blen, bcap, bmax;
    int body_over; /* a 2xx document was larger than bmax */
    int collect;   /* keep a 2xx body (JSON documents) */
    char *location;
    char rrange[64]; /* Range of a 308 */
    int has_rrange;
    /* LIST */
    char token[STO_GCSJSON_TOKEN_MAX + 1];
    sto__page_t page; /* LIST: the page being parsed */
    uint64_t listed;
    /* resumable PUT */
    struct iovec *piov;
    int npiov;
    rsm_t *rsm;
    gcs_op_t *next_free;
    gcs_op_t *next_wait; /* waiting for a token */
};

struct gcs_store {
    sto_store_t *s;
    sto_gcs_endpoint_t ep;
    sto_gcs_creds_t cr;
    char host[300];   /* Host header */
    rx_httpc_t *http; /* shared per loop and endpoint (see make_http) */
    char bucket[256];
    char ebucket[800];
    char base[STO_PATH_MAX + 2]; /* object name prefix of the store: "" or "dir/sub/" */
    size_t baselen;
    gcs_op_t *free_ops;
    /* tokens */
    sto_gcs_tokcache_t *tc;
    sto_gcs_tok_t tok;    /* copy of the cached token */
    uint64_t auth_gen;    /* generation behind auth */
    authstr_t *auth;      /* current "Bearer ..." */
    tokfetch_t *tf;       /* asynchronous fetch in flight */
    rx_httpc_t *tok_http; /* to the token endpoint, created on the first refresh */
    rx_tls_ctx_t *tok_tls;
    gcs_op_t *wait_head, *wait_tail;
    /* open-time bucket probe */
    int probe_done;
    int probe_status, probe_http, probe_error;
    char probe_code[48];
    char probe_detail[256];
};

static void op_http_done(rx_httpc_req_t *h);
static int op_send(gcs_op_t *op);

/* ---- small helpers ---- */

static authstr_t *auth_new(const char *token)
{
    size_t n = strlen(token) + 7;
    authstr_t *a = malloc(sizeof(*a) + n + 1);
    if (!a)
        return NULL;
    a->refs = 1;
    a->len = n;
    snprintf(a->s, n + 1, "Bearer %s", token);
    return a;
}

static void auth_unref(authstr_t *a)
{
    if (a && --a->refs == 0)
        free(a);
}

static int ieq(const char *a, size_t al, const char *b)
{
    return al == strlen(b) && strncasecmp(a, b, al) == 0;
}

/* Appends the percent-encoded s at t[*pos]. */
static int put_enc(char *t, size_t *pos, const char *s)
{
    int n = sto_gcs_encode(s, t + *pos, TARGET_MAX - *pos);
    if (n < 0)
        return STO_EURI;
    *pos += (size_t)n;
    return 0;
}

static int put_raw(char *t, size_t *pos, const char *s)
{
    size_t n = strlen(s);
    if (*pos + n + 1 > TARGET_MAX)
        return STO_EURI;
    memcpy(t + *pos, s, n + 1);
    *pos += n;
    return 0;
}

/* Appends raw, then enc percent-encoded. */
static int put_kv(char *t, size_t *pos, const char *raw, const char *enc)
{
    int rc = put_raw(t, pos, raw);
    return rc ? rc : put_enc(t, pos, enc);
}

/* ---- ops ---- */

static gcs_op_t *op_get(gcs_store_t *ss, sto_req_t *r, enum kind k)
{
    gcs_op_t *op = ss->free_ops;
    if (op) {
        ss->free_ops = op->next_free;
    } else {
        op = calloc(1, sizeof(*op));
        if (!op)
            return NULL;
    }
    char *body = op->body;
    size_t bcap = op->bcap;
    op->ss = ss;
    op->r = r;
    op->kind = k;
    op->nhdr = 0;
    op->method = NULL;
    op->bodyv = NULL;
    op->nbody = 0;
    op->body_len = -1;
    op->auth = NULL;
    op->target[0] = '\0';
    op->body = body;
    op->bcap = bcap;
    op->blen = 0;
    op->bmax = EBUF_MAX;
    op->body_over = 0;
    op->collect = 0;
    op->location = NULL;
    op->has_rrange = 0;
    op->token[0] = '\0';
    memset(&op->page, 0, sizeof(op->page));
    op->listed = 0;
    op->piov = NULL;
    op->npiov = 0;
    op->rsm = NULL;
    op->next_free = op->next_wait = NULL;
    return op;
}

static void op_put_back(gcs_op_t *op)
{
    gcs_store_t *ss = op->ss;
    auth_unref(op->auth);
    op->auth = NULL;
    sto__page_free(&op->page);
    free(op->piov);
    free(op->location);
    op->piov = NULL;
    op->location = NULL;
    if (op->bcap > EBUF_MAX) { /* a list page: do not keep megabytes per op */
        free(op->body);
        op->body = NULL;
        op->bcap = 0;
    }
    if (op->rsm) {
        free(op->rsm->url);
        free(op->rsm);
        op->rsm = NULL;
    }
    op->next_free = ss->free_ops;
    ss->free_ops = op;
}

/* ---- results ---- */

/* Completes the sto request of op (puts op back first, so done() may submit at once). */
static void finish(gcs_op_t *op, int status)
{
    sto_req_t *r = op->r;
    sto__http_result(r, &op->h, status);
    op_put_back(op);
    r->done(r);
}

static int bucket_missing(const char *msg)
{
    return strcasestr(msg, "bucket does not exist") != NULL;
}

/* Maps an HTTP status and GCS reason to a sto code; sets retryable. */
static int map_status(int http, const char *reason, int list, const char *msg, int *retryable)
{
    if (reason && (!strcmp(reason, "rateLimitExceeded") ||
                   !strcmp(reason, "userRateLimitExceeded") || !strcmp(reason, "slowDown"))) {
        *retryable = 1;
        return STO_ETHROTTLE;
    }
    if (http == 404 && (list || bucket_missing(msg))) {
        *retryable = 0;
        return STO_ENOBUCKET;
    }
    return sto__http_status(http, retryable);
}

/* A printable start of a non-JSON error body ("Bad Request"). */
static void body_text(const gcs_op_t *op, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < op->blen && n + 1 < cap && i < 120; i++) {
        unsigned char c = (unsigned char)op->body[i];
        out[n++] = c >= 0x20 && c < 0x7f ? (char)c : ' ';
    }
    while (n && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

/* Fills res from a non-2xx response: code = the GCS reason (else "HTTP <status>"), detail
 * "HTTP 403 forbidden: <message>" with a hint for authentication failures. */
static int fill_http_error(gcs_op_t *op, sto_result_t *res)
{
    gcs_store_t *ss = op->ss;
    const rx_httpc_req_t *h = &op->h;
    sto_gcsjson_error_t e;
    int have = op->blen && sto_gcsjson_error(op->body, op->blen, &e) == 0;
    if (!have)
        memset(&e, 0, sizeof(e));
    int retry;
    int list = op->kind == K_LIST || op->kind == K_BUCKET_PROBE;
    int st = map_status(h->status, have ? e.reason : NULL, list, e.message, &retry);
    res->http_status = h->status;
    res->retryable = retry;
    if (have && e.reason[0])
        snprintf(res->code, sizeof(res->code), "%s", e.reason);
    else
        snprintf(res->code, sizeof(res->code), "HTTP %d", h->status);
    char hint[200] = "";
    if ((h->status == 401 || h->status == 403) && ss->cr.anonymous)
        snprintf(hint, sizeof(hint),
                 "; the request was anonymous (set GOOGLE_APPLICATION_CREDENTIALS to a "
                 "service-account key file)");
    else if (h->status == 401 || h->status == 403)
        snprintf(hint, sizeof(hint), "; credentials: service account %.120s",
                 ss->cr.sa.client_email);
    char text[128] = "";
    if (!have)
        body_text(op, text, sizeof(text));
    if (have)
        snprintf(res->detail, sizeof(res->detail), "HTTP %d %s: %s%s", h->status,
                 e.reason[0] ? e.reason : "error", e.message[0] ? e.message : "(no message)", hint);
    else
        snprintf(res->detail, sizeof(res->detail), "HTTP %d%s%s%s", h->status, text[0] ? ": " : "",
                 text, hint);
    return st;
}

static int fill_transport_error(const rx_httpc_req_t *h, sto_result_t *res)
{
    res->retryable = h->retryable;
    res->http_status = h->status;
    snprintf(res->code, sizeof(res->code), "%s",
             h->error == RX_ETIMEDOUT      ? "timeout"
             : h->error == UV_ECONNRESET   ? "connection reset"
             : h->error == UV_ECONNREFUSED ? "connection refused"
                                           : rx_strerror(h->error));
    snprintf(res->detail, sizeof(res->detail), "%s",
             h->detail[0] ? h->detail : rx_strerror(h->error));
    return h->error;
}

static int fill_doc_error(gcs_op_t *op, const char *what, const char *why, sto_result_t *res)
{
    res->http_status = op->h.status;
    res->retryable = 0;
    snprintf(res->code, sizeof(res->code), "bad JSON");
    snprintf(res->detail, sizeof(res->detail), "%s: %s", what, why);
    return STO_EPROTO;
}

/* ---- HTTP callbacks ---- */

static int op_on_header(rx_httpc_req_t *h, const char *n, size_t nl, const char *v, size_t vl)
{
    gcs_op_t *op = h->ud;
    if (op->kind == K_RSM_INIT && ieq(n, nl, "location")) {
        free(op->location);
        op->location = malloc(vl + 1);
        if (!op->location)
            return RX_ENOMEM;
        memcpy(op->location, v, vl);
        op->location[vl] = '\0';
    } else if ((op->kind == K_RSM_CHUNK || op->kind == K_RSM_QUERY) && ieq(n, nl, "range")) {
        snprintf(op->rrange, sizeof(op->rrange), "%.*s", (int)(vl < 60 ? vl : 60), v);
        op->has_rrange = 1;
    }
    return 0;
}

static int op_on_body(rx_httpc_req_t *h, const uint8_t *d, size_t len)
{
    gcs_op_t *op = h->ud;
    int ok = h->status >= 200 && h->status <= 299;
    if (ok && !op->collect)
        return 0; /* object data: counted by the client, dropped */
    size_t room = op->bmax > op->blen ? op->bmax - op->blen : 0;
    if (len > room) {
        if (ok) {
            op->body_over = 1;
            return 0;
        }
        len = room; /* an error body: keep its start */
    }
    if (!len)
        return 0;
    if (op->blen + len + 1 > op->bcap) {
        size_t nc = op->bcap ? op->bcap : 4096;
        while (nc < op->blen + len + 1)
            nc *= 2;
        char *nb = realloc(op->body, nc);
        if (!nb)
            return RX_ENOMEM;
        op->body = nb;
        op->bcap = nc;
    }
    memcpy(op->body + op->blen, d, len);
    op->blen += len;
    op->body[op->blen] = '\0';
    return 0;
}

/* ---- request submission ---- */

static void add_hdr(gcs_op_t *op, const char *name, const char *value, size_t vlen)
{
    if (op->nhdr >= MAX_HDR)
        return;
    op->hdr[op->nhdr].name = name;
    op->hdr[op->nhdr].name_len = strlen(name);
    op->hdr[op->nhdr].value = value;
    op->hdr[op->nhdr].value_len = vlen;
    op->nhdr++;
}

/* Sends op (method, target, extra headers at hdr[2..], body) with Host and Authorization. */
static int http_submit(gcs_op_t *op)
{
    gcs_store_t *ss = op->ss;
    op->hdr[0].name = "Host";
    op->hdr[0].name_len = 4;
    op->hdr[0].value = ss->host;
    op->hdr[0].value_len = strlen(ss->host);
    if (op->auth) {
        op->hdr[1].name = "Authorization";
        op->hdr[1].name_len = 13;
        op->hdr[1].value = op->auth->s;
        op->hdr[1].value_len = op->auth->len;
    } else {
        op->hdr[1].name = "Accept";
        op->hdr[1].name_len = 6;
        op->hdr[1].value = "*/*";
        op->hdr[1].value_len = 3;
    }
    op->blen = 0;
    op->body_over = 0;
    op->has_rrange = 0;
    rx_httpc_req_t *h = &op->h;
    memset(h, 0, offsetof(rx_httpc_req_t, error));
    h->method = op->method;
    h->target = op->target;
    h->headers = op->hdr;
    h->nheaders = op->nhdr;
    h->body = op->bodyv;
    h->nbody = op->nbody;
    h->body_len = op->body_len;
    h->on_header = op_on_header;
    h->on_body = op_on_body;
    h->done = op_http_done;
    h->ud = op;
    return rx_httpc_submit(ss->http, h);
}

/* Prepares the next request of op. Extra headers are added after with add_hdr. */
static void op_prepare(gcs_op_t *op, const char *method, const struct iovec *body, int nbody,
                       int64_t body_len)
{
    op->method = method;
    op->bodyv = body;
    op->nbody = nbody;
    op->body_len =
        body_len >= 0 ? body_len : (!strcmp(method, "PUT") || !strcmp(method, "POST") ? 0 : -1);
    op->nhdr = 2; /* Host, Authorization: set at send */
}

/* ---- tokens ---- */

struct tokfetch {
    gcs_store_t *ss; /* NULL: the store closed (or a blocking fetch) */
    sto_gcs_tokcache_t *tc;
    int claimed;
    int done;
    int rc;
    char err[400];
    uint64_t t0;
    sto_gcsjson_token_t tok;
    rx_httpc_req_t h;
    rx_http1_header_t hdr[3];
    char host[300];
    char form[STO_GCS_JWT_MAX + 128];
    struct iovec iov;
    char body[META_MAX + 1];
    size_t blen;
};

static int tf_on_body(rx_httpc_req_t *h, const uint8_t *d, size_t len)
{
    tokfetch_t *tf = h->ud;
    size_t room = META_MAX - tf->blen;
    if (len > room)
        len = room;
    memcpy(tf->body + tf->blen, d, len);
    tf->blen += len;
    tf->body[tf->blen] = '\0';
    return 0;
}

static void tf_result(tokfetch_t *tf, const sto_gcs_sa_t *sa)
{
    rx_httpc_req_t *h = &tf->h;
    const sto_gcs_url_t *u = &sa->token_url;
    char where[400];
    snprintf(where, sizeof(where), "%s://%s:%d%s", u->tls ? "https" : "http", u->host, u->port,
             u->path);
    if (h->error) {
        tf->rc = h->error;
        snprintf(tf->err, sizeof(tf->err), "token endpoint %.250s: %s", where,
                 h->detail[0] ? h->detail : rx_strerror(h->error));
        return;
    }
    char e[300];
    int rc = sto_gcsjson_token(tf->body, tf->blen, &tf->tok, e, sizeof(e));
    if (h->status >= 200 && h->status <= 299 && rc == 0) {
        tf->rc = 0;
        return;
    }
    tf->rc = STO_EPERM;
    if (h->status >= 200 && h->status <= 299) {
        tf->rc = STO_EPROTO;
        snprintf(tf->err, sizeof(tf->err), "token endpoint %.200s: bad answer: %s", where, e);
    } else if (rc == -EACCES) {
        snprintf(tf->err, sizeof(tf->err),
                 "token endpoint %.200s refused the assertion: HTTP %d %s", where, h->status, e);
    } else {
        char text[128] = "";
        size_t n = 0;
        for (size_t i = 0; i < tf->blen && n < 100; i++) {
            unsigned char c = (unsigned char)tf->body[i];
            text[n++] = c >= 0x20 && c < 0x7f ? (char)c : ' ';
        }
        text[n] = '\0';
        snprintf(tf->err, sizeof(tf->err), "token endpoint %.200s answered HTTP %d%s%s", where,
                 h->status, n ? ": " : "", text);
    }
    if (h->status >= 500 || h->status == 429)
        tf->rc = STO_ESERVER;
}

static void tf_done(rx_httpc_req_t *h);

/* Builds and submits the token request of tf on http. */
static int tf_start(tokfetch_t *tf, const sto_gcs_creds_t *cr, rx_httpc_t *http)
{
    char jwt[STO_GCS_JWT_MAX];
    int n = sto_gcs_jwt_sign(&cr->sa, cr->scope, (int64_t)time(NULL), jwt, sizeof(jwt), tf->err,
                             sizeof(tf->err));
    if (n < 0)
        return n == -ENOMEM ? RX_ENOMEM : RX_EINVAL;
    n = sto_gcs_token_form(jwt, tf->form, sizeof(tf->form));
    if (n < 0) {
        snprintf(tf->err, sizeof(tf->err), "token request too long");
        return RX_EINVAL;
    }
    sto_gcs_host_header(&cr->sa.token_url, tf->host, sizeof(tf->host));
    tf->hdr[0] = (rx_http1_header_t){"Host", 4, tf->host, strlen(tf->host)};
    tf->hdr[1] = (rx_http1_header_t){"Content-Type", 12, "application/x-www-form-urlencoded", 33};
    tf->hdr[2] = (rx_http1_header_t){"Accept", 6, "application/json", 16};
    tf->iov.iov_base = tf->form;
    tf->iov.iov_len = (size_t)n;
    tf->blen = 0;
    tf->t0 = rx_now_ns();
    rx_httpc_req_t *h = &tf->h;
    memset(h, 0, offsetof(rx_httpc_req_t, error));
    h->method = "POST";
    h->target = cr->sa.token_url.path;
    h->headers = tf->hdr;
    h->nheaders = 3;
    h->body = &tf->iov;
    h->nbody = 1;
    h->body_len = n;
    h->on_body = tf_on_body;
    h->done = tf_done;
    h->ud = tf;
    int rc = rx_httpc_submit(http, h);
    if (rc < 0)
        snprintf(tf->err, sizeof(tf->err), "token request: %s", rx_strerror(rc));
    return rc;
}

/* Creates an HTTP client (and TLS context) to u on loop. */
static int http_create(gcs_store_t *ss, uv_loop_t *loop, const sto_gcs_url_t *u, int max_conns,
                       int version, rx_httpc_t **out, rx_tls_ctx_t **tls, char *err, size_t errlen)
{
    return sto__http_create(ss->s, loop, u->host, u->port, u->tls, max_conns, version, out, tls,
                            err, errlen);
}

static void auth_update(gcs_store_t *ss)
{
    if (ss->tok.gen == ss->auth_gen && ss->auth)
        return;
    authstr_t *a = auth_new(ss->tok.value);
    if (!a)
        return; /* keep the old one; the next request tries again */
    auth_unref(ss->auth);
    ss->auth = a;
    ss->auth_gen = ss->tok.gen;
}

static void wait_flush(gcs_store_t *ss, int status, const char *why);

/* Starts an asynchronous token fetch on the store's loop. */
static int fetch_async(gcs_store_t *ss, int claimed)
{
    char err[300] = "";
    if (!ss->tok_http) {
        int rc = http_create(ss, ss->s->loop, &ss->cr.sa.token_url, 1, 0, &ss->tok_http,
                             &ss->tok_tls, err, sizeof(err));
        if (rc < 0) {
            if (claimed)
                sto_gcs_tokcache_fail(ss->tc, err, rx_now_ns(), 1);
            return rc;
        }
    }
    tokfetch_t *tf = calloc(1, sizeof(*tf));
    if (!tf) {
        if (claimed)
            sto_gcs_tokcache_unclaim(ss->tc);
        return RX_ENOMEM;
    }
    tf->ss = ss;
    tf->tc = ss->tc;
    tf->claimed = claimed;
    int rc = tf_start(tf, &ss->cr, ss->tok_http);
    if (rc < 0) {
        if (claimed)
            sto_gcs_tokcache_fail(ss->tc, tf->err, rx_now_ns(), 1);
        free(tf);
        return rc;
    }
    ss->tf = tf;
    rx_log(RX_LOG_DEBUG, "gcs", "fetching an access token for %s (%s)", ss->cr.sa.client_email,
           claimed ? "refresh" : "none valid");
    return 0;
}

static void tf_done(rx_httpc_req_t *h)
{
    tokfetch_t *tf = h->ud;
    gcs_store_t *ss = tf->ss;
    if (!ss) {
        /* blocking fetch: the caller reads the outcome; or the store closed: just let go */
        if (tf->done == -1) {
            if (tf->claimed)
                sto_gcs_tokcache_unclaim(tf->tc);
            free(tf);
            return;
        }
        tf->done = 1;
        return;
    }
    ss->tf = NULL;
    tf_result(tf, &ss->cr.sa);
    uint64_t now = rx_now_ns();
    if (tf->rc == 0) {
        sto_gcs_tokcache_put(tf->tc, tf->tok.access_token, tf->tok.expires_in, tf->t0, tf->claimed);
        rx_log(RX_LOG_DEBUG, "gcs", "access token for %s valid for %llu s", ss->cr.sa.client_email,
               (unsigned long long)tf->tok.expires_in);
    } else if (h->error == RX_ECANCELED) {
        if (tf->claimed)
            sto_gcs_tokcache_unclaim(tf->tc);
    } else {
        sto_gcs_tokcache_fail(tf->tc, tf->err, now, tf->claimed);
        rx_log(RX_LOG_WARN, "gcs", "token refresh failed: %s", tf->err);
    }
    int rc = tf->rc;
    char why[400];
    snprintf(why, sizeof(why), "%s", tf->err);
    free(tf);
    sto_gcs_tokcache_peek(ss->tc, now, &ss->tok);
    if (ss->tok.gen && now < ss->tok.expires_ns) {
        auth_update(ss);
        wait_flush(ss, 0, NULL);
    } else {
        wait_flush(ss, rc ? rc : STO_EPERM, why[0] ? why : "no valid access token");
    }
}

/* Sends (status 0) or fails the requests waiting for a token. */
static void wait_flush(gcs_store_t *ss, int status, const char *why)
{
    gcs_op_t *op = ss->wait_head;
    ss->wait_head = ss->wait_tail = NULL;
    while (op) {
        gcs_op_t *nx = op->next_wait;
        op->next_wait = NULL;
        int rc = status;
        if (!rc && !ss->auth)
            rc = RX_ENOMEM;
        if (!rc) {
            auth_unref(op->auth);
            op->auth = ss->auth;
            op->auth->refs++;
            rc = http_submit(op);
        }
        if (rc < 0) {
            /* fail the whole request behind op: an internal request has none */
            sto_req_t *r = op->r;
            if (r) {
                r->res.retryable = rc == STO_ESERVER;
                snprintf(r->res.code, sizeof(r->res.code), "token");
                snprintf(r->res.detail, sizeof(r->res.detail), "no access token: %s",
                         why ? why : rx_strerror(rc));
                r->res.t_end_ns = rx_now_ns();
                if (!r->res.t_first_ns)
                    r->res.t_first_ns = r->res.t_submit_ns;
                r->res.status = rc == STO_ESERVER ? STO_ESERVER : rc;
                if (op->kind == K_RSM_CHUNK || op->kind == K_RSM_QUERY)
                    r->res.bytes = 0;
                op_put_back(op);
                r->done(r);
            } else {
                op_put_back(op);
            }
        }
        op = nx;
    }
}

/* Attaches the current token to op, refreshing ahead of expiry; queues op when there is no
 * valid token. Returns 0 (sent or queued) or a negative error (not sent). */
static int op_send(gcs_op_t *op)
{
    gcs_store_t *ss = op->ss;
    if (ss->cr.anonymous)
        return http_submit(op);
    uint64_t now = rx_now_ns();
    if (!(ss->tok.gen && now < ss->tok.refresh_ns)) {
        int st = sto_gcs_tokcache_peek(ss->tc, now, &ss->tok);
        if (st != STO_GCS_TOK_NONE)
            auth_update(ss);
        if (st == STO_GCS_TOK_REFRESH && !ss->tf && sto_gcs_tokcache_claim(ss->tc, now))
            fetch_async(ss, 1); /* on failure the old token goes on until it expires */
        if (st == STO_GCS_TOK_NONE) {
            if (!ss->tf) {
                int rc = fetch_async(ss, sto_gcs_tokcache_claim(ss->tc, now));
                if (rc < 0)
                    return rc;
            }
            if (ss->wait_tail)
                ss->wait_tail->next_wait = op;
            else
                ss->wait_head = op;
            ss->wait_tail = op;
            return 0;
        }
    }
    if (!ss->auth)
        return RX_ENOMEM;
    auth_unref(op->auth);
    op->auth = ss->auth;
    op->auth->refs++;
    return http_submit(op);
}

/* Blocking fetch on a private loop (store open). */
static int fetch_blocking(gcs_store_t *ss, char *err, size_t errlen)
{
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc < 0) {
        snprintf(err, errlen, "uv_loop_init: %s", uv_strerror(rc));
        return rc;
    }
    rx_httpc_t *http = NULL;
    rx_tls_ctx_t *tls = NULL;
    tokfetch_t *tf = calloc(1, sizeof(*tf));
    if (!tf) {
        rc = RX_ENOMEM;
        snprintf(err, errlen, "out of memory");
    } else {
        rc = http_create(ss, &loop, &ss->cr.sa.token_url, 1, 0, &http, &tls, err, errlen);
    }
    if (rc == 0) {
        tf->tc = ss->tc;
        rc = tf_start(tf, &ss->cr, http);
        if (rc < 0) {
            snprintf(err, errlen, "%s", tf->err);
        } else {
            while (!tf->done)
                uv_run(&loop, UV_RUN_ONCE);
            tf_result(tf, &ss->cr.sa);
            rc = tf->rc;
            if (rc == 0)
                sto_gcs_tokcache_put(ss->tc, tf->tok.access_token, tf->tok.expires_in, tf->t0, 0);
            else
                snprintf(err, errlen, "%s", tf->err);
        }
    }
    rx_httpc_close(http);
    uv_run(&loop, UV_RUN_DEFAULT);
    rx_tls_ctx_destroy(tls);
    uv_loop_close(&loop);
    free(tf);
    return rc;
}

/* At open: a valid token in the cache, fetched here when no other thread is fetching one. */
static int ensure_token(gcs_store_t *ss, char *err, size_t errlen)
{
    int wait_ms = ss->s->opts.connect_timeout_ms + ss->s->opts.io_timeout_ms + 1000;
    for (int round = 0; round < 4; round++) {
        uint64_t now = rx_now_ns();
        if (sto_gcs_tokcache_peek(ss->tc, now, &ss->tok) != STO_GCS_TOK_NONE) {
            auth_update(ss);
            return ss->auth ? 0 : RX_ENOMEM;
        }
        if (sto_gcs_tokcache_claim(ss->tc, now)) {
            char e[400] = "";
            int rc = fetch_blocking(ss, e, sizeof(e));
            if (rc < 0) {
                sto_gcs_tokcache_fail(ss->tc, e, rx_now_ns(), 1);
                snprintf(err, errlen, "cannot get an access token for %s (key file %s): %s",
                         ss->cr.sa.client_email, ss->cr.sa.source, e);
                return rc;
            }
            sto_gcs_tokcache_unclaim(ss->tc);
            continue;
        }
        if (sto_gcs_tokcache_wait(ss->tc, wait_ms) < 0) {
            snprintf(err, errlen,
                     "cannot get an access token for %s: another thread's fetch "
                     "did not finish in %d ms",
                     ss->cr.sa.client_email, wait_ms);
            return RX_ETIMEDOUT;
        }
        if (sto_gcs_tokcache_peek(ss->tc, rx_now_ns(), &ss->tok) == STO_GCS_TOK_NONE) {
            char e[256];
            sto_gcs_tokcache_last_error(ss->tc, e, sizeof(e));
            if (e[0]) {
                snprintf(err, errlen, "cannot get an access token for %s: %s",
                         ss->cr.sa.client_email, e);
                return STO_EPERM;
            }
        }
    }
    snprintf(err, errlen, "cannot get an access token for %s", ss->cr.sa.client_email);
    return STO_EPERM;
}

/* ---- targets ---- */

/* "/storage/v1/b/BUCKET/o/NAME" (name NULL: ".../o") into op->target. */
static int object_target(gcs_op_t *op, const char *prefix, const char *name, const char *query)
{
    size_t pos = 0;
    int rc;
    if ((rc = put_raw(op->target, &pos, prefix)) || (rc = put_raw(op->target, &pos, "/b/")) ||
        (rc = put_raw(op->target, &pos, op->ss->ebucket)) || (rc = put_raw(op->target, &pos, "/o")))
        return rc;
    if (name && ((rc = put_raw(op->target, &pos, "/")) || (rc = put_enc(op->target, &pos, name))))
        return rc;
    if (query && (rc = put_raw(op->target, &pos, query)))
        return rc;
    return 0;
}

/* Full object name of key in op->target's scratch: base + key. */
static int full_name(gcs_store_t *ss, const char *key, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s%s", ss->base, key ? key : "");
    if (n < 0 || (size_t)n >= cap || (size_t)n > STO_GCSJSON_NAME_MAX)
        return STO_EURI;
    return 0;
}

/* ---- LIST ---- */

static int list_item(void *ud, const sto_gcsjson_item_t *it)
{
    gcs_op_t *op = ud;
    size_t bl = op->ss->baselen;
    if (it->name_len <= bl || memcmp(it->name, op->ss->base, bl) != 0)
        return 0; /* outside the store (a server ignoring the prefix) */
    return sto__page_push(&op->page, it->name + bl, it->name_len - bl, it->size, 0);
}

static int list_prefix(void *ud, const char *p, size_t len)
{
    gcs_op_t *op = ud;
    size_t bl = op->ss->baselen;
    if (len <= bl || memcmp(p, op->ss->base, bl) != 0)
        return 0;
    return sto__page_push(&op->page, p + bl, len - bl, 0, 1);
}

static int ent_cmp(const void *a, const void *b)
{
    return strcmp(((const sto_entry_t *)a)->key, ((const sto_entry_t *)b)->key);
}

static int list_request(gcs_op_t *op)
{
    sto_req_t *r = op->r;
    char name[STO_PATH_MAX + 2];
    if (full_name(op->ss, r->key, name, sizeof(name)) < 0)
        return STO_EURI;
    int rc = object_target(op, "/storage/v1", NULL, "?maxResults=" LIST_PAGE);
    size_t pos = strlen(op->target);
    if (rc == 0 && name[0])
        rc = put_kv(op->target, &pos, "&prefix=", name);
    if (rc == 0 && !r->recursive)
        rc = put_raw(op->target, &pos, "&delimiter=%2F");
    if (rc == 0 && op->token[0])
        rc = put_kv(op->target, &pos, "&pageToken=", op->token);
    if (rc == 0)
        rc = put_raw(op->target, &pos, "&fields=items(name%2Csize)%2Cprefixes%2CnextPageToken");
    if (rc < 0)
        return rc;
    sto__page_reset(&op->page);
    op->collect = 1;
    op->bmax = STO_GCSJSON_MAX_BODY;
    op_prepare(op, "GET", NULL, 0, -1);
    return op_send(op);
}

/* A page arrived: deliver it, then ask for the next or finish. */
static void list_page_done(gcs_op_t *op)
{
    sto_req_t *r = op->r;
    if (op->body_over) {
        finish(op, fill_doc_error(op, "object list", "page larger than 4 MiB", &r->res));
        return;
    }
    sto_gcsjson_list_cb_t cb = {list_item, list_prefix, op};
    char e[200];
    int rc = sto_gcsjson_list(op->body, op->blen, &cb, op->token, sizeof(op->token), e, sizeof(e));
    if (rc < 0) {
        if (rc == -ENOMEM) {
            snprintf(r->res.detail, sizeof(r->res.detail), "object list: out of memory");
            finish(op, RX_ENOMEM);
        } else {
            finish(op, fill_doc_error(op, "object list", e, &r->res));
        }
        return;
    }
    sto_entry_t *ents = sto__page_entries(&op->page);
    /* items and prefixes come as two sorted lists: one order for the page */
    if (op->page.n > 1) /* (qsort of an empty, NULL array is undefined) */
        qsort(ents, op->page.n, sizeof(*ents), ent_cmp);
    if (op->page.n && r->on_page)
        r->on_page(r, ents, op->page.n);
    op->listed += op->page.n;
    r->res.bytes = op->listed;
    if (op->token[0]) {
        rc = list_request(op);
        if (rc < 0) {
            snprintf(r->res.detail, sizeof(r->res.detail), "next list page: %s", rx_strerror(rc));
            finish(op, rc);
        }
        return;
    }
    finish(op, 0);
}

/* ---- resumable uploads ---- */

/* Slices [off, off+len) of iov into op->piov. */
static int slice_iov(gcs_op_t *op, const struct iovec *iov, int n, uint64_t off, uint64_t len)
{
    if (!op->piov) {
        op->piov = malloc(((size_t)n + 1) * sizeof(*op->piov));
        if (!op->piov)
            return RX_ENOMEM;
    }
    int k = 0;
    uint64_t pos = 0;
    for (int i = 0; i < n && len; i++) {
        uint64_t l = iov[i].iov_len;
        if (pos + l <= off) {
            pos += l;
            continue;
        }
        uint64_t skip = off > pos ? off - pos : 0;
        uint64_t take = l - skip < len ? l - skip : len;
        op->piov[k].iov_base = (char *)iov[i].iov_base + skip;
        op->piov[k].iov_len = (size_t)take;
        k++;
        len -= take;
        off += take;
        pos += l;
    }
    op->npiov = k;
    return 0;
}

static int rsm_chunk(gcs_op_t *op)
{
    rsm_t *m = op->rsm;
    sto_req_t *r = op->r;
    m->len = m->total - m->off < m->chunk ? m->total - m->off : m->chunk;
    int rc = slice_iov(op, r->iov, r->iovcnt, m->off, m->len);
    if (rc < 0)
        return rc;
    snprintf(op->target, sizeof(op->target), "%s", m->url);
    snprintf(op->crange, sizeof(op->crange), "bytes %llu-%llu/%llu", (unsigned long long)m->off,
             (unsigned long long)(m->off + m->len - 1), (unsigned long long)m->total);
    op->kind = K_RSM_CHUNK;
    op->collect = 0;
    op_prepare(op, "PUT", op->piov, op->npiov, (int64_t)m->len);
    add_hdr(op, "Content-Range", op->crange, strlen(op->crange));
    return op_send(op);
}

/* Asks the service how much of the upload it has (after a failed chunk). */
static int rsm_query(gcs_op_t *op)
{
    rsm_t *m = op->rsm;
    snprintf(op->target, sizeof(op->target), "%s", m->url);
    snprintf(op->crange, sizeof(op->crange), "bytes */%llu", (unsigned long long)m->total);
    op->kind = K_RSM_QUERY;
    op->collect = 0;
    op_prepare(op, "PUT", NULL, 0, 0);
    add_hdr(op, "Content-Range", op->crange, strlen(op->crange));
    return op_send(op);
}

/* Reports the failure recorded in op->rsm after cancelling the session (when there is one). */
static void rsm_fail(gcs_op_t *op, int error, int retryable, int http, const char *code,
                     const char *detail)
{
    rsm_t *m = op->rsm;
    m->error = error;
    m->retryable = retryable;
    m->http_status = http;
    snprintf(m->code, sizeof(m->code), "%s", code ? code : "");
    snprintf(m->detail, sizeof(m->detail), "%s", detail ? detail : "");
    if (m->url) {
        snprintf(op->target, sizeof(op->target), "%s", m->url);
        op->kind = K_RSM_CANCEL;
        op->collect = 0;
        op_prepare(op, "DELETE", NULL, 0, -1);
        if (op_send(op) == 0)
            return;
    }
    sto_req_t *r = op->r;
    r->res.retryable = retryable;
    r->res.http_status = http;
    snprintf(r->res.code, sizeof(r->res.code), "%s", m->code);
    snprintf(r->res.detail, sizeof(r->res.detail), "%s", m->detail);
    finish(op, error);
}

static void rsm_fail_res(gcs_op_t *op, int st, const sto_result_t *t, const char *what)
{
    char d[256];
    snprintf(d, sizeof(d), "resumable upload %s: %s", what, t->detail);
    rsm_fail(op, st, t->retryable, t->http_status, t->code, d);
}

/* Parses "bytes=0-N" of a 308: the service has N+1 bytes (0 without a Range). */
static int persisted(const gcs_op_t *op, uint64_t *out)
{
    *out = 0;
    if (!op->has_rrange)
        return 0;
    const char *p = op->rrange;
    if (strncasecmp(p, "bytes=0-", 8) != 0)
        return -1;
    p += 8;
    uint64_t x = 0;
    if (!*p)
        return -1;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || x > UINT64_MAX / 10 - 1)
            return -1;
        x = x * 10 + (uint64_t)(*p - '0');
    }
    *out = x + 1;
    return 0;
}

static void rsm_init_done(gcs_op_t *op)
{
    rsm_t *m = op->rsm;
    const char *loc = op->location;
    if (!loc || !*loc) {
        sto_result_t t = {0};
        fill_doc_error(op, "resumable upload", "no Location in the answer", &t);
        rsm_fail(op, STO_EPROTO, 0, op->h.status, "no Location", t.detail);
        return;
    }
    /* an absolute URL: keep path and query (the session lives on the same service) */
    if (!strncasecmp(loc, "http://", 7) || !strncasecmp(loc, "https://", 8)) {
        loc = strchr(strstr(loc, "://") + 3, '/');
        if (!loc)
            loc = "";
    }
    if (loc[0] != '/' || strlen(loc) >= TARGET_MAX) {
        rsm_fail(op, STO_EPROTO, 0, op->h.status, "bad Location",
                 "resumable upload: unusable Location in the answer");
        return;
    }
    for (const char *p = loc; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            rsm_fail(op, STO_EPROTO, 0, op->h.status, "bad Location",
                     "resumable upload: Location with spaces or control characters");
            return;
        }
    m->url = strdup(loc);
    if (!m->url) {
        rsm_fail(op, RX_ENOMEM, 0, 0, "no memory", "resumable upload: out of memory");
        return;
    }
    m->off = 0;
    int rc = rsm_chunk(op);
    if (rc < 0)
        rsm_fail(op, rc, 0, 0, rx_strerror(rc), "resumable upload: cannot send a chunk");
}

/* A chunk or a status query answered (or failed). */
static void rsm_step_done(gcs_op_t *op)
{
    rsm_t *m = op->rsm;
    rx_httpc_req_t *h = &op->h;
    sto_req_t *r = op->r;
    sto_result_t t;
    memset(&t, 0, sizeof(t));
    int st = 0;
    int was_query = op->kind == K_RSM_QUERY;
    if (h->error)
        st = fill_transport_error(h, &t);
    else if (h->status != 308 && (h->status < 200 || h->status > 299))
        st = fill_http_error(op, &t);
    if (st) {
        if (t.retryable && m->tries < CHUNK_RETRIES) {
            m->tries++;
            int rc = rsm_query(op);
            if (rc == 0)
                return;
        }
        rsm_fail_res(op, st, &t, was_query ? "status query" : "chunk");
        return;
    }
    if (h->status != 308) {
        /* the object is complete */
        if (!was_query && m->off + m->len != m->total) {
            rsm_fail(op, STO_EPROTO, 0, h->status, "early finish",
                     "resumable upload: the service finished the object before the last chunk");
            return;
        }
        r->res.bytes = m->total;
        r->res.http_status = h->status;
        finish(op, 0);
        return;
    }
    uint64_t have;
    if (persisted(op, &have) < 0 || have > m->total || (!was_query && have > m->off + m->len)) {
        char d[160];
        snprintf(d, sizeof(d), "resumable upload: bad Range '%s' in a 308", op->rrange);
        rsm_fail(op, STO_EPROTO, 0, h->status, "bad Range", d);
        return;
    }
    if (have == m->total) {
        /* the service finalizes an upload with its last byte: a 308 then is a broken answer */
        rsm_fail(op, STO_EPROTO, 0, h->status, "not finalized",
                 "resumable upload: all bytes sent but the object was not finalized");
        return;
    }
    if (!was_query && have < m->off + m->len) {
        /* the service kept less than was sent: resend from there, as a retry */
        if (m->tries >= CHUNK_RETRIES) {
            rsm_fail(op, STO_EPROTO, 0, h->status, "chunk not kept",
                     "resumable upload: the service kept less than the chunks sent");
            return;
        }
        m->tries++;
    }
    m->off = have;
    int rc = rsm_chunk(op);
    if (rc < 0)
        rsm_fail(op, rc, 0, 0, rx_strerror(rc), "resumable upload: cannot send a chunk");
}

static int rsm_start(gcs_op_t *op, const char *name, uint64_t total)
{
    gcs_store_t *ss = op->ss;
    rsm_t *m = calloc(1, sizeof(*m));
    if (!m)
        return RX_ENOMEM;
    op->rsm = m;
    m->total = total;
    uint64_t c = ss->s->opts.part_size;
    c -= c % GRANULE;
    m->chunk = c ? c : GRANULE;
    size_t pos = 0;
    int rc = put_raw(op->target, &pos, "/upload/storage/v1/b/");
    if (rc == 0)
        rc = put_raw(op->target, &pos, ss->ebucket);
    if (rc == 0)
        rc = put_kv(op->target, &pos, "/o?uploadType=resumable&name=", name);
    if (rc < 0)
        return rc;
    snprintf(op->xlen, sizeof(op->xlen), "%llu", (unsigned long long)total);
    op->kind = K_RSM_INIT;
    op_prepare(op, "POST", NULL, 0, 0);
    add_hdr(op, "X-Upload-Content-Type", "application/octet-stream", 24);
    add_hdr(op, "X-Upload-Content-Length", op->xlen, strlen(op->xlen));
    return op_send(op);
}

/* ---- completion ---- */

static void op_http_done(rx_httpc_req_t *h)
{
    gcs_op_t *op = h->ud;
    gcs_store_t *ss = op->ss;
    switch (op->kind) {
    case K_BUCKET_PROBE:
    case K_BUCKET_CREATE: {
        ss->probe_done = 1;
        ss->probe_http = h->status;
        ss->probe_error = h->error;
        sto_result_t tmp;
        memset(&tmp, 0, sizeof(tmp));
        if (h->error)
            ss->probe_status = fill_transport_error(h, &tmp);
        else if ((h->status < 200 || h->status > 299) &&
                 !(op->kind == K_BUCKET_CREATE && h->status == 409)) /* created meanwhile */
            ss->probe_status = fill_http_error(op, &tmp);
        else
            ss->probe_status = 0;
        snprintf(ss->probe_code, sizeof(ss->probe_code), "%s", tmp.code);
        snprintf(ss->probe_detail, sizeof(ss->probe_detail), "%s", tmp.detail);
        op_put_back(op);
        return;
    }
    case K_RSM_CHUNK:
    case K_RSM_QUERY:
        rsm_step_done(op);
        return;
    case K_RSM_CANCEL: {
        rsm_t *m = op->rsm;
        sto_req_t *r = op->r;
        r->res.retryable = m->retryable;
        r->res.http_status = m->http_status;
        snprintf(r->res.code, sizeof(r->res.code), "%s", m->code);
        /* GCS answers a cancelled session with 499 */
        int ok = !h->error && ((h->status >= 200 && h->status <= 299) || h->status == 499);
        snprintf(r->res.detail, sizeof(r->res.detail), "%.200s%s", m->detail,
                 ok ? " (upload cancelled)" : "");
        finish(op, m->error);
        return;
    }
    default:
        break;
    }
    sto_req_t *r = op->r;
    r->res.http_status = h->status;
    if (h->error) {
        int st = fill_transport_error(h, &r->res);
        if (op->kind == K_RSM_INIT) {
            rsm_t *m = op->rsm;
            free(m->url);
            m->url = NULL;
        }
        finish(op, st);
        return;
    }
    if (h->status < 200 || h->status > 299) {
        finish(op, fill_http_error(op, &r->res));
        return;
    }
    switch (op->kind) {
    case K_GET:
        r->res.bytes = h->body_bytes;
        finish(op, 0);
        return;
    case K_PUT:
        r->res.bytes = (uint64_t)(h->body_len > 0 ? h->body_len : 0);
        finish(op, 0);
        return;
    case K_HEAD: {
        sto_gcsjson_object_t *o = malloc(sizeof(*o));
        char e[200];
        if (!o) {
            finish(op, RX_ENOMEM);
            return;
        }
        int rc =
            op->body_over ? -EMSGSIZE : sto_gcsjson_object(op->body, op->blen, o, e, sizeof(e));
        if (rc < 0) {
            free(o);
            finish(op, fill_doc_error(op, "object metadata",
                                      rc == -EMSGSIZE ? "document too large" : e, &r->res));
            return;
        }
        r->res.bytes = o->size;
        free(o);
        finish(op, 0);
        return;
    }
    case K_DEL:
        finish(op, 0);
        return;
    case K_LIST:
        list_page_done(op);
        return;
    case K_RSM_INIT:
        rsm_init_done(op);
        return;
    default:
        finish(op, STO_EPROTO);
        return;
    }
}

/* ---- backend entry points ---- */

static int gcs_submit(sto_store_t *s, sto_req_t *r)
{
    gcs_store_t *ss = sto_store_priv(s);
    enum kind k;
    switch (r->op) {
    case STO_OP_GET:
        k = K_GET;
        break;
    case STO_OP_PUT:
        k = K_PUT;
        break;
    case STO_OP_HEAD:
        k = K_HEAD;
        break;
    case STO_OP_LIST:
        k = K_LIST;
        break;
    case STO_OP_DEL:
        k = K_DEL;
        break;
    default:
        return STO_ENOTSUP;
    }
    gcs_op_t *op = op_get(ss, r, k);
    if (!op)
        return RX_ENOMEM;
    char name[STO_PATH_MAX + 2];
    int rc = 0;
    if (k != K_LIST && (rc = full_name(ss, r->key, name, sizeof(name))) < 0) {
        op_put_back(op);
        return rc;
    }
    switch (k) {
    case K_GET:
        rc = object_target(op, "/storage/v1", name, "?alt=media");
        if (rc < 0)
            break;
        op_prepare(op, "GET", NULL, 0, -1);
        if (r->offset || r->length) {
            if (r->length)
                snprintf(op->range, sizeof(op->range), "bytes=%llu-%llu",
                         (unsigned long long)r->offset,
                         (unsigned long long)(r->offset + r->length - 1));
            else
                snprintf(op->range, sizeof(op->range), "bytes=%llu-",
                         (unsigned long long)r->offset);
            add_hdr(op, "Range", op->range, strlen(op->range));
        }
        rc = op_send(op);
        break;
    case K_PUT: {
        uint64_t total = 0;
        for (int i = 0; i < r->iovcnt; i++)
            total += r->iov[i].iov_len;
        if (total >= s->opts.multipart_threshold && total > 0) {
            rc = rsm_start(op, name, total);
            break;
        }
        size_t pos = 0;
        rc = put_raw(op->target, &pos, "/upload/storage/v1/b/");
        if (rc == 0)
            rc = put_raw(op->target, &pos, ss->ebucket);
        if (rc == 0)
            rc = put_kv(op->target, &pos, "/o?uploadType=media&name=", name);
        if (rc < 0)
            break;
        op_prepare(op, "POST", r->iov, r->iovcnt, (int64_t)total);
        add_hdr(op, "Content-Type", "application/octet-stream", 24);
        rc = op_send(op);
        break;
    }
    case K_HEAD:
        rc = object_target(op, "/storage/v1", name, "?fields=name%2Csize%2Cgeneration");
        if (rc < 0)
            break;
        op->collect = 1;
        op->bmax = META_MAX;
        op_prepare(op, "GET", NULL, 0, -1);
        rc = op_send(op);
        break;
    case K_DEL:
        rc = object_target(op, "/storage/v1", name, NULL);
        if (rc < 0)
            break;
        op_prepare(op, "DELETE", NULL, 0, -1);
        rc = op_send(op);
        break;
    case K_LIST:
        rc = list_request(op);
        break;
    default:
        rc = STO_ENOTSUP;
    }
    if (rc < 0) {
        op_put_back(op);
        return rc;
    }
    return 0;
}

/* Connection pools are per loop (core) and endpoint, shared by the stores of that core that
 * reach the same endpoint with the same protocol and TLS settings (httppool.c). */
static void release_http(gcs_store_t *x)
{
    if (x->http)
        sto__http_release(x->http);
    x->http = NULL;
}

static int make_http(gcs_store_t *x, uv_loop_t *loop, char *err, size_t errlen)
{
    return sto__http_acquire(x->s, loop, x->ep.url.host, x->ep.url.port, x->ep.url.tls, &x->http, err, errlen);
}

/* With create_base: list one object of the bucket on a private loop; create the bucket when
 * the service says it does not exist. */
static int probe_bucket(gcs_store_t *ss, char *err, size_t errlen)
{
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc < 0) {
        snprintf(err, errlen, "uv_loop_init: %s", uv_strerror(rc));
        return rc;
    }
    const sto_gcs_url_t *u = &ss->ep.url;
    rc = make_http(ss, &loop, err, errlen);
    if (rc == 0) {
        char json[400];
        struct iovec iov;
        for (int step = 0; step < 2; step++) {
            gcs_op_t *op = op_get(ss, NULL, step == 0 ? K_BUCKET_PROBE : K_BUCKET_CREATE);
            if (!op) {
                rc = RX_ENOMEM;
                break;
            }
            ss->probe_done = 0;
            ss->probe_detail[0] = '\0';
            size_t pos = 0;
            if (step == 0) {
                rc = object_target(op, "/storage/v1", NULL, "?maxResults=1&fields=items(name)");
                op_prepare(op, "GET", NULL, 0, -1);
            } else {
                rc = put_kv(op->target, &pos, "/storage/v1/b?project=", ss->cr.project);
                int n = snprintf(json, sizeof(json), "{\"name\":\"%s\"}", ss->bucket);
                iov.iov_base = json;
                iov.iov_len = (size_t)n;
                op_prepare(op, "POST", &iov, 1, n);
                add_hdr(op, "Content-Type", "application/json", 16);
            }
            if (rc == 0) {
                /* the probe runs on the private loop: it must not queue behind a token fetch
                 * (ensure_token ran first, so there is a valid token) */
                if (!ss->cr.anonymous) {
                    op->auth = ss->auth;
                    op->auth->refs++;
                }
                rc = http_submit(op);
            }
            if (rc < 0) {
                op_put_back(op);
                snprintf(err, errlen, "bucket %s: %s", ss->bucket, rx_strerror(rc));
                break;
            }
            while (!ss->probe_done)
                uv_run(&loop, UV_RUN_ONCE);
            rc = ss->probe_status;
            int missing = ss->probe_http == 404;
            if (step == 0 && missing && !ss->s->opts.no_create_bucket && ss->cr.project[0])
                continue; /* missing: create it */
            if (rc < 0) {
                if (ss->probe_error)
                    snprintf(err, errlen, "cannot reach the GCS endpoint %s://%s:%d (%s): %s",
                             u->tls ? "https" : "http", u->host, u->port, ss->ep.source,
                             ss->probe_detail);
                else if (step == 0 && missing && ss->s->opts.no_create_bucket)
                    snprintf(err, errlen, "bucket %s does not exist (creating it is disabled)",
                             ss->bucket);
                else if (step == 0 && missing)
                    snprintf(err, errlen,
                             "bucket %s does not exist; create it (gcloud storage buckets create "
                             "gs://%s) or name a project to create it in (GOOGLE_CLOUD_PROJECT, "
                             "or project_id in the service-account key file)",
                             ss->bucket, ss->bucket);
                else
                    snprintf(err, errlen, "%s bucket %s: %s", step ? "creating" : "checking",
                             ss->bucket, ss->probe_detail);
            }
            break;
        }
        release_http(ss);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return rc;
}

static void gcs_close(sto_store_t *s)
{
    gcs_store_t *ss = sto_store_priv(s);
    if (ss->tf) {
        /* orphan the refresh: closing its client completes it (cancelled) right here */
        tokfetch_t *tf = ss->tf;
        ss->tf = NULL;
        tf->ss = NULL;
        tf->done = -1;
    }
    rx_httpc_close(ss->tok_http);
    ss->tok_http = NULL;
    rx_tls_ctx_destroy(ss->tok_tls);
    ss->tok_tls = NULL;
    if (ss->http)
        release_http(ss);
    while (ss->free_ops) {
        gcs_op_t *op = ss->free_ops;
        ss->free_ops = op->next_free;
        free(op->body);
        free(op);
    }
    auth_unref(ss->auth);
    ss->auth = NULL;
    sto_gcs_creds_free(&ss->cr);
}

static int gcs_open(sto_store_t *s, const sto_uri_t *u, char *err, size_t errlen)
{
    gcs_store_t *ss = sto_store_priv(s);
    ss->s = s;
    char e[900];
    int rc = sto_gcs_endpoint_resolve(s->opts.endpoint, &ss->ep, e, sizeof(e));
    if (rc < 0) {
        snprintf(err, errlen, "%s", e);
        return STO_EURI;
    }
    sto_gcs_host_header(&ss->ep.url, ss->host, sizeof(ss->host));
    rc = sto_gcs_creds_load(&ss->cr, e, sizeof(e));
    if (rc < 0) {
        snprintf(err, errlen, "%s", e);
        sto_gcs_creds_free(&ss->cr);
        return rc == -ENOMEM ? RX_ENOMEM : STO_EPERM;
    }
    if (!u->authority[0] || strlen(u->authority) >= sizeof(ss->bucket)) {
        snprintf(err, errlen, "bucket name missing or too long");
        gcs_close(s);
        return STO_EURI;
    }
    snprintf(ss->bucket, sizeof(ss->bucket), "%s", u->authority);
    if (sto_gcs_encode(ss->bucket, ss->ebucket, sizeof(ss->ebucket)) < 0) {
        snprintf(err, errlen, "bucket name too long");
        gcs_close(s);
        return STO_EURI;
    }
    if (u->path[0]) {
        int n = snprintf(ss->base, sizeof(ss->base), "%s/", u->path);
        if (n < 0 || (size_t)n >= sizeof(ss->base) || n > STO_GCSJSON_NAME_MAX) {
            snprintf(err, errlen, "object name prefix too long (GCS names have at most %d bytes)",
                     STO_GCSJSON_NAME_MAX);
            gcs_close(s);
            return STO_EURI;
        }
    }
    ss->baselen = strlen(ss->base);
    if (!ss->cr.anonymous) {
        ss->tc = sto_gcs_tokcache_get(&ss->cr.sa, ss->cr.scope);
        if (!ss->tc) {
            gcs_close(s);
            return RX_ENOMEM;
        }
        rc = ensure_token(ss, err, errlen);
        if (rc < 0) {
            gcs_close(s);
            return rc;
        }
    }
    if (s->create_base) {
        rc = probe_bucket(ss, err, errlen);
        if (rc < 0) {
            gcs_close(s);
            return rc;
        }
    }
    rc = make_http(ss, s->loop, err, errlen);
    if (rc < 0) {
        gcs_close(s);
        return rc;
    }
    return 0;
}

const sto_backend_t sto__gcs_backend = {
    .name = "gcs",
    .caps = STO_CAP_RANGE | STO_CAP_MULTIPART | STO_CAP_LIST_PAGES,
    .store_size = sizeof(gcs_store_t),
    .open = gcs_open,
    .close = gcs_close,
    .submit = gcs_submit,
};
