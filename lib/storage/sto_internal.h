/* sto_internal.h — shared between the storage library's .c files; not installed. */
#ifndef STO_INTERNAL_H
#define STO_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rx/httpc.h"
#include "rx/stream.h"
#include "sto/backend.h"
#include "sto/uri.h"

struct sto_store {
    const sto_backend_t *backend;
    uv_loop_t *loop;
    int create_base; /* read by backend open() */
    sto_opts_t opts; /* defaults filled; strings point into the buffers below */
    char endpoint_buf[512];
    char ca_file_buf[1024];
    sto_uri_t uri;
    max_align_t priv[]; /* backend->store_size bytes */
};

/* httppool.c — HTTP client pools of the network backends, on the loop thread.
 * sto__http_create: a pool for host:port with the store's options (max_conns, protocol version,
 * timeouts, HTTP/2 windows, TLS with its CA/insecure settings); *tls_ctx gets the TLS context the
 * caller owns along with the pool (NULL for plain HTTP). Returns 0 or <0 with err set.
 * sto__http_acquire: the pool the stores of this loop share for that endpoint (same host, port,
 * TLS, protocol, CA and insecure flag), made on first use; sto__http_release drops one reference
 * and closes the pool with the last. */
int sto__http_create(const sto_store_t *s, uv_loop_t *loop, const char *host, int port, int tls,
                     int max_conns, int version, rx_httpc_t **out, rx_tls_ctx_t **tls_ctx,
                     char *err, size_t errlen);
int sto__http_acquire(const sto_store_t *s, uv_loop_t *loop, const char *host, int port, int tls,
                      rx_httpc_t **out, char *err, size_t errlen);
void sto__http_release(rx_httpc_t *http);
/* hostport.c — "host", "host:port", "[v6]", "[v6]:port" (n bytes of s; host names of letters,
 * digits, '-', '.', '_'); port 1..65535, left alone when absent. 0 or -1. */
int sto__parse_port(const char *s, size_t n, int *port);
int sto__parse_hostport(const char *s, size_t n, char *host, size_t hlen, int *port);

/* The result of request r from its HTTP exchange h: end time, time to first byte (GET: the
 * response's first byte; others: the start), status; a success clears retryable/code/detail. */
void sto__http_result(sto_req_t *r, const rx_httpc_req_t *h, int status);
/* The sto code of an HTTP error status, provider codes aside: 404 STO_ENOTFOUND, 401/403
 * STO_EPERM, 416 STO_ESHORT, 429/503 STO_ETHROTTLE, other 5xx STO_ESERVER (those two
 * retryable), 408 STO_EHTTP but retryable, else STO_EHTTP. */
int sto__http_status(int http, int *retryable);

/* listpage.c — the entries of one LIST page, keys copied into one arena (loop thread).
 * push copies a key (RX_ENOMEM on failure); entries() resolves the keys into pointers once the
 * page is complete (call it once per page, before handing the page on); reset() empties the page
 * and keeps the memory; free() releases it. Zero-initialised is empty. */
typedef struct sto__page {
    sto_entry_t *v;
    size_t n, cap;
    char *arena;
    size_t used, acap;
} sto__page_t;
int sto__page_push(sto__page_t *p, const char *key, size_t klen, uint64_t size, int is_dir);
sto_entry_t *sto__page_entries(sto__page_t *p);
void sto__page_reset(sto__page_t *p);
void sto__page_free(sto__page_t *p);

extern const sto_backend_t sto__file_backend;
extern const sto_backend_t sto__direct_backend;
extern const sto_backend_t sto__s3_backend;
extern const sto_backend_t sto__az_backend;
extern const sto_backend_t sto__gcs_backend;

#endif
