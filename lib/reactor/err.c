#include <stdarg.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <uv.h>

#include "rx/err.h"
#include "rx_internal.h"

#define MAX_TABLES 8

/* Slots are written before the count is published (release), so concurrent readers that load the
 * count (acquire) only see complete tables. Registration itself is not thread-safe (see err.h). */
static const rx_err_table_t *tables[MAX_TABLES];
static atomic_int ntables;

enum {
    RX_ERR_COUNT = 0
#define RX_ERR_COUNT_ONE(name, off, msg) +1
    RX_ERR_LIST(RX_ERR_COUNT_ONE)
#undef RX_ERR_COUNT_ONE
};

static const char *rx_err_msg(int code)
{
    switch (code) {
#define RX_ERR_CASE(name, off, msg)                                                                \
    case name:                                                                                     \
        return msg;
        RX_ERR_LIST(RX_ERR_CASE)
#undef RX_ERR_CASE
    default:
        return NULL;
    }
}

/* uv_strerror() leaks a heap string for codes it does not know, so only known ones go to it. */
static int uv_code_known(int code)
{
    switch (code) {
#define RX_UV_CASE(name, msg) case UV_##name:
        UV_ERRNO_MAP(RX_UV_CASE)
#undef RX_UV_CASE
        return 1;
    default:
        return 0;
    }
}

void rx_err_register(const rx_err_table_t *table)
{
    if (table == NULL || table->name == NULL)
        return;
    int n = atomic_load_explicit(&ntables, memory_order_relaxed);
    for (int i = 0; i < n; i++) {
        if (tables[i] == table ||
            (tables[i]->first == table->first && tables[i]->last == table->last))
            return;
    }
    if (n >= MAX_TABLES)
        return;
    tables[n] = table;
    atomic_store_explicit(&ntables, n + 1, memory_order_release);
}

const char *rx_strerror(int code)
{
    if (code == 0)
        return "success";
    if (code <= RX_ERR_BASE - 1 && code >= RX_ERR_BASE - RX_ERR_COUNT) {
        const char *m = rx_err_msg(code);
        if (m != NULL)
            return m;
    }
    int n = atomic_load_explicit(&ntables, memory_order_acquire);
    for (int i = 0; i < n; i++) {
        const rx_err_table_t *t = tables[i];
        if (code >= t->first && code <= t->last) {
            const char *m = t->name(code);
            return m != NULL ? m : "unknown error";
        }
    }
    if (code < 0 && code > -4096) {
        if (uv_code_known(code))
            return uv_strerror(code);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
        const char *m = strerrordesc_np(-code);
        if (m != NULL)
            return m;
#endif
        return "unknown system error";
    }
    return "unknown error";
}

void rx__set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
