/* wl/stats.h — per-op, per-size-bucket statistics.
 *
 * A wl_stats_t holds, for each op kind (GET, PUT, LIST, STAT, DELETE, MKDIR, RMDIR), one latency
 * histogram per size bucket (the original's 9 buckets), exact op and byte counts per bucket, a
 * histogram of latency measured from the op's intended start (open-loop runs), and error counts by
 * kind. Output groups ops into the original's classes GET, PUT and META (everything else).
 *
 * Ownership: a core owns the stats it records into; merged copies belong to whoever merged.
 * Not thread-safe.
 */
#ifndef WL_STATS_H
#define WL_STATS_H

#include <stdint.h>

#include "wl/config.h"
#include "wl/hist.h"

#define WL_NBUCKETS 9
#define WL_ERRKINDS 8

typedef enum wl_class { WL_CLASS_GET = 0, WL_CLASS_PUT, WL_CLASS_META, WL_CLASS__COUNT } wl_class_t;

wl_class_t wl_op_class(wl_op_kind_t op);
const char *wl_class_name(wl_class_t c); /* "GET", "PUT", "META" */
/* The original's bucket index for an op's byte count: 0 = zero bytes, 1 = 1B-8KiB, ... 8 = >2GiB */
int wl_size_bucket(uint64_t bytes);
const char *wl_bucket_label(int bucket);

typedef struct wl_errcount {
    int code;     /* negative error code; 0 = unused slot */
    char name[40]; /* provider code ("SlowDown", "HTTP 500"); "" when the backend gave none */
    uint64_t n;
} wl_errcount_t;

typedef struct wl_opstats {
    wl_hist_t lat[WL_NBUCKETS]; /* service time, ns */
    uint64_t ops[WL_NBUCKETS];
    uint64_t bytes[WL_NBUCKETS];
    wl_hist_t lat_sched;        /* from intended start to completion (io_rate runs only) */
    uint64_t errors;            /* failed attempts */
    uint64_t retries;
    wl_errcount_t errk[WL_ERRKINDS]; /* the first WL_ERRKINDS distinct (code, name) pairs */
    uint64_t err_other;         /* errors whose code did not fit in errk */
} wl_opstats_t;

typedef struct wl_stats {
    wl_opstats_t op[WL_OP__COUNT];
} wl_stats_t;

void wl_stats_init(wl_stats_t *s);
void wl_stats_free(wl_stats_t *s);
void wl_stats_reset(wl_stats_t *s);
/* Records one successful op. sched_ns = 0 when the run has no intended start times.
 * META ops are recorded in bucket 0 whatever their byte count (as the original does). */
int wl_stats_record(wl_stats_t *s, wl_op_kind_t op, uint64_t bytes, uint64_t lat_ns,
                    uint64_t sched_ns);
/* Counts one failed attempt under (code, name); name may be NULL (= ""). */
void wl_stats_error(wl_stats_t *s, wl_op_kind_t op, int code, const char *name);
int wl_stats_merge(wl_stats_t *dst, const wl_stats_t *src);

/* Sums over ops/buckets. */
uint64_t wl_stats_ops(const wl_stats_t *s, wl_op_kind_t op);
uint64_t wl_stats_bytes(const wl_stats_t *s, wl_op_kind_t op);
uint64_t wl_stats_errors(const wl_stats_t *s, wl_op_kind_t op);
uint64_t wl_stats_total_ops(const wl_stats_t *s);
uint64_t wl_stats_total_errors(const wl_stats_t *s);
/* Merges into out (initialised by the caller) the latency histogram of a class (or of one op when
 * op >= 0), for one bucket or all buckets (bucket < 0). */
int wl_stats_class_hist(const wl_stats_t *s, wl_class_t c, int bucket, wl_hist_t *out);
int wl_stats_op_hist(const wl_stats_t *s, wl_op_kind_t op, int bucket, wl_hist_t *out);
uint64_t wl_stats_class_ops(const wl_stats_t *s, wl_class_t c, int bucket);
uint64_t wl_stats_class_bytes(const wl_stats_t *s, wl_class_t c, int bucket);
uint64_t wl_stats_class_errors(const wl_stats_t *s, wl_class_t c);

#endif
