/* The pure parts of the distributed run: agent and stage lists, the barrier rule, the merge of
 * interval stats into live lines, the clock sample. No I/O, no network (unit-tested). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "wl/units.h"

/* ------------------------------------------------------------------ agents --------------- */

void ctl_agent_specs_free(ctl_agent_spec_t *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++) {
        free(v[i].id);
        free(v[i].address);
        free(v[i].host);
        free(v[i].target_override);
        free(v[i].tls_fingerprint);
    }
    free(v);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int ctl_agent_specs(const wl_config_t *cfg, const char *agents_flag, ctl_agent_spec_t **out,
                    size_t *n, int *replaced, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    *replaced = 0;
    ctl_agent_spec_t *v = NULL;
    size_t k = 0;
    if (agents_flag) {
        *replaced = cfg && cfg->dist.nagents > 0;
        size_t cap = 1;
        for (const char *p = agents_flag; *p; p++)
            if (*p == ',')
                cap++;
        if (!(v = calloc(cap, sizeof(*v))))
            return -ENOMEM;
        const char *p = agents_flag;
        while (1) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            while (len && (*p == ' ' || *p == '\t'))
                p++, len--;
            while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
                len--;
            if (len) {
                char item[512], host[256], e[200];
                int port;
                if (len >= sizeof(item)) {
                    snprintf(err, errlen, "--agents: address too long: '%.40s...'", p);
                    ctl_agent_specs_free(v, k);
                    return -EINVAL;
                }
                memcpy(item, p, len);
                item[len] = 0;
                if (wl_agent_address_parse(item, host, sizeof(host), &port, e, sizeof(e)) != 0) {
                    snprintf(err, errlen, "--agents: %s", e);
                    ctl_agent_specs_free(v, k);
                    return -EINVAL;
                }
                char id[32];
                snprintf(id, sizeof(id), "agent-%zu", k + 1);
                ctl_agent_spec_t *a = &v[k++];
                a->port = port;
                if (!(a->id = strdup(id)) || !(a->address = strdup(item)) ||
                    !(a->host = strdup(host))) {
                    ctl_agent_specs_free(v, k);
                    return -ENOMEM;
                }
            }
            if (!comma)
                break;
            p = comma + 1;
        }
        if (!k) {
            snprintf(err, errlen, "--agents names no agent (want host:port,host:port,...)");
            free(v);
            return -EINVAL;
        }
    } else {
        if (!cfg || !cfg->dist.nagents) {
            snprintf(err, errlen,
                     "no agents: list them under distributed.agents in the config or give "
                     "--agents host:port,host:port");
            return -EINVAL;
        }
        if (!(v = calloc(cfg->dist.nagents, sizeof(*v))))
            return -ENOMEM;
        for (size_t i = 0; i < cfg->dist.nagents; i++) {
            const wl_agent_cfg_t *c = &cfg->dist.agents[i];
            ctl_agent_spec_t *a = &v[k++];
            char id[32];
            snprintf(id, sizeof(id), "agent-%zu", i + 1);
            a->port = c->port ? c->port : WL_AGENT_DEFAULT_PORT;
            a->concurrency_override = c->concurrency_override;
            if (!(a->id = strdup(c->id ? c->id : id)) || !(a->address = dup_or_null(c->address)) ||
                !(a->host = dup_or_null(c->host ? c->host : c->address)) ||
                (c->target_override && !(a->target_override = strdup(c->target_override))) ||
                (c->tls_fingerprint && !(a->tls_fingerprint = strdup(c->tls_fingerprint)))) {
                ctl_agent_specs_free(v, k);
                return -ENOMEM;
            }
            if (!a->address || !a->host) {
                snprintf(err, errlen, "distributed.agents entry %zu has no address", i + 1);
                ctl_agent_specs_free(v, k);
                return -EINVAL;
            }
        }
    }
    *out = v;
    *n = k;
    return 0;
}

/* ------------------------------------------------------------------ stages --------------- */

const char *ctl_stage_type_name(wl_stage_type_t t)
{
    switch (t) {
    case WL_STAGE_PREPARE:
        return "prepare";
    case WL_STAGE_EXECUTE:
        return "execute";
    case WL_STAGE_CLEANUP:
        return "cleanup";
    case WL_STAGE_CUSTOM:
        return "custom";
    }
    return "?";
}

static uint64_t ensure_total(const wl_config_t *cfg)
{
    uint64_t t = 0;
    for (size_t i = 0; i < cfg->prepare.nensure; i++)
        t += cfg->prepare.ensure[i].count;
    return t;
}

static int keep_stage(const ctl_opts_t *o, wl_stage_type_t t)
{
    if (o->prepare_only)
        return t == WL_STAGE_PREPARE;
    if (o->cleanup_only)
        return t == WL_STAGE_CLEANUP;
    if (o->skip_prepare && t == WL_STAGE_PREPARE)
        return 0;
    if (o->no_cleanup && t == WL_STAGE_CLEANUP)
        return 0;
    return 1;
}

static void default_stage(ctl_stage_t *s, const wl_config_t *cfg, wl_stage_type_t t)
{
    memset(s, 0, sizeof(*s));
    s->type = t;
    s->name = ctl_stage_type_name(t);
    if (t == WL_STAGE_PREPARE || t == WL_STAGE_CLEANUP)
        s->expected_objects = ensure_total(cfg);
}

int ctl_dist_stages(const wl_config_t *cfg, const ctl_opts_t *o, ctl_stage_t **out, size_t *n,
                    char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    const wl_dist_cfg_t *d = &cfg->dist;
    size_t cap = (d->nstages ? d->nstages : 0) + 3;
    ctl_stage_t *v = calloc(cap, sizeof(*v));
    if (!v)
        return -ENOMEM;
    size_t k = 0;
    int has_prepare = cfg->prepare.present && cfg->prepare.nensure > 0;
    if (d->nstages) {
        for (size_t i = 0; i < d->nstages; i++) {
            const wl_stage_cfg_t *c = &d->stages[i];
            if (!keep_stage(o, c->type))
                continue;
            ctl_stage_t *s = &v[k++];
            s->name = c->name ? c->name : ctl_stage_type_name(c->type);
            s->type = c->type;
            s->duration_ns = c->duration_ns;
            s->command = c->command;
            s->args = c->args;
            s->nargs = c->nargs;
            s->timeout_ns = c->timeout_ns;
            s->optional = c->optional;
            s->expected_objects = c->expected_objects;
            if (!s->expected_objects &&
                (s->type == WL_STAGE_PREPARE || s->type == WL_STAGE_CLEANUP))
                s->expected_objects = ensure_total(cfg);
        }
        if (!k && o->cleanup_only)
            default_stage(&v[k++], cfg, WL_STAGE_CLEANUP);
    } else {
        if (o->cleanup_only) {
            default_stage(&v[k++], cfg, WL_STAGE_CLEANUP);
        } else {
            if (has_prepare && !o->skip_prepare)
                default_stage(&v[k++], cfg, WL_STAGE_PREPARE);
            if (cfg->nops > 0 && !o->prepare_only)
                default_stage(&v[k++], cfg, WL_STAGE_EXECUTE);
            if (cfg->prepare.present && cfg->prepare.cleanup && !o->no_cleanup && !o->prepare_only)
                default_stage(&v[k++], cfg, WL_STAGE_CLEANUP);
        }
    }
    for (size_t i = 0; i < k; i++) {
        if (v[i].type == WL_STAGE_EXECUTE && cfg->nops == 0) {
            snprintf(err, errlen,
                     "stage '%s' is an execute stage but the config's workload is "
                     "empty",
                     v[i].name);
            free(v);
            return -EINVAL;
        }
        if (v[i].type == WL_STAGE_PREPARE && !has_prepare) {
            snprintf(err, errlen,
                     "stage '%s' is a prepare stage but the config has no "
                     "prepare.ensure_objects",
                     v[i].name);
            free(v);
            return -EINVAL;
        }
    }
    if (!k) {
        snprintf(err, errlen, "nothing to run: no stage is left%s",
                 o->prepare_only   ? " (--prepare-only, but the config prepares nothing)"
                 : o->skip_prepare ? " after --skip-prepare"
                                   : "");
        free(v);
        return -EINVAL;
    }
    *out = v;
    *n = k;
    return 0;
}

/* ------------------------------------------------------------------ settings ------------- */

static int is_object_uri(const char *u)
{
    return !strncmp(u, "s3://", 5) || !strncmp(u, "az://", 5) || !strncmp(u, "gs://", 5);
}

int ctl_dist_shared_fs(const wl_config_t *cfg)
{
    if (cfg->dist.shared_filesystem >= 0)
        return cfg->dist.shared_filesystem != 0;
    int seen = 0;
    if (cfg->target) {
        if (!is_object_uri(cfg->target))
            return 0;
        seen = 1;
    }
    for (size_t i = 0; i < cfg->prepare.nensure; i++) {
        const char *u = cfg->prepare.ensure[i].base_uri;
        if (!u)
            continue;
        if (!is_object_uri(u))
            return 0;
        seen = 1;
    }
    return seen;
}

#define CTL_DEFAULT_PATH_TEMPLATE "agent-{id}/"

int ctl_dist_check(const wl_config_t *cfg, char *err, size_t errlen)
{
    const wl_dist_cfg_t *d = &cfg->dist;
    if (d->path_template && strcmp(d->path_template, CTL_DEFAULT_PATH_TEMPLATE) != 0) {
        snprintf(err, errlen,
                 "distributed.path_template '%s' is not supported yet: agents always use the "
                 "default '" CTL_DEFAULT_PATH_TEMPLATE "' (remove the key or set it to that)",
                 d->path_template);
        return -EINVAL;
    }
    return 0;
}

/* ------------------------------------------------------------------ barrier -------------- */

const char *ctl_barrier_rule_name(wl_barrier_rule_t r)
{
    switch (r) {
    case WL_BARRIER_BEST_EFFORT:
        return "best_effort";
    case WL_BARRIER_ALL_OR_NOTHING:
        return "all_or_nothing";
    case WL_BARRIER_MAJORITY:
        return "majority";
    }
    return "?";
}

ctl_barrier_verdict_t ctl_barrier_eval(wl_barrier_rule_t rule, size_t total, size_t arrived,
                                       size_t pending, size_t failed)
{
    switch (rule) {
    case WL_BARRIER_ALL_OR_NOTHING:
        if (failed > 0 || arrived + pending < total)
            return CTL_BARRIER_FAIL;
        return pending ? CTL_BARRIER_WAIT : CTL_BARRIER_PASS;
    case WL_BARRIER_MAJORITY:
        if ((arrived + pending) * 2 <= total)
            return CTL_BARRIER_FAIL;
        return pending ? CTL_BARRIER_WAIT : CTL_BARRIER_PASS;
    case WL_BARRIER_BEST_EFFORT:
    default:
        if (arrived + pending == 0)
            return CTL_BARRIER_FAIL;
        return pending ? CTL_BARRIER_WAIT : CTL_BARRIER_PASS;
    }
}

/* ------------------------------------------------------------------ live merge ----------- */

int ctl_live_init(ctl_live_t *l, size_t nagents, size_t nstages, uint64_t wait_ns)
{
    memset(l, 0, sizeof(*l));
    l->nagents = nagents;
    l->nstages = nstages;
    l->wait_ns = wait_ns;
    l->in_run = calloc(nagents ? nagents : 1, 1);
    l->cur_stage = calloc(nagents ? nagents : 1, sizeof(*l->cur_stage));
    l->end_seq = calloc(nagents ? nagents : 1, sizeof(*l->end_seq));
    l->printed = calloc(nstages ? nstages : 1, sizeof(*l->printed));
    if (!l->in_run || !l->cur_stage || !l->end_seq || !l->printed) {
        ctl_live_free(l);
        return -ENOMEM;
    }
    for (size_t a = 0; a < nagents; a++) {
        l->in_run[a] = 1;
        l->cur_stage[a] = -1;
    }
    return 0;
}

void ctl_live_slot_free(ctl_live_slot_t *s)
{
    wl_stats_free(&s->stats);
    free(s->from);
    s->from = NULL;
}

void ctl_live_free(ctl_live_t *l)
{
    for (size_t i = 0; i < l->nslots; i++)
        ctl_live_slot_free(&l->slots[i]);
    free(l->slots);
    free(l->in_run);
    free(l->cur_stage);
    free(l->end_seq);
    free(l->printed);
    memset(l, 0, sizeof(*l));
}

static int expected(const ctl_live_t *l, size_t a, uint32_t stage, uint64_t seq)
{
    if (!l->in_run[a])
        return 0;
    if (l->cur_stage[a] > (int64_t)stage)
        return 0;
    if (l->cur_stage[a] == (int64_t)stage && l->end_seq[a] && l->end_seq[a] < seq)
        return 0;
    return 1;
}

static int slot_cmp(uint32_t st, uint64_t seq, const ctl_live_slot_t *s)
{
    if (st != s->stage)
        return st < s->stage ? -1 : 1;
    if (seq != s->seq)
        return seq < s->seq ? -1 : 1;
    return 0;
}

int ctl_live_add(ctl_live_t *l, size_t agent, uint32_t stage, uint64_t seq, const wl_stats_t *delta,
                 uint64_t elapsed_ns, uint64_t interval_ns, int64_t wall_ns, uint64_t progress_done,
                 uint64_t progress_total, uint64_t in_flight, int last, uint64_t now_ns)
{
    if (agent >= l->nagents || stage >= l->nstages || seq == 0 || !l->in_run[agent])
        return 1;
    if ((int64_t)stage < l->cur_stage[agent])
        return 1;
    if ((int64_t)stage > l->cur_stage[agent]) {
        l->cur_stage[agent] = stage;
        l->end_seq[agent] = 0;
    }
    if (last && !l->end_seq[agent])
        l->end_seq[agent] = seq;
    if (seq <= l->printed[stage]) {
        l->late++;
        return 1;
    }
    size_t pos = 0;
    while (pos < l->nslots && slot_cmp(stage, seq, &l->slots[pos]) > 0)
        pos++;
    ctl_live_slot_t *s;
    if (pos < l->nslots && slot_cmp(stage, seq, &l->slots[pos]) == 0) {
        s = &l->slots[pos];
        if (s->from[agent])
            return 1; /* a repeat */
    } else {
        if (l->nslots == l->cap) {
            size_t nc = l->cap ? l->cap * 2 : 8;
            ctl_live_slot_t *ns = realloc(l->slots, nc * sizeof(*ns));
            if (!ns)
                return -ENOMEM;
            l->slots = ns;
            l->cap = nc;
        }
        uint8_t *from = calloc(l->nagents, 1);
        if (!from)
            return -ENOMEM;
        memmove(&l->slots[pos + 1], &l->slots[pos], (l->nslots - pos) * sizeof(*l->slots));
        l->nslots++;
        s = &l->slots[pos];
        memset(s, 0, sizeof(*s));
        wl_stats_init(&s->stats);
        s->stage = stage;
        s->seq = seq;
        s->from = from;
        s->first_ns = now_ns;
    }
    if (delta && wl_stats_merge(&s->stats, delta) != 0)
        return -ENOMEM;
    s->from[agent] = 1;
    s->nfrom++;
    if (elapsed_ns > s->elapsed_ns)
        s->elapsed_ns = elapsed_ns;
    if (interval_ns > s->interval_ns)
        s->interval_ns = interval_ns;
    if (wall_ns > s->wall_ns)
        s->wall_ns = wall_ns;
    s->progress_done += progress_done;
    s->progress_total += progress_total;
    s->in_flight += in_flight;
    if (last)
        s->last = 1;
    return 0;
}

void ctl_live_agent_stage(ctl_live_t *l, size_t agent, uint32_t stage)
{
    if (agent >= l->nagents)
        return;
    if ((int64_t)stage > l->cur_stage[agent]) {
        l->cur_stage[agent] = stage;
        l->end_seq[agent] = 0;
    }
}

void ctl_live_agent_gone(ctl_live_t *l, size_t agent)
{
    if (agent < l->nagents)
        l->in_run[agent] = 0;
}

int ctl_live_pop(ctl_live_t *l, uint64_t now_ns, int64_t force_upto, ctl_live_slot_t *out)
{
    if (!l->nslots)
        return 0;
    ctl_live_slot_t *s = &l->slots[0];
    int complete = 1;
    size_t nexp = 0;
    for (size_t a = 0; a < l->nagents; a++) {
        int e = expected(l, a, s->stage, s->seq);
        if (e && !s->from[a])
            complete = 0;
        if (e || s->from[a])
            nexp++;
    }
    int force = (int64_t)s->stage <= force_upto;
    if (!complete && !force && now_ns - s->first_ns < l->wait_ns)
        return 0;
    *out = *s;
    out->nexpected = nexp;
    if (s->seq > l->printed[s->stage])
        l->printed[s->stage] = s->seq;
    l->nslots--;
    memmove(&l->slots[0], &l->slots[1], l->nslots * sizeof(*l->slots));
    return 1;
}

/* ------------------------------------------------------------------ clock ---------------- */

void ctl_clock_sample(int64_t t0, int64_t t1, int64_t t2, int64_t t3, int64_t *offset, int64_t *rtt)
{
    *offset = ((t1 - t0) + (t2 - t3)) / 2;
    *rtt = (t3 - t0) - (t2 - t1);
}

/* ------------------------------------------------------------------ describe ------------- */

void ctl_sb_printf(ctl_sb_t *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t nc = (b->cap ? b->cap * 2 : 1024) + (size_t)n;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *ctl_dist_describe(const wl_config_t *cfg, const ctl_agent_spec_t *agents, size_t nagents,
                        int replaced, const ctl_stage_t *stages, size_t nstages, const char *extra)
{
    const wl_dist_cfg_t *d = &cfg->dist;
    ctl_sb_t b = {0};
    char t1[48], t2[48], t3[48];
    ctl_sb_printf(&b, "Distributed run: %zu agent%s\n", nagents, nagents == 1 ? "" : "s");
    if (replaced)
        ctl_sb_printf(&b, "  (--agents replaces the %zu agents of distributed.agents)\n", d->nagents);
    for (size_t i = 0; i < nagents; i++) {
        const ctl_agent_spec_t *a = &agents[i];
        ctl_sb_printf(&b, "  %-16s %s:%d", a->id, a->host, a->port);
        if (a->target_override)
            ctl_sb_printf(&b, "  target %s", a->target_override);
        if (a->concurrency_override)
            ctl_sb_printf(&b, "  concurrency %" PRIu32, a->concurrency_override);
        if (a->tls_fingerprint)
            ctl_sb_printf(&b, "  pinned %s", a->tls_fingerprint);
        ctl_sb_printf(&b, "\n");
    }
    int shared = ctl_dist_shared_fs(cfg);
    ctl_sb_printf(&b, "  shared filesystem: %s%s\n", shared ? "yes" : "no",
              d->shared_filesystem >= 0 ? ""
              : shared                  ? " (object-store URIs)"
                                        : " (not object-store URIs)");
    if (shared)
        ctl_sb_printf(&b, "    agents split the prepared objects (index %% %zu)\n", nagents);
    else
        ctl_sb_printf(&b,
                  "    each agent prepares and uses its own objects under agent-<id>/ of the "
                  "target (%s: agent-%s/)\n",
                  nagents ? agents[0].id : "?", nagents ? agents[0].id : "?");
    ctl_sb_printf(&b, "  barrier: %s", ctl_barrier_rule_name(d->barrier));
    if (d->barrier_timeout_ns)
        ctl_sb_printf(&b, ", timeout %s", wl_fmt_ns(d->barrier_timeout_ns, t1, sizeof(t1)));
    ctl_sb_printf(&b, "; on agent failure: %s\n", d->abort_on_agent_failure ? "abort" : "continue");
    ctl_sb_printf(&b, "  start delay %s, connect timeout %s, ready timeout %s\n",
              wl_fmt_ns(d->start_delay_ns, t1, sizeof(t1)),
              wl_fmt_ns(d->connect_timeout_ns, t2, sizeof(t2)),
              wl_fmt_ns(d->agent_ready_timeout_ns, t3, sizeof(t3)));
    ctl_sb_printf(&b, "  keepalive every %s, timeout %s\n",
              wl_fmt_ns(d->keepalive_interval_ns, t1, sizeof(t1)),
              wl_fmt_ns(d->keepalive_timeout_ns, t2, sizeof(t2)));
    if (extra)
        ctl_sb_printf(&b, "%s", extra);
    ctl_sb_printf(&b, "Distributed stages (each ends at a barrier):\n");
    for (size_t i = 0; i < nstages; i++) {
        const ctl_stage_t *s = &stages[i];
        ctl_sb_printf(&b, "  %zu. %-16s %-8s", i + 1, s->name, ctl_stage_type_name(s->type));
        switch (s->type) {
        case WL_STAGE_EXECUTE:
            ctl_sb_printf(
                &b, " %s",
                wl_fmt_ns(s->duration_ns ? s->duration_ns : cfg->duration_ns, t1, sizeof(t1)));
            break;
        case WL_STAGE_PREPARE:
        case WL_STAGE_CLEANUP:
            if (s->expected_objects)
                ctl_sb_printf(&b, " %" PRIu64 " objects", s->expected_objects);
            break;
        case WL_STAGE_CUSTOM:
            ctl_sb_printf(&b, " %s", s->command ? s->command : "?");
            for (size_t j = 0; j < s->nargs; j++)
                ctl_sb_printf(&b, " %s", s->args[j]);
            break;
        }
        if (s->timeout_ns)
            ctl_sb_printf(&b, ", timeout %s", wl_fmt_ns(s->timeout_ns, t1, sizeof(t1)));
        if (s->optional)
            ctl_sb_printf(&b, ", optional");
        if (i == 0 || s->type == WL_STAGE_EXECUTE)
            ctl_sb_printf(&b, ", same start instant on every agent");
        ctl_sb_printf(&b, "\n");
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
