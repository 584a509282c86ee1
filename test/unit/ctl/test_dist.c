/* The pure parts of the distributed controller (apps/ctl/dist_plan.c): agent and stage lists,
 * settings, the barrier rule, the merge of interval stats into live lines, the clock sample. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl.h"

#define S (1000000000ull)

static const char base_yaml[] = "target: file:///tmp/x/\n"
                                "duration: 10s\n"
                                "prepare:\n"
                                "  ensure_objects:\n"
                                "    - base_uri: file:///tmp/x/obj/\n"
                                "      count: 100\n"
                                "    - base_uri: file:///tmp/x/b/\n"
                                "      count: 20\n"
                                "  cleanup: true\n"
                                "workload:\n"
                                "  - op: get\n"
                                "    path: obj/*\n"
                                "    weight: 1\n";

static void load(const char *text, wl_config_t *c)
{
    wl_diags_t d;
    wl_diags_init(&d);
    int rc = wl_config_load_string("t.yaml", text, strlen(text), c, &d);
    if (rc) {
        char buf[512];
        for (size_t i = 0; i < d.n; i++) {
            wl_diag_format(&d, i, buf, sizeof(buf));
            fprintf(stderr, "%s\n", buf);
        }
    }
    wl_diags_free(&d);
    assert_int_equal(rc, 0);
}

static void load_with(const char *extra, wl_config_t *c)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s%s", base_yaml, extra);
    load(buf, c);
}

/* ------------------------------------------------------------------ stages --------------- */

static void check_types(const ctl_stage_t *v, size_t n, const wl_stage_type_t *want, size_t nw)
{
    assert_int_equal(n, nw);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(v[i].type, want[i]);
}

static void test_default_stages(void **state)
{
    (void)state;
    wl_config_t c;
    load_with("distributed:\n  agents: [\"h:1\"]\n", &c);
    ctl_opts_t o = {0};
    ctl_stage_t *v;
    size_t n;
    char err[256];

    assert_int_equal(ctl_dist_stages(&c, &o, &v, &n, err, sizeof(err)), 0);
    const wl_stage_type_t all[] = {WL_STAGE_PREPARE, WL_STAGE_EXECUTE, WL_STAGE_CLEANUP};
    check_types(v, n, all, 3);
    assert_string_equal(v[0].name, "prepare");
    assert_string_equal(v[1].name, "execute");
    assert_string_equal(v[2].name, "cleanup");
    assert_int_equal(v[0].expected_objects, 120);
    assert_int_equal(v[2].expected_objects, 120);
    assert_int_equal(v[1].duration_ns, 0); /* the config's duration */
    free(v);

    o.skip_prepare = 1;
    assert_int_equal(ctl_dist_stages(&c, &o, &v, &n, err, sizeof(err)), 0);
    const wl_stage_type_t ec[] = {WL_STAGE_EXECUTE, WL_STAGE_CLEANUP};
    check_types(v, n, ec, 2);
    free(v);

    memset(&o, 0, sizeof(o));
    o.prepare_only = 1;
    assert_int_equal(ctl_dist_stages(&c, &o, &v, &n, err, sizeof(err)), 0);
    const wl_stage_type_t p[] = {WL_STAGE_PREPARE};
    check_types(v, n, p, 1);
    free(v);

    memset(&o, 0, sizeof(o));
    o.no_cleanup = 1;
    assert_int_equal(ctl_dist_stages(&c, &o, &v, &n, err, sizeof(err)), 0);
    const wl_stage_type_t pe[] = {WL_STAGE_PREPARE, WL_STAGE_EXECUTE};
    check_types(v, n, pe, 2);
    free(v);

    memset(&o, 0, sizeof(o));
    o.cleanup_only = 1;
    assert_int_equal(ctl_dist_stages(&c, &o, &v, &n, err, sizeof(err)), 0);
    const wl_stage_type_t cl[] = {WL_STAGE_CLEANUP};
    check_types(v, n, cl, 1);
    free(v);
    wl_config_free(&c);
}

static void test_default_stages_no_prepare(void **state)
{
    (void)state;
    wl_config_t c;
    load("target: file:///tmp/x/\n"
         "workload:\n"
         "  - op: get\n"
         "    path: a\n"
         "    weight: 1\n"
         "distributed:\n"
         "  agents: [\"h:1\"]\n",
         &c);
    ctl_opts_t o = {0};
    ctl_stage_t *v;
    size_t n;
    char err[256];
    assert_int_equal(ctl_dist_stages(&c, &o, &v, &n, err, sizeof(err)), 0);
    const wl_stage_type_t e[] = {WL_STAGE_EXECUTE};
    check_types(v, n, e, 1);
    free(v);
    /* --prepare-only with nothing to prepare: nothing to run */
    o.prepare_only = 1;
    assert_int_equal(ctl_dist_stages(&c, &o, &v, &n, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "nothing to run"));
    wl_config_free(&c);
}

static void test_explicit_stages(void **state)
{
    (void)state;
    wl_config_t c;
    load_with("distributed:\n"
              "  agents: [\"h:1\"]\n"
              "  stages:\n"
              "    - {name: fill, type: prepare}\n"
              "    - {name: warm, type: execute, duration: 5s}\n"
              "    - {name: sync, type: custom, command: /bin/sync, args: [a, b]}\n"
              "    - {name: hot, type: execute}\n"
              "    - {name: wipe, type: cleanup, expected_objects: 7}\n",
              &c);
    ctl_opts_t o = {0};
    ctl_stage_t *v;
    size_t n;
    char err[256];
    assert_int_equal(ctl_dist_stages(&c, &o, &v, &n, err, sizeof(err)), 0);
    const wl_stage_type_t all[] = {WL_STAGE_PREPARE, WL_STAGE_EXECUTE, WL_STAGE_CUSTOM,
                                   WL_STAGE_EXECUTE, WL_STAGE_CLEANUP};
    check_types(v, n, all, 5);
    assert_string_equal(v[0].name, "fill");
    assert_int_equal(v[0].expected_objects, 120);
    assert_int_equal(v[1].duration_ns, 5 * S);
    assert_int_equal(v[3].duration_ns, 0);
    assert_string_equal(v[2].command, "/bin/sync");
    assert_int_equal(v[2].nargs, 2);
    assert_string_equal(v[2].args[1], "b");
    assert_int_equal(v[4].expected_objects, 7);
    free(v);

    o.skip_prepare = 1;
    o.no_cleanup = 1;
    assert_int_equal(ctl_dist_stages(&c, &o, &v, &n, err, sizeof(err)), 0);
    const wl_stage_type_t mid[] = {WL_STAGE_EXECUTE, WL_STAGE_CUSTOM, WL_STAGE_EXECUTE};
    check_types(v, n, mid, 3);
    free(v);
    wl_config_free(&c);
}

static void test_stage_errors(void **state)
{
    (void)state;
    wl_config_t c;
    load("target: file:///tmp/x/\n"
         "prepare:\n"
         "  ensure_objects:\n"
         "    - base_uri: file:///tmp/x/obj/\n"
         "      count: 10\n"
         "distributed:\n"
         "  agents: [\"h:1\"]\n"
         "  stages:\n"
         "    - {name: p, type: prepare}\n"
         "    - {name: e, type: execute}\n",
         &c);
    ctl_opts_t o = {0};
    ctl_stage_t *v = NULL;
    size_t n = 0;
    char err[256];
    assert_int_equal(ctl_dist_stages(&c, &o, &v, &n, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "'e'"));
    assert_non_null(strstr(err, "workload"));
    assert_null(v);
    wl_config_free(&c);

    load("target: file:///tmp/x/\n"
         "workload:\n"
         "  - {op: get, path: a, weight: 1}\n"
         "distributed:\n"
         "  agents: [\"h:1\"]\n"
         "  stages:\n"
         "    - {name: p, type: prepare}\n",
         &c);
    assert_int_equal(ctl_dist_stages(&c, &o, &v, &n, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "ensure_objects"));
    wl_config_free(&c);
}

/* ------------------------------------------------------------------ agents --------------- */

static void test_agents_flag(void **state)
{
    (void)state;
    wl_config_t c;
    load_with("distributed:\n"
              "  agents:\n"
              "    - {address: \"a:1\", id: alpha, target_override: \"file:///o/\", "
              "concurrency_override: 3}\n"
              "    - b\n",
              &c);
    ctl_agent_spec_t *v;
    size_t n;
    int replaced;
    char err[256];

    assert_int_equal(ctl_agent_specs(&c, NULL, &v, &n, &replaced, err, sizeof(err)), 0);
    assert_int_equal(n, 2);
    assert_int_equal(replaced, 0);
    assert_string_equal(v[0].id, "alpha");
    assert_string_equal(v[0].host, "a");
    assert_int_equal(v[0].port, 1);
    assert_string_equal(v[0].target_override, "file:///o/");
    assert_int_equal(v[0].concurrency_override, 3);
    assert_string_equal(v[1].id, "agent-2");
    assert_int_equal(v[1].port, WL_AGENT_DEFAULT_PORT);
    assert_null(v[1].target_override);
    ctl_agent_specs_free(v, n);

    assert_int_equal(
        ctl_agent_specs(&c, "127.0.0.1:17761, host2 ,[::1]:9", &v, &n, &replaced, err, sizeof(err)),
        0);
    assert_int_equal(replaced, 1);
    assert_int_equal(n, 3);
    assert_string_equal(v[0].id, "agent-1");
    assert_string_equal(v[0].host, "127.0.0.1");
    assert_int_equal(v[0].port, 17761);
    assert_string_equal(v[1].id, "agent-2");
    assert_string_equal(v[1].host, "host2");
    assert_int_equal(v[1].port, WL_AGENT_DEFAULT_PORT);
    assert_string_equal(v[2].host, "::1");
    assert_int_equal(v[2].port, 9);
    assert_null(v[0].target_override); /* --agents carries no overrides */
    ctl_agent_specs_free(v, n);

    assert_int_equal(ctl_agent_specs(&c, "h:99999", &v, &n, &replaced, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "--agents"));
    assert_int_equal(ctl_agent_specs(&c, " , ", &v, &n, &replaced, err, sizeof(err)), -EINVAL);
    wl_config_free(&c);

    /* no distributed block and no --agents */
    load(base_yaml, &c);
    assert_int_equal(ctl_agent_specs(&c, NULL, &v, &n, &replaced, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "no agents"));
    assert_int_equal(ctl_agent_specs(&c, "x:5", &v, &n, &replaced, err, sizeof(err)), 0);
    assert_int_equal(replaced, 0);
    ctl_agent_specs_free(v, n);
    wl_config_free(&c);
}

static void test_settings(void **state)
{
    (void)state;
    wl_config_t c;
    char err[256];
    load_with("distributed:\n  agents: [\"h:1\"]\n", &c);
    assert_int_equal(ctl_dist_shared_fs(&c), 0); /* file:// */
    assert_int_equal(ctl_dist_check(&c, err, sizeof(err)), 0);
    wl_config_free(&c);

    load_with("distributed:\n  agents: [\"h:1\"]\n  shared_filesystem: true\n"
              "  path_template: \"agent-{id}/\"\n",
              &c);
    assert_int_equal(ctl_dist_shared_fs(&c), 1);
    assert_int_equal(ctl_dist_check(&c, err, sizeof(err)), 0);
    wl_config_free(&c);

    load_with("distributed:\n  agents: [\"h:1\"]\n  path_template: \"host-{id}/\"\n", &c);
    assert_int_equal(ctl_dist_check(&c, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "path_template"));
    wl_config_free(&c);

    load("target: s3://bucket/p/\n"
         "endpoint: http://127.0.0.1:9000\n"
         "workload:\n"
         "  - {op: get, path: a, weight: 1}\n"
         "distributed:\n"
         "  agents: [\"h:1\"]\n",
         &c);
    assert_int_equal(ctl_dist_shared_fs(&c), 1);
    wl_config_free(&c);

    load("target: s3://bucket/p/\n"
         "endpoint: http://127.0.0.1:9000\n"
         "workload:\n"
         "  - {op: get, path: a, weight: 1}\n"
         "distributed:\n"
         "  agents: [\"h:1\"]\n"
         "  shared_filesystem: false\n",
         &c);
    assert_int_equal(ctl_dist_shared_fs(&c), 0);
    wl_config_free(&c);
}

static void test_describe(void **state)
{
    (void)state;
    wl_config_t c;
    load_with("distributed:\n  agents: [\"h:1\", \"g\"]\n  barrier: majority\n", &c);
    ctl_agent_spec_t *v;
    size_t n, ns;
    int replaced;
    char err[256];
    ctl_stage_t *st;
    ctl_opts_t o = {0};
    assert_int_equal(ctl_agent_specs(&c, NULL, &v, &n, &replaced, err, sizeof(err)), 0);
    assert_int_equal(ctl_dist_stages(&c, &o, &st, &ns, err, sizeof(err)), 0);
    char *t = ctl_dist_describe(&c, v, n, replaced, st, ns, "  transport: X\n");
    assert_non_null(t);
    assert_non_null(strstr(t, "2 agents"));
    assert_non_null(strstr(t, "agent-2"));
    assert_non_null(strstr(t, "g:7761"));
    assert_non_null(strstr(t, "majority"));
    assert_non_null(strstr(t, "transport: X"));
    assert_non_null(strstr(t, "1. prepare"));
    assert_non_null(strstr(t, "3. cleanup"));
    free(t);
    free(st);
    ctl_agent_specs_free(v, n);
    wl_config_free(&c);
}

/* ------------------------------------------------------------------ barrier -------------- */

static void test_barrier(void **state)
{
    (void)state;
    /* best_effort: everybody still in the run, at least one */
    assert_int_equal(ctl_barrier_eval(WL_BARRIER_BEST_EFFORT, 3, 2, 1, 0), CTL_BARRIER_WAIT);
    assert_int_equal(ctl_barrier_eval(WL_BARRIER_BEST_EFFORT, 3, 3, 0, 0), CTL_BARRIER_PASS);
    assert_int_equal(ctl_barrier_eval(WL_BARRIER_BEST_EFFORT, 3, 1, 0, 2), CTL_BARRIER_PASS);
    assert_int_equal(ctl_barrier_eval(WL_BARRIER_BEST_EFFORT, 3, 0, 0, 3), CTL_BARRIER_FAIL);
    /* all_or_nothing: any failure fails at once */
    assert_int_equal(ctl_barrier_eval(WL_BARRIER_ALL_OR_NOTHING, 3, 2, 1, 0), CTL_BARRIER_WAIT);
    assert_int_equal(ctl_barrier_eval(WL_BARRIER_ALL_OR_NOTHING, 3, 3, 0, 0), CTL_BARRIER_PASS);
    assert_int_equal(ctl_barrier_eval(WL_BARRIER_ALL_OR_NOTHING, 3, 1, 1, 1), CTL_BARRIER_FAIL);
    assert_int_equal(ctl_barrier_eval(WL_BARRIER_ALL_OR_NOTHING, 3, 2, 0, 1), CTL_BARRIER_FAIL);
    /* majority: more than half of all agents */
    assert_int_equal(ctl_barrier_eval(WL_BARRIER_MAJORITY, 4, 2, 1, 1), CTL_BARRIER_WAIT);
    assert_int_equal(ctl_barrier_eval(WL_BARRIER_MAJORITY, 4, 3, 0, 1), CTL_BARRIER_PASS);
    assert_int_equal(ctl_barrier_eval(WL_BARRIER_MAJORITY, 4, 2, 0, 2), CTL_BARRIER_FAIL);
    assert_int_equal(ctl_barrier_eval(WL_BARRIER_MAJORITY, 4, 1, 1, 2), CTL_BARRIER_FAIL);
    assert_int_equal(ctl_barrier_eval(WL_BARRIER_MAJORITY, 3, 2, 0, 1), CTL_BARRIER_PASS);
    assert_int_equal(ctl_barrier_eval(WL_BARRIER_MAJORITY, 1, 1, 0, 0), CTL_BARRIER_PASS);
    assert_string_equal(ctl_barrier_rule_name(WL_BARRIER_ALL_OR_NOTHING), "all_or_nothing");
}

/* ------------------------------------------------------------------ live merge ----------- */

static void ops(wl_stats_t *s, uint64_t n, uint64_t lat)
{
    wl_stats_reset(s);
    for (uint64_t i = 0; i < n; i++)
        wl_stats_record(s, WL_OP_GET, 4096, lat, 0);
}

static int add(ctl_live_t *l, size_t a, uint32_t st, uint64_t seq, const wl_stats_t *d, int last,
               uint64_t now)
{
    return ctl_live_add(l, a, st, seq, d, seq * S, S, (int64_t)(seq * S), 0, 0, 0, last, now);
}

static void test_live_complete(void **state)
{
    (void)state;
    ctl_live_t l;
    ctl_live_slot_t s;
    wl_stats_t d;
    wl_stats_init(&d);
    assert_int_equal(ctl_live_init(&l, 3, 2, 1500000000ull), 0);

    ops(&d, 10, 1000);
    assert_int_equal(add(&l, 0, 0, 1, &d, 0, 100), 0);
    ops(&d, 20, 3000);
    assert_int_equal(add(&l, 1, 0, 1, &d, 0, 110), 0);
    assert_int_equal(ctl_live_pop(&l, 120, -1, &s), 0); /* agent 2 missing */
    ops(&d, 5, 2000);
    assert_int_equal(add(&l, 1, 0, 2, &d, 0, 130), 0); /* seq 2 waits behind seq 1 */
    assert_int_equal(add(&l, 2, 0, 1, &d, 0, 140), 0);
    assert_int_equal(ctl_live_pop(&l, 150, -1, &s), 1);
    assert_int_equal(s.stage, 0);
    assert_int_equal(s.seq, 1);
    assert_int_equal(s.nfrom, 3);
    assert_int_equal(s.nexpected, 3);
    /* exact merge: 35 ops, histogram holds all of them */
    assert_int_equal(wl_stats_ops(&s.stats, WL_OP_GET), 35);
    wl_hist_t h;
    wl_hist_init(&h);
    wl_stats_op_hist(&s.stats, WL_OP_GET, -1, &h);
    assert_int_equal(h.total, 35);
    assert_int_equal(h.max, 3000);
    assert_int_equal(h.min, 1000);
    wl_hist_free(&h);
    ctl_live_slot_free(&s);
    assert_int_equal(ctl_live_pop(&l, 160, -1, &s), 0); /* seq 2: only agent 1 so far */
    /* a repeat of a delivered interval is ignored */
    assert_int_equal(add(&l, 1, 0, 2, &d, 0, 170), 1);
    /* a late interval of an interval already shown is ignored and counted */
    assert_int_equal(add(&l, 0, 0, 1, &d, 0, 180), 1);
    assert_int_equal(l.late, 1);
    ctl_live_free(&l);
    wl_stats_free(&d);
}

static void test_live_timeout_and_gone(void **state)
{
    (void)state;
    ctl_live_t l;
    ctl_live_slot_t s;
    wl_stats_t d;
    wl_stats_init(&d);
    const uint64_t W = 1500000000ull;
    assert_int_equal(ctl_live_init(&l, 2, 1, W), 0);
    ops(&d, 1, 100);
    assert_int_equal(add(&l, 0, 0, 1, &d, 0, 1000), 0);
    assert_int_equal(ctl_live_pop(&l, 1000 + W - 1, -1, &s), 0);
    assert_int_equal(ctl_live_pop(&l, 1000 + W, -1, &s), 1); /* 1.5 s after the first */
    assert_int_equal(s.nfrom, 1);
    assert_int_equal(s.nexpected, 2);
    ctl_live_slot_free(&s);

    /* an agent that leaves is not waited for */
    assert_int_equal(add(&l, 0, 0, 2, &d, 0, 5000), 0);
    assert_int_equal(ctl_live_pop(&l, 5001, -1, &s), 0);
    ctl_live_agent_gone(&l, 1);
    assert_int_equal(ctl_live_pop(&l, 5002, -1, &s), 1);
    assert_int_equal(s.nexpected, 1);
    ctl_live_slot_free(&s);
    /* and what it still sends is ignored */
    assert_int_equal(add(&l, 1, 0, 3, &d, 0, 6000), 1);
    assert_int_equal(ctl_live_pop(&l, 6001, INT64_MAX, &s), 0);
    ctl_live_free(&l);
    wl_stats_free(&d);
}

static void test_live_last_and_stages(void **state)
{
    (void)state;
    ctl_live_t l;
    ctl_live_slot_t s;
    wl_stats_t d;
    wl_stats_init(&d);
    assert_int_equal(ctl_live_init(&l, 2, 3, 1500000000ull), 0);
    ops(&d, 1, 100);
    /* agent 0 ends stage 0 at seq 2 (last); agent 1 runs to seq 3 */
    assert_int_equal(add(&l, 0, 0, 1, &d, 0, 10), 0);
    assert_int_equal(add(&l, 1, 0, 1, &d, 0, 11), 0);
    assert_int_equal(add(&l, 0, 0, 2, &d, 1, 12), 0);
    assert_int_equal(add(&l, 1, 0, 2, &d, 0, 13), 0);
    assert_int_equal(add(&l, 1, 0, 3, &d, 1, 14), 0);
    assert_int_equal(ctl_live_pop(&l, 15, -1, &s), 1);
    assert_int_equal(s.seq, 1);
    ctl_live_slot_free(&s);
    assert_int_equal(ctl_live_pop(&l, 15, -1, &s), 1);
    assert_int_equal(s.seq, 2);
    assert_int_equal(s.last, 1);
    ctl_live_slot_free(&s);
    /* seq 3: agent 0 ended at 2, so agent 1 alone completes it */
    assert_int_equal(ctl_live_pop(&l, 15, -1, &s), 1);
    assert_int_equal(s.seq, 3);
    assert_int_equal(s.nexpected, 1);
    ctl_live_slot_free(&s);

    /* stage 2 (skipping 1): an agent that moved on is not expected in older stages */
    assert_int_equal(add(&l, 0, 2, 1, &d, 0, 20), 0);
    ctl_live_agent_stage(&l, 1, 2);
    assert_int_equal(add(&l, 1, 1, 1, &d, 0, 21), 1); /* older stage than its current: ignored */
    assert_int_equal(ctl_live_pop(&l, 22, -1, &s), 0);
    assert_int_equal(add(&l, 1, 2, 1, &d, 0, 23), 0);
    assert_int_equal(ctl_live_pop(&l, 24, -1, &s), 1);
    assert_int_equal(s.stage, 2);
    assert_int_equal(s.nfrom, 2);
    ctl_live_slot_free(&s);

    /* force_upto pops a stage's slots whatever their state, in order */
    assert_int_equal(add(&l, 0, 2, 3, &d, 0, 30), 0);
    assert_int_equal(add(&l, 0, 2, 2, &d, 0, 31), 0);
    assert_int_equal(ctl_live_pop(&l, 32, 1, &s), 0);
    assert_int_equal(ctl_live_pop(&l, 32, 2, &s), 1);
    assert_int_equal(s.seq, 2);
    ctl_live_slot_free(&s);
    assert_int_equal(ctl_live_pop(&l, 32, 2, &s), 1);
    assert_int_equal(s.seq, 3);
    ctl_live_slot_free(&s);
    assert_int_equal(ctl_live_pop(&l, 32, 2, &s), 0);
    /* out of range */
    assert_int_equal(add(&l, 5, 0, 1, &d, 0, 40), 1);
    assert_int_equal(add(&l, 0, 9, 1, &d, 0, 40), 1);
    assert_int_equal(add(&l, 0, 2, 0, &d, 0, 40), 1);
    ctl_live_free(&l);
    wl_stats_free(&d);
}

/* ------------------------------------------------------------------ clock ---------------- */

static void test_clock(void **state)
{
    (void)state;
    int64_t off, rtt;
    /* agent 5 ms ahead, 2 ms each way, 1 ms inside the agent */
    int64_t t0 = 1000000000, t1 = t0 + 2000000 + 5000000, t2 = t1 + 1000000,
            t3 = t0 + 2000000 + 1000000 + 2000000;
    ctl_clock_sample(t0, t1, t2, t3, &off, &rtt);
    assert_int_equal(off, 5000000);
    assert_int_equal(rtt, 4000000);
    /* agent behind */
    ctl_clock_sample(100, 50, 60, 130, &off, &rtt);
    assert_int_equal(off, -60);
    assert_int_equal(rtt, 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_stages),
        cmocka_unit_test(test_default_stages_no_prepare),
        cmocka_unit_test(test_explicit_stages),
        cmocka_unit_test(test_stage_errors),
        cmocka_unit_test(test_agents_flag),
        cmocka_unit_test(test_settings),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_barrier),
        cmocka_unit_test(test_live_complete),
        cmocka_unit_test(test_live_timeout_and_gone),
        cmocka_unit_test(test_live_last_and_stages),
        cmocka_unit_test(test_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
