/* Signed S3 request construction: target encoding identical to what the signer canonicalises. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "sto/s3req.h"

static const char *keep(sto_s3_request_t *o, const char *s)
{
    size_t n = strlen(s) + 1;
    if (o->used + n > sizeof(o->arena)) return NULL;
    char *p = o->arena + o->used;
    memcpy(p, s, n);
    o->used += n;
    return p;
}

static int add_header(sto_s3_request_t *o, const char *name, const char *value)
{
    if (o->nheaders == STO_S3_MAX_HEADERS) return -ENOSPC;
    const char *v = keep(o, value);
    if (!v) return -ENOSPC;
    o->headers[o->nheaders].name = name;
    o->headers[o->nheaders].value = v;
    o->nheaders++;
    return 0;
}

/* Appends s percent-encoded (SigV4 rules) to the target at *pos. */
static int append_enc(char *t, size_t *pos, const char *s, int encode_slash)
{
    int n = sto_uri_encode(s, t + *pos, STO_S3_TARGET_MAX - *pos, encode_slash);
    if (n < 0) return n;
    *pos += (size_t)n;
    return 0;
}

static int append_raw(char *t, size_t *pos, const char *s)
{
    size_t n = strlen(s);
    if (*pos + n + 1 > STO_S3_TARGET_MAX) return -ENOSPC;
    memcpy(t + *pos, s, n + 1);
    *pos += n;
    return 0;
}

int sto_s3_request_build(const sto_s3_endpoint_t *e, const sto_s3_creds_t *c,
                         sto_sigv4_cache_t *cache, const sto_s3_req_in_t *in,
                         sto_s3_request_t *out, char *err, size_t errlen)
{
    memset(out, 0, offsetof(sto_s3_request_t, arena));
    out->used = 0;
    if (!in->method || !in->bucket || !in->bucket[0]) {
        if (err) snprintf(err, errlen, "S3 request needs a method and a bucket");
        return -EINVAL;
    }
    out->method = in->method;
    const char *key = in->key ? in->key : "";
    /* path: the raw path for the signer, the encoded one for the request line */
    char path[STO_S3_TARGET_MAX];
    int w = e->virtual_host ? snprintf(path, sizeof(path), "/%s", key)
                            : snprintf(path, sizeof(path), "/%s%s%s", in->bucket,
                                       key[0] ? "/" : "", key);
    if (w < 0 || (size_t)w >= sizeof(path)) return -ENOSPC;
    size_t pos = 0;
    int rc = append_enc(out->target, &pos, path, 0);
    if (rc) return rc;
    for (size_t i = 0; i < in->nquery; i++) {
        if ((rc = append_raw(out->target, &pos, i ? "&" : "?")) ||
            (rc = append_enc(out->target, &pos, in->query[i].name, 1)))
            return rc;
        if (in->query[i].value && in->query[i].value[0]) {
            if ((rc = append_raw(out->target, &pos, "=")) ||
                (rc = append_enc(out->target, &pos, in->query[i].value, 1)))
                return rc;
        } else if ((rc = append_raw(out->target, &pos, "="))) {
            return rc;
        }
    }

    char host[300];
    sto_s3_host_header(e, in->bucket, host, sizeof(host));
    if ((rc = add_header(out, "Host", host))) return rc;
    for (size_t i = 0; i < in->nheaders; i++)
        if ((rc = add_header(out, in->headers[i].name, in->headers[i].value))) return rc;
    if (in->content_length >= 0) {
        char cl[24];
        snprintf(cl, sizeof(cl), "%lld", (long long)in->content_length);
        if ((rc = add_header(out, "Content-Length", cl))) return rc;
    }
    if (c->anonymous) return 0;

    /* sign host + the caller's headers */
    sto_sigv4_kv_t sh[STO_S3_MAX_HEADERS + 1];
    size_t nsh = 0;
    sh[nsh++] = (sto_sigv4_kv_t){"host", out->headers[0].value};
    for (size_t i = 0; i < in->nheaders; i++) sh[nsh++] = in->headers[i];
    sto_sigv4_req_t sr;
    memset(&sr, 0, sizeof(sr));
    sr.method = in->method;
    sr.path = path;
    sr.query = in->query;
    sr.nquery = in->nquery;
    sr.headers = sh;
    sr.nheaders = nsh;
    sr.payload_hash = in->payload_hash
                          ? in->payload_hash
                          : (in->content_length > 0 ? STO_SIGV4_UNSIGNED_PAYLOAD : NULL);
    sr.region = e->region;
    sr.service = "s3";
    sr.time = in->time;
    sto_sigv4_creds_t sc = {c->access_key, c->secret_key,
                            c->session_token[0] ? c->session_token : NULL};
    sto_sigv4_out_t so;
    char creq[STO_SIGV4_CREQ_DEFAULT];
    rc = sto_sigv4_sign(cache, &sr, &sc, creq, sizeof(creq), &so);
    if (rc) {
        if (err)
            snprintf(err, errlen, "signing failed (%s)", rc == -ENOSPC ? "too long" : "bad input");
        return rc;
    }
    if ((rc = add_header(out, "x-amz-date", so.amz_date))) return rc;
    if (so.content_sha256[0] && (rc = add_header(out, "x-amz-content-sha256", so.content_sha256)))
        return rc;
    if (so.security_token && (rc = add_header(out, "x-amz-security-token", so.security_token)))
        return rc;
    if ((rc = add_header(out, "Authorization", so.authorization))) return rc;
    snprintf(out->signature, sizeof(out->signature), "%s", so.signature);
    snprintf(out->string_to_sign, sizeof(out->string_to_sign), "%s", so.string_to_sign);
    return 0;
}
