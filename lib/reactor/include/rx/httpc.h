/* rx/httpc.h — HTTP client for one endpoint on one loop: a pool of keep-alive HTTP/1.1
 * connections over rx_stream (TCP or TLS) driven by the sans-I/O codec of rx/http1.h, or of
 * HTTP/2 connections (nghttp2) carrying many requests each as streams.
 *
 * Protocol (opts.version): RX_HTTP_1 (default) speaks HTTP/1.1; RX_HTTP_2 speaks HTTP/2 only: h2c
 * with prior knowledge on plain TCP, h2 by ALPN over TLS (a TLS server that does not select h2
 * fails the connect with RX_ENOH2); RX_HTTP_AUTO offers h2 and http/1.1 by ALPN over TLS and uses
 * what the server selects (plain TCP: HTTP/1.1). On HTTP/2 a connection carries up to
 * min(h2_max_streams, the server's SETTINGS_MAX_CONCURRENT_STREAMS) requests at once; the pool
 * opens another connection (up to max_conns) when all are full. Request headers are sent with
 * lower-cased names; Host becomes :authority, and hop-by-hop fields (Connection, Keep-Alive,
 * Transfer-Encoding, Upgrade, Proxy-Connection) are dropped. Request bodies are copied into DATA
 * frames (HTTP/1.1 writes them from the caller's iovecs). A stream the server refuses
 * (REFUSED_STREAM, or above the last stream id of a GOAWAY) is resent on another connection.
 *
 * Threads and ownership: a client is created on, and belongs to, one loop thread. Every function
 * here and every callback run on that thread; nothing is locked. A request (rx_httpc_req_t) is
 * caller-allocated; the caller keeps it, its strings, headers and body buffers alive and unchanged
 * from rx_httpc_submit() until its done() callback has run.
 *
 * Pool: requests queue in submission order and go to an idle connection (most recently used
 * first) or, while the pool has fewer than max_conns connections, to a new one. One request per
 * connection at a time (no pipelining). A connection returns to the pool when the response is
 * complete and the server keeps it alive; connections idle longer than idle_timeout_ms, closed by
 * the server, or failed are closed. A request that fails on a reused connection before any byte
 * of the response arrived (the server closed an idle keep-alive connection as the request went
 * out) is sent once more on a new connection. After a connect failure, new connects wait an
 * exponential backoff (reconnect_min_ms doubling up to reconnect_max_ms, with jitter); when a
 * connect fails and no other connection is open or connecting, every queued request fails with
 * that error.
 *
 * Timeouts: io_timeout_ms bounds every wait of a request: for a connection, and after that for
 * the next byte of progress (bytes written or received). A request with no progress for that long
 * fails with RX_ETIMEDOUT and its connection is closed. Checked on a 50 ms tick.
 *
 * Callbacks: done() runs exactly once for every request accepted by rx_httpc_submit(), never
 * from inside rx_httpc_submit(). It may submit new requests (also on the same client) and may
 * free the request. on_response/on_header/on_body may return a negative code to abort the request
 * (the connection is closed and done() reports that code).
 */
#ifndef RX_HTTPC_H
#define RX_HTTPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <uv.h>

#include "rx/http1.h"
#include "rx/stream.h"

typedef struct rx_httpc rx_httpc_t;
typedef struct rx_httpc_req rx_httpc_req_t;

enum rx_http_version { RX_HTTP_1 = 0, RX_HTTP_2 = 1, RX_HTTP_AUTO = 2 };

typedef struct rx_httpc_opts {
    int version;            /* enum rx_http_version; default RX_HTTP_1 */
    int max_conns;          /* connections to the endpoint at most; default 64 */
    int h2_max_streams;     /* HTTP/2: requests per connection at most; default 100 */
    int h2_stream_window;   /* HTTP/2: our initial stream window, bytes; default 4 MiB */
    int h2_conn_window;     /* HTTP/2: our connection window, bytes; default 16 MiB */
    int idle_timeout_ms;    /* idle keep-alive connections are closed after this; default 30000 */
    int io_timeout_ms;      /* see "Timeouts" above; default 30000; <= 0 none */
    int reconnect_min_ms;   /* first backoff after a failed connect; default 100 */
    int reconnect_max_ms;   /* backoff cap; default 5000 */
    rx_stream_opts_t stream; /* connect timeout, TCP options, TLS (copied at create; the
                                tls_ctx pointer is borrowed and must outlive the client) */
    rx_http1_limits_t limits; /* response header limits */
} rx_httpc_opts_t;

/* Fills the defaults above (and rx_stream_opts_init for .stream). */
void rx_httpc_opts_init(rx_httpc_opts_t *o);

typedef struct rx_httpc_stats {
    uint64_t connects;      /* connections established */
    uint64_t connect_fails; /* connect attempts that failed */
    uint64_t requests;      /* requests completed (any outcome) */
    uint64_t reused;        /* requests sent on a connection that had carried one before */
    uint64_t resent;        /* requests sent again after a stale keep-alive connection or a
                               refused HTTP/2 stream */
    uint64_t h2_conns;      /* connections that spoke HTTP/2 */
    int open;               /* connections open or connecting now */
    int idle;               /* of which idle */
} rx_httpc_stats_t;

/* Response body callback: bytes as they arrive (zero-copy slices valid for the call). */
typedef int (*rx_httpc_body_fn)(rx_httpc_req_t *r, const uint8_t *data, size_t len);

struct rx_httpc_req {
    /* ---- in ---- */
    const char *method;                /* "GET", "PUT", ... */
    const char *target;                /* request target, already percent-encoded */
    const rx_http1_header_t *headers;  /* sent in order; must include Host */
    size_t nheaders;
    const struct iovec *body;          /* request body slices, sent without copying */
    int nbody;
    int64_t body_len;                  /* >= 0: Content-Length (must equal the slices' sum);
                                          < 0: no body and no Content-Length */
    int head;                          /* the response has no body (HEAD requests) */
    /* After the final response's header block (status is set). May be NULL. */
    int (*on_response)(rx_httpc_req_t *r);
    /* Each header field of the final response. May be NULL. */
    int (*on_header)(rx_httpc_req_t *r, const char *name, size_t name_len, const char *value,
                     size_t value_len);
    rx_httpc_body_fn on_body;          /* may be NULL (body counted and dropped) */
    void (*done)(rx_httpc_req_t *r);   /* required */
    void *ud;

    /* ---- out (valid in done; status and t_first_ns also in the callbacks) ---- */
    int error;           /* 0: a complete response arrived (any HTTP status); else negative */
    int status;          /* final HTTP status, 0 if none arrived */
    int retryable;       /* error is transient (connect failure, reset, timeout, early close) */
    int reused;          /* the request went out on a connection that had carried another */
    uint64_t t_submit_ns;
    uint64_t t_first_ns; /* first byte of the response (0 if none) */
    uint64_t t_end_ns;
    uint64_t body_bytes; /* response body bytes received */
    char detail[200];    /* text behind error ("" when error == 0) */

    /* ---- private ---- */
    rx_httpc_req_t *next_;
    void *conn_;
    int attempts_;
    int32_t stream_id_; /* HTTP/2 */
    int body_i_;
    size_t body_off_;
    int final_;
    int resp_called_;
    int abort_;
    int resend_;
};

/* Loop thread. host: DNS name or IP literal; port 1..65535. opts NULL = defaults. The host string
 * is copied. Returns 0, RX_EINVAL or RX_ENOMEM. */
int rx_httpc_create(uv_loop_t *loop, const char *host, int port, const rx_httpc_opts_t *opts,
                    rx_httpc_t **out);

/* Queues r. Checks: method, target and done set; nbody >= 0 with body set when nbody > 0.
 * Returns 0 (done will run), RX_EINVAL, or RX_ESTATE (client closing). */
int rx_httpc_submit(rx_httpc_t *c, rx_httpc_req_t *r);

/* Closes the client: requests still queued or in flight complete with RX_ECANCELED (their done
 * runs from inside this call), connections are closed, and the memory is freed once every handle
 * has closed (run the loop). NULL is ignored. */
void rx_httpc_close(rx_httpc_t *c);

void rx_httpc_stats(const rx_httpc_t *c, rx_httpc_stats_t *out);

#endif
