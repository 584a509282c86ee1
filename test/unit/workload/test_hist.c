/* Histogram exactness: quantiles against sorted raw samples, exact merge, serialization. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wl/datagen.h"
#include "wl/hist.h"

#define N 1000000

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Exact quantile with the histogram's rank definition: the value at rank ceil(q*n). */
static uint64_t exact_q(const uint64_t *sorted, size_t n, double q)
{
    if (q >= 1) return sorted[n - 1];
    size_t rank = (size_t)ceil(q * (double)n);
    if (rank < 1) rank = 1;
    return sorted[rank - 1];
}

typedef uint64_t (*gen_fn)(wl_rng_t *r, size_t i);

static uint64_t g_uniform(wl_rng_t *r, size_t i)
{
    (void)i;
    return 1000 + wl_rng_below(r, 100000000 - 1000); /* 1 us .. 100 ms */
}

static uint64_t g_lognormal(wl_rng_t *r, size_t i)
{
    (void)i;
    double u1 = wl_rng_double(r), u2 = wl_rng_double(r);
    double z = sqrt(-2.0 * log(1.0 - u1)) * cos(2 * M_PI * u2);
    double v = exp(log(250000.0) + 1.2 * z); /* median 250 us */
    return v < 1 ? 1 : (uint64_t)v;
}

static uint64_t g_bimodal(wl_rng_t *r, size_t i)
{
    (void)i;
    return wl_rng_below(r, 100) < 95 ? 50000 + wl_rng_below(r, 20000)        /* ~60 us */
                                      : 20000000 + wl_rng_below(r, 30000000); /* 20-50 ms */
}

static uint64_t g_edges(wl_rng_t *r, size_t i)
{
    /* values right at and around power-of-two and sub-bucket edges */
    int k = 11 + (int)wl_rng_below(r, 30);
    uint64_t base = 1ull << k;
    int64_t d = (int64_t)wl_rng_below(r, 5) - 2;
    (void)i;
    return (uint64_t)((int64_t)base + d * (int64_t)(base >> 11));
}

static uint64_t g_tiny(wl_rng_t *r, size_t i)
{
    (void)i;
    return 1 + wl_rng_below(r, 3000);
}

static void check_dist(gen_fn gen, uint64_t seed)
{
    uint64_t *v = malloc(N * sizeof(uint64_t));
    assert_non_null(v);
    wl_rng_t r;
    wl_rng_seed(&r, seed);
    wl_hist_t h;
    wl_hist_init(&h);
    for (size_t i = 0; i < N; i++) {
        v[i] = gen(&r, i);
        assert_int_equal(wl_hist_record(&h, v[i]), 0);
    }
    qsort(v, N, sizeof(uint64_t), cmp_u64);
    const double qs[] = {0.5, 0.9, 0.99, 0.999, 1.0};
    for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
        uint64_t want = exact_q(v, N, qs[k]);
        uint64_t got = wl_hist_quantile(&h, qs[k]);
        double rel = fabs((double)got - (double)want) / (double)want;
        if (rel > 0.001)
            fail_msg("q=%.3f: histogram %llu, exact %llu, relative error %.5f%%", qs[k],
                     (unsigned long long)got, (unsigned long long)want, rel * 100);
    }
    assert_int_equal(wl_hist_quantile(&h, 1.0), v[N - 1]);
    assert_int_equal(wl_hist_quantile(&h, 0.0), v[0]);
    assert_int_equal(h.total, N);
    double sum = 0;
    for (size_t i = 0; i < N; i++) sum += (double)v[i];
    assert_true(fabs(wl_hist_mean(&h) - sum / N) <= 1e-9 * sum / N + 1e-9);
    wl_hist_free(&h);
    free(v);
}

static void test_quantiles_uniform(void **s) { (void)s; check_dist(g_uniform, 1); }
static void test_quantiles_lognormal(void **s) { (void)s; check_dist(g_lognormal, 2); }
static void test_quantiles_bimodal(void **s) { (void)s; check_dist(g_bimodal, 3); }
static void test_quantiles_edges(void **s) { (void)s; check_dist(g_edges, 4); }
static void test_quantiles_tiny(void **s) { (void)s; check_dist(g_tiny, 5); }

static void test_every_value_within_precision(void **s)
{
    (void)s;
    wl_rng_t r;
    wl_rng_seed(&r, 9);
    for (int i = 0; i < 200000; i++) {
        uint64_t v = 1 + wl_rng_below(&r, WL_HIST_MAX_NS);
        if (i % 2) v = 1 + (wl_rng_next(&r) >> (22 + wl_rng_below(&r, 42))) % WL_HIST_MAX_NS;
        size_t idx = wl_hist_index_of(v);
        assert_true(idx < wl_hist_bucket_count());
        uint64_t lo = wl_hist_lowest_equivalent(idx), hi = wl_hist_highest_equivalent(idx);
        assert_true(lo <= v && v <= hi);
        assert_true((double)(hi - lo) <= (double)lo / 1024.0);
        if (v < 2048) assert_true(lo == v && hi == v);
    }
}

static void test_merge_exact(void **s)
{
    (void)s;
    wl_hist_t a, b, all, m;
    wl_hist_init(&a);
    wl_hist_init(&b);
    wl_hist_init(&all);
    wl_hist_init(&m);
    wl_rng_t r;
    wl_rng_seed(&r, 11);
    for (int i = 0; i < 300000; i++) {
        uint64_t v = g_lognormal(&r, 0);
        wl_hist_record((i % 3) ? &a : &b, v);
        wl_hist_record(&all, v);
    }
    assert_int_equal(wl_hist_merge(&m, &a), 0);
    assert_int_equal(wl_hist_merge(&m, &b), 0);
    assert_int_equal(m.total, all.total);
    assert_int_equal(m.sum, all.sum);
    assert_int_equal(m.min, all.min);
    assert_int_equal(m.max, all.max);
    assert_memory_equal(m.counts, all.counts, wl_hist_bucket_count() * sizeof(uint64_t));
    for (double q = 0.01; q < 1; q += 0.01)
        assert_int_equal(wl_hist_quantile(&m, q), wl_hist_quantile(&all, q));
    wl_hist_t empty;
    wl_hist_init(&empty);
    assert_int_equal(wl_hist_merge(&m, &empty), 0);
    assert_int_equal(m.total, all.total);
    wl_hist_free(&a);
    wl_hist_free(&b);
    wl_hist_free(&all);
    wl_hist_free(&m);
}

static void test_edge_values(void **s)
{
    (void)s;
    wl_hist_t h;
    wl_hist_init(&h);
    assert_int_equal(wl_hist_quantile(&h, 0.5), 0);
    assert_true(wl_hist_mean(&h) == 0);
    assert_null(h.counts); /* lazy */
    wl_hist_record(&h, 0);
    assert_int_equal(h.min, 1);
    wl_hist_record(&h, WL_HIST_MAX_NS * 3);
    assert_int_equal(h.clamped, 1);
    assert_int_equal(h.max, WL_HIST_MAX_NS);
    assert_int_equal(wl_hist_quantile(&h, 1.0), WL_HIST_MAX_NS);
    wl_hist_record_n(&h, 5000, 10);
    assert_int_equal(h.total, 12);
    wl_hist_reset(&h);
    assert_int_equal(h.total, 0);
    assert_non_null(h.counts);
    assert_int_equal(wl_hist_quantile(&h, 0.99), 0);
    wl_hist_free(&h);
}

static void test_serialize(void **s)
{
    (void)s;
    wl_hist_t h, d;
    wl_hist_init(&h);
    wl_hist_init(&d);
    wl_rng_t r;
    wl_rng_seed(&r, 21);
    for (int i = 0; i < 100000; i++) wl_hist_record(&h, g_bimodal(&r, 0));
    wl_hist_record(&h, WL_HIST_MAX_NS + 5);
    size_t need = wl_hist_serialize(&h, NULL, 0);
    uint8_t *buf = malloc(need);
    assert_int_equal(wl_hist_serialize(&h, buf, need), need);
    assert_true(need < 40000); /* compact: only non-empty buckets */
    assert_int_equal(wl_hist_deserialize(&d, buf, need), 0);
    assert_int_equal(d.total, h.total);
    assert_int_equal(d.sum, h.sum);
    assert_int_equal(d.min, h.min);
    assert_int_equal(d.max, h.max);
    assert_int_equal(d.clamped, h.clamped);
    assert_memory_equal(d.counts, h.counts, wl_hist_bucket_count() * sizeof(uint64_t));
    /* every truncation is rejected and leaves d untouched */
    for (size_t len = 0; len < need; len++) {
        assert_int_equal(wl_hist_deserialize(&d, buf, len), -EINVAL);
        assert_int_equal(d.total, h.total);
    }
    /* bit flips: rejected or decoded to something self-consistent; never a crash */
    uint8_t *c = malloc(need);
    for (int i = 0; i < 20000; i++) {
        memcpy(c, buf, need);
        size_t at = wl_rng_below(&r, need);
        c[at] ^= (uint8_t)(1u << wl_rng_below(&r, 8));
        wl_hist_t x;
        wl_hist_init(&x);
        if (wl_hist_deserialize(&x, c, need) == 0) {
            uint64_t tot = 0;
            for (size_t k = 0; k < wl_hist_bucket_count(); k++) tot += x.counts ? x.counts[k] : 0;
            assert_int_equal(tot, x.total);
            assert_true(wl_hist_quantile(&x, 0.5) <= x.max);
        }
        wl_hist_free(&x);
    }
    /* random garbage */
    for (int i = 0; i < 20000; i++) {
        size_t len = wl_rng_below(&r, 64);
        for (size_t k = 0; k < len; k++) c[k] = (uint8_t)wl_rng_next(&r);
        if (len >= 3 && (i & 1)) {
            c[0] = 'W';
            c[1] = 'H';
            c[2] = 1;
        }
        wl_hist_t x;
        wl_hist_init(&x);
        wl_hist_deserialize(&x, c, len);
        wl_hist_free(&x);
    }
    /* the empty histogram round-trips */
    wl_hist_t e;
    wl_hist_init(&e);
    uint8_t eb[64];
    size_t en = wl_hist_serialize(&e, eb, sizeof(eb));
    assert_int_equal(wl_hist_deserialize(&d, eb, en), 0);
    assert_int_equal(d.total, 0);
    free(c);
    free(buf);
    wl_hist_free(&h);
    wl_hist_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantiles_uniform),   cmocka_unit_test(test_quantiles_lognormal),
        cmocka_unit_test(test_quantiles_bimodal),   cmocka_unit_test(test_quantiles_edges),
        cmocka_unit_test(test_quantiles_tiny),      cmocka_unit_test(test_every_value_within_precision),
        cmocka_unit_test(test_merge_exact),         cmocka_unit_test(test_edge_values),
        cmocka_unit_test(test_serialize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
