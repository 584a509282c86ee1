/* The sai3bench protocol as protobuf-c packs it: every message kind round-trips with every field,
 * histograms carried in OpStats merge exactly after the trip, damaged input is refused without
 * crashing, and messages from a newer peer (unknown fields, enum values, oneof cases) still
 * parse. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sai3bench.pb-c.h"
#include "wl/config.h"
#include "wl/hist.h"
#include "wl/stats.h"

/* ---- helpers ------------------------------------------------------------------------------- */

static uint8_t *pack_msg(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(m, buf), *len);
    return buf;
}

static ProtobufCMessage *unpack_msg(const ProtobufCMessageDescriptor *d, const uint8_t *buf,
                                    size_t len)
{
    return protobuf_c_message_unpack(d, NULL, len, buf);
}

/* Packs, unpacks, and checks that packing the result again gives the same bytes. */
static ProtobufCMessage *round_trip(const ProtobufCMessage *m)
{
    size_t len, len2;
    uint8_t *buf = pack_msg(m, &len);
    ProtobufCMessage *out = unpack_msg(m->descriptor, buf, len);
    assert_non_null(out);
    uint8_t *buf2 = pack_msg(out, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(buf, buf2, len);
    free(buf);
    free(buf2);
    return out;
}

/* Deterministic values: xorshift64*. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 2685821657736338717ull;
}

/* Serialized histogram in a malloc'd buffer; empty histogram = empty bytes (data NULL). */
static ProtobufCBinaryData hist_bytes(const wl_hist_t *h)
{
    ProtobufCBinaryData b = {0, NULL};
    if (!h->total)
        return b;
    size_t n = wl_hist_serialize(h, NULL, 0);
    b.data = malloc(n);
    assert_non_null(b.data);
    assert_int_equal(wl_hist_serialize(h, b.data, n), n);
    b.len = n;
    return b;
}

/* One wl_opstats_t as an OpStats, with all storage owned by this struct. */
typedef struct opstats_buf {
    Sai3bench__OpStats msg;
    Sai3bench__BucketStats b[WL_NBUCKETS];
    Sai3bench__BucketStats *bp[WL_NBUCKETS];
    Sai3bench__ErrorKind ek[WL_ERRKINDS];
    Sai3bench__ErrorKind *ekp[WL_ERRKINDS];
} opstats_buf_t;

static void opstats_from_wl(opstats_buf_t *o, wl_op_kind_t op, const wl_opstats_t *s)
{
    sai3bench__op_stats__init(&o->msg);
    o->msg.kind = (Sai3bench__OpKind)(op + 1);
    o->msg.buckets = o->bp;
    for (int b = 0; b < WL_NBUCKETS; b++) {
        if (!s->ops[b] && !s->lat[b].total)
            continue;
        Sai3bench__BucketStats *bs = &o->b[o->msg.n_buckets];
        sai3bench__bucket_stats__init(bs);
        bs->bucket = (uint32_t)b;
        bs->ops = s->ops[b];
        bs->bytes = s->bytes[b];
        bs->latency_hist = hist_bytes(&s->lat[b]);
        o->bp[o->msg.n_buckets++] = bs;
    }
    o->msg.sched_hist = hist_bytes(&s->lat_sched);
    o->msg.errors = s->errors;
    o->msg.retries = s->retries;
    o->msg.errors_other = s->err_other;
    o->msg.error_kinds = o->ekp;
    for (int i = 0; i < WL_ERRKINDS && s->errk[i].code; i++) {
        Sai3bench__ErrorKind *k = &o->ek[i];
        sai3bench__error_kind__init(k);
        k->code = s->errk[i].code;
        k->name = (char *)s->errk[i].name;
        k->count = s->errk[i].n;
        o->ekp[o->msg.n_error_kinds++] = k;
    }
}

static void opstats_buf_free(opstats_buf_t *o)
{
    for (size_t i = 0; i < o->msg.n_buckets; i++) free(o->b[i].latency_hist.data);
    free(o->msg.sched_hist.data);
}

/* OpStats list → wl_stats_t (initialised by the caller). Returns 0 or -EINVAL. */
static int wl_from_opstats(wl_stats_t *s, Sai3bench__OpStats *const *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const Sai3bench__OpStats *m = ops[i];
        if ((int)m->kind < 1 || (int)m->kind > (int)WL_OP__COUNT)
            return -EINVAL;
        wl_opstats_t *d = &s->op[m->kind - 1];
        for (size_t j = 0; j < m->n_buckets; j++) {
            const Sai3bench__BucketStats *b = m->buckets[j];
            if (b->bucket >= WL_NBUCKETS)
                return -EINVAL;
            d->ops[b->bucket] = b->ops;
            d->bytes[b->bucket] = b->bytes;
            if (b->latency_hist.len &&
                wl_hist_deserialize(&d->lat[b->bucket], b->latency_hist.data,
                                    b->latency_hist.len) != 0)
                return -EINVAL;
        }
        if (m->sched_hist.len &&
            wl_hist_deserialize(&d->lat_sched, m->sched_hist.data, m->sched_hist.len) != 0)
            return -EINVAL;
        d->errors = m->errors;
        d->retries = m->retries;
        d->err_other = m->errors_other;
        if (m->n_error_kinds > WL_ERRKINDS)
            return -EINVAL;
        for (size_t j = 0; j < m->n_error_kinds; j++) {
            d->errk[j].code = m->error_kinds[j]->code;
            snprintf(d->errk[j].name, sizeof(d->errk[j].name), "%s", m->error_kinds[j]->name);
            d->errk[j].n = m->error_kinds[j]->count;
        }
    }
    return 0;
}

/* ---- the enum mapping the protocol documents ---------------------------------------------- */

static void test_op_kind_mapping(void **state)
{
    (void)state;
    const ProtobufCEnumDescriptor *d = &sai3bench__op_kind__descriptor;
    assert_int_equal(d->n_values, WL_OP__COUNT + 1);
    for (int op = 0; op < WL_OP__COUNT; op++) {
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, op + 1);
        assert_non_null(v);
        char want[32];
        snprintf(want, sizeof(want), "OP_KIND_%s", wl_op_name((wl_op_kind_t)op));
        assert_string_equal(v->name, want);
    }
    assert_int_equal(SAI3BENCH__OP_KIND__OP_KIND_UNSPECIFIED, 0);
    assert_int_equal(sai3bench__agent_state__descriptor.n_values, 9);
    assert_int_equal(sai3bench__stage_type__descriptor.n_values, 7);
    /* The service as any gRPC client sees it: /sai3bench.Agent/Ping, /Run, /Abort. */
    const ProtobufCServiceDescriptor *sd = &sai3bench__agent__descriptor;
    assert_string_equal(sd->name, "sai3bench.Agent");
    assert_int_equal(sd->n_methods, 3);
    assert_non_null(protobuf_c_service_descriptor_get_method_by_name(sd, "Ping"));
    assert_non_null(protobuf_c_service_descriptor_get_method_by_name(sd, "Run"));
    assert_non_null(protobuf_c_service_descriptor_get_method_by_name(sd, "Abort"));
}

/* ---- Ping and Abort ------------------------------------------------------------------------ */

static void test_ping_round_trip(void **state)
{
    (void)state;
    Sai3bench__PingRequest rq = SAI3BENCH__PING_REQUEST__INIT;
    rq.controller_version = "0.1.0";
    rq.protocol_version = 1;
    rq.controller_send_unix_ns = 1736846400123456789ll;
    Sai3bench__PingRequest *rq2 = (Sai3bench__PingRequest *)round_trip(&rq.base);
    assert_string_equal(rq2->controller_version, "0.1.0");
    assert_int_equal(rq2->protocol_version, 1);
    assert_int_equal(rq2->controller_send_unix_ns, 1736846400123456789ll);
    sai3bench__ping_request__free_unpacked(rq2, NULL);

    char *schemes[] = {"file", "direct", "s3", "az", "gs"};
    Sai3bench__PingReply rp = SAI3BENCH__PING_REPLY__INIT;
    rp.version = "0.1.0";
    rp.protocol_version = 1;
    rp.hostname = "load-07.example.com";
    rp.cores = 96;
    rp.echo_controller_send_unix_ns = 1736846400123456789ll;
    rp.agent_recv_unix_ns = 1736846400124000000ll;
    rp.agent_send_unix_ns = 1736846400124000100ll;
    rp.busy = 1;
    rp.run_id = "sai3-20250114-0930-mixed";
    rp.state = SAI3BENCH__AGENT_STATE__AGENT_STATE_RUNNING;
    rp.agent_id = "agent-7";
    rp.platform = "Linux 6.1.0-18-amd64 x86_64";
    rp.n_schemes = 5;
    rp.schemes = schemes;
    rp.agent_start_unix_ns = 1736840000000000000ll;
    Sai3bench__PingReply *rp2 = (Sai3bench__PingReply *)round_trip(&rp.base);
    assert_string_equal(rp2->version, "0.1.0");
    assert_int_equal(rp2->protocol_version, 1);
    assert_string_equal(rp2->hostname, "load-07.example.com");
    assert_int_equal(rp2->cores, 96);
    assert_int_equal(rp2->echo_controller_send_unix_ns, 1736846400123456789ll);
    assert_int_equal(rp2->agent_recv_unix_ns, 1736846400124000000ll);
    assert_int_equal(rp2->agent_send_unix_ns, 1736846400124000100ll);
    assert_true(rp2->busy);
    assert_string_equal(rp2->run_id, "sai3-20250114-0930-mixed");
    assert_int_equal(rp2->state, SAI3BENCH__AGENT_STATE__AGENT_STATE_RUNNING);
    assert_string_equal(rp2->agent_id, "agent-7");
    assert_string_equal(rp2->platform, "Linux 6.1.0-18-amd64 x86_64");
    assert_int_equal(rp2->n_schemes, 5);
    for (int i = 0; i < 5; i++) assert_string_equal(rp2->schemes[i], schemes[i]);
    assert_int_equal(rp2->agent_start_unix_ns, 1736840000000000000ll);
    sai3bench__ping_reply__free_unpacked(rp2, NULL);

    /* A default (idle) reply packs to nothing and reads back as defaults. */
    Sai3bench__PingReply empty = SAI3BENCH__PING_REPLY__INIT;
    assert_int_equal(sai3bench__ping_reply__get_packed_size(&empty), 0);
    Sai3bench__PingReply *e2 = sai3bench__ping_reply__unpack(NULL, 0, (const uint8_t *)"");
    assert_non_null(e2);
    assert_string_equal(e2->hostname, "");
    assert_int_equal(e2->state, SAI3BENCH__AGENT_STATE__AGENT_STATE_UNSPECIFIED);
    assert_int_equal(e2->n_schemes, 0);
    sai3bench__ping_reply__free_unpacked(e2, NULL);
}

static void test_abort_round_trip(void **state)
{
    (void)state;
    Sai3bench__AbortRequest rq = SAI3BENCH__ABORT_REQUEST__INIT;
    rq.run_id = "sai3-20250114-0930-mixed";
    rq.reason = "Ctrl-C on controller";
    Sai3bench__AbortRequest *rq2 = (Sai3bench__AbortRequest *)round_trip(&rq.base);
    assert_string_equal(rq2->run_id, rq.run_id);
    assert_string_equal(rq2->reason, rq.reason);
    sai3bench__abort_request__free_unpacked(rq2, NULL);

    Sai3bench__AbortReply rp = SAI3BENCH__ABORT_REPLY__INIT;
    rp.aborted = 1;
    rp.run_id = "sai3-20250114-0930-mixed";
    rp.state = SAI3BENCH__AGENT_STATE__AGENT_STATE_ABORTED;
    Sai3bench__AbortReply *rp2 = (Sai3bench__AbortReply *)round_trip(&rp.base);
    assert_true(rp2->aborted);
    assert_string_equal(rp2->run_id, rp.run_id);
    assert_int_equal(rp2->state, SAI3BENCH__AGENT_STATE__AGENT_STATE_ABORTED);
    sai3bench__abort_reply__free_unpacked(rp2, NULL);
}

/* ---- controller → agent -------------------------------------------------------------------- */

static const char *const k_yaml =
    "target: s3://bench/data/\n"
    "duration: 30s\n"
    "concurrency: 64\n"
    "workload:\n"
    "  - op: get\n"
    "    path: \"prepared-*.dat\"\n"
    "    weight: 70\n"
    "  - op: put\n"
    "    object_size: 1MiB\n"
    "    weight: 30\n"
    "distributed:\n"
    "  agents:\n"
    "    - { address: \"10.0.0.7:7761\", id: agent-7 }\n";

/* A RunSpec with every field set; storage is static or on the caller's stack. */
typedef struct run_spec_buf {
    Sai3bench__ControllerMsg msg;
    Sai3bench__RunSpec rs;
    Sai3bench__RunSpec__EnvEntry env[3];
    Sai3bench__RunSpec__EnvEntry *envp[3];
    Sai3bench__StageSpec st[4];
    Sai3bench__StageSpec *stp[4];
} run_spec_buf_t;

static char *k_args[] = {"-c", "sync; echo 3 > /proc/sys/vm/drop_caches"};

static void run_spec_fill(run_spec_buf_t *b)
{
    sai3bench__controller_msg__init(&b->msg);
    sai3bench__run_spec__init(&b->rs);
    b->msg.body_case = SAI3BENCH__CONTROLLER_MSG__BODY_RUN_SPEC;
    b->msg.run_spec = &b->rs;
    Sai3bench__RunSpec *r = &b->rs;
    r->run_id = "sai3-20250114-0930-mixed";
    r->config_yaml = (char *)k_yaml;
    r->config_name = "mixed.yaml";
    r->agent_id = "agent-7";
    r->agent_index = 6;
    r->agent_count = 8;
    r->shared_filesystem = 1;
    r->target_override = "s3://10.0.0.20:9000/bench/data/";
    r->concurrency_override = 128;
    static const char *kv[3][2] = {{"AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"},
                                   {"AWS_SECRET_ACCESS_KEY", "s3cr3t/with+chars="},
                                   {"AZURE_STORAGE_ACCOUNT", "benchacct"}};
    for (int i = 0; i < 3; i++) {
        sai3bench__run_spec__env_entry__init(&b->env[i]);
        b->env[i].key = (char *)kv[i][0];
        b->env[i].value = (char *)kv[i][1];
        b->envp[i] = &b->env[i];
    }
    r->n_env = 3;
    r->env = b->envp;
    r->results_dir = "sai3-20250114-0930-mixed";
    static const Sai3bench__StageType types[4] = {
        SAI3BENCH__STAGE_TYPE__STAGE_TYPE_PREPARE, SAI3BENCH__STAGE_TYPE__STAGE_TYPE_CUSTOM,
        SAI3BENCH__STAGE_TYPE__STAGE_TYPE_EXECUTE, SAI3BENCH__STAGE_TYPE__STAGE_TYPE_CLEANUP};
    static const char *names[4] = {"prepare", "drop-caches", "execute", "cleanup"};
    for (int i = 0; i < 4; i++) {
        Sai3bench__StageSpec *s = &b->st[i];
        sai3bench__stage_spec__init(s);
        s->name = (char *)names[i];
        s->type = types[i];
        s->barrier = i != 3;
        s->timeout_ns = (uint64_t)(i + 1) * 600000000000ull;
        s->optional = i == 1;
        b->stp[i] = s;
    }
    b->st[0].expected_objects = 1000000;
    b->st[1].command = "/bin/sh";
    b->st[1].n_args = 2;
    b->st[1].args = k_args;
    b->st[2].duration_ns = 30000000000ull;
    r->n_stages = 4;
    r->stages = b->stp;
    r->interval_ns = 1000000000ull;
    r->seed = 0x5eed5eed5eed5eedull;
    r->clock_offset_ns = -1234567;
    r->clock_rtt_ns = 250000;
    r->protocol_version = 1;
}

static void run_spec_check(const Sai3bench__RunSpec *g, const Sai3bench__RunSpec *w)
{
    assert_string_equal(g->run_id, w->run_id);
    assert_string_equal(g->config_yaml, w->config_yaml);
    assert_string_equal(g->config_name, w->config_name);
    assert_string_equal(g->agent_id, w->agent_id);
    assert_int_equal(g->agent_index, w->agent_index);
    assert_int_equal(g->agent_count, w->agent_count);
    assert_int_equal(!!g->shared_filesystem, !!w->shared_filesystem);
    assert_string_equal(g->target_override, w->target_override);
    assert_int_equal(g->concurrency_override, w->concurrency_override);
    assert_int_equal(g->n_env, w->n_env);
    for (size_t i = 0; i < w->n_env; i++) {
        assert_string_equal(g->env[i]->key, w->env[i]->key);
        assert_string_equal(g->env[i]->value, w->env[i]->value);
    }
    assert_string_equal(g->results_dir, w->results_dir);
    assert_int_equal(g->n_stages, w->n_stages);
    for (size_t i = 0; i < w->n_stages; i++) {
        const Sai3bench__StageSpec *a = g->stages[i], *b = w->stages[i];
        assert_string_equal(a->name, b->name);
        assert_int_equal(a->type, b->type);
        assert_string_equal(a->command, b->command);
        assert_int_equal(a->n_args, b->n_args);
        for (size_t j = 0; j < b->n_args; j++) assert_string_equal(a->args[j], b->args[j]);
        assert_int_equal(a->duration_ns, b->duration_ns);
        assert_int_equal(!!a->barrier, !!b->barrier);
        assert_int_equal(a->timeout_ns, b->timeout_ns);
        assert_int_equal(!!a->optional, !!b->optional);
        assert_int_equal(a->expected_objects, b->expected_objects);
    }
    assert_int_equal(g->interval_ns, w->interval_ns);
    assert_int_equal(g->seed, w->seed);
    assert_int_equal(g->clock_offset_ns, w->clock_offset_ns);
    assert_int_equal(g->clock_rtt_ns, w->clock_rtt_ns);
    assert_int_equal(g->protocol_version, w->protocol_version);
}

static void test_run_spec_round_trip(void **state)
{
    (void)state;
    run_spec_buf_t b;
    run_spec_fill(&b);
    Sai3bench__ControllerMsg *m = (Sai3bench__ControllerMsg *)round_trip(&b.msg.base);
    assert_int_equal(m->body_case, SAI3BENCH__CONTROLLER_MSG__BODY_RUN_SPEC);
    run_spec_check(m->run_spec, &b.rs);
    assert_int_equal(m->run_spec->stages[1]->type, SAI3BENCH__STAGE_TYPE__STAGE_TYPE_CUSTOM);
    assert_string_equal(m->run_spec->stages[1]->command, "/bin/sh");
    assert_string_equal(m->run_spec->stages[0]->command, ""); /* unset string reads as "" */
    sai3bench__controller_msg__free_unpacked(m, NULL);
}

static void test_controller_small_round_trip(void **state)
{
    (void)state;
    Sai3bench__ControllerMsg m = SAI3BENCH__CONTROLLER_MSG__INIT;

    Sai3bench__StageStart ss = SAI3BENCH__STAGE_START__INIT;
    ss.stage_index = 2;
    ss.start_at_unix_ns = 1736846402000000000ll;
    m.body_case = SAI3BENCH__CONTROLLER_MSG__BODY_STAGE_START;
    m.stage_start = &ss;
    Sai3bench__ControllerMsg *g = (Sai3bench__ControllerMsg *)round_trip(&m.base);
    assert_int_equal(g->body_case, SAI3BENCH__CONTROLLER_MSG__BODY_STAGE_START);
    assert_int_equal(g->stage_start->stage_index, 2);
    assert_int_equal(g->stage_start->start_at_unix_ns, 1736846402000000000ll);
    sai3bench__controller_msg__free_unpacked(g, NULL);

    /* Stage 0 at once: a present but all-default sub-message still selects the oneof case. */
    Sai3bench__StageStart s0 = SAI3BENCH__STAGE_START__INIT;
    m.stage_start = &s0;
    g = (Sai3bench__ControllerMsg *)round_trip(&m.base);
    assert_int_equal(g->body_case, SAI3BENCH__CONTROLLER_MSG__BODY_STAGE_START);
    assert_non_null(g->stage_start);
    assert_int_equal(g->stage_start->stage_index, 0);
    assert_int_equal(g->stage_start->start_at_unix_ns, 0);
    sai3bench__controller_msg__free_unpacked(g, NULL);

    char *passed[] = {"agent-1", "agent-2", "agent-4"};
    char *dropped[] = {"agent-3"};
    Sai3bench__BarrierRelease br = SAI3BENCH__BARRIER_RELEASE__INIT;
    br.stage_index = 1;
    br.n_passed = 3;
    br.passed = passed;
    br.n_dropped = 1;
    br.dropped = dropped;
    m.body_case = SAI3BENCH__CONTROLLER_MSG__BODY_BARRIER_RELEASE;
    m.barrier_release = &br;
    g = (Sai3bench__ControllerMsg *)round_trip(&m.base);
    assert_int_equal(g->body_case, SAI3BENCH__CONTROLLER_MSG__BODY_BARRIER_RELEASE);
    assert_int_equal(g->barrier_release->stage_index, 1);
    assert_int_equal(g->barrier_release->n_passed, 3);
    for (int i = 0; i < 3; i++) assert_string_equal(g->barrier_release->passed[i], passed[i]);
    assert_int_equal(g->barrier_release->n_dropped, 1);
    assert_string_equal(g->barrier_release->dropped[0], "agent-3");
    sai3bench__controller_msg__free_unpacked(g, NULL);

    Sai3bench__AbortRun ab = SAI3BENCH__ABORT_RUN__INIT;
    ab.reason = "agent-3 failed (all_or_nothing)";
    m.body_case = SAI3BENCH__CONTROLLER_MSG__BODY_ABORT;
    m.abort = &ab;
    g = (Sai3bench__ControllerMsg *)round_trip(&m.base);
    assert_int_equal(g->body_case, SAI3BENCH__CONTROLLER_MSG__BODY_ABORT);
    assert_string_equal(g->abort->reason, ab.reason);
    sai3bench__controller_msg__free_unpacked(g, NULL);
}

/* ---- agent → controller -------------------------------------------------------------------- */

static void test_agent_small_round_trip(void **state)
{
    (void)state;
    Sai3bench__AgentMsg m = SAI3BENCH__AGENT_MSG__INIT;

    Sai3bench__StateChange sc = SAI3BENCH__STATE_CHANGE__INIT;
    sc.state = SAI3BENCH__AGENT_STATE__AGENT_STATE_FAILED;
    sc.stage_index = -1;
    sc.message = "mixed.yaml:3:14: concurrency must be > 0";
    sc.agent_unix_ns = 1736846401999999999ll;
    sc.results_path = "/tmp/sai3-20250114-0930-mixed-agent-7/";
    m.body_case = SAI3BENCH__AGENT_MSG__BODY_STATE_CHANGE;
    m.state_change = &sc;
    Sai3bench__AgentMsg *g = (Sai3bench__AgentMsg *)round_trip(&m.base);
    assert_int_equal(g->body_case, SAI3BENCH__AGENT_MSG__BODY_STATE_CHANGE);
    assert_int_equal(g->state_change->state, SAI3BENCH__AGENT_STATE__AGENT_STATE_FAILED);
    assert_int_equal(g->state_change->stage_index, -1);
    assert_string_equal(g->state_change->message, sc.message);
    assert_int_equal(g->state_change->agent_unix_ns, sc.agent_unix_ns);
    assert_string_equal(g->state_change->results_path, sc.results_path);
    sai3bench__agent_msg__free_unpacked(g, NULL);

    /* Every state value survives (including the last one). */
    for (int st = 0; st <= SAI3BENCH__AGENT_STATE__AGENT_STATE_ABORTED; st++) {
        sc.state = (Sai3bench__AgentState)st;
        sc.stage_index = st - 1;
        g = (Sai3bench__AgentMsg *)round_trip(&m.base);
        assert_int_equal(g->state_change->state, st);
        assert_int_equal(g->state_change->stage_index, st - 1);
        sai3bench__agent_msg__free_unpacked(g, NULL);
    }

    Sai3bench__ErrorReport er = SAI3BENCH__ERROR_REPORT__INIT;
    er.code = -30042;
    er.message = "PUT s3://bench/data/prepared-00000007.dat: HTTP 403 AccessDenied";
    er.stage_index = 0;
    er.fatal = 1;
    m.body_case = SAI3BENCH__AGENT_MSG__BODY_ERROR;
    m.error = &er;
    g = (Sai3bench__AgentMsg *)round_trip(&m.base);
    assert_int_equal(g->body_case, SAI3BENCH__AGENT_MSG__BODY_ERROR);
    assert_int_equal(g->error->code, -30042);
    assert_string_equal(g->error->message, er.message);
    assert_int_equal(g->error->stage_index, 0);
    assert_true(g->error->fatal);
    sai3bench__agent_msg__free_unpacked(g, NULL);
}

/* Records a reproducible mix into s: GETs and PUTs over several size buckets, metadata ops,
 * intended-start latencies, errors of a few kinds. */
static void record_mix(wl_stats_t *s, uint64_t seed, int n)
{
    uint64_t r = seed;
    static const uint64_t sizes[] = {0, 4096, 65536, 1 << 20, 8 << 20, 64ull << 20};
    for (int i = 0; i < n; i++) {
        uint64_t x = rng_next(&r);
        wl_op_kind_t op = (wl_op_kind_t)(x % WL_OP__COUNT);
        uint64_t bytes = (op == WL_OP_GET || op == WL_OP_PUT) ? sizes[(x >> 8) % 6] : 0;
        /* latencies spread over 6 decades: 500 ns .. ~0.5 s, some above 1 h (clamped) */
        uint64_t lat = 500 + (rng_next(&r) % (1ull << (10 + (x >> 16) % 20)));
        if ((x >> 40) % 1000 == 0)
            lat = WL_HIST_MAX_NS + 12345;
        uint64_t sched = (x >> 32) % 2 ? lat + (rng_next(&r) % 1000000) : 0;
        assert_int_equal(wl_stats_record(s, op, bytes, lat, sched), 0);
        if ((x >> 20) % 50 == 0) {
            static const char *kinds[] = {"SlowDown", "HTTP 503", ""};
            int k = (int)((x >> 24) % 3);
            wl_stats_error(s, op, -30000 - k, kinds[k]);
            s->op[op].retries++;
        }
    }
}

static void assert_hist_equal(const wl_hist_t *a, const wl_hist_t *b)
{
    assert_int_equal(a->total, b->total);
    assert_int_equal(a->sum, b->sum);
    assert_int_equal(a->clamped, b->clamped);
    if (!a->total)
        return;
    assert_int_equal(a->min, b->min);
    assert_int_equal(a->max, b->max);
    static const double qs[] = {0, 0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95,
                                0.99, 0.999, 0.9999, 1};
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
        assert_int_equal(wl_hist_quantile(a, qs[i]), wl_hist_quantile(b, qs[i]));
    /* The encoding is canonical: equal histograms serialize to equal bytes. */
    ProtobufCBinaryData x = hist_bytes(a), y = hist_bytes(b);
    assert_int_equal(x.len, y.len);
    assert_memory_equal(x.data, y.data, x.len);
    free(x.data);
    free(y.data);
}

static void assert_stats_equal(const wl_stats_t *a, const wl_stats_t *b)
{
    for (int o = 0; o < WL_OP__COUNT; o++) {
        const wl_opstats_t *x = &a->op[o], *y = &b->op[o];
        for (int k = 0; k < WL_NBUCKETS; k++) {
            assert_int_equal(x->ops[k], y->ops[k]);
            assert_int_equal(x->bytes[k], y->bytes[k]);
            assert_hist_equal(&x->lat[k], &y->lat[k]);
        }
        assert_hist_equal(&x->lat_sched, &y->lat_sched);
        assert_int_equal(x->errors, y->errors);
        assert_int_equal(x->retries, y->retries);
        assert_int_equal(x->err_other, y->err_other);
        for (int i = 0; i < WL_ERRKINDS; i++) {
            if (!x->errk[i].code)
                continue;
            int found = 0;
            for (int j = 0; j < WL_ERRKINDS; j++)
                if (y->errk[j].code == x->errk[i].code &&
                    strcmp(y->errk[j].name, x->errk[i].name) == 0) {
                    assert_int_equal(y->errk[j].n, x->errk[i].n);
                    found = 1;
                }
            assert_true(found);
        }
    }
}

/* An IntervalStats with every field set, carrying s. */
typedef struct interval_buf {
    Sai3bench__AgentMsg msg;
    Sai3bench__IntervalStats iv;
    Sai3bench__CpuUsage cpu;
    opstats_buf_t op[WL_OP__COUNT];
    Sai3bench__OpStats *opp[WL_OP__COUNT];
} interval_buf_t;

static void interval_fill(interval_buf_t *b, const wl_stats_t *s, uint64_t seq)
{
    sai3bench__agent_msg__init(&b->msg);
    sai3bench__interval_stats__init(&b->iv);
    sai3bench__cpu_usage__init(&b->cpu);
    b->msg.body_case = SAI3BENCH__AGENT_MSG__BODY_INTERVAL;
    b->msg.interval = &b->iv;
    b->iv.stage_index = 2;
    b->iv.seq = seq;
    b->iv.elapsed_ns = seq * 1000000000ull + 17;
    b->iv.interval_ns = 1000000017ull;
    b->iv.wall_unix_ns = 1736846403000000017ll;
    b->iv.ops = b->opp;
    for (int o = 0; o < WL_OP__COUNT; o++) {
        opstats_from_wl(&b->op[o], (wl_op_kind_t)o, &s->op[o]);
        b->opp[b->iv.n_ops++] = &b->op[o].msg;
    }
    b->iv.progress_done = 4242;
    b->iv.progress_total = 125000;
    b->iv.in_flight = 63;
    b->cpu.user_pct = 41.25f;
    b->cpu.system_pct = 12.5f;
    b->cpu.iowait_pct = 0.75f;
    b->iv.cpu = &b->cpu;
    b->iv.last = seq == 2;
}

static void interval_free(interval_buf_t *b)
{
    for (int o = 0; o < WL_OP__COUNT; o++) opstats_buf_free(&b->op[o]);
}

/* Two agents' intervals travel through pack/unpack; the controller's exact merge equals one
 * histogram that saw every value. */
static void test_interval_hist_exact_merge(void **state)
{
    (void)state;
    wl_stats_t a, b, all;
    wl_stats_init(&a);
    wl_stats_init(&b);
    wl_stats_init(&all);
    record_mix(&a, 0x1234567ull, 20000);
    record_mix(&b, 0x89abcdefull, 30000);
    record_mix(&all, 0x1234567ull, 20000);
    record_mix(&all, 0x89abcdefull, 30000);

    wl_stats_t merged;
    wl_stats_init(&merged);
    const wl_stats_t *src[2] = {&a, &b};
    for (int k = 0; k < 2; k++) {
        interval_buf_t ib;
        interval_fill(&ib, src[k], (uint64_t)k + 1);
        size_t len;
        uint8_t *buf = pack_msg(&ib.msg.base, &len);
        Sai3bench__AgentMsg *m = sai3bench__agent_msg__unpack(NULL, len, buf);
        assert_non_null(m);
        free(buf);
        assert_int_equal(m->body_case, SAI3BENCH__AGENT_MSG__BODY_INTERVAL);
        const Sai3bench__IntervalStats *iv = m->interval;
        assert_int_equal(iv->stage_index, 2);
        assert_int_equal(iv->seq, k + 1);
        assert_int_equal(iv->elapsed_ns, (uint64_t)(k + 1) * 1000000000ull + 17);
        assert_int_equal(iv->interval_ns, 1000000017ull);
        assert_int_equal(iv->wall_unix_ns, 1736846403000000017ll);
        assert_int_equal(iv->progress_done, 4242);
        assert_int_equal(iv->progress_total, 125000);
        assert_int_equal(iv->in_flight, 63);
        assert_non_null(iv->cpu);
        assert_true(iv->cpu->user_pct == 41.25f);
        assert_true(iv->cpu->system_pct == 12.5f);
        assert_true(iv->cpu->iowait_pct == 0.75f);
        assert_int_equal(!!iv->last, k == 1);
        assert_int_equal(iv->n_ops, WL_OP__COUNT);
        /* Field by field against the message we sent. */
        for (size_t o = 0; o < iv->n_ops; o++) {
            const Sai3bench__OpStats *x = iv->ops[o], *y = ib.opp[o];
            assert_int_equal(x->kind, y->kind);
            assert_int_equal(x->n_buckets, y->n_buckets);
            for (size_t j = 0; j < y->n_buckets; j++) {
                assert_int_equal(x->buckets[j]->bucket, y->buckets[j]->bucket);
                assert_int_equal(x->buckets[j]->ops, y->buckets[j]->ops);
                assert_int_equal(x->buckets[j]->bytes, y->buckets[j]->bytes);
                assert_int_equal(x->buckets[j]->latency_hist.len, y->buckets[j]->latency_hist.len);
                assert_memory_equal(x->buckets[j]->latency_hist.data,
                                    y->buckets[j]->latency_hist.data,
                                    y->buckets[j]->latency_hist.len);
            }
            assert_int_equal(x->sched_hist.len, y->sched_hist.len);
            if (y->sched_hist.len)
                assert_memory_equal(x->sched_hist.data, y->sched_hist.data, y->sched_hist.len);
            assert_int_equal(x->errors, y->errors);
            assert_int_equal(x->retries, y->retries);
            assert_int_equal(x->errors_other, y->errors_other);
            assert_int_equal(x->n_error_kinds, y->n_error_kinds);
            for (size_t j = 0; j < y->n_error_kinds; j++) {
                assert_int_equal(x->error_kinds[j]->code, y->error_kinds[j]->code);
                assert_string_equal(x->error_kinds[j]->name, y->error_kinds[j]->name);
                assert_int_equal(x->error_kinds[j]->count, y->error_kinds[j]->count);
            }
        }
        /* Decode, check it equals what the agent had, and merge into the controller's view. */
        wl_stats_t got;
        wl_stats_init(&got);
        assert_int_equal(wl_from_opstats(&got, iv->ops, iv->n_ops), 0);
        assert_stats_equal(&got, src[k]);
        assert_int_equal(wl_stats_merge(&merged, &got), 0);
        wl_stats_free(&got);
        sai3bench__agent_msg__free_unpacked(m, NULL);
        interval_free(&ib);
    }
    assert_stats_equal(&merged, &all);
    assert_int_equal(wl_stats_total_ops(&merged), 50000);

    /* The merged class histogram (what the live line shows) equals the direct one too. */
    for (int c = 0; c < WL_CLASS__COUNT; c++) {
        wl_hist_t hm, ha;
        wl_hist_init(&hm);
        wl_hist_init(&ha);
        assert_int_equal(wl_stats_class_hist(&merged, (wl_class_t)c, -1, &hm), 0);
        assert_int_equal(wl_stats_class_hist(&all, (wl_class_t)c, -1, &ha), 0);
        assert_true(ha.total > 0);
        assert_hist_equal(&hm, &ha);
        assert_true(wl_hist_mean(&hm) == wl_hist_mean(&ha));
        wl_hist_free(&hm);
        wl_hist_free(&ha);
    }
    wl_stats_free(&merged);
    wl_stats_free(&a);
    wl_stats_free(&b);
    wl_stats_free(&all);
}

/* Plain two-histogram case, spelled out: h1 + h2 across the wire == h_all. */
static void test_two_hist_merge(void **state)
{
    (void)state;
    wl_hist_t h1, h2, hall;
    wl_hist_init(&h1);
    wl_hist_init(&h2);
    wl_hist_init(&hall);
    uint64_t r = 42;
    for (int i = 0; i < 100000; i++) {
        uint64_t v = 1 + rng_next(&r) % 50000000ull; /* up to 50 ms */
        assert_int_equal(wl_hist_record(i % 3 ? &h1 : &h2, v), 0);
        assert_int_equal(wl_hist_record(&hall, v), 0);
    }
    wl_hist_t *hs[2] = {&h1, &h2};
    wl_hist_t merged;
    wl_hist_init(&merged);
    for (int k = 0; k < 2; k++) {
        Sai3bench__BucketStats bs = SAI3BENCH__BUCKET_STATS__INIT;
        Sai3bench__BucketStats *bsp = &bs;
        Sai3bench__OpStats os = SAI3BENCH__OP_STATS__INIT;
        Sai3bench__OpStats *osp = &os;
        Sai3bench__IntervalStats iv = SAI3BENCH__INTERVAL_STATS__INIT;
        Sai3bench__AgentMsg m = SAI3BENCH__AGENT_MSG__INIT;
        bs.bucket = 4;
        bs.ops = hs[k]->total;
        bs.latency_hist = hist_bytes(hs[k]);
        os.kind = SAI3BENCH__OP_KIND__OP_KIND_GET;
        os.n_buckets = 1;
        os.buckets = &bsp;
        iv.n_ops = 1;
        iv.ops = &osp;
        iv.seq = 7;
        m.body_case = SAI3BENCH__AGENT_MSG__BODY_INTERVAL;
        m.interval = &iv;
        size_t len;
        uint8_t *buf = pack_msg(&m.base, &len);
        free(bs.latency_hist.data);
        Sai3bench__AgentMsg *g = sai3bench__agent_msg__unpack(NULL, len, buf);
        free(buf);
        assert_non_null(g);
        const Sai3bench__BucketStats *gb = g->interval->ops[0]->buckets[0];
        wl_hist_t h;
        wl_hist_init(&h);
        assert_int_equal(wl_hist_deserialize(&h, gb->latency_hist.data, gb->latency_hist.len), 0);
        assert_int_equal(h.total, gb->ops);
        assert_int_equal(wl_hist_merge(&merged, &h), 0);
        wl_hist_free(&h);
        sai3bench__agent_msg__free_unpacked(g, NULL);
    }
    assert_int_equal(merged.total, 100000);
    assert_hist_equal(&merged, &hall);
    wl_hist_free(&merged);
    wl_hist_free(&h1);
    wl_hist_free(&h2);
    wl_hist_free(&hall);
}

static void test_stage_summary_round_trip(void **state)
{
    (void)state;
    wl_stats_t s;
    wl_stats_init(&s);
    record_mix(&s, 777, 5000);
    opstats_buf_t ob[WL_OP__COUNT];
    Sai3bench__OpStats *obp[WL_OP__COUNT];
    for (int o = 0; o < WL_OP__COUNT; o++) {
        opstats_from_wl(&ob[o], (wl_op_kind_t)o, &s.op[o]);
        obp[o] = &ob[o].msg;
    }
    Sai3bench__PrepareCounts pc = SAI3BENCH__PREPARE_COUNTS__INIT;
    pc.created = 90000;
    pc.existed = 10000;
    pc.failed = 3;
    pc.bytes = 90000ull << 20;
    Sai3bench__CpuUsage cpu = SAI3BENCH__CPU_USAGE__INIT;
    cpu.user_pct = 55.5f;
    cpu.system_pct = 20.25f;
    cpu.iowait_pct = 3.0f;
    Sai3bench__StageSummary ss = SAI3BENCH__STAGE_SUMMARY__INIT;
    ss.stage_index = 0;
    ss.stage_name = "prepare";
    ss.wall_ns = 123456789012ull;
    ss.n_ops = WL_OP__COUNT;
    ss.ops = obp;
    ss.prepare = &pc;
    ss.start_unix_ns = 1736846402000000000ll;
    ss.end_unix_ns = 1736846525456789012ll;
    ss.partial = 1;
    ss.cpu = &cpu;
    ss.exit_code = -1;
    ss.output_tail = "3 objects failed: AccessDenied\n";
    Sai3bench__AgentMsg m = SAI3BENCH__AGENT_MSG__INIT;
    m.body_case = SAI3BENCH__AGENT_MSG__BODY_SUMMARY;
    m.summary = &ss;

    Sai3bench__AgentMsg *g = (Sai3bench__AgentMsg *)round_trip(&m.base);
    assert_int_equal(g->body_case, SAI3BENCH__AGENT_MSG__BODY_SUMMARY);
    const Sai3bench__StageSummary *x = g->summary;
    assert_int_equal(x->stage_index, 0);
    assert_string_equal(x->stage_name, "prepare");
    assert_int_equal(x->wall_ns, 123456789012ull);
    assert_int_equal(x->n_ops, WL_OP__COUNT);
    assert_non_null(x->prepare);
    assert_int_equal(x->prepare->created, 90000);
    assert_int_equal(x->prepare->existed, 10000);
    assert_int_equal(x->prepare->failed, 3);
    assert_int_equal(x->prepare->bytes, 90000ull << 20);
    assert_int_equal(x->start_unix_ns, ss.start_unix_ns);
    assert_int_equal(x->end_unix_ns, ss.end_unix_ns);
    assert_true(x->partial);
    assert_non_null(x->cpu);
    assert_true(x->cpu->user_pct == 55.5f);
    assert_true(x->cpu->system_pct == 20.25f);
    assert_true(x->cpu->iowait_pct == 3.0f);
    assert_int_equal(x->exit_code, -1);
    assert_string_equal(x->output_tail, ss.output_tail);
    wl_stats_t got;
    wl_stats_init(&got);
    assert_int_equal(wl_from_opstats(&got, x->ops, x->n_ops), 0);
    assert_stats_equal(&got, &s);
    wl_stats_free(&got);
    sai3bench__agent_msg__free_unpacked(g, NULL);

    /* Without prepare counts or cpu the sub-messages stay absent (NULL), not zeroed. */
    ss.prepare = NULL;
    ss.cpu = NULL;
    g = (Sai3bench__AgentMsg *)round_trip(&m.base);
    assert_null(g->summary->prepare);
    assert_null(g->summary->cpu);
    sai3bench__agent_msg__free_unpacked(g, NULL);

    for (int o = 0; o < WL_OP__COUNT; o++) opstats_buf_free(&ob[o]);
    wl_stats_free(&s);
}

/* ---- damaged input ------------------------------------------------------------------------- */

/* Every truncation of a packed ControllerMsg{RunSpec} cuts inside the length-delimited RunSpec
 * and must be refused; a bare RunSpec cut at a field boundary is a valid shorter message
 * (protobuf has no end marker), so there the check is "refused, or exactly the prefix". */
static void test_truncated(void **state)
{
    (void)state;
    run_spec_buf_t b;
    run_spec_fill(&b);
    size_t len;
    uint8_t *full = pack_msg(&b.msg.base, &len);
    assert_true(len > 500);
    for (size_t n = 1; n < len; n++) {
        uint8_t *cut = malloc(n); /* exact size so valgrind sees any overread */
        memcpy(cut, full, n);
        Sai3bench__ControllerMsg *m = sai3bench__controller_msg__unpack(NULL, n, cut);
        assert_null(m);
        free(cut);
    }
    /* Zero bytes is a valid empty message with no body: the agent must treat it as a protocol
     * error (first message is not a RunSpec). */
    Sai3bench__ControllerMsg *m0 = sai3bench__controller_msg__unpack(NULL, 0, full);
    assert_non_null(m0);
    assert_int_equal(m0->body_case, SAI3BENCH__CONTROLLER_MSG__BODY__NOT_SET);
    sai3bench__controller_msg__free_unpacked(m0, NULL);
    free(full);

    uint8_t *rs = pack_msg(&b.rs.base, &len);
    size_t refused = 0, prefixes = 0;
    for (size_t n = 0; n < len; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, rs, n);
        Sai3bench__RunSpec *r = sai3bench__run_spec__unpack(NULL, n, cut);
        if (!r) {
            refused++;
        } else {
            size_t l2;
            uint8_t *again = pack_msg(&r->base, &l2);
            assert_int_equal(l2, n);
            assert_memory_equal(again, rs, n);
            free(again);
            prefixes++;
            sai3bench__run_spec__free_unpacked(r, NULL);
        }
        free(cut);
    }
    /* The fill sets every field: 15 scalar/string fields, 3 env entries and 4 stages are 22
     * top-level entries, so the valid prefixes are the empty one and the 21 ending after each
     * entry but the last. */
    assert_int_equal(prefixes, 22);
    assert_int_equal(refused + prefixes, len);
    free(rs);
}

static void test_corrupted(void **state)
{
    (void)state;
    /* Hand-made bad inputs that must be refused. */
    static const struct {
        const char *what;
        uint8_t b[16];
        size_t n;
    } bad[] = {
        {"varint longer than 10 bytes",
         {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 12},
        {"run_spec length beyond the buffer", {0x0a, 0x7f, 0x0a, 0x01, 'x'}, 5},
        {"huge length", {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, 6},
        {"run_spec sent as varint (wrong wire type)", {0x08, 0x01}, 2},
        {"field number 0", {0x00, 0x01}, 2},
        {"end group without start", {0x0c}, 1},
        {"wire type 7", {0x0f}, 1},
        {"stage_start.stage_index as length-delimited", {0x12, 0x03, 0x0a, 0x01, 'x'}, 5},
        {"nested string length beyond nested message", {0x0a, 0x03, 0x0a, 0x05, 'a'}, 5},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t *buf = malloc(bad[i].n);
        memcpy(buf, bad[i].b, bad[i].n);
        Sai3bench__ControllerMsg *m = sai3bench__controller_msg__unpack(NULL, bad[i].n, buf);
        if (m)
            fail_msg("accepted: %s", bad[i].what);
        free(buf);
    }

    /* Random damage to a packed IntervalStats: never crashes; whatever parses is freed, and
     * histogram bytes that parse are checked by wl_hist_deserialize before use. */
    wl_stats_t s;
    wl_stats_init(&s);
    record_mix(&s, 99, 3000);
    interval_buf_t ib;
    interval_fill(&ib, &s, 1);
    size_t len;
    uint8_t *orig = pack_msg(&ib.msg.base, &len);
    uint64_t r = 2024;
    int parsed = 0, refused = 0;
    wl_stats_t got; /* reused: histograms keep their counts arrays across iterations */
    wl_stats_init(&got);
    for (int it = 0; it < 3000; it++) {
        uint8_t *buf = malloc(len);
        memcpy(buf, orig, len);
        int flips = 1 + (int)(rng_next(&r) % 4);
        for (int f = 0; f < flips; f++) {
            size_t at = rng_next(&r) % len;
            switch (rng_next(&r) % 3) {
            case 0: buf[at] ^= (uint8_t)(1u << (rng_next(&r) % 8)); break;
            case 1: buf[at] = 0xff; break;
            default: buf[at] = (uint8_t)rng_next(&r); break;
            }
        }
        Sai3bench__AgentMsg *m = sai3bench__agent_msg__unpack(NULL, len, buf);
        if (!m) {
            refused++;
        } else {
            parsed++;
            if (m->body_case == SAI3BENCH__AGENT_MSG__BODY_INTERVAL) {
                wl_stats_reset(&got);
                (void)wl_from_opstats(&got, m->interval->ops, m->interval->n_ops);
            }
            sai3bench__agent_msg__free_unpacked(m, NULL);
        }
        free(buf);
    }
    assert_true(refused > 0);
    assert_true(parsed > 0); /* e.g. flips inside histogram bytes or counters */
    wl_stats_free(&got);
    free(orig);
    interval_free(&ib);
    wl_stats_free(&s);
}

/* ---- forward compatibility ----------------------------------------------------------------- */

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

/* Unknown fields appended by a newer peer: varint, fixed64, length-delimited and fixed32, with
 * high field numbers up to the maximum (2^29 - 1). */
static size_t append_unknown(uint8_t *p)
{
    size_t n = 0;
    n += put_varint(p + n, (1000ull << 3) | 0);
    n += put_varint(p + n, 123456789);
    n += put_varint(p + n, (4242ull << 3) | 1);
    memcpy(p + n, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    n += 8;
    n += put_varint(p + n, (536870911ull << 3) | 2);
    n += put_varint(p + n, 6);
    memcpy(p + n, "future", 6);
    n += 6;
    n += put_varint(p + n, (77777ull << 3) | 5);
    memcpy(p + n, "\xde\xad\xbe\xef", 4);
    n += 4;
    return n;
}

static void test_unknown_fields(void **state)
{
    (void)state;
    run_spec_buf_t b;
    run_spec_fill(&b);

    /* Unknown fields inside the RunSpec, which sits inside the ControllerMsg. */
    size_t rlen;
    uint8_t *rs = pack_msg(&b.rs.base, &rlen);
    uint8_t *inner = malloc(rlen + 64);
    memcpy(inner, rs, rlen);
    size_t ilen = rlen + append_unknown(inner + rlen);
    uint8_t *outer = malloc(ilen + 128);
    size_t olen = 0;
    outer[olen++] = 0x0a; /* field 1 (run_spec), length-delimited */
    olen += put_varint(outer + olen, ilen);
    memcpy(outer + olen, inner, ilen);
    olen += ilen;
    /* ... and at the top level. */
    olen += append_unknown(outer + olen);
    Sai3bench__ControllerMsg *m = sai3bench__controller_msg__unpack(NULL, olen, outer);
    assert_non_null(m);
    assert_int_equal(m->body_case, SAI3BENCH__CONTROLLER_MSG__BODY_RUN_SPEC);
    run_spec_check(m->run_spec, &b.rs);
    assert_int_equal(m->run_spec->base.n_unknown_fields, 4);
    assert_int_equal(m->base.n_unknown_fields, 4);
    /* Re-packing keeps the unknown fields (a relay would not lose them). */
    assert_int_equal(sai3bench__controller_msg__get_packed_size(m), olen);
    sai3bench__controller_msg__free_unpacked(m, NULL);

    /* A message made only of a future oneof case: parses, body not set. */
    uint8_t fut[16];
    size_t flen = put_varint(fut, (9ull << 3) | 2);
    fut[flen++] = 2;
    fut[flen++] = 0x08;
    fut[flen++] = 0x01;
    Sai3bench__ControllerMsg *mf = sai3bench__controller_msg__unpack(NULL, flen, fut);
    assert_non_null(mf);
    assert_int_equal(mf->body_case, SAI3BENCH__CONTROLLER_MSG__BODY__NOT_SET);
    sai3bench__controller_msg__free_unpacked(mf, NULL);

    /* An enum value from a newer version (proto3 enums are open) is kept as its number. */
    Sai3bench__StateChange sc = SAI3BENCH__STATE_CHANGE__INIT;
    sc.state = (Sai3bench__AgentState)42;
    sc.stage_index = 3;
    Sai3bench__AgentMsg am = SAI3BENCH__AGENT_MSG__INIT;
    am.body_case = SAI3BENCH__AGENT_MSG__BODY_STATE_CHANGE;
    am.state_change = &sc;
    Sai3bench__AgentMsg *g = (Sai3bench__AgentMsg *)round_trip(&am.base);
    assert_int_equal(g->state_change->state, 42);
    assert_int_equal(g->state_change->stage_index, 3);
    sai3bench__agent_msg__free_unpacked(g, NULL);

    free(outer);
    free(inner);
    free(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_op_kind_mapping),
        cmocka_unit_test(test_ping_round_trip),
        cmocka_unit_test(test_abort_round_trip),
        cmocka_unit_test(test_run_spec_round_trip),
        cmocka_unit_test(test_controller_small_round_trip),
        cmocka_unit_test(test_agent_small_round_trip),
        cmocka_unit_test(test_interval_hist_exact_merge),
        cmocka_unit_test(test_two_hist_merge),
        cmocka_unit_test(test_stage_summary_round_trip),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_corrupted),
        cmocka_unit_test(test_unknown_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
