/* The resolved plan as text, for `validate` and `run --dry-run`. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wl/config.h"

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int nomem;
} sbuf_t;

static void sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
    if (b->nomem)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0) {
            b->nomem = 1;
            return;
        }
        if (b->p && b->n + (size_t)w < b->cap) {
            b->n += (size_t)w;
            return;
        }
        size_t ncap = b->cap ? b->cap * 2 : 1024;
        while (ncap < b->n + (size_t)w + 1)
            ncap *= 2;
        char *np = realloc(b->p, ncap);
        if (!np) {
            b->nomem = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
}

/* 1234567 -> "1,234,567" */
static const char *fmt_count(unsigned long long v, char *buf, size_t len)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%llu", v);
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < len; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = 0;
    return buf;
}

/* Exact binary multiples without decimals ("16 KiB"), others with one ("34.5 KiB"). */
static const char *fmt_size(double bytes, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int i = 0;
    double v = bytes;
    while (v >= 1023.95 && i < 6) { /* 1023.99 KiB prints as 1.0 MiB, not 1024.0 KiB */
        v /= 1024.0;
        i++;
    }
    if (i == 0 || v == (double)(unsigned long long)v)
        snprintf(buf, len, "%.0f %s", v, units[i]);
    else
        snprintf(buf, len, "%.1f %s", v, units[i]);
    return buf;
}

/* Durations as written: "15s", "5m", "1h30m", "500ms", "1.5s". */
static const char *fmt_dur(unsigned long long ns, char *buf, size_t len)
{
    const unsigned long long s = 1000000000ULL;
    if (ns == 0) {
        snprintf(buf, len, "0s");
    } else if (ns % s == 0) {
        unsigned long long t = ns / s, h = t / 3600, m = (t % 3600) / 60, sec = t % 60;
        size_t o = 0;
        buf[0] = 0;
        if (h && o < len)
            o += (size_t)snprintf(buf + o, len - o, "%lluh", h);
        if (m && o < len)
            o += (size_t)snprintf(buf + o, len - o, "%llum", m);
        if (sec && o < len)
            snprintf(buf + o, len - o, "%llus", sec);
    } else if (ns < 1000ULL) {
        snprintf(buf, len, "%lluns", ns);
    } else if (ns < 1000000ULL && ns % 1000ULL == 0) {
        snprintf(buf, len, "%lluus", ns / 1000ULL);
    } else if (ns < s && ns % 1000000ULL == 0) {
        snprintf(buf, len, "%llums", ns / 1000000ULL);
    } else {
        snprintf(buf, len, "%gs", (double)ns / 1e9);
    }
    return buf;
}

static void size_desc(sbuf_t *b, const wl_size_spec_t *s)
{
    char x[32], y[32], z[32], w[32];
    switch (s->kind) {
    case WL_SIZE_FIXED:
        sb_printf(b, "size fixed %s", fmt_size((double)s->fixed, x, sizeof(x)));
        break;
    case WL_SIZE_UNIFORM:
        sb_printf(b, "size uniform %s\xe2\x80\x93%s (mean %s)",
                  fmt_size((double)s->min, x, sizeof(x)), fmt_size((double)s->max, y, sizeof(y)),
                  fmt_size(wl_size_mean(s), z, sizeof(z)));
        break;
    case WL_SIZE_LOGNORMAL:
        sb_printf(b, "size lognormal mean %s sd %s", fmt_size(s->mean, x, sizeof(x)),
                  fmt_size(s->std_dev, y, sizeof(y)));
        if (s->max != UINT64_MAX || s->min > 1)
            sb_printf(b, " in %s\xe2\x80\x93%s", fmt_size((double)s->min, z, sizeof(z)),
                      s->max == UINT64_MAX ? "\xe2\x88\x9e"
                                           : fmt_size((double)s->max, w, sizeof(w)));
        sb_printf(b, " (mean about %s)", fmt_size(wl_size_mean(s), x, sizeof(x)));
        break;
    }
}

static const char *fill_name(wl_fill_t f)
{
    return f == WL_FILL_ZERO ? "zero" : "random";
}

static int is_s3(const char *u)
{
    return u && !strncmp(u, "s3://", 5);
}

/* s3://host:port/bucket/...: the first component has a ':port' (as sto_uri_parse sees it). */
static int s3_has_host(const char *u)
{
    const char *p = u + 5, *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    return memchr(p, ':', n) != NULL;
}

/* The `endpoint:`, `s3:` and `http:` settings, when the config has s3:// URIs. */
static void net_desc(sbuf_t *b, const wl_config_t *c)
{
    const wl_net_cfg_t *n = &c->net;
    char t1[48], t2[48];
    int any = 0, dflt = 0; /* s3:// URIs; those that take the default endpoint */
    if (is_s3(c->target)) {
        any = 1;
        dflt |= !s3_has_host(c->target);
    }
    for (size_t i = 0; i < c->nops; i++) {
        if (is_s3(c->ops[i].path)) {
            any = 1;
            dflt |= !s3_has_host(c->ops[i].path);
        }
    }
    for (size_t i = 0; i < c->prepare.nensure; i++) {
        const wl_ensure_cfg_t *en = &c->prepare.ensure[i];
        if (is_s3(en->base_uri)) {
            any = 1;
            dflt |= !en->endpoint && !s3_has_host(en->base_uri);
        }
    }
    if (!any)
        return;
    sb_printf(b, "  s3:           endpoint ");
    const char *env = getenv("AWS_ENDPOINT_URL");
    if (!dflt) {
        sb_printf(b, "per URI");
    } else if (n->endpoint) {
        sb_printf(b, "%s (config)", n->endpoint);
    } else if (env && *env) {
        sb_printf(b, "%s (AWS_ENDPOINT_URL)", env);
    } else {
        const char *r = getenv("AWS_REGION");
        if (!r || !*r)
            r = getenv("AWS_DEFAULT_REGION");
        sb_printf(b, "https://s3.%s.amazonaws.com (AWS)", r && *r ? r : "us-east-1");
    }
    sb_printf(b, ", %s, %s, multipart >= %s in %s parts x%u%s\n",
              n->virtual_host ? "virtual-host style" : "path-style",
              n->sign_payload ? "signed payload" : "UNSIGNED-PAYLOAD",
              fmt_size((double)n->multipart_threshold, t1, sizeof(t1)),
              fmt_size((double)n->part_size, t2, sizeof(t2)), n->part_concurrency,
              n->create_bucket ? "" : ", buckets must exist");
    sb_printf(b, "  http:         ");
    if (n->version == 1)
        sb_printf(b, "HTTP/2 (h2c, or h2 by ALPN), %u streams per connection, ", n->h2_max_streams);
    else if (n->version == 2)
        sb_printf(b, "HTTP/2 or HTTP/1.1 by ALPN, ");
    if (n->max_connections)
        sb_printf(b, "%u connections per core", n->max_connections);
    else
        sb_printf(b, "connections automatic");
    sb_printf(b, ", connect %s, I/O %s", fmt_dur(n->connect_timeout_ns, t1, sizeof(t1)),
              fmt_dur(n->io_timeout_ns, t2, sizeof(t2)));
    if (n->ca_bundle)
        sb_printf(b, ", CA bundle %s", n->ca_bundle);
    if (n->insecure_skip_verify)
        sb_printf(b, ", TLS certificates NOT verified");
    sb_printf(b, "\n");
}

static const char *const cleanup_names[] = {"tolerant", "strict", "besteffort"};
static const char *const dist_names[] = {"exponential", "uniform", "deterministic"};

char *wl_plan_format(const wl_config_t *c, int cores)
{
    sbuf_t b = {0};
    char t1[48], t2[48];
    if (cores < 1)
        cores = 1;
    sb_printf(&b, "Plan for %s\n", c->source ? c->source : "<config>");
    sb_printf(&b, "  target:       %s\n", c->target ? c->target : "(none; ops use full URIs)");
    unsigned per = c->concurrency / (unsigned)cores, rem = c->concurrency % (unsigned)cores;
    if (rem == 0)
        sb_printf(&b, "  cores:        %d   concurrency: %u (%u per core)\n", cores, c->concurrency,
                  per);
    else
        sb_printf(&b, "  cores:        %d   concurrency: %u (%u\xe2\x80\x93%u per core)\n", cores,
                  c->concurrency, per, per + 1);
    sb_printf(&b, "  duration:     %s   rate: ", fmt_dur(c->duration_ns, t1, sizeof(t1)));
    if (c->io_rate.present && c->io_rate.iops > 0)
        sb_printf(&b, "%g ops/s, %s\n", c->io_rate.iops, dist_names[c->io_rate.distribution % 3]);
    else
        sb_printf(&b, "unlimited\n");
    const wl_errh_cfg_t *e = &c->errh;
    sb_printf(&b, "  errors:       stop after %s errors; ",
              fmt_count(e->max_total_errors, t1, sizeof(t1)));
    if (e->retry_on_error)
        sb_printf(&b, "retry up to %u times (%llu\xe2\x80\x93%llu ms, x%g, jitter %g)\n",
                  e->max_retries, (unsigned long long)e->initial_retry_delay_ms,
                  (unsigned long long)e->max_retry_delay_ms, e->retry_backoff_multiplier,
                  e->retry_jitter_factor);
    else
        sb_printf(&b, "no retries\n");
    if (c->perf_log.present)
        sb_printf(&b, "  perf log:     every %s (perf_log.tsv)\n",
                  fmt_dur(c->perf_log.interval_ns, t1, sizeof(t1)));
    net_desc(&b, c);

    sb_printf(&b, "Stages:\n");
    int stage = 1;
    const wl_prepare_cfg_t *p = &c->prepare;
    unsigned long long total_objs = 0;
    double total_bytes = 0;
    int approx = 0;
    for (size_t i = 0; i < p->nensure; i++) {
        total_objs += p->ensure[i].count;
        total_bytes += (double)p->ensure[i].count * wl_size_mean(&p->ensure[i].size);
        if (p->ensure[i].size.kind == WL_SIZE_LOGNORMAL)
            approx = 1;
    }
    if (p->present) {
        sb_printf(&b, "  %d. prepare   ensure %zu set%s, %s object%s, %s%s total", stage++,
                  p->nensure, p->nensure == 1 ? "" : "s", fmt_count(total_objs, t1, sizeof(t1)),
                  total_objs == 1 ? "" : "s", approx ? "about " : "",
                  fmt_size(total_bytes, t2, sizeof(t2)));
        if (p->skip_verification)
            sb_printf(&b, " (no listing: skip_verification)");
        if (p->force_overwrite)
            sb_printf(&b, " (force_overwrite)");
        sb_printf(&b, "\n");
        for (size_t i = 0; i < p->nensure; i++) {
            const wl_ensure_cfg_t *en = &p->ensure[i];
            sb_printf(&b, "       %s  %s object%s  ", en->base_uri ? en->base_uri : "?",
                      fmt_count(en->count, t1, sizeof(t1)), en->count == 1 ? "" : "s");
            size_desc(&b, &en->size);
            sb_printf(&b, "  fill %s dedup %u compress %u", fill_name(en->fill), en->dedup_factor,
                      en->compress_factor);
            if (en->endpoint)
                sb_printf(&b, "  endpoint %s", en->endpoint);
            sb_printf(&b, "\n");
        }
        if (p->post_prepare_delay_ns)
            sb_printf(&b, "       then wait %s\n",
                      fmt_dur(p->post_prepare_delay_ns, t1, sizeof(t1)));
    }
    if (c->nops) {
        unsigned long long wsum = 0;
        for (size_t i = 0; i < c->nops; i++)
            wsum += c->ops[i].weight;
        sb_printf(&b, "  %d. execute   %s, %zu op%s:\n", stage++,
                  fmt_dur(c->duration_ns, t1, sizeof(t1)), c->nops, c->nops == 1 ? "" : "s");
        for (size_t i = 0; i < c->nops; i++) {
            const wl_op_cfg_t *op = &c->ops[i];
            char uri[4200];
            if (wl_config_op_uri(c, op, uri, sizeof(uri)) != 0)
                snprintf(uri, sizeof(uri), "%s", op->path ? op->path : "?");
            double pct = wsum ? 100.0 * op->weight / (double)wsum : 0.0;
            sb_printf(&b, "       %-7s %5.1f%%  %s", wl_op_name(op->op), pct, uri);
            if (op->op == WL_OP_PUT) {
                sb_printf(&b, "  ");
                size_desc(&b, &op->size);
                if (op->fill != WL_FILL_RANDOM)
                    sb_printf(&b, "  fill %s", fill_name(op->fill));
                if (op->dedup_factor != 1)
                    sb_printf(&b, "  dedup %u", op->dedup_factor);
                if (op->compress_factor != 1)
                    sb_printf(&b, "  compress %u", op->compress_factor);
            }
            if (op->op == WL_OP_RMDIR && op->recursive)
                sb_printf(&b, "  (recursive)");
            if (op->concurrency)
                sb_printf(&b, "  at most %u in flight", op->concurrency);
            sb_printf(&b, "\n");
        }
    } else {
        sb_printf(&b, "  %d. execute   (skipped: the workload is empty)\n", stage++);
    }
    if (p->present) {
        if (p->cleanup)
            sb_printf(&b, "  %d. cleanup   remove %s prepared object%s (mode %s)\n", stage++,
                      fmt_count(total_objs, t1, sizeof(t1)), total_objs == 1 ? "" : "s",
                      cleanup_names[p->cleanup_mode % 3]);
        else
            sb_printf(&b, "  %d. cleanup   (skipped: prepare.cleanup is false)\n", stage++);
    }
    if (b.nomem) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
