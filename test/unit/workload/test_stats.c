/* Stats: buckets, classes, merge, and the results TSV written from them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wl/results.h"
#include "wl/stats.h"

static void test_buckets(void **state)
{
    (void)state;
    assert_int_equal(wl_size_bucket(0), 0);
    assert_int_equal(wl_size_bucket(1), 1);
    assert_int_equal(wl_size_bucket(8192), 1);
    assert_int_equal(wl_size_bucket(8193), 2);
    assert_int_equal(wl_size_bucket(65536), 2);
    assert_int_equal(wl_size_bucket(65537), 3);
    assert_int_equal(wl_size_bucket(524288), 3);
    assert_int_equal(wl_size_bucket(4ull << 20), 4);
    assert_int_equal(wl_size_bucket((4ull << 20) + 1), 5);
    assert_int_equal(wl_size_bucket(32ull << 20), 5);
    assert_int_equal(wl_size_bucket(256ull << 20), 6);
    assert_int_equal(wl_size_bucket(2ull << 30), 7);
    assert_int_equal(wl_size_bucket((2ull << 30) + 1), 8);
    assert_string_equal(wl_bucket_label(0), "zero");
    assert_string_equal(wl_bucket_label(8), ">2GiB");
    assert_int_equal(wl_op_class(WL_OP_GET), WL_CLASS_GET);
    assert_int_equal(wl_op_class(WL_OP_PUT), WL_CLASS_PUT);
    assert_int_equal(wl_op_class(WL_OP_STAT), WL_CLASS_META);
    assert_int_equal(wl_op_class(WL_OP_RMDIR), WL_CLASS_META);
}

static void test_record_merge(void **state)
{
    (void)state;
    wl_stats_t a, b, all;
    wl_stats_init(&a);
    wl_stats_init(&b);
    wl_stats_init(&all);
    for (uint64_t i = 1; i <= 1000; i++) {
        wl_stats_t *s = (i % 2) ? &a : &b;
        assert_int_equal(wl_stats_record(s, WL_OP_GET, 4096, i * 1000, 0), 0);
        assert_int_equal(wl_stats_record(&all, WL_OP_GET, 4096, i * 1000, 0), 0);
        assert_int_equal(wl_stats_record(s, WL_OP_STAT, 777, i * 10, 0), 0);
        assert_int_equal(wl_stats_record(&all, WL_OP_STAT, 777, i * 10, 0), 0);
    }
    wl_stats_error(&a, WL_OP_GET, -11003, NULL);
    wl_stats_error(&b, WL_OP_GET, -11003, "");
    wl_stats_error(&b, WL_OP_GET, -5, "HTTP 500");
    wl_stats_t m;
    wl_stats_init(&m);
    assert_int_equal(wl_stats_merge(&m, &a), 0);
    assert_int_equal(wl_stats_merge(&m, &b), 0);
    assert_int_equal(wl_stats_ops(&m, WL_OP_GET), 1000);
    assert_int_equal(wl_stats_bytes(&m, WL_OP_GET), 4096000);
    /* META ops land in bucket 0 whatever their bytes */
    assert_int_equal(m.op[WL_OP_STAT].ops[0], 1000);
    assert_int_equal(m.op[WL_OP_GET].ops[1], 1000);
    assert_int_equal(wl_stats_errors(&m, WL_OP_GET), 3);
    assert_int_equal(m.op[WL_OP_GET].errk[0].code, -11003);
    assert_int_equal(m.op[WL_OP_GET].errk[0].n, 2);
    assert_int_equal(m.op[WL_OP_GET].errk[1].code, -5);
    assert_string_equal(m.op[WL_OP_GET].errk[1].name, "HTTP 500");
    /* the same code under another provider name is its own kind */
    wl_stats_error(&m, WL_OP_GET, -5, "SlowDown");
    wl_stats_error(&m, WL_OP_GET, -5, "HTTP 500");
    assert_int_equal(m.op[WL_OP_GET].errk[1].n, 2);
    assert_string_equal(m.op[WL_OP_GET].errk[2].name, "SlowDown");
    assert_int_equal(m.op[WL_OP_GET].errk[2].n, 1);
    assert_int_equal(wl_stats_errors(&m, WL_OP_GET), 5);
    wl_hist_t h1, h2;
    wl_hist_init(&h1);
    wl_hist_init(&h2);
    wl_stats_class_hist(&m, WL_CLASS_GET, -1, &h1);
    wl_stats_class_hist(&all, WL_CLASS_GET, -1, &h2);
    assert_int_equal(h1.total, h2.total);
    assert_int_equal(wl_hist_quantile(&h1, 0.99), wl_hist_quantile(&h2, 0.99));
    assert_int_equal(wl_stats_class_ops(&m, WL_CLASS_META, -1), 1000);
    wl_hist_free(&h1);
    wl_hist_free(&h2);
    wl_stats_reset(&m);
    assert_int_equal(wl_stats_total_ops(&m), 0);
    assert_int_equal(wl_stats_total_errors(&m), 0);
    wl_stats_free(&a);
    wl_stats_free(&b);
    wl_stats_free(&all);
    wl_stats_free(&m);
}

static void test_tsv(void **state)
{
    (void)state;
    wl_stats_t s;
    wl_stats_init(&s);
    for (int i = 0; i < 100; i++) {
        wl_stats_record(&s, WL_OP_GET, 4096, 100000, 0);    /* 100 us */
        wl_stats_record(&s, WL_OP_GET, 1 << 20, 2000000, 0); /* 1 MiB, 2 ms */
        wl_stats_record(&s, WL_OP_PUT, 16384, 500000, 0);
        wl_stats_record(&s, WL_OP_DELETE, 0, 50000, 0);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(wl_results_write_tsv(f, &s, 10000000000ull, 0), 0); /* 10 s */
    fclose(f);
    const char *header =
        "operation\tsize_bucket\tbucket_idx\tmean_us\tp50_us\tp90_us\tp95_us\tp99_us\tmax_us\t"
        "avg_bytes\tops_per_sec\tthroughput_mibps\tcount\n";
    /* compare the structure strictly and the numbers loosely (histogram bucket edges) */
    int lines = 0;
    for (char *p = buf; *p; p++) lines += *p == '\n';
    assert_int_equal(lines, 9);
    assert_memory_equal(buf, header, strlen(header));
    assert_non_null(strstr(buf, "\nMETA\tzero\t0\t50.00\t"));
    assert_non_null(strstr(buf, "\nGET\t1B-8KiB\t1\t100.00\t"));
    assert_non_null(strstr(buf, "\t4096\t10.00\t0.04\t100\n"));
    assert_non_null(strstr(buf, "\nGET\t512KiB-4MiB\t4\t2000.00\t"));
    assert_non_null(strstr(buf, "\t1048576\t10.00\t10.00\t100\n"));
    assert_non_null(strstr(buf, "\nDELETE\tALL\t94\t"));
    assert_non_null(strstr(buf, "\nGET\tALL\t98\t1050.00\t"));
    assert_non_null(strstr(buf, "\t526336\t20.00\t10.04\t200\n"));
    assert_non_null(strstr(buf, "\nPUT\tALL\t99\t500.00\t"));
    free(buf);
    /* prepare_only: PUT rows only */
    buf = NULL;
    f = open_memstream(&buf, &len);
    assert_int_equal(wl_results_write_tsv(f, &s, 1000000000ull, 1), 0);
    fclose(f);
    assert_null(strstr(buf, "\nGET"));
    assert_null(strstr(buf, "\nMETA"));
    assert_non_null(strstr(buf, "\nPUT\tALL\t99\t"));
    free(buf);
    wl_stats_free(&s);
}

static void test_cpu(void **state)
{
    (void)state;
    wl_cpu_sample_t a, b;
    assert_int_equal(wl_cpu_read(&a), 0);
    volatile double x = 0;
    for (int i = 0; i < 20000000; i++) x += i * 0.5;
    assert_true(x > 0);
    assert_int_equal(wl_cpu_read(&b), 0);
    double u, s, w;
    wl_cpu_pct(&a, &b, &u, &s, &w);
    assert_true(u >= 0 && u <= 100 && s >= 0 && s <= 100 && w >= 0 && w <= 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_record_merge),
        cmocka_unit_test(test_tsv),
        cmocka_unit_test(test_cpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
