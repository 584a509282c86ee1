/* Log-linear histogram in the HdrHistogram layout: values below 2048 have a bucket each; above,
 * every power of two [2^k, 2^(k+1)) is split into 1024 equal sub-buckets, so a bucket is never
 * wider than 1/1024 of its lowest value and reporting its highest value errs by < 0.1%.
 *
 * Index of v >= 2048 with highest set bit m: shift = m - 10, index = shift * 1024 + (v >> shift),
 * which continues the exact range 0..2047 without gaps (shift 1 starts at index 2048). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "wl/hist.h"

#define SUB_BITS 11 /* 2048 sub-buckets: 3 significant digits */
#define SUB_COUNT (1u << SUB_BITS)
#define SUB_HALF (SUB_COUNT / 2)
#define MAX_BITS 42 /* 2^42 ns > 1 h */
#define BUCKETS (MAX_BITS - SUB_BITS + 1)
#define NCOUNTS ((size_t)(BUCKETS + 1) * SUB_HALF)

#define SER_MAGIC0 'W'
#define SER_MAGIC1 'H'
#define SER_VERSION 1
#define SER_HDR 3

_Static_assert((WL_HIST_MAX_NS >> (MAX_BITS - 1)) == 1, "MAX_BITS must cover WL_HIST_MAX_NS");

size_t wl_hist_bucket_count(void)
{
    return NCOUNTS;
}

size_t wl_hist_index_of(uint64_t v)
{
    if (v > WL_HIST_MAX_NS)
        v = WL_HIST_MAX_NS;
    if (v < SUB_COUNT)
        return (size_t)v;
    int msb = 63 - __builtin_clzll(v); /* >= SUB_BITS */
    int shift = msb - SUB_BITS + 1;    /* 1.. */
    uint64_t sub = v >> shift;         /* in [SUB_HALF, SUB_COUNT) */
    return (size_t)shift * SUB_HALF + (size_t)sub;
}

uint64_t wl_hist_lowest_equivalent(size_t idx)
{
    if (idx < SUB_COUNT)
        return idx;
    size_t shift = idx / SUB_HALF - 1;
    uint64_t sub = idx - shift * SUB_HALF;
    return sub << shift;
}

uint64_t wl_hist_highest_equivalent(size_t idx)
{
    if (idx < SUB_COUNT)
        return idx;
    size_t shift = idx / SUB_HALF - 1;
    return wl_hist_lowest_equivalent(idx) + ((uint64_t)1 << shift) - 1;
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
    if (h->counts)
        memset(h->counts, 0, NCOUNTS * sizeof(uint64_t));
    h->total = h->sum = h->min = h->max = h->clamped = 0;
}

static int ensure(wl_hist_t *h)
{
    if (h->counts)
        return 0;
    h->counts = calloc(NCOUNTS, sizeof(uint64_t));
    return h->counts ? 0 : -ENOMEM;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    uint64_t r;
    return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
    uint64_t r;
    return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

int wl_hist_record_n(wl_hist_t *h, uint64_t ns, uint64_t n)
{
    if (n == 0)
        return 0;
    if (h->total + n < h->total)
        return -EOVERFLOW;
    if (ensure(h) != 0)
        return -ENOMEM;
    if (ns == 0)
        ns = 1;
    if (ns > WL_HIST_MAX_NS) {
        ns = WL_HIST_MAX_NS;
        h->clamped += n;
    }
    h->counts[wl_hist_index_of(ns)] += n;
    if (h->total == 0 || ns < h->min)
        h->min = ns;
    if (ns > h->max)
        h->max = ns;
    h->total += n;
    h->sum = sat_add(h->sum, sat_mul(ns, n));
    return 0;
}

int wl_hist_record(wl_hist_t *h, uint64_t ns)
{
    return wl_hist_record_n(h, ns, 1);
}

int wl_hist_merge(wl_hist_t *dst, const wl_hist_t *src)
{
    if (src->total == 0 || !src->counts)
        return 0;
    if (dst->total + src->total < dst->total)
        return -EOVERFLOW;
    if (ensure(dst) != 0)
        return -ENOMEM;
    /* every non-zero count of src lies between the buckets of its min and max */
    size_t hi = wl_hist_index_of(src->max);
    for (size_t i = wl_hist_index_of(src->min); i <= hi; i++)
        dst->counts[i] += src->counts[i];
    if (dst->total == 0 || src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    dst->total += src->total;
    dst->clamped += src->clamped;
    dst->sum = sat_add(dst->sum, src->sum);
    return 0;
}

uint64_t wl_hist_quantile(const wl_hist_t *h, double q)
{
    if (h->total == 0 || !h->counts)
        return 0;
    if (!(q > 0))
        return h->min; /* also NaN */
    if (q >= 1)
        return h->max;
    /* rank: the ceil(q * total)-th smallest value, counting from 1 */
    double r = ceil(q * (double)h->total);
    uint64_t rank = r < 1 ? 1 : r >= (double)h->total ? h->total : (uint64_t)r;
    uint64_t cum = 0;
    size_t hi = wl_hist_index_of(h->max);
    for (size_t i = wl_hist_index_of(h->min); i <= hi; i++) {
        cum += h->counts[i];
        if (cum >= rank) {
            uint64_t v = wl_hist_highest_equivalent(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}

double wl_hist_mean(const wl_hist_t *h)
{
    return h->total ? (double)h->sum / (double)h->total : 0.0;
}

/* ---- serialization
 *
 * "W" "H" version, then LEB128 varints: total sum min max clamped nz, then nz pairs (gap, count)
 * where gap is the index of the first non-zero bucket, and for the next ones the distance from
 * the previous non-zero bucket (so >= 1). Typical size: a few hundred bytes. */

static size_t put_varint(uint8_t *buf, size_t cap, size_t pos, uint64_t v)
{
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        if (v)
            b |= 0x80;
        if (pos < cap)
            buf[pos] = b;
        pos++;
    } while (v);
    return pos;
}

static int get_varint(const uint8_t *buf, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= len)
            return -EINVAL;
        uint8_t b = buf[(*pos)++];
        if (shift == 63 && (b & 0xfe))
            return -EINVAL; /* bits beyond 64 or a continuation */
        if (shift > 0 && b == 0)
            return -EINVAL; /* non-minimal: keeps encoding canonical */
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
    static const uint8_t hdr[SER_HDR] = {SER_MAGIC0, SER_MAGIC1, SER_VERSION};
    size_t pos = 0;
    for (; pos < SER_HDR; pos++)
        if (pos < cap)
            buf[pos] = hdr[pos];
    uint64_t nz = 0;
    if (h->total && h->counts)
        for (size_t i = 0; i < NCOUNTS; i++)
            nz += h->counts[i] != 0;
    pos = put_varint(buf, cap, pos, nz ? h->total : 0);
    pos = put_varint(buf, cap, pos, nz ? h->sum : 0);
    pos = put_varint(buf, cap, pos, nz ? h->min : 0);
    pos = put_varint(buf, cap, pos, nz ? h->max : 0);
    pos = put_varint(buf, cap, pos, nz ? h->clamped : 0);
    pos = put_varint(buf, cap, pos, nz);
    size_t last = 0;
    for (size_t i = 0; nz && i < NCOUNTS; i++) {
        if (!h->counts[i])
            continue;
        pos = put_varint(buf, cap, pos, i - last);
        pos = put_varint(buf, cap, pos, h->counts[i]);
        last = i;
    }
    return pos;
}

struct ser_hdr {
    uint64_t total, sum, min, max, clamped, nz;
};

/* Walks the pairs after the header. With counts == NULL only validates; otherwise stores. */
static int walk_pairs(const uint8_t *buf, size_t len, size_t pos, const struct ser_hdr *s,
                      uint64_t *counts)
{
    uint64_t seen = 0, top = 0;
    size_t idx = 0, first = 0, top_idx = wl_hist_index_of(WL_HIST_MAX_NS);
    for (uint64_t k = 0; k < s->nz; k++) {
        uint64_t gap, c;
        if (get_varint(buf, len, &pos, &gap) || get_varint(buf, len, &pos, &c))
            return -EINVAL;
        if (c == 0 || (k > 0 && gap == 0) || gap >= NCOUNTS - idx)
            return -EINVAL;
        if (__builtin_add_overflow(seen, c, &seen))
            return -EINVAL;
        idx += (size_t)gap;
        if (k == 0)
            first = idx;
        if (idx == top_idx)
            top = c;
        if (counts)
            counts[idx] = c;
    }
    if (pos != len || seen != s->total)
        return -EINVAL;
    if (s->nz == 0)
        return 0;
    /* min and max must fall in the first and last non-empty buckets; clamped values sit in the
     * bucket of WL_HIST_MAX_NS, which is then also max's bucket */
    if (wl_hist_index_of(s->min) != first || wl_hist_index_of(s->max) != idx)
        return -EINVAL;
    if (s->clamped > top)
        return -EINVAL;
    return 0;
}

int wl_hist_deserialize(wl_hist_t *h, const uint8_t *buf, size_t len)
{
    if (!buf || len < SER_HDR || buf[0] != SER_MAGIC0 || buf[1] != SER_MAGIC1 ||
        buf[2] != SER_VERSION)
        return -EINVAL;
    size_t pos = SER_HDR;
    struct ser_hdr s;
    if (get_varint(buf, len, &pos, &s.total) || get_varint(buf, len, &pos, &s.sum) ||
        get_varint(buf, len, &pos, &s.min) || get_varint(buf, len, &pos, &s.max) ||
        get_varint(buf, len, &pos, &s.clamped) || get_varint(buf, len, &pos, &s.nz))
        return -EINVAL;
    if (s.total == 0) {
        if (s.nz || s.sum || s.min || s.max || s.clamped || pos != len)
            return -EINVAL;
    } else {
        if (s.nz == 0 || s.nz > NCOUNTS || s.nz > s.total || s.min == 0 || s.min > s.max ||
            s.max > WL_HIST_MAX_NS || s.clamped > s.total)
            return -EINVAL;
        if (s.clamped && s.max != WL_HIST_MAX_NS)
            return -EINVAL;
        /* the (saturating) sum lies between total * min and total * max */
        if (s.sum < sat_mul(s.min, s.total) || s.sum > sat_mul(s.max, s.total))
            return -EINVAL;
    }
    /* validate fully before touching h, so h stays unchanged on error */
    if (walk_pairs(buf, len, pos, &s, NULL) != 0)
        return -EINVAL;
    if (s.total == 0) {
        wl_hist_reset(h);
        return 0;
    }
    if (h->counts) {
        memset(h->counts, 0, NCOUNTS * sizeof(uint64_t));
    } else if (ensure(h) != 0) {
        return -ENOMEM;
    }
    walk_pairs(buf, len, pos, &s, h->counts);
    h->total = s.total;
    h->sum = s.sum;
    h->min = s.min;
    h->max = s.max;
    h->clamped = s.clamped;
    return 0;
}
