/* sai3bench-ctl: the shell scripts that start, probe and stop one agent on its host over SSH
 * (see ctl.h). Pure string building: no I/O. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

/* ---------------------------------------------------------------- strings ----------------- */

typedef ctl_sb_t sb_t;
#define sb_f ctl_sb_printf

static void sb_s(sb_t *b, const char *s)
{
    ctl_sb_printf(b, "%s", s);
}

/* s single-quoted for a POSIX shell; words made only of safe characters stay bare. */
static void sb_q(sb_t *b, const char *s)
{
    int safe = *s != 0;
    for (const char *c = s; *c && safe; c++)
        safe = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=@,+%",
                      *c) != NULL;
    if (safe) {
        sb_s(b, s);
        return;
    }
    sb_s(b, "'");
    for (const char *c = s; *c; c++) {
        if (*c == '\'')
            sb_s(b, "'\\''");
        else
            ctl_sb_printf(b, "%c", *c);
    }
    sb_s(b, "'");
}

static char *sb_done(sb_t *b)
{
    if (b->oom || !b->p) {
        free(b->p);
        return NULL;
    }
    return b->p;
}

/* A path for the remote shell: "~/x" and "~" become "$HOME"/'x'; others are quoted. */
static void sb_path(sb_t *b, const char *p)
{
    if (!strcmp(p, "~")) {
        sb_s(b, "\"$HOME\"");
    } else if (!strncmp(p, "~/", 2)) {
        sb_s(b, "\"$HOME\"/");
        if (p[2])
            sb_q(b, p + 2);
    } else {
        sb_q(b, p);
    }
}

/* ---------------------------------------------------------------- common pieces ----------- */

void ctl_deploy_container_name(const char *agent_id, char *out, size_t len)
{
    snprintf(out, len, "sai3bench-agent-%s", agent_id);
}

static int is_docker(const ctl_deploy_spec_t *s)
{
    return s->dist->deploy.type == WL_DEPLOY_DOCKER;
}

static const char *runtime(const ctl_deploy_spec_t *s)
{
    return s->dist->deploy.runtime ? s->dist->deploy.runtime : "docker";
}

static const char *image(const ctl_deploy_spec_t *s)
{
    return s->dist->deploy.image ? s->dist->deploy.image : "sai3bench:latest";
}

static const char *netmode(const ctl_deploy_spec_t *s)
{
    return s->dist->deploy.network_mode ? s->dist->deploy.network_mode : "host";
}

/* The shell prologue every script starts with: strict-ish mode, a PATH that finds binaries in
 * the usual places, the log file, and alive() (a zombie counts as gone). */
static void prologue(sb_t *b, const ctl_deploy_spec_t *s)
{
    sb_s(b, "set -u\n"
            "PATH=\"$PATH:/usr/local/bin:/usr/local/sbin:/usr/sbin:/sbin:$HOME/.local/bin\"\n"
            "export PATH\n");
    sb_s(b, "LOGDIR=");
    sb_path(b, s->dist->deploy.log_dir ? s->dist->deploy.log_dir : "~/sai3-logs");
    sb_s(b, "\nLOG=\"$LOGDIR\"/");
    char name[300];
    snprintf(name, sizeof(name), "agent-%s.log", s->agent_id);
    sb_q(b, name);
    sb_s(b, "\n");
    sb_s(b, "TOKDIR=\"$HOME/.sai3bench\"\nTOK=\"$TOKDIR\"/");
    snprintf(name, sizeof(name), "agent-%s.token", s->agent_id);
    sb_q(b, name);
    sb_s(b, "\n");
    sb_s(b, "alive() {\n"
            "  if command -v ps >/dev/null 2>&1; then\n"
            "    st=$(ps -o stat= -p \"$1\" 2>/dev/null) || return 1\n"
            "    case \"$st\" in ''|Z*) return 1 ;; esac\n"
            "    return 0\n"
            "  fi\n"
            "  kill -0 \"$1\" 2>/dev/null\n"
            "}\n");
}

static void listen_arg(sb_t *b, const ctl_deploy_spec_t *s)
{
    sb_f(b, "--listen %s:%d", s->ipv6 ? "[::]" : "0.0.0.0", s->port);
}

/* The agent's arguments after the binary (or image). tokpath: how the token file is named in
 * this context ("\"$TOK\"" on the host, "/run/sai3bench/token" in a container). */
static void agent_args(sb_t *b, const ctl_deploy_spec_t *s, const char *tokpath,
                       const char *statedir)
{
    listen_arg(b, s);
    sb_s(b, " --exit-on-disconnect");
    if (s->tls_auto) {
        sb_s(b, " --tls");
        if (statedir) {
            sb_s(b, " --state-dir ");
            sb_s(b, statedir);
        }
    }
    if (s->token) {
        sb_s(b, " --auth-token-file ");
        sb_s(b, tokpath);
    }
    for (size_t i = 0; i < s->dist->deploy.nagent_args; i++) {
        sb_s(b, " ");
        sb_q(b, s->dist->deploy.agent_args[i]);
    }
}

/* Environment: deployment.env then the agent's own (which wins). emit(b, key, value). */
static void each_env(const ctl_deploy_spec_t *s, sb_t *b,
                     void (*emit)(sb_t *, const char *, const char *))
{
    const wl_deploy_cfg_t *dp = &s->dist->deploy;
    for (size_t i = 0; i < dp->nenv; i++) {
        int overridden = 0;
        for (size_t j = 0; j < s->nenv && !overridden; j++)
            overridden = s->env[j].key && dp->env[i].key && !strcmp(s->env[j].key, dp->env[i].key);
        if (!overridden && dp->env[i].key && dp->env[i].value)
            emit(b, dp->env[i].key, dp->env[i].value);
    }
    for (size_t j = 0; j < s->nenv; j++)
        if (s->env[j].key && s->env[j].value)
            emit(b, s->env[j].key, s->env[j].value);
}

static void emit_export(sb_t *b, const char *k, const char *v)
{
    sb_f(b, "%s=", k);
    sb_q(b, v);
    sb_f(b, "; export %s\n", k);
}

static void emit_envfile(sb_t *b, const char *k, const char *v)
{
    /* docker --env-file: one NAME=value per line, taken literally (no quotes, no newlines) */
    sb_s(b, "printf '%s\\n' ");
    char *kv = malloc(strlen(k) + strlen(v) + 2);
    if (!kv) {
        b->oom = 1;
        return;
    }
    sprintf(kv, "%s=%s", k, v);
    for (char *c = kv; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    sb_q(b, kv);
    free(kv);
    sb_s(b, " >> \"$ENVF\"\n");
}

static void emit_dash_e(sb_t *b, const char *k, const char *v)
{
    (void)v;
    sb_f(b, " -e %s", k);
}

/* `docker run ...` words (the env only by name: values come from the env file). */
static void docker_run_words(sb_t *b, const ctl_deploy_spec_t *s, int with_envfile)
{
    const wl_deploy_cfg_t *dp = &s->dist->deploy;
    char name[300];
    ctl_deploy_container_name(s->agent_id, name, sizeof(name));
    sb_q(b, runtime(s));
    sb_s(b, " run -d --name ");
    sb_q(b, name);
    sb_s(b, " --network ");
    sb_q(b, netmode(s));
    if (strcmp(netmode(s), "host") != 0)
        sb_f(b, " -p %d:%d", s->port, s->port);
    if (with_envfile)
        sb_s(b, " --env-file \"$ENVF\"");
    else
        each_env(s, b, emit_dash_e);
    if (s->token) {
        sb_s(b, " -v ");
        if (with_envfile)
            sb_s(b, "\"$TOK\":/run/sai3bench/token:ro");
        else
            sb_f(b, "~/.sai3bench/agent-%s.token:/run/sai3bench/token:ro", s->agent_id);
    }
    for (size_t i = 0; i < dp->nvolumes; i++) {
        sb_s(b, " -v ");
        sb_q(b, dp->volumes[i]);
    }
    for (size_t i = 0; i < s->nvolumes; i++) {
        sb_s(b, " -v ");
        sb_q(b, s->volumes[i]);
    }
    for (size_t i = 0; i < dp->ndocker_args; i++) {
        sb_s(b, " ");
        sb_q(b, dp->docker_args[i]);
    }
    sb_s(b, " ");
    sb_q(b, image(s));
    sb_s(b, " ");
    agent_args(b, s, "/run/sai3bench/token", NULL);
}

char *ctl_deploy_command_line(const ctl_deploy_spec_t *s)
{
    sb_t b = {0};
    if (is_docker(s)) {
        docker_run_words(&b, s, 0);
    } else {
        sb_q(&b, s->dist->deploy.binary_path ? s->dist->deploy.binary_path : "sai3bench-agent");
        sb_s(&b, " ");
        char tok[300];
        snprintf(tok, sizeof(tok), "~/.sai3bench/agent-%s.token", s->agent_id);
        agent_args(&b, s, tok, "~/.sai3bench/tls");
    }
    return sb_done(&b);
}

/* ---------------------------------------------------------------- start ------------------- */

char *ctl_deploy_start_script(const ctl_deploy_spec_t *s)
{
    sb_t b = {0};
    const wl_deploy_cfg_t *dp = &s->dist->deploy;
    prologue(&b, s);
    sb_s(&b, "mkdir -p \"$LOGDIR\" 2>/dev/null || { echo \"SAI3_FAILED cannot create $LOGDIR\"; "
             "exit 0; }\n"
             "touch \"$LOG\" 2>/dev/null || { echo \"SAI3_FAILED cannot write $LOG\"; exit 0; }\n");
    if (s->token) {
        sb_s(&b, "( umask 077; mkdir -p \"$TOKDIR\" && printf '%s\\n' ");
        sb_q(&b, s->token);
        sb_s(&b, " > \"$TOK\" ) || { echo \"SAI3_FAILED cannot write $TOK\"; exit 0; }\n");
    }
    sb_s(&b, "printf '=== %s sai3bench-ctl run %s starts agent %s ===\\n' \"$(date -u "
             "+%Y-%m-%dT%H:%M:%SZ)\" ");
    sb_q(&b, s->run_id ? s->run_id : "-");
    sb_s(&b, " ");
    sb_q(&b, s->agent_id);
    sb_s(&b, " >> \"$LOG\"\n"
             "OFF=$(wc -c < \"$LOG\")\nOFF=$((OFF + 0))\n"); /* the probe reads after this */
    if (!is_docker(s)) {
        sb_s(&b, "BIN=");
        sb_path(&b, dp->binary_path ? dp->binary_path : "sai3bench-agent");
        sb_s(&b, "\nif ! command -v \"$BIN\" >/dev/null 2>&1; then\n"
                 "  echo \"SAI3_FAILED $BIN not found on $(hostname) (PATH=$PATH): install "
                 "sai3bench-agent there or set distributed.deployment.binary_path\"\n"
                 "  exit 0\nfi\n");
        each_env(s, &b, emit_export);
        sb_s(&b, "nohup \"$BIN\" ");
        agent_args(&b, s, "\"$TOK\"", "\"$HOME/.sai3bench/tls\"");
        sb_s(&b, " >> \"$LOG\" 2>&1 < /dev/null &\n"
                 "echo \"SAI3_STARTED $! $OFF\"\n");
        return sb_done(&b);
    }
    /* a container */
    char name[300];
    ctl_deploy_container_name(s->agent_id, name, sizeof(name));
    sb_s(&b, "RT=");
    sb_q(&b, runtime(s));
    sb_s(&b, "\nNAME=");
    sb_q(&b, name);
    sb_s(&b, "\nIMG=");
    sb_q(&b, image(s));
    sb_s(&b, "\nif ! command -v \"$RT\" >/dev/null 2>&1; then\n"
             "  echo \"SAI3_FAILED $RT not found on $(hostname) (PATH=$PATH)\"; exit 0\nfi\n");
    sb_s(&b, "if \"$RT\" container inspect \"$NAME\" >/dev/null 2>&1; then\n"
             "  echo \"SAI3_FAILED a container named $NAME exists already on $(hostname) (not "
             "started by this run: remove it with $RT rm -f $NAME)\"; exit 0\nfi\n");
    if (dp->pull_policy == WL_PULL_ALWAYS)
        sb_s(&b, "\"$RT\" pull \"$IMG\" >> \"$LOG\" 2>&1 || { echo \"SAI3_FAILED $RT pull $IMG "
                 "failed (see $LOG)\"; exit 0; }\n");
    else if (dp->pull_policy == WL_PULL_IF_NOT_PRESENT)
        sb_s(&b, "\"$RT\" image inspect \"$IMG\" >/dev/null 2>&1 || \"$RT\" pull \"$IMG\" >> "
                 "\"$LOG\" 2>&1 || { echo \"SAI3_FAILED $RT pull $IMG failed (see $LOG)\"; exit "
                 "0; }\n");
    sb_s(&b, "ENVF=\"$TOKDIR\"/");
    char ef[320];
    snprintf(ef, sizeof(ef), "agent-%s.env", s->agent_id);
    sb_q(&b, ef);
    sb_s(&b, "\n( umask 077; mkdir -p \"$TOKDIR\" && : > \"$ENVF\" ) || { echo \"SAI3_FAILED "
             "cannot write $ENVF\"; exit 0; }\n");
    each_env(s, &b, emit_envfile);
    sb_s(&b, "ERR=$(");
    docker_run_words(&b, s, 1);
    sb_s(&b, " 2>&1 >/dev/null)\nRC=$?\nrm -f \"$ENVF\"\n"
             "if [ $RC -ne 0 ]; then echo \"SAI3_FAILED $RT run failed: $ERR\"; exit 0; fi\n"
             "echo \"SAI3_STARTED $NAME 0\"\n");
    return sb_done(&b);
}

/* ---------------------------------------------------------------- probe ------------------- */

char *ctl_deploy_probe_script(const ctl_deploy_spec_t *s, const char *handle, long long log_off)
{
    sb_t b = {0};
    prologue(&b, s);
    if (!is_docker(s)) {
        sb_s(&b, "PID=");
        sb_q(&b, handle);
        sb_f(&b, "\nOFF=%lld\n", log_off);
        sb_s(&b, "if alive \"$PID\"; then\n"
                 "  if tail -c +$((OFF + 1)) \"$LOG\" | grep -q 'sai3bench-agent listening'; "
                 "then\n"
                 "    echo SAI3_READY; tail -c +$((OFF + 1)) \"$LOG\" | head -n 50\n"
                 "  else echo SAI3_WAIT; fi\n"
                 "else\n"
                 "  echo SAI3_EXITED; tail -c +$((OFF + 1)) \"$LOG\" | tail -n 20\n"
                 "fi\n");
        return sb_done(&b);
    }
    sb_s(&b, "RT=");
    sb_q(&b, runtime(s));
    sb_s(&b, "\nNAME=");
    sb_q(&b, handle);
    sb_s(&b, "\nif [ \"$(\"$RT\" container inspect -f '{{.State.Running}}' \"$NAME\" "
             "2>/dev/null)\" = true ]; then\n"
             "  if \"$RT\" logs \"$NAME\" 2>&1 | grep -q 'sai3bench-agent listening'; then\n"
             "    echo SAI3_READY; \"$RT\" logs \"$NAME\" 2>&1 | head -n 50\n"
             "  else echo SAI3_WAIT; fi\n"
             "else\n"
             "  echo SAI3_EXITED; \"$RT\" logs --tail 20 \"$NAME\" 2>&1\n"
             "fi\n");
    return sb_done(&b);
}

/* ---------------------------------------------------------------- stop -------------------- */

char *ctl_deploy_stop_script(const ctl_deploy_spec_t *s, const char *handle)
{
    sb_t b = {0};
    prologue(&b, s);
    if (!is_docker(s)) {
        sb_s(&b, "PID=");
        sb_q(&b, handle);
        sb_s(&b, "\nif ! alive \"$PID\"; then rm -f \"$TOK\"; echo SAI3_GONE; exit 0; fi\n"
                 "ARGS=$(ps -o args= -p \"$PID\" 2>/dev/null || tr '\\0' ' ' < /proc/\"$PID\"/cmdline)\n"
                 "case \"$ARGS\" in\n  *--listen*");
        sb_f(&b, ":%d*--exit-on-disconnect*", s->port);
        sb_s(&b, ") ;;\n  *) rm -f \"$TOK\"; echo SAI3_NOTOURS; exit 0 ;;\nesac\n"
                 "kill -TERM \"$PID\" 2>/dev/null\n"
                 "i=0\nwhile alive \"$PID\" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done\n"
                 "if alive \"$PID\"; then kill -KILL \"$PID\" 2>/dev/null; R=SAI3_KILLED; "
                 "else R=SAI3_STOPPED; fi\n"
                 "rm -f \"$TOK\"\n"
                 "{ printf '=== %s sai3bench-ctl stopped the agent ===\\n' \"$(date -u "
                 "+%Y-%m-%dT%H:%M:%SZ)\" >> \"$LOG\"; } 2>/dev/null\n"
                 "echo $R\n");
        return sb_done(&b);
    }
    sb_s(&b, "RT=");
    sb_q(&b, runtime(s));
    sb_s(&b, "\nNAME=");
    sb_q(&b, handle);
    sb_s(&b, "\nrm -f \"$TOK\"\n"
             "if ! \"$RT\" container inspect \"$NAME\" >/dev/null 2>&1; then echo SAI3_GONE; exit "
             "0; fi\n"
             "if [ \"$(\"$RT\" container inspect -f '{{.State.Running}}' \"$NAME\" 2>/dev/null)\" "
             "= true ]; then\n"
             "  \"$RT\" stop -t 10 \"$NAME\" >/dev/null 2>&1; R=SAI3_STOPPED\n"
             "else R=SAI3_GONE; fi\n"
             "mkdir -p \"$LOGDIR\" 2>/dev/null; { \"$RT\" logs \"$NAME\" >> \"$LOG\" 2>&1; } "
             "2>/dev/null\n"
             "\"$RT\" rm -f \"$NAME\" >/dev/null 2>&1\n"
             "echo $R\n");
    return sb_done(&b);
}

/* ---------------------------------------------------------------- output ------------------ */

int ctl_deploy_parse(const char *out, char *status, size_t slen, char *rest, size_t rlen,
                     const char **next)
{
    status[0] = 0;
    if (rest && rlen)
        rest[0] = 0;
    if (next)
        *next = "";
    const char *p = out ? strstr(out, "SAI3_") : NULL;
    /* only at the start of a line */
    while (p && p != out && p[-1] != '\n')
        p = strstr(p + 1, "SAI3_");
    if (!p)
        return -EINVAL;
    p += 5;
    size_t n = strcspn(p, " \n");
    if (n == 0 || n >= slen)
        return -EINVAL;
    memcpy(status, p, n);
    status[n] = 0;
    p += n;
    if (*p == ' ')
        p++;
    size_t r = strcspn(p, "\n");
    if (rest && rlen) {
        size_t c = r < rlen - 1 ? r : rlen - 1;
        memcpy(rest, p, c);
        rest[c] = 0;
    }
    p += r;
    if (*p == '\n')
        p++;
    if (next)
        *next = p;
    return 0;
}
