/* sai3bench-ctl: agents started and stopped over SSH for a run (see ctl.h). One thread per agent,
 * each with its own blocking libssh2 session (ssh.h); the scripts come from deploy_plan.c. */
#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "ssh.h"

typedef struct dagent {
    ctl_deploy_t *dp;
    size_t idx;
    const ctl_agent_spec_t *spec;
    const wl_agent_cfg_t *acfg; /* the config's entry (env, volumes), NULL with --agents */
    ctl_deploy_spec_t ds;
    ctl_ssh_t *ssh;
    pthread_t th;
    int th_ok;
    const volatile int *cancel;
    /* start */
    int launched, listening, stopped;
    char handle[160];
    long long log_off;
    char what[200];
    char fp[100];
    char *cmdline;
    char err[900];
    /* stop */
    int stop_ok;
    char stop_text[300];
} dagent_t;

struct ctl_deploy {
    const wl_config_t *cfg;
    dagent_t *ag;
    size_t n;
    char user[128];
    char *key;
    char *known;
    int timeout_ms;
    char *run_id;
    char *token;
};

int ctl_deploy_create(const wl_config_t *cfg, const ctl_agent_spec_t *agents, size_t n,
                      const char *run_id, const char *token, int tls_auto, ctl_deploy_t **out)
{
    *out = NULL;
    ctl_deploy_t *dp = calloc(1, sizeof(*dp));
    if (!dp)
        return -ENOMEM;
    dp->cfg = cfg;
    dp->n = n;
    dp->ag = calloc(n ? n : 1, sizeof(*dp->ag));
    dp->run_id = strdup(run_id ? run_id : "-");
    dp->token = token ? strdup(token) : NULL;
    if (!dp->ag || !dp->run_id || (token && !dp->token)) {
        ctl_deploy_free(dp);
        return -ENOMEM;
    }
    const wl_ssh_cfg_t *sc = &cfg->dist.ssh;
    if (sc->user) {
        snprintf(dp->user, sizeof(dp->user), "%s", sc->user);
    } else {
        const char *u = getenv("USER");
        struct passwd *pw = getpwuid(getuid());
        snprintf(dp->user, sizeof(dp->user), "%s", u && *u ? u : pw ? pw->pw_name : "root");
    }
    dp->key = ctl_ssh_expand_path(sc->key_path ? sc->key_path : "~/.ssh/sai3bench_id_rsa");
    dp->known = ctl_ssh_expand_path(sc->known_hosts ? sc->known_hosts : "~/.ssh/known_hosts");
    if (!dp->key || !dp->known) {
        ctl_deploy_free(dp);
        return -ENOMEM;
    }
    dp->timeout_ms = (int)(sc->timeout_ns / 1000000ULL);
    if (dp->timeout_ms < 100)
        dp->timeout_ms = 100;
    for (size_t i = 0; i < n; i++) {
        dagent_t *a = &dp->ag[i];
        a->dp = dp;
        a->idx = i;
        a->spec = &agents[i];
        for (size_t j = 0; j < cfg->dist.nagents; j++)
            if (cfg->dist.agents[j].id && !strcmp(cfg->dist.agents[j].id, agents[i].id))
                a->acfg = &cfg->dist.agents[j];
        a->ds.dist = &cfg->dist;
        a->ds.agent_id = agents[i].id;
        a->ds.run_id = dp->run_id;
        a->ds.port = agents[i].port;
        a->ds.ipv6 = strchr(agents[i].host, ':') != NULL;
        if (a->acfg) {
            a->ds.env = a->acfg->env;
            a->ds.nenv = a->acfg->nenv;
            a->ds.volumes = a->acfg->volumes;
            a->ds.nvolumes = a->acfg->nvolumes;
        }
        a->ds.token = dp->token;
        a->ds.tls_auto = tls_auto;
        a->cmdline = ctl_deploy_command_line(&a->ds);
        if (!a->cmdline) {
            ctl_deploy_free(dp);
            return -ENOMEM;
        }
    }
    *out = dp;
    return 0;
}

static int cancelled(const dagent_t *a)
{
    return a->cancel && *a->cancel;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A session to the agent's host, authenticated with the key. */
static int open_session(dagent_t *a, char *err, size_t errlen)
{
    ctl_deploy_t *dp = a->dp;
    ctl_ssh_opts_t o;
    memset(&o, 0, sizeof(o));
    o.host = a->spec->host;
    o.port = dp->cfg->dist.ssh.port;
    o.user = dp->user;
    o.known_hosts = dp->known;
    o.hostkey_policy = CTL_SSH_HOSTKEY_STRICT;
    o.timeout_ms = dp->timeout_ms;
    o.cancel = a->cancel;
    ctl_ssh_t *s = NULL;
    int rc = ctl_ssh_connect(&o, &s, err, errlen);
    if (rc)
        return rc;
    char e[600] = "";
    rc = ctl_ssh_auth_key(s, dp->key, e, sizeof(e));
    if (rc) {
        if (rc == -EACCES || rc == -ENOENT) {
            char port[32] = "";
            if (dp->cfg->dist.ssh.port != 22)
                snprintf(port, sizeof(port), " --port %d", dp->cfg->dist.ssh.port);
            snprintf(err, errlen, "%s; set up passwordless SSH with: sai3bench-ctl ssh-setup --hosts "
                     "%s@%s%s --key-path %s",
                     e[0] ? e : "authentication with the key failed", dp->user, a->spec->host, port,
                     dp->key);
        }
        else
            snprintf(err, errlen, "%s", e[0] ? e : strerror(-rc));
        ctl_ssh_close(s);
        return rc;
    }
    a->ssh = s;
    return 0;
}

/* Runs script with `sh -s` on the agent's session; *out is malloc'd. */
static int run_script(dagent_t *a, const char *script, char **out, char *err, size_t errlen)
{
    int status = -1;
    char *eo = NULL;
    *out = NULL;
    int rc = ctl_ssh_exec(a->ssh, "sh -s", script, strlen(script), out, &eo, &status, err, errlen);
    if (rc == 0 && status != 0) {
        snprintf(err, errlen, "the remote shell failed (exit %d): %.300s", status,
                 eo && eo[0] ? eo : (*out ? *out : ""));
        rc = -EPROTO;
    }
    free(eo);
    if (rc) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

/* Copies the first n lines of text into out, joined with " | ". */
static void lines_joined(const char *text, char *out, size_t len)
{
    size_t o = 0;
    out[0] = 0;
    for (const char *p = text; *p && o + 4 < len;) {
        size_t l = strcspn(p, "\n");
        if (l) {
            if (o)
                o += (size_t)snprintf(out + o, len - o, " | ");
            if (o < len)
                o += (size_t)snprintf(out + o, len - o, "%.*s", (int)l, p);
        }
        p += l;
        if (*p)
            p++;
    }
    if (o >= len)
        out[len - 1] = 0;
}

static void *start_thread(void *arg)
{
    dagent_t *a = arg;
    ctl_deploy_t *dp = a->dp;
    char e[800] = "";
    if (open_session(a, e, sizeof(e)) != 0) {
        snprintf(a->err, sizeof(a->err), "%s", e);
        return NULL;
    }
    char *script = ctl_deploy_start_script(&a->ds), *out = NULL;
    if (!script) {
        snprintf(a->err, sizeof(a->err), "out of memory");
        return NULL;
    }
    int rc = run_script(a, script, &out, e, sizeof(e));
    free(script);
    if (rc) {
        snprintf(a->err, sizeof(a->err), "starting the agent: %s", e);
        return NULL;
    }
    char st[32], rest[600];
    const char *next;
    if (ctl_deploy_parse(out, st, sizeof(st), rest, sizeof(rest), &next) != 0) {
        snprintf(a->err, sizeof(a->err), "starting the agent: unexpected output: %.300s", out);
        free(out);
        return NULL;
    }
    free(out);
    if (strcmp(st, "STARTED") != 0) {
        snprintf(a->err, sizeof(a->err), "%s", rest[0] ? rest : "the agent did not start");
        return NULL;
    }
    char h[160];
    long long off = 0;
    if (sscanf(rest, "%159s %lld", h, &off) < 1) {
        snprintf(a->err, sizeof(a->err), "starting the agent: unexpected output: %.300s", rest);
        return NULL;
    }
    snprintf(a->handle, sizeof(a->handle), "%s", h);
    a->log_off = off;
    a->launched = 1;
    if (dp->cfg->dist.deploy.type == WL_DEPLOY_DOCKER)
        snprintf(a->what, sizeof(a->what), "container %s", h);
    else
        snprintf(a->what, sizeof(a->what), "pid %s", h);

    /* wait until it listens */
    int wait_ms = dp->timeout_ms < 5000 ? 5000 : dp->timeout_ms;
    uint64_t until = now_ms() + (uint64_t)wait_ms;
    char *probe = ctl_deploy_probe_script(&a->ds, a->handle, a->log_off);
    if (!probe) {
        snprintf(a->err, sizeof(a->err), "out of memory");
        return NULL;
    }
    for (;;) {
        if (cancelled(a)) {
            snprintf(a->err, sizeof(a->err), "interrupted while waiting for the agent to listen");
            break;
        }
        rc = run_script(a, probe, &out, e, sizeof(e));
        if (rc) {
            snprintf(a->err, sizeof(a->err), "waiting for the agent to listen: %s", e);
            break;
        }
        if (ctl_deploy_parse(out, st, sizeof(st), rest, sizeof(rest), &next) != 0) {
            snprintf(a->err, sizeof(a->err), "waiting for the agent: unexpected output: %.300s",
                     out);
            free(out);
            break;
        }
        if (!strcmp(st, "READY")) {
            const char *f = strstr(next, "SHA-256 fingerprint: ");
            if (f) {
                f += strlen("SHA-256 fingerprint: ");
                size_t l = strcspn(f, " \r\n");
                if (l < sizeof(a->fp))
                    snprintf(a->fp, sizeof(a->fp), "%.*s", (int)l, f);
            }
            free(out);
            if (a->ds.tls_auto && !a->fp[0]) {
                snprintf(a->err, sizeof(a->err),
                         "the agent listens but its log shows no TLS fingerprint");
                break;
            }
            a->listening = 1;
            break;
        }
        if (!strcmp(st, "EXITED")) {
            char tail[600];
            lines_joined(next, tail, sizeof(tail));
            snprintf(a->err, sizeof(a->err), "the agent exited at start: %s",
                     tail[0] ? tail : "(its log is empty)");
            free(out);
            break;
        }
        free(out);
        if (now_ms() > until) {
            snprintf(a->err, sizeof(a->err),
                     "the agent did not report listening within %d ms (see its log on the host)",
                     wait_ms);
            break;
        }
        sleep_ms(150);
    }
    free(probe);
    return NULL;
}

static void *stop_thread(void *arg)
{
    dagent_t *a = arg;
    char e[800] = "";
    char *script = ctl_deploy_stop_script(&a->ds, a->handle), *out = NULL;
    if (!script) {
        snprintf(a->stop_text, sizeof(a->stop_text), "out of memory");
        return NULL;
    }
    int rc = -ENOTCONN;
    char first[800] = "";
    for (int attempt = 0; attempt < 2 && rc; attempt++) {
        if (!a->ssh || attempt > 0) {
            /* the start session died (or never was): a new one */
            ctl_ssh_close(a->ssh);
            a->ssh = NULL;
            if ((rc = open_session(a, e, sizeof(e))) != 0)
                continue;
        }
        rc = run_script(a, script, &out, e, sizeof(e));
        if (rc && !first[0])
            snprintf(first, sizeof(first), "%s", e);
    }
    if (rc && first[0] && strcmp(first, e) != 0) {
        char both[800];
        snprintf(both, sizeof(both), "%s; then %s", first, e);
        snprintf(e, sizeof(e), "%s", both);
    }
    free(script);
    if (rc) {
        snprintf(a->stop_text, sizeof(a->stop_text), "could not be stopped (%s): stop %s by hand",
                 e, a->what);
        return NULL;
    }
    char st[32], rest[300];
    const char *next;
    if (ctl_deploy_parse(out, st, sizeof(st), rest, sizeof(rest), &next) != 0) {
        snprintf(a->stop_text, sizeof(a->stop_text), "unexpected output from the stop script: %.200s",
                 out);
    } else if (!strcmp(st, "STOPPED")) {
        a->stop_ok = 1;
        snprintf(a->stop_text, sizeof(a->stop_text), "stopped");
    } else if (!strcmp(st, "GONE")) {
        a->stop_ok = 1;
        snprintf(a->stop_text, sizeof(a->stop_text), "had exited already");
    } else if (!strcmp(st, "KILLED")) {
        a->stop_ok = 1;
        snprintf(a->stop_text, sizeof(a->stop_text), "killed (did not stop within 10 s of SIGTERM)");
    } else if (!strcmp(st, "NOTOURS")) {
        a->stop_ok = 1;
        snprintf(a->stop_text, sizeof(a->stop_text),
                 "had exited already (its pid now belongs to another program, left alone)");
    } else {
        snprintf(a->stop_text, sizeof(a->stop_text), "unexpected stop status %s", st);
    }
    free(out);
    a->stopped = 1;
    return NULL;
}

/* Runs fn on a thread for each agent that wants it and joins them all. */
static void each_parallel(ctl_deploy_t *dp, int (*want)(const dagent_t *), void *(*fn)(void *),
                          const volatile int *cancel)
{
    for (size_t i = 0; i < dp->n; i++) {
        dagent_t *a = &dp->ag[i];
        a->cancel = cancel;
        a->th_ok = 0;
        if (!want(a))
            continue;
        if (pthread_create(&a->th, NULL, fn, a) == 0)
            a->th_ok = 1;
        else
            fn(a); /* no thread: do it here */
    }
    for (size_t i = 0; i < dp->n; i++)
        if (dp->ag[i].th_ok) {
            pthread_join(dp->ag[i].th, NULL);
            dp->ag[i].th_ok = 0;
        }
}

static int want_start(const dagent_t *a)
{
    (void)a;
    return 1;
}

static int want_stop(const dagent_t *a)
{
    return a->launched && !a->stopped;
}

size_t ctl_deploy_start(ctl_deploy_t *dp, const volatile int *cancel)
{
    each_parallel(dp, want_start, start_thread, cancel);
    size_t bad = 0;
    for (size_t i = 0; i < dp->n; i++)
        bad += !dp->ag[i].listening;
    return bad;
}

size_t ctl_deploy_stop(ctl_deploy_t *dp, const volatile int *cancel)
{
    each_parallel(dp, want_stop, stop_thread, cancel);
    size_t bad = 0;
    for (size_t i = 0; i < dp->n; i++)
        if (dp->ag[i].launched && !dp->ag[i].stop_ok)
            bad++;
    return bad;
}

const char *ctl_deploy_error(const ctl_deploy_t *dp, size_t i)
{
    const dagent_t *a = &dp->ag[i];
    if (a->listening)
        return NULL;
    return a->err[0] ? a->err : "not started";
}

const char *ctl_deploy_what(const ctl_deploy_t *dp, size_t i)
{
    return dp->ag[i].what;
}

const char *ctl_deploy_fingerprint(const ctl_deploy_t *dp, size_t i)
{
    return dp->ag[i].fp[0] ? dp->ag[i].fp : NULL;
}

const char *ctl_deploy_command(const ctl_deploy_t *dp, size_t i)
{
    return dp->ag[i].cmdline;
}

const char *ctl_deploy_stop_text(const ctl_deploy_t *dp, size_t i)
{
    return dp->ag[i].launched ? dp->ag[i].stop_text : NULL;
}

int ctl_deploy_launched(const ctl_deploy_t *dp, size_t i)
{
    return dp->ag[i].launched && !dp->ag[i].stopped;
}

void ctl_deploy_free(ctl_deploy_t *dp)
{
    if (!dp)
        return;
    for (size_t i = 0; dp->ag && i < dp->n; i++) {
        ctl_ssh_close(dp->ag[i].ssh);
        free(dp->ag[i].cmdline);
    }
    free(dp->ag);
    free(dp->key);
    free(dp->known);
    free(dp->run_id);
    if (dp->token) {
        memset(dp->token, 0, strlen(dp->token));
        free(dp->token);
    }
    free(dp);
}
