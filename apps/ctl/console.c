/* Console output: stdout for results and live lines, stderr for logs; both mirrored into
 * console_log.txt once the results directory exists. The rx logger lands here too, from any
 * thread, so output is serialised with a mutex. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "rx/log.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_file;
static int tty;
static int status_shown;

static void log_cb(void *ud, rx_log_level_t level, const char *subsys, int core, const char *msg)
{
    (void)ud;
    if (core >= 0)
        ctl_err("[%s] %s (core %d): %s", rx_log_level_name(level), subsys, core, msg);
    else
        ctl_err("[%s] %s: %s", rx_log_level_name(level), subsys, msg);
}

void ctl_console_init(int verbose)
{
    tty = isatty(STDOUT_FILENO);
    rx_log_level_t lvl = verbose >= 3   ? RX_LOG_TRACE
                         : verbose == 2 ? RX_LOG_DEBUG
                         : verbose == 1 ? RX_LOG_INFO
                                        : RX_LOG_WARN;
    rx_log_set(log_cb, NULL, lvl);
}

int ctl_console_open_log(const char *path)
{
    pthread_mutex_lock(&lock);
    log_file = fopen(path, "w");
    pthread_mutex_unlock(&lock);
    return log_file ? 0 : -1;
}

void ctl_console_close_log(void)
{
    pthread_mutex_lock(&lock);
    if (log_file) fclose(log_file);
    log_file = NULL;
    pthread_mutex_unlock(&lock);
}

int ctl_console_is_tty(void)
{
    return tty;
}

static void clear_status_locked(void)
{
    if (status_shown && tty) {
        fputs("\r\033[K", stdout);
        fflush(stdout);
    }
    status_shown = 0;
}

static void vout(FILE *to, const char *fmt, va_list ap)
{
    char buf[4096];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    pthread_mutex_lock(&lock);
    clear_status_locked();
    fprintf(to, "%s\n", buf);
    fflush(to);
    if (log_file) {
        fprintf(log_file, "%s\n", buf);
        fflush(log_file);
    }
    pthread_mutex_unlock(&lock);
}

void ctl_out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vout(stdout, fmt, ap);
    va_end(ap);
}

void ctl_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vout(stderr, fmt, ap);
    va_end(ap);
}

void ctl_status(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&lock);
    if (tty) {
        fprintf(stdout, "\r\033[K%s", buf);
        fflush(stdout);
        status_shown = 1;
    } else {
        fprintf(stdout, "%s\n", buf);
        fflush(stdout);
        if (log_file) fprintf(log_file, "%s\n", buf);
    }
    pthread_mutex_unlock(&lock);
}

void ctl_status_clear(void)
{
    pthread_mutex_lock(&lock);
    clear_status_locked();
    pthread_mutex_unlock(&lock);
}
