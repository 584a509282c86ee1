/* Sizes, durations, counts and their formatting. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "wl/units.h"

typedef struct good {
    const char *in;
    uint64_t want;
} good_t;

typedef struct bad {
    const char *in;
    int rc;
    const char *msg; /* exact message, or NULL to skip */
} bad_t;

static void test_size_good(void **state)
{
    static const good_t cases[] = {
        {"0", 0},
        {"4096", 4096},
        {"  4096  ", 4096},
        {"+12", 12},
        {"1_048_576", 1048576},
        {"512B", 512},
        {"512 b", 512},
        {"1k", 1000},
        {"1K", 1000},
        {"1KB", 1000},
        {"64k", 64000},
        {"1KiB", 1024},
        {"1kib", 1024},
        {"1Ki", 1024},
        {"512 KiB", 524288},
        {"8MiB", 8388608},
        {"8Mi", 8388608},
        {"1M", 1000000},
        {"1MB", 1000000},
        {"1.5GB", 1500000000},
        {"1.5GiB", 1610612736},
        {"2G", 2000000000},
        {"1T", 1000000000000ULL},
        {"1TiB", 1099511627776ULL},
        {"1PB", 1000000000000000ULL},
        {"1PiB", 1125899906842624ULL},
        {"0.5KiB", 512},
        {"0.001KB", 1},
        {"0.0001KB", 0}, /* rounds down */
        {"1.0009765625KiB", 1025},
        {"16383PiB", 16383ULL * 1125899906842624ULL},
        {"18446744073709551615", UINT64_MAX},
        {"18446744073709551615B", UINT64_MAX},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v = 12345;
        char err[200] = "";
        int rc = wl_parse_size(cases[i].in, &v, err, sizeof(err));
        if (rc != 0)
            fail_msg("'%s': rc %d (%s)", cases[i].in, rc, err);
        if (v != cases[i].want)
            fail_msg("'%s': got %llu want %llu", cases[i].in, (unsigned long long)v,
                     (unsigned long long)cases[i].want);
    }
}

static void test_size_bad(void **state)
{
    static const bad_t cases[] = {
        {"12XB", -EINVAL, "'12XB' is not a size: unknown unit 'XB' (use B, KB, KiB, MB, MiB, ...)"},
        {"", -EINVAL, "empty size"},
        {"   ", -EINVAL, "empty size"},
        {"-5", -EINVAL, "'-5' is not a size: sizes cannot be negative"},
        {"MiB", -EINVAL,
         "'MiB' is not a size: expected a number with an optional unit, such as 4096, 64KiB or "
         "1.5GB"},
        {"1.5", -EINVAL, "'1.5' is not a size: a fraction needs a unit such as KiB or MB"},
        {"1.5B", -EINVAL, "'1.5B' is not a size: a fraction needs a unit such as KiB or MB"},
        {"1 2", -EINVAL, "'1 2' is not a size: unknown unit '2' (use B, KB, KiB, MB, MiB, ...)"},
        {"1__0", -EINVAL, NULL},
        {"_10", -EINVAL, NULL},
        {"10_", -EINVAL, NULL},
        {"1.KiB", -EINVAL, NULL},
        {".5KiB", -EINVAL, NULL},
        {"0x10", -EINVAL, NULL},
        {"1e3", -EINVAL, NULL},
        {"5 MiBs", -EINVAL, NULL},
        {"18446744073709551616", -ERANGE,
         "'18446744073709551616' is too large for a size (maximum 16 EiB - 1)"},
        {"16384PiB", -ERANGE, NULL},
        {"20EB", -EINVAL, NULL}, /* no exa units: the unit is unknown */
        {"99999999999999999999999KiB", -ERANGE, NULL},
        {"17179869184GiB", -ERANGE, NULL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v = 777;
        char err[200] = "";
        int rc = wl_parse_size(cases[i].in, &v, err, sizeof(err));
        if (rc != cases[i].rc)
            fail_msg("'%s': rc %d want %d (%s)", cases[i].in, rc, cases[i].rc, err);
        if (v != 777)
            fail_msg("'%s': output written on error", cases[i].in);
        if (cases[i].msg && strcmp(err, cases[i].msg))
            fail_msg("'%s': message\n  got  %s\n  want %s", cases[i].in, err, cases[i].msg);
        if (!err[0])
            fail_msg("'%s': empty message", cases[i].in);
    }
    /* err may be NULL */
    uint64_t v;
    assert_int_equal(wl_parse_size("bogus", &v, NULL, 0), -EINVAL);
    assert_int_equal(wl_parse_size(NULL, &v, NULL, 0), -EINVAL);
}

#define S 1000000000ULL

static void test_duration_good(void **state)
{
    static const good_t cases[] = {
        {"30s", 30 * S},
        {"30", 30 * S},
        {"1.5", 1500000000ULL},
        {"0", 0},
        {"5m", 300 * S},
        {"2h", 7200 * S},
        {"1d", 86400 * S},
        {"500ms", 500000000ULL},
        {"250us", 250000ULL},
        {"250\xc2\xb5s", 250000ULL},
        {"100ns", 100},
        {"1m30s", 90 * S},
        {"1h 30m", 5400 * S},
        {"1h30m15s", 5415 * S},
        {"1.5h", 5400 * S},
        {"30 s", 30 * S},
        {"10sec", 10 * S},
        {"2 minutes", 120 * S},
        {"3 hours", 3 * 3600 * S},
        {"1 day", 86400 * S},
        {"2days", 2 * 86400 * S},
        {"0.5ms", 500000ULL},
        {"1_000ms", S},
        {"  45s ", 45 * S},
        {"18446744073s", 18446744073ULL * S},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v = 1;
        char err[200] = "";
        int rc = wl_parse_duration_ns(cases[i].in, &v, err, sizeof(err));
        if (rc != 0)
            fail_msg("'%s': rc %d (%s)", cases[i].in, rc, err);
        if (v != cases[i].want)
            fail_msg("'%s': got %llu want %llu", cases[i].in, (unsigned long long)v,
                     (unsigned long long)cases[i].want);
    }
}

static void test_duration_bad(void **state)
{
    static const bad_t cases[] = {
        {"", -EINVAL, "empty duration"},
        {"5 fortnights", -EINVAL,
         "'5 fortnights' is not a duration: unknown unit 'fortnights' (use ns, us, ms, s, m, h or "
         "d)"},
        {"-1s", -EINVAL, "'-1s' is not a duration: durations cannot be negative"},
        {"s", -EINVAL,
         "'s' is not a duration: expected a number with a unit, such as 30s, 5m, 1h30m or 500ms"},
        {"1m30", -EINVAL,
         "'1m30' is not a duration: every number needs a unit (ns, us, ms, s, m, h, d)"},
        {"1 2", -EINVAL, NULL},
        {"1x", -EINVAL, NULL},
        {"1.s", -EINVAL, NULL},
        {"forever", -EINVAL, NULL},
        {"18446744074s", -ERANGE, "'18446744074s' is too long for a duration"},
        {"99999999999999999999999", -ERANGE, NULL},
        {"300000d", -ERANGE, NULL},
        {"213503d 213503d", -ERANGE, NULL},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v = 777;
        char err[200] = "";
        int rc = wl_parse_duration_ns(cases[i].in, &v, err, sizeof(err));
        if (rc != cases[i].rc)
            fail_msg("'%s': rc %d want %d (%s)", cases[i].in, rc, cases[i].rc, err);
        if (v != 777)
            fail_msg("'%s': output written on error", cases[i].in);
        if (cases[i].msg && strcmp(err, cases[i].msg))
            fail_msg("'%s': message\n  got  %s\n  want %s", cases[i].in, err, cases[i].msg);
    }
}

static void test_count(void **state)
{
    static const good_t good[] = {
        {"0", 0},
        {"1000000", 1000000},
        {"1_000_000", 1000000},
        {"1,000,000", 1000000},
        {"1 000 000", 1000000},
        {" 42 ", 42},
        {"+7", 7},
        {"18446744073709551615", UINT64_MAX},
    };
    static const bad_t bad[] = {
        {"lots", -EINVAL,
         "'lots' is not a count: expected a whole number such as 1000000, 1_000_000 or 1,000,000"},
        {"-1", -EINVAL, "'-1' is not a count: counts cannot be negative"},
        {"", -EINVAL, "empty count"},
        {"1.5", -EINVAL, NULL},
        {"1k", -EINVAL, NULL},
        {"1__000", -EINVAL, NULL},
        {",100", -EINVAL, NULL},
        {"100,", -EINVAL, NULL},
        {"0x10", -EINVAL, NULL},
        {"18446744073709551616", -ERANGE, "'18446744073709551616' is too large for a count"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t v = 1;
        char err[200] = "";
        int rc = wl_parse_count(good[i].in, &v, err, sizeof(err));
        if (rc != 0 || v != good[i].want)
            fail_msg("'%s': rc %d v %llu (%s)", good[i].in, rc, (unsigned long long)v, err);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 777;
        char err[200] = "";
        int rc = wl_parse_count(bad[i].in, &v, err, sizeof(err));
        if (rc != bad[i].rc || v != 777)
            fail_msg("'%s': rc %d want %d (%s)", bad[i].in, rc, bad[i].rc, err);
        if (bad[i].msg && strcmp(err, bad[i].msg))
            fail_msg("'%s': message\n  got  %s\n  want %s", bad[i].in, err, bad[i].msg);
    }
}

static void test_fmt_bytes(void **state)
{
    char b[32];
    (void)state;
    assert_string_equal(wl_fmt_bytes(0, b, sizeof(b)), "0 B");
    assert_string_equal(wl_fmt_bytes(512, b, sizeof(b)), "512 B");
    assert_string_equal(wl_fmt_bytes(1023, b, sizeof(b)), "1023 B");
    assert_string_equal(wl_fmt_bytes(1024, b, sizeof(b)), "1.00 KiB");
    assert_string_equal(wl_fmt_bytes(1536, b, sizeof(b)), "1.50 KiB");
    assert_string_equal(wl_fmt_bytes(1572864, b, sizeof(b)), "1.50 MiB");
    assert_string_equal(wl_fmt_bytes(1073741824ULL, b, sizeof(b)), "1.00 GiB");
    assert_string_equal(wl_fmt_bytes(1099511627776ULL * 3, b, sizeof(b)), "3.00 TiB");
    assert_string_equal(wl_fmt_bytes(UINT64_MAX, b, sizeof(b)), "16.00 EiB");
    char small[4];
    wl_fmt_bytes(1572864, small, sizeof(small));
    assert_string_equal(small, "1.5");
}

static void test_fmt_ns(void **state)
{
    char b[32];
    (void)state;
    assert_string_equal(wl_fmt_ns(0, b, sizeof(b)), "0 ns");
    assert_string_equal(wl_fmt_ns(850, b, sizeof(b)), "850 ns");
    assert_string_equal(wl_fmt_ns(1500, b, sizeof(b)), "1.50 us");
    assert_string_equal(wl_fmt_ns(1230000, b, sizeof(b)), "1.23 ms");
    assert_string_equal(wl_fmt_ns(999000000, b, sizeof(b)), "999.00 ms");
    assert_string_equal(wl_fmt_ns(2000000000ULL, b, sizeof(b)), "2.0 s");
    assert_string_equal(wl_fmt_ns(90500000000ULL, b, sizeof(b)), "90.5 s");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_good),     cmocka_unit_test(test_size_bad),
        cmocka_unit_test(test_duration_good), cmocka_unit_test(test_duration_bad),
        cmocka_unit_test(test_count),         cmocka_unit_test(test_fmt_bytes),
        cmocka_unit_test(test_fmt_ns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
