/* sai3bench-ctl internals. Everything here runs on the main (control) thread unless noted. */
#ifndef CTL_H
#define CTL_H

#include <stdint.h>
#include <stdio.h>

#include "wl/config.h"
#include "wl/run.h"

typedef struct ctl_opts {
    int verbose;
    int cores;            /* 0 = all available */
    const char *config;
    int dry_run;
    int prepare_only;
    int skip_prepare;
    int no_cleanup;
    int cleanup_only;
    const char *results_parent; /* default "." */
    const char *tsv_name;       /* replaces the config stem in the results dir name */
    int argc;
    char **argv;
} ctl_opts_t;

/* console.c — stdout mirrored into console_log.txt once the results dir exists */
void ctl_console_init(int verbose);
int ctl_console_open_log(const char *path);
void ctl_console_close_log(void);
int ctl_console_is_tty(void);
void ctl_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A transient status line (progress bar) on a TTY; cleared by the next ctl_out. */
void ctl_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ctl_status_clear(void);

/* run_cmd.c */
int ctl_cmd_run(const ctl_opts_t *o);
int ctl_cmd_validate(const ctl_opts_t *o);
/* Loads a config, printing every diagnostic. Returns 0 or 2. */
int ctl_load_config(const char *path, wl_config_t *cfg);

/* util_cmd.c — `util <sub> URI [options]`; argv holds the arguments after "util". Returns the
 * exit status: 0 ok, 1 an operation failed, 2 bad usage. */
int ctl_cmd_util(const ctl_opts_t *o, int argc, char **argv);

#endif
