#include <stdio.h>
#include <string.h>

#include "rx/log.h"

#define LOG_BUF 1024

/* Set once by the application before any core thread starts (see log.h); thread creation orders
 * these writes before any reader on a core. */
static rx_log_fn log_fn;
static void *log_ud;
static rx_log_level_t log_max = RX_LOG_INFO;

void rx_log_set(rx_log_fn fn, void *ud, rx_log_level_t max_level)
{
    log_fn = fn;
    log_ud = ud;
    log_max = max_level;
}

int rx_log_enabled(rx_log_level_t level)
{
    return log_fn != NULL && level <= log_max;
}

void rx_logv(rx_log_level_t level, const char *subsys, const char *fmt, va_list ap)
{
    if (!rx_log_enabled(level) || fmt == NULL)
        return;
    char buf[LOG_BUF];
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    if (n < 0) {
        snprintf(buf, sizeof buf, "(bad log format: %s)", fmt);
    } else if ((size_t)n >= sizeof buf) {
        memcpy(buf + sizeof buf - 4, "...", 4);
    }
    log_fn(log_ud, level, subsys != NULL ? subsys : "", rx_core_self_index(), buf);
}

void rx_log(rx_log_level_t level, const char *subsys, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rx_logv(level, subsys, fmt, ap);
    va_end(ap);
}

const char *rx_log_level_name(rx_log_level_t level)
{
    switch (level) {
    case RX_LOG_ERROR:
        return "error";
    case RX_LOG_WARN:
        return "warn";
    case RX_LOG_INFO:
        return "info";
    case RX_LOG_DEBUG:
        return "debug";
    case RX_LOG_TRACE:
        return "trace";
    }
    return "?";
}
