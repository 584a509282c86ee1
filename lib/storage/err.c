#include <errno.h>
#include <stddef.h>

#include "rx/err.h"
#include "sto/err.h"

RX_ERR_TABLE(STO_ERR_LIST, STO_ERR_BASE, sto_err_msg, sto_err_table);

void sto_err_register(void)
{
    /* rx_err_register is idempotent for the same table. */
    rx_err_register(&sto_err_table);
}

const char *sto_strerror(int code)
{
    const char *m = sto_err_msg(code);
    return m ? m : rx_strerror(code);
}

int sto_err_from_errno(int e)
{
    switch (e) {
    case 0:
        return 0;
    case ENOENT:
        return STO_ENOTFOUND;
    case EEXIST:
        return STO_EEXIST;
    case EACCES:
    case EPERM:
        return STO_EPERM;
    case ENOSPC:
        return STO_ENOSPC;
    case ENOTEMPTY:
        return STO_ENOTEMPTY;
    case EIO:
        return STO_EIO;
    case ECANCELED:
        return STO_ECANCELED;
    default:
        return e > 0 ? -e : e;
    }
}
