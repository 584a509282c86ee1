/* wl/err.h — workload error codes (range -12000..-12999), registered with rx_strerror(). */
#ifndef WL_ERR_H
#define WL_ERR_H

#define WL_ERR_BASE (-12000)

#define WL_ERR_LIST(X)                                                                             \
    X(WL_ECONFIG, 1, "invalid configuration")                                                      \
    X(WL_EABORTED, 2, "run aborted")                                                               \
    X(WL_ETOOMANYERRORS, 3, "max_total_errors reached")                                            \
    X(WL_EPREPARE, 4, "prepare failed")                                                            \
    X(WL_ECLEANUP, 5, "cleanup failed")                                                            \
    X(WL_ENOOBJECTS, 6, "no objects to operate on")                                                \
    X(WL_EIO, 7, "cannot write results")

enum wl_err {
#define WL_ERR_ENUM(name, off, msg) name = WL_ERR_BASE - (off),
    WL_ERR_LIST(WL_ERR_ENUM)
#undef WL_ERR_ENUM
};

void wl_err_register(void);
const char *wl_strerror(int code);

#endif
