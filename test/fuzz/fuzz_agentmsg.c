/* libFuzzer target for the controller's and the agent's receive path: gRPC DATA bytes → deframer
 * → protobuf-c unpack (AgentMsg, ControllerMsg, PingReply) → the OpStats of IntervalStats and
 * StageSummary merged into workload statistics (histogram deserialization included), exactly as
 * apps/ctl and apps/agent do with what the network gives them.
 *
 * Input: one option byte (bit 0: small maximum message of 256 bytes), then the stream's bytes.
 * Checked: nothing crashes or leaks; a merged statistic never has more ops in a bucket than the
 * messages claimed in total. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/grpc.h"
#include "sai3bench.pb-c.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

typedef struct ctx {
    wl_stats_t st;
    uint64_t claimed;
} ctx_t;

static void merge(ctx_t *c, Sai3bench__OpStats **ops, size_t n)
{
    char err[200];
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; ops[i] && j < ops[i]->n_buckets; j++)
            c->claimed += ops[i]->buckets[j]->ops;
    wl_stats_t tmp;
    wl_stats_init(&tmp);
    if (app_stats_merge_pb(&tmp, ops, n, err, sizeof(err)) == 0)
        wl_stats_merge(&c->st, &tmp);
    else
        CHECK(err[0] != 0);
    wl_stats_free(&tmp);
}

static int on_message(void *ud, const uint8_t *msg, size_t len, int compressed)
{
    ctx_t *c = ud;
    (void)compressed;
    Sai3bench__AgentMsg *a = sai3bench__agent_msg__unpack(NULL, len, msg);
    if (a) {
        if (a->body_case == SAI3BENCH__AGENT_MSG__BODY_INTERVAL && a->interval)
            merge(c, a->interval->ops, a->interval->n_ops);
        if (a->body_case == SAI3BENCH__AGENT_MSG__BODY_SUMMARY && a->summary)
            merge(c, a->summary->ops, a->summary->n_ops);
        if (a->body_case == SAI3BENCH__AGENT_MSG__BODY_STATE_CHANGE && a->state_change)
            CHECK(a->state_change->message != NULL);
        sai3bench__agent_msg__free_unpacked(a, NULL);
    }
    Sai3bench__ControllerMsg *m = sai3bench__controller_msg__unpack(NULL, len, msg);
    if (m) {
        if (m->body_case == SAI3BENCH__CONTROLLER_MSG__BODY_RUN_SPEC && m->run_spec) {
            CHECK(m->run_spec->config_yaml != NULL);
            for (size_t i = 0; i < m->run_spec->n_stages; i++)
                CHECK(m->run_spec->stages[i]->name != NULL);
            for (size_t i = 0; i < m->run_spec->n_env; i++)
                CHECK(m->run_spec->env[i]->key != NULL);
        }
        sai3bench__controller_msg__free_unpacked(m, NULL);
    }
    Sai3bench__PingReply *p = sai3bench__ping_reply__unpack(NULL, len, msg);
    if (p) {
        CHECK(p->version != NULL && p->hostname != NULL);
        sai3bench__ping_reply__free_unpacked(p, NULL);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    ctx_t c;
    memset(&c, 0, sizeof(c));
    wl_stats_init(&c.st);
    rpc_deframer_t d;
    CHECK(rpc_deframer_init(&d, (data[0] & 1u) ? 256 : 0, 0, on_message, &c) == 0);
    rpc_deframer_feed(&d, data + 1, size - 1);
    rpc_deframer_finish(&d);
    rpc_deframer_fini(&d);
    CHECK(wl_stats_total_ops(&c.st) <= c.claimed);
    wl_stats_free(&c.st);
    return 0;
}
