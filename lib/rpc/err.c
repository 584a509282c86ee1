/* rpc error table. See rpc/err.h. */
#include <stddef.h>

#include "rpc/err.h"
#include "rx/err.h"

RX_ERR_TABLE(RPC_ERR_LIST, RPC_ERR_BASE, rpc_err_msg, rpc_err_table);

void rpc_err_register(void)
{
    /* rx_err_register is idempotent for the same table. */
    rx_err_register(&rpc_err_table);
}

const char *rpc_strerror(int code)
{
    const char *m = rpc_err_msg(code);
    return m != NULL ? m : rx_strerror(code);
}
