/* rpc/server.h — a gRPC server over HTTP/2 (nghttp2 server sessions on rx_listen streams).
 *
 * What it speaks (gRPC over HTTP/2, PROTOCOL-HTTP2.md): POST requests with content-type
 * application/grpc[+proto], `te: trailers`, length-prefixed messages (rpc/grpc.h framing), responses
 * with :status 200 + content-type application/grpc, then messages, then trailers grpc-status /
 * grpc-message (Trailers-Only when nothing else was sent). Unary, client-, server- and
 * bidirectional streaming are the same thing here: a call receives any number of messages and
 * sends any number of messages, and its handler decides. h2c (prior knowledge) on plain listeners;
 * TLS with ALPN "h2" when the stream options carry a server TLS context (rx/stream.h).
 *
 * Enforced by the server itself, whatever the handler does:
 *   - unknown path → UNIMPLEMENTED (Trailers-Only); method other than POST → HTTP 405, missing or
 *     wrong content-type → HTTP 415 (both with grpc-status INTERNAL and a grpc-message); a
 *     malformed grpc-timeout → INTERNAL; `te: trailers` is not required. Such requests never
 *     reach a handler.
 *   - grpc-timeout: the deadline is the arrival of the headers plus the timeout. When it passes,
 *     the call gets on_end(RPC_EDEADLINE) and the client gets DEADLINE_EXCEEDED (Trailers-Only, or
 *     trailers after the message being sent, queued messages dropped), then RST_STREAM(CANCEL)
 *     if the client had not half-closed.
 *     The client's own timer usually fires first (its clock started earlier) and resets the
 *     stream with CANCEL: a RST_STREAM(CANCEL) that arrives less than min(timeout / 4, 20 ms)
 *     before the deadline is reported as RPC_EDEADLINE too, other resets as RPC_ECANCELLED.
 *   - a received message above max_message: RESOURCE_EXHAUSTED, on_end(RPC_ETOOBIG); a
 *     compressed message (no compression is negotiated): UNIMPLEMENTED, a malformed prefix or the
 *     stream ending inside a message: INTERNAL, both on_end(RPC_EPROTOCOL);
 *   - keepalive: with keepalive_interval_ns set, every connection sends a PING after that much
 *     time without receiving anything, and is closed when no frame (any frame) arrived within
 *     keepalive_timeout_ns after the PING; its calls get on_end(RPC_EKEEPALIVE). This is how an
 *     agent notices a vanished controller (cut link: no FIN ever comes). PINGs from clients are
 *     answered whatever their rate (no GOAWAY "too_many_pings").
 *   - the client's RST_STREAM → on_end(RPC_ECANCELLED); the connection closing or failing →
 *     on_end(RPC_ECONNLOST) for each of its calls.
 *
 * Threads: a server and everything it owns belong to the loop thread that created it; every
 * function here must be called on it, and every callback runs on it. Callbacks never run inside
 * the rpc_* call that caused them (they run later from the loop), so a handler may call any
 * function from inside any callback.
 *
 * Memory: messages handed to callbacks are borrowed for the call. Messages given to
 * rpc_scall_send() are copied. A call is freed right after its on_end returned (for the user: the
 * library may keep its memory until the HTTP/2 stream is closed, never longer than the connection).
 *
 * Flow control: each connection announces a 1 MiB stream window and a 16 MiB connection window,
 * and takes received messages out of them as they are delivered. Outgoing messages wait in their
 * call's queue (rpc_scall_pending) until the client's windows and the socket take them; at most
 * 512 KiB per connection are in flight to the socket.
 *
 * Errors: negative codes of rpc/err.h, rx/err.h and libuv.
 */
#ifndef RPC_SERVER_H
#define RPC_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rpc/grpc.h"
#include "rx/stream.h"

typedef struct rpc_server rpc_server_t;
typedef struct rpc_scall rpc_scall_t; /* one call = one HTTP/2 stream */

typedef struct rpc_server_opts {
    /* Largest message accepted from a client; 0 = RPC_DEFAULT_MAX_MESSAGE (4 MiB). */
    size_t max_message;
    /* Connection keepalive (see above). 0 = off (the default). */
    uint64_t keepalive_interval_ns;
    uint64_t keepalive_timeout_ns; /* 0 with an interval = 10 s */
    /* Options for accepted streams (nodelay, keepalive_s; tls = 1 with tls_ctx = a server context
     * from rx_tls_server_ctx_create for TLS, ALPN "h2" is then required from clients). Copied. */
    rx_stream_opts_t stream;
    /* Maximum concurrent streams announced per connection (SETTINGS); 0 = 100. */
    uint32_t max_concurrent_streams;
} rpc_server_opts_t;

void rpc_server_opts_init(rpc_server_opts_t *o);

typedef struct rpc_scall_cb {
    /* One complete message from the client, in order; msg borrowed for the call. */
    void (*on_message)(rpc_scall_t *c, const uint8_t *msg, size_t len, void *ud);
    /* The client half-closed (END_STREAM): no more messages will come. May be NULL. */
    void (*on_half_close)(rpc_scall_t *c, void *ud);
    /* Exactly once per accepted call, last: status 0 after the trailers of rpc_scall_finish()
     * were handed to the connection; otherwise why the call died: RPC_ECANCELLED (client
     * RST_STREAM), RPC_EDEADLINE, RPC_ETOOBIG, RPC_EKEEPALIVE, RPC_ECONNLOST, RPC_ESHUTDOWN
     * (rpc_server_close), RPC_EPROTOCOL (malformed frames from the client). The call is freed
     * after this returns: forget the pointer. */
    void (*on_end)(rpc_scall_t *c, int status, void *ud);
} rpc_scall_cb_t;

/* Called when the headers of a request for a registered path arrived (content-type, method and
 * path already checked). The handler must, before returning, either rpc_scall_accept() it or
 * rpc_scall_finish() it (refuse: e.g. UNAUTHENTICATED, then no callback ever runs for it and the
 * pointer is invalid once the handler returned). A handler that does neither gets the call
 * finished with INTERNAL. Headers are readable with rpc_scall_header() during the handler and for
 * the call's life. */
typedef void (*rpc_handler_fn)(rpc_scall_t *c, void *ud);

/* Creates a server on loop (nothing listens yet). o may be NULL (defaults). Returns 0, -EINVAL,
 * -ENOMEM. */
int rpc_server_create(uv_loop_t *loop, const rpc_server_opts_t *o, rpc_server_t **out);

/* Registers a handler for a full method path, e.g. "/sai3bench.Agent/Ping" (copied). Before or
 * after listening. Returns 0, -EEXIST, -EINVAL, -ENOMEM. */
int rpc_server_add_method(rpc_server_t *s, const char *path, rpc_handler_fn fn, void *ud);

/* Listens on host:port (see rx_listen for host forms; port 0 = ephemeral). err gets the text behind
 * a failure, e.g. "listen 0.0.0.0:7761: address already in use". Returns 0, UV_EADDRINUSE, ...
 * At most one listener per server. */
int rpc_server_listen(rpc_server_t *s, const char *host, int port, char *err, size_t errlen);
int rpc_server_port(const rpc_server_t *s);

/* Number of open connections, not counting those already failed or closing (tests and logs). */
size_t rpc_server_connections(const rpc_server_t *s);

/* Stops listening, ends every call (on_end(RPC_ESHUTDOWN)), sends GOAWAY and closes every
 * connection. on_closed (may be NULL) runs from the loop when all handles are closed; then the
 * server is freed. Idempotent. */
void rpc_server_close(rpc_server_t *s, void (*on_closed)(void *ud), void *ud);

/* ---- a call ---- */

/* Only from inside the handler; later calls are ignored. cb is copied; its members may be NULL
 * (on_message NULL: messages are dropped). */
void rpc_scall_accept(rpc_scall_t *c, const rpc_scall_cb_t *cb, void *ud);

/* The request path, the value of a request header (name lowercase, e.g. "authorization"; NULL
 * if absent; the first if repeated), the peer address ("127.0.0.1:53422"), 1 if the connection is
 * TLS, the absolute deadline in uv_hrtime() ns (0 = none). Valid for the call's life. */
const char *rpc_scall_path(const rpc_scall_t *c);
const char *rpc_scall_header(const rpc_scall_t *c, const char *name);
const char *rpc_scall_peer(const rpc_scall_t *c);
int rpc_scall_is_tls(const rpc_scall_t *c);
uint64_t rpc_scall_deadline(const rpc_scall_t *c);
/* The server's stream (underlying connection) for TLS details; valid for the call's life. */
rx_stream_t *rpc_scall_stream(const rpc_scall_t *c);

/* Queues one message (copied; the response headers go first if not sent yet). Returns 0,
 * RX_ESTATE (finished or dead call), RX_EINVAL (msg NULL with len > 0), RX_ENOMEM, -EMSGSIZE. */
int rpc_scall_send(rpc_scall_t *c, const uint8_t *msg, size_t len);
/* Bytes queued on this call and not yet handed to the socket (flow control). */
size_t rpc_scall_pending(const rpc_scall_t *c);
/* Ends the call after the queued messages: trailers grpc-status (and grpc-message, percent-encoded,
 * if message is non-NULL and non-empty), END_STREAM; a single HEADERS frame (Trailers-Only:
 * :status 200, content-type, grpc-status, grpc-message) when nothing was sent yet. If the client
 * has not half-closed yet, an RST_STREAM(NO_ERROR) follows the trailers, as gRPC servers do.
 * on_end(0) follows (only for accepted calls) once the trailers were written to the connection,
 * or on_end(< 0) if the call dies before that (client reset, connection lost). Returns 0 or
 * RX_ESTATE (already finished/dead). */
int rpc_scall_finish(rpc_scall_t *c, rpc_status_t status, const char *message);

#endif
