/* s3:// backend: S3 REST over the per-core HTTP/1.1 pool (rx/httpc.h), SigV4 (sto/s3req.h),
 * streaming XML (sto/s3xml.h). One store per base URI per core; everything on the loop thread.
 *
 * Operations: GET (ranges; TTFB = first response byte), PUT (single, or multipart at or above
 * opts.multipart_threshold: parts of opts.part_size in parallel, a failed part retried twice,
 * the upload aborted on failure), HEAD, LIST (ListObjectsV2, paged by continuation token,
 * delimiter '/' unless recursive), DEL, DEL_BATCH (DeleteObjects, up to 1000 keys). MKDIR and
 * RMDIR are STO_ENOTSUP (S3 has no directories). With create_base, open checks the bucket on a
 * private loop and creates it when missing.
 */
#include <errno.h>
#include <mbedtls/base64.h>
#include <mbedtls/md5.h>
#include <mbedtls/sha256.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "rx/err.h"
#include "rx/httpc.h"
#include "rx/stream.h"
#include "rx/time.h"
#include "sto/backend.h"
#include "sto/err.h"
#include "sto/s3conf.h"
#include "sto/s3req.h"
#include "sto/s3xml.h"
#include "sto/sigv4.h"
#include "sto_internal.h"

#define EBUF_MAX 4096
#define PART_RETRIES 2

enum kind {
    K_GET,
    K_PUT,
    K_HEAD,
    K_LIST,
    K_DEL,
    K_DEL_BATCH,
    K_MPU_INIT,
    K_MPU_PART,
    K_MPU_COMPLETE,
    K_MPU_ABORT,
    K_BUCKET_HEAD,
    K_BUCKET_CREATE,
};

typedef struct s3_store s3_store_t;
typedef struct s3_op s3_op_t;

typedef struct mpu {
    char upload_id[STO_S3XML_UPLOAD_ID_MAX + 1];
    uint64_t total;
    uint64_t part_size;
    uint32_t nparts;
    uint32_t next; /* next part number to issue (1-based) */
    uint32_t inflight;
    uint32_t ndone;
    char (*etags)[STO_S3XML_ETAG_MAX + 1];
    int error; /* first failure */
    int retryable;
    int http_status;
    char code[48];
    char detail[256];
    char *body; /* CompleteMultipartUpload document */
} mpu_t;

struct s3_op {
    s3_store_t *ss;
    sto_req_t *r;      /* NULL for internal requests */
    s3_op_t *parent;   /* multipart part → the PUT */
    enum kind kind;
    rx_httpc_req_t h;
    sto_s3_request_t sq;
    rx_http1_header_t hdr[STO_S3_MAX_HEADERS];
    sto_sigv4_kv_t query[4];
    sto_sigv4_kv_t xh[3];
    int nq, nxh; /* query parameters and extra headers of the next request */
    char key[STO_PATH_MAX + 16];
    char range[64];
    char md5[32];
    char sha[STO_SHA256_HEX_LEN + 1];
    char pnum[16];
    char reqid[96];
    char ebuf[EBUF_MAX + 1];
    size_t elen;
    sto_s3xml_parser_t *xml;
    int xml_rc;
    uint64_t clen;
    int has_clen;
    char etag[STO_S3XML_ETAG_MAX + 1];
    /* LIST */
    char token[STO_S3XML_TOKEN_MAX + 1];
    sto__page_t page; /* LIST: the page being parsed */
    uint64_t listed;
    /* PUT part / multipart */
    uint32_t part;
    int tries;
    struct iovec *piov;
    int npiov;
    mpu_t *mpu;
    /* DEL_BATCH */
    char *dbody;
    uint64_t del_errors; /* quiet DeleteObjects lists only the failures */
    char del_first_err[200];
    s3_op_t *next_free;
};

struct s3_store {
    sto_store_t *s;
    sto_s3_endpoint_t ep;
    sto_s3_creds_t cr;
    sto_sigv4_cache_t cache;
    rx_httpc_t *http; /* shared per loop and endpoint (see make_http) */
    char bucket[STO_S3XML_BUCKET_MAX + 1];
    char base[STO_PATH_MAX + 2]; /* key prefix of the store: "" or "dir/sub/" */
    size_t baselen;
    s3_op_t *free_ops;
    /* open-time bucket probe */
    int probe_done;
    int probe_status, probe_http, probe_error;
    int probe_s3; /* the error came as an S3 Error document */
    char probe_code[48];
    char probe_detail[256];
};

static void op_http_done(rx_httpc_req_t *h);
static int op_submit(s3_op_t *op, const char *method, const char *key, const struct iovec *body,
                     int nbody, int64_t body_len, const char *payload_hash);

/* ---- ops ---- */

static s3_op_t *op_get(s3_store_t *ss, sto_req_t *r, enum kind k)
{
    s3_op_t *op = ss->free_ops;
    if (op) {
        ss->free_ops = op->next_free;
    } else {
        op = malloc(sizeof(*op));
        if (!op)
            return NULL;
    }
    /* clear the small state; the large buffers are written before they are read */
    op->ss = ss;
    op->r = r;
    op->parent = NULL;
    op->kind = k;
    op->nq = op->nxh = 0;
    op->elen = 0;
    op->ebuf[0] = '\0';
    op->reqid[0] = '\0';
    op->xml = NULL;
    op->xml_rc = 0;
    op->clen = 0;
    op->has_clen = 0;
    op->etag[0] = '\0';
    op->token[0] = '\0';
    memset(&op->page, 0, sizeof(op->page));
    op->listed = 0;
    op->part = 0;
    op->tries = 0;
    op->piov = NULL;
    op->npiov = 0;
    op->mpu = NULL;
    op->dbody = NULL;
    op->del_errors = 0;
    op->del_first_err[0] = '\0';
    op->next_free = NULL;
    return op;
}

static void op_put_back(s3_op_t *op)
{
    s3_store_t *ss = op->ss;
    sto_s3xml_free(op->xml);
    op->xml = NULL;
    sto__page_free(&op->page);
    free(op->piov);
    free(op->dbody);
    op->piov = NULL;
    op->dbody = NULL;
    if (op->mpu) {
        free(op->mpu->etags);
        free(op->mpu->body);
        free(op->mpu);
        op->mpu = NULL;
    }
    op->next_free = ss->free_ops;
    ss->free_ops = op;
}

/* ---- results ---- */

/* Completes the sto request of op (puts op back first, so done() may submit at once). */
static void finish(s3_op_t *op, int status)
{
    sto_req_t *r = op->r;
    sto__http_result(r, &op->h, status);
    op_put_back(op);
    r->done(r);
}

/* Maps an HTTP status and S3 error code to a sto code; sets retryable. */
static int map_status(int http, const char *code, int *retryable)
{
    if (http == 404 && code && !strcmp(code, "NoSuchBucket")) {
        *retryable = 0;
        return STO_ENOBUCKET;
    }
    if (code && !strcmp(code, "SlowDown")) {
        *retryable = 1;
        return STO_ETHROTTLE;
    }
    int st = sto__http_status(http, retryable);
    if (code && (!strcmp(code, "RequestTimeout") || !strcmp(code, "InternalError") ||
                 !strcmp(code, "RequestTimeTooSkewed")))
        *retryable = 1;
    return st;
}

/* Fills res from a non-2xx response (or a 200 carrying an Error document): code, detail with
 * the S3 Code, Message and RequestId. */
static int fill_http_error(s3_op_t *op, sto_result_t *res)
{
    s3_store_t *ss = op->ss;
    const rx_httpc_req_t *h = &op->h;
    sto_s3xml_error_t e;
    memset(&e, 0, sizeof(e));
    int have_doc = 0;
    if (op->elen) {
        sto_s3xml_config_t cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.expect = STO_S3XML_ERROR;
        sto_s3xml_parser_t *p = NULL;
        if (sto_s3xml_new(&cfg, &p) == 0) {
            if (sto_s3xml_feed(p, op->ebuf, op->elen, true) == 0 &&
                sto_s3xml_doc(p)->kind == STO_S3XML_ERROR) {
                e = sto_s3xml_doc(p)->error;
                have_doc = 1;
            }
            sto_s3xml_free(p);
        }
    }
    int retry;
    int st = map_status(h->status, have_doc ? e.code : NULL, &retry);
    res->http_status = h->status;
    res->retryable = retry;
    if (have_doc && e.code[0])
        snprintf(res->code, sizeof(res->code), "%s", e.code);
    else
        snprintf(res->code, sizeof(res->code), "HTTP %d", h->status);
    const char *rid = have_doc && e.request_id[0] ? e.request_id : op->reqid;
    char hint[160] = "";
    if (have_doc && !strcmp(e.code, "SignatureDoesNotMatch"))
        snprintf(hint, sizeof(hint), "; check the secret key (credentials: %s)", ss->cr.source);
    else if (h->status == 403 && ss->cr.anonymous)
        snprintf(hint, sizeof(hint), "; the request was anonymous (no credentials found)");
    else if (h->status == 403 && !have_doc)
        snprintf(hint, sizeof(hint), "; check the access key and secret (credentials: %s)",
                 ss->cr.source);
    else if (have_doc && !strcmp(e.code, "InvalidAccessKeyId"))
        snprintf(hint, sizeof(hint), "; credentials: %s", ss->cr.source);
    if (have_doc)
        snprintf(res->detail, sizeof(res->detail), "HTTP %d %s: %s%s%s%s%s", h->status, e.code,
                 e.message[0] ? e.message : "(no message)", rid[0] ? " (RequestId " : "", rid,
                 rid[0] ? ")" : "", hint);
    else
        snprintf(res->detail, sizeof(res->detail), "HTTP %d%s%s%s%s", h->status,
                 rid[0] ? " (RequestId " : "", rid, rid[0] ? ")" : "", hint);
    return st;
}

static int fill_transport_error(const rx_httpc_req_t *h, sto_result_t *res)
{
    res->retryable = h->retryable;
    res->http_status = h->status;
    snprintf(res->code, sizeof(res->code), "%s",
             h->error == RX_ETIMEDOUT     ? "timeout"
             : h->error == UV_ECONNRESET  ? "connection reset"
             : h->error == UV_ECONNREFUSED ? "connection refused"
                                            : rx_strerror(h->error));
    snprintf(res->detail, sizeof(res->detail), "%s", h->detail[0] ? h->detail
                                                                  : rx_strerror(h->error));
    return h->error;
}

/* ---- HTTP callbacks ---- */

static int ieq(const char *a, size_t al, const char *b)
{
    return al == strlen(b) && strncasecmp(a, b, al) == 0;
}

static int op_on_header(rx_httpc_req_t *h, const char *n, size_t nl, const char *v, size_t vl)
{
    s3_op_t *op = h->ud;
    if (ieq(n, nl, "content-length")) {
        uint64_t x = 0;
        size_t i = 0;
        for (; i < vl && v[i] >= '0' && v[i] <= '9' && x < (UINT64_MAX - 9) / 10; i++)
            x = x * 10 + (uint64_t)(v[i] - '0');
        if (i == vl && vl) {
            op->clen = x;
            op->has_clen = 1;
        }
    } else if (ieq(n, nl, "etag")) {
        snprintf(op->etag, sizeof(op->etag), "%.*s", (int)(vl < 128 ? vl : 128), v);
    } else if (ieq(n, nl, "x-amz-request-id")) {
        snprintf(op->reqid, sizeof(op->reqid), "%.*s", (int)(vl < 90 ? vl : 90), v);
    }
    return 0;
}

static int xml_object(void *ud, const sto_s3xml_object_t *o);
static int xml_prefix(void *ud, const char *p, size_t len);
static int xml_delete_error(void *ud, const sto_s3xml_delete_error_t *e);

static int op_on_response(rx_httpc_req_t *h)
{
    s3_op_t *op = h->ud;
    if (h->status < 200 || h->status > 299)
        return 0;
    sto_s3xml_kind_t want;
    switch (op->kind) {
    case K_LIST:
        want = STO_S3XML_LIST_OBJECTS;
        break;
    case K_MPU_INIT:
        want = STO_S3XML_INITIATE_MPU;
        break;
    case K_MPU_COMPLETE:
        want = STO_S3XML_COMPLETE_MPU;
        break;
    case K_DEL_BATCH:
        want = STO_S3XML_DELETE_RESULT;
        break;
    default:
        return 0;
    }
    sto_s3xml_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.expect = want;
    cfg.url_decode = op->kind == K_LIST;
    cfg.ud = op;
    cfg.cb.object = xml_object;
    cfg.cb.common_prefix = xml_prefix;
    cfg.cb.delete_error = xml_delete_error;
    if (op->xml) {
        sto_s3xml_free(op->xml);
        op->xml = NULL;
    }
    int rc = sto_s3xml_new(&cfg, &op->xml);
    return rc < 0 ? RX_ENOMEM : 0;
}

static int op_on_body(rx_httpc_req_t *h, const uint8_t *d, size_t len)
{
    s3_op_t *op = h->ud;
    if (op->xml) {
        if (op->xml_rc == 0)
            op->xml_rc = sto_s3xml_feed(op->xml, d, len, false);
        /* keep the start of the body too: a 200 may carry an Error document */
    } else if (h->status >= 200 && h->status <= 299) {
        return 0; /* object data: counted by the client, dropped */
    }
    if (op->elen < EBUF_MAX) {
        size_t n = len < EBUF_MAX - op->elen ? len : EBUF_MAX - op->elen;
        memcpy(op->ebuf + op->elen, d, n);
        op->elen += n;
        op->ebuf[op->elen] = '\0';
    }
    return 0;
}

/* ---- LIST ---- */

static int xml_object(void *ud, const sto_s3xml_object_t *o)
{
    s3_op_t *op = ud;
    size_t bl = op->ss->baselen;
    if (o->key_len <= bl || memcmp(o->key, op->ss->base, bl) != 0)
        return 0; /* outside the store (a server ignoring the prefix) */
    return sto__page_push(&op->page, o->key + bl, o->key_len - bl, o->size, 0);
}

static int xml_prefix(void *ud, const char *p, size_t len)
{
    s3_op_t *op = ud;
    size_t bl = op->ss->baselen;
    if (len <= bl || memcmp(p, op->ss->base, bl) != 0)
        return 0;
    return sto__page_push(&op->page, p + bl, len - bl, 0, 1);
}

static int list_request(s3_op_t *op)
{
    sto_req_t *r = op->r;
    s3_store_t *ss = op->ss;
    int rc = snprintf(op->key, sizeof(op->key), "%s%s", ss->base, r->key ? r->key : "");
    if (rc < 0 || (size_t)rc >= sizeof(op->key))
        return RX_EINVAL;
    int nq = 0;
    op->nxh = 0;
    op->query[nq++] = (sto_sigv4_kv_t){"list-type", "2"};
    op->query[nq++] = (sto_sigv4_kv_t){"prefix", op->key};
    if (!r->recursive)
        op->query[nq++] = (sto_sigv4_kv_t){"delimiter", "/"};
    if (op->token[0])
        op->query[nq++] = (sto_sigv4_kv_t){"continuation-token", op->token};
    sto__page_reset(&op->page);
    op->elen = 0;
    op->xml_rc = 0;
    op->nq = nq;
    return op_submit(op, "GET", NULL, NULL, 0, -1, NULL);
}

/* A page arrived: deliver it, then ask for the next or finish. */
static void list_page_done(s3_op_t *op)
{
    sto_req_t *r = op->r;
    int rc = op->xml_rc;
    if (rc == 0)
        rc = sto_s3xml_feed(op->xml, "", 0, true);
    if (rc < 0) {
        snprintf(r->res.detail, sizeof(r->res.detail), "ListObjectsV2 response: %s",
                 sto_s3xml_detail(op->xml)[0] ? sto_s3xml_detail(op->xml) : rx_strerror(rc));
        snprintf(r->res.code, sizeof(r->res.code), "bad XML");
        r->res.http_status = op->h.status;
        finish(op, rc == RX_ENOMEM ? RX_ENOMEM : STO_EPROTO);
        return;
    }
    const sto_s3xml_doc_t *doc = sto_s3xml_doc(op->xml);
    if (doc->kind == STO_S3XML_ERROR) {
        finish(op, fill_http_error(op, &r->res));
        return;
    }
    sto_entry_t *ents = sto__page_entries(&op->page);
    if (op->page.n && r->on_page)
        r->on_page(r, ents, op->page.n);
    op->listed += op->page.n;
    r->res.bytes = op->listed;
    if (doc->is_truncated) {
        if (!doc->next_continuation_token[0]) {
            snprintf(r->res.detail, sizeof(r->res.detail),
                     "ListObjectsV2: truncated page without NextContinuationToken");
            finish(op, STO_EPROTO);
            return;
        }
        snprintf(op->token, sizeof(op->token), "%s", doc->next_continuation_token);
        rc = list_request(op);
        if (rc < 0) {
            snprintf(r->res.detail, sizeof(r->res.detail), "next list page: %s", rx_strerror(rc));
            finish(op, rc);
        }
        return;
    }
    finish(op, 0);
}

/* ---- DeleteObjects ---- */

static int xml_delete_error(void *ud, const sto_s3xml_delete_error_t *e)
{
    s3_op_t *op = ud;
    op->del_errors++;
    if (!op->del_first_err[0])
        snprintf(op->del_first_err, sizeof(op->del_first_err), "%s: %s %s", e->key, e->code,
                 e->message);
    return 0;
}

static void b64(const unsigned char *in, size_t n, char *out, size_t cap)
{
    size_t olen = 0;
    if (mbedtls_base64_encode((unsigned char *)out, cap, &olen, in, n) != 0)
        olen = 0;
    out[olen] = '\0';
}

static void sha256_iov(const struct iovec *iov, int n, char out[STO_SHA256_HEX_LEN + 1])
{
    mbedtls_sha256_context c;
    unsigned char d[32];
    mbedtls_sha256_init(&c);
    mbedtls_sha256_starts_ret(&c, 0);
    for (int i = 0; i < n; i++)
        mbedtls_sha256_update_ret(&c, iov[i].iov_base, iov[i].iov_len);
    mbedtls_sha256_finish_ret(&c, d);
    mbedtls_sha256_free(&c);
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[64] = '\0';
}

static int del_batch_start(s3_op_t *op)
{
    sto_req_t *r = op->r;
    s3_store_t *ss = op->ss;
    if (r->nkeys == 0 || r->nkeys > 1000)
        return RX_EINVAL;
    const char **full = malloc(r->nkeys * sizeof(*full));
    size_t tot = 0;
    for (size_t i = 0; i < r->nkeys; i++)
        tot += ss->baselen + strlen(r->keys[i]) + 1;
    char *kb = malloc(tot ? tot : 1);
    if (!full || !kb) {
        free(full);
        free(kb);
        return RX_ENOMEM;
    }
    char *w = kb;
    for (size_t i = 0; i < r->nkeys; i++) {
        full[i] = w;
        w += sprintf(w, "%s%s", ss->base, r->keys[i]) + 1;
    }
    size_t cap = tot * 6 + 256 + r->nkeys * 40;
    op->dbody = malloc(cap);
    int n = op->dbody ? sto_s3xml_delete_body(full, r->nkeys, true, op->dbody, cap) : -ENOMEM;
    free(full);
    free(kb);
    if (n < 0)
        return n == -ENOMEM ? RX_ENOMEM : RX_EINVAL;
    unsigned char md[16];
    mbedtls_md5_ret((const unsigned char *)op->dbody, (size_t)n, md);
    b64(md, 16, op->md5, sizeof(op->md5));
    op->xh[0] = (sto_sigv4_kv_t){"content-md5", op->md5};
    op->query[0] = (sto_sigv4_kv_t){"delete", ""};
    op->nxh = op->nq = 1;
    op->piov = malloc(sizeof(*op->piov));
    if (!op->piov)
        return RX_ENOMEM;
    op->piov[0].iov_base = op->dbody;
    op->piov[0].iov_len = (size_t)n;
    sha256_iov(op->piov, 1, op->sha);
    return op_submit(op, "POST", NULL, op->piov, 1, n, op->sha);
}

/* ---- multipart ---- */

/* Slices [off, off+len) of iov into a new array. */
static int slice_iov(const struct iovec *iov, int n, uint64_t off, uint64_t len,
                     struct iovec **out, int *nout)
{
    struct iovec *v = malloc(((size_t)n + 1) * sizeof(*v));
    if (!v)
        return RX_ENOMEM;
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
        v[k].iov_base = (char *)iov[i].iov_base + skip;
        v[k].iov_len = (size_t)take;
        k++;
        len -= take;
        off += take;
        pos += l;
    }
    *out = v;
    *nout = k;
    return 0;
}

static void mpu_fail(mpu_t *m, int error, int retryable, int http, const char *code,
                     const char *detail)
{
    if (m->error)
        return;
    m->error = error;
    m->retryable = retryable;
    m->http_status = http;
    snprintf(m->code, sizeof(m->code), "%s", code ? code : "");
    snprintf(m->detail, sizeof(m->detail), "%s", detail ? detail : "");
}

static void mpu_abort(s3_op_t *put);
static void mpu_complete(s3_op_t *put);

static int part_submit(s3_op_t *p)
{
    s3_op_t *put = p->parent;
    mpu_t *m = put->mpu;
    snprintf(p->pnum, sizeof(p->pnum), "%u", p->part);
    p->query[0] = (sto_sigv4_kv_t){"partNumber", p->pnum};
    p->query[1] = (sto_sigv4_kv_t){"uploadId", m->upload_id};
    p->nq = 2;
    p->etag[0] = '\0';
    p->elen = 0;
    uint64_t off = (uint64_t)(p->part - 1) * m->part_size;
    uint64_t len = m->total - off < m->part_size ? m->total - off : m->part_size;
    if (!p->piov) {
        int rc = slice_iov(put->r->iov, put->r->iovcnt, off, len, &p->piov, &p->npiov);
        if (rc < 0)
            return rc;
    }
    const char *ph = STO_SIGV4_UNSIGNED_PAYLOAD;
    if (put->ss->s->opts.sign_payload) {
        sha256_iov(p->piov, p->npiov, p->sha);
        ph = p->sha;
    }
    return op_submit(p, "PUT", put->key, p->piov, p->npiov, (int64_t)len, ph);
}

/* Issues parts while the window allows. */
static void mpu_pump(s3_op_t *put)
{
    mpu_t *m = put->mpu;
    while (!m->error && m->next <= m->nparts &&
           m->inflight < (uint32_t)put->ss->s->opts.part_concurrency) {
        s3_op_t *p = op_get(put->ss, NULL, K_MPU_PART);
        if (!p) {
            mpu_fail(m, RX_ENOMEM, 0, 0, "no memory", "multipart: out of memory");
            break;
        }
        p->parent = put;
        p->part = m->next++;
        m->inflight++;
        int rc = part_submit(p);
        if (rc < 0) {
            m->inflight--;
            mpu_fail(m, rc, 0, 0, rx_strerror(rc), "multipart: cannot submit a part");
            op_put_back(p);
            break;
        }
    }
    if (m->inflight == 0) {
        if (m->error)
            mpu_abort(put);
        else if (m->ndone == m->nparts)
            mpu_complete(put);
    }
}

static void part_done(s3_op_t *p)
{
    s3_op_t *put = p->parent;
    mpu_t *m = put->mpu;
    rx_httpc_req_t *h = &p->h;
    sto_result_t tmp;
    memset(&tmp, 0, sizeof(tmp));
    int st = 0;
    if (h->error)
        st = fill_transport_error(h, &tmp);
    else if (h->status < 200 || h->status > 299)
        st = fill_http_error(p, &tmp);
    else if (!p->etag[0]) {
        st = STO_EPROTO;
        snprintf(tmp.detail, sizeof(tmp.detail), "UploadPart %u: response without ETag",
                 p->part);
        snprintf(tmp.code, sizeof(tmp.code), "no ETag");
    }
    if (st && tmp.retryable && p->tries < PART_RETRIES && !m->error) {
        p->tries++;
        if (part_submit(p) == 0)
            return;
    }
    m->inflight--;
    if (st) {
        char d[256];
        snprintf(d, sizeof(d), "part %u: %s", p->part, tmp.detail);
        mpu_fail(m, st, tmp.retryable, tmp.http_status, tmp.code, d);
    } else {
        snprintf(m->etags[p->part - 1], sizeof(m->etags[0]), "%s", p->etag);
        m->ndone++;
    }
    op_put_back(p);
    mpu_pump(put);
}

static void mpu_complete(s3_op_t *put)
{
    mpu_t *m = put->mpu;
    sto_s3xml_part_ref_t *refs = malloc(m->nparts * sizeof(*refs));
    size_t cap = (size_t)m->nparts * (STO_S3XML_ETAG_MAX + 64) + 256;
    m->body = malloc(cap);
    if (!refs || !m->body) {
        free(refs);
        mpu_fail(m, RX_ENOMEM, 0, 0, "no memory", "multipart: out of memory");
        mpu_abort(put);
        return;
    }
    for (uint32_t i = 0; i < m->nparts; i++)
        refs[i] = (sto_s3xml_part_ref_t){i + 1, m->etags[i]};
    int n = sto_s3xml_complete_mpu_body(refs, m->nparts, m->body, cap);
    free(refs);
    if (n < 0) {
        mpu_fail(m, RX_EINVAL, 0, 0, "bad ETag", "multipart: an ETag cannot be sent back in XML");
        mpu_abort(put);
        return;
    }
    put->kind = K_MPU_COMPLETE;
    put->query[0] = (sto_sigv4_kv_t){"uploadId", m->upload_id};
    put->nq = 1;
    free(put->piov);
    put->piov = malloc(sizeof(*put->piov));
    if (!put->piov) {
        mpu_fail(m, RX_ENOMEM, 0, 0, "no memory", "multipart: out of memory");
        mpu_abort(put);
        return;
    }
    put->piov[0].iov_base = m->body;
    put->piov[0].iov_len = (size_t)n;
    sha256_iov(put->piov, 1, put->sha);
    put->elen = 0;
    int rc = op_submit(put, "POST", put->key, put->piov, 1, n, put->sha);
    if (rc < 0) {
        mpu_fail(m, rc, 0, 0, rx_strerror(rc), "multipart: cannot submit the completion");
        mpu_abort(put);
    }
}

static void mpu_abort(s3_op_t *put)
{
    mpu_t *m = put->mpu;
    if (!m->upload_id[0]) {
        goto report;
    }
    put->kind = K_MPU_ABORT;
    put->query[0] = (sto_sigv4_kv_t){"uploadId", m->upload_id};
    put->nq = 1;
    put->elen = 0;
    if (op_submit(put, "DELETE", put->key, NULL, 0, -1, NULL) == 0)
        return;
report:;
    sto_req_t *r = put->r;
    r->res.retryable = m->retryable;
    r->res.http_status = m->http_status;
    snprintf(r->res.code, sizeof(r->res.code), "%s", m->code);
    snprintf(r->res.detail, sizeof(r->res.detail), "%s", m->detail);
    finish(put, m->error);
}

static int mpu_start(s3_op_t *put, uint64_t total)
{
    s3_store_t *ss = put->ss;
    mpu_t *m = calloc(1, sizeof(*m));
    if (!m)
        return RX_ENOMEM;
    put->mpu = m;
    m->total = total;
    m->part_size = ss->s->opts.part_size;
    uint64_t np = (total + m->part_size - 1) / m->part_size;
    if (np > 10000) {
        /* S3 allows 10,000 parts: grow the part size to fit */
        m->part_size = (total + 9999) / 10000;
        np = (total + m->part_size - 1) / m->part_size;
    }
    m->nparts = (uint32_t)np;
    m->next = 1;
    m->etags = calloc(np, sizeof(*m->etags));
    if (!m->etags)
        return RX_ENOMEM;
    put->kind = K_MPU_INIT;
    put->query[0] = (sto_sigv4_kv_t){"uploads", ""};
    put->nq = 1;
    return op_submit(put, "POST", put->key, NULL, 0, -1, NULL);
}

/* Ends the XML document of a 2xx multipart response. Returns it, or NULL after failing and
 * aborting the upload (bad XML, or an Error document: S3 may answer 200 with one). */
static const sto_s3xml_doc_t *mpu_doc(s3_op_t *put)
{
    mpu_t *m = put->mpu;
    int rc = put->xml_rc;
    if (rc == 0)
        rc = sto_s3xml_feed(put->xml, "", 0, true);
    if (rc < 0) {
        mpu_fail(m, STO_EPROTO, 0, put->h.status, "bad XML", sto_s3xml_detail(put->xml));
        mpu_abort(put);
        return NULL;
    }
    const sto_s3xml_doc_t *doc = sto_s3xml_doc(put->xml);
    if (doc->kind == STO_S3XML_ERROR) {
        sto_result_t tmp;
        memset(&tmp, 0, sizeof(tmp));
        int st = fill_http_error(put, &tmp);
        mpu_fail(m, st, tmp.retryable, tmp.http_status, tmp.code, tmp.detail);
        mpu_abort(put);
        return NULL;
    }
    return doc;
}

static void mpu_init_done(s3_op_t *put)
{
    mpu_t *m = put->mpu;
    const sto_s3xml_doc_t *doc = mpu_doc(put);
    if (!doc)
        return;
    if (!doc->upload_id[0]) {
        mpu_fail(m, STO_EPROTO, 0, put->h.status, "bad XML",
                 "CreateMultipartUpload response without UploadId");
        mpu_abort(put);
        return;
    }
    snprintf(m->upload_id, sizeof(m->upload_id), "%s", doc->upload_id);
    sto_s3xml_free(put->xml);
    put->xml = NULL;
    mpu_pump(put);
}

static void mpu_complete_done(s3_op_t *put)
{
    if (!mpu_doc(put))
        return;
    put->r->res.bytes = put->mpu->total;
    put->r->res.http_status = put->h.status;
    finish(put, 0);
}

/* ---- request submission ---- */

static int op_submit(s3_op_t *op, const char *method, const char *key, const struct iovec *body,
                     int nbody, int64_t body_len, const char *payload_hash)
{
    s3_store_t *ss = op->ss;
    sto_s3_req_in_t in;
    memset(&in, 0, sizeof(in));
    in.method = method;
    in.bucket = ss->bucket;
    in.key = key;
    in.query = op->query;
    in.headers = op->xh;
    in.content_length = -1;
    in.payload_hash = payload_hash;
    in.time = (int64_t)time(NULL);
    in.nquery = (size_t)op->nq;
    in.nheaders = (size_t)op->nxh;
    char err[160] = "";
    int rc = sto_s3_request_build(&ss->ep, &ss->cr, &ss->cache, &in, &op->sq, err, sizeof(err));
    if (rc < 0)
        return rc == -ENOSPC ? STO_EURI : RX_EINVAL;
    for (size_t i = 0; i < op->sq.nheaders; i++) {
        op->hdr[i].name = op->sq.headers[i].name;
        op->hdr[i].name_len = strlen(op->sq.headers[i].name);
        op->hdr[i].value = op->sq.headers[i].value;
        op->hdr[i].value_len = strlen(op->sq.headers[i].value);
    }
    rx_httpc_req_t *h = &op->h;
    memset(h, 0, offsetof(rx_httpc_req_t, error));
    h->method = method;
    h->target = op->sq.target;
    h->headers = op->hdr;
    h->nheaders = op->sq.nheaders;
    h->body = body;
    h->nbody = nbody;
    h->body_len = body_len >= 0 ? body_len : (!strcmp(method, "PUT") || !strcmp(method, "POST")
                                                  ? 0
                                                  : -1);
    h->head = !strcmp(method, "HEAD");
    h->on_response = op_on_response;
    h->on_header = op_on_header;
    h->on_body = op_on_body;
    h->done = op_http_done;
    h->ud = op;
    return rx_httpc_submit(ss->http, h);
}

static void op_http_done(rx_httpc_req_t *h)
{
    s3_op_t *op = h->ud;
    switch (op->kind) {
    case K_MPU_PART:
        part_done(op);
        return;
    case K_MPU_INIT:
    case K_MPU_COMPLETE:
        if (h->error || h->status < 200 || h->status > 299) {
            sto_result_t tmp;
            memset(&tmp, 0, sizeof(tmp));
            int st = h->error ? fill_transport_error(h, &tmp) : fill_http_error(op, &tmp);
            mpu_fail(op->mpu, st, tmp.retryable, tmp.http_status, tmp.code, tmp.detail);
            mpu_abort(op);
        } else if (op->kind == K_MPU_INIT) {
            mpu_init_done(op);
        } else {
            mpu_complete_done(op);
        }
        return;
    case K_MPU_ABORT: {
        /* the upload failed earlier; report that failure, noting a failed abort */
        mpu_t *m = op->mpu;
        sto_req_t *r = op->r;
        r->res.retryable = m->retryable;
        r->res.http_status = m->http_status;
        snprintf(r->res.code, sizeof(r->res.code), "%s", m->code);
        if (h->error || h->status < 200 || h->status > 299)
            snprintf(r->res.detail, sizeof(r->res.detail), "%.190s (abort failed: HTTP %d %s)",
                     m->detail, h->status, h->error ? rx_strerror(h->error) : "");
        else
            snprintf(r->res.detail, sizeof(r->res.detail), "%s (upload aborted)", m->detail);
        finish(op, m->error);
        return;
    }
    case K_BUCKET_HEAD:
    case K_BUCKET_CREATE: {
        s3_store_t *ss = op->ss;
        ss->probe_done = 1;
        ss->probe_http = h->status;
        ss->probe_error = h->error;
        sto_result_t tmp;
        memset(&tmp, 0, sizeof(tmp));
        if (h->error)
            ss->probe_status = fill_transport_error(h, &tmp);
        else if (h->status < 200 || h->status > 299)
            ss->probe_status = fill_http_error(op, &tmp);
        else
            ss->probe_status = 0;
        ss->probe_s3 = tmp.code[0] && strncmp(tmp.code, "HTTP ", 5) != 0;
        snprintf(ss->probe_code, sizeof(ss->probe_code), "%s", tmp.code);
        snprintf(ss->probe_detail, sizeof(ss->probe_detail), "%s", tmp.detail);
        op_put_back(op);
        return;
    }
    default:
        break;
    }
    sto_req_t *r = op->r;
    r->res.http_status = h->status;
    if (h->error) {
        finish(op, fill_transport_error(h, &r->res));
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
    case K_HEAD:
        r->res.bytes = op->has_clen ? op->clen : 0;
        finish(op, 0);
        return;
    case K_DEL:
        finish(op, 0);
        return;
    case K_LIST:
        list_page_done(op);
        return;
    case K_DEL_BATCH: {
        int rc = op->xml_rc;
        if (rc == 0)
            rc = sto_s3xml_feed(op->xml, "", 0, true);
        if (rc < 0) {
            snprintf(r->res.detail, sizeof(r->res.detail), "DeleteObjects response: %s",
                     sto_s3xml_detail(op->xml));
            snprintf(r->res.code, sizeof(r->res.code), "bad XML");
            finish(op, STO_EPROTO);
            return;
        }
        if (sto_s3xml_doc(op->xml)->kind == STO_S3XML_ERROR) {
            finish(op, fill_http_error(op, &r->res));
            return;
        }
        r->res.bytes = r->nkeys - (op->del_errors < r->nkeys ? op->del_errors : r->nkeys);
        if (op->del_errors) {
            snprintf(r->res.code, sizeof(r->res.code), "DeleteObjects error");
            snprintf(r->res.detail, sizeof(r->res.detail), "%llu of %zu keys not deleted; %s",
                     (unsigned long long)op->del_errors, r->nkeys, op->del_first_err);
            finish(op, STO_EHTTP);
            return;
        }
        finish(op, 0);
        return;
    }
    default:
        finish(op, STO_EPROTO);
        return;
    }
}

/* ---- backend entry points ---- */

static int s3_submit(sto_store_t *s, sto_req_t *r)
{
    s3_store_t *ss = sto_store_priv(s);
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
    case STO_OP_DEL_BATCH:
        k = K_DEL_BATCH;
        break;
    default:
        return STO_ENOTSUP;
    }
    s3_op_t *op = op_get(ss, r, k);
    if (!op)
        return RX_ENOMEM;
    int rc = 0;
    if (k != K_LIST && k != K_DEL_BATCH) {
        int n = snprintf(op->key, sizeof(op->key), "%s%s", ss->base, r->key);
        if (n < 0 || (size_t)n >= sizeof(op->key)) {
            op_put_back(op);
            return RX_EINVAL;
        }
    }
    switch (k) {
    case K_GET:
        op->range[0] = '\0';
        if (r->offset || r->length) {
            if (r->length)
                snprintf(op->range, sizeof(op->range), "bytes=%llu-%llu",
                         (unsigned long long)r->offset,
                         (unsigned long long)(r->offset + r->length - 1));
            else
                snprintf(op->range, sizeof(op->range), "bytes=%llu-",
                         (unsigned long long)r->offset);
            op->xh[0] = (sto_sigv4_kv_t){"range", op->range};
            op->nxh = 1;
        }
        rc = op_submit(op, "GET", op->key, NULL, 0, -1, NULL);
        break;
    case K_PUT: {
        uint64_t total = 0;
        for (int i = 0; i < r->iovcnt; i++)
            total += r->iov[i].iov_len;
        if (total >= s->opts.multipart_threshold && total > s->opts.part_size) {
            rc = mpu_start(op, total);
            break;
        }
        const char *ph = STO_SIGV4_UNSIGNED_PAYLOAD;
        if (s->opts.sign_payload) {
            sha256_iov(r->iov, r->iovcnt, op->sha);
            ph = op->sha;
        } else if (total == 0) {
            ph = NULL;
        }
        rc = op_submit(op, "PUT", op->key, r->iov, r->iovcnt, (int64_t)total, ph);
        break;
    }
    case K_HEAD:
        rc = op_submit(op, "HEAD", op->key, NULL, 0, -1, NULL);
        break;
    case K_DEL:
        rc = op_submit(op, "DELETE", op->key, NULL, 0, -1, NULL);
        break;
    case K_LIST:
        rc = list_request(op);
        break;
    case K_DEL_BATCH:
        rc = del_batch_start(op);
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
static void release_http(s3_store_t *x)
{
    if (x->http)
        sto__http_release(x->http);
    x->http = NULL;
}

static int make_http(s3_store_t *x, uv_loop_t *loop, char *err, size_t errlen)
{
    return sto__http_acquire(x->s, loop, x->ep.host, x->ep.port, x->ep.tls, &x->http, err, errlen);
}

/* With create_base: list one key of the bucket on a private loop, create it when missing. */
static int probe_bucket(s3_store_t *ss, char *err, size_t errlen)
{
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc < 0) {
        snprintf(err, errlen, "uv_loop_init: %s", uv_strerror(rc));
        return rc;
    }
    rc = make_http(ss, &loop, err, errlen);
    if (rc == 0) {
        for (int step = 0; step < 2; step++) {
            s3_op_t *op = op_get(ss, NULL, step == 0 ? K_BUCKET_HEAD : K_BUCKET_CREATE);
            if (!op) {
                rc = RX_ENOMEM;
                break;
            }
            ss->probe_done = 0;
            ss->probe_detail[0] = '\0';
            char body[300];
            struct iovec iov;
            int n = 0;
            if (step == 1 && strcmp(ss->ep.region, "us-east-1") != 0) {
                n = snprintf(body, sizeof(body),
                             "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/"
                             "2006-03-01/\"><LocationConstraint>%s</LocationConstraint>"
                             "</CreateBucketConfiguration>",
                             ss->ep.region);
                iov.iov_base = body;
                iov.iov_len = (size_t)n;
                sha256_iov(&iov, 1, op->sha);
            }
            /* a one-key listing rather than HEAD: its errors come with an XML body */
            op->query[0] = (sto_sigv4_kv_t){"list-type", "2"};
            op->query[1] = (sto_sigv4_kv_t){"max-keys", "1"};
            op->nq = step == 0 ? 2 : 0;
            rc = step == 0 ? op_submit(op, "GET", NULL, NULL, 0, -1, NULL)
                           : op_submit(op, "PUT", NULL, n ? &iov : NULL, n ? 1 : 0, n,
                                       n ? op->sha : NULL);
            if (rc < 0) {
                op_put_back(op);
                snprintf(err, errlen, "bucket %s: %s", ss->bucket, rx_strerror(rc));
                break;
            }
            while (!ss->probe_done)
                uv_run(&loop, UV_RUN_ONCE);
            rc = ss->probe_status;
            int missing = ss->probe_http == 404 && !strcmp(ss->probe_code, "NoSuchBucket");
            if (step == 0 && missing && !ss->s->opts.no_create_bucket)
                continue; /* missing: create it */
            /* A server that is not S3 (plain HTTP, WebDAV) answers the listing with something
             * else than an S3 document: nothing to check or create then. Authentication
             * failures and S3 errors stop the open. */
            if (rc < 0 && !ss->probe_error && !ss->probe_s3 && ss->probe_http != 401 &&
                ss->probe_http != 403)
                rc = 0;
            if (rc < 0) {
                if (ss->probe_error)
                    snprintf(err, errlen, "cannot reach the S3 endpoint %s://%s:%d (%s): %s",
                             ss->ep.tls ? "https" : "http", ss->ep.host, ss->ep.port,
                             ss->ep.source, ss->probe_detail);
                else if (step == 0 && missing)
                    snprintf(err, errlen, "bucket %s does not exist (creating it is disabled)",
                             ss->bucket);
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

static void s3_close(sto_store_t *s)
{
    s3_store_t *ss = sto_store_priv(s);
    if (ss->http)
        release_http(ss);
    while (ss->free_ops) {
        s3_op_t *op = ss->free_ops;
        ss->free_ops = op->next_free;
        free(op);
    }
}

static int s3_open(sto_store_t *s, const sto_uri_t *u, char *err, size_t errlen)
{
    s3_store_t *ss = sto_store_priv(s);
    ss->s = s;
    int rc = sto_s3_endpoint_resolve(u, s->opts.endpoint, s->opts.virtual_host, &ss->ep, err,
                                     errlen);
    if (rc < 0)
        return rc;
    rc = sto_s3_creds_load(&ss->cr, err, errlen);
    if (rc < 0)
        return rc;
    sto_sigv4_cache_init(&ss->cache);
    if (strlen(u->authority) >= sizeof(ss->bucket)) {
        snprintf(err, errlen, "bucket name too long");
        return STO_EURI;
    }
    snprintf(ss->bucket, sizeof(ss->bucket), "%s", u->authority);
    if (u->path[0]) {
        int n = snprintf(ss->base, sizeof(ss->base), "%s/", u->path);
        if (n < 0 || (size_t)n >= sizeof(ss->base)) {
            snprintf(err, errlen, "key prefix too long");
            return STO_EURI;
        }
    }
    ss->baselen = strlen(ss->base);
    if (s->create_base) {
        rc = probe_bucket(ss, err, errlen);
        if (rc < 0) {
            s3_close(s);
            return rc;
        }
    }
    rc = make_http(ss, s->loop, err, errlen);
    if (rc < 0) {
        s3_close(s);
        return rc;
    }
    return 0;
}

const sto_backend_t sto__s3_backend = {
    .name = "s3",
    .caps = STO_CAP_RANGE | STO_CAP_MULTIPART | STO_CAP_BATCH_DELETE | STO_CAP_LIST_PAGES,
    .store_size = sizeof(s3_store_t),
    .open = s3_open,
    .close = s3_close,
    .submit = s3_submit,
};
