/* apps/common/wire.c: stats of two agents travel as OpStats (packed and unpacked like on the
 * wire) and merge into exactly what recording everything in one place gives; malformed lists are
 * refused with a reason. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wire.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void fill(wl_stats_t *a, wl_stats_t *all, int n)
{
    for (int i = 0; i < n; i++) {
        wl_op_kind_t op = (wl_op_kind_t)(next() % WL_OP__COUNT);
        uint64_t bytes = next() % (8u << 20), lat = 1000 + next() % 50000000, sched = lat + 5;
        wl_stats_record(a, op, bytes, lat, sched);
        wl_stats_record(all, op, bytes, lat, sched);
        if (i % 97 == 0) {
            char name[16];
            snprintf(name, sizeof(name), "HTTP %d", 500 + i % 3);
            wl_stats_error(a, op, -11000 - (i % 3), name);
            wl_stats_error(all, op, -11000 - (i % 3), name);
        }
    }
}

/* Through the wire: to_pb, pack as an IntervalStats, unpack, merge. */
static void travel(const wl_stats_t *s, wl_stats_t *dst)
{
    Sai3bench__IntervalStats iv = SAI3BENCH__INTERVAL_STATS__INIT;
    assert_int_equal(app_stats_to_pb(s, &iv.ops, &iv.n_ops), 0);
    size_t len;
    uint8_t *b = app_pack(&iv.base, &len);
    assert_non_null(b);
    app_pb_ops_free(iv.ops, iv.n_ops);
    Sai3bench__IntervalStats *u = sai3bench__interval_stats__unpack(NULL, len, b);
    assert_non_null(u);
    char err[200] = "";
    assert_int_equal(app_stats_merge_pb(dst, u->ops, u->n_ops, err, sizeof(err)), 0);
    sai3bench__interval_stats__free_unpacked(u, NULL);
    free(b);
}

static void same(const wl_stats_t *x, const wl_stats_t *y)
{
    for (int op = 0; op < WL_OP__COUNT; op++) {
        const wl_opstats_t *a = &x->op[op], *b = &y->op[op];
        for (int k = 0; k < WL_NBUCKETS; k++) {
            assert_int_equal(a->ops[k], b->ops[k]);
            assert_int_equal(a->bytes[k], b->bytes[k]);
            uint8_t sa[1 << 16], sb[1 << 16];
            size_t la = wl_hist_serialize(&a->lat[k], sa, sizeof(sa));
            size_t lb = wl_hist_serialize(&b->lat[k], sb, sizeof(sb));
            assert_int_equal(la, lb);
            assert_memory_equal(sa, sb, la);
        }
        assert_int_equal(a->lat_sched.total, b->lat_sched.total);
        assert_int_equal(wl_hist_quantile(&a->lat_sched, 0.99), wl_hist_quantile(&b->lat_sched, 0.99));
        assert_int_equal(a->errors, b->errors);
        for (int k = 0; k < WL_ERRKINDS; k++) {
            assert_int_equal(a->errk[k].code, b->errk[k].code);
            assert_string_equal(a->errk[k].name, b->errk[k].name);
            assert_int_equal(a->errk[k].n, b->errk[k].n);
        }
    }
}

static void test_two_agents_merge_exactly(void **state)
{
    (void)state;
    wl_stats_t a1, a2, all, merged;
    wl_stats_init(&a1);
    wl_stats_init(&a2);
    wl_stats_init(&all);
    wl_stats_init(&merged);
    fill(&a1, &all, 20000);
    fill(&a2, &all, 7000);
    travel(&a1, &merged);
    travel(&a2, &merged);
    same(&merged, &all);
    assert_int_equal(wl_stats_total_ops(&merged), 27000);
    wl_stats_free(&a1);
    wl_stats_free(&a2);
    wl_stats_free(&all);
    wl_stats_free(&merged);
}

static void test_empty(void **state)
{
    (void)state;
    wl_stats_t s;
    wl_stats_init(&s);
    Sai3bench__OpStats **v = (Sai3bench__OpStats **)1;
    size_t n = 9;
    assert_int_equal(app_stats_to_pb(&s, &v, &n), 0);
    assert_null(v);
    assert_int_equal(n, 0);
    wl_stats_free(&s);
}

static void test_malformed(void **state)
{
    (void)state;
    wl_stats_t s;
    wl_stats_init(&s);
    char err[200];
    Sai3bench__OpStats o = SAI3BENCH__OP_STATS__INIT;
    Sai3bench__OpStats *v[1] = {&o};
    o.kind = 0;
    assert_int_equal(app_stats_merge_pb(&s, v, 1, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "op kind 0"));
    o.kind = 8;
    assert_int_equal(app_stats_merge_pb(&s, v, 1, err, sizeof(err)), -EINVAL);
    o.kind = SAI3BENCH__OP_KIND__OP_KIND_GET;
    Sai3bench__BucketStats b1 = SAI3BENCH__BUCKET_STATS__INIT, b2 = SAI3BENCH__BUCKET_STATS__INIT;
    Sai3bench__BucketStats *bp[2] = {&b1, &b2};
    o.buckets = bp;
    o.n_buckets = 1;
    b1.bucket = 9;
    assert_int_equal(app_stats_merge_pb(&s, v, 1, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "out of range"));
    b1.bucket = 2;
    b2.bucket = 2;
    o.n_buckets = 2;
    assert_int_equal(app_stats_merge_pb(&s, v, 1, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "repeated"));
    o.n_buckets = 1;
    uint8_t junk[] = {'W', 'H', 1, 5, 0};
    b1.latency_hist.data = junk;
    b1.latency_hist.len = sizeof(junk);
    assert_int_equal(app_stats_merge_pb(&s, v, 1, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "malformed histogram"));
    wl_stats_free(&s);
}

static void test_helpers(void **state)
{
    (void)state;
    assert_true(app_env_forwardable("AWS_SECRET_ACCESS_KEY"));
    assert_true(app_env_forwardable("AZURE_STORAGE_ACCOUNT"));
    assert_true(app_env_forwardable("GOOGLE_APPLICATION_CREDENTIALS"));
    assert_false(app_env_forwardable("HOME"));
    assert_false(app_env_forwardable("AWSX"));
    char tok[64], err[200], path[] = "/tmp/sai3-tok-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "s3cret \n", 8), 8);
    close(fd);
    assert_int_equal(app_read_token(path, tok, sizeof(tok), err, sizeof(err)), 0);
    assert_string_equal(tok, "s3cret");
    fd = open(path, O_WRONLY | O_TRUNC);
    close(fd);
    assert_int_equal(app_read_token(path, tok, sizeof(tok), err, sizeof(err)), -EINVAL);
    unlink(path);
    assert_int_equal(app_read_token(path, tok, sizeof(tok), err, sizeof(err)), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_agents_merge_exactly),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
