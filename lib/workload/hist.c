/* Log-linear histogram (HdrHistogram layout): 2048 linear sub-buckets per power of two above
 * 2048, so any value is represented within 1/1024 of itself. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "wl/hist.h"

#define SUB_BITS 11                 /* 2048 sub-buckets: 3 significant digits */
#define SUB_COUNT (1u << SUB_BITS)
#define SUB_HALF (SUB_COUNT / 2)
#define MAX_BITS 42                 /* 2^42 ns > 1 h */
#define BUCKETS (MAX_BITS - SUB_BITS + 1)
#define NCOUNTS ((size_t)(BUCKETS + 1) * SUB_HALF)

#define SER_MAGIC0 'W'
#define SER_MAGIC1 'H'
#define SER_VERSION 1

size_t wl_hist_bucket_count(void)
{
    return NCOUNTS;
}

size_t wl_hist_index_of(uint64_t v)
{
    if (v < SUB_COUNT) return (size_t)v;
    int msb = 63 - __builtin_clzll(v);       /* >= SUB_BITS */
    int bucket = msb - SUB_BITS + 1;         /* 1.. */
    uint64_t sub = v >> bucket;              /* in [SUB_HALF, SUB_COUNT) */
    return (size_t)bucket * SUB_HALF + (size_t)sub;
}

uint64_t wl_hist_lowest_equivalent(size_t idx)
{
    if (idx < SUB_COUNT) return idx;
    size_t bucket = idx / SUB_HALF - 1;
    uint64_t sub = idx - bucket * SUB_HALF;
    return sub << bucket;
}

uint64_t wl_hist_highest_equivalent(size_t idx)
{
    if (idx < SUB_COUNT) return idx;
    size_t bucket = idx / SUB_HALF - 1;
    return wl_hist_lowest_equivalent(idx) + ((uint64_t)1 << bucket) - 1;
}

void wl_hist_init(wl_hist_t *h)
{
    memset(h, 0, sizeof(*h));
}

void wl_hist_free(wl_hist_t *h)
{
    free(h->counts);
    memset(h, 0, sizeof(*h));
}

void wl_hist_reset(wl_hist_t *h)
{
    if (h->counts) memset(h->counts, 0, NCOUNTS * sizeof(uint64_t));
    h->total = h->sum = h->min = h->max = h->clamped = 0;
}

static int ensure(wl_hist_t *h)
{
    if (h->counts) return 0;
    h->counts = calloc(NCOUNTS, sizeof(uint64_t));
    return h->counts ? 0 : -ENOMEM;
}

int wl_hist_record_n(wl_hist_t *h, uint64_t ns, uint64_t n)
{
    if (n == 0) return 0;
    if (ensure(h) != 0) return -ENOMEM;
    if (ns == 0) ns = 1;
    if (ns > WL_HIST_MAX_NS) {
        ns = WL_HIST_MAX_NS;
        h->clamped += n;
    }
    h->counts[wl_hist_index_of(ns)] += n;
    if (h->total == 0 || ns < h->min) h->min = ns;
    if (ns > h->max) h->max = ns;
    h->total += n;
    uint64_t add;
    if (__builtin_mul_overflow(ns, n, &add) || __builtin_add_overflow(h->sum, add, &h->sum))
        h->sum = UINT64_MAX;
    return 0;
}

int wl_hist_record(wl_hist_t *h, uint64_t ns)
{
    return wl_hist_record_n(h, ns, 1);
}

int wl_hist_merge(wl_hist_t *dst, const wl_hist_t *src)
{
    if (!src->total) return 0;
    if (ensure(dst) != 0) return -ENOMEM;
    for (size_t i = 0; i < NCOUNTS; i++) dst->counts[i] += src->counts[i];
    if (dst->total == 0 || src->min < dst->min) dst->min = src->min;
    if (src->max > dst->max) dst->max = src->max;
    dst->total += src->total;
    dst->clamped += src->clamped;
    if (__builtin_add_overflow(dst->sum, src->sum, &dst->sum)) dst->sum = UINT64_MAX;
    return 0;
}

uint64_t wl_hist_quantile(const wl_hist_t *h, double q)
{
    if (!h->total || !h->counts) return 0;
    if (q <= 0) return h->min;
    if (q >= 1) return h->max;
    uint64_t rank = (uint64_t)ceil(q * (double)h->total);
    if (rank < 1) rank = 1;
    uint64_t cum = 0;
    for (size_t i = 0; i < NCOUNTS; i++) {
        cum += h->counts[i];
        if (cum >= rank) {
            uint64_t v = wl_hist_highest_equivalent(i);
            if (v > h->max) v = h->max;
            if (v < h->min) v = h->min;
            return v;
        }
    }
    return h->max;
}

double wl_hist_mean(const wl_hist_t *h)
{
    return h->total ? (double)h->sum / (double)h->total : 0.0;
}

/* ---- serialization: "WH" version, varints total sum min max clamped nz, then (gap, count) */

static size_t put_varint(uint8_t *buf, size_t cap, size_t pos, uint64_t v)
{
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        if (v) b |= 0x80;
        if (pos < cap) buf[pos] = b;
        pos++;
    } while (v);
    return pos;
}

static int get_varint(const uint8_t *buf, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= len) return -EINVAL;
        uint8_t b = buf[(*pos)++];
        if (shift == 63 && (b & 0x7e)) return -EINVAL;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -EINVAL;
}

size_t wl_hist_serialize(const wl_hist_t *h, uint8_t *buf, size_t cap)
{
    size_t pos = 0;
    uint8_t hdr[3] = {SER_MAGIC0, SER_MAGIC1, SER_VERSION};
    for (int i = 0; i < 3; i++, pos++)
        if (pos < cap) buf[pos] = hdr[i];
    uint64_t nz = 0;
    if (h->counts)
        for (size_t i = 0; i < NCOUNTS; i++) nz += h->counts[i] != 0;
    pos = put_varint(buf, cap, pos, h->total);
    pos = put_varint(buf, cap, pos, h->sum);
    pos = put_varint(buf, cap, pos, h->min);
    pos = put_varint(buf, cap, pos, h->max);
    pos = put_varint(buf, cap, pos, h->clamped);
    pos = put_varint(buf, cap, pos, nz);
    size_t last = 0;
    if (h->counts)
        for (size_t i = 0; i < NCOUNTS; i++) {
            if (!h->counts[i]) continue;
            pos = put_varint(buf, cap, pos, i - last);
            pos = put_varint(buf, cap, pos, h->counts[i]);
            last = i;
        }
    return pos;
}

int wl_hist_deserialize(wl_hist_t *h, const uint8_t *buf, size_t len)
{
    if (len < 3 || buf[0] != SER_MAGIC0 || buf[1] != SER_MAGIC1 || buf[2] != SER_VERSION)
        return -EINVAL;
    size_t pos = 3;
    uint64_t total, sum, min, max, clamped, nz;
    if (get_varint(buf, len, &pos, &total) || get_varint(buf, len, &pos, &sum) ||
        get_varint(buf, len, &pos, &min) || get_varint(buf, len, &pos, &max) ||
        get_varint(buf, len, &pos, &clamped) || get_varint(buf, len, &pos, &nz))
        return -EINVAL;
    if (nz > NCOUNTS || clamped > total || min > max || max > WL_HIST_MAX_NS ||
        (total && min == 0) || (!total && (nz || min || max || sum)))
        return -EINVAL;
    uint64_t *counts = NULL;
    if (nz) {
        counts = calloc(NCOUNTS, sizeof(uint64_t));
        if (!counts) return -ENOMEM;
    }
    uint64_t seen = 0;
    size_t idx = 0;
    for (uint64_t k = 0; k < nz; k++) {
        uint64_t gap, c;
        if (get_varint(buf, len, &pos, &gap) || get_varint(buf, len, &pos, &c) || c == 0 ||
            (k > 0 && gap == 0) || gap >= NCOUNTS - idx || __builtin_add_overflow(seen, c, &seen))
            goto bad;
        idx += (size_t)gap;
        counts[idx] = c;
    }
    if (pos != len || seen != total) goto bad;
    if (total) {
        /* min and max must fall in the first and last non-empty buckets */
        size_t lo = 0, hi = NCOUNTS - 1;
        while (!counts[lo]) lo++;
        while (!counts[hi]) hi--;
        if (wl_hist_index_of(min) != lo || wl_hist_index_of(max) != hi) goto bad;
    }
    free(h->counts);
    h->counts = counts;
    h->total = total;
    h->sum = sum;
    h->min = min;
    h->max = max;
    h->clamped = clamped;
    return 0;
bad:
    free(counts);
    return -EINVAL;
}
