/* Per-op statistics: recording, merging and class views. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "wl/stats.h"

static const char *const bucket_labels[WL_NBUCKETS] = {
    "zero",       "1B-8KiB",      "8KiB-64KiB",  "64KiB-512KiB", "512KiB-4MiB",
    "4MiB-32MiB", "32MiB-256MiB", "256MiB-2GiB", ">2GiB",
};

wl_class_t wl_op_class(wl_op_kind_t op)
{
    switch (op) {
    case WL_OP_GET: return WL_CLASS_GET;
    case WL_OP_PUT: return WL_CLASS_PUT;
    default: return WL_CLASS_META;
    }
}

const char *wl_class_name(wl_class_t c)
{
    static const char *const n[] = {"GET", "PUT", "META"};
    return (unsigned)c < WL_CLASS__COUNT ? n[c] : "?";
}

int wl_size_bucket(uint64_t b)
{
    if (b == 0) return 0;
    if (b <= 8192) return 1;
    if (b <= 65536) return 2;
    if (b <= 524288) return 3;
    if (b <= 4ull << 20) return 4;
    if (b <= 32ull << 20) return 5;
    if (b <= 256ull << 20) return 6;
    if (b <= 2ull << 30) return 7;
    return 8;
}

const char *wl_bucket_label(int bucket)
{
    return (bucket >= 0 && bucket < WL_NBUCKETS) ? bucket_labels[bucket] : "?";
}

void wl_stats_init(wl_stats_t *s)
{
    memset(s, 0, sizeof(*s));
    for (int o = 0; o < WL_OP__COUNT; o++) {
        for (int b = 0; b < WL_NBUCKETS; b++) wl_hist_init(&s->op[o].lat[b]);
        wl_hist_init(&s->op[o].lat_sched);
    }
}

void wl_stats_free(wl_stats_t *s)
{
    for (int o = 0; o < WL_OP__COUNT; o++) {
        for (int b = 0; b < WL_NBUCKETS; b++) wl_hist_free(&s->op[o].lat[b]);
        wl_hist_free(&s->op[o].lat_sched);
    }
    memset(s, 0, sizeof(*s));
}

void wl_stats_reset(wl_stats_t *s)
{
    for (int o = 0; o < WL_OP__COUNT; o++) {
        wl_opstats_t *os = &s->op[o];
        for (int b = 0; b < WL_NBUCKETS; b++) wl_hist_reset(&os->lat[b]);
        wl_hist_reset(&os->lat_sched);
        memset(os->ops, 0, sizeof(os->ops));
        memset(os->bytes, 0, sizeof(os->bytes));
        os->errors = os->retries = os->err_other = 0;
        memset(os->errk, 0, sizeof(os->errk));
    }
}

int wl_stats_record(wl_stats_t *s, wl_op_kind_t op, uint64_t bytes, uint64_t lat_ns,
                    uint64_t sched_ns)
{
    wl_opstats_t *os = &s->op[op];
    int b = wl_op_class(op) == WL_CLASS_META ? 0 : wl_size_bucket(bytes);
    os->ops[b]++;
    os->bytes[b] += bytes;
    int rc = wl_hist_record(&os->lat[b], lat_ns);
    if (rc == 0 && sched_ns) rc = wl_hist_record(&os->lat_sched, sched_ns);
    return rc;
}

static void add_err(wl_opstats_t *os, int code, const char *name, uint64_t n)
{
    if (!name)
        name = "";
    for (int i = 0; i < WL_ERRKINDS; i++) {
        if (os->errk[i].code == code && strncmp(os->errk[i].name, name,
                                                sizeof(os->errk[i].name) - 1) == 0) {
            os->errk[i].n += n;
            return;
        }
        if (os->errk[i].code == 0) {
            os->errk[i].code = code;
            snprintf(os->errk[i].name, sizeof(os->errk[i].name), "%s", name);
            os->errk[i].n = n;
            return;
        }
    }
    os->err_other += n;
}

void wl_stats_error(wl_stats_t *s, wl_op_kind_t op, int code, const char *name)
{
    s->op[op].errors++;
    add_err(&s->op[op], code, name, 1);
}

int wl_stats_merge(wl_stats_t *dst, const wl_stats_t *src)
{
    for (int o = 0; o < WL_OP__COUNT; o++) {
        wl_opstats_t *d = &dst->op[o];
        const wl_opstats_t *x = &src->op[o];
        for (int b = 0; b < WL_NBUCKETS; b++) {
            if (x->lat[b].total && wl_hist_merge(&d->lat[b], &x->lat[b]) != 0) return -ENOMEM;
            d->ops[b] += x->ops[b];
            d->bytes[b] += x->bytes[b];
        }
        if (x->lat_sched.total && wl_hist_merge(&d->lat_sched, &x->lat_sched) != 0)
            return -ENOMEM;
        d->errors += x->errors;
        d->retries += x->retries;
        d->err_other += x->err_other;
        for (int i = 0; i < WL_ERRKINDS && x->errk[i].code; i++)
            add_err(d, x->errk[i].code, x->errk[i].name, x->errk[i].n);
    }
    return 0;
}

uint64_t wl_stats_ops(const wl_stats_t *s, wl_op_kind_t op)
{
    uint64_t n = 0;
    for (int b = 0; b < WL_NBUCKETS; b++) n += s->op[op].ops[b];
    return n;
}

uint64_t wl_stats_bytes(const wl_stats_t *s, wl_op_kind_t op)
{
    uint64_t n = 0;
    for (int b = 0; b < WL_NBUCKETS; b++) n += s->op[op].bytes[b];
    return n;
}

uint64_t wl_stats_errors(const wl_stats_t *s, wl_op_kind_t op)
{
    return s->op[op].errors;
}

uint64_t wl_stats_total_ops(const wl_stats_t *s)
{
    uint64_t n = 0;
    for (int o = 0; o < WL_OP__COUNT; o++) n += wl_stats_ops(s, (wl_op_kind_t)o);
    return n;
}

uint64_t wl_stats_total_errors(const wl_stats_t *s)
{
    uint64_t n = 0;
    for (int o = 0; o < WL_OP__COUNT; o++) n += s->op[o].errors;
    return n;
}

int wl_stats_op_hist(const wl_stats_t *s, wl_op_kind_t op, int bucket, wl_hist_t *out)
{
    for (int b = 0; b < WL_NBUCKETS; b++) {
        if (bucket >= 0 && b != bucket) continue;
        if (s->op[op].lat[b].total && wl_hist_merge(out, &s->op[op].lat[b]) != 0) return -ENOMEM;
    }
    return 0;
}

int wl_stats_class_hist(const wl_stats_t *s, wl_class_t c, int bucket, wl_hist_t *out)
{
    for (int o = 0; o < WL_OP__COUNT; o++) {
        if (wl_op_class((wl_op_kind_t)o) != c) continue;
        int rc = wl_stats_op_hist(s, (wl_op_kind_t)o, bucket, out);
        if (rc) return rc;
    }
    return 0;
}

uint64_t wl_stats_class_ops(const wl_stats_t *s, wl_class_t c, int bucket)
{
    uint64_t n = 0;
    for (int o = 0; o < WL_OP__COUNT; o++) {
        if (wl_op_class((wl_op_kind_t)o) != c) continue;
        for (int b = 0; b < WL_NBUCKETS; b++)
            if (bucket < 0 || b == bucket) n += s->op[o].ops[b];
    }
    return n;
}

uint64_t wl_stats_class_bytes(const wl_stats_t *s, wl_class_t c, int bucket)
{
    uint64_t n = 0;
    for (int o = 0; o < WL_OP__COUNT; o++) {
        if (wl_op_class((wl_op_kind_t)o) != c) continue;
        for (int b = 0; b < WL_NBUCKETS; b++)
            if (bucket < 0 || b == bucket) n += s->op[o].bytes[b];
    }
    return n;
}

uint64_t wl_stats_class_errors(const wl_stats_t *s, wl_class_t c)
{
    uint64_t n = 0;
    for (int o = 0; o < WL_OP__COUNT; o++)
        if (wl_op_class((wl_op_kind_t)o) == c) n += s->op[o].errors;
    return n;
}
