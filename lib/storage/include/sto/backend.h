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

/* Opens a store for base_uri on loop. On failure returns <0 and writes a reason into err.
 * direct:// probes O_DIRECT on the base directory at open and fails with STO_ENODIRECT and a
 * message naming the filesystem when it is refused (e.g. tmpfs). The base directory is created
 * (mkdir -p) when create_base is set. */
int sto_store_open(uv_loop_t *loop, const char *base_uri, int create_base, sto_store_t **out,
                   char *err, size_t errlen);
/* Loop thread only; no request may be in flight. Frees s; closes no handles of the loop. */
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
