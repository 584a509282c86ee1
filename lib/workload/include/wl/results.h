/* wl/results.h — the results directory and its files, compatible with the original sai3-bench.
 *
 * results.tsv / prepare_results.tsv: the original's 13 columns, rows per class (GET, PUT, META)
 * and size bucket, plus per-op ALL rows for the metadata ops (LIST 92, STAT 93, DELETE 94,
 * MKDIR 95, RMDIR 96) and the class ALL rows (META 97, GET 98, PUT 99), sorted by bucket_idx.
 * perf_log.tsv: the original's 30 columns, one row per interval; `errors` is really counted.
 *
 * All functions write files only; they never print. Return 0 or a negative errno.
 * Not thread-safe: the control thread owns the writers.
 */
#ifndef WL_RESULTS_H
#define WL_RESULTS_H

#include <stdint.h>
#include <stdio.h>

#include "wl/stats.h"

/* Creates ./<parent>/sai3-YYYYMMDD-HHMM-<stem>/ (local time); when that exists, appends -2, -3,
 * ... Writes the path into out. */
int wl_results_dir_create(const char *parent, const char *stem, char *out, size_t len);

/* Header line of results.tsv, without the newline. */
extern const char *const wl_results_tsv_header;

/* Writes the results table for `s` over wall_ns to f (header included). prepare_only: PUT rows
 * only, as the original's prepare_results.tsv. */
int wl_results_write_tsv(FILE *f, const wl_stats_t *s, uint64_t wall_ns, int prepare_only);
int wl_results_write_tsv_file(const char *path, const wl_stats_t *s, uint64_t wall_ns,
                              int prepare_only);

/* Byte copy. */
int wl_copy_file(const char *from, const char *to);

/* CPU accounting from /proc/stat. */
typedef struct wl_cpu_sample {
    uint64_t user, nice, system, idle, iowait, irq, softirq, steal;
} wl_cpu_sample_t;
int wl_cpu_read(wl_cpu_sample_t *s);
void wl_cpu_pct(const wl_cpu_sample_t *a, const wl_cpu_sample_t *b, double *user, double *sys,
                double *iowait);

/* perf_log.tsv writer: accumulate tick deltas, write one row when `interval_ns` is covered. */
typedef struct wl_perflog {
    FILE *f;
    const char *agent_id;
    uint64_t interval_ns;
    wl_stats_t acc;
    uint64_t acc_ns;
    uint64_t phase_elapsed_ns;
    int phase;
    wl_cpu_sample_t cpu_prev;
    int cpu_ok;     /* rows read this host's /proc/stat */
    int cpu_ext;    /* rows show what wl_perflog_cpu() supplied instead */
    double cpu_sum[3];
    uint64_t cpu_ns;
} wl_perflog_t;

extern const char *const wl_perflog_header;
int wl_perflog_open(wl_perflog_t *p, const char *path, const char *agent_id, uint64_t interval_ns);
/* Adds a tick's delta (interval_ns long, ending elapsed_ns into phase `stage`); writes a row when
 * the accumulated time reaches the interval, or when flush is set (end of a phase). */
int wl_perflog_add(wl_perflog_t *p, const char *stage, uint64_t wall_ms, uint64_t elapsed_ns,
                   const wl_stats_t *delta, uint64_t interval_ns, int flush);
int wl_perflog_close(wl_perflog_t *p);
/* CPU use measured elsewhere (an agent's host: user, system, iowait percent) over ns of the
 * interval being accumulated. From the first call on, rows show the time-weighted mean of what was
 * supplied since the previous row (0 when nothing was) instead of this host's /proc/stat. */
void wl_perflog_cpu(wl_perflog_t *p, double user, double sys, double iowait, uint64_t ns);

/* metadata.json */
typedef struct wl_metadata {
    const char *test_name, *config_path, *results_dir;
    uint64_t start_wall_ns, end_wall_ns;
    int argc;
    char **argv;
    int cores;
    uint32_t concurrency;
    const char *status;  /* "completed", "interrupted", "failed" */
    const char *error;   /* NULL or the failure text */
    uint64_t total_ops, total_errors;
} wl_metadata_t;

int wl_metadata_write(const char *path, const wl_metadata_t *m);

#endif
