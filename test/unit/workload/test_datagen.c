/* Data generator: compressibility and dedup ratios checked with zstd, alignment, seeds; RNG. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zstd.h>

#include "wl/datagen.h"

/* Concatenates the object's iovecs into a new buffer. */
static uint8_t *object_bytes(wl_datagen_t *g, uint64_t id, uint64_t size)
{
    struct iovec iov[WL_DG_MAX_IOV];
    int n = wl_datagen_fill(g, id, size, iov, WL_DG_MAX_IOV);
    assert_true(n > 0);
    uint8_t *buf = malloc(size);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal((uintptr_t)iov[i].iov_base % 4096, 0);
        memcpy(buf + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    assert_int_equal(off, size);
    return buf;
}

static double zstd_ratio(const uint8_t *p, size_t n)
{
    size_t cap = ZSTD_compressBound(n);
    void *out = malloc(cap);
    size_t c = ZSTD_compress(out, cap, p, n, 3);
    assert_false(ZSTD_isError(c));
    free(out);
    return (double)n / (double)c;
}

static double ratio_for(wl_fill_t fill, uint32_t dedup, uint32_t compress)
{
    wl_datagen_t *g;
    assert_int_equal(wl_datagen_create(fill, dedup, compress, 42, 0, &g), 0);
    const uint64_t size = 8u << 20;
    double tot_in = 0, tot_out = 0;
    for (uint64_t id = 1; id <= 4; id++) {
        uint8_t *b = object_bytes(g, id * 7919, size);
        double r = zstd_ratio(b, size);
        tot_in += (double)size;
        tot_out += (double)size / r;
        free(b);
    }
    wl_datagen_destroy(g);
    return tot_in / tot_out;
}

static void test_compress_ratios(void **s)
{
    (void)s;
    double r1 = ratio_for(WL_FILL_RANDOM, 1, 1);
    print_message("  random: zstd ratio %.4f:1\n", r1);
    assert_true(r1 <= 1.02);
    for (uint32_t n = 2; n <= 4; n *= 2) {
        double r = ratio_for(WL_FILL_RANDOM, 1, n);
        print_message("  compress_factor %u: zstd ratio %.3f:1\n", n, r);
        if (fabs(r - n) > 0.25 * n)
            fail_msg("compress_factor %u gave %.2f:1", n, r);
    }
    double rz = ratio_for(WL_FILL_ZERO, 1, 1);
    print_message("  zero: zstd ratio %.0f:1\n", rz);
    assert_true(rz > 1000);
}

/* unique 64 KiB blocks in one 16 MiB object, by content hash */
static double unique_fraction(uint32_t dedup)
{
    wl_datagen_t *g;
    assert_int_equal(wl_datagen_create(WL_FILL_RANDOM, dedup, 1, 7, 1, &g), 0);
    const uint64_t size = 16u << 20;
    uint8_t *b = object_bytes(g, 99, size);
    size_t nb = size / WL_DG_BLOCK, uniq = 0;
    uint64_t *h = calloc(nb, sizeof(uint64_t));
    for (size_t i = 0; i < nb; i++) {
        uint64_t x = 1469598103934665603ull;
        for (size_t k = 0; k < WL_DG_BLOCK; k += 8) {
            uint64_t w;
            memcpy(&w, b + i * WL_DG_BLOCK + k, 8);
            x = (x ^ w) * 1099511628211ull;
        }
        h[i] = x;
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = h[j] == x;
        uniq += !seen;
    }
    free(h);
    free(b);
    wl_datagen_destroy(g);
    return (double)uniq / (double)nb;
}

static void test_dedup_ratios(void **s)
{
    (void)s;
    for (uint32_t n = 1; n <= 4; n *= 2) {
        double f = unique_fraction(n);
        print_message("  dedup_factor %u: unique 64 KiB blocks %.4f of a 16 MiB object\n", n, f);
        if (fabs(f - 1.0 / n) > 0.2 / n)
            fail_msg("dedup_factor %u: unique fraction %.3f", n, f);
    }
    /* zstd finds the repeated blocks (they sit within its window): ratio about N:1 */
    for (uint32_t n = 2; n <= 4; n *= 2) {
        double r = ratio_for(WL_FILL_RANDOM, n, 1);
        print_message("  dedup_factor %u: zstd ratio %.3f:1\n", n, r);
        if (fabs(r - n) > 0.25 * n)
            fail_msg("dedup_factor %u: zstd ratio %.2f:1", n, r);
    }
    /* both together multiply */
    double r = ratio_for(WL_FILL_RANDOM, 2, 2);
    print_message("  dedup 2 x compress 2: zstd ratio %.3f:1\n", r);
    if (fabs(r - 4) > 1.0)
        fail_msg("dedup 2 x compress 2: zstd ratio %.2f:1", r);
}

static void test_seeds_and_ids(void **s)
{
    (void)s;
    wl_datagen_t *a, *b, *c, *d;
    assert_int_equal(wl_datagen_create(WL_FILL_RANDOM, 1, 1, 1, 0, &a), 0);
    assert_int_equal(wl_datagen_create(WL_FILL_RANDOM, 1, 1, 2, 0, &b), 0);
    assert_int_equal(wl_datagen_create(WL_FILL_RANDOM, 1, 1, 1, 0, &c), 0);
    assert_int_equal(wl_datagen_create(WL_FILL_RANDOM, 1, 1, 1, 1, &d), 0);
    uint8_t *xa = object_bytes(a, 5, 65536), *xb = object_bytes(b, 5, 65536);
    uint8_t *xc = object_bytes(c, 5, 65536), *xd = object_bytes(d, 5, 65536);
    uint8_t *xa2 = object_bytes(a, 6, 65536);
    assert_memory_not_equal(xa, xb, 65536);  /* different seed */
    assert_memory_equal(xa, xc, 65536);      /* same seed and core */
    assert_memory_not_equal(xa, xd, 65536);  /* different core */
    assert_memory_not_equal(xa, xa2, 65536); /* different object id */
    free(xa);
    free(xb);
    free(xc);
    free(xd);
    free(xa2);
    /* many small objects mostly start at different places */
    int same = 0;
    struct iovec i1[4], i2[4];
    for (uint64_t id = 0; id < 1000; id++) {
        wl_datagen_fill(a, id, 4096, i1, 4);
        wl_datagen_fill(a, id + 1000, 4096, i2, 4);
        same += i1[0].iov_base == i2[0].iov_base;
    }
    assert_true(same < 10);
    wl_datagen_destroy(a);
    wl_datagen_destroy(b);
    wl_datagen_destroy(c);
    wl_datagen_destroy(d);
}

static void test_fill_limits(void **s)
{
    (void)s;
    wl_datagen_t *g;
    assert_int_equal(wl_datagen_create(WL_FILL_RANDOM, 0, 1, 1, 0, &g), -EINVAL);
    assert_int_equal(wl_datagen_create(WL_FILL_RANDOM, 1, 0, 1, 0, &g), -EINVAL);
    assert_int_equal(wl_datagen_create(WL_FILL_ZERO, 1, 1, 1, 0, &g), 0);
    struct iovec iov[WL_DG_MAX_IOV];
    assert_int_equal(wl_datagen_fill(g, 1, 0, iov, 1), 0);
    assert_int_equal(wl_datagen_fill(g, 1, 1, iov, 1), 1);
    assert_int_equal(iov[0].iov_len, 1);
    /* a 100 MiB object needs several passes over the 16 MiB pool */
    int n = wl_datagen_fill(g, 1, 100u << 20, iov, WL_DG_MAX_IOV);
    assert_true(n >= 7);
    size_t tot = 0;
    for (int i = 0; i < n; i++)
        tot += iov[i].iov_len;
    assert_int_equal(tot, 100u << 20);
    assert_int_equal(wl_datagen_fill(g, 1, 100u << 20, iov, 2), -EINVAL);
    wl_datagen_destroy(g);
}

static void test_rng(void **s)
{
    (void)s;
    wl_rng_t a, b;
    wl_rng_seed(&a, 123);
    wl_rng_seed(&b, 123);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(wl_rng_next(&a), wl_rng_next(&b));
    /* rng_below: uniform over 10 cells, chi-square with a loose bound */
    uint64_t cells[10] = {0};
    const int n = 1000000;
    for (int i = 0; i < n; i++)
        cells[wl_rng_below(&a, 10)]++;
    double chi = 0;
    for (int i = 0; i < 10; i++) {
        double d = (double)cells[i] - n / 10.0;
        chi += d * d / (n / 10.0);
    }
    assert_true(chi < 40); /* 9 dof: p < 1e-5 above ~33 */
    assert_int_equal(wl_rng_below(&a, 1), 0);
    assert_int_equal(wl_rng_below(&a, 0), 0);
    for (int i = 0; i < 100000; i++) {
        double d = wl_rng_double(&a);
        assert_true(d >= 0 && d < 1);
    }
    uint64_t big = (1ull << 63) + 12345;
    for (int i = 0; i < 1000; i++)
        assert_true(wl_rng_below(&a, big) < big);
    assert_int_not_equal(wl_mix64(1), wl_mix64(2));
}

/* Distinct blocks in smaller objects too: any window of K aligned blocks holds about K/N. */
static void test_dedup_windows(void **s)
{
    (void)s;
    for (uint32_t n = 2; n <= 8; n *= 2) {
        wl_datagen_t *g;
        assert_int_equal(wl_datagen_create(WL_FILL_RANDOM, n, 1, 3, 0, &g), 0);
        const uint64_t size = 4u << 20; /* 64 blocks */
        size_t nb = size / WL_DG_BLOCK;
        for (uint64_t id = 0; id < 8; id++) {
            uint8_t *b = object_bytes(g, id, size);
            size_t uniq = 0;
            for (size_t i = 0; i < nb; i++) {
                int seen = 0;
                for (size_t j = 0; j < i && !seen; j++)
                    seen = !memcmp(b + i * WL_DG_BLOCK, b + j * WL_DG_BLOCK, WL_DG_BLOCK);
                uniq += !seen;
            }
            /* nb / n, plus one when the window starts inside a run of copies */
            if (uniq < nb / n || uniq > nb / n + 1)
                fail_msg("dedup_factor %u id %llu: %zu distinct of %zu", n, (unsigned long long)id,
                         uniq, nb);
            free(b);
        }
        wl_datagen_destroy(g);
    }
}

/* Every slice is 4 KiB aligned, slices add up to the size, and max_iov is exact. */
static void test_slices(void **s)
{
    (void)s;
    const uint32_t dd[] = {1, 2, 1}, cf[] = {1, 1, 3};
    wl_rng_t r;
    wl_rng_seed(&r, 77);
    for (int v = 0; v < 3; v++) {
        wl_datagen_t *g;
        assert_int_equal(wl_datagen_create(WL_FILL_RANDOM, dd[v], cf[v], 5, 2, &g), 0);
        struct iovec iov[WL_DG_MAX_IOV];
        /* the second slice of an object larger than the pool starts at the pool */
        assert_true(wl_datagen_fill(g, 0, 2 * WL_DG_POOL, iov, WL_DG_MAX_IOV) >= 2);
        uintptr_t pool = (uintptr_t)iov[1].iov_base;
        for (int i = 0; i < 2000; i++) {
            uint64_t size = 1 + wl_rng_below(&r, i % 10 ? (64u << 20) : (900u << 20));
            uint64_t id = wl_rng_next(&r);
            int n = wl_datagen_fill(g, id, size, iov, WL_DG_MAX_IOV);
            assert_true(n >= 1 && n <= WL_DG_MAX_IOV);
            uint64_t tot = 0;
            for (int k = 0; k < n; k++) {
                assert_int_equal((uintptr_t)iov[k].iov_base % 4096, 0);
                assert_true(iov[k].iov_len > 0 && iov[k].iov_len <= WL_DG_POOL);
                tot += iov[k].iov_len;
            }
            assert_true(tot == size);
            /* with dedup or compression objects start on block boundaries */
            if (dd[v] > 1 || cf[v] > 1)
                assert_int_equal(((uintptr_t)iov[0].iov_base - pool) % WL_DG_BLOCK, 0);
            assert_int_equal(wl_datagen_fill(g, id, size, iov, n), n);
            if (n > 1)
                assert_int_equal(wl_datagen_fill(g, id, size, iov, n - 1), -EINVAL);
        }
        assert_int_equal(wl_datagen_fill(g, 1, 4096, iov, 0), -EINVAL);
        assert_int_equal(wl_datagen_fill(g, 1, 4096, iov, -1), -EINVAL);
        /* 64 slices cover at most 64 pool passes */
        assert_int_equal(
            wl_datagen_fill(g, 1, (uint64_t)WL_DG_MAX_IOV * WL_DG_POOL + 1, iov, WL_DG_MAX_IOV),
            -EINVAL);
        wl_datagen_destroy(g);
    }
}

static void test_rng_unbiased(void **s)
{
    (void)s;
    wl_rng_t a;
    wl_rng_seed(&a, 2024);
    /* n = 2^64 * 2/3: a plain modulo would put 2/3 of the draws below n/2 */
    const uint64_t n = 0xaaaaaaaaaaaaaaabull;
    int low = 0;
    const int draws = 200000;
    for (int i = 0; i < draws; i++)
        low += wl_rng_below(&a, n) < n / 2;
    double f = (double)low / draws;
    print_message("  rng_below(2^64*2/3): fraction below n/2 = %.4f\n", f);
    assert_true(fabs(f - 0.5) < 0.01);
    /* doubles use 53 bits: d * 2^53 is an integer, and the low bit varies */
    int odd = 0;
    for (int i = 0; i < 10000; i++) {
        double d = wl_rng_double(&a) * 0x1.0p53;
        assert_true(d == floor(d));
        odd += fmod(d, 2.0) != 0;
    }
    assert_true(odd > 4500 && odd < 5500);
    /* seeds that differ by one give unrelated streams */
    wl_rng_t b, c;
    wl_rng_seed(&b, 0);
    wl_rng_seed(&c, 1);
    int same = 0;
    for (int i = 0; i < 1000; i++)
        same += wl_rng_next(&b) == wl_rng_next(&c);
    assert_int_equal(same, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compress_ratios),
        cmocka_unit_test(test_dedup_ratios),
        cmocka_unit_test(test_seeds_and_ids),
        cmocka_unit_test(test_fill_limits),
        cmocka_unit_test(test_rng),
        cmocka_unit_test(test_dedup_windows),
        cmocka_unit_test(test_slices),
        cmocka_unit_test(test_rng_unbiased),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
