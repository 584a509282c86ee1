/* The agent's service: Ping, Run (one at a time) and Abort, and the runner thread that carries a
 * run through its stages (ordering rules: the header comment of proto/sai3bench.proto). */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rpc/grpc.h"
#include "rx/engine.h"
#include "rx/err.h"
#include "rx/log.h"
#include "rx/time.h"
#include "wire.h"
#include "wl/config.h"
#include "wl/err.h"
#include "wl/results.h"
#include "wl/run.h"

#define LOGS "agent"

/* ---------------------------------------------------------------- types ------------------ */

typedef struct cmd {
    struct cmd *next;
    uint32_t stage;
    int64_t start_at;
} cmd_t;

typedef struct agt_run agt_run_t;

/* One Run call's context (freed in its on_end). */
struct runcall {
    struct agt *a;
    agt_run_t *r; /* NULL until a RunSpec was accepted, and again once the run was freed */
    int refused;  /* the call was refused or its run ended: ignore further messages */
};

typedef struct outmsg {
    struct outmsg *next;
    agt_run_t *run;
    uint8_t *buf; /* packed AgentMsg; NULL = the runner finished */
    size_t len;
} outmsg_t;

struct agt_run {
    agt_t *agt;
    rpc_scall_t *call; /* loop thread only; NULL once the call ended */
    struct runcall *rcall; /* the call's context (valid while call != NULL) */
    Sai3bench__RunSpec *spec; /* unpacked; owned */
    int plaintext;
    pthread_t thread;
    int thread_ok;

    /* shared with the runner (mu) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    cmd_t *cmds, **cmds_tail;
    char abort_reason[256];
    atomic_int aborted;
    wl_run_t *wl; /* set by the runner under mu; wl_run_abort is thread-safe */

    /* runner thread only */
    atomic_int state;  /* Sai3bench__AgentState, read by Ping on the loop */
    int cur_stage;
    uint64_t seq;
    int64_t stage_start_wall;
    uint64_t stage_start_mono;
    uint64_t stage_timeout_ns;
    int timed_out;
    wl_cpu_sample_t cpu_prev, cpu_stage0;
    int cpu_ok, cpu_stage_ok;
    char dir[512];
    wl_perflog_t perf;
    int perf_ok;
    char **env_set; /* variables this run set (unset at the end) */
    size_t nenv_set;
};

struct agt {
    uv_loop_t *loop;
    rpc_server_t *srv;
    agt_opts_t o;
    int64_t start_ns;
    agt_run_t *active; /* loop thread */
    uint64_t runs_started; /* loop thread */
    uv_async_t async;
    pthread_mutex_t omu;
    outmsg_t *out_head, **out_tail;
    void (*on_idle)(void *);
    void *on_idle_ud;
    int shutting_down;
};

/* ---------------------------------------------------------------- outbox ----------------- */

static void post(agt_run_t *r, uint8_t *buf, size_t len)
{
    outmsg_t *m = calloc(1, sizeof(*m));
    if (!m) {
        free(buf);
        return;
    }
    m->run = r;
    m->buf = buf;
    m->len = len;
    agt_t *a = r->agt;
    pthread_mutex_lock(&a->omu);
    *a->out_tail = m;
    a->out_tail = &m->next;
    pthread_mutex_unlock(&a->omu);
    uv_async_send(&a->async);
}

static void send_msg(agt_run_t *r, Sai3bench__AgentMsg *m)
{
    size_t len;
    uint8_t *b = app_pack(&m->base, &len);
    if (b)
        post(r, b, len);
}

static void send_state(agt_run_t *r, Sai3bench__AgentState st, int stage, const char *text,
                       int64_t when)
{
    Sai3bench__AgentMsg m = SAI3BENCH__AGENT_MSG__INIT;
    Sai3bench__StateChange sc = SAI3BENCH__STATE_CHANGE__INIT;
    atomic_store(&r->state, (int)st);
    sc.state = st;
    sc.stage_index = stage;
    sc.message = (char *)(text ? text : "");
    sc.agent_unix_ns = when ? when : app_wall_ns();
    if (st == SAI3BENCH__AGENT_STATE__AGENT_STATE_READY || st == SAI3BENCH__AGENT_STATE__AGENT_STATE_DONE ||
        st == SAI3BENCH__AGENT_STATE__AGENT_STATE_FAILED || st == SAI3BENCH__AGENT_STATE__AGENT_STATE_ABORTED)
        sc.results_path = r->dir;
    m.body_case = SAI3BENCH__AGENT_MSG__BODY_STATE_CHANGE;
    m.state_change = &sc;
    send_msg(r, &m);
    rx_log(RX_LOG_INFO, LOGS, "run %s: %s%s%s", r->spec->run_id,
           protobuf_c_enum_descriptor_get_value(&sai3bench__agent_state__descriptor, st)->name,
           text && *text ? ": " : "", text ? text : "");
}

static void send_error(agt_run_t *r, int code, int stage, int fatal, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void send_error(agt_run_t *r, int code, int stage, int fatal, const char *fmt, ...)
{
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    Sai3bench__AgentMsg m = SAI3BENCH__AGENT_MSG__INIT;
    Sai3bench__ErrorReport e = SAI3BENCH__ERROR_REPORT__INIT;
    e.code = code;
    e.message = text;
    e.stage_index = stage;
    e.fatal = fatal;
    m.body_case = SAI3BENCH__AGENT_MSG__BODY_ERROR;
    m.error = &e;
    send_msg(r, &m);
    rx_log(fatal ? RX_LOG_ERROR : RX_LOG_WARN, LOGS, "run %s: %s", r->spec->run_id, text);
}

/* ---------------------------------------------------------------- runner ----------------- */

static int aborted(agt_run_t *r)
{
    return atomic_load(&r->aborted);
}

static void cpu_fill(Sai3bench__CpuUsage *c, const wl_cpu_sample_t *a, const wl_cpu_sample_t *b)
{
    double u, s, w;
    wl_cpu_pct(a, b, &u, &s, &w);
    c->user_pct = (float)u;
    c->system_pct = (float)s;
    c->iowait_pct = (float)w;
}

static void on_tick(void *ud, const wl_tick_t *t)
{
    agt_run_t *r = ud;
    Sai3bench__AgentMsg m = SAI3BENCH__AGENT_MSG__INIT;
    Sai3bench__IntervalStats iv = SAI3BENCH__INTERVAL_STATS__INIT;
    Sai3bench__CpuUsage cpu = SAI3BENCH__CPU_USAGE__INIT;
    iv.stage_index = (uint32_t)r->cur_stage;
    iv.seq = ++r->seq;
    iv.elapsed_ns = t->elapsed_ns;
    iv.interval_ns = t->interval_ns;
    iv.wall_unix_ns = app_wall_ns();
    iv.progress_done = t->done;
    iv.progress_total = t->total;
    iv.in_flight = t->in_flight;
    iv.last = t->final;
    wl_cpu_sample_t now;
    if (wl_cpu_read(&now) == 0) {
        if (r->cpu_ok)
            cpu_fill(&cpu, &r->cpu_prev, &now);
        r->cpu_prev = now;
        r->cpu_ok = 1;
        iv.cpu = &cpu;
    }
    if (app_stats_to_pb(t->delta, &iv.ops, &iv.n_ops) != 0)
        iv.n_ops = 0;
    m.body_case = SAI3BENCH__AGENT_MSG__BODY_INTERVAL;
    m.interval = &iv;
    send_msg(r, &m);
    app_pb_ops_free(iv.ops, iv.n_ops);
    if (r->perf_ok) {
        const Sai3bench__StageSpec *sp = r->spec->stages[r->cur_stage];
        wl_perflog_add(&r->perf, sp->name, (uint64_t)(iv.wall_unix_ns / 1000000), t->elapsed_ns,
                       t->delta, t->interval_ns, t->final);
    }
    /* the stage's own deadline (StageSpec.timeout_ns), checked once per interval */
    if (r->stage_timeout_ns && !t->final && rx_now_ns() - r->stage_start_mono > r->stage_timeout_ns &&
        !r->timed_out) {
        r->timed_out = 1;
        pthread_mutex_lock(&r->mu);
        if (r->wl)
            wl_run_abort(r->wl);
        pthread_mutex_unlock(&r->mu);
    }
}

static void on_wl_message(void *ud, rx_log_level_t level, const char *text)
{
    agt_run_t *r = ud;
    if (level <= RX_LOG_WARN)
        send_error(r, 0, r->cur_stage, 0, "%s", text);
    else
        rx_log(level, LOGS, "%s", text);
}

/* Waits for the next command; NULL when aborted. */
static cmd_t *next_cmd(agt_run_t *r)
{
    pthread_mutex_lock(&r->mu);
    while (!r->cmds && !aborted(r))
        pthread_cond_wait(&r->cv, &r->mu);
    cmd_t *c = NULL;
    if (!aborted(r) && r->cmds) {
        c = r->cmds;
        r->cmds = c->next;
        if (!r->cmds)
            r->cmds_tail = &r->cmds;
    }
    pthread_mutex_unlock(&r->mu);
    return c;
}

/* Sleeps until wall-clock instant `at` (ns); returns 0, or -1 when aborted first. */
static int wait_until(agt_run_t *r, int64_t at)
{
    pthread_mutex_lock(&r->mu);
    while (!aborted(r)) {
        int64_t now = app_wall_ns();
        if (at <= now)
            break;
        struct timespec ts = {(time_t)(at / 1000000000LL), (long)(at % 1000000000LL)};
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    int rc = aborted(r) ? -1 : 0;
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* Runs a custom stage's command; returns its exit status (128 + signal when killed), or -errno
 * when it could not start. tail gets the last bytes of its output. */
static int run_command(agt_run_t *r, const Sai3bench__StageSpec *sp, char *tail, size_t tailcap)
{
    int pfd[2];
    tail[0] = 0;
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return -errno;
    char **argv = calloc(sp->n_args + 2, sizeof(char *));
    if (!argv) {
        close(pfd[0]);
        close(pfd[1]);
        return -ENOMEM;
    }
    argv[0] = sp->command;
    for (size_t i = 0; i < sp->n_args; i++)
        argv[i + 1] = sp->args[i];
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        free(argv);
        close(pfd[0]);
        close(pfd[1]);
        return -e;
    }
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        sigset_t none;
        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, NULL);
        execvp(argv[0], argv);
        dprintf(1, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    free(argv);
    close(pfd[1]);
    size_t tl = 0;
    int killed = 0;
    uint64_t t0 = rx_now_ns();
    for (;;) {
        struct pollfd p = {pfd[0], POLLIN, 0};
        int n = poll(&p, 1, 100);
        if (n > 0) {
            char buf[4096];
            ssize_t got = read(pfd[0], buf, sizeof(buf));
            if (got <= 0)
                break;
            /* keep the last tailcap-1 bytes */
            if ((size_t)got >= tailcap - 1) {
                memcpy(tail, buf + got - (ssize_t)(tailcap - 1), tailcap - 1);
                tl = tailcap - 1;
            } else {
                if (tl + (size_t)got > tailcap - 1) {
                    size_t drop = tl + (size_t)got - (tailcap - 1);
                    memmove(tail, tail + drop, tl - drop);
                    tl -= drop;
                }
                memcpy(tail + tl, buf, (size_t)got);
                tl += (size_t)got;
            }
            tail[tl] = 0;
        }
        if (!killed && (aborted(r) || (r->stage_timeout_ns &&
                                       rx_now_ns() - t0 > r->stage_timeout_ns))) {
            if (!aborted(r))
                r->timed_out = 1;
            kill(pid, SIGTERM);
            killed = 1;
        }
    }
    close(pfd[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return 1;
}

static void write_status(agt_run_t *r, const char *state, const char *text)
{
    char p[600];
    snprintf(p, sizeof(p), "%s/STATUS.txt", r->dir);
    FILE *f = fopen(p, "w");
    if (!f)
        return;
    fprintf(f, "%s\nrun %s, agent %s (%u of %u)\n%s\n", state, r->spec->run_id, r->spec->agent_id,
            r->spec->agent_index + 1, r->spec->agent_count, text ? text : "");
    fclose(f);
}

static void apply_env(agt_run_t *r)
{
    if (!r->spec->n_env)
        return;
    r->env_set = calloc(r->spec->n_env, sizeof(char *));
    for (size_t i = 0; r->env_set && i < r->spec->n_env; i++) {
        const Sai3bench__RunSpec__EnvEntry *e = r->spec->env[i];
        if (!e->key || !app_env_forwardable(e->key) || getenv(e->key))
            continue; /* the agent's own environment wins */
        if (setenv(e->key, e->value ? e->value : "", 0) == 0 &&
            (r->env_set[r->nenv_set] = strdup(e->key)))
            r->nenv_set++;
    }
    rx_log(RX_LOG_INFO, LOGS, "run %s: %zu credential variable(s) forwarded, %zu applied",
           r->spec->run_id, r->spec->n_env, r->nenv_set);
}

static void unapply_env(agt_run_t *r)
{
    for (size_t i = 0; i < r->nenv_set; i++) {
        unsetenv(r->env_set[i]);
        free(r->env_set[i]);
    }
    free(r->env_set);
    r->env_set = NULL;
    r->nenv_set = 0;
}

static wl_phase_t stage_phase(Sai3bench__StageType t)
{
    return t == SAI3BENCH__STAGE_TYPE__STAGE_TYPE_PREPARE ? WL_PHASE_PREPARE
           : t == SAI3BENCH__STAGE_TYPE__STAGE_TYPE_CLEANUP ? WL_PHASE_CLEANUP
                                                 : WL_PHASE_EXECUTE;
}

static void *runner(void *arg)
{
    agt_run_t *r = arg;
    const Sai3bench__RunSpec *sp = r->spec;
    wl_config_t cfg;
    int cfg_ok = 0;
    rx_engine_t *eng = NULL;
    wl_run_t *wl = NULL;
    wl_stats_t exec_total;
    wl_stats_init(&exec_total);
    uint64_t exec_wall = 0;
    int nexec = 0;
    Sai3bench__AgentState final = SAI3BENCH__AGENT_STATE__AGENT_STATE_DONE;
    char final_text[1024] = "";
    int last_stage = -1;

    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);

    send_state(r, SAI3BENCH__AGENT_STATE__AGENT_STATE_PREPARING, -1, NULL, 0);
    if (r->plaintext && sp->n_env) {
        snprintf(final_text, sizeof(final_text),
                 "refusing %zu forwarded credential variable(s) over a plaintext connection: use "
                 "TLS (sai3bench-agent --tls) or do not forward credentials",
                 sp->n_env);
        send_error(r, 0, -1, 1, "%s", final_text);
        final = SAI3BENCH__AGENT_STATE__AGENT_STATE_FAILED;
        goto out;
    }
    if (!sp->n_stages || sp->agent_count == 0 || sp->agent_index >= sp->agent_count) {
        snprintf(final_text, sizeof(final_text),
                 "invalid RunSpec: %zu stages, agent index %u of %u", sp->n_stages,
                 sp->agent_index, sp->agent_count);
        send_error(r, 0, -1, 1, "%s", final_text);
        final = SAI3BENCH__AGENT_STATE__AGENT_STATE_FAILED;
        goto out;
    }
    for (size_t i = 0; i < sp->n_stages; i++) {
        Sai3bench__StageType t = sp->stages[i]->type;
        if (t == SAI3BENCH__STAGE_TYPE__STAGE_TYPE_CUSTOM && !r->agt->o.allow_commands) {
            snprintf(final_text, sizeof(final_text),
                     "stage '%s' runs a command, but this agent was started without "
                     "--allow-commands",
                     sp->stages[i]->name);
            send_error(r, 0, (int)i, 1, "%s", final_text);
            final = SAI3BENCH__AGENT_STATE__AGENT_STATE_FAILED;
            goto out;
        }
        if (t != SAI3BENCH__STAGE_TYPE__STAGE_TYPE_CUSTOM && t != SAI3BENCH__STAGE_TYPE__STAGE_TYPE_PREPARE &&
            t != SAI3BENCH__STAGE_TYPE__STAGE_TYPE_EXECUTE && t != SAI3BENCH__STAGE_TYPE__STAGE_TYPE_CLEANUP) {
            snprintf(final_text, sizeof(final_text), "stage '%s': stage type %d is not supported "
                     "by this agent", sp->stages[i]->name, (int)t);
            send_error(r, 0, (int)i, 1, "%s", final_text);
            final = SAI3BENCH__AGENT_STATE__AGENT_STATE_FAILED;
            goto out;
        }
    }
    apply_env(r);

    /* the config, as this agent sees it */
    wl_diags_t d;
    wl_diags_init(&d);
    int rc = wl_config_load_string(sp->config_name && *sp->config_name ? sp->config_name
                                                                        : "config.yaml",
                                   sp->config_yaml, strlen(sp->config_yaml), &cfg, &d);
    if (rc) {
        size_t used = 0;
        for (size_t i = 0; i < d.n && used + 200 < sizeof(final_text); i++) {
            if (i)
                final_text[used++] = '\n';
            wl_diag_format(&d, i, final_text + used, sizeof(final_text) - used);
            used += strlen(final_text + used);
        }
        wl_diags_free(&d);
        send_error(r, rc, -1, 1, "%s", final_text);
        final = SAI3BENCH__AGENT_STATE__AGENT_STATE_FAILED;
        goto out;
    }
    wl_diags_free(&d);
    cfg_ok = 1;
    char prefix[300];
    if (!sp->shared_filesystem)
        snprintf(prefix, sizeof(prefix), "agent-%s/", sp->agent_id);
    if ((rc = wl_config_apply_agent(&cfg, sp->target_override && *sp->target_override
                                              ? sp->target_override
                                              : NULL,
                                    sp->concurrency_override,
                                    sp->shared_filesystem ? NULL : prefix)) != 0) {
        snprintf(final_text, sizeof(final_text), "cannot apply the agent overrides: %s",
                 strerror(-rc));
        send_error(r, rc, -1, 1, "%s", final_text);
        final = SAI3BENCH__AGENT_STATE__AGENT_STATE_FAILED;
        goto out;
    }

    /* local results directory */
    {
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        char ts[32];
        strftime(ts, sizeof(ts), "%Y%m%d-%H%M%S", &tm);
        snprintf(r->dir, sizeof(r->dir), "%s/sai3-%s-%s", r->agt->o.results_root, ts,
                 sp->agent_id);
        for (int k = 2; mkdir(r->dir, 0755) != 0; k++) {
            if (errno != EEXIST || k > 99) {
                snprintf(final_text, sizeof(final_text), "cannot create %s: %s", r->dir,
                         strerror(errno));
                send_error(r, -errno, -1, 1, "%s", final_text);
                r->dir[0] = 0;
                final = SAI3BENCH__AGENT_STATE__AGENT_STATE_FAILED;
                goto out;
            }
            snprintf(r->dir, sizeof(r->dir), "%s/sai3-%s-%s-%d", r->agt->o.results_root, ts,
                     sp->agent_id, k);
        }
        char p[600];
        snprintf(p, sizeof(p), "%s/config.yaml", r->dir);
        FILE *f = fopen(p, "w");
        if (f) {
            fputs(sp->config_yaml, f);
            fclose(f);
        }
        snprintf(p, sizeof(p), "%s/perf_log.tsv", r->dir);
        r->perf_ok = wl_perflog_open(&r->perf, p, sp->agent_id,
                                     sp->interval_ns ? sp->interval_ns : 1000000000ull) == 0;
    }

    rx_engine_opts_t eo;
    rx_engine_opts_init(&eo);
    eo.cores = r->agt->o.cores ? r->agt->o.cores : rx_cpu_count();
    if ((rc = rx_engine_create(&eo, &eng)) != 0 || (rc = rx_engine_start(eng)) != 0) {
        snprintf(final_text, sizeof(final_text), "cannot start the reactor: %s", rx_strerror(rc));
        send_error(r, rc, -1, 1, "%s", final_text);
        final = SAI3BENCH__AGENT_STATE__AGENT_STATE_FAILED;
        goto out;
    }
    wl_run_opts_t ro = {0};
    ro.cfg = &cfg;
    ro.engine = eng;
    ro.seed = sp->seed ? sp->seed
                       : (rx_wall_ns() ^ ((uint64_t)getpid() << 32) ^
                          ((uint64_t)sp->agent_index * 0x9e3779b97f4a7c15ull));
    ro.tick_ns = sp->interval_ns ? sp->interval_ns : 1000000000ull;
    /* shared storage: split the prepared sets by index; own storage: every agent has them all */
    ro.agent_index = sp->shared_filesystem ? sp->agent_index : 0;
    ro.agent_count = sp->shared_filesystem ? sp->agent_count : 1;
    ro.cb.ud = r;
    ro.cb.on_tick = on_tick;
    ro.cb.on_message = on_wl_message;
    rc = wl_run_create(&ro, &wl);
    if (rc) {
        snprintf(final_text, sizeof(final_text), "%s",
                 wl && wl_run_error_text(wl)[0] ? wl_run_error_text(wl) : rx_strerror(rc));
        send_error(r, rc, -1, 1, "%s", final_text);
        final = SAI3BENCH__AGENT_STATE__AGENT_STATE_FAILED;
        goto out;
    }
    pthread_mutex_lock(&r->mu);
    r->wl = wl;
    if (aborted(r))
        wl_run_abort(wl);
    pthread_mutex_unlock(&r->mu);
    send_state(r, SAI3BENCH__AGENT_STATE__AGENT_STATE_READY, -1, NULL, 0);

    for (size_t i = 0; i < sp->n_stages; i++) {
        const Sai3bench__StageSpec *st = sp->stages[i];
        cmd_t *c = next_cmd(r);
        if (!c) {
            final = SAI3BENCH__AGENT_STATE__AGENT_STATE_ABORTED;
            snprintf(final_text, sizeof(final_text), "%s", r->abort_reason);
            last_stage = -1;
            goto out;
        }
        if (c->stage != i) {
            snprintf(final_text, sizeof(final_text),
                     "protocol error: StageStart(%u) while stage %zu was next", c->stage, i);
            free(c);
            send_error(r, 0, (int)i, 1, "%s", final_text);
            final = SAI3BENCH__AGENT_STATE__AGENT_STATE_FAILED;
            goto out;
        }
        int64_t at = c->start_at;
        free(c);
        if (at && wait_until(r, at) != 0) {
            final = SAI3BENCH__AGENT_STATE__AGENT_STATE_ABORTED;
            snprintf(final_text, sizeof(final_text), "%s", r->abort_reason);
            goto out;
        }
        r->cur_stage = (int)i;
        last_stage = (int)i;
        r->seq = 0;
        r->timed_out = 0;
        r->stage_timeout_ns = st->timeout_ns;
        r->stage_start_wall = app_wall_ns();
        r->stage_start_mono = rx_now_ns();
        r->cpu_stage_ok = wl_cpu_read(&r->cpu_stage0) == 0;
        if (r->cpu_stage_ok) {
            r->cpu_prev = r->cpu_stage0;
            r->cpu_ok = 1;
        }
        send_state(r, SAI3BENCH__AGENT_STATE__AGENT_STATE_RUNNING, (int)i, st->name, r->stage_start_wall);

        Sai3bench__StageSummary sum = SAI3BENCH__STAGE_SUMMARY__INIT;
        Sai3bench__PrepareCounts pc = SAI3BENCH__PREPARE_COUNTS__INIT;
        Sai3bench__CpuUsage cpu = SAI3BENCH__CPU_USAGE__INIT;
        char tail[4096] = "";
        int src = 0;
        char stext[1024] = "";
        if (st->type == SAI3BENCH__STAGE_TYPE__STAGE_TYPE_CUSTOM) {
            int ec = run_command(r, st, tail, sizeof(tail));
            sum.exit_code = ec;
            sum.output_tail = tail;
            if (ec < 0) {
                src = ec;
                snprintf(stext, sizeof(stext), "stage '%s': cannot run '%s': %s", st->name,
                         st->command, strerror(-ec));
            } else if (ec != 0) {
                src = WL_EPREPARE; /* any failure code: the text says what */
                snprintf(stext, sizeof(stext), "stage '%s': '%s' exited with status %d%s",
                         st->name, st->command, ec,
                         r->timed_out ? " (killed: stage timeout)" : "");
            }
            if (aborted(r))
                src = WL_EABORTED;
            /* a command reports no ops: one last empty interval closes the stage's stream */
            Sai3bench__AgentMsg m = SAI3BENCH__AGENT_MSG__INIT;
            Sai3bench__IntervalStats iv = SAI3BENCH__INTERVAL_STATS__INIT;
            iv.stage_index = (uint32_t)i;
            iv.seq = ++r->seq;
            iv.elapsed_ns = rx_now_ns() - r->stage_start_mono;
            iv.interval_ns = iv.elapsed_ns;
            iv.wall_unix_ns = app_wall_ns();
            iv.last = 1;
            m.body_case = SAI3BENCH__AGENT_MSG__BODY_INTERVAL;
            m.interval = &iv;
            send_msg(r, &m);
        } else {
            wl_phase_t ph = stage_phase(st->type);
            if (ph == WL_PHASE_PREPARE)
                src = wl_run_prepare(wl);
            else if (ph == WL_PHASE_CLEANUP)
                src = wl_run_cleanup(wl);
            else {
                wl_run_set_duration(wl, st->duration_ns);
                src = wl_run_execute(wl);
            }
            if (src)
                snprintf(stext, sizeof(stext), "stage '%s': %s", st->name,
                         r->timed_out ? "stage timeout reached"
                         : wl_run_error_text(wl)[0] ? wl_run_error_text(wl)
                                                    : rx_strerror(src));
            const wl_stats_t *ws = wl_run_stats(wl, ph);
            if (ws && app_stats_to_pb(ws, &sum.ops, &sum.n_ops) != 0)
                sum.n_ops = 0;
            sum.wall_ns = wl_run_wall_ns(wl, ph);
            if (ph == WL_PHASE_PREPARE) {
                const wl_prepare_summary_t *ps = wl_run_prepare_summary(wl);
                pc.created = ps->created;
                pc.existed = ps->existed;
                pc.failed = ps->failed;
                pc.bytes = ps->bytes_created;
                sum.prepare = &pc;
                if (ws) {
                    char p[600];
                    snprintf(p, sizeof(p), "%s/prepare_results.tsv", r->dir);
                    wl_results_write_tsv_file(p, ws, sum.wall_ns, 1);
                }
            } else if (ph == WL_PHASE_EXECUTE && ws) {
                wl_stats_merge(&exec_total, ws);
                exec_wall += sum.wall_ns;
                nexec++;
            }
        }
        if (r->timed_out && !aborted(r) && !src)
            src = WL_EABORTED;
        int64_t end = app_wall_ns();
        if (!sum.wall_ns)
            sum.wall_ns = rx_now_ns() - r->stage_start_mono;
        sum.stage_index = (uint32_t)i;
        sum.stage_name = st->name;
        sum.start_unix_ns = r->stage_start_wall;
        sum.end_unix_ns = end;
        sum.partial = src != 0;
        wl_cpu_sample_t now;
        if (r->cpu_stage_ok && wl_cpu_read(&now) == 0) {
            cpu_fill(&cpu, &r->cpu_stage0, &now);
            sum.cpu = &cpu;
        }
        Sai3bench__AgentMsg m = SAI3BENCH__AGENT_MSG__INIT;
        m.body_case = SAI3BENCH__AGENT_MSG__BODY_SUMMARY;
        m.summary = &sum;
        /* a failure report goes before the summary (ordering rule 7) */
        int user_abort = src == WL_EABORTED && aborted(r) && !r->timed_out;
        if (src && !user_abort)
            send_error(r, src, (int)i, st->optional ? 0 : 1, "%s",
                       stext[0] ? stext : rx_strerror(src));
        send_msg(r, &m);
        app_pb_ops_free(sum.ops, sum.n_ops);
        if (user_abort) {
            final = SAI3BENCH__AGENT_STATE__AGENT_STATE_ABORTED;
            snprintf(final_text, sizeof(final_text), "%s", r->abort_reason);
            goto out;
        }
        if (src && !st->optional) {
            final = SAI3BENCH__AGENT_STATE__AGENT_STATE_FAILED;
            snprintf(final_text, sizeof(final_text), "%s", stext);
            goto out;
        }
        send_state(r, SAI3BENCH__AGENT_STATE__AGENT_STATE_STAGE_DONE, (int)i, NULL, end);
    }
    last_stage = -1;

out:
    if (nexec && r->dir[0]) {
        char p[600];
        snprintf(p, sizeof(p), "%s/results.tsv", r->dir);
        wl_results_write_tsv_file(p, &exec_total, exec_wall, 0);
    }
    if (r->perf_ok)
        wl_perflog_close(&r->perf);
    r->perf_ok = 0;
    if (r->dir[0])
        write_status(r,
                     final == SAI3BENCH__AGENT_STATE__AGENT_STATE_DONE      ? "SUCCESS"
                     : final == SAI3BENCH__AGENT_STATE__AGENT_STATE_ABORTED ? "ABORTED"
                                                                : "FAILURE",
                     final_text);
    send_state(r, final, final == SAI3BENCH__AGENT_STATE__AGENT_STATE_DONE ? -1 : last_stage, final_text, 0);
    pthread_mutex_lock(&r->mu);
    r->wl = NULL;
    pthread_mutex_unlock(&r->mu);
    wl_run_destroy(wl);
    if (eng)
        rx_engine_destroy(eng);
    if (cfg_ok)
        wl_config_free(&cfg);
    wl_stats_free(&exec_total);
    unapply_env(r);
    post(r, NULL, 0); /* finished */
    return NULL;
}

/* ---------------------------------------------------------------- loop side -------------- */

static void run_abort(agt_run_t *r, const char *reason)
{
    pthread_mutex_lock(&r->mu);
    if (!atomic_load(&r->aborted)) {
        snprintf(r->abort_reason, sizeof(r->abort_reason), "%s", reason);
        atomic_store(&r->aborted, 1);
        rx_log(RX_LOG_WARN, LOGS, "run %s: aborting: %s", r->spec->run_id, reason);
    }
    if (r->wl)
        wl_run_abort(r->wl);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void run_free(agt_run_t *r)
{
    while (r->cmds) {
        cmd_t *c = r->cmds;
        r->cmds = c->next;
        free(c);
    }
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    if (r->spec)
        sai3bench__run_spec__free_unpacked(r->spec, NULL);
    free(r);
}

static void on_async(uv_async_t *h)
{
    agt_t *a = h->data;
    for (;;) {
        pthread_mutex_lock(&a->omu);
        outmsg_t *m = a->out_head;
        if (m) {
            a->out_head = m->next;
            if (!a->out_head)
                a->out_tail = &a->out_head;
        }
        pthread_mutex_unlock(&a->omu);
        if (!m)
            break;
        agt_run_t *r = m->run;
        if (m->buf) {
            if (r->call)
                rpc_scall_send(r->call, m->buf, m->len);
            free(m->buf);
        } else {
            /* the runner finished: join it, end the stream, back to idle */
            pthread_join(r->thread, NULL);
            if (r->call) {
                rpc_scall_t *c = r->call;
                r->call = NULL;
                r->rcall->r = NULL; /* the call's context must forget the run freed below */
                r->rcall->refused = 1; /* and ignore whatever still arrives */
                rpc_scall_finish(c, RPC_STATUS_OK, NULL);
            }
            rx_log(RX_LOG_INFO, LOGS, "run %s: finished; results in %s; idle",
                   r->spec->run_id, r->dir[0] ? r->dir : "(none)");
            if (a->active == r)
                a->active = NULL;
            run_free(r);
            if (a->on_idle) {
                void (*f)(void *) = a->on_idle;
                a->on_idle = NULL;
                f(a->on_idle_ud);
            }
        }
        free(m);
    }
}

/* ---------------------------------------------------------------- auth ------------------- */

static int token_ok(agt_t *a, rpc_scall_t *c)
{
    if (!a->o.token[0])
        return 1;
    const char *h = rpc_scall_header(c, "authorization");
    char want[600];
    snprintf(want, sizeof(want), "Bearer %s", a->o.token);
    size_t wl = strlen(want), hl = h ? strlen(h) : 0;
    unsigned diff = (unsigned)(wl ^ hl);
    for (size_t i = 0; i < wl; i++)
        diff |= (unsigned)(want[i] ^ (i < hl ? h[i] : 0));
    if (diff == 0)
        return 1;
    rx_log(RX_LOG_WARN, LOGS, "%s from %s refused: %s token", rpc_scall_path(c),
           rpc_scall_peer(c), h ? "wrong" : "missing");
    rpc_scall_finish(c, RPC_STATUS_UNAUTHENTICATED,
                     h ? "wrong auth token" : "missing auth token (authorization: Bearer ...)");
    return 0;
}

/* ---------------------------------------------------------------- unary calls ------------ */

typedef struct unary {
    agt_t *a;
    int is_abort;
    uint8_t *req;
    size_t len;
    int got;
} unary_t;

static void unary_msg(rpc_scall_t *c, const uint8_t *msg, size_t len, void *ud)
{
    unary_t *u = ud;
    if (u->got++) {
        rpc_scall_finish(c, RPC_STATUS_INVALID_ARGUMENT, "unary method got a second message");
        return;
    }
    u->req = malloc(len ? len : 1);
    if (u->req) {
        memcpy(u->req, msg, len);
        u->len = len;
    }
}

static const char *schemes[] = {"file", "direct", "s3"};

static void ping_reply(agt_t *a, rpc_scall_t *c, const Sai3bench__PingRequest *rq, int64_t t1)
{
    Sai3bench__PingReply rp = SAI3BENCH__PING_REPLY__INIT;
    char host[256] = "", plat[512] = "";
    gethostname(host, sizeof(host) - 1);
    struct utsname un;
    if (uname(&un) == 0)
        snprintf(plat, sizeof(plat), "%s %s %s", un.sysname, un.release, un.machine);
    rp.version = (char *)SAI3_VERSION;
    rp.protocol_version = APP_PROTOCOL_VERSION;
    rp.hostname = host;
    rp.cores = (uint32_t)(a->o.cores ? a->o.cores : rx_cpu_count());
    rp.echo_controller_send_unix_ns = rq->controller_send_unix_ns;
    rp.agent_recv_unix_ns = t1;
    agt_run_t *r = a->active;
    rp.busy = r != NULL;
    rp.run_id = r ? r->spec->run_id : (char *)"";
    rp.agent_id = r ? r->spec->agent_id : (char *)"";
    rp.state = r ? (Sai3bench__AgentState)atomic_load(&r->state) : SAI3BENCH__AGENT_STATE__AGENT_STATE_IDLE;
    rp.platform = plat;
    rp.schemes = (char **)schemes;
    rp.n_schemes = sizeof(schemes) / sizeof(schemes[0]);
    rp.agent_start_unix_ns = a->start_ns;
    rp.agent_send_unix_ns = app_wall_ns();
    size_t len;
    uint8_t *b = app_pack(&rp.base, &len);
    if (!b) {
        rpc_scall_finish(c, RPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    rpc_scall_send(c, b, len);
    free(b);
    rpc_scall_finish(c, RPC_STATUS_OK, NULL);
}

static void unary_half_close(rpc_scall_t *c, void *ud)
{
    unary_t *u = ud;
    agt_t *a = u->a;
    int64_t t1 = app_wall_ns();
    if (u->got != 1 || !u->req) {
        rpc_scall_finish(c, RPC_STATUS_INVALID_ARGUMENT, "unary method needs exactly one message");
        return;
    }
    if (!u->is_abort) {
        Sai3bench__PingRequest *rq = sai3bench__ping_request__unpack(NULL, u->len, u->req);
        if (!rq) {
            rpc_scall_finish(c, RPC_STATUS_INVALID_ARGUMENT, "malformed PingRequest");
            return;
        }
        rx_log(RX_LOG_DEBUG, LOGS, "Ping from %s (controller %s)", rpc_scall_peer(c),
               rq->controller_version);
        ping_reply(a, c, rq, t1);
        sai3bench__ping_request__free_unpacked(rq, NULL);
        return;
    }
    Sai3bench__AbortRequest *rq = sai3bench__abort_request__unpack(NULL, u->len, u->req);
    if (!rq) {
        rpc_scall_finish(c, RPC_STATUS_INVALID_ARGUMENT, "malformed AbortRequest");
        return;
    }
    Sai3bench__AbortReply rp = SAI3BENCH__ABORT_REPLY__INIT;
    agt_run_t *r = a->active;
    if (r && (!rq->run_id[0] || !strcmp(rq->run_id, r->spec->run_id))) {
        char why[300];
        snprintf(why, sizeof(why), "Abort RPC from %s: %s", rpc_scall_peer(c),
                 rq->reason[0] ? rq->reason : "no reason given");
        run_abort(r, why);
        rp.aborted = 1;
    }
    rp.run_id = r ? r->spec->run_id : (char *)"";
    rp.state = r ? (Sai3bench__AgentState)atomic_load(&r->state) : SAI3BENCH__AGENT_STATE__AGENT_STATE_IDLE;
    size_t len;
    uint8_t *b = app_pack(&rp.base, &len);
    if (b) {
        rpc_scall_send(c, b, len);
        free(b);
    }
    rpc_scall_finish(c, RPC_STATUS_OK, NULL);
    sai3bench__abort_request__free_unpacked(rq, NULL);
}

static void unary_end(rpc_scall_t *c, int status, void *ud)
{
    (void)c;
    (void)status;
    unary_t *u = ud;
    free(u->req);
    free(u);
}

static void unary_open(rpc_scall_t *c, agt_t *a, int is_abort)
{
    if (!token_ok(a, c))
        return;
    unary_t *u = calloc(1, sizeof(*u));
    if (!u) {
        rpc_scall_finish(c, RPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    u->a = a;
    u->is_abort = is_abort;
    static const rpc_scall_cb_t cb = {unary_msg, unary_half_close, unary_end};
    rpc_scall_accept(c, &cb, u);
}

static void h_ping(rpc_scall_t *c, void *ud)
{
    unary_open(c, ud, 0);
}

static void h_abort(rpc_scall_t *c, void *ud)
{
    unary_open(c, ud, 1);
}

/* ---------------------------------------------------------------- Run stream ------------- */

typedef struct runcall runcall_t;

static void run_msg(rpc_scall_t *c, const uint8_t *msg, size_t len, void *ud)
{
    runcall_t *rc = ud;
    agt_t *a = rc->a;
    if (rc->refused)
        return;
    Sai3bench__ControllerMsg *m = sai3bench__controller_msg__unpack(NULL, len, msg);
    if (!m) {
        rc->refused = 1;
        if (rc->r)
            run_abort(rc->r, "malformed message from the controller");
        else
            rpc_scall_finish(c, RPC_STATUS_INVALID_ARGUMENT, "malformed ControllerMsg");
        return;
    }
    if (!rc->r) {
        if (m->body_case != SAI3BENCH__CONTROLLER_MSG__BODY_RUN_SPEC) {
            rc->refused = 1;
            rpc_scall_finish(c, RPC_STATUS_INVALID_ARGUMENT,
                             "the first message of a Run stream must be a RunSpec");
            goto done;
        }
        if (a->active || a->shutting_down) {
            char t[300];
            snprintf(t, sizeof(t), a->shutting_down ? "agent is shutting down"
                                                    : "busy with run %s",
                     a->active ? a->active->spec->run_id : "");
            rc->refused = 1;
            rx_log(RX_LOG_WARN, LOGS, "Run from %s refused: %s", rpc_scall_peer(c), t);
            rpc_scall_finish(c, RPC_STATUS_FAILED_PRECONDITION, t);
            goto done;
        }
        agt_run_t *r = calloc(1, sizeof(*r));
        if (!r) {
            rc->refused = 1;
            rpc_scall_finish(c, RPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
            goto done;
        }
        r->agt = a;
        r->call = c;
        r->spec = m->run_spec;
        m->run_spec = NULL; /* keep it: detach from the message */
        m->body_case = SAI3BENCH__CONTROLLER_MSG__BODY__NOT_SET;
        r->plaintext = !rpc_scall_is_tls(c);
        pthread_mutex_init(&r->mu, NULL);
        pthread_cond_init(&r->cv, NULL);
        r->cmds_tail = &r->cmds;
        atomic_init(&r->aborted, 0);
        atomic_init(&r->state, SAI3BENCH__AGENT_STATE__AGENT_STATE_PREPARING);
        r->cur_stage = -1;
        if (!r->spec->agent_id || !r->spec->agent_id[0] || strchr(r->spec->agent_id, '/') ||
            strstr(r->spec->agent_id, "..")) {
            rc->refused = 1;
            rpc_scall_finish(c, RPC_STATUS_INVALID_ARGUMENT,
                             "RunSpec.agent_id must be a non-empty name without '/'");
            r->call = NULL;
            run_free(r);
            goto done;
        }
        rx_log(RX_LOG_INFO, LOGS, "run %s from %s: agent %s (%u of %u), %zu stage(s)%s",
               r->spec->run_id, rpc_scall_peer(c), r->spec->agent_id, r->spec->agent_index + 1,
               r->spec->agent_count, r->spec->n_stages, r->plaintext ? ", plaintext" : ", TLS");
        a->active = r;
        a->runs_started++;
        rc->r = r;
        r->rcall = rc;
        if (pthread_create(&r->thread, NULL, runner, r) != 0) {
            a->active = NULL;
            rc->r = NULL;
            rc->refused = 1;
            r->call = NULL;
            run_free(r);
            rpc_scall_finish(c, RPC_STATUS_RESOURCE_EXHAUSTED, "cannot start the run thread");
            goto done;
        }
        r->thread_ok = 1;
        goto done;
    }
    agt_run_t *r = rc->r;
    switch (m->body_case) {
    case SAI3BENCH__CONTROLLER_MSG__BODY_STAGE_START: {
        cmd_t *cm = calloc(1, sizeof(*cm));
        if (!cm) {
            run_abort(r, "out of memory");
            break;
        }
        cm->stage = m->stage_start->stage_index;
        cm->start_at = m->stage_start->start_at_unix_ns;
        pthread_mutex_lock(&r->mu);
        *r->cmds_tail = cm;
        r->cmds_tail = &cm->next;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        break;
    }
    case SAI3BENCH__CONTROLLER_MSG__BODY_BARRIER_RELEASE:
        rx_log(RX_LOG_DEBUG, LOGS, "run %s: barrier after stage %u released (%zu passed, %zu "
               "dropped)", r->spec->run_id, m->barrier_release->stage_index,
               m->barrier_release->n_passed, m->barrier_release->n_dropped);
        break;
    case SAI3BENCH__CONTROLLER_MSG__BODY_ABORT: {
        char why[300];
        snprintf(why, sizeof(why), "controller: %s",
                 m->abort->reason[0] ? m->abort->reason : "abort");
        run_abort(r, why);
        break;
    }
    default:
        run_abort(r, "protocol error: a second RunSpec or an empty message");
        break;
    }
done:
    sai3bench__controller_msg__free_unpacked(m, NULL);
}

static void run_half_close(rpc_scall_t *c, void *ud)
{
    (void)c;
    runcall_t *rc = ud;
    if (!rc->r && !rc->refused)
        rpc_scall_finish(c, RPC_STATUS_INVALID_ARGUMENT, "Run stream closed without a RunSpec");
}

static void run_end(rpc_scall_t *c, int status, void *ud)
{
    (void)c;
    runcall_t *rc = ud;
    agt_run_t *r = rc->r;
    if (r && r->call) {
        /* the controller went away (reset, keepalive timeout, connection lost) */
        r->call = NULL;
        char why[200];
        snprintf(why, sizeof(why), "controller connection ended: %s", rpc_strerror(status));
        run_abort(r, why);
    }
    free(rc);
}

static void h_run(rpc_scall_t *c, void *ud)
{
    agt_t *a = ud;
    if (!token_ok(a, c))
        return;
    runcall_t *rc = calloc(1, sizeof(*rc));
    if (!rc) {
        rpc_scall_finish(c, RPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    rc->a = a;
    static const rpc_scall_cb_t cb = {run_msg, run_half_close, run_end};
    rpc_scall_accept(c, &cb, rc);
}

/* ---------------------------------------------------------------- lifecycle -------------- */

int agt_create(uv_loop_t *loop, rpc_server_t *srv, const agt_opts_t *o, agt_t **out)
{
    agt_t *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->loop = loop;
    a->srv = srv;
    a->o = *o;
    a->start_ns = app_wall_ns();
    a->out_tail = &a->out_head;
    pthread_mutex_init(&a->omu, NULL);
    int rc = uv_async_init(loop, &a->async, on_async);
    if (rc) {
        free(a);
        return rc;
    }
    a->async.data = a;
    if ((rc = rpc_server_add_method(srv, APP_METHOD_PING, h_ping, a)) ||
        (rc = rpc_server_add_method(srv, APP_METHOD_RUN, h_run, a)) ||
        (rc = rpc_server_add_method(srv, APP_METHOD_ABORT, h_abort, a))) {
        uv_close((uv_handle_t *)&a->async, NULL);
        *out = NULL;
        return rc;
    }
    *out = a;
    return 0;
}

uint64_t agt_runs_started(const agt_t *a)
{
    return a->runs_started;
}

int agt_busy(const agt_t *a)
{
    return a->active != NULL;
}

void agt_shutdown(agt_t *a, const char *reason, void (*on_idle)(void *), void *ud)
{
    a->shutting_down = 1;
    if (!a->active) {
        on_idle(ud);
        return;
    }
    a->on_idle = on_idle;
    a->on_idle_ud = ud;
    run_abort(a->active, reason);
}

static void async_closed(uv_handle_t *h)
{
    agt_t *a = h->data;
    while (a->out_head) {
        outmsg_t *m = a->out_head;
        a->out_head = m->next;
        free(m->buf);
        free(m);
    }
    pthread_mutex_destroy(&a->omu);
    free(a);
}

void agt_destroy(agt_t *a)
{
    if (!a)
        return;
    uv_close((uv_handle_t *)&a->async, async_closed);
}
