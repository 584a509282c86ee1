/* sai3bench-ctl internals. Everything here runs on the main (control) thread unless noted. */
#ifndef CTL_H
#define CTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "wl/config.h"
#include "wl/run.h"
#include "wl/stats.h"

typedef struct ctl_opts {
    int verbose;
    int cores;            /* 0 = all available */
    const char *config;
    int dry_run;
    int prepare_only;
    int skip_prepare;
    int no_cleanup;
    int cleanup_only;
    const char *results_parent; /* default "." */
    const char *tsv_name;       /* replaces the config stem in the results dir name */
    /* distributed runs and ping */
    const char *agents;         /* --agents h1:p,h2:p (replaces distributed.agents) */
    const char *agent_ca;       /* --agent-ca FILE: TLS, agents verified against this CA */
    int tls;                    /* --tls */
    int start_delay_set;        /* --start-delay given */
    uint64_t start_delay_ns;
    int argc;
    char **argv;
} ctl_opts_t;

/* console.c — stdout mirrored into console_log.txt once the results dir exists */
void ctl_console_init(int verbose);
int ctl_console_open_log(const char *path);
void ctl_console_close_log(void);
int ctl_console_is_tty(void);
void ctl_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A transient status line (progress bar) on a TTY; cleared by the next ctl_out. */
void ctl_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ctl_status_clear(void);

/* run_cmd.c */
int ctl_cmd_run(const ctl_opts_t *o);
int ctl_cmd_validate(const ctl_opts_t *o);
/* Loads a config, printing every diagnostic. Returns 0 or 2. */
int ctl_load_config(const char *path, wl_config_t *cfg);

/* run_cmd.c — output shared by the in-process and the distributed run. */
/* 1234567 -> "1,234,567" */
void ctl_fmt_count(uint64_t v, char *buf, size_t len);
/* "dir/mixed.yaml" -> "mixed" */
void ctl_config_stem(const char *path, char *out, size_t len);
/* The live line of an execute phase: live holds what completed over live_ns, elapsed_ns is the
 * time since the phase started; classes_used[c] != 0 for the classes the workload has. suffix
 * (NULL = none) is appended, e.g. " (2 of 3 agents)". */
void ctl_print_live(const wl_stats_t *live, uint64_t live_ns, uint64_t elapsed_ns,
                    const int classes_used[WL_CLASS__COUNT], const char *suffix);
/* The progress status of a prepare/cleanup phase: done of total objects, ops over live_ns. */
void ctl_print_progress(const char *phase, uint64_t done, uint64_t total, uint64_t ops,
                        uint64_t live_ns);
/* The summary table of an execute phase (or stage). */
void ctl_print_summary(const char *title, const wl_stats_t *s, uint64_t wall_ns, int open_loop);
/* The error kinds of a prepare or cleanup phase, labelled by op. */
void ctl_print_phase_errors(const wl_stats_t *st);

/* util_cmd.c — `util <sub> URI [options]`; argv holds the arguments after "util". Returns the
 * exit status: 0 ok, 1 an operation failed, 2 bad usage. */
int ctl_cmd_util(const ctl_opts_t *o, int argc, char **argv);

/* sshsetup_cmd.c — `ssh-setup [options]`; argv holds the arguments after "ssh-setup". Returns the
 * exit status: 0 every host ready, 1 any host failed, 2 bad usage. */
int ctl_cmd_ssh_setup(const ctl_opts_t *o, int argc, char **argv);

/* ------------------------------------------------------------------------------------------- */
/* dist.c — distributed runs over sai3bench-agent processes (gRPC, proto/sai3bench.proto).      */

/* 1 when `run` must drive agents: the config has a distributed: block or --agents was given. */
int ctl_dist_wanted(const ctl_opts_t *o, const wl_config_t *cfg);
/* The distributed run. cfg is loaded (borrowed). Exit status: 0 every agent DONE, 1 an agent
 * failed / was lost / unreachable or the run failed, 2 usage or config, 130 interrupted. */
int ctl_dist_run(const ctl_opts_t *o, const wl_config_t *cfg);
/* `ping`: agents from --agents or the config's distributed.agents. 0 all answered, 1 any failed,
 * 2 usage or config. */
int ctl_cmd_ping(const ctl_opts_t *o);
/* validate/--dry-run of a distributed config: prints the agents and stages (no network).
 * Returns 0, or 2 when the distributed settings cannot run. */
int ctl_dist_validate(const ctl_opts_t *o, const wl_config_t *cfg);

/* dist_plan.c — the pure parts of the distributed run (unit-tested in test/unit/ctl). */

/* One agent of the run, resolved from distributed.agents or --agents. Strings owned. */
typedef struct ctl_agent_spec {
    char *id;
    char *address; /* as written */
    char *host;    /* without brackets */
    int port;
    char *target_override;         /* NULL = none */
    uint32_t concurrency_override; /* 0 = none */
    char *tls_fingerprint;         /* per-agent pin (NULL = distributed.tls.fingerprint) */
} ctl_agent_spec_t;

/* Agents of the run: agents_flag ("h1:p,h2,[::1]:7000"; ids agent-1..N) replaces the config's
 * list when given (*replaced = 1 if the config had one). Returns 0 with a malloc'd array (free
 * with ctl_agent_specs_free), or -EINVAL (err explains: bad address, no agents) / -ENOMEM. */
int ctl_agent_specs(const wl_config_t *cfg, const char *agents_flag, ctl_agent_spec_t **out,
                    size_t *n, int *replaced, char *err, size_t errlen);
void ctl_agent_specs_free(ctl_agent_spec_t *v, size_t n);

/* One stage as sent in RunSpec.stages. Strings borrowed from the config (or static). */
typedef struct ctl_stage {
    const char *name;
    wl_stage_type_t type;
    uint64_t duration_ns; /* execute: as configured, 0 = the config's duration */
    const char *command;  /* custom */
    char *const *args;
    size_t nargs;
    uint64_t timeout_ns;
    int optional;
    uint64_t expected_objects; /* prepare/cleanup: for progress only, 0 = unknown */
} ctl_stage_t;

/* The stage list: distributed.stages when given, else prepare (config has
 * prepare.ensure_objects), execute (workload has ops), cleanup (prepare.cleanup). The flags
 * filter both: --skip-prepare drops prepare stages, --prepare-only keeps only prepare stages,
 * --cleanup-only keeps only cleanup stages (adding the default one when the list has none),
 * --no-cleanup drops cleanup stages. Returns 0 with a malloc'd array (n >= 1), or -EINVAL with
 * err (nothing to run, execute stage without workload, prepare stage without
 * prepare.ensure_objects) / -ENOMEM. */
int ctl_dist_stages(const wl_config_t *cfg, const ctl_opts_t *o, ctl_stage_t **out, size_t *n,
                    char *err, size_t errlen);
const char *ctl_stage_type_name(wl_stage_type_t t); /* "prepare", "execute", ... */

/* distributed.shared_filesystem resolved: the value when given, else 1 when the target and every
 * prepare base URI (those present) are object-store URIs (s3://, az://, gs://), else 0. */
int ctl_dist_shared_fs(const wl_config_t *cfg);

/* Checks the distributed settings the controller cannot honour. Returns 0 or -EINVAL (err). */
int ctl_dist_check(const wl_config_t *cfg, char *err, size_t errlen);

/* The barrier rule at a stage boundary. total: agents the run started with; arrived: agents
 * still in the run that reached the barrier; pending: agents still in the run that have not (yet);
 * failed: agents that left the run so far (failed, lost, dropped at a timeout).
 *   best_effort:    pass when nobody is pending and someone arrived; fail when nobody is left.
 *   all_or_nothing: fail as soon as any agent failed; pass when all arrived.
 *   majority:       fail once arrived + pending <= total / 2; pass when nobody is pending.
 * Agents that miss distributed.barrier_timeout are dropped (failed) by the caller, which then
 * evaluates again. */
typedef enum ctl_barrier_verdict {
    CTL_BARRIER_WAIT = 0,
    CTL_BARRIER_PASS,
    CTL_BARRIER_FAIL,
} ctl_barrier_verdict_t;

ctl_barrier_verdict_t ctl_barrier_eval(wl_barrier_rule_t rule, size_t total, size_t arrived,
                                       size_t pending, size_t failed);
const char *ctl_barrier_rule_name(wl_barrier_rule_t r);

/* Merging the agents' IntervalStats into one line per (stage, seq). A slot is ready when every
 * agent expected for it delivered, or wait_ns after its first arrival; slots come out in (stage,
 * seq) order. An agent is expected for (stage, seq) while it is in the run, has not moved on to
 * a later stage and has not ended this stage (last = true) at an earlier seq. */
typedef struct ctl_live_slot {
    uint32_t stage;
    uint64_t seq;
    wl_stats_t stats;   /* exact merge of the deltas */
    uint8_t *from;      /* [nagents]: 1 = delivered */
    size_t nfrom;       /* how many delivered */
    size_t nexpected;   /* agents expected when the slot came out */
    uint64_t first_ns;  /* monotonic time of the first arrival */
    uint64_t elapsed_ns, interval_ns; /* max over the agents */
    int64_t wall_ns;    /* max over the agents, controller clock */
    uint64_t progress_done, progress_total, in_flight; /* sums */
    int last;           /* some agent ended the stage with this interval */
} ctl_live_slot_t;

typedef struct ctl_live {
    size_t nagents, nstages;
    uint8_t *in_run;       /* [nagents] */
    int64_t *cur_stage;    /* [nagents] latest stage seen, -1 = none */
    uint64_t *end_seq;     /* [nagents] seq that ended cur_stage, 0 = not ended */
    uint64_t *printed;     /* [nstages] highest seq that came out */
    ctl_live_slot_t *slots;
    size_t nslots, cap;
    uint64_t wait_ns;
    uint64_t late;         /* intervals that arrived after their slot came out */
} ctl_live_t;

int ctl_live_init(ctl_live_t *l, size_t nagents, size_t nstages, uint64_t wait_ns);
void ctl_live_free(ctl_live_t *l);
/* Adds agent's interval (stage, seq >= 1) arriving at now_ns. Returns 0, 1 when it is ignored
 * (the agent is out of the run, the slot already came out, or the stage is out of range), or
 * -ENOMEM. */
int ctl_live_add(ctl_live_t *l, size_t agent, uint32_t stage, uint64_t seq,
                 const wl_stats_t *delta, uint64_t elapsed_ns, uint64_t interval_ns,
                 int64_t wall_ns, uint64_t progress_done, uint64_t progress_total,
                 uint64_t in_flight, int last, uint64_t now_ns);
/* The agent began `stage` (RUNNING): it is no longer expected for earlier stages. */
void ctl_live_agent_stage(ctl_live_t *l, size_t agent, uint32_t stage);
/* The agent left the run: nobody waits for it any more. */
void ctl_live_agent_gone(ctl_live_t *l, size_t agent);
/* Takes out the next ready slot (1; the caller owns *out and frees it with
 * ctl_live_slot_free), or returns 0. Slots of stages <= force_upto are ready whatever their
 * state (-1: none; INT64_MAX: all, at the end of the run). */
int ctl_live_pop(ctl_live_t *l, uint64_t now_ns, int64_t force_upto, ctl_live_slot_t *out);
void ctl_live_slot_free(ctl_live_slot_t *s);

/* A growing string: appends never fail visibly; oom sticks and the caller checks it at the end
 * (then frees p). */
typedef struct ctl_sb {
    char *p;
    size_t len, cap;
    int oom;
} ctl_sb_t;
void ctl_sb_printf(ctl_sb_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clock offset of one Ping sample (agent - controller) and its round trip, ns. */
void ctl_clock_sample(int64_t t0, int64_t t1, int64_t t2, int64_t t3, int64_t *offset,
                      int64_t *rtt);

/* The agents and stages of a distributed config as text (validate / --dry-run); extra (NULL =
 * none) is inserted before the stage list. malloc'd, NULL on ENOMEM. */
char *ctl_dist_describe(const wl_config_t *cfg, const ctl_agent_spec_t *agents, size_t nagents,
                        int replaced, const ctl_stage_t *stages, size_t nstages,
                        const char *extra);

/* ------------------------------------------------------------------------------------------- */
/* deploy.c — agents started and stopped over SSH for a run (distributed.ssh.enabled). Called on
 * the main thread; each call runs one thread per agent (blocking libssh2 sessions, apps/ctl/ssh.h)
 * and returns when all are done. Nothing here prints: the caller reports per agent. */
typedef struct ctl_deploy ctl_deploy_t;

/* agents: the run's agents (borrowed; must outlive dp). token: what the agents must require
 * (NULL = none). tls_auto: start them with --tls and pin what their logs show. */
int ctl_deploy_create(const wl_config_t *cfg, const ctl_agent_spec_t *agents, size_t n,
                      const char *run_id, const char *token, int tls_auto, ctl_deploy_t **out);
/* Starts every agent in parallel and waits until each listens, failed, or *cancel became
 * non-zero. Returns how many are not listening. */
size_t ctl_deploy_start(ctl_deploy_t *dp, const volatile int *cancel);
/* Agent i after start: NULL when it listens, else why not. */
const char *ctl_deploy_error(const ctl_deploy_t *dp, size_t i);
/* What start did on agent i: "pid 1234" / "container sai3bench-agent-a1" ("" if nothing). */
const char *ctl_deploy_what(const ctl_deploy_t *dp, size_t i);
/* The TLS fingerprint agent i printed (tls_auto), or NULL. */
const char *ctl_deploy_fingerprint(const ctl_deploy_t *dp, size_t i);
/* The agent's command line as started (no secrets), for the log. */
const char *ctl_deploy_command(const ctl_deploy_t *dp, size_t i);
/* Stops, in parallel, every agent that start launched (also those that failed later), by the
 * pid or container name it got; reconnects when a session died. *cancel is only checked between
 * steps that are bounded anyway. Returns how many could not be confirmed stopped. */
size_t ctl_deploy_stop(ctl_deploy_t *dp, const volatile int *cancel);
/* Agent i after stop: "stopped", "had exited", "killed after 10 s", ... NULL if it was never
 * started. */
const char *ctl_deploy_stop_text(const ctl_deploy_t *dp, size_t i);
/* 1 when agent i was launched and not yet stopped. */
int ctl_deploy_launched(const ctl_deploy_t *dp, size_t i);
void ctl_deploy_free(ctl_deploy_t *dp);

/* ------------------------------------------------------------------------------------------- */
/* deploy_plan.c — the shell scripts that start, probe and stop one agent on its host over SSH
 * (distributed.ssh / distributed.deployment). Pure: unit-tested in test/unit/ctl. Each script is
 * fed to `sh -s` on stdin, so nothing of it (environment values, the token) appears in any
 * process's arguments on the agent host, except `docker run`'s own arguments (no values: env goes
 * through an --env-file that is removed right after the start). Every script prints one status
 * line first:
 *   start:  "SAI3_STARTED <pid or container name> <log offset>" | "SAI3_FAILED <why>"
 *   probe:  "SAI3_READY" (then the agent's log lines after the offset) | "SAI3_WAIT" |
 *           "SAI3_EXITED" (then the last 20 log lines)
 *   stop:   "SAI3_STOPPED" | "SAI3_KILLED" (did not stop within 10 s of SIGTERM) | "SAI3_GONE"
 *           (had exited already) | "SAI3_NOTOURS" (that pid is now another program: untouched) */
typedef struct ctl_deploy_spec {
    const wl_dist_cfg_t *dist; /* ssh and deployment settings */
    const char *agent_id;
    const char *run_id;
    int port;                  /* listen port */
    int ipv6;                  /* listen on [::] instead of 0.0.0.0 */
    const wl_kv_t *env;        /* the agent's own env (wins over deployment.env) */
    size_t nenv;
    char *const *volumes;      /* docker */
    size_t nvolumes;
    const char *token;         /* auth token the agent must require (NULL = none) */
    int tls_auto;              /* start with --tls (certificate made on the host; pinned from the
                                  fingerprint its log shows) */
} ctl_deploy_spec_t;

/* malloc'd scripts (NULL on ENOMEM). handle and log_off come from the start script's line. */
char *ctl_deploy_start_script(const ctl_deploy_spec_t *s);
char *ctl_deploy_probe_script(const ctl_deploy_spec_t *s, const char *handle, long long log_off);
char *ctl_deploy_stop_script(const ctl_deploy_spec_t *s, const char *handle);
/* The container name of an agent: "sai3bench-agent-<id>". */
void ctl_deploy_container_name(const char *agent_id, char *out, size_t len);
/* The agent's command line (argv joined with single spaces, shell-quoted where needed) as the
 * start script runs it: for `type: docker` the whole `docker run ...` line. For display and
 * tests; holds no environment values. malloc'd. */
char *ctl_deploy_command_line(const ctl_deploy_spec_t *s);
/* Parses the first line of a script's output: *status gets the word after "SAI3_" (e.g.
 * "STARTED"), rest (may be NULL) the remainder of that line, next the text after it. Returns 0
 * or -EINVAL when the output has no SAI3_ line (then *status is ""). */
int ctl_deploy_parse(const char *out, char *status, size_t slen, char *rest, size_t rlen,
                     const char **next);

#endif
