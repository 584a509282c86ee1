/* sto/err.h — storage error codes (range -11000..-11999), registered with rx_strerror().
 * Detail (OS message, provider code) lives on the request's sto_result_t. */
#ifndef STO_ERR_H
#define STO_ERR_H

#define STO_ERR_BASE (-11000)

#define STO_ERR_LIST(X)                                                                            \
    X(STO_EURI, 1, "invalid storage URI")                                                          \
    X(STO_ESCHEME, 2, "unsupported URI scheme")                                                    \
    X(STO_ENOTFOUND, 3, "object not found")                                                        \
    X(STO_EEXIST, 4, "object already exists")                                                      \
    X(STO_ENODIRECT, 5, "filesystem does not support O_DIRECT")                                    \
    X(STO_EIO, 6, "I/O error")                                                                     \
    X(STO_EPERM, 7, "permission denied")                                                           \
    X(STO_ENOTSUP, 8, "operation not supported by this backend")                                   \
    X(STO_ENOSPC, 9, "no space left on device")                                                    \
    X(STO_ENOTEMPTY, 10, "directory not empty")                                                    \
    X(STO_ESHORT, 11, "short read or write")                                                       \
    X(STO_ECANCELED, 12, "request canceled")                                                       \
    X(STO_ENOBUCKET, 13, "bucket or container does not exist")                                     \
    X(STO_ETHROTTLE, 14, "service asked to slow down")                                             \
    X(STO_ESERVER, 15, "service error (HTTP 5xx)")                                                 \
    X(STO_EHTTP, 16, "request refused by the service (HTTP 4xx)")                                  \
    X(STO_EPROTO, 17, "unexpected response from the service")

enum sto_err {
#define STO_ERR_ENUM(name, off, msg) name = STO_ERR_BASE - (off),
    STO_ERR_LIST(STO_ERR_ENUM)
#undef STO_ERR_ENUM
};

/* Registers the storage range with rx_strerror(). Idempotent; call once from main. */
void sto_err_register(void);
const char *sto_strerror(int code);
/* Maps an errno value (positive) to a sto/uv code: ENOENT→STO_ENOTFOUND, EEXIST→STO_EEXIST, ... */
int sto_err_from_errno(int e);

#endif
