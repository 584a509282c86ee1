/* rx/err.h — the reactor's error codes.
 *
 * Convention (all sai3bench libraries): functions return int, 0 on success, a negative code on
 * failure. libuv codes (UV_E*, which are negative errno values) pass through unchanged. Each
 * library owns a range of codes below -10000 listed in one X-macro; rx_strerror() names any code
 * of any range that has registered itself, plus errno/libuv codes.
 *
 * Thread-safety: rx_strerror() may be called from any thread; the returned string is static.
 */
#ifndef RX_ERR_H
#define RX_ERR_H

#define RX_ERR_BASE (-10000)

/* X(name, value-offset, message) */
#define RX_ERR_LIST(X)                                                                             \
    X(RX_EINVAL, 1, "invalid argument")                                                            \
    X(RX_ENOMEM, 2, "out of memory")                                                               \
    X(RX_ESTATE, 3, "operation not valid in the current state")                                    \
    X(RX_ESHUTDOWN, 4, "engine is shutting down")                                                  \
    X(RX_ETHREAD, 5, "could not start a core thread")                                              \
    X(RX_EAFFINITY, 6, "could not pin a core thread to its CPU")                                   \
    X(RX_ECANCELED, 7, "operation canceled")                                                       \
    X(RX_ETIMEDOUT, 8, "operation timed out")                                                      \
    X(RX_ETLS, 9, "TLS handshake or record failure")                                               \
    X(RX_ETLSVERIFY, 10, "TLS certificate verification failed")                                    \
    X(RX_ETLSCA, 11, "TLS CA bundle could not be loaded")                                         \
    X(RX_EHTTP2, 12, "HTTP/2 protocol error")                                                      \
    X(RX_EH2RESET, 13, "HTTP/2 stream reset by the peer")                                          \
    X(RX_ENOH2, 14, "the server did not agree to HTTP/2")

enum rx_err {
#define RX_ERR_ENUM(name, off, msg) name = RX_ERR_BASE - (off),
    RX_ERR_LIST(RX_ERR_ENUM)
#undef RX_ERR_ENUM
};

/* A library's error table; registered once (idempotent), looked up by rx_strerror(). */
typedef struct rx_err_table {
    int first; /* most negative code in the range */
    int last;  /* least negative code in the range */
    const char *(*name)(int code);
} rx_err_table_t;

/* Defines, for an error X-macro LIST whose offsets run 1..N below BASE, a file-local
 * `const char *NAME_FN(int code)` (the message, NULL for other codes) and a file-local
 * `const rx_err_table_t TABLE` covering [BASE - N, BASE - 1], ready for rx_err_register(). */
#define RX__ERR_CASE(name, off, msg)                                                               \
    case name:                                                                                     \
        return msg;
#define RX__ERR_ONE(name, off, msg) +1
#define RX_ERR_TABLE(LIST, BASE, NAME_FN, TABLE)                                                   \
    static const char *NAME_FN(int code)                                                           \
    {                                                                                              \
        switch (code) {                                                                            \
            LIST(RX__ERR_CASE)                                                                     \
        default:                                                                                   \
            return 0;                                                                              \
        }                                                                                          \
    }                                                                                              \
    static const rx_err_table_t TABLE = {(BASE) - (0 LIST(RX__ERR_ONE)), (BASE)-1, NAME_FN}

/* Registers a table. Not thread-safe against concurrent registration: call from main at start. */
void rx_err_register(const rx_err_table_t *table);

/* Human-readable message for any code: rx, registered library ranges, libuv/errno. Never NULL. */
const char *rx_strerror(int code);

#endif
