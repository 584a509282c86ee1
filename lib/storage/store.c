#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rx/err.h"
#include "rx/time.h"
#include "sto/backend.h"
#include "sto/err.h"
#include "sto_internal.h"

const sto_backend_t *sto_backend_for(sto_scheme_t scheme)
{
    switch (scheme) {
    case STO_SCHEME_FILE:
        return &sto__file_backend;
    case STO_SCHEME_DIRECT:
        return &sto__direct_backend;
    case STO_SCHEME_S3:
        return &sto__s3_backend;
    case STO_SCHEME_AZ:
        return &sto__az_backend;
    case STO_SCHEME_GS:
        return &sto__gcs_backend;
    }
    return NULL;
}

int sto_store_open(uv_loop_t *loop, const char *base_uri, int create_base, sto_store_t **out,
                   char *err, size_t errlen)
{
    return sto_store_open_opts(loop, base_uri, create_base, NULL, out, err, errlen);
}

static int copy_opt(const char *in, char *buf, size_t cap, const char **out)
{
    if (!in) {
        *out = NULL;
        return 0;
    }
    if (strlen(in) >= cap)
        return -1;
    memcpy(buf, in, strlen(in) + 1);
    *out = buf;
    return 0;
}

int sto_store_open_opts(uv_loop_t *loop, const char *base_uri, int create_base,
                        const sto_opts_t *opts, sto_store_t **out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!loop || !base_uri || !out) {
        if (err && errlen)
            snprintf(err, errlen, "sto_store_open: missing argument");
        return RX_EINVAL;
    }
    *out = NULL;
    sto_uri_t *u = malloc(sizeof(*u));
    if (!u)
        return RX_ENOMEM;
    int rc = sto_uri_parse(base_uri, u, err, errlen);
    if (rc != 0) {
        free(u);
        return rc;
    }
    const sto_backend_t *be = sto_backend_for(u->scheme);
    if (!be) {
        if (err && errlen)
            snprintf(err, errlen, "%s:// has no backend in this build yet",
                     sto_scheme_name(u->scheme));
        free(u);
        return STO_ESCHEME;
    }
    sto_store_t *s = calloc(1, sizeof(*s) + be->store_size);
    if (!s) {
        free(u);
        return RX_ENOMEM;
    }
    s->backend = be;
    s->loop = loop;
    s->create_base = create_base;
    s->uri = *u;
    free(u);
    if (opts)
        s->opts = *opts;
    if (!s->opts.max_connections)
        s->opts.max_connections = 64;
    if (!s->opts.connect_timeout_ms)
        s->opts.connect_timeout_ms = 5000;
    if (!s->opts.io_timeout_ms)
        s->opts.io_timeout_ms = 30000;
    if (!s->opts.multipart_threshold)
        s->opts.multipart_threshold = 64ull << 20;
    if (!s->opts.part_size)
        s->opts.part_size = 16ull << 20;
    if (!s->opts.part_concurrency)
        s->opts.part_concurrency = 8;
    if (copy_opt(s->opts.endpoint, s->endpoint_buf, sizeof(s->endpoint_buf), &s->opts.endpoint) ||
        copy_opt(s->opts.ca_file, s->ca_file_buf, sizeof(s->ca_file_buf), &s->opts.ca_file)) {
        if (err && errlen)
            snprintf(err, errlen, "endpoint or CA file name too long");
        free(s);
        return RX_EINVAL;
    }
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    rc = be->open ? be->open(s, &s->uri, err, errlen) : 0;
    if (rc != 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void sto_store_close(sto_store_t *s)
{
    if (!s)
        return;
    if (s->backend->close)
        s->backend->close(s);
    free(s);
}

const sto_uri_t *sto_store_uri(const sto_store_t *s)
{
    return &s->uri;
}

uv_loop_t *sto_store_loop(const sto_store_t *s)
{
    return s->loop;
}

const sto_backend_t *sto_store_backend(const sto_store_t *s)
{
    return s->backend;
}

void *sto_store_priv(sto_store_t *s)
{
    return s->backend->store_size ? (void *)s->priv : NULL;
}

int sto_submit(sto_store_t *s, sto_req_t *r)
{
    if (!s || !r || !r->done || (unsigned)r->op >= STO_OP__COUNT)
        return RX_EINVAL;
    if (r->op != STO_OP_LIST && r->op != STO_OP_DEL_BATCH && (!r->key || !r->key[0]))
        return RX_EINVAL;
    if (r->key && r->key[0] == '/')
        return RX_EINVAL;
    if (r->op == STO_OP_PUT && (r->iovcnt < 0 || (r->iovcnt > 0 && !r->iov)))
        return RX_EINVAL;
    if (r->op == STO_OP_GET && (r->offset || r->length) && !(s->backend->caps & STO_CAP_RANGE))
        return STO_ENOTSUP;
    if (r->op == STO_OP_DEL_BATCH) {
        if (!(s->backend->caps & STO_CAP_BATCH_DELETE))
            return STO_ENOTSUP;
        if (!r->keys || r->nkeys == 0 || r->nkeys > 1000)
            return RX_EINVAL;
        for (size_t i = 0; i < r->nkeys; i++)
            if (!r->keys[i] || !r->keys[i][0] || r->keys[i][0] == '/')
                return RX_EINVAL;
    }
    r->store = s;
    r->priv = NULL;
    memset(&r->res, 0, sizeof(r->res));
    r->res.t_submit_ns = rx_now_ns();
    return s->backend->submit(s, r);
}

const char *sto_op_name(sto_op_t op)
{
    static const char *const names[STO_OP__COUNT] = {
        [STO_OP_GET] = "GET",     [STO_OP_PUT] = "PUT",    [STO_OP_HEAD] = "HEAD",
        [STO_OP_LIST] = "LIST",   [STO_OP_DEL] = "DELETE", [STO_OP_MKDIR] = "MKDIR",
        [STO_OP_RMDIR] = "RMDIR", [STO_OP_DEL_BATCH] = "DELETE_BATCH",
    };
    return (unsigned)op < STO_OP__COUNT ? names[op] : "?";
}
