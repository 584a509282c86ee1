/* rpc/err.h — the rpc library's error codes.
 *
 * The library owns the range -13001..-13999 (RPC_ERR_BASE - offset). The brief first proposed
 * -12000, but lib/workload already owns -12000..-12999 (wl/err.h), so rpc takes the next block.
 * RPC_ERR_LIST is the one list for the whole library: the wire codec (rpc/grpc.h) has the first
 * codes; the server and client append theirs with the next offsets (never renumber a code).
 *
 * Errors otherwise follow rx/err.h: 0 ok, negative failure, errno/libuv codes pass through.
 *
 * Threads: rpc_strerror() may be called from any thread and returns static strings;
 * rpc_err_register() must be called from main at start (see rx_err_register()).
 */
#ifndef RPC_ERR_H
#define RPC_ERR_H

#define RPC_ERR_BASE (-13000)

/* X(name, value-offset, message); codes are RPC_ERR_BASE - offset. */
#define RPC_ERR_LIST(X)                                                                            \
    X(RPC_ETOOBIG, 1, "gRPC message larger than the allowed maximum")                              \
    X(RPC_ECOMPRESSED, 2, "compressed gRPC message but no compression was negotiated")             \
    X(RPC_EFRAME, 3, "malformed gRPC message prefix (flag byte not 0 or 1)")                       \
    X(RPC_ETRUNCATED, 4, "gRPC stream ended inside a message")                                     \
    X(RPC_ETIMEOUT_FMT, 5, "malformed grpc-timeout value")                                         \
    X(RPC_ESTATUS_FMT, 6, "malformed grpc-status value")                                           \
    X(RPC_ECANCELLED, 7, "gRPC call cancelled by the peer (RST_STREAM)")                           \
    X(RPC_EDEADLINE, 8, "gRPC call deadline exceeded")                                             \
    X(RPC_EKEEPALIVE, 9, "no answer to HTTP/2 keepalive PING within the timeout")                  \
    X(RPC_ECONNLOST, 10, "HTTP/2 connection lost")                                                  \
    X(RPC_ESHUTDOWN, 11, "gRPC server shutting down")                                              \
    X(RPC_EPROTOCOL, 12, "HTTP/2 or gRPC protocol error from the peer")                            \
    X(RPC_ENOH2, 13, "TLS peer did not select ALPN h2")                                             \
    X(RPC_EGOAWAY, 14, "HTTP/2 peer sent GOAWAY")

enum rpc_err {
#define RPC_ERR_ENUM(name, off, msg) name = RPC_ERR_BASE - (off),
    RPC_ERR_LIST(RPC_ERR_ENUM)
#undef RPC_ERR_ENUM
};

/* Registers the library's table with rx_err_register() so rx_strerror() names its codes.
 * Idempotent; call from main at start. */
void rpc_err_register(void);

/* Message for any code: the rpc library's own, else whatever rx_strerror() says (errno, libuv,
 * other registered libraries). Never NULL; static strings. Works without rpc_err_register(). */
const char *rpc_strerror(int code);

#endif
