/* Workload error names, registered with rx_strerror(). */
#include "rx/err.h"
#include "wl/err.h"

RX_ERR_TABLE(WL_ERR_LIST, WL_ERR_BASE, wl_err_msg, wl_err_table);

const char *wl_strerror(int code)
{
    const char *m = wl_err_msg(code);
    return m ? m : rx_strerror(code);
}

void wl_err_register(void)
{
    rx_err_register(&wl_err_table);
}
