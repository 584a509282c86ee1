/* Workload error names, registered with rx_strerror(). */
#include "rx/err.h"
#include "wl/err.h"

const char *wl_strerror(int code)
{
    switch (code) {
#define WL_ERR_CASE(name, off, msg)                                                                \
    case name: return msg;
        WL_ERR_LIST(WL_ERR_CASE)
#undef WL_ERR_CASE
    default: return rx_strerror(code);
    }
}

static const char *name_of(int code)
{
    switch (code) {
#define WL_ERR_CASE2(name, off, msg)                                                               \
    case name: return msg;
        WL_ERR_LIST(WL_ERR_CASE2)
#undef WL_ERR_CASE2
    default: return 0;
    }
}

void wl_err_register(void)
{
    static const rx_err_table_t t = {WL_ERR_BASE - 999, WL_ERR_BASE - 1, name_of};
    rx_err_register(&t);
}
