/* wire.c — wl_stats_t ↔ OpStats, and small helpers both apps need. */
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int hist_bytes(const wl_hist_t *h, ProtobufCBinaryData *b)
{
    b->len = 0;
    b->data = NULL;
    if (!h->total)
        return 0;
    size_t n = wl_hist_serialize(h, NULL, 0);
    if (!(b->data = malloc(n)))
        return -ENOMEM;
    b->len = wl_hist_serialize(h, b->data, n);
    return 0;
}

static void op_free(Sai3bench__OpStats *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n_buckets; i++) {
        free(o->buckets[i]->latency_hist.data);
        free(o->buckets[i]);
    }
    free(o->buckets);
    for (size_t i = 0; i < o->n_error_kinds; i++) {
        free(o->error_kinds[i]->name);
        free(o->error_kinds[i]);
    }
    free(o->error_kinds);
    free(o->sched_hist.data);
    free(o);
}

void app_pb_ops_free(Sai3bench__OpStats **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        op_free(v[i]);
    free(v);
}

static Sai3bench__OpStats *op_to_pb(wl_op_kind_t k, const wl_opstats_t *s)
{
    Sai3bench__OpStats *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    sai3bench__op_stats__init(o);
    o->kind = (Sai3bench__OpKind)(k + 1);
    o->buckets = calloc(WL_NBUCKETS, sizeof(*o->buckets));
    o->error_kinds = calloc(WL_ERRKINDS, sizeof(*o->error_kinds));
    if (!o->buckets || !o->error_kinds)
        goto oom;
    for (int b = 0; b < WL_NBUCKETS; b++) {
        if (!s->ops[b] && !s->lat[b].total && !s->bytes[b])
            continue;
        Sai3bench__BucketStats *bs = calloc(1, sizeof(*bs));
        if (!bs)
            goto oom;
        sai3bench__bucket_stats__init(bs);
        o->buckets[o->n_buckets++] = bs;
        bs->bucket = (uint32_t)b;
        bs->ops = s->ops[b];
        bs->bytes = s->bytes[b];
        if (hist_bytes(&s->lat[b], &bs->latency_hist))
            goto oom;
    }
    if (hist_bytes(&s->lat_sched, &o->sched_hist))
        goto oom;
    o->errors = s->errors;
    o->retries = s->retries;
    o->errors_other = s->err_other;
    for (int i = 0; i < WL_ERRKINDS && s->errk[i].code; i++) {
        Sai3bench__ErrorKind *e = calloc(1, sizeof(*e));
        if (!e)
            goto oom;
        sai3bench__error_kind__init(e);
        o->error_kinds[o->n_error_kinds++] = e;
        e->code = s->errk[i].code;
        e->count = s->errk[i].n;
        if (!(e->name = strdup(s->errk[i].name)))
            goto oom;
    }
    return o;
oom:
    op_free(o);
    return NULL;
}

int app_stats_to_pb(const wl_stats_t *s, Sai3bench__OpStats ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    Sai3bench__OpStats **v = calloc(WL_OP__COUNT, sizeof(*v));
    if (!v)
        return -ENOMEM;
    size_t k = 0;
    for (int op = 0; op < WL_OP__COUNT; op++) {
        const wl_opstats_t *o = &s->op[op];
        int any = o->errors || o->retries || o->lat_sched.total;
        for (int b = 0; b < WL_NBUCKETS && !any; b++)
            any = o->ops[b] || o->lat[b].total;
        if (!any)
            continue;
        if (!(v[k] = op_to_pb((wl_op_kind_t)op, o))) {
            app_pb_ops_free(v, k);
            return -ENOMEM;
        }
        k++;
    }
    if (!k) {
        free(v);
        return 0;
    }
    *out = v;
    *n = k;
    return 0;
}

/* Adds n failures of (code, name) to an op's error kinds, as wl_stats_error does for one. */
static void add_errkind(wl_opstats_t *d, int code, const char *name, uint64_t n)
{
    for (int i = 0; i < WL_ERRKINDS; i++) {
        if (d->errk[i].code == 0) {
            d->errk[i].code = code;
            snprintf(d->errk[i].name, sizeof(d->errk[i].name), "%s", name);
            d->errk[i].n = n;
            return;
        }
        if (d->errk[i].code == code && !strcmp(d->errk[i].name, name)) {
            d->errk[i].n += n;
            return;
        }
    }
    d->err_other += n;
}

int app_stats_merge_pb(wl_stats_t *dst, Sai3bench__OpStats *const *v, size_t n, char *err,
                       size_t errlen)
{
    wl_hist_t h;
    wl_hist_init(&h);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const Sai3bench__OpStats *m = v[i];
        if (!m || (int)m->kind < 1 || (int)m->kind > (int)WL_OP__COUNT) {
            snprintf(err, errlen, "OpStats %zu: op kind %d is not one of 1..%d", i,
                     m ? (int)m->kind : -1, (int)WL_OP__COUNT);
            rc = -EINVAL;
            break;
        }
        wl_opstats_t *d = &dst->op[m->kind - 1];
        unsigned seen = 0;
        for (size_t j = 0; j < m->n_buckets; j++) {
            const Sai3bench__BucketStats *b = m->buckets[j];
            if (b->bucket >= WL_NBUCKETS || (seen & (1u << b->bucket))) {
                snprintf(err, errlen, "OpStats %s: bucket %u %s", wl_op_name(m->kind - 1),
                         b->bucket, b->bucket >= WL_NBUCKETS ? "out of range" : "repeated");
                rc = -EINVAL;
                break;
            }
            seen |= 1u << b->bucket;
            if (b->latency_hist.len) {
                if (wl_hist_deserialize(&h, b->latency_hist.data, b->latency_hist.len) != 0) {
                    snprintf(err, errlen, "OpStats %s bucket %u: malformed histogram",
                             wl_op_name(m->kind - 1), b->bucket);
                    rc = -EINVAL;
                    break;
                }
                if ((rc = wl_hist_merge(&d->lat[b->bucket], &h)) != 0)
                    break;
            }
            d->ops[b->bucket] += b->ops;
            d->bytes[b->bucket] += b->bytes;
        }
        if (rc)
            break;
        if (m->sched_hist.len) {
            if (wl_hist_deserialize(&h, m->sched_hist.data, m->sched_hist.len) != 0) {
                snprintf(err, errlen, "OpStats %s: malformed schedule histogram",
                         wl_op_name(m->kind - 1));
                rc = -EINVAL;
                break;
            }
            if ((rc = wl_hist_merge(&d->lat_sched, &h)) != 0)
                break;
        }
        d->errors += m->errors;
        d->retries += m->retries;
        d->err_other += m->errors_other;
        for (size_t j = 0; j < m->n_error_kinds; j++) {
            const Sai3bench__ErrorKind *e = m->error_kinds[j];
            add_errkind(d, e->code ? e->code : -1, e->name ? e->name : "", e->count);
        }
    }
    wl_hist_free(&h);
    return rc;
}

uint8_t *app_pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*len ? *len : 1);
    if (b)
        protobuf_c_message_pack(m, b);
    return b;
}

int64_t app_wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int app_read_token(const char *path, char *out, size_t cap, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "cannot read token file %s: %s", path, strerror(e));
        return -e;
    }
    if (!fgets(out, (int)cap, f))
        out[0] = 0;
    fclose(f);
    size_t l = strlen(out);
    while (l && (out[l - 1] == '\n' || out[l - 1] == '\r' || out[l - 1] == ' ' ||
                 out[l - 1] == '\t'))
        out[--l] = 0;
    if (!l) {
        snprintf(err, errlen, "token file %s is empty", path);
        return -EINVAL;
    }
    return 0;
}

int app_env_forwardable(const char *name)
{
    return !strncmp(name, "AWS_", 4) || !strncmp(name, "AZURE_STORAGE_", 14) ||
           !strcmp(name, "GOOGLE_APPLICATION_CREDENTIALS");
}
