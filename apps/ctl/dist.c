/* dist.c — the distributed run and `ping`: sai3bench-ctl as the gRPC client of sai3bench-agent
 * processes (proto/sai3bench.proto; its header comment is the contract followed here).
 *
 * Everything runs on one libuv loop on the main thread: the channels (one per agent), their Ping
 * and Run calls, a 100 ms tick (live lines, timeouts) and SIGINT/SIGTERM. The pure decisions
 * (stage list, barrier rule, interval merge) live in dist_plan.c.
 *
 * Phases: connect (all agents in parallel, 5 Pings each for the clock offset) → run (one Run
 * stream per agent, stages with barriers) → close (GOAWAY, wait for the channels) → results. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "ctl.h"
#include "ssh.h"
#include "rpc/client.h"
#include "rpc/err.h"
#include "rx/err.h"
#include "rx/stream.h"
#include "rx/time.h"
#include "wire.h"
#include "wl/results.h"
#include "wl/units.h"

extern char **environ;

#define NPINGS 5
#define TICK_MS 100
#define NS_PER_S 1000000000ull
#define LIVE_WAIT_NS (1500ull * 1000000ull) /* print a line 1.5 s after its first interval */
#define ABORT_GRACE_NS (10ull * NS_PER_S)   /* after AbortRun, wait this long for the end */
#define LATE_START_NS (100ull * 1000000ull) /* warn when a synchronized start is this late */
#define MAX_MESSAGE (64u * 1024u * 1024u)

typedef enum fin {
    FIN_NONE = 0,
    FIN_DONE,
    FIN_FAILED,
    FIN_ABORTED,
    FIN_LOST,
    FIN_UNREACHABLE,
} fin_t;

static const char *fin_name(fin_t f)
{
    static const char *const n[] = {"RUNNING", "DONE", "FAILED", "ABORTED", "LOST", "UNREACHABLE"};
    return n[f];
}

/* What one agent sent for one stage. */
typedef struct agent_stage {
    wl_stats_t st; /* the StageSummary's totals, or the running sum of its intervals */
    int have_sum;  /* st is the StageSummary */
    int have_any;  /* something arrived */
    int partial;
    int started;      /* StageStart was sent */
    uint64_t wall_ns; /* summary wall, or the last interval's elapsed time */
    uint64_t created, existed, failed, bytes; /* prepare */
    int exit_code;                            /* custom */
    char *tail;                               /* custom: output tail */
    int64_t start_at; /* StageStart.start_at_unix_ns sent (agent clock), 0 = at once */
    int64_t started_ns; /* StateChange RUNNING: the actual start, controller clock; 0 = unknown */
} agent_stage_t;

struct dist;

typedef struct agent {
    struct dist *d;
    size_t idx;
    const ctl_agent_spec_t *spec;
    char addr[300]; /* host:port for messages */
    uint8_t pin[32];
    int has_pin;
    /* channel */
    rpc_channel_t *ch;
    int connected, resolved, closing;
    /* ping */
    int npings, got_reply;
    int64_t ping_t0;
    int64_t offset_ns, rtt_ns;
    char version[64], hostname[128], platform[160], busy_run[160], busy_agent[64];
    uint32_t cores, proto;
    int busy, state;
    /* run */
    rpc_ccall_t *call;
    int in_run; /* RunSpec sent */
    int ready;
    int64_t done_stage; /* last STAGE_DONE index; -1 after READY; -2 before */
    fin_t fin;
    int reported_dropped;
    uint64_t abort_sent_ns; /* monotonic; 0 = no AbortRun sent */
    uint64_t wait_end_ns;   /* monotonic: since when the stream should end (abort or final) */
    char err[600];
    char fatal[600]; /* text of the last fatal ErrorReport */
    char results_path[512];
    agent_stage_t *stg; /* [nst] */
    wl_perflog_t perf;
    int perf_ok;
} agent_t;

typedef struct dist {
    const ctl_opts_t *o;
    const wl_config_t *cfg;
    int ping_mode;
    int replaced; /* --agents replaced distributed.agents */
    uv_loop_t loop;
    uv_timer_t tick;
    uv_signal_t sigint, sigterm;
    int handles_open;
    ctl_agent_spec_t *specs;
    size_t n;
    agent_t *ag;
    ctl_stage_t *stages;
    size_t nst;
    /* transport */
    int tls;
    rx_tls_ctx_t *tls_ctx;
    const char *server_name;
    char auth[600];
    rpc_md_t md[1];
    size_t nmd;
    /* progress */
    size_t connect_pending;
    size_t calls_active;
    size_t chans_open;
    int signals;
    int interrupted;
    int aborting;
    int run_failed;
    char run_err[600];
    /* run */
    char dir[PATH_MAX];
    char run_id[256];
    char *yaml;
    size_t yaml_len;
    int shared;
    uint64_t start_delay_ns;
    size_t total;              /* agents the run started with */
    size_t next_stage;         /* next StageStart to send */
    uint64_t barrier_since_ns; /* monotonic time the first agent reached the current barrier */
    uint64_t run_sent_ns;
    uint8_t *summarized; /* [nst] */
    ctl_live_t live;
    int live_ok;
    wl_perflog_t perf;
    int perf_ok;
    wl_stats_t disp; /* accumulated display interval */
    uint64_t disp_ns;
    int64_t disp_stage;
    int classes_used[WL_CLASS__COUNT];
    int open_loop;
    wl_stats_t scratch;
    /* agents started over SSH (distributed.ssh.enabled) */
    int ssh;
    int ssh_tls_auto;
    ctl_deploy_t *deploy;
    /* env forwarding */
    Sai3bench__RunSpec__EnvEntry *env;
    Sai3bench__RunSpec__EnvEntry **envp;
    size_t nenv;
    char **env_strs;
} dist_t;

/* ------------------------------------------------------------------ helpers -------------- */

static uint64_t mono_ns(void)
{
    return rx_now_ns();
}

static void fmt_addr(const ctl_agent_spec_t *s, char *out, size_t len)
{
    if (strchr(s->host, ':'))
        snprintf(out, len, "[%s]:%d", s->host, s->port);
    else
        snprintf(out, len, "%s:%d", s->host, s->port);
}

static void fmt_ms(int64_t ns, char *out, size_t len, int sign)
{
    snprintf(out, len, sign ? "%+.3f ms" : "%.3f ms", (double)ns / 1e6);
}

static void copy_str(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s ? s : "");
}

static const char *stage_label(const ctl_stage_t *s)
{
    switch (s->type) {
    case WL_STAGE_PREPARE:
        return "Prepare";
    case WL_STAGE_EXECUTE:
        return "Workload";
    case WL_STAGE_CLEANUP:
        return "Cleanup";
    case WL_STAGE_CUSTOM:
        return s->name;
    }
    return "?";
}

static int is_sync_stage(const dist_t *d, size_t i)
{
    return i == 0 || d->stages[i].type == WL_STAGE_EXECUTE;
}

/* The text of a failed connect or channel. */
static void chan_fail_text(const agent_t *a, int status, char *out, size_t len)
{
    const char *detail = a->ch ? rpc_channel_error_detail(a->ch) : "";
    if (status == RX_ETIMEDOUT) {
        char t[48];
        snprintf(out, len, "no connection within %s (connect_timeout)",
                 wl_fmt_ns(a->d->cfg->dist.connect_timeout_ns, t, sizeof(t)));
    } else if (status == RX_ETLS || status == RX_ETLSVERIFY || status == RX_ETLSCA ||
               status == RPC_ENOH2 || status == RPC_EPROTOCOL || status == RPC_EGOAWAY) {
        const char *hint = "";
        if (status == RX_ETLSVERIFY)
            hint = a->has_pin ? " (the agent's certificate is not the pinned one: compare with "
                                "the fingerprint sai3bench-agent prints at start)"
                              : " (give the agent's certificate or CA with --agent-ca / "
                                "distributed.tls.ca, or pin its fingerprint with "
                                "distributed.tls.fingerprint)";
        else if (status == RX_ETLS)
            hint = " (is the agent serving plaintext? then drop TLS on this side)";
        snprintf(out, len, "%s%s%s%s", rpc_strerror(status), detail[0] ? ": " : "", detail, hint);
    } else {
        snprintf(out, len, "%s", rpc_strerror(status));
    }
}

/* The text of a call that ended with a non-OK status. */
static void status_text(const agent_t *a, rpc_status_t st, const char *msg, char *out, size_t len)
{
    if (st == RPC_STATUS_UNAUTHENTICATED) {
        snprintf(out, len, "authentication failed (wrong or missing token)");
    } else if (st == RPC_STATUS_UNIMPLEMENTED) {
        snprintf(out, len, "not a sai3bench agent (UNIMPLEMENTED%s%s)", msg[0] ? ": " : "", msg);
    } else if (st == RPC_STATUS_UNAVAILABLE && a->ch && rpc_channel_error_detail(a->ch)[0]) {
        snprintf(out, len, "%s", rpc_channel_error_detail(a->ch));
    } else {
        snprintf(out, len, "%s%s%s", rpc_status_name((int)st), msg && msg[0] ? ": " : "",
                 msg ? msg : "");
    }
}

/* ------------------------------------------------------------------ sending -------------- */

static int send_msg(agent_t *a, const Sai3bench__ControllerMsg *m)
{
    if (!a->call)
        return -EINVAL;
    size_t len;
    uint8_t *b = app_pack(&m->base, &len);
    if (!b)
        return -ENOMEM;
    int rc = rpc_ccall_send(a->call, b, len);
    free(b);
    return rc;
}

static void send_abort(agent_t *a, const char *reason)
{
    if (!a->call || a->abort_sent_ns)
        return;
    Sai3bench__AbortRun ab = SAI3BENCH__ABORT_RUN__INIT;
    ab.reason = (char *)reason;
    Sai3bench__ControllerMsg m = SAI3BENCH__CONTROLLER_MSG__INIT;
    m.body_case = SAI3BENCH__CONTROLLER_MSG__BODY_ABORT;
    m.abort = &ab;
    send_msg(a, &m);
    a->abort_sent_ns = mono_ns();
    if (!a->wait_end_ns)
        a->wait_end_ns = a->abort_sent_ns;
}

static void barrier_check(dist_t *d);
static void summarize_stage(dist_t *d, size_t i);
static void live_flush(dist_t *d, int64_t force_upto);

static void abort_all(dist_t *d, const char *reason)
{
    if (!d->aborting)
        ctl_err("Aborting the run on every agent: %s", reason);
    d->aborting = 1;
    for (size_t i = 0; i < d->n; i++) {
        agent_t *a = &d->ag[i];
        if (a->call && (a->fin == FIN_NONE))
            send_abort(a, reason);
    }
}

/* Sets the final state once; returns 1 when this call set it. */
static int set_fin(agent_t *a, fin_t f, const char *text)
{
    if (a->fin != FIN_NONE)
        return 0;
    a->fin = f;
    copy_str(a->err, sizeof(a->err), text);
    if (!a->wait_end_ns)
        a->wait_end_ns = mono_ns();
    return 1;
}

/* The agent left the run (failed, lost, aborted, dropped). */
static void agent_left(agent_t *a)
{
    dist_t *d = a->d;
    if (d->live_ok)
        ctl_live_agent_gone(&d->live, a->idx);
    if (a->fin == FIN_ABORTED && d->aborting)
        ctl_out("%s: aborted", a->spec->id);
    else
        ctl_err("error: %s (%s) %s: %s", a->spec->id, a->addr, fin_name(a->fin),
                a->err[0] ? a->err : "no reason given");
    if (!d->aborting && d->cfg->dist.abort_on_agent_failure) {
        char r[800];
        snprintf(r, sizeof(r), "%s %s (on_agent_failure: abort)", a->spec->id,
                 a->fin == FIN_LOST ? "was lost" : "failed");
        d->run_failed = 1;
        copy_str(d->run_err, sizeof(d->run_err), r);
        abort_all(d, r);
    }
    barrier_check(d);
}

static void drop_agent(agent_t *a, const char *why)
{
    if (!set_fin(a, FIN_FAILED, why))
        return;
    send_abort(a, why);
    agent_left(a);
}

/* ------------------------------------------------------------------ stages --------------- */

static void print_stage_header(dist_t *d, size_t i, size_t nagents, int64_t instant)
{
    const ctl_stage_t *s = &d->stages[i];
    const wl_config_t *cfg = d->cfg;
    char t[48], when[96] = "";
    if (instant) {
        time_t sec = (time_t)(instant / (int64_t)NS_PER_S);
        struct tm tm;
        localtime_r(&sec, &tm);
        char hms[32];
        strftime(hms, sizeof(hms), "%H:%M:%S", &tm);
        double in = (double)(instant - app_wall_ns()) / 1e9;
        if (in >= 0.05)
            snprintf(when, sizeof(when), ", starting at %s.%03d (in %.1f s)", hms,
                     (int)(instant / 1000000 % 1000), in);
        else
            snprintf(when, sizeof(when), ", starting now (%s.%03d)", hms,
                     (int)(instant / 1000000 % 1000));
    }
    switch (s->type) {
    case WL_STAGE_PREPARE: {
        char tc[32];
        ctl_fmt_count(s->expected_objects, tc, sizeof(tc));
        ctl_out("Prepare (stage %zu/%zu '%s'): ensuring %s objects in %zu set%s on %zu agent%s "
                "(%s)%s",
                i + 1, d->nst, s->name, tc, cfg->prepare.nensure,
                cfg->prepare.nensure == 1 ? "" : "s", nagents, nagents == 1 ? "" : "s",
                d->shared ? "split across the agents" : "each agent its own copy", when);
        break;
    }
    case WL_STAGE_EXECUTE:
        wl_fmt_ns(s->duration_ns ? s->duration_ns : cfg->duration_ns, t, sizeof(t));
        ctl_out("Execute (stage %zu/%zu '%s'): %zu op%s for %s on %zu agent%s%s", i + 1, d->nst,
                s->name, cfg->nops, cfg->nops == 1 ? "" : "s", t, nagents, nagents == 1 ? "" : "s",
                when);
        break;
    case WL_STAGE_CLEANUP:
        ctl_out("Cleanup (stage %zu/%zu '%s'): removing prepared objects (mode %s) on %zu "
                "agent%s%s",
                i + 1, d->nst, s->name,
                cfg->prepare.cleanup_mode == WL_CLEANUP_STRICT     ? "strict"
                : cfg->prepare.cleanup_mode == WL_CLEANUP_TOLERANT ? "tolerant"
                                                                   : "besteffort",
                nagents, nagents == 1 ? "" : "s", when);
        break;
    case WL_STAGE_CUSTOM: {
        char cmd[512];
        size_t k = (size_t)snprintf(cmd, sizeof(cmd), "%s", s->command ? s->command : "?");
        for (size_t j = 0; j < s->nargs && k < sizeof(cmd); j++)
            k += (size_t)snprintf(cmd + k, sizeof(cmd) - k, " %s", s->args[j]);
        ctl_out("Custom stage %zu/%zu '%s': %s on %zu agent%s%s", i + 1, d->nst, s->name, cmd,
                nagents, nagents == 1 ? "" : "s", when);
        break;
    }
    }
}

static void start_stage(dist_t *d, size_t i)
{
    size_t nagents = 0;
    for (size_t k = 0; k < d->n; k++)
        if (d->ag[k].in_run && d->ag[k].fin == FIN_NONE)
            nagents++;
    int64_t instant = 0;
    if (is_sync_stage(d, i))
        instant = app_wall_ns() + (int64_t)d->start_delay_ns;
    print_stage_header(d, i, nagents, instant);
    for (size_t k = 0; k < d->n; k++) {
        agent_t *a = &d->ag[k];
        if (!a->in_run || a->fin != FIN_NONE)
            continue;
        Sai3bench__StageStart ss = SAI3BENCH__STAGE_START__INIT;
        ss.stage_index = (uint32_t)i;
        ss.start_at_unix_ns = instant ? instant + a->offset_ns : 0;
        Sai3bench__ControllerMsg m = SAI3BENCH__CONTROLLER_MSG__INIT;
        m.body_case = SAI3BENCH__CONTROLLER_MSG__BODY_STAGE_START;
        m.stage_start = &ss;
        a->stg[i].started = 1;
        a->stg[i].start_at = ss.start_at_unix_ns;
        int rc = send_msg(a, &m);
        if (rc)
            ctl_err("warning: %s: cannot send StageStart: %s", a->spec->id, rpc_strerror(rc));
    }
    d->next_stage = i + 1;
    d->barrier_since_ns = 0;
    wl_stats_reset(&d->disp);
    d->disp_ns = 0;
    d->disp_stage = (int64_t)i;
}

static void send_release(dist_t *d, size_t stage)
{
    const char **passed = calloc(d->n + 1, sizeof(char *));
    const char **dropped = calloc(d->n + 1, sizeof(char *));
    if (!passed || !dropped) {
        free(passed);
        free(dropped);
        return;
    }
    size_t np = 0, nd = 0;
    for (size_t k = 0; k < d->n; k++) {
        agent_t *a = &d->ag[k];
        if (!a->in_run)
            continue;
        if (a->fin == FIN_NONE)
            passed[np++] = a->spec->id;
        else if (!a->reported_dropped && a->fin != FIN_DONE) {
            dropped[nd++] = a->spec->id;
            a->reported_dropped = 1;
        }
    }
    Sai3bench__BarrierRelease br = SAI3BENCH__BARRIER_RELEASE__INIT;
    br.stage_index = (uint32_t)stage;
    br.n_passed = np;
    br.passed = (char **)passed;
    br.n_dropped = nd;
    br.dropped = (char **)dropped;
    Sai3bench__ControllerMsg m = SAI3BENCH__CONTROLLER_MSG__INIT;
    m.body_case = SAI3BENCH__CONTROLLER_MSG__BODY_BARRIER_RELEASE;
    m.barrier_release = &br;
    for (size_t k = 0; k < d->n; k++) {
        agent_t *a = &d->ag[k];
        if (a->in_run && a->fin == FIN_NONE)
            send_msg(a, &m);
    }
    free(passed);
    free(dropped);
}

/* Starts the next stage when the barrier rule allows it; aborts when it can no longer hold;
 * prints the summary of a stage once every agent left in the run finished it. */
static void barrier_check(dist_t *d)
{
    if (!d->run_sent_ns)
        return;
    size_t arrived = 0, pending = 0, failed = 0;
    int64_t need = (int64_t)d->next_stage - 1;
    for (size_t k = 0; k < d->n; k++) {
        agent_t *a = &d->ag[k];
        if (!a->in_run)
            continue;
        if (a->fin == FIN_NONE || a->fin == FIN_DONE) {
            if (a->fin == FIN_DONE || a->done_stage >= need)
                arrived++;
            else
                pending++;
        } else {
            failed++;
        }
    }
    if (d->next_stage >= d->nst) {
        /* the last stage runs: its summary once nobody is left in it */
        if (!pending && d->nst && !d->summarized[d->nst - 1])
            summarize_stage(d, d->nst - 1);
        return;
    }
    if (d->aborting)
        return;
    if (d->next_stage > 0 && arrived && !d->barrier_since_ns)
        d->barrier_since_ns = mono_ns();
    ctl_barrier_verdict_t v =
        ctl_barrier_eval(d->cfg->dist.barrier, d->total, arrived, pending, failed);
    if (v == CTL_BARRIER_WAIT)
        return;
    if (v == CTL_BARRIER_FAIL) {
        char r[600];
        if (d->next_stage == 0)
            snprintf(r, sizeof(r),
                     "barrier rule %s does not hold before the first stage: %zu of %zu agents "
                     "left",
                     ctl_barrier_rule_name(d->cfg->dist.barrier), arrived + pending, d->total);
        else
            snprintf(r, sizeof(r),
                     "barrier rule %s does not hold after stage '%s': %zu of %zu agents left",
                     ctl_barrier_rule_name(d->cfg->dist.barrier), d->stages[d->next_stage - 1].name,
                     arrived + pending, d->total);
        d->run_failed = 1;
        copy_str(d->run_err, sizeof(d->run_err), r);
        abort_all(d, r); /* the stage's summary comes at the end, with the aborted agents' */
        return;
    }
    if (d->next_stage > 0) {
        summarize_stage(d, d->next_stage - 1);
        send_release(d, d->next_stage - 1);
    }
    start_stage(d, d->next_stage);
}

/* ------------------------------------------------------------------ summaries ------------ */

/* Merges every agent's numbers of stage i (summary, else the sum of its intervals). */
static void merge_stage(dist_t *d, size_t i, wl_stats_t *out, uint64_t *wall, int *partial)
{
    *wall = 0;
    *partial = 0;
    for (size_t k = 0; k < d->n; k++) {
        agent_stage_t *s = &d->ag[k].stg[i];
        if (!s->started && !s->have_any)
            continue;
        if (!s->have_sum || s->partial)
            *partial = 1;
        if (wl_stats_merge(out, &s->st) != 0)
            ctl_err("warning: out of memory merging stats");
        if (s->wall_ns > *wall)
            *wall = s->wall_ns;
    }
}

/* Spread of the agents' actual start instants of stage i (controller clock, corrected by the
 * offsets measured at connect), ns; -1 when fewer than two agents reported a start. */
static int64_t start_skew(const dist_t *d, size_t i, size_t *n)
{
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    *n = 0;
    for (size_t k = 0; k < d->n; k++) {
        int64_t t = d->ag[k].stg[i].started_ns;
        if (!t)
            continue;
        (*n)++;
        lo = t < lo ? t : lo;
        hi = t > hi ? t : hi;
    }
    return *n >= 2 ? hi - lo : -1;
}

static void summarize_stage(dist_t *d, size_t i)
{
    if (i >= d->nst || d->summarized[i])
        return;
    d->summarized[i] = 1;
    live_flush(d, (int64_t)i); /* the stage's last lines come before its summary */
    ctl_status_clear();
    const ctl_stage_t *s = &d->stages[i];
    wl_stats_t m;
    wl_stats_init(&m);
    uint64_t wall;
    int partial;
    merge_stage(d, i, &m, &wall, &partial);
    char missing[512] = "";
    size_t mk = 0;
    for (size_t k = 0; k < d->n && mk < sizeof(missing); k++) {
        agent_stage_t *as = &d->ag[k].stg[i];
        if (as->started && !as->have_sum)
            mk += (size_t)snprintf(missing + mk, sizeof(missing) - mk, "%s%s", mk ? ", " : "",
                                   d->ag[k].spec->id);
    }
    size_t nstarted;
    int64_t skew = start_skew(d, i, &nstarted);
    if (skew >= 0 && (i == 0 || s->type == WL_STAGE_EXECUTE))
        ctl_out("Stage '%s' started on %zu agents within %.3f ms of each other (clock offsets "
                "applied)",
                s->name, nstarted, (double)skew / 1e6);
    switch (s->type) {
    case WL_STAGE_PREPARE: {
        uint64_t cr = 0, ex = 0, fa = 0, by = 0;
        for (size_t k = 0; k < d->n; k++) {
            cr += d->ag[k].stg[i].created;
            ex += d->ag[k].stg[i].existed;
            fa += d->ag[k].stg[i].failed;
            by += d->ag[k].stg[i].bytes;
        }
        char c1[32], c2[32], b[32];
        ctl_fmt_count(cr, c1, sizeof(c1));
        ctl_fmt_count(ex, c2, sizeof(c2));
        wl_fmt_bytes(by, b, sizeof(b));
        ctl_out("Prepare: %s created (%s), %s already present, %" PRIu64
                " failed attempts, %.2f s%s",
                c1, b, c2, fa, (double)wall / 1e9, partial ? " (partial)" : "");
        ctl_print_phase_errors(&m);
        break;
    }
    case WL_STAGE_EXECUTE: {
        size_t nexec = 0, nag = 0;
        for (size_t j = 0; j < d->nst; j++)
            nexec += d->stages[j].type == WL_STAGE_EXECUTE;
        for (size_t k = 0; k < d->n; k++)
            nag += d->ag[k].stg[i].started;
        char title[256];
        if (nexec > 1)
            snprintf(title, sizeof(title), "Execute results of stage '%s' on %zu agent%s%s",
                     s->name, nag, nag == 1 ? "" : "s", partial ? ", partial" : "");
        else
            snprintf(title, sizeof(title), "Execute results of %zu agent%s%s", nag,
                     nag == 1 ? "" : "s", partial ? ", partial" : "");
        ctl_print_summary(title, &m, wall, d->open_loop);
        for (size_t k = 0; k < d->n; k++) {
            agent_t *a = &d->ag[k];
            agent_stage_t *as = &a->stg[i];
            if (!as->started && !as->have_any)
                continue;
            char ops[32];
            uint64_t n = wl_stats_total_ops(&as->st);
            ctl_fmt_count(n, ops, sizeof(ops));
            double secs = (double)as->wall_ns / 1e9;
            ctl_out("  %-16s %12s ops %11.1f ops/s %8" PRIu64 " errors %8.2f s%s", a->spec->id, ops,
                    secs > 0 ? (double)n / secs : 0.0, wl_stats_total_errors(&as->st), secs,
                    !as->have_sum ? " (no summary: intervals only)"
                    : as->partial ? " (partial)"
                                  : "");
        }
        break;
    }
    case WL_STAGE_CLEANUP: {
        char n[32];
        ctl_fmt_count(wl_stats_ops(&m, WL_OP_DELETE) + wl_stats_ops(&m, WL_OP_RMDIR), n, sizeof(n));
        ctl_out("Cleanup: %s removed, %" PRIu64 " errors, %.2f s%s", n, wl_stats_total_errors(&m),
                (double)wall / 1e9, partial ? " (partial)" : "");
        ctl_print_phase_errors(&m);
        break;
    }
    case WL_STAGE_CUSTOM:
        for (size_t k = 0; k < d->n; k++) {
            agent_t *a = &d->ag[k];
            agent_stage_t *as = &a->stg[i];
            if (!as->started)
                continue;
            if (!as->have_sum) {
                ctl_out("Custom stage '%s' on %s: no result", s->name, a->spec->id);
                continue;
            }
            ctl_out("Custom stage '%s' on %s: exit code %d, %.2f s", s->name, a->spec->id,
                    as->exit_code, (double)as->wall_ns / 1e9);
            if (as->exit_code && as->tail && as->tail[0]) {
                ctl_out("  output (last lines):");
                char *save = NULL, *copy = strdup(as->tail);
                for (char *ln = copy ? strtok_r(copy, "\n", &save) : NULL; ln;
                     ln = strtok_r(NULL, "\n", &save))
                    ctl_out("    %s", ln);
                free(copy);
            }
        }
        break;
    }
    if (missing[0] && s->type != WL_STAGE_CUSTOM)
        ctl_out("  (no stage summary from %s: the numbers include their intervals so far)",
                missing);
    wl_stats_free(&m);
}

/* ------------------------------------------------------------------ live ----------------- */

static void show_slot(dist_t *d, ctl_live_slot_t *s)
{
    const ctl_stage_t *st = &d->stages[s->stage];
    if (d->perf_ok)
        wl_perflog_add(&d->perf, stage_label(st), (uint64_t)(s->wall_ns / 1000000), s->elapsed_ns,
                       &s->stats, s->interval_ns, s->last);
    if ((int64_t)s->stage != d->disp_stage) {
        wl_stats_reset(&d->disp);
        d->disp_ns = 0;
        d->disp_stage = s->stage;
    }
    wl_stats_merge(&d->disp, &s->stats);
    d->disp_ns += s->interval_ns;
    if (d->disp_ns < 900000000ull)
        return; /* intervals jitter around 1 s */
    if (st->type == WL_STAGE_EXECUTE) {
        char suffix[64] = "";
        if (s->nfrom < d->total)
            snprintf(suffix, sizeof(suffix), " (%zu of %zu agents)", s->nfrom, d->total);
        ctl_print_live(&d->disp, d->disp_ns, s->elapsed_ns, d->classes_used,
                       suffix[0] ? suffix : NULL);
    } else if (st->type != WL_STAGE_CUSTOM && s->progress_total) {
        ctl_print_progress(ctl_stage_type_name(st->type), s->progress_done, s->progress_total,
                           wl_stats_total_ops(&d->disp), d->disp_ns);
    }
    wl_stats_reset(&d->disp);
    d->disp_ns = 0;
}

/* Shows the slots that are ready, and all those of stages <= force_upto. */
static void live_flush(dist_t *d, int64_t force_upto)
{
    if (!d->live_ok)
        return;
    ctl_live_slot_t s;
    uint64_t now = mono_ns();
    while (ctl_live_pop(&d->live, now, force_upto, &s)) {
        show_slot(d, &s);
        ctl_live_slot_free(&s);
    }
}

/* ------------------------------------------------------------------ agent messages ------- */

static void on_state(agent_t *a, const Sai3bench__StateChange *sc)
{
    dist_t *d = a->d;
    if (sc->results_path && sc->results_path[0])
        copy_str(a->results_path, sizeof(a->results_path), sc->results_path);
    int64_t si = sc->stage_index;
    const char *msg = sc->message ? sc->message : "";
    switch (sc->state) {
    case SAI3BENCH__AGENT_STATE__AGENT_STATE_PREPARING:
        if (d->o->verbose)
            ctl_out("%s: preparing", a->spec->id);
        break;
    case SAI3BENCH__AGENT_STATE__AGENT_STATE_READY:
        a->ready = 1;
        if (a->done_stage < -1)
            a->done_stage = -1;
        if (d->o->verbose)
            ctl_out("%s: ready%s%s", a->spec->id, a->results_path[0] ? ", results under " : "",
                    a->results_path);
        barrier_check(d);
        break;
    case SAI3BENCH__AGENT_STATE__AGENT_STATE_RUNNING:
        if (si >= 0 && (size_t)si < d->nst) {
            if (d->live_ok)
                ctl_live_agent_stage(&d->live, a->idx, (uint32_t)si);
            int64_t at = a->stg[si].start_at;
            a->stg[si].started_ns = sc->agent_unix_ns - a->offset_ns;
            if (at && sc->agent_unix_ns > at + (int64_t)LATE_START_NS)
                ctl_err("warning: %s started stage '%s' %.0f ms late (its clock may have "
                        "jumped, or the start delay is too short)",
                        a->spec->id, d->stages[si].name, (double)(sc->agent_unix_ns - at) / 1e6);
        }
        break;
    case SAI3BENCH__AGENT_STATE__AGENT_STATE_STAGE_DONE:
        if (si > a->done_stage)
            a->done_stage = si;
        barrier_check(d);
        break;
    case SAI3BENCH__AGENT_STATE__AGENT_STATE_DONE:
        set_fin(a, FIN_DONE, "");
        if (a->call)
            rpc_ccall_close_send(a->call);
        barrier_check(d);
        break;
    case SAI3BENCH__AGENT_STATE__AGENT_STATE_FAILED: {
        char t[600];
        const char *why = msg[0] ? msg : a->fatal;
        const char *stage = si >= 0 && (size_t)si < d->nst ? d->stages[si].name : NULL;
        char named[300] = "";
        if (stage)
            snprintf(named, sizeof(named), "'%s'", stage);
        if (stage && !strstr(why, named))
            snprintf(t, sizeof(t), "%s (stage '%s')", why[0] ? why : "failed", stage);
        else
            snprintf(t, sizeof(t), "%s", why);
        if (set_fin(a, FIN_FAILED, t[0] ? t : "failed"))
            agent_left(a);
        if (a->call)
            rpc_ccall_close_send(a->call);
        break;
    }
    case SAI3BENCH__AGENT_STATE__AGENT_STATE_ABORTED:
        if (set_fin(a, FIN_ABORTED, msg[0] ? msg : "aborted"))
            agent_left(a);
        if (a->call)
            rpc_ccall_close_send(a->call);
        break;
    default:
        break;
    }
}

static void on_interval(agent_t *a, const Sai3bench__IntervalStats *iv)
{
    dist_t *d = a->d;
    if (iv->stage_index >= d->nst)
        return;
    agent_stage_t *s = &a->stg[iv->stage_index];
    char err[256];
    wl_stats_reset(&d->scratch);
    if (app_stats_merge_pb(&d->scratch, iv->ops, iv->n_ops, err, sizeof(err)) != 0) {
        ctl_err("warning: %s: malformed interval stats ignored: %s", a->spec->id, err);
        return;
    }
    s->have_any = 1;
    if (!s->have_sum) {
        wl_stats_merge(&s->st, &d->scratch);
        if (iv->elapsed_ns > s->wall_ns)
            s->wall_ns = iv->elapsed_ns;
    }
    int64_t wall = iv->wall_unix_ns ? iv->wall_unix_ns - a->offset_ns : app_wall_ns();
    if (iv->cpu) {
        /* the agents' host CPU, in their own perf logs and averaged in the merged one */
        if (a->perf_ok)
            wl_perflog_cpu(&a->perf, iv->cpu->user_pct, iv->cpu->system_pct, iv->cpu->iowait_pct,
                           iv->interval_ns);
        if (d->perf_ok)
            wl_perflog_cpu(&d->perf, iv->cpu->user_pct, iv->cpu->system_pct, iv->cpu->iowait_pct,
                           iv->interval_ns);
    }
    if (a->perf_ok)
        wl_perflog_add(&a->perf, stage_label(&d->stages[iv->stage_index]),
                       (uint64_t)(wall / 1000000), iv->elapsed_ns, &d->scratch, iv->interval_ns,
                       iv->last);
    if (d->live_ok && a->fin == FIN_NONE)
        ctl_live_add(&d->live, a->idx, iv->stage_index, iv->seq, &d->scratch, iv->elapsed_ns,
                     iv->interval_ns, wall, iv->progress_done, iv->progress_total, iv->in_flight,
                     iv->last, mono_ns());
}

static void on_summary(agent_t *a, const Sai3bench__StageSummary *sm)
{
    dist_t *d = a->d;
    if (sm->stage_index >= d->nst)
        return;
    agent_stage_t *s = &a->stg[sm->stage_index];
    wl_stats_t t;
    wl_stats_init(&t);
    char err[256];
    if (app_stats_merge_pb(&t, sm->ops, sm->n_ops, err, sizeof(err)) != 0) {
        ctl_err("warning: %s: malformed summary of stage '%s' ignored (its intervals are kept): "
                "%s",
                a->spec->id, d->stages[sm->stage_index].name, err);
        wl_stats_free(&t);
        return;
    }
    wl_stats_free(&s->st);
    s->st = t;
    s->have_sum = 1;
    s->have_any = 1;
    s->partial = sm->partial;
    s->wall_ns = sm->wall_ns;
    if (sm->prepare) {
        s->created = sm->prepare->created;
        s->existed = sm->prepare->existed;
        s->failed = sm->prepare->failed;
        s->bytes = sm->prepare->bytes;
    }
    s->exit_code = sm->exit_code;
    free(s->tail);
    s->tail = sm->output_tail && sm->output_tail[0] ? strdup(sm->output_tail) : NULL;
}

static void on_error_report(agent_t *a, const Sai3bench__ErrorReport *er)
{
    dist_t *d = a->d;
    const char *m = er->message ? er->message : "";
    char where[160] = "";
    if (er->stage_index >= 0 && (size_t)er->stage_index < d->nst)
        snprintf(where, sizeof(where), " (stage '%s')", d->stages[er->stage_index].name);
    if (er->fatal) {
        copy_str(a->fatal, sizeof(a->fatal), m);
        ctl_err("error: %s%s: %s", a->spec->id, where, m);
    } else {
        ctl_err("warning: %s%s: %s", a->spec->id, where, m);
    }
}

static void on_run_message(rpc_ccall_t *c, const uint8_t *msg, size_t len, void *ud)
{
    agent_t *a = ud;
    Sai3bench__AgentMsg *m = sai3bench__agent_msg__unpack(NULL, len, msg);
    if (!m) {
        ctl_err("error: %s: malformed message on the Run stream (%zu bytes)", a->spec->id, len);
        if (set_fin(a, FIN_FAILED, "malformed message on the Run stream")) {
            send_abort(a, "malformed message");
            agent_left(a);
        }
        rpc_ccall_cancel(c);
        return;
    }
    switch (m->body_case) {
    case SAI3BENCH__AGENT_MSG__BODY_STATE_CHANGE:
        on_state(a, m->state_change);
        break;
    case SAI3BENCH__AGENT_MSG__BODY_INTERVAL:
        on_interval(a, m->interval);
        break;
    case SAI3BENCH__AGENT_MSG__BODY_SUMMARY:
        on_summary(a, m->summary);
        break;
    case SAI3BENCH__AGENT_MSG__BODY_ERROR:
        on_error_report(a, m->error);
        break;
    default:
        break;
    }
    sai3bench__agent_msg__free_unpacked(m, NULL);
}

static void on_run_done(rpc_ccall_t *c, rpc_status_t status, const char *message, void *ud)
{
    (void)c;
    agent_t *a = ud;
    dist_t *d = a->d;
    a->call = NULL;
    d->calls_active--;
    if (a->fin != FIN_NONE) {
        if (a->fin == FIN_DONE && status != RPC_STATUS_OK)
            ctl_err("warning: %s: the Run stream ended with %s after DONE", a->spec->id,
                    rpc_status_name((int)status));
        barrier_check(d);
        return;
    }
    char t[700];
    if (status == RPC_STATUS_FAILED_PRECONDITION) {
        snprintf(t, sizeof(t), "refused the run: %s", message[0] ? message : "busy");
        set_fin(a, FIN_FAILED, t);
    } else if (status == RPC_STATUS_UNAUTHENTICATED || status == RPC_STATUS_INVALID_ARGUMENT) {
        status_text(a, status, message, t, sizeof(t));
        set_fin(a, FIN_FAILED, t);
    } else {
        if (status == RPC_STATUS_OK)
            snprintf(t, sizeof(t), "the Run stream ended without DONE, FAILED or ABORTED");
        else
            status_text(a, status, message, t, sizeof(t));
        set_fin(a, FIN_LOST, t);
    }
    agent_left(a);
}

/* ------------------------------------------------------------------ run start ------------ */

static Sai3bench__StageSpec **build_stage_specs(dist_t *d)
{
    Sai3bench__StageSpec **v = calloc(d->nst, sizeof(*v));
    Sai3bench__StageSpec *s = calloc(d->nst, sizeof(*s));
    if (!v || !s) {
        free(v);
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < d->nst; i++) {
        const ctl_stage_t *c = &d->stages[i];
        sai3bench__stage_spec__init(&s[i]);
        s[i].name = (char *)c->name;
        s[i].type = (Sai3bench__StageType)c->type;
        s[i].command = (char *)(c->command ? c->command : "");
        s[i].n_args = c->nargs;
        s[i].args = (char **)c->args;
        s[i].duration_ns = c->duration_ns;
        s[i].barrier = 1;
        s[i].timeout_ns = c->timeout_ns;
        s[i].optional = c->optional != 0;
        s[i].expected_objects = c->expected_objects;
        v[i] = &s[i];
    }
    return v;
}

static void free_stage_specs(Sai3bench__StageSpec **v)
{
    if (v)
        free(v[0]);
    free(v);
}

static int start_run_calls(dist_t *d, const char *config_name)
{
    Sai3bench__StageSpec **specs = build_stage_specs(d);
    if (!specs)
        return -ENOMEM;
    rpc_ccall_cb_t cb = {on_run_message, on_run_done};
    uint64_t iv = d->cfg->perf_log.present ? d->cfg->perf_log.interval_ns : NS_PER_S;
    if (iv > NS_PER_S || iv == 0)
        iv = NS_PER_S;
    d->total = d->n;
    d->run_sent_ns = mono_ns();
    for (size_t k = 0; k < d->n; k++) {
        agent_t *a = &d->ag[k];
        Sai3bench__RunSpec rs = SAI3BENCH__RUN_SPEC__INIT;
        rs.run_id = d->run_id;
        rs.config_yaml = d->yaml;
        rs.config_name = (char *)config_name;
        rs.agent_id = a->spec->id;
        rs.agent_index = (uint32_t)k;
        rs.agent_count = (uint32_t)d->n;
        rs.shared_filesystem = d->shared != 0;
        rs.target_override = a->spec->target_override ? a->spec->target_override : "";
        rs.concurrency_override = a->spec->concurrency_override;
        rs.n_env = d->nenv;
        rs.env = d->envp;
        rs.results_dir = d->run_id;
        rs.n_stages = d->nst;
        rs.stages = specs;
        rs.interval_ns = iv;
        rs.seed = 0;
        rs.clock_offset_ns = a->offset_ns;
        rs.clock_rtt_ns = (uint64_t)(a->rtt_ns > 0 ? a->rtt_ns : 0);
        rs.protocol_version = APP_PROTOCOL_VERSION;
        Sai3bench__ControllerMsg m = SAI3BENCH__CONTROLLER_MSG__INIT;
        m.body_case = SAI3BENCH__CONTROLLER_MSG__BODY_RUN_SPEC;
        m.run_spec = &rs;
        a->done_stage = -2;
        a->in_run = 1;
        int rc = rpc_ccall_start(a->ch, APP_METHOD_RUN, d->md, d->nmd, 0, &cb, a, &a->call);
        if (rc) {
            char t[300];
            snprintf(t, sizeof(t), "cannot start the Run call: %s", rpc_strerror(rc));
            a->call = NULL;
            set_fin(a, FIN_LOST, t);
            continue;
        }
        d->calls_active++;
        if ((rc = send_msg(a, &m)) != 0) {
            char t[300];
            snprintf(t, sizeof(t), "cannot send the RunSpec: %s", rpc_strerror(rc));
            set_fin(a, FIN_LOST, t);
            rpc_ccall_cancel(a->call);
        }
    }
    free_stage_specs(specs);
    /* failures only now: every agent got its RunSpec before any decision is taken */
    for (size_t k = 0; k < d->n; k++)
        if (d->ag[k].fin != FIN_NONE)
            agent_left(&d->ag[k]);
    return 0;
}

/* ------------------------------------------------------------------ connect and ping ----- */

static void connect_resolved(agent_t *a)
{
    if (a->resolved)
        return;
    a->resolved = 1;
    a->d->connect_pending--;
}

static void connect_failed(agent_t *a, fin_t f, const char *text)
{
    set_fin(a, f, text);
    connect_resolved(a);
}

static void ping_next(agent_t *a);

static void on_ping_message(rpc_ccall_t *c, const uint8_t *msg, size_t len, void *ud)
{
    (void)c;
    agent_t *a = ud;
    int64_t t3 = app_wall_ns();
    Sai3bench__PingReply *r = sai3bench__ping_reply__unpack(NULL, len, msg);
    if (!r)
        return;
    a->got_reply = 1;
    copy_str(a->version, sizeof(a->version), r->version);
    copy_str(a->hostname, sizeof(a->hostname), r->hostname);
    copy_str(a->platform, sizeof(a->platform), r->platform);
    copy_str(a->busy_run, sizeof(a->busy_run), r->run_id);
    copy_str(a->busy_agent, sizeof(a->busy_agent), r->agent_id);
    a->cores = r->cores;
    a->proto = r->protocol_version;
    a->busy = r->busy;
    a->state = r->state;
    int64_t off, rtt;
    ctl_clock_sample(r->echo_controller_send_unix_ns ? r->echo_controller_send_unix_ns : a->ping_t0,
                     r->agent_recv_unix_ns, r->agent_send_unix_ns, t3, &off, &rtt);
    if (rtt < 0)
        rtt = 0;
    if (a->npings == 0 || rtt < a->rtt_ns) {
        a->rtt_ns = rtt;
        a->offset_ns = off;
    }
    sai3bench__ping_reply__free_unpacked(r, NULL);
}

static void on_ping_done(rpc_ccall_t *c, rpc_status_t status, const char *message, void *ud)
{
    (void)c;
    agent_t *a = ud;
    dist_t *d = a->d;
    if (a->resolved)
        return;
    if (status != RPC_STATUS_OK) {
        char t[700];
        status_text(a, status, message, t, sizeof(t));
        if (!d->tls && a->npings == 0 && status == RPC_STATUS_UNAVAILABLE) {
            size_t l = strlen(t);
            snprintf(t + l, sizeof(t) - l,
                     " (does the agent serve TLS? then use --agent-ca, --tls or distributed.tls)");
        }
        connect_failed(a, status == RPC_STATUS_UNAVAILABLE ? FIN_UNREACHABLE : FIN_FAILED, t);
        return;
    }
    if (!a->got_reply) {
        connect_failed(a, FIN_FAILED, "malformed or missing PingReply");
        return;
    }
    a->got_reply = 0;
    if (a->npings++ == 0) {
        if (a->proto != APP_PROTOCOL_VERSION) {
            char t[300];
            snprintf(t, sizeof(t),
                     "speaks protocol version %u, this controller speaks %u (agent version %s, "
                     "controller %s): use the same sai3bench release on both sides",
                     a->proto, APP_PROTOCOL_VERSION, a->version[0] ? a->version : "?",
                     SAI3_VERSION);
            connect_failed(a, FIN_FAILED, t);
            return;
        }
        if (strcmp(a->version, SAI3_VERSION) != 0)
            ctl_err("warning: %s (%s) runs version %s, this controller %s", a->spec->id, a->addr,
                    a->version[0] ? a->version : "?", SAI3_VERSION);
        if (a->busy && !d->ping_mode) {
            char t[400];
            snprintf(t, sizeof(t), "busy with run %s%s%s", a->busy_run[0] ? a->busy_run : "?",
                     a->busy_agent[0] ? " as " : "", a->busy_agent);
            connect_failed(a, FIN_FAILED, t);
            return;
        }
    }
    if (a->npings < NPINGS)
        ping_next(a);
    else
        connect_resolved(a);
}

static void ping_next(agent_t *a)
{
    dist_t *d = a->d;
    Sai3bench__PingRequest rq = SAI3BENCH__PING_REQUEST__INIT;
    rq.controller_version = (char *)SAI3_VERSION;
    rq.protocol_version = APP_PROTOCOL_VERSION;
    a->ping_t0 = app_wall_ns();
    rq.controller_send_unix_ns = a->ping_t0;
    size_t len;
    uint8_t *b = app_pack(&rq.base, &len);
    if (!b) {
        connect_failed(a, FIN_FAILED, "out of memory");
        return;
    }
    rpc_ccall_cb_t cb = {on_ping_message, on_ping_done};
    uint64_t to = d->cfg->dist.connect_timeout_ns;
    if (to < NS_PER_S)
        to = NS_PER_S;
    int rc = rpc_unary(a->ch, APP_METHOD_PING, d->md, d->nmd, to, b, len, &cb, a, NULL);
    free(b);
    if (rc) {
        char t[300];
        snprintf(t, sizeof(t), "cannot start Ping: %s", rpc_strerror(rc));
        connect_failed(a, FIN_UNREACHABLE, t);
    }
}

static void on_channel(rpc_channel_t *ch, int status, void *ud)
{
    (void)ch;
    agent_t *a = ud;
    if (status == 0) {
        a->connected = 1;
        if (!a->resolved)
            ping_next(a);
        return;
    }
    if (!a->connected || !a->resolved) {
        char t[700];
        chan_fail_text(a, status, t, sizeof(t));
        if (a->connected && !a->d->tls && a->npings == 0) {
            size_t l = strlen(t);
            snprintf(t + l, sizeof(t) - l,
                     " (does the agent serve TLS? then use --agent-ca, --tls or distributed.tls)");
        }
        connect_failed(a, FIN_UNREACHABLE, t);
    }
    /* after the connect phase, the calls on the channel end with UNAVAILABLE: on_run_done */
}

static void on_chan_closed(void *ud)
{
    agent_t *a = ud;
    a->ch = NULL;
    a->d->chans_open--;
}

/* ------------------------------------------------------------------ loop plumbing -------- */

static void drain_agents(dist_t *d, const char *why)
{
    for (size_t k = 0; k < d->n; k++) {
        agent_t *a = &d->ag[k];
        if (a->call) {
            rpc_ccall_t *c = a->call;
            if (set_fin(a, FIN_LOST, why))
                agent_left(a);
            rpc_ccall_cancel(c);
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    dist_t *d = t->data;
    if (d->ping_mode || !d->run_sent_ns)
        return;
    live_flush(d, -1);
    uint64_t now = mono_ns();
    const wl_dist_cfg_t *dc = &d->cfg->dist;
    if (!d->aborting && d->next_stage == 0 && dc->agent_ready_timeout_ns &&
        now - d->run_sent_ns >= dc->agent_ready_timeout_ns) {
        char why[200], tt[48];
        snprintf(why, sizeof(why), "not READY within %s (agent_ready_timeout)",
                 wl_fmt_ns(dc->agent_ready_timeout_ns, tt, sizeof(tt)));
        for (size_t k = 0; k < d->n; k++) {
            agent_t *a = &d->ag[k];
            if (a->in_run && a->fin == FIN_NONE && !a->ready)
                drop_agent(a, why);
        }
    }
    if (!d->aborting && d->next_stage > 0 && d->next_stage < d->nst && dc->barrier_timeout_ns &&
        d->barrier_since_ns && now - d->barrier_since_ns >= dc->barrier_timeout_ns) {
        char why[300], tt[48];
        snprintf(
            why, sizeof(why), "barrier timeout: stage '%s' not done within %s of the first agent",
            d->stages[d->next_stage - 1].name, wl_fmt_ns(dc->barrier_timeout_ns, tt, sizeof(tt)));
        int64_t need = (int64_t)d->next_stage - 1;
        for (size_t k = 0; k < d->n; k++) {
            agent_t *a = &d->ag[k];
            if (a->in_run && a->fin == FIN_NONE && a->done_stage < need)
                drop_agent(a, why);
        }
    }
    for (size_t k = 0; k < d->n; k++) {
        agent_t *a = &d->ag[k];
        if (a->call && a->wait_end_ns && now - a->wait_end_ns >= ABORT_GRACE_NS) {
            rpc_ccall_t *c = a->call;
            if (set_fin(a, FIN_LOST, "its Run stream did not end within 10 s of AbortRun"))
                agent_left(a);
            a->wait_end_ns = 0;
            rpc_ccall_cancel(c);
        }
    }
}

static void on_signal(uv_signal_t *s, int sig)
{
    dist_t *d = s->data;
    d->signals++;
    d->interrupted = 1;
    if (d->signals >= 3) {
        static const char m[] = "\ninterrupted three times: exiting at once\n";
        ssize_t w = write(STDERR_FILENO, m, sizeof(m) - 1);
        (void)w;
        _exit(130);
    }
    if (!d->run_sent_ns)
        return; /* the connect phase just stops */
    if (d->signals == 1) {
        ctl_err("\n%s: stopping the run on every agent (waiting up to 10 s; %s again to stop "
                "waiting)",
                sig == SIGTERM ? "SIGTERM" : "Ctrl-C", sig == SIGTERM ? "SIGTERM" : "Ctrl-C");
        abort_all(d, sig == SIGTERM ? "SIGTERM on controller" : "Ctrl-C on controller");
    } else {
        ctl_err("not waiting any longer: writing partial results");
        drain_agents(d, "controller stopped waiting (interrupted twice)");
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    dist_t *d = h->data;
    d->handles_open--;
}

static int loop_start(dist_t *d)
{
    int rc = uv_loop_init(&d->loop);
    if (rc)
        return rc;
    uv_timer_init(&d->loop, &d->tick);
    uv_signal_init(&d->loop, &d->sigint);
    uv_signal_init(&d->loop, &d->sigterm);
    d->tick.data = d->sigint.data = d->sigterm.data = d;
    d->handles_open = 3;
    uv_timer_start(&d->tick, on_tick, TICK_MS, TICK_MS);
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    return 0;
}

static void loop_finish(dist_t *d)
{
    for (size_t k = 0; k < d->n; k++) {
        agent_t *a = &d->ag[k];
        if (a->ch && !a->closing) {
            a->closing = 1;
            rpc_channel_close(a->ch, on_chan_closed, a);
        }
    }
    /* the channels close with GOAWAY; give them a moment, never forever */
    uint64_t until = mono_ns() + 5 * NS_PER_S;
    while (d->chans_open > 0 && mono_ns() < until)
        uv_run(&d->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&d->tick, on_handle_closed);
    uv_close((uv_handle_t *)&d->sigint, on_handle_closed);
    uv_close((uv_handle_t *)&d->sigterm, on_handle_closed);
    while (d->handles_open > 0 || d->chans_open > 0) {
        if (!uv_run(&d->loop, UV_RUN_ONCE))
            break;
        if (d->handles_open == 0 && mono_ns() >= until)
            break;
    }
    if (uv_loop_close(&d->loop) == UV_EBUSY) {
        /* a handle the rpc layer still holds: run once more without blocking */
        uv_run(&d->loop, UV_RUN_NOWAIT);
        uv_loop_close(&d->loop);
    }
    if (d->tls_ctx)
        rx_tls_ctx_destroy(d->tls_ctx);
    d->tls_ctx = NULL;
}

/* ------------------------------------------------------------------ setup ---------------- */

static int setup_transport(dist_t *d, char *err, size_t errlen)
{
    const wl_dist_cfg_t *dc = &d->cfg->dist;
    const ctl_opts_t *o = d->o;
    d->tls = dc->tls || o->agent_ca || o->tls;
    const char *ca = o->agent_ca ? o->agent_ca : dc->tls_ca;
    int all_pinned = 1;
    for (size_t k = 0; k < d->n; k++) {
        agent_t *a = &d->ag[k];
        const char *fp = a->spec->tls_fingerprint ? a->spec->tls_fingerprint : dc->tls_fingerprint;
        if (fp) {
            if (rx_tls_fingerprint_parse(fp, a->pin) != 0) {
                snprintf(err, errlen,
                         "%s: bad TLS fingerprint '%s' (want 64 hex digits, optionally "
                         "'sha256:' and ':' between pairs)",
                         a->spec->id, fp);
                return -EINVAL;
            }
            a->has_pin = 1;
        } else if (!d->ssh_tls_auto) {
            all_pinned = 0;
        }
    }
    if (!d->tls)
        return 0;
    int rc = rx_tls_ctx_create(ca, 0, &d->tls_ctx);
    if (rc && !ca && all_pinned)
        rc = rx_tls_ctx_create(NULL, RX_TLS_CTX_NO_CA, &d->tls_ctx);
    if (rc) {
        snprintf(err, errlen, "cannot load the CA file %s: %s", ca ? ca : "(system bundle)",
                 rpc_strerror(rc));
        return -EINVAL;
    }
    if (dc->tls_client_cert) {
        char e[400];
        rc = rx_tls_ctx_use_cert(d->tls_ctx, dc->tls_client_cert, dc->tls_client_key, e, sizeof(e));
        if (rc) {
            snprintf(err, errlen, "cannot use the client certificate %s: %s", dc->tls_client_cert,
                     e[0] ? e : rpc_strerror(rc));
            return -EINVAL;
        }
    }
    d->server_name = dc->tls_server_name ? dc->tls_server_name : ca ? "sai3bench-agent" : NULL;
    return 0;
}

static int setup_token(dist_t *d, char *err, size_t errlen)
{
    const char *env = getenv("SAI3_AUTH_TOKEN");
    char tok[512];
    if (env && env[0]) {
        copy_str(tok, sizeof(tok), env);
    } else if (d->cfg->dist.auth_token_file) {
        if (app_read_token(d->cfg->dist.auth_token_file, tok, sizeof(tok), err, errlen) != 0)
            return -EINVAL;
    } else {
        return 0;
    }
    snprintf(d->auth, sizeof(d->auth), "Bearer %s", tok);
    memset(tok, 0, sizeof(tok));
    d->md[0].name = "authorization";
    d->md[0].value = d->auth;
    d->nmd = 1;
    return 0;
}

/* Credentials for RunSpec.env: only over TLS (or when plaintext is allowed explicitly). */
static int setup_env(dist_t *d)
{
    size_t n = 0;
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        char name[256];
        size_t l = (size_t)(eq - *e);
        if (l >= sizeof(name))
            continue;
        memcpy(name, *e, l);
        name[l] = 0;
        if (app_env_forwardable(name))
            n++;
    }
    if (!n)
        return 0;
    if (!d->tls && !d->cfg->dist.allow_plaintext_credentials) {
        ctl_err("notice: %zu credential variable%s (AWS_*, AZURE_STORAGE_*, "
                "GOOGLE_APPLICATION_CREDENTIALS) %s not forwarded to the agents: the channel is "
                "plaintext (use TLS, or set distributed.allow_plaintext_credentials: true); "
                "agents use their own environment",
                n, n == 1 ? "" : "s", n == 1 ? "was" : "were");
        return 0;
    }
    d->env = calloc(n, sizeof(*d->env));
    d->envp = calloc(n, sizeof(*d->envp));
    d->env_strs = calloc(n, sizeof(*d->env_strs));
    if (!d->env || !d->envp || !d->env_strs)
        return -ENOMEM;
    size_t k = 0;
    for (char **e = environ; e && *e && k < n; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        char *copy = strdup(*e);
        if (!copy)
            return -ENOMEM;
        char *ceq = copy + (eq - *e);
        *ceq = 0;
        if (!app_env_forwardable(copy) || ceq - copy >= 256) {
            free(copy);
            continue;
        }
        d->env_strs[k] = copy;
        sai3bench__run_spec__env_entry__init(&d->env[k]);
        d->env[k].key = copy;
        d->env[k].value = ceq + 1;
        d->envp[k] = &d->env[k];
        k++;
    }
    d->nenv = k;
    ctl_out("Forwarding %zu credential variable%s to the agents over %s", k, k == 1 ? "" : "s",
            d->tls ? "TLS" : "plaintext (allow_plaintext_credentials)");
    return 0;
}

static int open_channels(dist_t *d)
{
    const wl_dist_cfg_t *dc = &d->cfg->dist;
    d->connect_pending = d->n;
    for (size_t k = 0; k < d->n; k++) {
        agent_t *a = &d->ag[k];
        rpc_channel_opts_t co;
        rpc_channel_opts_init(&co);
        uint64_t cto = dc->connect_timeout_ns / 1000000ull;
        co.stream.connect_timeout_ms = cto > INT_MAX ? INT_MAX : (int)cto;
        co.keepalive_interval_ns = dc->keepalive_interval_ns;
        co.keepalive_timeout_ns = dc->keepalive_timeout_ns;
        co.max_message = MAX_MESSAGE;
        co.user_agent = "sai3bench-ctl/" SAI3_VERSION;
        if (d->tls) {
            co.stream.tls = 1;
            co.stream.tls_ctx = d->tls_ctx;
            co.stream.server_name = d->server_name;
            if (a->has_pin)
                co.stream.tls_pin_sha256 = a->pin;
        }
        int rc =
            rpc_channel_open(&d->loop, a->spec->host, a->spec->port, &co, on_channel, a, &a->ch);
        if (rc) {
            a->ch = NULL;
            connect_failed(a, FIN_UNREACHABLE, rpc_strerror(rc));
            continue;
        }
        d->chans_open++;
    }
    return 0;
}

static void print_replaced(const dist_t *d)
{
    ctl_out("notice: --agents replaces the %zu agent%s listed under distributed.agents",
            d->cfg->dist.nagents, d->cfg->dist.nagents == 1 ? "" : "s");
}

static int dist_init(dist_t *d, const ctl_opts_t *o, const wl_config_t *cfg, int ping_mode,
                     char *err, size_t errlen)
{
    memset(d, 0, sizeof(*d));
    d->o = o;
    d->cfg = cfg;
    d->ping_mode = ping_mode;
    d->disp_stage = -1;
    wl_stats_init(&d->disp);
    wl_stats_init(&d->scratch);
    int replaced = 0;
    int rc = ctl_agent_specs(cfg, o->agents, &d->specs, &d->n, &replaced, err, errlen);
    if (rc)
        return rc;
    d->replaced = replaced;
    if (replaced && ping_mode)
        print_replaced(d);
    if (!ping_mode) {
        if ((rc = ctl_dist_check(cfg, err, errlen)) != 0)
            return rc;
        if ((rc = ctl_dist_stages(cfg, o, &d->stages, &d->nst, err, errlen)) != 0)
            return rc;
    }
    d->ag = calloc(d->n, sizeof(*d->ag));
    if (!d->ag)
        return -ENOMEM;
    for (size_t k = 0; k < d->n; k++) {
        agent_t *a = &d->ag[k];
        a->d = d;
        a->idx = k;
        a->spec = &d->specs[k];
        a->done_stage = -2;
        fmt_addr(a->spec, a->addr, sizeof(a->addr));
        if (d->nst) {
            a->stg = calloc(d->nst, sizeof(*a->stg));
            if (!a->stg)
                return -ENOMEM;
            for (size_t i = 0; i < d->nst; i++)
                wl_stats_init(&a->stg[i].st);
        }
    }
    return 0;
}

static void dist_free(dist_t *d)
{
    for (size_t k = 0; k < d->n && d->ag; k++) {
        agent_t *a = &d->ag[k];
        if (a->perf_ok)
            wl_perflog_close(&a->perf);
        for (size_t i = 0; a->stg && i < d->nst; i++) {
            wl_stats_free(&a->stg[i].st);
            free(a->stg[i].tail);
        }
        free(a->stg);
    }
    free(d->ag);
    ctl_agent_specs_free(d->specs, d->n);
    free(d->stages);
    free(d->summarized);
    if (d->live_ok)
        ctl_live_free(&d->live);
    if (d->perf_ok)
        wl_perflog_close(&d->perf);
    wl_stats_free(&d->disp);
    wl_stats_free(&d->scratch);
    for (size_t k = 0; k < d->nenv; k++)
        free(d->env_strs[k]);
    free(d->env_strs);
    free(d->env);
    free(d->envp);
    free(d->yaml);
    memset(d->auth, 0, sizeof(d->auth));
}

static void print_plaintext_warning(const dist_t *d)
{
    if (d->tls)
        return;
    ctl_err("warning: agents connected over plaintext h2c: the control traffic%s is not "
            "encrypted and the agents are not authenticated; enable TLS with distributed.tls or "
            "--agent-ca (see docs/DISTRIBUTED.md)",
            d->nmd ? " (and the token)" : "");
}

/* Connects to every agent and pings it NPINGS times. Returns the number that failed. */
static size_t connect_all(dist_t *d)
{
    print_plaintext_warning(d);
    open_channels(d);
    while (d->connect_pending > 0 && !d->interrupted)
        uv_run(&d->loop, UV_RUN_ONCE);
    size_t bad = 0;
    for (size_t k = 0; k < d->n; k++) {
        agent_t *a = &d->ag[k];
        if (a->fin != FIN_NONE)
            bad++;
        if (!a->resolved && d->interrupted) {
            set_fin(a, FIN_UNREACHABLE, "interrupted while connecting");
            bad++;
        }
    }
    return bad;
}

static const char *state_name(int st)
{
    static const char *const n[] = {"?",          "IDLE", "PREPARING", "READY",  "RUNNING",
                                    "STAGE_DONE", "DONE", "FAILED",    "ABORTED"};
    return st >= 0 && st <= 8 ? n[st] : "?";
}

static void print_connected(const agent_t *a)
{
    char off[32], err[32];
    fmt_ms(a->offset_ns, off, sizeof(off), 1);
    fmt_ms(a->rtt_ns / 2, err, sizeof(err), 0);
    ctl_out("%s: connected to %s (agent version %s)", a->spec->id, a->addr,
            a->version[0] ? a->version : "?");
    char state[300];
    if (a->busy)
        snprintf(state, sizeof(state), "%s (busy with run %s%s%s)", state_name(a->state),
                 a->busy_run, a->busy_agent[0] ? " as " : "", a->busy_agent);
    else
        snprintf(state, sizeof(state), "%s", state_name(a->state));
    ctl_out("  host %s%s%s%s, %u core%s, state %s, clock offset %s ± %s",
            a->hostname[0] ? a->hostname : "?", a->platform[0] ? " (" : "", a->platform,
            a->platform[0] ? ")" : "", a->cores, a->cores == 1 ? "" : "s", state, off, err);
}

static void print_failures(const dist_t *d)
{
    for (size_t k = 0; k < d->n; k++) {
        const agent_t *a = &d->ag[k];
        if (a->fin != FIN_NONE && a->fin != FIN_DONE)
            ctl_err("error: %s (%s): %s", a->spec->id, a->addr, a->err);
    }
}

/* ------------------------------------------------------------------ ping ----------------- */

int ctl_cmd_ping(const ctl_opts_t *o)
{
    wl_config_t cfg;
    if (o->config) {
        int rc = ctl_load_config(o->config, &cfg);
        if (rc)
            return rc;
    } else {
        wl_config_defaults(&cfg);
    }
    rpc_err_register();
    dist_t d;
    char err[600] = "";
    int rc = dist_init(&d, o, &cfg, 1, err, sizeof(err));
    if (!rc)
        rc = setup_transport(&d, err, sizeof(err));
    if (!rc)
        rc = setup_token(&d, err, sizeof(err));
    if (rc) {
        ctl_err("sai3bench-ctl ping: %s", err[0] ? err : strerror(-rc));
        dist_free(&d);
        wl_config_free(&cfg);
        return rc == -ENOMEM ? 1 : 2;
    }
    if (cfg.dist.ssh.enabled)
        ctl_out("note: distributed.ssh.enabled: `run` starts these agents and stops them after "
                "the run; ping reaches only agents that are running now (check SSH with "
                "`sai3bench-ctl ssh-setup --test-only --hosts ...`)");
    if (loop_start(&d) != 0) {
        ctl_err("sai3bench-ctl ping: cannot start the event loop");
        dist_free(&d);
        wl_config_free(&cfg);
        return 1;
    }
    size_t bad = connect_all(&d);
    for (size_t k = 0; k < d.n; k++)
        if (d.ag[k].fin == FIN_NONE)
            print_connected(&d.ag[k]);
    print_failures(&d);
    int interrupted = d.interrupted;
    loop_finish(&d);
    if (interrupted) {
        ctl_err("interrupted");
    } else if (bad) {
        ctl_err("%zu of %zu agent%s failed", bad, d.n, d.n == 1 ? "" : "s");
    } else {
        ctl_out("All %zu agent%s answered", d.n, d.n == 1 ? "" : "s");
    }
    dist_free(&d);
    wl_config_free(&cfg);
    return interrupted ? 130 : bad ? 1 : 0;
}

/* ------------------------------------------------------------------ validate ------------- */

int ctl_dist_wanted(const ctl_opts_t *o, const wl_config_t *cfg)
{
    return (cfg && cfg->dist.present) || (o && o->agents);
}

int ctl_dist_validate(const ctl_opts_t *o, const wl_config_t *cfg)
{
    ctl_agent_spec_t *specs = NULL;
    size_t n = 0, nst = 0;
    int replaced = 0;
    ctl_stage_t *stages = NULL;
    char err[600];
    int rc = ctl_agent_specs(cfg, o->agents, &specs, &n, &replaced, err, sizeof(err));
    if (!rc)
        rc = ctl_dist_check(cfg, err, sizeof(err));
    if (!rc)
        rc = ctl_dist_stages(cfg, o, &stages, &nst, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "%s: %s\n", o->config, rc == -ENOMEM ? "out of memory" : err);
        ctl_agent_specs_free(specs, n);
        return rc == -ENOMEM ? 1 : 2;
    }
    const wl_dist_cfg_t *dc = &cfg->dist;
    int tls = dc->tls || o->agent_ca || o->tls;
    const char *ca = o->agent_ca ? o->agent_ca : dc->tls_ca;
    char extra[2400];
    size_t k = 0;
    if (tls)
        k += (size_t)snprintf(extra + k, sizeof(extra) - k, "  transport: TLS%s%s%s%s%s%s\n",
                              ca ? ", CA " : "", ca ? ca : "",
                              dc->tls_fingerprint ? ", pinned fingerprint" : "",
                              dc->tls_server_name ? ", server name " : "",
                              dc->tls_server_name ? dc->tls_server_name : "",
                              dc->tls_client_cert ? ", client certificate" : "");
    else
        k +=
            (size_t)snprintf(extra + k, sizeof(extra) - k, "  transport: plaintext h2c (no TLS)\n");
    const char *tenv = getenv("SAI3_AUTH_TOKEN");
    if (k < sizeof(extra) && tenv && tenv[0])
        k += (size_t)snprintf(extra + k, sizeof(extra) - k, "  token: from SAI3_AUTH_TOKEN\n");
    else if (k < sizeof(extra) && dc->auth_token_file)
        k += (size_t)snprintf(extra + k, sizeof(extra) - k, "  token: from %s\n",
                              dc->auth_token_file);
    if (k < sizeof(extra) && dc->ssh.enabled) {
        const wl_deploy_cfg_t *dp = &dc->deploy;
        k += (size_t)snprintf(
            extra + k, sizeof(extra) - k,
            "  agents started over SSH: user %s, port %d, key %s, known_hosts %s, timeout %.1fs; "
            "%s %s; logs in %s/agent-<id>.log\n",
            dc->ssh.user ? dc->ssh.user : "(local user)", dc->ssh.port,
            dc->ssh.key_path ? dc->ssh.key_path : "~/.ssh/sai3bench_id_rsa",
            dc->ssh.known_hosts ? dc->ssh.known_hosts : "~/.ssh/known_hosts",
            (double)dc->ssh.timeout_ns / 1e9,
            dp->type == WL_DEPLOY_DOCKER ? (dp->runtime ? dp->runtime : "docker") : "binary",
            dp->type == WL_DEPLOY_DOCKER ? (dp->image ? dp->image : "sai3bench:latest")
                                         : (dp->binary_path ? dp->binary_path : "sai3bench-agent"),
            dp->log_dir ? dp->log_dir : "~/sai3-logs");
    }
    char *txt = ctl_dist_describe(cfg, specs, n, replaced, stages, nst, extra);
    if (txt)
        fputs(txt, stdout);
    free(txt);
    if (dc->ssh.enabled) {
        /* the exact commands (no secrets: env values and tokens are not on them) */
        ctl_deploy_t *dpl = NULL;
        const char *tok = getenv("SAI3_AUTH_TOKEN");
        int auto_tls = tls && !ca && !dc->tls_fingerprint;
        for (size_t j = 0; j < n; j++)
            auto_tls &= specs[j].tls_fingerprint == NULL;
        if (ctl_deploy_create(cfg, specs, n, "dry-run",
                              (tok && tok[0]) || dc->auth_token_file ? "TOKEN" : NULL, auto_tls,
                              &dpl) == 0) {
            printf("agent commands (over SSH):\n");
            for (size_t j = 0; j < n; j++)
                printf("  %s on %s: %s\n", specs[j].id, specs[j].host, ctl_deploy_command(dpl, j));
            ctl_deploy_free(dpl);
        }
    }
    ctl_agent_specs_free(specs, n);
    free(stages);
    return 0;
}

/* ------------------------------------------------------------------ results -------------- */

static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    while (b) {
        if (n + 1 >= cap) {
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n - 1, f);
        if (!r)
            break;
        n += r;
    }
    fclose(f);
    if (!b)
        return -ENOMEM;
    b[n] = 0;
    *out = b;
    *len = n;
    return 0;
}

static void write_tsv(const char *path, const wl_stats_t *s, uint64_t wall, int prep)
{
    int rc = wl_results_write_tsv_file(path, s, wall, prep);
    if (rc)
        ctl_err("warning: cannot write %s: %s", path, strerror(-rc));
}

static void write_status(dist_t *d, int success)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/STATUS.txt", d->dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        ctl_err("warning: cannot write %s: %s", path, strerror(errno));
        return;
    }
    fprintf(f, "%s\n", success ? "SUCCESS" : "FAILURE");
    for (size_t k = 0; k < d->n; k++) {
        const agent_t *a = &d->ag[k];
        char e[sizeof(a->err)];
        copy_str(e, sizeof(e), a->err);
        for (char *p = e; *p; p++)
            if (*p == '\t' || *p == '\n' || *p == '\r')
                *p = ' ';
        fprintf(f, "%s\t%s\t%s\t%s\t%s\n", a->spec->id, a->addr,
                a->fin == FIN_NONE ? "LOST" : fin_name(a->fin), e[0] ? e : "-",
                a->results_path[0] ? a->results_path : "-");
    }
    if (fclose(f) != 0)
        ctl_err("warning: cannot write %s", path);
}

static void patch_metadata(dist_t *d, const char *path)
{
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (!o)
        return;
    json_object_set_new(o, "distributed", json_true());
    json_object_set_new(o, "run_id", json_string(d->run_id));
    json_t *arr = json_array();
    for (size_t k = 0; k < d->n; k++) {
        const agent_t *a = &d->ag[k];
        json_t *j = json_object();
        json_object_set_new(j, "id", json_string(a->spec->id));
        json_object_set_new(j, "address", json_string(a->addr));
        json_object_set_new(j, "hostname", json_string(a->hostname));
        json_object_set_new(j, "version", json_string(a->version));
        json_object_set_new(j, "platform", json_string(a->platform));
        json_object_set_new(j, "cores", json_integer(a->cores));
        json_object_set_new(j, "state",
                            json_string(a->fin == FIN_NONE ? "LOST" : fin_name(a->fin)));
        json_object_set_new(j, "error", a->err[0] ? json_string(a->err) : json_null());
        json_object_set_new(j, "results_path",
                            a->results_path[0] ? json_string(a->results_path) : json_null());
        json_object_set_new(j, "clock_offset_ns", json_integer(a->offset_ns));
        json_object_set_new(j, "clock_rtt_ns", json_integer(a->rtt_ns));
        if (a->spec->target_override)
            json_object_set_new(j, "target_override", json_string(a->spec->target_override));
        if (a->spec->concurrency_override)
            json_object_set_new(j, "concurrency_override",
                                json_integer(a->spec->concurrency_override));
        json_array_append_new(arr, j);
    }
    json_object_set_new(o, "agents", arr);
    json_t *st = json_array();
    for (size_t i = 0; i < d->nst; i++) {
        json_t *j = json_object();
        json_object_set_new(j, "name", json_string(d->stages[i].name));
        json_object_set_new(j, "type", json_string(ctl_stage_type_name(d->stages[i].type)));
        size_t ns;
        int64_t skew = start_skew(d, i, &ns);
        json_object_set_new(j, "start_skew_ns", skew >= 0 ? json_integer(skew) : json_null());
        json_t *starts = json_object();
        for (size_t k = 0; k < d->n; k++)
            if (d->ag[k].stg[i].started_ns)
                json_object_set_new(starts, d->ag[k].spec->id,
                                    json_integer(d->ag[k].stg[i].started_ns));
        json_object_set_new(j, "agent_start_unix_ns", starts);
        json_array_append_new(st, j);
    }
    json_object_set_new(o, "stages", st);
    json_object_set_new(o, "shared_filesystem", json_boolean(d->shared));
    json_object_set_new(o, "barrier", json_string(ctl_barrier_rule_name(d->cfg->dist.barrier)));
    if (json_dump_file(o, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
        ctl_err("warning: cannot write %s", path);
    json_decref(o);
}

static int mkdir_p2(const char *dir, const char *id, char *out, size_t len)
{
    snprintf(out, len, "%s/agents", dir);
    if (mkdir(out, 0755) != 0 && errno != EEXIST)
        return -errno;
    snprintf(out, len, "%s/agents/%s", dir, id);
    if (mkdir(out, 0755) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static void write_results(dist_t *d, int connected, const char *status, const char *errtext,
                          uint64_t t_start, int success)
{
    char path[PATH_MAX + 64];
    if (connected) {
        /* merged results: execute stages together, and each one when there are several */
        size_t nexec = 0;
        for (size_t i = 0; i < d->nst; i++)
            nexec += d->stages[i].type == WL_STAGE_EXECUTE;
        wl_stats_t all, prep;
        wl_stats_init(&all);
        wl_stats_init(&prep);
        uint64_t all_wall = 0, prep_wall = 0;
        for (size_t i = 0; i < d->nst; i++) {
            wl_stats_t m;
            wl_stats_init(&m);
            uint64_t wall;
            int partial;
            merge_stage(d, i, &m, &wall, &partial);
            if (d->stages[i].type == WL_STAGE_EXECUTE) {
                wl_stats_merge(&all, &m);
                all_wall += wall;
                if (nexec > 1) {
                    snprintf(path, sizeof(path), "%s/results-%s.tsv", d->dir, d->stages[i].name);
                    write_tsv(path, &m, wall, 0);
                }
            } else if (d->stages[i].type == WL_STAGE_PREPARE) {
                wl_stats_merge(&prep, &m);
                prep_wall += wall;
            }
            wl_stats_free(&m);
        }
        snprintf(path, sizeof(path), "%s/results.tsv", d->dir);
        write_tsv(path, &all, all_wall, 0);
        if (wl_stats_total_ops(&prep)) {
            snprintf(path, sizeof(path), "%s/prepare_results.tsv", d->dir);
            write_tsv(path, &prep, prep_wall, 1);
        }
        /* per agent */
        for (size_t k = 0; k < d->n; k++) {
            agent_t *a = &d->ag[k];
            if (!a->in_run)
                continue;
            char adir[PATH_MAX + 32];
            if (mkdir_p2(d->dir, a->spec->id, adir, sizeof(adir)) != 0)
                continue;
            wl_stats_t ex, pr;
            wl_stats_init(&ex);
            wl_stats_init(&pr);
            uint64_t ew = 0, pw = 0;
            for (size_t i = 0; i < d->nst; i++) {
                agent_stage_t *s = &a->stg[i];
                if (d->stages[i].type == WL_STAGE_EXECUTE) {
                    wl_stats_merge(&ex, &s->st);
                    ew += s->wall_ns;
                } else if (d->stages[i].type == WL_STAGE_PREPARE) {
                    wl_stats_merge(&pr, &s->st);
                    pw += s->wall_ns;
                }
            }
            snprintf(path, sizeof(path), "%s/results.tsv", adir);
            write_tsv(path, &ex, ew, 0);
            if (wl_stats_total_ops(&pr)) {
                snprintf(path, sizeof(path), "%s/prepare_results.tsv", adir);
                write_tsv(path, &pr, pw, 1);
            }
            wl_stats_free(&ex);
            wl_stats_free(&pr);
        }
        wl_stats_free(&all);
        wl_stats_free(&prep);
    }
    write_status(d, success);
    wl_metadata_t md = {0};
    char stem[256];
    if (d->o->tsv_name)
        copy_str(stem, sizeof(stem), d->o->tsv_name);
    else
        ctl_config_stem(d->o->config, stem, sizeof(stem));
    md.test_name = stem;
    md.config_path = d->o->config;
    md.results_dir = d->dir;
    md.start_wall_ns = t_start;
    md.end_wall_ns = rx_wall_ns();
    md.argc = d->o->argc;
    md.argv = d->o->argv;
    int cores = 0;
    for (size_t k = 0; k < d->n; k++)
        cores += (int)d->ag[k].cores;
    md.cores = cores;
    md.concurrency = d->cfg->concurrency;
    md.status = status;
    md.error = errtext && errtext[0] ? errtext : NULL;
    {
        wl_stats_t all;
        wl_stats_init(&all);
        for (size_t i = 0; connected && i < d->nst; i++) {
            if (d->stages[i].type != WL_STAGE_EXECUTE)
                continue;
            uint64_t w;
            int p;
            merge_stage(d, i, &all, &w, &p);
        }
        md.total_ops = wl_stats_total_ops(&all);
        md.total_errors = wl_stats_total_errors(&all);
        wl_stats_free(&all);
    }
    snprintf(path, sizeof(path), "%s/metadata.json", d->dir);
    if (wl_metadata_write(path, &md))
        ctl_err("warning: cannot write %s", path);
    else
        patch_metadata(d, path);
}

/* ------------------------------------------------------------------ run ------------------ */

/* ------------------------------------------------------------------ agents over SSH ------ */

/* While agents are being started or stopped over SSH the event loop (and its signal handles)
 * does not run: plain handlers count the signals instead. */
static volatile sig_atomic_t ssh_signals;
static volatile int ssh_cancel;

static void ssh_on_signal(int sig)
{
    (void)sig;
    ssh_signals++;
    ssh_cancel = 1;
    if (ssh_signals >= 3) {
        static const char m[] = "\ninterrupted three times: exiting at once (agents started over "
                                "SSH may still run: they exit by themselves within their start "
                                "timeout or when their controller connection is gone)\n";
        ssize_t w = write(STDERR_FILENO, m, sizeof(m) - 1);
        (void)w;
        _exit(130);
    }
}

static void ssh_signals_catch(struct sigaction *old_int, struct sigaction *old_term)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = ssh_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, old_int);
    sigaction(SIGTERM, &sa, old_term);
}

static void ssh_signals_restore(const struct sigaction *old_int, const struct sigaction *old_term)
{
    sigaction(SIGINT, old_int, NULL);
    sigaction(SIGTERM, old_term, NULL);
}

/* Starts the agents over SSH. 0 all listen, 1 some did not (reported), 130 interrupted. */
static int deploy_agents(dist_t *d, char *errtext, size_t errlen)
{
    const wl_ssh_cfg_t *sc = &d->cfg->dist.ssh;
    if (ctl_ssh_global_init() != 0) {
        snprintf(errtext, errlen, "cannot initialise libssh2");
        return 1;
    }
    const char *tok = d->nmd ? d->auth + strlen("Bearer ") : NULL;
    int rc = ctl_deploy_create(d->cfg, d->specs, d->n, d->run_id, tok, d->ssh_tls_auto, &d->deploy);
    if (rc) {
        snprintf(errtext, errlen, "out of memory");
        return 1;
    }
    const wl_deploy_cfg_t *dp = &d->cfg->dist.deploy;
    ctl_out("Starting %zu agent%s over SSH (port %d, %s%s%s)", d->n, d->n == 1 ? "" : "s",
            sc->port, dp->type == WL_DEPLOY_DOCKER ? "container " : "binary ",
            dp->type == WL_DEPLOY_DOCKER ? (dp->image ? dp->image : "sai3bench:latest")
                                         : (dp->binary_path ? dp->binary_path : "sai3bench-agent"),
            d->ssh_tls_auto ? ", TLS pinned from each agent's log" : "");
    for (size_t k = 0; k < d->n; k++)
        ctl_out("  %s: %s", d->specs[k].id, ctl_deploy_command(d->deploy, k));
    struct sigaction oi, ot;
    ssh_signals = 0;
    ssh_cancel = 0;
    ssh_signals_catch(&oi, &ot);
    uint64_t t0 = mono_ns();
    size_t bad = ctl_deploy_start(d->deploy, &ssh_cancel);
    ssh_signals_restore(&oi, &ot);
    int interrupted = ssh_signals > 0;
    for (size_t k = 0; k < d->n; k++) {
        agent_t *a = &d->ag[k];
        const char *e = ctl_deploy_error(d->deploy, k);
        const char *what = ctl_deploy_what(d->deploy, k);
        if (!e) {
            const char *fp = ctl_deploy_fingerprint(d->deploy, k);
            if (fp && !a->has_pin && rx_tls_fingerprint_parse(fp, a->pin) == 0)
                a->has_pin = 1;
            ctl_out("  %s: started on %s (%s), listening on port %d%s%s", a->spec->id,
                    a->spec->host, what, a->spec->port, fp ? ", TLS " : "", fp ? fp : "");
        } else {
            ctl_err("  %s: %s%s%s%s: %s", a->spec->id, a->spec->host, what[0] ? " (" : "", what,
                    what[0] ? ")" : "", e);
            copy_str(a->err, sizeof(a->err), e);
            set_fin(a, FIN_UNREACHABLE, e);
        }
    }
    if (interrupted) {
        d->interrupted = 1;
        snprintf(errtext, errlen, "interrupted while starting the agents over SSH");
        return 130;
    }
    if (bad) {
        snprintf(errtext, errlen, "%zu of %zu agent%s could not be started over SSH; nothing was run",
                 bad, d->n, d->n == 1 ? "" : "s");
        return 1;
    }
    ctl_out("All %zu agent%s started over SSH in %.1f s", d->n, d->n == 1 ? "" : "s",
            (double)(mono_ns() - t0) / 1e9);
    return 0;
}

/* Stops what deploy_agents started (whatever happened in between). */
static void undeploy_agents(dist_t *d)
{
    if (!d->deploy)
        return;
    size_t launched = 0;
    for (size_t k = 0; k < d->n; k++)
        launched += ctl_deploy_launched(d->deploy, k) != 0;
    if (launched) {
        ctl_out("Stopping the %zu agent%s started over SSH", launched, launched == 1 ? "" : "s");
        struct sigaction oi, ot;
        ssh_signals = 0;
        ssh_signals_catch(&oi, &ot);
        size_t bad = ctl_deploy_stop(d->deploy, NULL);
        ssh_signals_restore(&oi, &ot);
        for (size_t k = 0; k < d->n; k++) {
            const char *t = ctl_deploy_stop_text(d->deploy, k);
            if (t)
                ctl_out("  %s on %s (%s): %s", d->specs[k].id, d->specs[k].host,
                        ctl_deploy_what(d->deploy, k), t);
        }
        if (bad)
            ctl_err("warning: %zu agent%s started over SSH could not be confirmed stopped (they "
                    "exit by themselves once no controller is connected)",
                    bad, bad == 1 ? "" : "s");
    }
    ctl_deploy_free(d->deploy);
    d->deploy = NULL;
}

int ctl_dist_run(const ctl_opts_t *o, const wl_config_t *cfg)
{
    rpc_err_register();
    dist_t d;
    char err[700] = "";
    uint64_t t_start = rx_wall_ns();
    int rc = dist_init(&d, o, cfg, 0, err, sizeof(err));
    if (!rc)
        rc = setup_token(&d, err, sizeof(err));
    if (!rc && cfg->dist.ssh.enabled) {
        /* TLS without a CA or pins: each agent makes its certificate and the fingerprint its log
         * shows (read over the authenticated SSH session) is pinned */
        int any_pin = cfg->dist.tls_fingerprint != NULL;
        for (size_t k = 0; k < d.n; k++)
            any_pin |= d.specs[k].tls_fingerprint != NULL;
        d.ssh = 1;
        d.ssh_tls_auto = (cfg->dist.tls || o->tls) && !o->agent_ca && !cfg->dist.tls_ca && !any_pin;
    }
    if (!rc)
        rc = setup_transport(&d, err, sizeof(err));
    if (!rc && (rc = read_file(o->config, &d.yaml, &d.yaml_len)) != 0)
        snprintf(err, sizeof(err), "cannot read %s: %s", o->config, strerror(-rc));
    if (rc) {
        ctl_err("%s: %s", o->config, err[0] ? err : strerror(-rc));
        dist_free(&d);
        return rc == -ENOMEM ? 1 : 2;
    }
    d.shared = ctl_dist_shared_fs(cfg);
    d.start_delay_ns = o->start_delay_set ? o->start_delay_ns : cfg->dist.start_delay_ns;
    d.open_loop = cfg->io_rate.present && cfg->io_rate.iops > 0;
    for (size_t i = 0; i < cfg->nops; i++)
        d.classes_used[wl_op_class(cfg->ops[i].op)] = 1;
    d.summarized = calloc(d.nst, 1);
    if (!d.summarized || ctl_live_init(&d.live, d.n, d.nst, LIVE_WAIT_NS) != 0) {
        ctl_err("out of memory");
        dist_free(&d);
        return 1;
    }
    d.live_ok = 1;

    /* the results directory first: it holds the console log of everything that follows */
    char stem[256], path[PATH_MAX + 64];
    if (o->tsv_name)
        copy_str(stem, sizeof(stem), o->tsv_name);
    else
        ctl_config_stem(o->config, stem, sizeof(stem));
    rc = wl_results_dir_create(o->results_parent, stem, d.dir, sizeof(d.dir));
    if (rc) {
        ctl_err("cannot create the results directory under %s: %s", o->results_parent,
                strerror(-rc));
        dist_free(&d);
        return 1;
    }
    const char *base = strrchr(d.dir, '/');
    copy_str(d.run_id, sizeof(d.run_id), base ? base + 1 : d.dir);
    snprintf(path, sizeof(path), "%s/console_log.txt", d.dir);
    ctl_console_open_log(path);
    snprintf(path, sizeof(path), "%s/config.yaml", d.dir);
    if ((rc = wl_copy_file(o->config, path)) != 0)
        ctl_err("warning: cannot copy the config to %s: %s", path, strerror(-rc));
    ctl_out("sai3bench-ctl %s: %s, distributed run %s over %zu agent%s, %zu stage%s", SAI3_VERSION,
            o->config, d.run_id, d.n, d.n == 1 ? "" : "s", d.nst, d.nst == 1 ? "" : "s");
    ctl_out("Results directory: %s", d.dir);
    if (d.replaced)
        print_replaced(&d);
    if (o->cores)
        ctl_out("notice: --cores applies to in-process runs; agents use their own cores");

    const char *status = "completed";
    int exit_code = 0;
    char errtext[800] = "";
    if (d.ssh) {
        int drc = deploy_agents(&d, errtext, sizeof(errtext));
        if (drc) {
            status = drc == 130 ? "interrupted" : "failed";
            exit_code = drc;
            ctl_err("error: %s", errtext);
            for (size_t k = 0; k < d.n; k++)
                if (d.ag[k].fin == FIN_NONE)
                    set_fin(&d.ag[k], FIN_ABORTED, "run not started (other agents cannot take part)");
            write_results(&d, 0, status, errtext, t_start, 0);
            goto out;
        }
    }
    if (loop_start(&d) != 0) {
        ctl_err("error: cannot start the event loop");
        undeploy_agents(&d);
        dist_free(&d);
        ctl_console_close_log();
        return 1;
    }
    size_t bad = connect_all(&d);
    for (size_t k = 0; k < d.n; k++)
        if (d.ag[k].fin == FIN_NONE)
            print_connected(&d.ag[k]);
    if (bad || d.interrupted) {
        print_failures(&d);
        if (d.interrupted) {
            status = "interrupted";
            exit_code = 130;
            snprintf(errtext, sizeof(errtext), "interrupted while connecting to the agents");
        } else {
            status = "failed";
            exit_code = 1;
            snprintf(errtext, sizeof(errtext),
                     "%zu of %zu agent%s cannot take part; nothing was started", bad, d.n,
                     d.n == 1 ? "" : "s");
        }
        ctl_err("error: %s", errtext);
        for (size_t k = 0; k < d.n; k++)
            set_fin(&d.ag[k], FIN_ABORTED, "run not started (other agents cannot take part)");
        loop_finish(&d);
        write_results(&d, 0, status, errtext, t_start, 0);
        goto out;
    }
    if (setup_env(&d) != 0) {
        ctl_err("error: out of memory");
        loop_finish(&d);
        undeploy_agents(&d);
        dist_free(&d);
        ctl_console_close_log();
        return 1;
    }
    /* perf logs: merged and one per agent */
    uint64_t perf_iv = cfg->perf_log.present ? cfg->perf_log.interval_ns : NS_PER_S;
    snprintf(path, sizeof(path), "%s/perf_log.tsv", d.dir);
    d.perf_ok = wl_perflog_open(&d.perf, path, "all", perf_iv) == 0;
    if (!d.perf_ok)
        ctl_err("warning: cannot write %s", path);
    d.perf.cpu_ok = 0; /* the controller's CPU says nothing about the agents: theirs is used */
    for (size_t k = 0; k < d.n; k++) {
        agent_t *a = &d.ag[k];
        char adir[PATH_MAX + 32];
        if (mkdir_p2(d.dir, a->spec->id, adir, sizeof(adir)) != 0)
            continue;
        snprintf(path, sizeof(path), "%s/perf_log.tsv", adir);
        a->perf_ok = wl_perflog_open(&a->perf, path, a->spec->id, perf_iv) == 0;
        a->perf.cpu_ok = 0;
    }

    const char *cname = strrchr(o->config, '/');
    cname = cname ? cname + 1 : o->config;
    start_run_calls(&d, cname);
    while (d.calls_active > 0)
        uv_run(&d.loop, UV_RUN_ONCE);
    live_flush(&d, INT64_MAX);
    ctl_status_clear();
    if (d.perf_ok && wl_perflog_close(&d.perf) != 0)
        ctl_err("warning: cannot write perf_log.tsv");
    d.perf_ok = 0;
    for (size_t k = 0; k < d.n; k++)
        if (d.ag[k].perf_ok) {
            wl_perflog_close(&d.ag[k].perf);
            d.ag[k].perf_ok = 0;
        }
    for (size_t i = 0; i < d.nst; i++) {
        int started = 0;
        for (size_t k = 0; k < d.n; k++)
            started |= d.ag[k].stg[i].started;
        if (started && !d.summarized[i])
            summarize_stage(&d, i);
    }
    if (d.live.late && o->verbose)
        ctl_out("note: %" PRIu64 " interval%s arrived after their live line was printed "
                "(kept in the totals and the agents' perf logs)",
                d.live.late, d.live.late == 1 ? "" : "s");
    loop_finish(&d);

    size_t ndone = 0;
    for (size_t k = 0; k < d.n; k++)
        ndone += d.ag[k].fin == FIN_DONE;
    if (d.interrupted) {
        status = "interrupted";
        exit_code = 130;
        snprintf(errtext, sizeof(errtext), "interrupted: partial results");
        ctl_err("Interrupted: partial results are written; cleanup was skipped where it had not "
                "run (run with --cleanup-only to remove prepared objects)");
    } else if (ndone != d.n || d.run_failed) {
        status = "failed";
        exit_code = 1;
        if (d.run_failed)
            copy_str(errtext, sizeof(errtext), d.run_err);
        else
            snprintf(errtext, sizeof(errtext), "%zu of %zu agent%s did not finish the run",
                     d.n - ndone, d.n, d.n == 1 ? "" : "s");
    }
    if (exit_code == 0) {
        ctl_out("All %zu agent%s finished the run", d.n, d.n == 1 ? "" : "s");
    } else {
        for (size_t k = 0; k < d.n; k++) {
            agent_t *a = &d.ag[k];
            if (a->fin != FIN_DONE)
                ctl_err("  %s (%s): %s%s%s", a->spec->id, a->addr,
                        fin_name(a->fin == FIN_NONE ? FIN_LOST : a->fin), a->err[0] ? ": " : "",
                        a->err);
        }
        if (exit_code == 1)
            ctl_err("error: %s", errtext);
    }
    write_results(&d, 1, status, errtext, t_start, exit_code == 0);

out:
    undeploy_agents(&d);
    ctl_out("Results saved to: %s", d.dir);
    ctl_console_close_log();
    dist_free(&d);
    return exit_code;
}
