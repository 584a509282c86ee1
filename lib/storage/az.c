/* az:// backend: Azure Blob REST over the per-core HTTP client pool (rx/httpc.h), SharedKey or
 * SAS (sto/azauth.h), streaming XML (sto/azxml.h). One store per base URI per core; everything
 * runs on the loop thread. az://account/container/prefix/: the account and container come from
 * the URI, the endpoint and credentials from sto/azauth.h's rules.
 *
 * Operations: GET (Get Blob, ranges by the standard Range header, which Azure honours as it does
 * x-ms-range and other HTTP servers understand too; TTFB = first response byte), PUT (Put Blob as
 * a BlockBlob; at or above opts.multipart_threshold: Put Block of opts.part_size blocks, up to
 * opts.part_concurrency in flight, a failed block retried twice when retryable, then Put Block
 * List; uncommitted blocks of a failed upload are left for Azure to discard), HEAD (Get Blob
 * Properties), LIST (List Blobs, paged by marker, delimiter '/' unless recursive), DEL (Delete
 * Blob; a missing blob is STO_ENOTFOUND). MKDIR and RMDIR are STO_ENOTSUP; there is no batch
 * delete (Blob Batch is multipart/mixed). With create_base, open lists the container on a
 * private loop and creates it when it is missing (unless opts.no_create_bucket).
 */
#include <errno.h>
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
#include "sto/azauth.h"
#include "sto/azxml.h"
#include "sto/backend.h"
#include "sto/err.h"
#include "sto_internal.h"

#define EBUF_MAX 4096
#define BLOCK_RETRIES 2
#define LIST_PAGE "1000"
#define MAX_BLOCKS 50000u
#define MAX_BLOCK_SIZE (4000ull << 20)
#define CONTAINER_MAX 63

enum kind {
    K_GET,
    K_PUT,
    K_HEAD,
    K_LIST,
    K_DEL,
    K_BLOCK,
    K_BLOCK_LIST,
    K_PROBE,
    K_CREATE,
};

typedef struct az_store az_store_t;
typedef struct az_op az_op_t;

/* A block upload: the PUT's op keeps it; each block is an op of its own. */
typedef struct blocks {
    uint64_t total;
    uint64_t block_size;
    uint32_t n;
    uint32_t next; /* next block index to issue (0-based) */
    uint32_t inflight;
    uint32_t ndone;
    uint32_t nonce;
    int error; /* first failure */
    int retryable;
    int http_status;
    char code[48];
    char detail[256];
    char *body; /* Put Block List document */
} blocks_t;

struct az_op {
    az_store_t *as;
    sto_req_t *r;    /* the PUT for a block; NULL for the open-time probe */
    az_op_t *parent; /* block → the PUT */
    enum kind kind;
    rx_httpc_req_t h;
    sto_az_request_t rq;
    rx_http1_header_t hdr[STO_AZ_MAX_HEADERS];
    sto_az_kv_t query[7];
    sto_az_kv_t xh[2];
    int nq, nxh;
    char blob[STO_PATH_MAX + 16];
    char range[64];
    char block_id[STO_AZ_BLOCK_ID_LEN + 1];
    char reqid[96];
    char hcode[64]; /* x-ms-error-code */
    char ebuf[EBUF_MAX + 1];
    size_t elen;
    sto_azxml_parser_t *xml;
    int xml_rc;
    uint64_t clen;
    int has_clen;
    /* LIST */
    char prefix[STO_PATH_MAX + 16];
    char marker[STO_AZXML_MARKER_MAX + 1];
    sto__page_t page; /* LIST: the page being parsed */
    uint64_t listed;
    /* block uploads */
    uint32_t block;
    int tries;
    struct iovec *piov;
    int npiov;
    blocks_t *bl;
    az_op_t *next_free;
};

struct az_store {
    sto_store_t *s;
    sto_az_endpoint_t ep;
    sto_az_creds_t cr;
    rx_httpc_t *http; /* shared per loop and endpoint (see make_http) */
    char container[CONTAINER_MAX + 1];
    char base[STO_PATH_MAX + 2]; /* blob name prefix of the store: "" or "dir/sub/" */
    size_t baselen;
    uint32_t nonce_seq;
    az_op_t *free_ops;
    /* open-time container probe */
    int probe_done;
    int probe_status, probe_http, probe_error;
    int probe_az; /* the error came with an Azure error code */
    char probe_code[48];
    char probe_detail[256];
};

static void op_http_done(rx_httpc_req_t *h);
static int op_submit(az_op_t *op, const char *method, const char *blob, const struct iovec *body,
                     int nbody, int64_t body_len);

/* ---- ops ---- */

static az_op_t *op_get(az_store_t *as, sto_req_t *r, enum kind k)
{
    az_op_t *op = as->free_ops;
    if (op) {
        as->free_ops = op->next_free;
    } else {
        op = malloc(sizeof(*op));
        if (!op)
            return NULL;
    }
    /* the small state; large buffers are written before they are read */
    op->as = as;
    op->r = r;
    op->parent = NULL;
    op->kind = k;
    op->nq = op->nxh = 0;
    op->elen = 0;
    op->ebuf[0] = '\0';
    op->reqid[0] = '\0';
    op->hcode[0] = '\0';
    op->xml = NULL;
    op->xml_rc = 0;
    op->clen = 0;
    op->has_clen = 0;
    op->marker[0] = '\0';
    memset(&op->page, 0, sizeof(op->page));
    op->listed = 0;
    op->block = 0;
    op->tries = 0;
    op->piov = NULL;
    op->npiov = 0;
    op->bl = NULL;
    op->next_free = NULL;
    return op;
}

static void op_put_back(az_op_t *op)
{
    az_store_t *as = op->as;
    sto_azxml_free(op->xml);
    op->xml = NULL;
    sto__page_free(&op->page);
    free(op->piov);
    op->piov = NULL;
    if (op->bl) {
        free(op->bl->body);
        free(op->bl);
        op->bl = NULL;
    }
    op->next_free = as->free_ops;
    as->free_ops = op;
}

/* ---- results ---- */

/* Completes the sto request of op (op goes back first, so done() may submit at once). */
static void finish(az_op_t *op, int status)
{
    sto_req_t *r = op->r;
    sto__http_result(r, &op->h, status);
    op_put_back(op);
    r->done(r);
}

/* Maps an HTTP status and Azure error code to a sto code; sets retryable. */
static int map_status(int http, const char *code, int *retryable)
{
    if (http == 404 && code && !strcmp(code, "ContainerNotFound")) {
        *retryable = 0;
        return STO_ENOBUCKET;
    }
    if (code && !strcmp(code, "ServerBusy")) {
        *retryable = 1;
        return STO_ETHROTTLE;
    }
    int st = sto__http_status(http, retryable);
    if (code && !strcmp(code, "OperationTimedOut"))
        *retryable = 1;
    return st;
}

/* The first line of an Azure message (the others are "RequestId:..." and "Time:..."). */
static void first_line(const char *m, char *out, size_t cap)
{
    size_t n = strcspn(m, "\r\n");
    while (n && (m[n - 1] == ' ' || m[n - 1] == '.'))
        n--;
    snprintf(out, cap, "%.*s", (int)n, m);
}

/* Fills res from a non-2xx response: code (the Azure error code of the body, else of the
 * x-ms-error-code header, else "HTTP <status>") and detail "HTTP 403 Code: Message; hint". */
static int fill_http_error(az_op_t *op, sto_result_t *res)
{
    az_store_t *as = op->as;
    const rx_httpc_req_t *h = &op->h;
    sto_azxml_error_t e;
    memset(&e, 0, sizeof(e));
    int have_doc = 0;
    if (op->elen) {
        sto_azxml_config_t cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.expect = STO_AZXML_ERROR;
        sto_azxml_parser_t *p = NULL;
        if (sto_azxml_new(&cfg, &p) == 0) {
            if (sto_azxml_feed(p, op->ebuf, op->elen, true) == 0 &&
                sto_azxml_doc(p)->kind == STO_AZXML_ERROR) {
                e = sto_azxml_doc(p)->error;
                have_doc = 1;
            }
            sto_azxml_free(p);
        }
    }
    const char *code = have_doc && e.code[0] ? e.code : op->hcode[0] ? op->hcode : NULL;
    int retry;
    int st = map_status(h->status, code, &retry);
    res->http_status = h->status;
    res->retryable = retry;
    if (code)
        snprintf(res->code, sizeof(res->code), "%s", code);
    else
        snprintf(res->code, sizeof(res->code), "HTTP %d", h->status);
    char msg[200] = "";
    if (have_doc && e.message[0])
        first_line(e.message, msg, sizeof(msg));
    char hint[200] = "";
    if (h->status == 403 || h->status == 401) {
        switch (as->cr.auth) {
        case STO_AZ_SHARED_KEY:
            snprintf(hint, sizeof(hint), "; check the account key of %s (credentials: %s)",
                     as->cr.account, as->cr.source);
            break;
        case STO_AZ_SAS:
            snprintf(hint, sizeof(hint),
                     "; check the SAS token's permissions, resource types and expiry "
                     "(credentials: %s)",
                     as->cr.source);
            break;
        default:
            snprintf(hint, sizeof(hint),
                     "; the request was anonymous: set AZURE_STORAGE_CONNECTION_STRING, or "
                     "AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN");
            break;
        }
    }
    const char *rid = op->reqid;
    snprintf(res->detail, sizeof(res->detail), "HTTP %d%s%s%s%s%s%s%s%s", h->status,
             code ? " " : "", code ? code : "", msg[0] ? ": " : "", msg,
             rid[0] && !hint[0] ? " (RequestId " : "", rid[0] && !hint[0] ? rid : "",
             rid[0] && !hint[0] ? ")" : "", hint);
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

/* ---- HTTP callbacks ---- */

static int ieq(const char *a, size_t al, const char *b)
{
    return al == strlen(b) && strncasecmp(a, b, al) == 0;
}

static int op_on_header(rx_httpc_req_t *h, const char *n, size_t nl, const char *v, size_t vl)
{
    az_op_t *op = h->ud;
    if (ieq(n, nl, "content-length")) {
        uint64_t x = 0;
        size_t i = 0;
        for (; i < vl && v[i] >= '0' && v[i] <= '9' && x < (UINT64_MAX - 9) / 10; i++)
            x = x * 10 + (uint64_t)(v[i] - '0');
        if (i == vl && vl) {
            op->clen = x;
            op->has_clen = 1;
        }
    } else if (ieq(n, nl, "x-ms-request-id")) {
        snprintf(op->reqid, sizeof(op->reqid), "%.*s", (int)(vl < 90 ? vl : 90), v);
    } else if (ieq(n, nl, "x-ms-error-code")) {
        snprintf(op->hcode, sizeof(op->hcode), "%.*s", (int)(vl < 60 ? vl : 60), v);
    }
    return 0;
}

static int xml_blob(void *ud, const sto_azxml_blob_t *b);
static int xml_prefix(void *ud, const char *p, size_t len);

static int op_on_response(rx_httpc_req_t *h)
{
    az_op_t *op = h->ud;
    if (h->status < 200 || h->status > 299 || op->kind != K_LIST)
        return 0;
    sto_azxml_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.expect = STO_AZXML_LIST_BLOBS;
    cfg.ud = op;
    cfg.cb.blob = xml_blob;
    cfg.cb.prefix = xml_prefix;
    sto_azxml_free(op->xml);
    op->xml = NULL;
    return sto_azxml_new(&cfg, &op->xml) < 0 ? RX_ENOMEM : 0;
}

static int op_on_body(rx_httpc_req_t *h, const uint8_t *d, size_t len)
{
    az_op_t *op = h->ud;
    if (op->xml) {
        if (op->xml_rc == 0)
            op->xml_rc = sto_azxml_feed(op->xml, d, len, false);
        return 0;
    }
    if (h->status >= 200 && h->status <= 299)
        return 0; /* blob data: counted by the client, dropped */
    if (op->elen < EBUF_MAX) {
        size_t n = len < EBUF_MAX - op->elen ? len : EBUF_MAX - op->elen;
        memcpy(op->ebuf + op->elen, d, n);
        op->elen += n;
        op->ebuf[op->elen] = '\0';
    }
    return 0;
}

/* ---- LIST ---- */

static int xml_blob(void *ud, const sto_azxml_blob_t *b)
{
    az_op_t *op = ud;
    size_t bl = op->as->baselen;
    if (b->name_len <= bl || memcmp(b->name, op->as->base, bl) != 0)
        return 0; /* outside the store (a server ignoring the prefix) */
    return sto__page_push(&op->page, b->name + bl, b->name_len - bl, b->size, 0);
}

static int xml_prefix(void *ud, const char *p, size_t len)
{
    az_op_t *op = ud;
    size_t bl = op->as->baselen;
    if (len <= bl || memcmp(p, op->as->base, bl) != 0)
        return 0;
    return sto__page_push(&op->page, p + bl, len - bl, 0, 1);
}

static int list_request(az_op_t *op)
{
    sto_req_t *r = op->r;
    int nq = 0;
    op->query[nq++] = (sto_az_kv_t){"restype", "container"};
    op->query[nq++] = (sto_az_kv_t){"comp", "list"};
    if (op->prefix[0])
        op->query[nq++] = (sto_az_kv_t){"prefix", op->prefix};
    if (!r->recursive)
        op->query[nq++] = (sto_az_kv_t){"delimiter", "/"};
    if (op->marker[0])
        op->query[nq++] = (sto_az_kv_t){"marker", op->marker};
    op->query[nq++] = (sto_az_kv_t){"maxresults", LIST_PAGE};
    op->nq = nq;
    op->nxh = 0;
    sto__page_reset(&op->page);
    op->elen = 0;
    op->xml_rc = 0;
    op->hcode[0] = '\0';
    sto_azxml_free(op->xml);
    op->xml = NULL;
    return op_submit(op, "GET", NULL, NULL, 0, -1);
}

/* A page arrived: deliver it, then ask for the next or finish. */
static void list_page_done(az_op_t *op)
{
    sto_req_t *r = op->r;
    if (!op->xml) {
        snprintf(r->res.detail, sizeof(r->res.detail), "List Blobs: empty response");
        snprintf(r->res.code, sizeof(r->res.code), "bad XML");
        finish(op, STO_EPROTO);
        return;
    }
    int rc = op->xml_rc;
    if (rc == 0)
        rc = sto_azxml_feed(op->xml, "", 0, true);
    if (rc < 0) {
        snprintf(r->res.detail, sizeof(r->res.detail), "List Blobs response: %s",
                 sto_azxml_detail(op->xml)[0] ? sto_azxml_detail(op->xml) : rx_strerror(rc));
        snprintf(r->res.code, sizeof(r->res.code), "bad XML");
        finish(op, rc == RX_ENOMEM || rc == -ENOMEM ? RX_ENOMEM : STO_EPROTO);
        return;
    }
    const sto_azxml_doc_t *doc = sto_azxml_doc(op->xml);
    if (doc->kind == STO_AZXML_ERROR) {
        snprintf(r->res.code, sizeof(r->res.code), "%s", doc->error.code);
        snprintf(r->res.detail, sizeof(r->res.detail), "HTTP %d %s: %s", op->h.status,
                 doc->error.code, doc->error.message);
        finish(op, STO_EPROTO);
        return;
    }
    sto_entry_t *ents = sto__page_entries(&op->page);
    if (op->page.n && r->on_page)
        r->on_page(r, ents, op->page.n);
    op->listed += op->page.n;
    r->res.bytes = op->listed;
    if (doc->next_marker[0]) {
        if (!strcmp(doc->next_marker, op->marker)) {
            snprintf(r->res.detail, sizeof(r->res.detail),
                     "List Blobs: NextMarker repeats the marker of the page");
            snprintf(r->res.code, sizeof(r->res.code), "bad marker");
            finish(op, STO_EPROTO);
            return;
        }
        snprintf(op->marker, sizeof(op->marker), "%s", doc->next_marker);
        rc = list_request(op);
        if (rc < 0) {
            snprintf(r->res.detail, sizeof(r->res.detail), "next list page: %s", rx_strerror(rc));
            finish(op, rc);
        }
        return;
    }
    finish(op, 0);
}

/* ---- block uploads ---- */

/* Slices [off, off+len) of iov into a new array. */
static int slice_iov(const struct iovec *iov, int n, uint64_t off, uint64_t len, struct iovec **out,
                     int *nout)
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

static void bl_fail(blocks_t *b, int error, int retryable, int http, const char *code,
                    const char *detail)
{
    if (b->error)
        return;
    b->error = error;
    b->retryable = retryable;
    b->http_status = http;
    snprintf(b->code, sizeof(b->code), "%s", code ? code : "");
    snprintf(b->detail, sizeof(b->detail), "%s", detail ? detail : "");
}

static void bl_report(az_op_t *put)
{
    blocks_t *b = put->bl;
    sto_req_t *r = put->r;
    r->res.retryable = b->retryable;
    r->res.http_status = b->http_status;
    snprintf(r->res.code, sizeof(r->res.code), "%s", b->code);
    snprintf(r->res.detail, sizeof(r->res.detail), "%s", b->detail);
    finish(put, b->error);
}

static void bl_commit(az_op_t *put);

static int block_submit(az_op_t *p)
{
    az_op_t *put = p->parent;
    blocks_t *b = put->bl;
    sto_az_block_id(b->nonce, p->block, p->block_id);
    p->query[0] = (sto_az_kv_t){"comp", "block"};
    p->query[1] = (sto_az_kv_t){"blockid", p->block_id};
    p->nq = 2;
    p->nxh = 0;
    p->elen = 0;
    p->hcode[0] = '\0';
    uint64_t off = (uint64_t)p->block * b->block_size;
    uint64_t len = b->total - off < b->block_size ? b->total - off : b->block_size;
    if (!p->piov) {
        int rc = slice_iov(put->r->iov, put->r->iovcnt, off, len, &p->piov, &p->npiov);
        if (rc < 0)
            return rc;
    }
    return op_submit(p, "PUT", put->blob, p->piov, p->npiov, (int64_t)len);
}

/* Issues blocks while the window allows; commits or reports when none is left in flight. */
static void bl_pump(az_op_t *put)
{
    blocks_t *b = put->bl;
    while (!b->error && b->next < b->n &&
           b->inflight < (uint32_t)put->as->s->opts.part_concurrency) {
        az_op_t *p = op_get(put->as, put->r, K_BLOCK);
        if (!p) {
            bl_fail(b, RX_ENOMEM, 0, 0, "no memory", "block upload: out of memory");
            break;
        }
        p->parent = put;
        p->block = b->next++;
        b->inflight++;
        int rc = block_submit(p);
        if (rc < 0) {
            b->inflight--;
            bl_fail(b, rc, 0, 0, rx_strerror(rc), "block upload: cannot submit a block");
            op_put_back(p);
            break;
        }
    }
    if (b->inflight == 0) {
        if (b->error)
            bl_report(put);
        else if (b->ndone == b->n)
            bl_commit(put);
    }
}

static void block_done(az_op_t *p)
{
    az_op_t *put = p->parent;
    blocks_t *b = put->bl;
    rx_httpc_req_t *h = &p->h;
    sto_result_t tmp;
    memset(&tmp, 0, sizeof(tmp));
    int st = 0;
    if (h->error)
        st = fill_transport_error(h, &tmp);
    else if (h->status < 200 || h->status > 299)
        st = fill_http_error(p, &tmp);
    if (st && tmp.retryable && p->tries < BLOCK_RETRIES && !b->error) {
        p->tries++;
        if (block_submit(p) == 0)
            return;
    }
    b->inflight--;
    if (st) {
        char d[256];
        snprintf(d, sizeof(d), "block %u of %u: %s", p->block + 1, b->n, tmp.detail);
        bl_fail(b, st, tmp.retryable, tmp.http_status, tmp.code, d);
    } else {
        b->ndone++;
    }
    op_put_back(p);
    bl_pump(put);
}

static void bl_commit(az_op_t *put)
{
    blocks_t *b = put->bl;
    char(*ids)[STO_AZ_BLOCK_ID_LEN + 1] = malloc((size_t)b->n * sizeof(*ids));
    const char **refs = malloc((size_t)b->n * sizeof(*refs));
    size_t cap = (size_t)b->n * (STO_AZ_BLOCK_ID_LEN + 20) + 128;
    b->body = malloc(cap);
    int n = -ENOMEM;
    if (ids && refs && b->body) {
        for (uint32_t i = 0; i < b->n; i++) {
            sto_az_block_id(b->nonce, i, ids[i]);
            refs[i] = ids[i];
        }
        n = sto_azxml_block_list_body(refs, b->n, b->body, cap);
    }
    free(ids);
    free(refs);
    if (n < 0) {
        bl_fail(b, n == -ENOMEM ? RX_ENOMEM : RX_EINVAL, 0, 0, "no memory",
                "Put Block List: cannot build the body");
        bl_report(put);
        return;
    }
    put->kind = K_BLOCK_LIST;
    put->query[0] = (sto_az_kv_t){"comp", "blocklist"};
    put->nq = 1;
    put->nxh = 0;
    put->elen = 0;
    put->hcode[0] = '\0';
    free(put->piov);
    put->piov = malloc(sizeof(*put->piov));
    if (!put->piov) {
        bl_fail(b, RX_ENOMEM, 0, 0, "no memory", "Put Block List: out of memory");
        bl_report(put);
        return;
    }
    put->piov[0].iov_base = b->body;
    put->piov[0].iov_len = (size_t)n;
    int rc = op_submit(put, "PUT", put->blob, put->piov, 1, n);
    if (rc < 0) {
        bl_fail(b, rc, 0, 0, rx_strerror(rc), "Put Block List: cannot submit it");
        bl_report(put);
    }
}

static int bl_start(az_op_t *put, uint64_t total)
{
    az_store_t *as = put->as;
    blocks_t *b = calloc(1, sizeof(*b));
    if (!b)
        return RX_ENOMEM;
    put->bl = b;
    b->total = total;
    b->block_size = as->s->opts.part_size;
    if (b->block_size > MAX_BLOCK_SIZE)
        b->block_size = MAX_BLOCK_SIZE;
    uint64_t n = (total + b->block_size - 1) / b->block_size;
    if (n > MAX_BLOCKS) {
        /* a blob has at most 50,000 blocks: grow the block size to fit */
        b->block_size = (total + MAX_BLOCKS - 1) / MAX_BLOCKS;
        n = (total + b->block_size - 1) / b->block_size;
    }
    b->n = (uint32_t)n;
    /* put->h goes out only with Put Block List: until then it must read as "not sent" (a failed
     * upload is timed from it) */
    memset(&put->h, 0, sizeof(put->h));
    /* a per-upload tag keeps the blocks of concurrent uploads of one blob apart */
    b->nonce =
        (uint32_t)(rx_now_ns() ^ ((uint64_t)(uintptr_t)put >> 4)) ^ (++as->nonce_seq * 2654435761u);
    put->kind = K_PUT;
    /* the first block goes out here so that a failure to submit it fails sto_submit (done()
     * must not run from inside it); the others follow from bl_pump as blocks complete */
    az_op_t *p = op_get(as, put->r, K_BLOCK);
    if (!p)
        return RX_ENOMEM;
    p->parent = put;
    p->block = b->next++;
    b->inflight = 1;
    int rc = block_submit(p);
    if (rc < 0) {
        op_put_back(p);
        return rc;
    }
    bl_pump(put);
    return 0;
}

/* ---- request submission ---- */

static int op_submit(az_op_t *op, const char *method, const char *blob, const struct iovec *body,
                     int nbody, int64_t body_len)
{
    az_store_t *as = op->as;
    sto_az_req_in_t in;
    memset(&in, 0, sizeof(in));
    in.method = method;
    in.container = as->container;
    in.blob = blob;
    in.query = op->query;
    in.nquery = (size_t)op->nq;
    in.headers = op->xh;
    in.nheaders = (size_t)op->nxh;
    if (body_len < 0 && (!strcmp(method, "PUT") || !strcmp(method, "POST")))
        body_len = 0;
    in.content_length = body_len;
    in.time = (int64_t)time(NULL);
    char err[160] = "";
    int rc = sto_az_request_build(&as->ep, &as->cr, as->cr.account, &in, &op->rq, err, sizeof(err));
    if (rc < 0)
        return rc == -ENOSPC ? STO_EURI : rc == -ENOMEM ? RX_ENOMEM : RX_EINVAL;
    for (size_t i = 0; i < op->rq.nheaders; i++) {
        op->hdr[i].name = op->rq.headers[i].name;
        op->hdr[i].name_len = strlen(op->rq.headers[i].name);
        op->hdr[i].value = op->rq.headers[i].value;
        op->hdr[i].value_len = strlen(op->rq.headers[i].value);
    }
    rx_httpc_req_t *h = &op->h;
    memset(h, 0, offsetof(rx_httpc_req_t, error));
    h->method = method;
    h->target = op->rq.target;
    h->headers = op->hdr;
    h->nheaders = op->rq.nheaders;
    h->body = body;
    h->nbody = nbody;
    h->body_len = body_len;
    h->head = !strcmp(method, "HEAD");
    h->on_response = op_on_response;
    h->on_header = op_on_header;
    h->on_body = op_on_body;
    h->done = op_http_done;
    h->ud = op;
    return rx_httpc_submit(as->http, h);
}

static void probe_done(az_op_t *op)
{
    az_store_t *as = op->as;
    rx_httpc_req_t *h = &op->h;
    as->probe_done = 1;
    as->probe_http = h->status;
    as->probe_error = h->error;
    sto_result_t tmp;
    memset(&tmp, 0, sizeof(tmp));
    if (h->error)
        as->probe_status = fill_transport_error(h, &tmp);
    else if (h->status < 200 || h->status > 299)
        as->probe_status = fill_http_error(op, &tmp);
    else
        as->probe_status = 0;
    as->probe_az = tmp.code[0] && strncmp(tmp.code, "HTTP ", 5) != 0;
    snprintf(as->probe_code, sizeof(as->probe_code), "%s", tmp.code);
    snprintf(as->probe_detail, sizeof(as->probe_detail), "%s", tmp.detail);
    op_put_back(op);
}

static void op_http_done(rx_httpc_req_t *h)
{
    az_op_t *op = h->ud;
    switch (op->kind) {
    case K_BLOCK:
        block_done(op);
        return;
    case K_PROBE:
    case K_CREATE:
        probe_done(op);
        return;
    default:
        break;
    }
    sto_req_t *r = op->r;
    r->res.http_status = h->status;
    if (h->error) {
        if (op->kind == K_BLOCK_LIST) {
            sto_result_t tmp;
            memset(&tmp, 0, sizeof(tmp));
            int st = fill_transport_error(h, &tmp);
            bl_fail(op->bl, st, tmp.retryable, tmp.http_status, tmp.code, tmp.detail);
            bl_report(op);
            return;
        }
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
    case K_BLOCK_LIST:
        r->res.bytes = op->bl->total;
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
    default:
        finish(op, STO_EPROTO);
        return;
    }
}

/* ---- backend entry points ---- */

static int az_submit(sto_store_t *s, sto_req_t *r)
{
    az_store_t *as = sto_store_priv(s);
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
    az_op_t *op = op_get(as, r, k);
    if (!op)
        return RX_ENOMEM;
    int rc = 0;
    char *dst = k == K_LIST ? op->prefix : op->blob;
    size_t cap = k == K_LIST ? sizeof(op->prefix) : sizeof(op->blob);
    int n = snprintf(dst, cap, "%s%s", as->base, r->key ? r->key : "");
    if (n < 0 || (size_t)n >= cap) {
        op_put_back(op);
        return RX_EINVAL;
    }
    switch (k) {
    case K_GET:
        if (r->offset || r->length) {
            if (r->length)
                snprintf(op->range, sizeof(op->range), "bytes=%llu-%llu",
                         (unsigned long long)r->offset,
                         (unsigned long long)(r->offset + r->length - 1));
            else
                snprintf(op->range, sizeof(op->range), "bytes=%llu-",
                         (unsigned long long)r->offset);
            op->xh[0] = (sto_az_kv_t){"Range", op->range};
            op->nxh = 1;
        }
        rc = op_submit(op, "GET", op->blob, NULL, 0, -1);
        break;
    case K_PUT: {
        uint64_t total = 0;
        for (int i = 0; i < r->iovcnt; i++)
            total += r->iov[i].iov_len;
        if (total >= s->opts.multipart_threshold && total > s->opts.part_size) {
            rc = bl_start(op, total);
            break;
        }
        op->xh[0] = (sto_az_kv_t){"x-ms-blob-type", "BlockBlob"};
        op->nxh = 1;
        rc = op_submit(op, "PUT", op->blob, r->iov, r->iovcnt, (int64_t)total);
        break;
    }
    case K_HEAD:
        rc = op_submit(op, "HEAD", op->blob, NULL, 0, -1);
        break;
    case K_DEL:
        rc = op_submit(op, "DELETE", op->blob, NULL, 0, -1);
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
static void release_http(az_store_t *x)
{
    if (x->http)
        sto__http_release(x->http);
    x->http = NULL;
}

static int make_http(az_store_t *x, uv_loop_t *loop, char *err, size_t errlen)
{
    return sto__http_acquire(x->s, loop, x->ep.host, x->ep.port, x->ep.tls, &x->http, err, errlen);
}

/* With create_base: list one blob of the container on a private loop, create it when missing. */
static int probe_container(az_store_t *as, char *err, size_t errlen)
{
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc < 0) {
        snprintf(err, errlen, "uv_loop_init: %s", uv_strerror(rc));
        return rc;
    }
    rc = make_http(as, &loop, err, errlen);
    if (rc == 0) {
        for (int step = 0; step < 2; step++) {
            az_op_t *op = op_get(as, NULL, step == 0 ? K_PROBE : K_CREATE);
            if (!op) {
                rc = RX_ENOMEM;
                break;
            }
            as->probe_done = 0;
            as->probe_detail[0] = '\0';
            op->query[0] = (sto_az_kv_t){"restype", "container"};
            op->query[1] = (sto_az_kv_t){"comp", "list"};
            op->query[2] = (sto_az_kv_t){"maxresults", "1"};
            op->nq = step == 0 ? 3 : 1;
            rc = op_submit(op, step == 0 ? "GET" : "PUT", NULL, NULL, 0, step == 0 ? -1 : 0);
            if (rc < 0) {
                op_put_back(op);
                snprintf(err, errlen, "container %s: %s", as->container, rx_strerror(rc));
                break;
            }
            while (!as->probe_done)
                uv_run(&loop, UV_RUN_ONCE);
            rc = as->probe_status;
            int missing = as->probe_http == 404 && !strcmp(as->probe_code, "ContainerNotFound");
            if (step == 0 && missing && !as->s->opts.no_create_bucket)
                continue; /* missing: create it */
            if (step == 1 && as->probe_http == 409 &&
                !strcmp(as->probe_code, "ContainerAlreadyExists"))
                rc = 0; /* created meanwhile by another core or agent */
            /* A server that is not Azure (plain HTTP) answers with something else than an
             * Azure error: nothing to check or create then. Authentication failures and Azure
             * errors stop the open. */
            if (rc < 0 && !as->probe_error && !as->probe_az && as->probe_http != 401 &&
                as->probe_http != 403)
                rc = 0;
            if (rc < 0) {
                if (as->probe_error)
                    snprintf(err, errlen, "cannot reach the Azure endpoint %s://%s:%d (%s): %s",
                             as->ep.tls ? "https" : "http", as->ep.host, as->ep.port, as->ep.source,
                             as->probe_detail);
                else if (step == 0 && missing)
                    snprintf(err, errlen, "container %s does not exist (creating it is disabled)",
                             as->container);
                else
                    snprintf(err, errlen, "%s container %s: %s", step ? "creating" : "checking",
                             as->container, as->probe_detail);
            }
            break;
        }
        release_http(as);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return rc;
}

static void az_close(sto_store_t *s)
{
    az_store_t *as = sto_store_priv(s);
    if (as->http)
        release_http(as);
    while (as->free_ops) {
        az_op_t *op = as->free_ops;
        as->free_ops = op->next_free;
        free(op);
    }
    memset(&as->cr, 0, sizeof(as->cr)); /* the key */
}

static int az_open(sto_store_t *s, const sto_uri_t *u, char *err, size_t errlen)
{
    az_store_t *as = sto_store_priv(s);
    as->s = s;
    const char *slash = strchr(u->authority, '/');
    if (!slash || slash == u->authority || !slash[1]) {
        snprintf(err, errlen, "expected az://account/container/prefix/");
        return STO_EURI;
    }
    size_t alen = (size_t)(slash - u->authority);
    char account[STO_AZ_ACCOUNT_MAX + 1];
    if (alen > STO_AZ_ACCOUNT_MAX || strlen(slash + 1) > CONTAINER_MAX) {
        snprintf(err, errlen, "storage account or container name too long");
        return STO_EURI;
    }
    memcpy(account, u->authority, alen);
    account[alen] = '\0';
    snprintf(as->container, sizeof(as->container), "%s", slash + 1);
    int rc = sto_az_creds_load(&as->cr, err, errlen);
    if (rc < 0)
        return rc;
    rc = sto_az_creds_bind(&as->cr, account, err, errlen);
    if (rc < 0) {
        az_close(s);
        return rc;
    }
    rc = sto_az_endpoint_resolve(account, s->opts.endpoint, &as->cr, &as->ep, err, errlen);
    if (rc < 0) {
        az_close(s);
        return rc;
    }
    if (u->path[0]) {
        int n = snprintf(as->base, sizeof(as->base), "%s/", u->path);
        if (n < 0 || (size_t)n >= sizeof(as->base)) {
            snprintf(err, errlen, "blob prefix too long");
            az_close(s);
            return STO_EURI;
        }
    }
    as->baselen = strlen(as->base);
    if (s->create_base) {
        rc = probe_container(as, err, errlen);
        if (rc < 0) {
            az_close(s);
            return rc;
        }
    }
    rc = make_http(as, s->loop, err, errlen);
    if (rc < 0) {
        az_close(s);
        return rc;
    }
    return 0;
}

const sto_backend_t sto__az_backend = {
    .name = "az",
    .caps = STO_CAP_RANGE | STO_CAP_MULTIPART | STO_CAP_LIST_PAGES,
    .store_size = sizeof(az_store_t),
    .open = az_open,
    .close = az_close,
    .submit = az_submit,
};
