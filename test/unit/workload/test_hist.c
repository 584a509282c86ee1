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
    if (q >= 1)
        return sorted[n - 1];
    size_t rank = (size_t)ceil(q * (double)n);
    if (rank < 1)
        rank = 1;
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

static void check_dist(const char *name, gen_fn gen, uint64_t seed)
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
    double worst[5] = {0};
    for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
        uint64_t want = exact_q(v, N, qs[k]);
        uint64_t got = wl_hist_quantile(&h, qs[k]);
        double rel = fabs((double)got - (double)want) / (double)want;
        worst[k] = rel;
        if (rel > 0.001)
            fail_msg("q=%.3f: histogram %llu, exact %llu, relative error %.5f%%", qs[k],
                     (unsigned long long)got, (unsigned long long)want, rel * 100);
        /* the bucket's highest value, capped at max: never below the exact value */
        assert_true(got >= want);
    }
    print_message("  %s: rel. error p50 %.4f%% p90 %.4f%% p99 %.4f%% p99.9 %.4f%% max %.4f%%\n",
                  name, worst[0] * 100, worst[1] * 100, worst[2] * 100, worst[3] * 100,
                  worst[4] * 100);
    assert_int_equal(wl_hist_quantile(&h, 1.0), v[N - 1]);
    assert_int_equal(wl_hist_quantile(&h, 0.0), v[0]);
    assert_int_equal(h.total, N);
    double sum = 0;
    for (size_t i = 0; i < N; i++)
        sum += (double)v[i];
    assert_true(fabs(wl_hist_mean(&h) - sum / N) <= 1e-9 * sum / N + 1e-9);
    wl_hist_free(&h);
    free(v);
}

static void test_quantiles_uniform(void **s)
{
    (void)s;
    check_dist("uniform", g_uniform, 1);
}
static void test_quantiles_lognormal(void **s)
{
    (void)s;
    check_dist("lognormal", g_lognormal, 2);
}
static void test_quantiles_bimodal(void **s)
{
    (void)s;
    check_dist("bimodal", g_bimodal, 3);
}
static void test_quantiles_edges(void **s)
{
    (void)s;
    check_dist("edges", g_edges, 4);
}
static void test_quantiles_tiny(void **s)
{
    (void)s;
    check_dist("tiny", g_tiny, 5);
}

static void test_every_value_within_precision(void **s)
{
    (void)s;
    wl_rng_t r;
    wl_rng_seed(&r, 9);
    for (int i = 0; i < 200000; i++) {
        uint64_t v = 1 + wl_rng_below(&r, WL_HIST_MAX_NS);
        if (i % 2)
            v = 1 + (wl_rng_next(&r) >> (22 + wl_rng_below(&r, 42))) % WL_HIST_MAX_NS;
        size_t idx = wl_hist_index_of(v);
        assert_true(idx < wl_hist_bucket_count());
        uint64_t lo = wl_hist_lowest_equivalent(idx), hi = wl_hist_highest_equivalent(idx);
        assert_true(lo <= v && v <= hi);
        assert_true((double)(hi - lo) <= (double)lo / 1024.0);
        if (v < 2048)
            assert_true(lo == v && hi == v);
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
    for (int i = 0; i < 100000; i++)
        wl_hist_record(&h, g_bimodal(&r, 0));
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
            for (size_t k = 0; k < wl_hist_bucket_count(); k++)
                tot += x.counts ? x.counts[k] : 0;
            assert_int_equal(tot, x.total);
            assert_true(wl_hist_quantile(&x, 0.5) <= x.max);
        }
        wl_hist_free(&x);
    }
    /* random garbage */
    for (int i = 0; i < 20000; i++) {
        size_t len = wl_rng_below(&r, 64);
        for (size_t k = 0; k < len; k++)
            c[k] = (uint8_t)wl_rng_next(&r);
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

/* first and last values of random buckets, and their neighbours */
static uint64_t g_subedges(wl_rng_t *r, size_t i)
{
    (void)i;
    size_t idx = wl_rng_below(r, wl_hist_index_of(WL_HIST_MAX_NS) + 1);
    uint64_t v =
        wl_rng_below(r, 2) ? wl_hist_lowest_equivalent(idx) : wl_hist_highest_equivalent(idx);
    v += wl_rng_below(r, 3) - 1;
    return v == 0 ? 1 : v > WL_HIST_MAX_NS ? WL_HIST_MAX_NS : v;
}

static void test_quantiles_subedges(void **s)
{
    (void)s;
    check_dist("bucket edges", g_subedges, 8);
}

static uint64_t g_mixed(wl_rng_t *r, size_t i)
{
    static const gen_fn gens[] = {g_uniform, g_lognormal, g_bimodal, g_edges, g_tiny, g_subedges};
    return gens[i % 6](r, i);
}

static void test_quantiles_mixed(void **s)
{
    (void)s;
    check_dist("mixed", g_mixed, 6);
    /* and a dense sweep of quantiles on the mix: exact <= reported <= exact * (1 + 1/1024) */
    uint64_t *v = malloc(N * sizeof(uint64_t));
    assert_non_null(v);
    wl_rng_t r;
    wl_rng_seed(&r, 7);
    wl_hist_t h;
    wl_hist_init(&h);
    for (size_t i = 0; i < N; i++) {
        v[i] = g_mixed(&r, i);
        assert_int_equal(wl_hist_record(&h, v[i]), 0);
    }
    qsort(v, N, sizeof(uint64_t), cmp_u64);
    double worst = 0;
    for (int k = 1; k < 10000; k++) {
        double q = k / 10000.0;
        uint64_t want = exact_q(v, N, q), got = wl_hist_quantile(&h, q);
        assert_true(got >= want);
        assert_true(got - want <= want / 1024);
        double rel = (double)(got - want) / (double)want;
        if (rel > worst)
            worst = rel;
    }
    print_message("  mixed, 9999 quantiles: worst rel. error %.4f%%\n", worst * 100);
    wl_hist_free(&h);
    free(v);
}

static void test_geometry(void **s)
{
    (void)s;
    size_t n = wl_hist_bucket_count();
    assert_int_equal(wl_hist_lowest_equivalent(0), 0);
    for (size_t i = 0; i < n; i++) {
        uint64_t lo = wl_hist_lowest_equivalent(i), hi = wl_hist_highest_equivalent(i);
        assert_true(lo <= hi);
        /* index_of clamps above WL_HIST_MAX_NS, so buckets beyond it are never used */
        if (lo <= WL_HIST_MAX_NS)
            assert_int_equal(wl_hist_index_of(lo), i);
        if (hi <= WL_HIST_MAX_NS)
            assert_int_equal(wl_hist_index_of(hi), i);
        if (i + 1 < n)
            assert_int_equal(wl_hist_lowest_equivalent(i + 1), hi + 1); /* tiling */
        if (i < 2048)
            assert_true(lo == i && hi == i);
        else
            assert_true(hi - lo < lo / 1024);
    }
    assert_true(wl_hist_index_of(WL_HIST_MAX_NS) < n);
    assert_true(wl_hist_highest_equivalent(n - 1) >= WL_HIST_MAX_NS);
    assert_int_equal(wl_hist_index_of(UINT64_MAX), wl_hist_index_of(WL_HIST_MAX_NS));
}

static void test_overflow_and_short_buffer(void **s)
{
    (void)s;
    wl_hist_t h;
    wl_hist_init(&h);
    assert_int_equal(wl_hist_record_n(&h, 100, UINT64_MAX - 1), 0);
    assert_int_equal(wl_hist_record_n(&h, 100, 2), -EOVERFLOW);
    assert_int_equal(h.total, UINT64_MAX - 1);
    assert_int_equal(h.sum, UINT64_MAX); /* saturated */
    assert_int_equal(wl_hist_quantile(&h, 0.5), 100);
    /* a saturated histogram still round-trips */
    uint8_t buf[256];
    size_t need = wl_hist_serialize(&h, buf, sizeof(buf));
    assert_true(need <= sizeof(buf));
    wl_hist_t d;
    wl_hist_init(&d);
    assert_int_equal(wl_hist_deserialize(&d, buf, need), 0);
    assert_int_equal(d.total, h.total);
    assert_int_equal(d.sum, h.sum);
    /* too small a buffer: returns the size needed and writes at most cap bytes */
    memset(buf, 0xee, sizeof(buf));
    assert_int_equal(wl_hist_serialize(&h, buf, 4), need);
    for (size_t i = 4; i < sizeof(buf); i++)
        assert_int_equal(buf[i], 0xee);
    assert_true(isnan(wl_hist_mean(&d)) == 0);
    assert_int_equal(wl_hist_quantile(&d, NAN), d.min);
    wl_hist_free(&h);
    wl_hist_free(&d);
}

/* Whatever deserialize accepts is a consistent histogram and re-encodes to the same bytes. */
static int check_accepted(const uint8_t *b, size_t len)
{
    wl_hist_t x;
    wl_hist_init(&x);
    if (wl_hist_deserialize(&x, b, len) != 0) {
        assert_int_equal(x.total, 0);
        assert_null(x.counts);
        return 0;
    }
    uint64_t tot = 0;
    for (size_t k = 0; x.counts && k < wl_hist_bucket_count(); k++)
        tot += x.counts[k];
    assert_int_equal(tot, x.total);
    assert_true(x.clamped <= x.total && x.min <= x.max && x.max <= WL_HIST_MAX_NS);
    for (double q = 0; q <= 1.0; q += 0.125) {
        uint64_t v = wl_hist_quantile(&x, q);
        assert_true(x.total == 0 || (v >= x.min && v <= x.max));
    }
    uint8_t *again = malloc(len + 1);
    assert_int_equal(wl_hist_serialize(&x, again, len + 1), len);
    assert_memory_equal(again, b, len);
    free(again);
    wl_hist_free(&x);
    return 1;
}

static void test_fuzz_canonical(void **s)
{
    (void)s;
    wl_rng_t r;
    wl_rng_seed(&r, 31);
    wl_hist_t h;
    wl_hist_init(&h);
    for (int i = 0; i < 2000; i++)
        wl_hist_record(&h, g_mixed(&r, (size_t)i));
    wl_hist_record_n(&h, WL_HIST_MAX_NS * 2, 3);
    size_t need = wl_hist_serialize(&h, NULL, 0);
    uint8_t *buf = malloc(need), *c = malloc(need + 16);
    wl_hist_serialize(&h, buf, need);
    int accepted = 0, accepted_rnd = 0;
    assert_int_equal(check_accepted(buf, need), 1);
    for (size_t len = 0; len <= need; len++)
        check_accepted(buf, len);
    /* a second, tiny seed: 1-3 values, so mutations often land on header fields */
    uint8_t small[64];
    size_t small_len = 0;
    for (int i = 0; i < 20000; i++) {
        /* mutations of a real buffer: flips, byte overwrites, insertions, deletions */
        size_t len = need;
        memcpy(c, buf, need);
        if (i % 2) {
            wl_hist_t t;
            wl_hist_init(&t);
            int k = 1 + (int)wl_rng_below(&r, 3);
            for (int j = 0; j < k; j++)
                wl_hist_record(&t, wl_rng_below(&r, 4) ? wl_rng_below(&r, 5000)
                                                       : wl_rng_next(&r) >> 20);
            small_len = wl_hist_serialize(&t, small, sizeof(small));
            assert_true(small_len <= sizeof(small) && small_len <= need);
            wl_hist_free(&t);
            memcpy(c, small, small_len);
            len = small_len;
        }
        int muts = 1 + (int)wl_rng_below(&r, 3);
        for (int m = 0; m < muts; m++) {
            size_t at = wl_rng_below(&r, len);
            switch (wl_rng_below(&r, 4)) {
            case 0:
                c[at] ^= (uint8_t)(1u << wl_rng_below(&r, 8));
                break;
            case 1:
                c[at] = (uint8_t)wl_rng_next(&r);
                break;
            case 2:
                if (len < need + 15) {
                    memmove(c + at + 1, c + at, len - at);
                    c[at] = (uint8_t)wl_rng_next(&r);
                    len++;
                }
                break;
            default:
                if (len > 1) {
                    memmove(c + at, c + at + 1, len - at - 1);
                    len--;
                }
            }
        }
        accepted += check_accepted(c, len);
    }
    /* random bytes after a valid magic and version, biased toward small varints */
    uint8_t g[96];
    for (int i = 0; i < 50000; i++) {
        size_t len = 3 + wl_rng_below(&r, sizeof(g) - 3);
        g[0] = 'W';
        g[1] = 'H';
        g[2] = 1;
        for (size_t k = 3; k < len; k++)
            g[k] = (uint8_t)(wl_rng_below(&r, 4) ? wl_rng_below(&r, 8) : wl_rng_next(&r));
        accepted_rnd += check_accepted(g, len);
    }
    print_message("  fuzz: %d of 20000 mutated buffers and %d of 50000 random ones decoded\n",
                  accepted, accepted_rnd);
    free(buf);
    free(c);
    wl_hist_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantiles_uniform),
        cmocka_unit_test(test_quantiles_lognormal),
        cmocka_unit_test(test_quantiles_bimodal),
        cmocka_unit_test(test_quantiles_edges),
        cmocka_unit_test(test_quantiles_tiny),
        cmocka_unit_test(test_every_value_within_precision),
        cmocka_unit_test(test_merge_exact),
        cmocka_unit_test(test_edge_values),
        cmocka_unit_test(test_serialize),
        cmocka_unit_test(test_quantiles_mixed),
        cmocka_unit_test(test_geometry),
        cmocka_unit_test(test_overflow_and_short_buffer),
        cmocka_unit_test(test_fuzz_canonical),
        cmocka_unit_test(test_quantiles_subedges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
