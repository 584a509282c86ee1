/* rpc/client.h — a gRPC client over one HTTP/2 connection (nghttp2 client session on an
 * rx_stream).
 *
 * A channel is one connection to one server: h2c with prior knowledge, or TLS with ALPN "h2"
 * (rx/stream.h options: CA file, pinned certificate, client certificate). It carries any number of
 * concurrent calls (up to the server's SETTINGS_MAX_CONCURRENT_STREAMS; more wait in a queue, and
 * every call waits until the server's first SETTINGS arrived). It does not reconnect: once it
 * failed, it stays failed (the controller treats that as a lost agent) and every call on it ends.
 * A GOAWAY from the server fails the channel at once (RPC_EGOAWAY: no new calls, waiting calls end
 * UNAVAILABLE) while the streams the server accepted may still complete.
 *
 * A call sends POST <path> with content-type application/grpc, te: trailers, grpc-timeout (when
 * given: the time left when its stream starts), user-agent, and the caller's metadata; then the
 * caller's messages, then END_STREAM at rpc_ccall_close_send(). Received messages go to
 * on_message; the call ends with on_done once:
 *   - trailers arrived: grpc-status / grpc-message as the server sent them (decoded); if the
 *     call was still sending, RST_STREAM(NO_ERROR) stops it, as gRPC clients do;
 *   - no grpc-status: from the HTTP status (rpc_status_from_http), or INTERNAL for a 200 without
 *     it ("missing grpc-status");
 *   - wrong content-type in the response: UNKNOWN; malformed framing or a message over max_message:
 *     INTERNAL / RESOURCE_EXHAUSTED (the call is reset with RST_STREAM(CANCEL));
 *   - the deadline passed: DEADLINE_EXCEEDED (RST_STREAM(CANCEL) sent);
 *   - rpc_ccall_cancel(): CANCELLED (RST_STREAM(CANCEL) sent);
 *   - the server reset the stream: CANCELLED (or UNAVAILABLE for REFUSED_STREAM);
 *   - the channel failed (connect error, keepalive timeout, GOAWAY with the stream unprocessed,
 *     connection lost): UNAVAILABLE with the channel's error text.
 *
 * Keepalive: with keepalive_interval_ns set the channel sends a PING after that much time without
 * receiving any frame and fails with RPC_EKEEPALIVE when nothing arrived keepalive_timeout_ns
 * after it.
 *
 * Threads: a channel and its calls belong to the loop thread that opened it; every function here
 * is called on it and every callback runs on it. Callbacks never run inside the rpc_* call that
 * caused them (they run later from the loop), so callbacks may call any function here.
 *
 * Memory: messages given to rpc_ccall_send() are copied; received ones are borrowed for the call.
 * A call is freed right after its on_done returned (for the user; the library may keep its memory
 * until its HTTP/2 stream is closed).
 *
 * Flow control: 1 MiB stream and 16 MiB connection windows are announced for receiving. Outgoing
 * messages wait in their call's queue (rpc_ccall_pending) until the server's windows and the
 * socket take them; at most 512 KiB per connection are in flight to the socket.
 */
#ifndef RPC_CLIENT_H
#define RPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rpc/grpc.h"
#include "rx/stream.h"

typedef struct rpc_channel rpc_channel_t;
typedef struct rpc_ccall rpc_ccall_t;

typedef struct rpc_channel_opts {
    /* Connect timeout, TCP options and TLS (tls, tls_ctx, server_name, ca_file, pin_sha256,
     * ...). The channel sets alpn to {"h2", NULL} itself when tls is on. Copied. */
    rx_stream_opts_t stream;
    /* Largest message accepted from the server; 0 = RPC_DEFAULT_MAX_MESSAGE. */
    size_t max_message;
    uint64_t keepalive_interval_ns; /* 0 = off (default) */
    uint64_t keepalive_timeout_ns;  /* 0 with an interval = 10 s */
    /* :authority; NULL = "host:port". Copied. */
    const char *authority;
    /* user-agent; NULL = "sai3bench-rpc/<version>". Copied. */
    const char *user_agent;
} rpc_channel_opts_t;

void rpc_channel_opts_init(rpc_channel_opts_t *o);

/* status 0: connected (TCP, TLS with ALPN h2 when on, connection preface and SETTINGS sent).
 * status < 0: the channel failed (before or after connecting): RX/libuv connect codes,
 * RX_ETLS/RX_ETLSVERIFY, RPC_ENOH2 (TLS peer did not select h2), RPC_EKEEPALIVE, RPC_EGOAWAY,
 * RPC_ECONNLOST, RPC_EPROTOCOL; rpc_channel_error_detail() says more. Runs at most twice (0 then
 * < 0) and never after rpc_channel_close(). */
typedef void (*rpc_channel_cb)(rpc_channel_t *ch, int status, void *ud);

/* Starts connecting. Calls may be started at once (they wait for the connection). Returns 0 and
 * *out, or -EINVAL / -ENOMEM / an rx_stream_connect code (then nothing will be called). */
int rpc_channel_open(uv_loop_t *loop, const char *host, int port, const rpc_channel_opts_t *o,
                     rpc_channel_cb cb, void *ud, rpc_channel_t **out);

/* Ends every call (on_done CANCELLED "channel closed"), sends GOAWAY, closes the connection.
 * on_closed (may be NULL) runs from the loop once everything is closed, then the channel is freed.
 * Idempotent. */
void rpc_channel_close(rpc_channel_t *ch, void (*on_closed)(void *ud), void *ud);

/* Text behind the channel's failure ("" if none). Valid until the channel is freed. */
const char *rpc_channel_error_detail(const rpc_channel_t *ch);
/* The connection, once connected (NULL before and after): TLS details, peer address. */
rx_stream_t *rpc_channel_stream(const rpc_channel_t *ch);
/* 1 while connected and not failed. */
int rpc_channel_ready(const rpc_channel_t *ch);

typedef struct rpc_md {
    const char *name;  /* lowercase, e.g. "authorization" */
    const char *value;
} rpc_md_t;

typedef struct rpc_ccall_cb {
    /* One complete message from the server, in order; borrowed for the call. May be NULL. */
    void (*on_message)(rpc_ccall_t *c, const uint8_t *msg, size_t len, void *ud);
    /* Exactly once, last (see above). message is decoded grpc-message or the client's own
     * explanation ("" when none). The call is freed after this returns. */
    void (*on_done)(rpc_ccall_t *c, rpc_status_t status, const char *message, void *ud);
} rpc_ccall_cb_t;

/* Starts a call. md: nmd request metadata entries (copied; at most 64; names lowercase
 * [a-z0-9-_.], not pseudo-headers; values without CR/LF; else -EINVAL). timeout_ns: 0 = no
 * deadline, else sent as grpc-timeout and enforced locally (from now, including the time the
 * call waits for the connection). Returns 0 and *out (may be NULL if not wanted), or -EINVAL,
 * -ENOMEM, RX_ESTATE (channel failed or closed: nothing will be called). */
int rpc_ccall_start(rpc_channel_t *ch, const char *path, const rpc_md_t *md, size_t nmd,
                    uint64_t timeout_ns, const rpc_ccall_cb_t *cb, void *ud, rpc_ccall_t **out);

/* Queues one message (copied). Returns 0, RX_ESTATE (after close_send or the call ended),
 * -EINVAL (msg NULL with len > 0), -ENOMEM, -EMSGSIZE. */
int rpc_ccall_send(rpc_ccall_t *c, const uint8_t *msg, size_t len);
/* Half-closes: END_STREAM after the queued messages. Idempotent. Returns 0 or RX_ESTATE. */
int rpc_ccall_close_send(rpc_ccall_t *c);
/* Bytes queued on this call and not yet handed to the socket. */
size_t rpc_ccall_pending(const rpc_ccall_t *c);
/* Cancels: RST_STREAM(CANCEL), then on_done(CANCELLED) from the loop. No-op once done. */
void rpc_ccall_cancel(rpc_ccall_t *c);

/* Unary helper: start + send + close_send. On failure nothing will be called. */
int rpc_unary(rpc_channel_t *ch, const char *path, const rpc_md_t *md, size_t nmd,
              uint64_t timeout_ns, const uint8_t *msg, size_t len, const rpc_ccall_cb_t *cb,
              void *ud, rpc_ccall_t **out);

#endif
