/* sto/backend.h — the storage backend table and asynchronous requests.
 *
 * A store is one backend instance bound to a base URI and to ONE libuv loop (one core). All calls
 * on a store and its requests happen on that loop's thread; completions are delivered there.
 * Keys are relative to the store's base ("sub/dir/prepared-00000001.dat"); a key never starts
 * with '/'.
 *
 * Requests are caller-allocated (sto_req_t, embed or allocate it), filled in, and submitted with
 * sto_submit(). The caller keeps key, iov and the request alive until done() runs. done() runs
 * exactly once per accepted request (sto_submit returned 0), on the loop thread; after it the
 * caller may reuse or free the request. sto_submit() returning <0 means done() will not run.
 *
 * file:// and direct:// run each request as one work item on libuv's thread pool (open, I/O,
 * close), timing it from submission to completion in the loop, so queueing in the pool counts as
 * latency. direct:// opens with O_DIRECT; reads and writes use 4096-byte aligned buffers and
 * lengths, and the unaligned tail of a write is written after clearing O_DIRECT on the descriptor.
 * PUT body slices that are not 4096-aligned are copied through an aligned per-thread buffer.
 *
 * Semantics of the local backends (cloud backends should match where the service allows):
 *   GET    bytes = bytes of [offset, offset+length) that exist (length 0 = to the end); a range
 *          starting at or beyond the end of a non-empty object → STO_ESHORT. Missing →
 *          STO_ENOTFOUND, detail "open /path: No such file or directory".
 *   PUT    creates missing parent directories of the key; truncates an existing object;
 *          bytes = bytes written; fewer than the iovecs hold → STO_ESHORT.
 *   HEAD   bytes = object size (0 for a directory); missing → STO_ENOTFOUND.
 *   LIST   key "" or ending in '/': that directory; otherwise the keys in the parent directory
 *          whose last component starts with it. Entries come sorted by key, in pages of at most
 *          1000. recursive: objects only, at any depth (symlinked directories not followed);
 *          otherwise objects and directories of that level, a directory's key ending in '/'
 *          (is_dir = 1). A missing directory lists empty with status 0.
 *   DEL    unlink; missing → STO_ENOTFOUND.
 *   MKDIR  creates parents as needed; an existing directory → STO_EEXIST.
 *   RMDIR  non-empty → STO_ENOTEMPTY; recursive removes the tree (symlinks not followed).
 *
 * s3:// differs where S3 does: DEL of a missing key succeeds (S3 answers 204 either way); LIST
 * of "dir/" is the prefix "dir/" (with delimiter '/' unless recursive: "directories" are common
 * prefixes); MKDIR and RMDIR are STO_ENOTSUP. HTTP failures map to STO_ENOTFOUND (404),
 * STO_ENOBUCKET (404 NoSuchBucket), STO_EPERM (401/403), STO_ESHORT (416), STO_ETHROTTLE
 * (503, 429, SlowDown; retryable), STO_ESERVER (other 5xx; retryable), STO_EHTTP (other 4xx);
 * res.code holds the S3 error code and res.detail "HTTP 403 SignatureDoesNotMatch: <Message>
 * (RequestId ...)". Connection failures, resets and timeouts keep their rx/uv code and are
 * retryable.
 * az:// (az://account/container/prefix/) speaks the Azure Blob REST API and follows s3:// (LIST
 * is List Blobs by prefix with delimiter '/' unless recursive, paged by marker; MKDIR and RMDIR
 * STO_ENOTSUP; no DEL_BATCH), except that DEL of a missing blob is STO_ENOTFOUND (Azure answers
 * 404 BlobNotFound). PUTs of at least multipart_threshold bytes are Put Block of part_size blocks,
 * part_concurrency in flight, then Put Block List. HTTP failures map as for s3:// (404
 * ContainerNotFound is STO_ENOBUCKET, ServerBusy STO_ETHROTTLE); res.code holds the Azure error
 * code ("AuthenticationFailed", "BlobNotFound"; from the body, else x-ms-error-code) and
 * res.detail "HTTP 403 AuthenticationFailed: <first line of Message>; <hint>". With create_base
 * the container is checked at open and created when missing. Endpoint and credentials:
 * sto/azauth.h.
 * gs:// (also gcs://) speaks the GCS JSON API and follows s3:// (LIST by prefix with delimiter
 * '/' unless recursive, prefixes as directories; MKDIR and RMDIR STO_ENOTSUP; no DEL_BATCH),
 * except that DEL of a missing object is STO_ENOTFOUND (GCS answers 404). PUTs of at least
 * multipart_threshold bytes are resumable uploads sent in sequential chunks of part_size rounded
 * down to 256 KiB (part_concurrency does not apply). HTTP failures map as for s3:// (a 404 on a
 * listing, or saying the bucket does not exist, is STO_ENOBUCKET; reasons rateLimitExceeded and
 * userRateLimitExceeded are STO_ETHROTTLE); res.code holds the GCS reason ("notFound",
 * "forbidden") or "HTTP 500" and res.detail "HTTP 403 forbidden: <message>". Requests that find
 * no valid OAuth2 token fail with code "token". Endpoint and credentials: sto/gcsauth.h.
 * Keys containing a ".." component are refused by sto_submit (RX_EINVAL).
 */
#ifndef STO_BACKEND_H
#define STO_BACKEND_H

#include <stdint.h>
#include <sys/uio.h>
#include <uv.h>

#include "sto/uri.h"

typedef enum sto_op {
    STO_OP_GET = 0,
    STO_OP_PUT,
    STO_OP_HEAD,
    STO_OP_LIST,
    STO_OP_DEL,
    STO_OP_MKDIR,
    STO_OP_RMDIR,
    STO_OP_DEL_BATCH, /* backends with STO_CAP_BATCH_DELETE: keys[0..nkeys), 1..1000 */
    STO_OP__COUNT
} sto_op_t;

enum sto_caps {
    STO_CAP_RANGE = 1u << 0,
    STO_CAP_MULTIPART = 1u << 1,
    STO_CAP_BATCH_DELETE = 1u << 2,
    STO_CAP_LIST_PAGES = 1u << 3,
    STO_CAP_DIRECTORIES = 1u << 4,
};

typedef struct sto_result {
    int status;             /* 0 or negative error (sto/uv codes) */
    uint64_t bytes;         /* GET: bytes read; PUT: bytes written; HEAD: object size;
                               LIST: entries delivered */
    uint64_t t_submit_ns;   /* rx_now_ns() at sto_submit */
    uint64_t t_first_ns;    /* first byte (GET) or start of I/O; 0 if not applicable */
    uint64_t t_end_ns;      /* completion */
    int http_status;        /* 0 for local backends */
    int retryable;          /* 1 if the same request may succeed when retried */
    char code[48];          /* provider error code ("SlowDown", "NoSuchKey", "HTTP 500"); "" when
                               none: errors are counted per (status, code) */
    char detail[256];       /* human-readable detail, e.g. "open /x/y: Invalid argument" */
} sto_result_t;

typedef struct sto_entry {
    const char *key;   /* relative to the store base; directories end in '/' */
    uint64_t size;
    int is_dir;
} sto_entry_t;

typedef struct sto_store sto_store_t;
typedef struct sto_req sto_req_t;

typedef void (*sto_done_fn)(sto_req_t *r);
/* LIST: one call per page on the loop thread, before done(). Entries are valid for the call. */
typedef void (*sto_page_fn)(sto_req_t *r, const sto_entry_t *entries, size_t n);

struct sto_req {
    /* in */
    sto_op_t op;
    const char *key;         /* borrowed; GET/PUT/HEAD/DEL/MKDIR/RMDIR: object or dir key;
                                LIST: prefix ("" = whole store; "dir/" = inside dir) */
    uint64_t offset, length; /* GET range; length 0 = to the end */
    const struct iovec *iov; /* PUT body, borrowed */
    int iovcnt;
    int recursive;           /* LIST: descend into sub-directories; RMDIR: remove contents */
    const char *const *keys; /* DEL_BATCH: keys relative to the store, borrowed */
    size_t nkeys;            /* DEL_BATCH: 1..1000; res.bytes = keys deleted; keys that failed
                                make status non-zero with the first failure in detail */
    sto_page_fn on_page;     /* LIST */
    sto_done_fn done;
    void *ud;
    /* out */
    sto_result_t res;
    /* private to the backend */
    sto_store_t *store;
    uv_work_t work;
    void *priv;
};

typedef struct sto_backend {
    const char *name; /* "file", "direct", ... */
    unsigned caps;
    size_t store_size; /* size of the backend's private store state */
    int (*open)(sto_store_t *s, const sto_uri_t *base, char *err, size_t errlen);
    void (*close)(sto_store_t *s);
    int (*submit)(sto_store_t *s, sto_req_t *r);
} sto_backend_t;

/* Backend table lookup; NULL when the scheme has no backend in this build. */
const sto_backend_t *sto_backend_for(sto_scheme_t scheme);

/* Options of network backends; zero fields take the defaults. Strings are copied at open. */
typedef struct sto_opts {
    const char *endpoint;     /* s3/az/gs: endpoint URL (the config's `endpoint:`); NULL: s3 from
                                 the URI, else AWS_ENDPOINT_URL, else AWS (sto/s3conf.h); az and
                                 gs: see sto/azauth.h and sto/gcsauth.h */
    int virtual_host;         /* s3: bucket in the host name instead of the path */
    int sign_payload;         /* s3: sign the SHA-256 of PUT bodies instead of UNSIGNED-PAYLOAD */
    int no_create_bucket;     /* s3/az/gs: with create_base, do not create a missing bucket or
                                 container */
    int max_connections;      /* per store (per core): default 64 */
    int connect_timeout_ms;   /* default 5000 */
    int io_timeout_ms;        /* no progress for this long fails a request; default 30000 */
    int insecure_skip_verify; /* TLS: accept any certificate (test rigs only) */
    const char *ca_file;      /* TLS CA bundle; NULL: AWS_CA_BUNDLE, else the system bundle */
    uint64_t multipart_threshold; /* s3/az/gs: PUTs of at least this many bytes use multipart
                                     (az: block list, gs: resumable);
                                     default 64 MiB; UINT64_MAX: never */
    uint64_t part_size;       /* s3/az/gs: part (block, chunk) size; default 16 MiB */
    int part_concurrency;     /* s3/az: parts in flight per multipart PUT; default 8 */
    int http_version;         /* enum rx_http_version (rx/httpc.h): 0 HTTP/1.1 (default), 1 HTTP/2
                                 (h2c prior knowledge, or h2 by ALPN over TLS), 2 auto (ALPN) */
    int h2_max_streams;       /* HTTP/2 requests per connection; default 100 */
    int h2_stream_window;     /* HTTP/2 stream window, bytes; default 4 MiB */
    int h2_conn_window;       /* HTTP/2 connection window, bytes; default 4 x stream window */
} sto_opts_t;

/* Opens a store for base_uri on loop. On failure returns <0 and writes a reason into err.
 * direct:// probes O_DIRECT on the base directory at open and fails with STO_ENODIRECT and a
 * message naming the filesystem when it is refused (e.g. tmpfs). The base directory is created
 * (mkdir -p) when create_base is set. */
int sto_store_open(uv_loop_t *loop, const char *base_uri, int create_base, sto_store_t **out,
                   char *err, size_t errlen);
/* Same with options (NULL = defaults). s3:// with create_base checks the bucket at open (on a
 * private loop, blocking for at most the connect and I/O timeouts) and creates it when it is
 * missing unless opts->no_create_bucket; any failure there (unreachable endpoint, 403) fails the
 * open with the service's message. */
int sto_store_open_opts(uv_loop_t *loop, const char *base_uri, int create_base,
                        const sto_opts_t *opts, sto_store_t **out, char *err, size_t errlen);
/* Loop thread only; no request may be in flight. Network backends close their connections
 * asynchronously: run the loop afterwards until its handles are closed. */
void sto_store_close(sto_store_t *s);
const sto_uri_t *sto_store_uri(const sto_store_t *s);
uv_loop_t *sto_store_loop(const sto_store_t *s);
const sto_backend_t *sto_store_backend(const sto_store_t *s);
/* Backend private state (store_size bytes). */
void *sto_store_priv(sto_store_t *s);

/* Submits r->op on store s: sets r->store, clears r->res and r->priv, sets r->res.t_submit_ns.
 * Returns 0 (done() will run), RX_EINVAL (no done, bad op, missing key for non-LIST ops, key
 * starting with '/' or containing "..", PUT iovcnt < 0 or iov NULL), STO_ENOTSUP (range GET on a
 * backend without STO_CAP_RANGE) or a libuv error from queueing. */
int sto_submit(sto_store_t *s, sto_req_t *r);

/* "GET", "PUT", "HEAD", "LIST", "DELETE", "MKDIR", "RMDIR"; "?" out of range. */
const char *sto_op_name(sto_op_t op);

#endif
