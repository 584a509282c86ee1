/* tls.c — mbedtls glue: the per-loop TLS context and a sans-I/O client session.
 *
 * The session never touches a socket. Its BIO callbacks read ciphertext from an input buffer that
 * the stream fills from uv_read, and append ciphertext to an output buffer that the stream hands
 * to uv_write. The input side answers MBEDTLS_ERR_SSL_WANT_READ when empty; the output side never
 * blocks (it grows), so mbedtls never sees WANT_WRITE and every ssl_write consumes its record.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <uv.h>

#include "rx/err.h"
#include "rx/log.h"
#include "rx/stream.h"
#include "rx_internal.h"

#define IN_CAP (64 * 1024) /* > one max TLS record (16 KiB + overhead) */
#define OUT_MIN (16 * 1024 + 512)

struct rx_tls_ctx {
    int refs;
    int has_ca;
    mbedtls_x509_crt ca;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    char ca_file[];
};

struct rx__tls {
    rx_tls_ctx_t *ctx; /* one reference held */
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    const char **alpn; /* NULL-terminated copy, one allocation with its strings */
    int oom;
    char *in; /* ciphertext received: in[in_off, in_len) not yet consumed by mbedtls */
    size_t in_off, in_len;
    char *out; /* ciphertext waiting for uv_write */
    size_t out_len, out_cap;
};

/* ---- context ---- */

static void ctx_free(rx_tls_ctx_t *c)
{
    mbedtls_x509_crt_free(&c->ca);
    mbedtls_ctr_drbg_free(&c->drbg);
    mbedtls_entropy_free(&c->entropy);
    free(c);
}

static void tls_errtext(int ret, char *buf, size_t len)
{
    char tmp[160];
    mbedtls_strerror(ret, tmp, sizeof tmp);
    snprintf(buf, len, "%s (-0x%04x)", tmp, (unsigned)-ret);
}

int rx_tls_ctx_create(const char *ca_file, unsigned flags, rx_tls_ctx_t **out)
{
    if (out == NULL)
        return RX_EINVAL;
    *out = NULL;
    const char *path = "";
    if (!(flags & RX_TLS_CTX_NO_CA)) {
        path = ca_file;
        if (path == NULL || path[0] == '\0')
            path = getenv("AWS_CA_BUNDLE");
        if (path == NULL || path[0] == '\0')
            path = RX_TLS_DEFAULT_CA_FILE;
    }
    size_t plen = strlen(path);
    rx_tls_ctx_t *c = calloc(1, sizeof *c + plen + 1);
    if (c == NULL)
        return RX_ENOMEM;
    memcpy(c->ca_file, path, plen + 1);
    c->refs = 1;
    mbedtls_x509_crt_init(&c->ca);
    mbedtls_entropy_init(&c->entropy);
    mbedtls_ctr_drbg_init(&c->drbg);

    static const unsigned char pers[] = "sai3bench-rx-tls";
    int ret =
        mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy, pers, sizeof pers - 1);
    if (ret != 0) {
        char e[200];
        tls_errtext(ret, e, sizeof e);
        rx_log(RX_LOG_ERROR, "tls", "DRBG seeding failed: %s", e);
        ctx_free(c);
        return RX_ETLS;
    }
    if (!(flags & RX_TLS_CTX_NO_CA)) {
        /* > 0: that many entries failed to parse (bundles carry a few mbedtls rejects). */
        ret = mbedtls_x509_crt_parse_file(&c->ca, path);
        if (ret < 0 || c->ca.version == 0) {
            char e[200];
            tls_errtext(ret < 0 ? ret : MBEDTLS_ERR_X509_INVALID_FORMAT, e, sizeof e);
            rx_log(RX_LOG_WARN, "tls", "cannot load CA bundle %s: %s", path, e);
            ctx_free(c);
            return ret == MBEDTLS_ERR_X509_ALLOC_FAILED ? RX_ENOMEM : RX_ETLSCA;
        }
        if (ret > 0)
            rx_log(RX_LOG_DEBUG, "tls", "CA bundle %s: %d entries skipped", path, ret);
        c->has_ca = 1;
    }
    *out = c;
    return 0;
}

void rx_tls_ctx_destroy(rx_tls_ctx_t *ctx)
{
    if (ctx != NULL && --ctx->refs == 0)
        ctx_free(ctx);
}

const char *rx_tls_ctx_ca_file(const rx_tls_ctx_t *ctx)
{
    return ctx != NULL ? ctx->ca_file : "";
}

/* ---- session BIO ---- */

static int bio_send(void *arg, const unsigned char *buf, size_t len)
{
    rx__tls_t *t = arg;
    if (len > INT32_MAX)
        len = INT32_MAX;
    if (t->out_cap - t->out_len < len) {
        size_t cap = t->out_cap != 0 ? t->out_cap : OUT_MIN;
        while (cap - t->out_len < len)
            cap *= 2;
        char *p = realloc(t->out, cap);
        if (p == NULL) {
            t->oom = 1;
            return MBEDTLS_ERR_SSL_ALLOC_FAILED;
        }
        t->out = p;
        t->out_cap = cap;
    }
    memcpy(t->out + t->out_len, buf, len);
    t->out_len += len;
    return (int)len;
}

static int bio_recv(void *arg, unsigned char *buf, size_t len)
{
    rx__tls_t *t = arg;
    size_t avail = t->in_len - t->in_off;
    if (avail == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (len > avail)
        len = avail;
    if (len > INT32_MAX)
        len = INT32_MAX;
    memcpy(buf, t->in + t->in_off, len);
    t->in_off += len;
    if (t->in_off == t->in_len)
        t->in_off = t->in_len = 0;
    return (int)len;
}

/* ---- session ---- */

static int is_ip_literal(const char *s)
{
    unsigned char tmp[16];
    return inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
}

static const char **alpn_copy(const char *const *alpn)
{
    size_t n = 0, bytes = 0;
    for (; alpn[n] != NULL; n++)
        bytes += strlen(alpn[n]) + 1;
    char *blk = malloc((n + 1) * sizeof(char *) + bytes);
    if (blk == NULL)
        return NULL;
    const char **v = (const char **)(void *)blk;
    char *sp = blk + (n + 1) * sizeof(char *);
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(alpn[i]) + 1;
        memcpy(sp, alpn[i], l);
        v[i] = sp;
        sp += l;
    }
    v[n] = NULL;
    return v;
}

int rx__tls_new(rx_tls_ctx_t *ctx, const char *server_name, const char *const *alpn, int insecure,
                rx__tls_t **out, char *detail, size_t dlen)
{
    *out = NULL;
    if (ctx == NULL || server_name == NULL)
        return RX_EINVAL;
    if (!insecure && !ctx->has_ca) {
        snprintf(detail, dlen,
                 "TLS context has no CA certificates (created with RX_TLS_CTX_NO_CA)");
        return RX_ETLSCA;
    }
    if (alpn != NULL) {
        for (size_t i = 0; alpn[i] != NULL; i++) {
            size_t l = strlen(alpn[i]);
            if (l == 0 || l > 255)
                return RX_EINVAL;
        }
    }
    rx__tls_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return RX_ENOMEM;
    t->in = malloc(IN_CAP);
    if (t->in == NULL) {
        free(t);
        return RX_ENOMEM;
    }
    mbedtls_ssl_config_init(&t->conf);
    mbedtls_ssl_init(&t->ssl);
    t->ctx = ctx;
    ctx->refs++;

    int rc = RX_ETLS;
    int ret = mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT,
                                          MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret != 0)
        goto fail;
    mbedtls_ssl_conf_min_version(&t->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, &ctx->drbg);
    if (insecure) {
        mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_NONE);
    } else {
        mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
        mbedtls_ssl_conf_ca_chain(&t->conf, &ctx->ca, NULL);
    }
    if (alpn != NULL && alpn[0] != NULL) {
        t->alpn = alpn_copy(alpn);
        if (t->alpn == NULL) {
            rc = RX_ENOMEM;
            goto fail_quiet;
        }
        ret = mbedtls_ssl_conf_alpn_protocols(&t->conf, t->alpn);
        if (ret != 0)
            goto fail;
    }
    ret = mbedtls_ssl_setup(&t->ssl, &t->conf);
    if (ret != 0)
        goto fail;
    /* Without verification an IP literal is not sent as SNI (RFC 6066 forbids it); with
     * verification the name is also what mbedtls checks, so it is always set. */
    const char *hn = insecure && is_ip_literal(server_name) ? NULL : server_name;
    ret = mbedtls_ssl_set_hostname(&t->ssl, hn);
    if (ret != 0)
        goto fail;
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    *out = t;
    return 0;

fail:
    if (ret == MBEDTLS_ERR_SSL_ALLOC_FAILED) {
        rc = RX_ENOMEM;
    } else {
        char e[200];
        tls_errtext(ret, e, sizeof e);
        snprintf(detail, dlen, "TLS setup: %s", e);
    }
fail_quiet:
    rx__tls_free(t);
    return rc;
}

void rx__tls_free(rx__tls_t *t)
{
    if (t == NULL)
        return;
    mbedtls_ssl_free(&t->ssl);
    mbedtls_ssl_config_free(&t->conf);
    rx_tls_ctx_destroy(t->ctx);
    free(t->alpn);
    free(t->in);
    free(t->out);
    free(t);
}

void rx__tls_in_space(rx__tls_t *t, char **base, size_t *len)
{
    if (t->in_off > 0) {
        memmove(t->in, t->in + t->in_off, t->in_len - t->in_off);
        t->in_len -= t->in_off;
        t->in_off = 0;
    }
    *base = t->in + t->in_len;
    *len = IN_CAP - t->in_len;
}

void rx__tls_in_commit(rx__tls_t *t, size_t n)
{
    t->in_len += n;
}

int rx__tls_in_pending(const rx__tls_t *t)
{
    return t->in_len > t->in_off || mbedtls_ssl_get_bytes_avail(&t->ssl) > 0;
}

static int map_err(rx__tls_t *t, int ret, const char *what, char *detail, size_t dlen)
{
    if (t->oom || ret == MBEDTLS_ERR_SSL_ALLOC_FAILED)
        return RX_ENOMEM;
    char e[200];
    tls_errtext(ret, e, sizeof e);
    snprintf(detail, dlen, "%s: %s", what, e);
    return RX_ETLS;
}

int rx__tls_handshake(rx__tls_t *t, char *detail, size_t dlen)
{
    int ret = mbedtls_ssl_handshake(&t->ssl);
    if (ret == 0)
        return 0;
    if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
        return 1;
    if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
        uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
        char info[400];
        int n = mbedtls_x509_crt_verify_info(info, sizeof info, "", flags);
        if (n < 0)
            info[0] = '\0';
        /* One line per problem, each ending in '\n': join them with "; ". */
        size_t len = strlen(info);
        while (len > 0 && info[len - 1] == '\n')
            info[--len] = '\0';
        int w = snprintf(detail, dlen,
                         "certificate verification failed (flags 0x%x): ", (unsigned)flags);
        for (size_t i = 0; i < len && w >= 0 && (size_t)w + 2 < dlen; i++) {
            if (info[i] == '\n') {
                detail[w++] = ';';
                detail[w++] = ' ';
            } else {
                detail[w++] = info[i];
            }
        }
        if (w >= 0 && (size_t)w < dlen)
            detail[w] = '\0';
        return RX_ETLSVERIFY;
    }
    return map_err(t, ret, "TLS handshake", detail, dlen);
}

int rx__tls_read(rx__tls_t *t, char *buf, size_t cap, char *detail, size_t dlen)
{
    int ret = mbedtls_ssl_read(&t->ssl, (unsigned char *)buf, cap);
    if (ret > 0)
        return ret;
    if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
        return 0;
    if (ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
        return UV_EOF;
    return map_err(t, ret, "TLS read", detail, dlen);
}

int rx__tls_write(rx__tls_t *t, const char *p, size_t n, char *detail, size_t dlen)
{
    /* Our send BIO never blocks, so each call consumes up to one record's worth; loop. */
    while (n > 0) {
        int ret = mbedtls_ssl_write(&t->ssl, (const unsigned char *)p, n);
        if (ret < 0)
            return map_err(t, ret, "TLS write", detail, dlen);
        if (ret == 0)
            return map_err(t, MBEDTLS_ERR_SSL_INTERNAL_ERROR, "TLS write", detail, dlen);
        p += ret;
        n -= (size_t)ret;
    }
    return 0;
}

void rx__tls_close_notify(rx__tls_t *t)
{
    (void)mbedtls_ssl_close_notify(&t->ssl);
}

char *rx__tls_out_take(rx__tls_t *t, size_t *len)
{
    if (t->out_len == 0) {
        *len = 0;
        return NULL;
    }
    char *p = t->out;
    *len = t->out_len;
    t->out = NULL;
    t->out_len = t->out_cap = 0;
    return p;
}

const char *rx__tls_alpn(const rx__tls_t *t)
{
    return mbedtls_ssl_get_alpn_protocol(&t->ssl);
}
