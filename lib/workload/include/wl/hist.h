/* wl/hist.h — log-linear (HDR-style) latency histograms.
 *
 * Values are nanoseconds from 1 ns to 1 hour (3.6e12 ns); larger values are clamped to the top
 * and counted in `clamped`. Precision: 3 significant decimal digits — every recorded value is
 * reported back within 0.1% relative error (sub-bucket count 2048, i.e. 11 bits of mantissa).
 * Values below 2048 ns are exact.
 *
 * Memory: the counts array is allocated lazily at the first record or merge, so an unused
 * histogram costs sizeof(wl_hist_t). Not thread-safe: one owner at a time (a core owns its
 * histograms; the control thread owns merged copies).
 */
#ifndef WL_HIST_H
#define WL_HIST_H

#include <stddef.h>
#include <stdint.h>

#define WL_HIST_MAX_NS 3600000000000ull /* 1 hour */

typedef struct wl_hist {
    uint64_t *counts; /* NULL until first use */
    uint64_t total;   /* number of values */
    uint64_t sum;     /* sum of recorded values (ns), saturating */
    uint64_t min, max;/* exact min and max of recorded values (after clamping) */
    uint64_t clamped; /* values above WL_HIST_MAX_NS */
} wl_hist_t;

void wl_hist_init(wl_hist_t *h);
void wl_hist_free(wl_hist_t *h);
void wl_hist_reset(wl_hist_t *h); /* keeps the allocation, zeroes counts */
/* Returns 0, -ENOMEM (only on first allocation) or -EOVERFLOW (total would pass 2^64 - 1;
 * nothing recorded). Value 0 is recorded as 1 ns. */
int wl_hist_record(wl_hist_t *h, uint64_t ns);
int wl_hist_record_n(wl_hist_t *h, uint64_t ns, uint64_t n);
/* dst += src, exactly. Returns 0, -ENOMEM or -EOVERFLOW (dst unchanged on error). */
int wl_hist_merge(wl_hist_t *dst, const wl_hist_t *src);
/* Value at quantile q in [0,1] (q=1 gives max, q=0 gives min): the smallest recorded value v such
 * that at least q*total values are <= v, reported as the highest value equivalent to v's bucket
 * but never above max. 0 when empty. */
uint64_t wl_hist_quantile(const wl_hist_t *h, double q);
double wl_hist_mean(const wl_hist_t *h);

/* Compact serialization: a versioned header, then (gap, count) pairs of non-zero buckets as
 * LEB128 varints. wl_hist_serialize returns the number of bytes needed; if it is > cap, nothing
 * useful was written and the caller retries with a bigger buffer. */
size_t wl_hist_serialize(const wl_hist_t *h, uint8_t *buf, size_t cap);
/* Replaces *h with the decoded histogram (reusing its counts array if any). Returns 0, -EINVAL
 * on malformed input, or -ENOMEM; h is unchanged on error. Safe on untrusted bytes: it checks
 * the magic and version, varint bounds, bucket indices, that counts add up to total, that min and
 * max fall in the first and last non-empty buckets, clamped against the top bucket, and that the
 * sum lies between total*min and total*max. The encoding is canonical (minimal varints only):
 * serialize(deserialize(b)) == b for every accepted b. */
int wl_hist_deserialize(wl_hist_t *h, const uint8_t *buf, size_t len);

/* Bucket geometry, exposed for tests. wl_hist_index_of clamps values above WL_HIST_MAX_NS;
 * indices run from 0 to wl_hist_bucket_count() - 1 and the equivalent ranges tile 0..2^42-1. */
size_t wl_hist_bucket_count(void);
size_t wl_hist_index_of(uint64_t ns);
uint64_t wl_hist_lowest_equivalent(size_t idx);
uint64_t wl_hist_highest_equivalent(size_t idx);

#endif
