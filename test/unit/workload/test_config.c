/* The strict config loader: a full config, defaults, aliases, the bad-YAML corpus
 * (test/config-errors/NN-name.yaml + .expect), file loading, URI joins, sizes and the plan. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wl/config.h"
#include "wl/err.h"

#ifndef SRCDIR
#define SRCDIR "."
#endif

#define NS 1000000000ULL
#define KiB 1024ULL
#define MiB (1024ULL * 1024ULL)

static int load(const char *text, wl_config_t *c, wl_diags_t *d)
{
    wl_diags_init(d);
    return wl_config_load_string("t.yaml", text, strlen(text), c, d);
}

/* Loads text that must be valid; prints diagnostics otherwise. */
static void load_ok(const char *text, wl_config_t *c)
{
    wl_diags_t d;
    int rc = load(text, c, &d);
    if (rc != 0) {
        char buf[1024];
        for (size_t i = 0; i < d.n; i++) {
            wl_diag_format(&d, i, buf, sizeof(buf));
            print_error("%s\n", buf);
        }
        wl_diags_free(&d);
        fail_msg("config rejected (rc %d)", rc);
    }
    assert_int_equal(d.n, 0);
    wl_diags_free(&d);
}

/* Loads text that must fail with exactly one diagnostic equal to want. */
static void load_bad1(const char *text, const char *want)
{
    wl_config_t c;
    wl_diags_t d;
    char buf[1024] = "";
    int rc = load(text, &c, &d);
    assert_int_equal(rc, WL_ECONFIG);
    if (d.n >= 1)
        wl_diag_format(&d, 0, buf, sizeof(buf));
    if (d.n != 1 || strcmp(buf, want))
        fail_msg("%zu diagnostics; first:\n  got  %s\n  want %s", d.n, buf, want);
    assert_null(c.ops);
    assert_null(c.target);
    wl_diags_free(&d);
}

static const char full_yaml[] =
    "# every key this build supports\n"
    "target: \"file:///tmp/sai3/\"\n"
    "duration: 1m30s\n"
    "concurrency: 1_024\n"
    "perf_log: { interval: 500ms }\n"
    "error_handling:\n"
    "  max_total_errors: 1,000\n"
    "  error_rate_threshold: 2.5\n"
    "  backoff_duration: 2s\n"
    "  error_rate_window: 3\n"
    "  retry_on_error: yes\n"
    "  max_retries: 7\n"
    "  initial_retry_delay_ms: 50\n"
    "  max_retry_delay_ms: 8000\n"
    "  retry_backoff_multiplier: 1.5\n"
    "  retry_jitter_factor: 0.1\n"
    "io_rate: { iops: 5000, distribution: deterministic }\n"
    "prepare:\n"
    "  cleanup: on\n"
    "  cleanup_mode: strict\n"
    "  skip_verification: true\n"
    "  force_overwrite: yes\n"
    "  post_prepare_delay: 5\n"
    "  ensure_objects:\n"
    "    - base_uri: \"file:///tmp/sai3/data/\"\n"
    "      count: 100_000\n"
    "      size_spec: { type: lognormal, mean: 1MiB, std_dev: 512KiB, min: 1KiB, max: 10MiB }\n"
    "      fill: prand\n"
    "      dedup_factor: 2\n"
    "      compress_factor: 3\n"
    "    - base_uri: \"s3://bucket/small/\"\n"
    "      count: 1 000\n"
    "      min_size: 4KiB\n"
    "      max_size: 64KiB\n"
    "      fill: zero\n"
    "    - base_uri: \"gs://bucket/fixed/\"\n"
    "      count: 10\n"
    "      size_distribution: 16KiB\n"
    "workload:\n"
    "  - &g { op: get, path: \"data/**/prepared-*.dat\", weight: 60 }\n"
    "  - { op: put, path: \"new/\", object_size: 1MiB, weight: 25, concurrency: 8, fill: zero,\n"
    "      dedup_factor: 4, compress_factor: 2 }\n"
    "  - { op: put, path: \"s3://other/x/\", size_spec: { type: uniform, min: 1KiB, max: 8KiB },\n"
    "      weight: 5 }\n"
    "  - { op: put, path: \"new2/\", size_distribution: { type: fixed, size: 2KiB }, weight: 1 }\n"
    "  - { op: stat, path: \"data/\", weight: 5 }\n"
    "  - { op: list, path: \"/data/\", weight: 5 }\n"
    "  - { op: delete, path: \"data/x\", weight: 5 }\n"
    "  - { op: mkdir, path: \"dirs/\", weight: 1 }\n"
    "  - op: rmdir\n"
    "    path: dirs/\n"
    "    weight: 1\n"
    "    recursive: true\n"
    "  - *g\n";

static void test_full(void **state)
{
    wl_config_t c;
    (void)state;
    load_ok(full_yaml, &c);
    assert_string_equal(c.source, "t.yaml");
    assert_string_equal(c.target, "file:///tmp/sai3/");
    assert_true(c.duration_ns == 90 * NS);
    assert_int_equal(c.concurrency, 1024);

    assert_true(c.perf_log.present);
    assert_true(c.perf_log.interval_ns == 500000000ULL);

    assert_true(c.errh.max_total_errors == 1000);
    assert_true(c.errh.error_rate_threshold == 2.5);
    assert_true(c.errh.backoff_duration_ns == 2 * NS);
    assert_true(c.errh.error_rate_window_ns == 3 * NS);
    assert_true(c.errh.retry_on_error);
    assert_int_equal(c.errh.max_retries, 7);
    assert_true(c.errh.initial_retry_delay_ms == 50);
    assert_true(c.errh.max_retry_delay_ms == 8000);
    assert_true(c.errh.retry_backoff_multiplier == 1.5);
    assert_true(c.errh.retry_jitter_factor == 0.1);

    assert_true(c.io_rate.present);
    assert_true(c.io_rate.iops == 5000.0);
    assert_int_equal(c.io_rate.distribution, WL_RATE_DETERMINISTIC);

    const wl_prepare_cfg_t *p = &c.prepare;
    assert_true(p->present);
    assert_true(p->cleanup);
    assert_int_equal(p->cleanup_mode, WL_CLEANUP_STRICT);
    assert_true(p->skip_verification);
    assert_true(p->force_overwrite);
    assert_true(p->post_prepare_delay_ns == 5 * NS);
    assert_int_equal(p->nensure, 3);
    const wl_ensure_cfg_t *e = &p->ensure[0];
    assert_string_equal(e->base_uri, "file:///tmp/sai3/data/");
    assert_true(e->count == 100000);
    assert_int_equal(e->size.kind, WL_SIZE_LOGNORMAL);
    assert_true(e->size.mean == (double)MiB);
    assert_true(e->size.std_dev == 512.0 * KiB);
    assert_true(e->size.min == KiB);
    assert_true(e->size.max == 10 * MiB);
    assert_int_equal(e->fill, WL_FILL_RANDOM);
    assert_int_equal(e->dedup_factor, 2);
    assert_int_equal(e->compress_factor, 3);
    assert_int_equal(e->line, 25);
    assert_int_equal(e->col, 7);
    e = &p->ensure[1];
    assert_string_equal(e->base_uri, "s3://bucket/small/");
    assert_true(e->count == 1000);
    assert_int_equal(e->size.kind, WL_SIZE_UNIFORM);
    assert_true(e->size.min == 4 * KiB && e->size.max == 64 * KiB);
    assert_int_equal(e->fill, WL_FILL_ZERO);
    assert_int_equal(e->dedup_factor, 1);
    assert_int_equal(e->compress_factor, 1);
    e = &p->ensure[2];
    assert_int_equal(e->size.kind, WL_SIZE_FIXED);
    assert_true(e->size.fixed == 16 * KiB);

    assert_int_equal(c.nops, 10);
    const wl_op_cfg_t *o = c.ops;
    assert_int_equal(o[0].op, WL_OP_GET);
    assert_string_equal(o[0].path, "data/**/prepared-*.dat");
    assert_int_equal(o[0].weight, 60);
    assert_int_equal(o[0].concurrency, 0);
    assert_int_equal(o[0].line, 40);
    assert_int_equal(o[0].col, 5); /* libyaml marks the anchor */
    assert_int_equal(o[1].op, WL_OP_PUT);
    assert_int_equal(o[1].size.kind, WL_SIZE_FIXED);
    assert_true(o[1].size.fixed == MiB);
    assert_int_equal(o[1].weight, 25);
    assert_int_equal(o[1].concurrency, 8);
    assert_int_equal(o[1].fill, WL_FILL_ZERO);
    assert_int_equal(o[1].dedup_factor, 4);
    assert_int_equal(o[1].compress_factor, 2);
    assert_int_equal(o[2].size.kind, WL_SIZE_UNIFORM);
    assert_true(o[2].size.min == KiB && o[2].size.max == 8 * KiB);
    assert_int_equal(o[2].fill, WL_FILL_RANDOM);
    assert_int_equal(o[2].dedup_factor, 1);
    assert_int_equal(o[3].size.kind, WL_SIZE_FIXED);
    assert_true(o[3].size.fixed == 2 * KiB);
    assert_int_equal(o[4].op, WL_OP_STAT);
    assert_int_equal(o[5].op, WL_OP_LIST);
    assert_int_equal(o[6].op, WL_OP_DELETE);
    assert_int_equal(o[7].op, WL_OP_MKDIR);
    assert_int_equal(o[8].op, WL_OP_RMDIR);
    assert_true(o[8].recursive);
    assert_int_equal(o[8].line, 50);
    assert_int_equal(o[8].col, 5);
    assert_int_equal(o[9].op, WL_OP_GET); /* the alias */
    assert_string_equal(o[9].path, "data/**/prepared-*.dat");

    char uri[256];
    assert_int_equal(wl_config_op_uri(&c, &o[0], uri, sizeof(uri)), 0);
    assert_string_equal(uri, "file:///tmp/sai3/data/**/prepared-*.dat");
    assert_int_equal(wl_config_op_uri(&c, &o[2], uri, sizeof(uri)), 0);
    assert_string_equal(uri, "s3://other/x/");
    assert_int_equal(wl_config_op_uri(&c, &o[5], uri, sizeof(uri)), 0);
    assert_string_equal(uri, "file:///tmp/sai3/data/");
    assert_int_equal(wl_config_op_uri(&c, &o[0], uri, 10), -EINVAL);
    wl_config_free(&c);
    assert_null(c.ops);
}

static void test_defaults(void **state)
{
    wl_config_t c;
    (void)state;
    load_ok("target: file:///tmp/x\nworkload:\n  - {op: get, path: a, weight: 1}\n", &c);
    assert_true(c.duration_ns == 60 * NS);
    assert_int_equal(c.concurrency, 16);
    assert_false(c.prepare.present);
    assert_false(c.io_rate.present);
    assert_false(c.perf_log.present);
    assert_true(c.perf_log.interval_ns == NS);
    assert_true(c.errh.max_total_errors == 100);
    assert_true(c.errh.error_rate_threshold == 5.0);
    assert_true(c.errh.backoff_duration_ns == 5 * NS);
    assert_true(c.errh.error_rate_window_ns == NS);
    assert_false(c.errh.retry_on_error);
    assert_int_equal(c.errh.max_retries, 3);
    assert_true(c.errh.initial_retry_delay_ms == 100);
    assert_true(c.errh.max_retry_delay_ms == 5000);
    assert_true(c.errh.retry_backoff_multiplier == 2.0);
    assert_true(c.errh.retry_jitter_factor == 0.25);
    assert_int_equal(c.nops, 1);
    assert_int_equal(c.ops[0].concurrency, 0);
    assert_false(c.ops[0].recursive);
    /* endpoint, s3 and http defaults */
    assert_null(c.net.endpoint);
    assert_false(c.net.virtual_host);
    assert_false(c.net.sign_payload);
    assert_true(c.net.create_bucket);
    assert_true(c.net.multipart_threshold == 64 * MiB);
    assert_true(c.net.part_size == 16 * MiB);
    assert_int_equal(c.net.part_concurrency, 8);
    assert_int_equal(c.net.max_connections, 0);
    assert_true(c.net.connect_timeout_ns == 5 * NS);
    assert_true(c.net.io_timeout_ns == 30 * NS);
    assert_null(c.net.ca_bundle);
    assert_false(c.net.insecure_skip_verify);
    char uri[128];
    assert_int_equal(wl_config_op_uri(&c, &c.ops[0], uri, sizeof(uri)), 0);
    assert_string_equal(uri, "file:///tmp/x/a");
    wl_config_free(&c);

    /* prepare defaults; prepare alone is a valid config */
    load_ok("prepare:\n  ensure_objects:\n    - {base_uri: 'file:///tmp/p', count: 5}\n", &c);
    assert_true(c.prepare.present);
    assert_false(c.prepare.cleanup);
    assert_int_equal(c.prepare.cleanup_mode, WL_CLEANUP_TOLERANT);
    assert_false(c.prepare.skip_verification);
    assert_false(c.prepare.force_overwrite);
    assert_true(c.prepare.post_prepare_delay_ns == 0);
    assert_int_equal(c.prepare.nensure, 1);
    assert_int_equal(c.prepare.ensure[0].size.kind, WL_SIZE_FIXED);
    assert_true(c.prepare.ensure[0].size.fixed == MiB);
    assert_int_equal(c.prepare.ensure[0].fill, WL_FILL_RANDOM);
    assert_int_equal(c.prepare.ensure[0].dedup_factor, 1);
    assert_null(c.prepare.ensure[0].endpoint);
    assert_int_equal(c.nops, 0);
    assert_null(c.target);
    wl_config_free(&c);

    /* uniform and lognormal defaults */
    load_ok("target: s3://b/\n"
            "workload:\n"
            "  - {op: put, path: u/, weight: 1, size_spec: {type: uniform}}\n"
            "  - {op: put, path: l/, weight: 1, size_spec: {type: lognormal, mean: 4096,"
            " std_dev: 100}}\n"
            "  - {op: get, weight: 1}\n",
            &c);
    assert_int_equal(c.ops[0].size.kind, WL_SIZE_UNIFORM);
    assert_true(c.ops[0].size.min == 1024 && c.ops[0].size.max == 1048576);
    assert_int_equal(c.ops[1].size.kind, WL_SIZE_LOGNORMAL);
    assert_true(c.ops[1].size.min == 1 && c.ops[1].size.max == UINT64_MAX);
    assert_string_equal(c.ops[2].path, ""); /* no path: the target itself */
    assert_int_equal(wl_config_op_uri(&c, &c.ops[2], uri, sizeof(uri)), 0);
    assert_string_equal(uri, "s3://b/");
    wl_config_free(&c);
}

static void test_aliases(void **state)
{
    wl_config_t c;
    (void)state;
    load_ok("target: file:///tmp/x/\n"
            "io_rate: {iops: max, distribution: uniform}\n"
            "perf_log:\n"
            "prepare:\n"
            "  cleanup_mode: best_effort\n"
            "  cleanup: YES\n"
            "  skip_verification: Off\n"
            "  post_prepare_delay: 1m\n"
            "  ensure_objects:\n"
            "    - {base_uri: 'direct:///tmp/d/', count: '1,000', min_size: 2KiB,"
            " max_size: 2KiB, fill: prand}\n"
            "error_handling: {error_rate_window: 250ms}\n"
            "workload:\n"
            "  - {op: put, path: n/, weight: 2, size_distribution: 1.5KiB}\n",
            &c);
    assert_true(c.io_rate.present);
    assert_true(c.io_rate.iops == 0);
    assert_int_equal(c.io_rate.distribution, WL_RATE_UNIFORM);
    assert_true(c.perf_log.present);
    assert_true(c.perf_log.interval_ns == NS);
    assert_int_equal(c.prepare.cleanup_mode, WL_CLEANUP_BESTEFFORT);
    assert_true(c.prepare.cleanup);
    assert_false(c.prepare.skip_verification);
    assert_true(c.prepare.post_prepare_delay_ns == 60 * NS);
    assert_true(c.prepare.ensure[0].count == 1000);
    assert_int_equal(c.prepare.ensure[0].size.kind, WL_SIZE_FIXED);
    assert_true(c.prepare.ensure[0].size.fixed == 2048);
    assert_int_equal(c.prepare.ensure[0].fill, WL_FILL_RANDOM);
    assert_true(c.errh.error_rate_window_ns == 250000000ULL);
    assert_int_equal(c.ops[0].size.kind, WL_SIZE_FIXED);
    assert_true(c.ops[0].size.fixed == 1536);
    wl_config_free(&c);

    load_ok(
        "target: file:///tmp/x/\nio_rate: {iops: 0}\nworkload: [{op: get, path: a, weight: 1}]\n",
        &c);
    assert_true(c.io_rate.present && c.io_rate.iops == 0);
    assert_int_equal(c.io_rate.distribution, WL_RATE_EXPONENTIAL);
    wl_config_free(&c);
}

static void test_single_errors(void **state)
{
    (void)state;
    load_bad1("target: file:///x/\nworkload: [{op: get, path: a, weight: 1}]\nio_rate: {}\n",
              "t.yaml:3:10: missing required key 'iops' in io_rate (a number, or 'max')");
    load_bad1("target: file:///x/\nworkload: []\n",
              "t.yaml:2:11: 'workload' is empty and there is no 'prepare' block: nothing to run");
    load_bad1("target: file:///x/\nworkload: {op: get}\n",
              "t.yaml:2:11: 'workload' must be a list of operations, got a mapping");
    load_bad1("target: s3:///x/\nworkload: [{op: get, path: a, weight: 1}]\n",
              "t.yaml:1:9: 'target' 's3:///x/' has no bucket or account after 's3://'");
    load_bad1("target: file:///x/\nconcurrency: 99999999999999999999\n"
              "workload: [{op: get, path: a, weight: 1}]\n",
              "t.yaml:2:14: 'concurrency' is too large: '99999999999999999999' (maximum 1000000)");
    load_bad1("target: file:///x/\nduration:\nworkload: [{op: get, path: a, weight: 1}]\n",
              "t.yaml:2:10: 'duration' needs a value (a duration such as 30s, 5m or 1h30m)");
    load_bad1("target: file:///x/\nworkload: [{op: get, path: a, weight: 1}]\n"
              "error_handling: {retry_backoff_multiplier: .nan}\n",
              "t.yaml:3:44: 'retry_backoff_multiplier' must be a number, got string '.nan'");
    load_bad1("target: file:///x/\nworkload: [{op: get, path: a, weight: 1}]\n"
              "prepare: {ensure_objects: [{base_uri: 'file:///y/', count: 1, size_spec: 1KiB,"
              " min_size: 1}]}\n",
              "t.yaml:3:80: give either 'size_spec' or 'min_size'/'max_size', not both");
    load_bad1("target: file:///x/\nworkload:\n  - {op: put, path: a, weight: 1,"
              " size_spec: {type: lognormal, mean: 1KiB, std_dev: 1, min: 2KiB}}\n",
              "t.yaml:3:70: 'mean' (1024) must lie between 'min' (2048) and 'max' "
              "(18446744073709551615)");
    load_bad1("target: file:///x/\n{bad\n",
              "t.yaml:3:1: syntax error: could not find expected ':' (while scanning a simple "
              "key at line 2, column 1)");
    load_bad1("x: \x80\n", "t.yaml:1:4: syntax error: invalid leading UTF-8 octet (byte 0x80)");
}

/* ---------------------------------------------------------------- endpoint, s3, http ------- */

static const char net_yaml[] =
    "target: s3://bucket/prefix/\n"        /* 1 */
    "endpoint: http://127.0.0.1:9000\n"    /* 2 */
    "s3:\n"                                /* 3 */
    "  addressing: virtual\n"              /* 4 */
    "  sign_payload: yes\n"                /* 5 */
    "  create_bucket: false\n"             /* 6 */
    "  multipart_threshold: 32MiB\n"       /* 7 */
    "  part_size: 5MiB\n"                  /* 8 */
    "  part_concurrency: 256\n"            /* 9 */
    "http:\n"                              /* 10 */
    "  max_connections: 4096\n"            /* 11 */
    "  connect_timeout: 1500ms\n"          /* 12 */
    "  io_timeout: 2m\n"                   /* 13 */
    "  ca_bundle: /etc/ssl/minio-ca.pem\n" /* 14 */
    "  insecure_skip_verify: true\n"       /* 15 */
    "prepare:\n"                           /* 16 */
    "  ensure_objects:\n"                  /* 17 */
    "    - {base_uri: 's3://other/p/', count: 10, endpoint: 'https://s3.example.com/'}\n"
    "    - {base_uri: 's3://bucket/q/', count: 10}\n"
    "workload:\n"
    "  - {op: get, path: 'p/*', weight: 1}\n"
    "  - {op: put, path: 's3://third/x/', object_size: 1KiB, weight: 1}\n";

static void test_net(void **state)
{
    wl_config_t c;
    (void)state;
    load_ok(net_yaml, &c);
    const wl_net_cfg_t *n = &c.net;
    assert_string_equal(n->endpoint, "http://127.0.0.1:9000");
    assert_true(n->virtual_host);
    assert_true(n->sign_payload);
    assert_false(n->create_bucket);
    assert_true(n->multipart_threshold == 32 * MiB);
    assert_true(n->part_size == 5 * MiB);
    assert_int_equal(n->part_concurrency, 256);
    assert_int_equal(n->max_connections, 4096);
    assert_true(n->connect_timeout_ns == 1500000000ULL);
    assert_true(n->io_timeout_ns == 120 * NS);
    assert_string_equal(n->ca_bundle, "/etc/ssl/minio-ca.pem");
    assert_true(n->insecure_skip_verify);
    assert_string_equal(c.prepare.ensure[0].endpoint, "https://s3.example.com/");
    assert_null(c.prepare.ensure[1].endpoint);
    /* HTTP/2 defaults */
    assert_int_equal(n->version, 0);
    assert_int_equal(n->h2_max_streams, 100);
    assert_true(n->h2_stream_window == 4 * MiB);
    assert_true(n->h2_conn_window == 0);
    wl_config_free(&c);

    /* HTTP/2 keys and their spellings */
    load_ok("target: s3://b/\nhttp: {version: '2', h2_max_streams: 10, h2_stream_window: 1MiB,"
            " h2_conn_window: 64MiB}\nworkload: [{op: get, weight: 1}]\n",
            &c);
    assert_int_equal(c.net.version, 1);
    assert_int_equal(c.net.h2_max_streams, 10);
    assert_true(c.net.h2_stream_window == 1 * MiB);
    assert_true(c.net.h2_conn_window == 64 * MiB);
    wl_config_free(&c);
    load_ok("target: s3://b/\nhttp: {version: auto}\nworkload: [{op: get, weight: 1}]\n", &c);
    assert_int_equal(c.net.version, 2);
    wl_config_free(&c);
    load_ok("target: s3://b/\nhttp: {version: h2c}\nworkload: [{op: get, weight: 1}]\n", &c);
    assert_int_equal(c.net.version, 1);
    wl_config_free(&c);
    load_ok("target: s3://b/\nhttp: {version: '1.1'}\nworkload: [{op: get, weight: 1}]\n", &c);
    assert_int_equal(c.net.version, 0);
    wl_config_free(&c);

    /* the other spellings and limits; empty blocks keep the defaults */
    load_ok("target: s3://b/\nendpoint: 'HTTPS://[::1]:8443/'\n"
            "s3: {addressing: path, multipart_threshold: 5MiB, part_size: 5GiB,"
            " part_concurrency: 1, sign_payload: off, create_bucket: on}\n"
            "http: {max_connections: 0, connect_timeout: 1ms, io_timeout: 24h}\n"
            "workload: [{op: get, weight: 1}]\n",
            &c);
    assert_string_equal(c.net.endpoint, "HTTPS://[::1]:8443/");
    assert_false(c.net.virtual_host);
    assert_false(c.net.sign_payload);
    assert_true(c.net.create_bucket);
    assert_true(c.net.multipart_threshold == 5 * MiB);
    assert_true(c.net.part_size == 5 * 1024 * MiB);
    assert_int_equal(c.net.part_concurrency, 1);
    assert_int_equal(c.net.max_connections, 0);
    assert_true(c.net.connect_timeout_ns == 1000000ULL);
    assert_true(c.net.io_timeout_ns == 86400 * NS);
    wl_config_free(&c);

    load_ok("target: s3://b/\ns3:\nhttp: ~\nworkload: [{op: get, weight: 1}]\n", &c);
    assert_null(c.net.endpoint);
    assert_true(c.net.part_size == 16 * MiB);
    assert_true(c.net.io_timeout_ns == 30 * NS);
    wl_config_free(&c);

    /* an endpoint with only an s3:// op path, or only an s3:// base_uri, is fine */
    load_ok("endpoint: http://minio:9000\n"
            "workload: [{op: get, path: 's3://b/x', weight: 1}]\n",
            &c);
    wl_config_free(&c);
    load_ok("target: file:///tmp/x/\nendpoint: http://minio\n"
            "prepare: {ensure_objects: [{base_uri: 's3://b/p/', count: 1}]}\n",
            &c);
    wl_config_free(&c);
    /* an s3:// URI with its own host and no endpoint anywhere */
    load_ok("target: s3://10.0.0.1:9000/b/\n"
            "prepare: {ensure_objects: [{base_uri: 's3://10.0.0.1:9000/b/p/', count: 1}]}\n"
            "workload: [{op: get, path: 's3://10.0.0.2:9000/c/', weight: 1}]\n",
            &c);
    wl_config_free(&c);
    /* a per-entry endpoint does not conflict with the target's host */
    load_ok("target: s3://10.0.0.1:9000/b/\n"
            "prepare: {ensure_objects: [{base_uri: 's3://c/p/', count: 1,"
            " endpoint: 'http://10.0.0.2:9000'}]}\n"
            "workload: [{op: get, weight: 1}]\n",
            &c);
    wl_config_free(&c);
}

#define WL1 "workload: [{op: get, weight: 1}]\n"

static void test_net_errors(void **state)
{
    (void)state;
    /* endpoint values */
    load_bad1("target: s3://b/\nendpoint: ftp://x\n" WL1,
              "t.yaml:2:11: 'endpoint' must be an http:// or https:// URL such as "
              "http://127.0.0.1:9000 (got 'ftp://x')");
    load_bad1("target: s3://b/\nendpoint: 127.0.0.1:9000\n" WL1,
              "t.yaml:2:11: 'endpoint' must be an http:// or https:// URL such as "
              "http://127.0.0.1:9000 (got '127.0.0.1:9000')");
    load_bad1("target: s3://b/\nendpoint: http://h:9000/bucket\n" WL1,
              "t.yaml:2:11: 'endpoint' must not have a path; put the bucket in the s3:// URI "
              "(got 'http://h:9000/bucket')");
    load_bad1("target: s3://b/\nendpoint: 'http://h:0'\n" WL1,
              "t.yaml:2:11: 'endpoint' has no valid host[:port] such as 127.0.0.1:9000 "
              "(got 'http://h:0')");
    load_bad1("target: s3://b/\nendpoint: 'https://'\n" WL1,
              "t.yaml:2:11: 'endpoint' has no valid host[:port] such as 127.0.0.1:9000 "
              "(got 'https://')");
    load_bad1("target: s3://b/\nendpoint: {host: h}\n" WL1,
              "t.yaml:2:11: 'endpoint' must be a string, got a mapping");
    load_bad1("target: s3://b/\nendpoint:\n" WL1,
              "t.yaml:2:10: 'endpoint' needs a value (a string)");
    load_bad1("target: s3://b/\nendpiont: http://h:9000\n" WL1,
              "t.yaml:2:1: unknown key 'endpiont' at top level; did you mean 'endpoint'?");
    load_bad1("target: s3://b/\nhtpp: {}\n" WL1,
              "t.yaml:2:1: unknown key 'htpp' at top level; did you mean 'http'?");
    load_bad1("target: s3://b/\nS3: {}\n" WL1,
              "t.yaml:2:1: unknown key 'S3' at top level; did you mean 's3'?");
    load_bad1("target: s3://b/\ns3dlio_optimization: {enabled: true}\n" WL1,
              "t.yaml:2:1: 's3dlio_optimization' is not supported by this version of "
              "sai3bench-ctl yet");

    /* where an endpoint applies */
    load_bad1("target: file:///tmp/x/\nendpoint: http://127.0.0.1:9000\n" WL1,
              "t.yaml:2:1: 'endpoint' applies to s3://, az:// and gs:// URIs only; this config "
              "has none");
    load_bad1("endpoint: http://127.0.0.1:9000\n"
              "prepare: {ensure_objects: [{base_uri: 'file:///d/', count: 1}]}\n",
              "t.yaml:1:1: 'endpoint' applies to s3://, az:// and gs:// URIs only; this config "
              "has none");
    load_bad1("target: file:///tmp/x/\n"
              "prepare:\n"
              "  ensure_objects:\n"
              "    - {base_uri: 'file:///d/', count: 1, endpoint: 'http://h:9000'}\n" WL1,
              "t.yaml:4:42: 'endpoint' applies to s3://, az:// and gs:// URIs only; base_uri "
              "'file:///d/' is not one");
    /* az:// and gs:// take the endpoint too */
    {
        wl_config_t c;
        load_ok("target: az://devstoreaccount1/bench/run/\nendpoint: http://127.0.0.1:10000\n" WL1,
                &c);
        assert_string_equal(c.net.endpoint, "http://127.0.0.1:10000");
        wl_config_free(&c);
        load_ok("target: gs://bench/run/\nendpoint: http://127.0.0.1:9199\n" WL1, &c);
        wl_config_free(&c);
    }
    load_bad1("target: s3://h:9000/b/\nendpoint: http://127.0.0.1:9000\n" WL1,
              "t.yaml:1:9: 'target' 's3://h:9000/b/' names its endpoint in the URI, and the "
              "top-level 'endpoint' (line 2) gives one too; remove one");
    load_bad1("endpoint: http://127.0.0.1:9000\n"
              "workload: [{op: get, path: 's3://h:9000/b/x', weight: 1}]\n",
              "t.yaml:2:28: 'path' 's3://h:9000/b/x' names its endpoint in the URI, and the "
              "top-level 'endpoint' (line 1) gives one too; remove one");
    load_bad1("target: s3://b/\nendpoint: http://127.0.0.1:9000\n"
              "prepare: {ensure_objects: [{base_uri: 's3://h:9000/b/', count: 1}]}\n",
              "t.yaml:3:39: 'base_uri' 's3://h:9000/b/' names its endpoint in the URI, and the "
              "top-level 'endpoint' (line 2) gives one too; remove one");
    load_bad1("prepare:\n"
              "  ensure_objects:\n"
              "    - base_uri: s3://h:9000/b/\n"
              "      count: 1\n"
              "      endpoint: http://127.0.0.1:9000\n",
              "t.yaml:3:17: 'base_uri' 's3://h:9000/b/' names its endpoint in the URI, and "
              "this entry's 'endpoint' (line 5) gives one too; remove one");
    load_bad1("target: s3://b/\n"
              "prepare: {ensure_objects: [{base_uri: 's3://b/', count: 1, endpoint: 'h'}]}\n",
              "t.yaml:2:70: 'endpoint' must be an http:// or https:// URL such as "
              "http://127.0.0.1:9000 (got 'h')");
    load_bad1("target: s3://b/\n"
              "prepare: {ensure_objects: [{base_uri: 's3://b/', count: 1, endpont: 'h'}]}\n",
              "t.yaml:2:60: unknown key 'endpont' in ensure_objects entry; did you mean "
              "'endpoint'?");

    /* s3:// URIs as the storage layer reads them */
    load_bad1("target: s3://h:abc/b/\n" WL1,
              "t.yaml:1:9: 'target': bad endpoint \"h:abc\" in \"s3://h:abc/b/\" (expected "
              "s3://host:port/bucket/prefix/)");
    load_bad1("target: s3://h:9000/\n" WL1,
              "t.yaml:1:9: 'target': missing bucket after endpoint in \"s3://h:9000/\" "
              "(expected s3://host:port/bucket/prefix/)");

    /* s3: */
    load_bad1("target: s3://b/\ns3: {addressing: host}\n" WL1,
              "t.yaml:2:18: unknown addressing 'host' (expected path or virtual)");
    load_bad1("target: s3://b/\ns3: {addressing: virtal}\n" WL1,
              "t.yaml:2:18: unknown addressing 'virtal'; did you mean 'virtual'?");
    load_bad1("target: s3://b/\ns3: {sign_payload: maybe}\n" WL1,
              "t.yaml:2:20: 'sign_payload' must be true or false, got string 'maybe'");
    load_bad1("target: s3://b/\ns3: {create_bucket: 1}\n" WL1,
              "t.yaml:2:21: 'create_bucket' must be true or false, got number '1'");
    load_bad1("target: s3://b/\ns3: {multipart_threshold: 4MiB}\n" WL1,
              "t.yaml:2:27: 'multipart_threshold' must be at least 5 MiB (S3's minimum part "
              "size), got 4MiB");
    load_bad1("target: s3://b/\ns3: {multipart_threshold: lots}\n" WL1,
              "t.yaml:2:27: 'multipart_threshold': 'lots' is not a size: expected a number "
              "with an optional unit, such as 4096, 64KiB or 1.5GB");
    load_bad1("target: s3://b/\ns3: {part_size: 5000000}\n" WL1,
              "t.yaml:2:17: 'part_size' must be at least 5 MiB (S3's minimum part size), got "
              "5000000");
    load_bad1("target: s3://b/\ns3: {part_size: 5GiB1}\n" WL1,
              "t.yaml:2:17: 'part_size': '5GiB1' is not a size: unknown unit 'GiB1' (use B, KB, "
              "KiB, MB, MiB, ...)");
    load_bad1("target: s3://b/\ns3: {part_size: 6GB}\n" WL1,
              "t.yaml:2:17: 'part_size' must be at most 5 GiB (S3's maximum part size), got 6GB");
    load_bad1("target: s3://b/\ns3: {part_concurrency: 0}\n" WL1,
              "t.yaml:2:24: 'part_concurrency' must be at least 1, got 0");
    load_bad1("target: s3://b/\ns3: {part_concurrency: 257}\n" WL1,
              "t.yaml:2:24: 'part_concurrency' must be at most 256, got 257");
    load_bad1("target: s3://b/\ns3: {part_sise: 8MiB}\n" WL1,
              "t.yaml:2:6: unknown key 'part_sise' in s3; did you mean 'part_size'?");
    load_bad1("target: s3://b/\ns3: {region: us-east-1}\n" WL1,
              "t.yaml:2:6: unknown key 'region' in s3 (expected one of: addressing, "
              "sign_payload, create_bucket, multipart_threshold, part_size, part_concurrency)");
    load_bad1("target: s3://b/\ns3: [addressing]\n" WL1,
              "t.yaml:2:5: 's3' must be a mapping (addressing, sign_payload, "
              "multipart_threshold, ...), got a list");

    /* http: */
    load_bad1("target: s3://b/\nhttp: {max_connections: 4097}\n" WL1,
              "t.yaml:2:25: 'max_connections' must be at most 4096, got 4097");
    load_bad1("target: s3://b/\nhttp: {max_connections: -1}\n" WL1,
              "t.yaml:2:25: 'max_connections' must be at least 0, got -1");
    load_bad1("target: s3://b/\nhttp: {connect_timeout: 0s}\n" WL1,
              "t.yaml:2:25: 'connect_timeout' must be greater than 0");
    load_bad1("target: s3://b/\nhttp: {io_timeout: 0}\n" WL1,
              "t.yaml:2:20: 'io_timeout' must be greater than 0");
    load_bad1("target: s3://b/\nhttp: {io_timeout: 500us}\n" WL1,
              "t.yaml:2:20: 'io_timeout' must be at least 1ms, got 500us");
    load_bad1("target: s3://b/\nhttp: {io_timeout: 2d}\n" WL1,
              "t.yaml:2:20: 'io_timeout' must be at most 24h, got 2d");
    load_bad1("target: s3://b/\nhttp: {ca_bundle: ''}\n" WL1,
              "t.yaml:2:19: 'ca_bundle' needs a file name (a PEM file of CA certificates)");
    load_bad1("target: s3://b/\nhttp: {ca_bundle: [a, b]}\n" WL1,
              "t.yaml:2:19: 'ca_bundle' must be a string, got a list");
    load_bad1("target: s3://b/\nhttp: {insecure_skip_verify: please}\n" WL1,
              "t.yaml:2:30: 'insecure_skip_verify' must be true or false, got string 'please'");
    load_bad1("target: s3://b/\nhttp: {timeout: 5s}\n" WL1,
              "t.yaml:2:8: unknown key 'timeout' in http (expected one of: max_connections, "
              "connect_timeout, io_timeout, ca_bundle, insecure_skip_verify, version, h2_max_streams, "
              "h2_stream_window, h2_conn_window)");
    load_bad1("target: s3://b/\nhttp: {io_timout: 5s}\n" WL1,
              "t.yaml:2:8: unknown key 'io_timout' in http; did you mean 'io_timeout'?");
    load_bad1("target: s3://b/\nhttp: 5\n" WL1,
              "t.yaml:2:7: 'http' must be a mapping (max_connections, connect_timeout, "
              "io_timeout, ...), got number '5'");
}

static void test_diag_api(void **state)
{
    wl_config_t c;
    wl_diags_t d;
    char buf[256];
    (void)state;
    /* a missing file: -errno and one diagnostic at line 0 */
    wl_diags_init(&d);
    int rc = wl_config_load_file("/nonexistent/dir/x.yaml", &c, &d);
    assert_int_equal(rc, -ENOENT);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.v[0].line, 0);
    wl_diag_format(&d, 0, buf, sizeof(buf));
    assert_string_equal(buf,
                        "/nonexistent/dir/x.yaml: cannot read config: No such file or directory");
    wl_diag_format(&d, 5, buf, sizeof(buf));
    assert_string_equal(buf, "");
    wl_diags_free(&d);
    assert_null(c.target);

    /* a real file */
    wl_diags_init(&d);
    rc = wl_config_load_file(SRCDIR "/test/config-errors/01-unknown-top-key.yaml", &c, &d);
    assert_int_equal(rc, WL_ECONFIG);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.v[0].line, 2);
    assert_int_equal(d.v[0].col, 1);
    assert_string_equal(d.source, SRCDIR "/test/config-errors/01-unknown-top-key.yaml");
    wl_diags_free(&d);

    /* NULL diags are allowed */
    rc = wl_config_load_string("x", "a: 1", 4, &c, NULL);
    assert_int_equal(rc, WL_ECONFIG);
    rc = wl_config_load_string("x", "workload: [{op: get, path: 'file:///a', weight: 1}]", 51, &c,
                               NULL);
    assert_int_equal(rc, 0);
    assert_string_equal(c.source, "x");
    wl_config_free(&c);
    wl_config_free(&c); /* idempotent on a zeroed config */
}

/* ---------------------------------------------------------------- corpus ------------------- */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 4096;
            char *nb = realloc(buf, cap + 1);
            assert_non_null(nb);
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_corpus(void **state)
{
    const char *dir = SRCDIR "/test/config-errors";
    (void)state;
    DIR *dp = opendir(dir);
    assert_non_null(dp);
    char *names[512];
    size_t nn = 0;
    struct dirent *de;
    while ((de = readdir(dp)) && nn < 512) {
        size_t l = strlen(de->d_name);
        if (l > 5 && !strcmp(de->d_name + l - 5, ".yaml"))
            names[nn++] = strdup(de->d_name);
    }
    closedir(dp);
    qsort(names, nn, sizeof(names[0]), name_cmp);
    assert_true(nn >= 25);
    int failures = 0;
    for (size_t i = 0; i < nn; i++) {
        char path[1024], epath[1024];
        size_t len, elen;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        snprintf(epath, sizeof(epath), "%s/%.*s.expect", dir, (int)(strlen(names[i]) - 5),
                 names[i]);
        char *text = slurp(path, &len);
        char *want = slurp(epath, &elen);
        assert_non_null(text);
        if (!want) {
            print_error("%s: no .expect file\n", names[i]);
            failures++;
            free(text);
            continue;
        }
        wl_config_t c;
        wl_diags_t d;
        wl_diags_init(&d);
        int rc = wl_config_load_string(names[i], text, len, &c, &d);
        /* the actual output, one diagnostic per line */
        size_t cap = 256 + d.n * 1100, used = 0;
        char *got = malloc(cap);
        assert_non_null(got);
        got[0] = 0;
        for (size_t k = 0; k < d.n; k++) {
            wl_diag_format(&d, k, got + used, cap - used - 1);
            used += strlen(got + used);
            got[used++] = '\n';
            got[used] = 0;
        }
        if (rc != WL_ECONFIG || d.n == 0) {
            print_error("%s: expected WL_ECONFIG with diagnostics, got rc %d and %zu\n", names[i],
                        rc, d.n);
            failures++;
        } else if (strcmp(got, want)) {
            print_error("%s: diagnostics differ\n--- want\n%s--- got\n%s", names[i], want, got);
            failures++;
        }
        assert_null(c.ops);
        assert_null(c.prepare.ensure);
        wl_diags_free(&d);
        free(got);
        free(want);
        free(text);
        free(names[i]);
    }
    assert_int_equal(failures, 0);
}

/* ---------------------------------------------------------------- sizes and plan ----------- */

static void test_sizes(void **state)
{
    (void)state;
    wl_size_spec_t fx = {.kind = WL_SIZE_FIXED, .fixed = 4096};
    wl_size_spec_t un = {.kind = WL_SIZE_UNIFORM, .min = 1000, .max = 2000};
    wl_size_spec_t ln = {.kind = WL_SIZE_LOGNORMAL,
                         .min = 1024,
                         .max = 4 * MiB,
                         .mean = (double)MiB,
                         .std_dev = 512.0 * KiB};
    wl_rng_t r;
    wl_rng_seed(&r, 42);
    double sum = 0;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < 20000; i++) {
        assert_true(wl_size_sample(&fx, &r) == 4096);
        uint64_t u = wl_size_sample(&un, &r);
        assert_true(u >= 1000 && u <= 2000);
        if (u < lo)
            lo = u;
        if (u > hi)
            hi = u;
        uint64_t l = wl_size_sample(&ln, &r);
        assert_true(l >= 1024 && l <= 4 * MiB);
        sum += (double)l;
    }
    assert_true(lo == 1000 && hi == 2000); /* inclusive on both ends */
    double mean = sum / 20000.0;
    double est = wl_size_mean(&ln);
    assert_true(fabs(est - (double)MiB) < 0.02 * MiB); /* clamping barely moves it */
    assert_true(fabs(mean - est) < 0.03 * est);
    assert_true(wl_size_mean(&fx) == 4096.0);
    assert_true(wl_size_mean(&un) == 1500.0);

    /* clamped hard: mean far above max */
    wl_size_spec_t cl = {
        .kind = WL_SIZE_LOGNORMAL, .min = 1, .max = 1000, .mean = 1e6, .std_dev = 1.0};
    assert_true(fabs(wl_size_mean(&cl) - 1000.0) < 1e-6);
    assert_true(wl_size_sample(&cl, &r) == 1000);

    /* per-index sizes are a pure function of (seed, index) */
    for (uint64_t i = 0; i < 100; i++) {
        assert_true(wl_size_for_index(&un, 7, i) == wl_size_for_index(&un, 7, i));
        assert_true(wl_size_for_index(&fx, 7, i) == 4096);
    }
    int differ = 0;
    for (uint64_t i = 0; i < 100; i++)
        differ += wl_size_for_index(&un, 7, i) != wl_size_for_index(&un, 8, i);
    assert_true(differ > 50);

    wl_size_spec_t all = {.kind = WL_SIZE_UNIFORM, .min = 0, .max = UINT64_MAX};
    (void)wl_size_sample(&all, &r);

    assert_string_equal(wl_op_name(WL_OP_GET), "GET");
    assert_string_equal(wl_op_name(WL_OP_DELETE), "DELETE");
    assert_string_equal(wl_op_name(WL_OP_RMDIR), "RMDIR");
    assert_string_equal(wl_op_name(WL_OP__COUNT), "?");
}

static void test_plan(void **state)
{
    wl_config_t c;
    (void)state;
    load_ok("target: file:///abs/sai3-data/\n"
            "duration: 15s\n"
            "prepare:\n"
            "  cleanup: true\n"
            "  ensure_objects:\n"
            "    - {base_uri: 'file:///abs/sai3-data/data/', count: 1000,"
            " size_spec: {type: uniform, min: 4KiB, max: 64KiB}}\n"
            "    - {base_uri: 'file:///abs/sai3-data/big/', count: 200, size_spec: 1MiB}\n"
            "workload:\n"
            "  - {op: get, path: data/*, weight: 50}\n"
            "  - {op: put, path: new/, object_size: 16KiB, weight: 20}\n"
            "  - {op: stat, path: data/*, weight: 10}\n"
            "  - {op: list, path: data/, weight: 10}\n"
            "  - {op: delete, path: data/*, weight: 10}\n",
            &c);
    char *plan = wl_plan_format(&c, 2);
    assert_non_null(plan);
    static const char *const want[] = {
        "Plan for t.yaml\n",
        "  target:       file:///abs/sai3-data/\n",
        "  cores:        2   concurrency: 16 (8 per core)\n",
        "  duration:     15s   rate: unlimited\n",
        "Stages:\n",
        "  1. prepare   ensure 2 sets, 1,200 objects, 233.2 MiB total\n",
        "       file:///abs/sai3-data/data/  1,000 objects  size uniform 4 KiB\xe2\x80\x93"
        "64 KiB (mean 34 KiB)  fill random dedup 1 compress 1\n",
        "       file:///abs/sai3-data/big/  200 objects  size fixed 1 MiB  fill random dedup 1 "
        "compress 1\n",
        "  2. execute   15s, 5 ops:\n",
        "       GET      50.0%  file:///abs/sai3-data/data/*\n",
        "       PUT      20.0%  file:///abs/sai3-data/new/  size fixed 16 KiB\n",
        "       DELETE   10.0%  file:///abs/sai3-data/data/*\n",
        "  3. cleanup   remove 1,200 prepared objects (mode tolerant)\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(plan, want[i]))
            fail_msg("plan lacks:\n%s\nplan:\n%s", want[i], plan);
    free(plan);
    wl_config_free(&c);

    load_ok("duration: 5m\nconcurrency: 5\nio_rate: {iops: 500}\n"
            "prepare: {ensure_objects: [{base_uri: 's3://b/p/', count: 10,"
            " size_spec: {type: lognormal, mean: 1MiB, std_dev: 1KiB}}]}\n"
            "workload: [{op: rmdir, path: 'file:///x/d/', weight: 1, recursive: true}]\n",
            &c);
    plan = wl_plan_format(&c, 2);
    assert_non_null(plan);
    static const char *const want2[] = {
        "  target:       (none; ops use full URIs)\n",
        ("concurrency: 5 (2\xe2\x80\x93"
         "3 per core)\n"),
        "  duration:     5m   rate: 500 ops/s, exponential\n",
        "ensure 1 set, 10 objects, about 10",
        "RMDIR   100.0%  file:///x/d/  (recursive)\n",
        "  3. cleanup   (skipped: prepare.cleanup is false)\n",
    };
    for (size_t i = 0; i < sizeof(want2) / sizeof(want2[0]); i++)
        if (!strstr(plan, want2[i]))
            fail_msg("plan lacks:\n%s\nplan:\n%s", want2[i], plan);
    free(plan);
    wl_config_free(&c);
}

static void expect_in(const char *plan, const char *const *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strstr(plan, want[i]))
            fail_msg("plan lacks:\n%s\nplan:\n%s", want[i], plan);
}

static void test_plan_net(void **state)
{
    wl_config_t c;
    (void)state;
    load_ok(net_yaml, &c);
    char *plan = wl_plan_format(&c, 4);
    assert_non_null(plan);
    static const char *const want[] = {
        "  s3:           endpoint http://127.0.0.1:9000 (config), virtual-host style, signed "
        "payload, multipart >= 32 MiB in 5 MiB parts x256, buckets must exist\n",
        "  http:         4096 connections per core, connect 1.5s, I/O 2m, CA bundle "
        "/etc/ssl/minio-ca.pem, TLS certificates NOT verified\n",
        "       s3://other/p/  10 objects  size fixed 1 MiB  fill random dedup 1 compress 1"
        "  endpoint https://s3.example.com/\n",
        "       s3://bucket/q/  10 objects  size fixed 1 MiB  fill random dedup 1 compress 1\n",
    };
    expect_in(plan, want, sizeof(want) / sizeof(want[0]));
    free(plan);
    wl_config_free(&c);

    /* defaults; no config endpoint: AWS_ENDPOINT_URL, else AWS in AWS_REGION */
    load_ok("target: s3://b/\nworkload: [{op: get, weight: 1}]\n", &c);
    setenv("AWS_ENDPOINT_URL", "http://env-host:9000", 1);
    plan = wl_plan_format(&c, 1);
    assert_non_null(plan);
    static const char *const want2[] = {
        "  s3:           endpoint http://env-host:9000 (AWS_ENDPOINT_URL), path-style, "
        "UNSIGNED-PAYLOAD, multipart >= 64 MiB in 16 MiB parts x8\n",
        "  http:         connections automatic, connect 5s, I/O 30s\n",
    };
    expect_in(plan, want2, sizeof(want2) / sizeof(want2[0]));
    free(plan);
    unsetenv("AWS_ENDPOINT_URL");
    setenv("AWS_REGION", "eu-west-3", 1);
    plan = wl_plan_format(&c, 1);
    assert_non_null(plan);
    static const char *const want3[] = {
        "  s3:           endpoint https://s3.eu-west-3.amazonaws.com (AWS), path-style, ",
    };
    expect_in(plan, want3, 1);
    free(plan);
    unsetenv("AWS_REGION");
    wl_config_free(&c);

    /* every s3:// URI names its endpoint */
    load_ok("target: s3://10.0.0.1:9000/b/\nworkload: [{op: get, weight: 1}]\n", &c);
    plan = wl_plan_format(&c, 1);
    assert_non_null(plan);
    static const char *const want4[] = {"  s3:           endpoint per URI, path-style, "};
    expect_in(plan, want4, 1);
    free(plan);
    wl_config_free(&c);

    /* no s3:// URI: no s3/http lines */
    load_ok("target: file:///tmp/x/\nhttp: {max_connections: 8}\n"
            "workload: [{op: get, weight: 1}]\n",
            &c);
    plan = wl_plan_format(&c, 1);
    assert_non_null(plan);
    assert_null(strstr(plan, "  s3:"));
    assert_null(strstr(plan, "  http:"));
    free(plan);
    wl_config_free(&c);
}


/* distributed: every key parsed, defaults, the agent address forms. */
static void test_dist(void **state)
{
    (void)state;
    wl_config_t c;
    load_ok("target: s3://b/run/\n"
            "endpoint: http://127.0.0.1:9000\n"
            "workload: [{op: get, path: data/, weight: 1}]\n"
            "distributed:\n"
            "  agents:\n"
            "    - {address: 'h1:7000', id: a1, target_override: 's3://b/other/',\n"
            "       concurrency_override: 8, tls_fingerprint: 'sha256:AB'}\n"
            "    - h2\n"
            "    - {address: '[::1]:7762'}\n"
            "  shared_filesystem: false\n"
            "  start_delay: 500ms\n"
            "  on_agent_failure: abort\n"
            "  barrier: majority\n"
            "  barrier_timeout: 1m\n"
            "  path_template: 'agent-{id}/'\n"
            "  tls: {ca: /ca.pem, server_name: agents, client_cert: /c.pem, client_key: /k.pem}\n"
            "  auth_token_file: /tok\n"
            "  allow_plaintext_credentials: true\n"
            "  grpc_keepalive_interval: 1s\n"
            "  grpc_keepalive_timeout: 3s\n"
            "  agent_ready_timeout: 30s\n"
            "  connect_timeout: 2s\n"
            "  stages:\n"
            "    - {name: p, type: prepare, expected_objects: 10}\n"
            "    - {name: e, type: execute, duration: 5s, timeout: 1m, optional: true}\n"
            "    - {name: sh, type: custom, command: /bin/echo, args: [a, b], order: 3}\n"
            "    - {name: c, type: cleanup}\n",
            &c);
    const wl_dist_cfg_t *d = &c.dist;
    assert_true(d->present);
    assert_int_equal(d->nagents, 3);
    assert_string_equal(d->agents[0].host, "h1");
    assert_int_equal(d->agents[0].port, 7000);
    assert_string_equal(d->agents[0].id, "a1");
    assert_string_equal(d->agents[0].target_override, "s3://b/other/");
    assert_int_equal(d->agents[0].concurrency_override, 8);
    assert_string_equal(d->agents[0].tls_fingerprint, "sha256:AB");
    assert_string_equal(d->agents[1].host, "h2");
    assert_int_equal(d->agents[1].port, WL_AGENT_DEFAULT_PORT);
    assert_string_equal(d->agents[1].id, "agent-2");
    assert_string_equal(d->agents[2].host, "::1");
    assert_int_equal(d->agents[2].port, 7762);
    assert_int_equal(d->shared_filesystem, 0);
    assert_int_equal(d->start_delay_ns, NS / 2);
    assert_true(d->abort_on_agent_failure);
    assert_int_equal(d->barrier, WL_BARRIER_MAJORITY);
    assert_int_equal(d->barrier_timeout_ns, 60 * NS);
    assert_true(d->tls);
    assert_string_equal(d->tls_ca, "/ca.pem");
    assert_string_equal(d->tls_server_name, "agents");
    assert_string_equal(d->tls_client_key, "/k.pem");
    assert_string_equal(d->auth_token_file, "/tok");
    assert_true(d->allow_plaintext_credentials);
    assert_int_equal(d->keepalive_interval_ns, NS);
    assert_int_equal(d->keepalive_timeout_ns, 3 * NS);
    assert_int_equal(d->agent_ready_timeout_ns, 30 * NS);
    assert_int_equal(d->connect_timeout_ns, 2 * NS);
    assert_int_equal(d->nstages, 4);
    assert_int_equal(d->stages[0].type, WL_STAGE_PREPARE);
    assert_int_equal(d->stages[0].expected_objects, 10);
    assert_int_equal(d->stages[1].duration_ns, 5 * NS);
    assert_int_equal(d->stages[1].timeout_ns, 60 * NS);
    assert_true(d->stages[1].optional);
    assert_string_equal(d->stages[2].command, "/bin/echo");
    assert_int_equal(d->stages[2].nargs, 2);
    assert_string_equal(d->stages[2].args[1], "b");
    assert_int_equal(d->stages[3].type, WL_STAGE_CLEANUP);
    wl_config_free(&c);

    /* defaults; no distributed block */
    load_ok("target: file:///tmp/x/\nworkload: [{op: get, path: a, weight: 1}]\n", &c);
    assert_false(c.dist.present);
    assert_int_equal(c.dist.shared_filesystem, -1);
    assert_int_equal(c.dist.start_delay_ns, 2 * NS);
    assert_int_equal(c.dist.keepalive_interval_ns, 5 * NS);
    assert_int_equal(c.dist.keepalive_timeout_ns, 10 * NS);
    wl_config_free(&c);

    char host[64], err[200];
    int port;
    assert_int_equal(wl_agent_address_parse("10.0.0.1", host, sizeof(host), &port, err,
                                            sizeof(err)), 0);
    assert_string_equal(host, "10.0.0.1");
    assert_int_equal(port, 7761);
    assert_int_equal(wl_agent_address_parse("::1", host, sizeof(host), &port, err, sizeof(err)),
                     0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 7761);
    assert_int_equal(wl_agent_address_parse("[fe80::1]", host, sizeof(host), &port, err,
                                            sizeof(err)), 0);
    assert_string_equal(host, "fe80::1");
    assert_int_equal(wl_agent_address_parse("h:0", host, sizeof(host), &port, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(wl_agent_address_parse("h:x", host, sizeof(host), &port, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(wl_agent_address_parse(":80", host, sizeof(host), &port, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(wl_agent_address_parse("", host, sizeof(host), &port, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(wl_agent_address_parse("a b:1", host, sizeof(host), &port, err,
                                            sizeof(err)), -EINVAL);
}

/* One agent's view: overrides and the per-agent prefix move targets, sets and absolute paths. */
static void test_apply_agent(void **state)
{
    (void)state;
    static const char yaml[] = "target: file:///d/run/\n"
                               "concurrency: 4\n"
                               "prepare:\n"
                               "  ensure_objects:\n"
                               "    - {base_uri: 'file:///d/run/data/', count: 10}\n"
                               "    - {base_uri: 'file:///elsewhere', count: 10}\n"
                               "workload:\n"
                               "  - {op: get, path: 'file:///d/run/data/', weight: 1}\n"
                               "  - {op: get, path: 'file:///elsewhere/', weight: 1}\n"
                               "  - {op: put, path: 'new/', weight: 1, object_size: 1}\n"
                               "  - {op: stat, path: 'file:///other/x', weight: 1}\n";
    wl_config_t c;
    load_ok(yaml, &c);
    assert_int_equal(wl_config_apply_agent(&c, NULL, 0, "agent-a1/"), 0);
    assert_string_equal(c.target, "file:///d/run/agent-a1/");
    assert_int_equal(c.concurrency, 4);
    assert_string_equal(c.prepare.ensure[0].base_uri, "file:///d/run/agent-a1/data/");
    assert_string_equal(c.prepare.ensure[1].base_uri, "file:///elsewhere/agent-a1/");
    assert_string_equal(c.ops[0].path, "file:///d/run/agent-a1/data/");
    assert_string_equal(c.ops[1].path, "file:///elsewhere/agent-a1/");
    assert_string_equal(c.ops[2].path, "new/");
    assert_string_equal(c.ops[3].path, "file:///other/x");
    wl_config_free(&c);

    load_ok(yaml, &c);
    assert_int_equal(wl_config_apply_agent(&c, "file:///mnt/b", 32, NULL), 0);
    assert_string_equal(c.target, "file:///mnt/b/");
    assert_int_equal(c.concurrency, 32);
    assert_string_equal(c.prepare.ensure[0].base_uri, "file:///mnt/b/data/");
    assert_string_equal(c.prepare.ensure[1].base_uri, "file:///elsewhere/");
    assert_string_equal(c.ops[0].path, "file:///mnt/b/data/");
    assert_string_equal(c.ops[3].path, "file:///other/x");
    wl_config_free(&c);

    load_ok(yaml, &c);
    assert_int_equal(wl_config_apply_agent(&c, "file:///mnt/b/", 0, "agent-x/"), 0);
    assert_string_equal(c.target, "file:///mnt/b/agent-x/");
    assert_string_equal(c.prepare.ensure[0].base_uri, "file:///mnt/b/agent-x/data/");
    assert_string_equal(c.prepare.ensure[1].base_uri, "file:///elsewhere/agent-x/");
    wl_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),     cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_aliases),  cmocka_unit_test(test_single_errors),
        cmocka_unit_test(test_diag_api), cmocka_unit_test(test_corpus),
        cmocka_unit_test(test_sizes),    cmocka_unit_test(test_plan),
        cmocka_unit_test(test_net),      cmocka_unit_test(test_net_errors),
        cmocka_unit_test(test_plan_net), cmocka_unit_test(test_dist),
        cmocka_unit_test(test_apply_agent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
