/* rx/log.h — logging hook. Libraries never print: they call the logger the application installed.
 *
 * The logger may be called from any core thread and from the control thread at the same time; the
 * application's callback must be thread-safe. Without a logger, messages are dropped.
 */
#ifndef RX_LOG_H
#define RX_LOG_H

#include <stdarg.h>

typedef enum rx_log_level {
    RX_LOG_ERROR = 0,
    RX_LOG_WARN = 1,
    RX_LOG_INFO = 2,
    RX_LOG_DEBUG = 3,
    RX_LOG_TRACE = 4,
} rx_log_level_t;

/* core is the core index of the calling thread, or -1 for the control thread. */
typedef void (*rx_log_fn)(void *ud, rx_log_level_t level, const char *subsys, int core,
                          const char *msg);

/* Installs the logger and the maximum level passed to it. Call before starting engines. */
void rx_log_set(rx_log_fn fn, void *ud, rx_log_level_t max_level);
int rx_log_enabled(rx_log_level_t level);
void rx_log(rx_log_level_t level, const char *subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rx_logv(rx_log_level_t level, const char *subsys, const char *fmt, va_list ap);
const char *rx_log_level_name(rx_log_level_t level);

/* Index of the calling core thread, -1 when not on a core (set by the engine). */
int rx_core_self_index(void);

#endif
