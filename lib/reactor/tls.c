/* tls.c — mbedtls glue: TLS contexts (client and server), a sans-I/O session, certificate
 * fingerprints and self-signed certificate generation.
 *
 * The session never touches a socket. Its BIO callbacks read ciphertext from an input buffer that
 * the stream fills from uv_read, and append ciphertext to an output buffer that the stream hands
 * to uv_write. The input side answers MBEDTLS_ERR_SSL_WANT_READ when empty; the output side never
 * blocks (it grows), so mbedtls never sees WANT_WRITE and every ssl_write consumes its record.
 *
 * Client sessions each own an mbedtls_ssl_config, because the verification settings (CA, pin,
 * insecure, ALPN) are per stream. Server sessions share one config kept in the server context:
 * everything in it is per listener, and mbedtls treats a config as read-only once sessions use it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/asn1write.h>
#include <mbedtls/bignum.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecp.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <uv.h>

#include "rx/err.h"
#include "rx/log.h"
#include "rx/stream.h"
#include "rx_internal.h"

#define IN_CAP (64 * 1024) /* > one max TLS record (16 KiB + overhead) */
#define OUT_MIN (16 * 1024 + 512)
#define MAX_PEM_FILE (16 * 1024 * 1024)

struct rx_tls_ctx {
    int refs;
    int is_server;
    int has_ca;  /* client: the CA bundle; server: the CA client certificates must chain to */
    int has_own; /* own_cert + own_key loaded */
    mbedtls_x509_crt ca;
    mbedtls_x509_crt own_cert;
    mbedtls_pk_context own_key;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_ssl_config srv_conf; /* server contexts: shared by every accepted session */
    const char **alpn;           /* server contexts: NULL-terminated copy, or NULL */
    char ca_file[];
};

struct rx__tls {
    rx_tls_ctx_t *ctx; /* one reference held */
    int is_server;
    int handshaken;
    int has_pin;
    int pin_failed; /* set by pin_verify: pin_got differs from pin */
    int alpn_checked;
    uint8_t pin[32], pin_got[32];
    mbedtls_ssl_config conf; /* client sessions only (initialised but unused on servers) */
    mbedtls_ssl_context ssl;
    const char **alpn; /* NULL-terminated copy, one allocation with its strings */
    int oom;
    char *in; /* ciphertext received: in[in_off, in_len) not yet consumed by mbedtls */
    size_t in_off, in_len;
    char *out; /* ciphertext waiting for uv_write */
    size_t out_len, out_cap;
};

/* ---- helpers ---- */


static void tls_errtext(int ret, char *buf, size_t len)
{
    char tmp[160];
    mbedtls_strerror(ret, tmp, sizeof tmp);
    snprintf(buf, len, "%s (-0x%04x)", tmp, (unsigned)-ret);
}

static int valid_alpn(const char *const *alpn)
{
    if (alpn == NULL)
        return 1;
    for (size_t i = 0; alpn[i] != NULL; i++) {
        size_t l = strlen(alpn[i]);
        if (l == 0 || l > 255)
            return 0;
    }
    return 1;
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

/* Reads a whole file plus a terminating NUL (mbedtls' PEM parsers want it counted in the length).
 * Returns 0 or -errno. */
static int load_file(const char *path, unsigned char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return -EISDIR;
    }
    if (st.st_size > MAX_PEM_FILE) {
        close(fd);
        return -EFBIG;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    unsigned char *p = malloc(cap);
    if (p == NULL) {
        close(fd);
        return -ENOMEM;
    }
    for (;;) {
        if (n + 1 >= cap) { /* the file grew (or st_size was 0 for a pseudo-file) */
            if (cap > MAX_PEM_FILE) {
                mbedtls_platform_zeroize(p, n);
                free(p);
                close(fd);
                return -EFBIG;
            }
            unsigned char *q = realloc(p, cap * 2);
            if (q == NULL) {
                mbedtls_platform_zeroize(p, n);
                free(p);
                close(fd);
                return -ENOMEM;
            }
            p = q;
            cap *= 2;
        }
        ssize_t r = read(fd, p + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = -errno;
            mbedtls_platform_zeroize(p, n);
            free(p);
            close(fd);
            return e;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    p[n] = '\0';
    *buf = p;
    *len = n;
    return 0;
}

/* Length to hand to mbedtls' parsers: PEM text with its NUL, DER as it is. */
static size_t parse_len(const unsigned char *buf, size_t len)
{
    return strstr((const char *)buf, "-----BEGIN ") != NULL ? len + 1 : len;
}

/* Appends the certificates of a PEM or DER file to crt. Returns 0, RX_ETLSCA or RX_ENOMEM. */
static int parse_cert_file(mbedtls_x509_crt *crt, const char *path, char *err, size_t errlen)
{
    unsigned char *buf;
    size_t len;
    int r = load_file(path, &buf, &len);
    if (r < 0) {
        rx__set_err(err, errlen, "%s: cannot read: %s", path, strerror(-r));
        return r == -ENOMEM ? RX_ENOMEM : RX_ETLSCA;
    }
    /* > 0: that many entries failed to parse (bundles carry a few mbedtls rejects). */
    int ret = mbedtls_x509_crt_parse(crt, buf, parse_len(buf, len));
    free(buf);
    if (ret < 0 || crt->version == 0) {
        char e[200];
        tls_errtext(ret < 0 ? ret : MBEDTLS_ERR_X509_INVALID_FORMAT, e, sizeof e);
        rx__set_err(err, errlen, "%s: no usable certificate: %s", path, e);
        return ret == MBEDTLS_ERR_X509_ALLOC_FAILED ? RX_ENOMEM : RX_ETLSCA;
    }
    if (ret > 0)
        rx_log(RX_LOG_DEBUG, "tls", "%s: %d entries skipped", path, ret);
    return 0;
}

/* Parses an unencrypted private key (PEM or DER). Returns 0, RX_ETLSCA or RX_ENOMEM. */
static int parse_key_file(mbedtls_pk_context *pk, const char *path, char *err, size_t errlen)
{
    unsigned char *buf;
    size_t len;
    int r = load_file(path, &buf, &len);
    if (r < 0) {
        rx__set_err(err, errlen, "%s: cannot read: %s", path, strerror(-r));
        return r == -ENOMEM ? RX_ENOMEM : RX_ETLSCA;
    }
    int ret = mbedtls_pk_parse_key(pk, buf, parse_len(buf, len), NULL, 0);
    mbedtls_platform_zeroize(buf, len);
    free(buf);
    if (ret != 0) {
        char e[200];
        tls_errtext(ret, e, sizeof e);
        rx__set_err(err, errlen, "%s: cannot parse the private key: %s", path, e);
        return ret == MBEDTLS_ERR_PK_ALLOC_FAILED ? RX_ENOMEM : RX_ETLSCA;
    }
    return 0;
}

/* Loads own_cert + own_key and checks that they belong together. */
static int load_own(rx_tls_ctx_t *c, const char *cert_file, const char *key_file, char *err,
                    size_t errlen)
{
    int r = parse_cert_file(&c->own_cert, cert_file, err, errlen);
    if (r == 0)
        r = parse_key_file(&c->own_key, key_file, err, errlen);
    if (r == 0 && mbedtls_pk_check_pair(&c->own_cert.pk, &c->own_key) != 0) {
        rx__set_err(err, errlen, "%s does not match the certificate %s", key_file, cert_file);
        r = RX_EINVAL;
    }
    if (r < 0) {
        mbedtls_x509_crt_free(&c->own_cert);
        mbedtls_pk_free(&c->own_key);
        mbedtls_x509_crt_init(&c->own_cert);
        mbedtls_pk_init(&c->own_key);
        return r;
    }
    c->has_own = 1;
    return 0;
}

/* ---- contexts ---- */

static void ctx_free(rx_tls_ctx_t *c)
{
    mbedtls_ssl_config_free(&c->srv_conf);
    mbedtls_x509_crt_free(&c->ca);
    mbedtls_x509_crt_free(&c->own_cert);
    mbedtls_pk_free(&c->own_key);
    mbedtls_ctr_drbg_free(&c->drbg);
    mbedtls_entropy_free(&c->entropy);
    free(c->alpn);
    free(c);
}

/* A context with a seeded DRBG and nothing loaded. Returns 0, RX_ENOMEM or RX_ETLS. */
static int ctx_alloc(const char *path, rx_tls_ctx_t **out)
{
    *out = NULL;
    size_t plen = strlen(path);
    rx_tls_ctx_t *c = calloc(1, sizeof *c + plen + 1);
    if (c == NULL)
        return RX_ENOMEM;
    memcpy(c->ca_file, path, plen + 1);
    c->refs = 1;
    mbedtls_x509_crt_init(&c->ca);
    mbedtls_x509_crt_init(&c->own_cert);
    mbedtls_pk_init(&c->own_key);
    mbedtls_entropy_init(&c->entropy);
    mbedtls_ctr_drbg_init(&c->drbg);
    mbedtls_ssl_config_init(&c->srv_conf);

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
    *out = c;
    return 0;
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
    rx_tls_ctx_t *c;
    int r = ctx_alloc(path, &c);
    if (r < 0)
        return r;
    if (!(flags & RX_TLS_CTX_NO_CA)) {
        char e[400];
        r = parse_cert_file(&c->ca, path, e, sizeof e);
        if (r < 0) {
            rx_log(RX_LOG_WARN, "tls", "cannot load CA bundle: %s", e);
            ctx_free(c);
            return r;
        }
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

int rx_tls_ctx_use_cert(rx_tls_ctx_t *ctx, const char *cert_file, const char *key_file, char *err,
                        size_t errlen)
{
    rx__set_err(err, errlen, "%s", "");
    if (ctx == NULL || cert_file == NULL || key_file == NULL || cert_file[0] == '\0' ||
        key_file[0] == '\0') {
        rx__set_err(err, errlen, "rx_tls_ctx_use_cert: invalid argument");
        return RX_EINVAL;
    }
    if (ctx->is_server) {
        rx__set_err(err, errlen, "rx_tls_ctx_use_cert: not a client context");
        return RX_EINVAL;
    }
    if (ctx->has_own) {
        rx__set_err(err, errlen, "rx_tls_ctx_use_cert: the context already has a certificate");
        return RX_EINVAL;
    }
    return load_own(ctx, cert_file, key_file, err, errlen);
}

int rx_tls_server_ctx_create(const char *cert_file, const char *key_file, const char *const *alpn,
                             const char *client_ca_file, rx_tls_ctx_t **out, char *err,
                             size_t errlen)
{
    rx__set_err(err, errlen, "%s", "");
    if (out != NULL)
        *out = NULL;
    if (out == NULL || cert_file == NULL || key_file == NULL || cert_file[0] == '\0' ||
        key_file[0] == '\0') {
        rx__set_err(err, errlen, "rx_tls_server_ctx_create: invalid argument");
        return RX_EINVAL;
    }
    if (!valid_alpn(alpn)) {
        rx__set_err(err, errlen, "rx_tls_server_ctx_create: ALPN names must be 1..255 bytes");
        return RX_EINVAL;
    }
    if (client_ca_file != NULL && client_ca_file[0] == '\0')
        client_ca_file = NULL;
    rx_tls_ctx_t *c;
    int r = ctx_alloc(client_ca_file != NULL ? client_ca_file : "", &c);
    if (r < 0) {
        rx__set_err(err, errlen, "%s", r == RX_ENOMEM ? "out of memory" : "DRBG seeding failed");
        return r;
    }
    c->is_server = 1;
    r = load_own(c, cert_file, key_file, err, errlen);
    if (r == 0 && client_ca_file != NULL) {
        r = parse_cert_file(&c->ca, client_ca_file, err, errlen);
        c->has_ca = r == 0;
    }
    if (r == 0 && alpn != NULL && alpn[0] != NULL) {
        c->alpn = alpn_copy(alpn);
        if (c->alpn == NULL)
            r = RX_ENOMEM;
    }
    if (r < 0) {
        ctx_free(c);
        return r;
    }

    mbedtls_ssl_config *conf = &c->srv_conf;
    const char *step = "defaults";
    int ret = mbedtls_ssl_config_defaults(conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                          MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret == 0) {
        mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                     MBEDTLS_SSL_MINOR_VERSION_3);
        mbedtls_ssl_conf_rng(conf, mbedtls_ctr_drbg_random, &c->drbg);
        if (c->has_ca) {
            mbedtls_ssl_conf_authmode(conf, MBEDTLS_SSL_VERIFY_REQUIRED);
            mbedtls_ssl_conf_ca_chain(conf, &c->ca, NULL);
        } else {
            mbedtls_ssl_conf_authmode(conf, MBEDTLS_SSL_VERIFY_NONE);
        }
        step = "own certificate";
        ret = mbedtls_ssl_conf_own_cert(conf, &c->own_cert, &c->own_key);
    }
    if (ret == 0 && c->alpn != NULL) {
        step = "ALPN";
        ret = mbedtls_ssl_conf_alpn_protocols(conf, c->alpn);
    }
    if (ret != 0) {
        char e[200];
        tls_errtext(ret, e, sizeof e);
        rx__set_err(err, errlen, "TLS server setup (%s): %s", step, e);
        ctx_free(c);
        return ret == MBEDTLS_ERR_SSL_ALLOC_FAILED ? RX_ENOMEM : RX_ETLS;
    }
    *out = c;
    return 0;
}

int rx__tls_ctx_is_server(const rx_tls_ctx_t *ctx)
{
    return ctx->is_server;
}

void rx__tls_ctx_ref(rx_tls_ctx_t *ctx)
{
    ctx->refs++;
}

/* ---- fingerprints ---- */

void rx_tls_fingerprint_format(const uint8_t fp[32], char out[96])
{
    static const char hex[] = "0123456789ABCDEF";
    for (int i = 0; i < 32; i++) {
        out[i * 3] = hex[fp[i] >> 4];
        out[i * 3 + 1] = hex[fp[i] & 15];
        out[i * 3 + 2] = i < 31 ? ':' : '\0';
    }
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int rx_tls_fingerprint_parse(const char *s, uint8_t out[32])
{
    if (s == NULL || out == NULL)
        return RX_EINVAL;
    if (strncmp(s, "sha256:", 7) == 0 || strncmp(s, "SHA256:", 7) == 0)
        s += 7;
    size_t len = strlen(s);
    size_t step;
    if (len == 64)
        step = 2;
    else if (len == 95)
        step = 3;
    else
        return RX_EINVAL;
    uint8_t tmp[32];
    for (size_t i = 0; i < 32; i++) {
        const char *p = s + i * step;
        int hi = hexval(p[0]), lo = hexval(p[1]);
        if (hi < 0 || lo < 0)
            return RX_EINVAL;
        if (step == 3 && i < 31 && p[2] != ':')
            return RX_EINVAL;
        tmp[i] = (uint8_t)(hi << 4 | lo);
    }
    memcpy(out, tmp, sizeof tmp);
    return 0;
}

static void sha256_of(const mbedtls_x509_crt *crt, uint8_t out[32])
{
    (void)mbedtls_sha256_ret(crt->raw.p, crt->raw.len, out, 0);
}

int rx_tls_cert_file_sha256(const char *cert_file, uint8_t out[32], char *err, size_t errlen)
{
    rx__set_err(err, errlen, "%s", "");
    if (cert_file == NULL || out == NULL) {
        rx__set_err(err, errlen, "rx_tls_cert_file_sha256: invalid argument");
        return RX_EINVAL;
    }
    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    int r = parse_cert_file(&crt, cert_file, err, errlen);
    if (r == 0)
        sha256_of(&crt, out);
    mbedtls_x509_crt_free(&crt);
    return r;
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

static rx__tls_t *session_alloc(rx_tls_ctx_t *ctx)
{
    rx__tls_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->in = malloc(IN_CAP);
    if (t->in == NULL) {
        free(t);
        return NULL;
    }
    mbedtls_ssl_config_init(&t->conf);
    mbedtls_ssl_init(&t->ssl);
    t->ctx = ctx;
    ctx->refs++;
    return t;
}

/* Verify callback of pinned client sessions (authmode OPTIONAL, no CA): only the leaf's SHA-256
 * counts. Other chain members and mbedtls' own findings (untrusted, expired, name) are cleared. A
 * mismatch returns an error that is not MBEDTLS_ERR_X509_CERT_VERIFY_FAILED: mbedtls treats such
 * callback errors as fatal even under OPTIONAL, so the handshake stops at the server's Certificate
 * message and an alert goes out. */
static int pin_verify(void *arg, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    rx__tls_t *t = arg;
    if (depth == 0) {
        uint8_t got[32];
        sha256_of(crt, got);
        if (memcmp(got, t->pin, sizeof got) != 0) {
            memcpy(t->pin_got, got, sizeof got);
            t->pin_failed = 1;
            return MBEDTLS_ERR_X509_FATAL_ERROR;
        }
    }
    *flags = 0;
    return 0;
}

int rx__tls_new(rx_tls_ctx_t *ctx, const char *server_name, const char *const *alpn, int insecure,
                const uint8_t *pin, rx__tls_t **out, char *detail, size_t dlen)
{
    *out = NULL;
    if (ctx == NULL || server_name == NULL)
        return RX_EINVAL;
    if (ctx->is_server) {
        snprintf(detail, dlen, "a server TLS context cannot make client connections");
        return RX_EINVAL;
    }
    if (pin != NULL)
        insecure = 0; /* the pin is checked whatever insecure says */
    if (!insecure && pin == NULL && !ctx->has_ca) {
        snprintf(detail, dlen,
                 "TLS context has no CA certificates (created with RX_TLS_CTX_NO_CA)");
        return RX_ETLSCA;
    }
    if (!valid_alpn(alpn))
        return RX_EINVAL;
    rx__tls_t *t = session_alloc(ctx);
    if (t == NULL)
        return RX_ENOMEM;
    if (pin != NULL) {
        t->has_pin = 1;
        memcpy(t->pin, pin, sizeof t->pin);
    }

    int rc = RX_ETLS;
    int ret = mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT,
                                          MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret != 0)
        goto fail;
    mbedtls_ssl_conf_min_version(&t->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, &ctx->drbg);
    if (pin != NULL) {
        /* OPTIONAL: mbedtls records but ignores chain, date and name problems; the pin is the
         * whole check (pin_verify during the handshake, handshake_checks once it is done). */
        mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_OPTIONAL);
        mbedtls_ssl_conf_verify(&t->conf, pin_verify, t);
    } else if (insecure) {
        mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_NONE);
    } else {
        mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
        mbedtls_ssl_conf_ca_chain(&t->conf, &ctx->ca, NULL);
    }
    if (ctx->has_own) {
        ret = mbedtls_ssl_conf_own_cert(&t->conf, &ctx->own_cert, &ctx->own_key);
        if (ret != 0)
            goto fail;
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
    /* Without name verification an IP literal is not sent as SNI (RFC 6066 forbids it); with
     * verification the name is also what mbedtls checks, so it is always set. */
    const char *hn = (insecure || pin != NULL) && is_ip_literal(server_name) ? NULL : server_name;
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

int rx__tls_new_server(rx_tls_ctx_t *ctx, rx__tls_t **out, char *detail, size_t dlen)
{
    *out = NULL;
    if (ctx == NULL || !ctx->is_server)
        return RX_EINVAL;
    rx__tls_t *t = session_alloc(ctx);
    if (t == NULL)
        return RX_ENOMEM;
    t->is_server = 1;
    int ret = mbedtls_ssl_setup(&t->ssl, &ctx->srv_conf);
    if (ret != 0) {
        int rc = RX_ENOMEM;
        if (ret != MBEDTLS_ERR_SSL_ALLOC_FAILED) {
            char e[200];
            tls_errtext(ret, e, sizeof e);
            snprintf(detail, dlen, "TLS setup: %s", e);
            rc = RX_ETLS;
        }
        rx__tls_free(t);
        return rc;
    }
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    *out = t;
    return 0;
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

static const char *alert_name(unsigned a)
{
    static const struct {
        unsigned char code;
        const char *name;
    } names[] = {{10, "unexpected_message"},      {20, "bad_record_mac"},
                 {40, "handshake_failure"},       {42, "bad_certificate"},
                 {43, "unsupported_certificate"}, {44, "certificate_revoked"},
                 {45, "certificate_expired"},     {46, "certificate_unknown"},
                 {47, "illegal_parameter"},       {48, "unknown_ca"},
                 {49, "access_denied"},           {50, "decode_error"},
                 {51, "decrypt_error"},           {70, "protocol_version"},
                 {71, "insufficient_security"},   {80, "internal_error"},
                 {86, "inappropriate_fallback"},  {90, "user_canceled"},
                 {109, "missing_extension"},      {110, "unsupported_extension"},
                 {112, "unrecognized_name"},      {116, "certificate_required"},
                 {120, "no_application_protocol"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (names[i].code == a)
            return names[i].name;
    }
    return "alert";
}

static int map_err(rx__tls_t *t, int ret, const char *what, char *detail, size_t dlen)
{
    if (t->oom || ret == MBEDTLS_ERR_SSL_ALLOC_FAILED)
        return RX_ENOMEM;
    char e[200];
    tls_errtext(ret, e, sizeof e);
    if (ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE && t->ssl.in_msg != NULL) {
        /* mbedtls 2.28 leaves the alert record in in_msg: [level, description]. */
        unsigned a = t->ssl.in_msg[1];
        snprintf(detail, dlen, "%s: the peer sent the fatal alert %s (%u)", what, alert_name(a), a);
    } else {
        snprintf(detail, dlen, "%s: %s", what, e);
    }
    return RX_ETLS;
}

static int verify_failed(rx__tls_t *t, char *detail, size_t dlen)
{
    uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
    char info[400];
    int n = mbedtls_x509_crt_verify_info(info, sizeof info, "", flags);
    if (n < 0)
        info[0] = '\0';
    /* One line per problem, each ending in '\n': join them with "; ". */
    size_t len = strlen(info);
    while (len > 0 && info[len - 1] == '\n')
        info[--len] = '\0';
    int w = snprintf(detail, dlen, "%scertificate verification failed (flags 0x%x): ",
                     t->is_server ? "client " : "", (unsigned)flags);
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

static int pin_mismatch(const rx__tls_t *t, const uint8_t got[32], char *detail, size_t dlen)
{
    char want_s[96], got_s[96];
    rx_tls_fingerprint_format(t->pin, want_s);
    rx_tls_fingerprint_format(got, got_s);
    snprintf(detail, dlen, "certificate pin mismatch: expected SHA256:%s, got SHA256:%s", want_s,
             got_s);
    return RX_ETLSVERIFY;
}

/* The handshake completed in mbedtls' view: check the pin once more on the certificate the
 * session kept (pin_verify already did during the handshake; this also covers a handshake that
 * would skip the callback). */
static int handshake_checks(rx__tls_t *t, char *detail, size_t dlen)
{
    if (t->has_pin) {
        const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&t->ssl);
        uint8_t got[32];
        int r = 0;
        if (peer == NULL) {
            snprintf(detail, dlen, "certificate pin: the server sent no certificate");
            r = RX_ETLSVERIFY;
        } else {
            sha256_of(peer, got);
            if (memcmp(got, t->pin, sizeof got) != 0)
                r = pin_mismatch(t, got, detail, dlen);
        }
        if (r < 0) {
            (void)mbedtls_ssl_send_alert_message(&t->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                                 MBEDTLS_SSL_ALERT_MSG_BAD_CERT);
            return r;
        }
    }
    t->handshaken = 1;
    return 0;
}

/* Server sessions with an ALPN list require the client to agree on one. mbedtls 2.28 only fails
 * when the client offers protocols and none match; a client offering none would get a session
 * without ALPN. So the handshake is driven step by step (what mbedtls_ssl_handshake does) and,
 * right after the ClientHello was parsed and before any answer is written, a missing ALPN gets
 * the no_application_protocol alert. Returns an mbedtls code, or 1 for the ALPN refusal. */
static int server_handshake(rx__tls_t *t)
{
    while (t->ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER) {
        int ret = mbedtls_ssl_handshake_step(&t->ssl);
        if (ret != 0)
            return ret;
        if (!t->alpn_checked && t->ctx->alpn != NULL && t->ssl.state > MBEDTLS_SSL_CLIENT_HELLO) {
            t->alpn_checked = 1;
            if (mbedtls_ssl_get_alpn_protocol(&t->ssl) == NULL) {
                (void)mbedtls_ssl_send_alert_message(&t->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                                     MBEDTLS_SSL_ALERT_MSG_NO_APPLICATION_PROTOCOL);
                return 1;
            }
        }
    }
    return 0;
}

int rx__tls_handshake(rx__tls_t *t, char *detail, size_t dlen)
{
    int ret = t->is_server ? server_handshake(t) : mbedtls_ssl_handshake(&t->ssl);
    if (ret == 0)
        return handshake_checks(t, detail, dlen);
    if (ret == 1) {
        int w =
            snprintf(detail, dlen, "TLS handshake: the client offered no ALPN protocol (accepted:");
        for (size_t i = 0; t->ctx->alpn[i] != NULL && w >= 0 && (size_t)w < dlen; i++)
            w += snprintf(detail + w, dlen - (size_t)w, " %s", t->ctx->alpn[i]);
        if (w >= 0 && (size_t)w < dlen)
            snprintf(detail + w, dlen - (size_t)w, ")");
        return RX_ETLS;
    }
    if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
        return 1;
    if (t->pin_failed)
        return pin_mismatch(t, t->pin_got, detail, dlen);
    if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED)
        return verify_failed(t, detail, dlen);
    if (ret == MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE) {
        snprintf(detail, dlen, "TLS handshake: the client sent no certificate (required)");
        (void)mbedtls_ssl_send_alert_message(&t->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                             MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE);
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

int rx__tls_peer_cert_sha256(const rx__tls_t *t, uint8_t out[32])
{
    if (!t->handshaken)
        return RX_ESTATE;
    const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&t->ssl);
    if (peer == NULL || peer->raw.len == 0)
        return RX_ESTATE;
    sha256_of(peer, out);
    return 0;
}

/* ---- self-signed certificates ---- */

/* subjectAltName ::= SEQUENCE OF GeneralName; dNSName [2] IMPLICIT IA5String. mbedtls 2.28 has no
 * writer for it, so the DER is built here, backwards as mbedtls' asn1write does. */
static int san_der(const char *const *names, unsigned char **der, size_t *der_len)
{
    size_t cap = 16;
    for (size_t i = 0; names[i] != NULL; i++)
        cap += strlen(names[i]) + 8;
    unsigned char *buf = malloc(cap);
    if (buf == NULL)
        return MBEDTLS_ERR_ASN1_ALLOC_FAILED;
    unsigned char *p = buf + cap;
    size_t n = 0;
    int ret = 0;
    size_t count = 0;
    while (names[count] != NULL)
        count++;
    for (size_t i = count; i-- > 0;) { /* backwards, so the names keep their order */
        size_t l = strlen(names[i]);
        int w = mbedtls_asn1_write_raw_buffer(&p, buf, (const unsigned char *)names[i], l);
        if (w < 0) {
            ret = w;
            break;
        }
        n += (size_t)w;
        w = mbedtls_asn1_write_len(&p, buf, l);
        if (w < 0) {
            ret = w;
            break;
        }
        n += (size_t)w;
        w = mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONTEXT_SPECIFIC | 2);
        if (w < 0) {
            ret = w;
            break;
        }
        n += (size_t)w;
    }
    if (ret == 0) {
        int w = mbedtls_asn1_write_len(&p, buf, n);
        if (w >= 0) {
            n += (size_t)w;
            w = mbedtls_asn1_write_tag(&p, buf, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE);
        }
        if (w < 0)
            ret = w;
        else
            n += (size_t)w;
    }
    if (ret != 0) {
        free(buf);
        return ret;
    }
    memmove(buf, p, n);
    *der = buf;
    *der_len = n;
    return 0;
}

/* "YYYYMMDDhhmmss" (UTC) for mbedtls_x509write_crt_set_validity. */
static int fmt_time(time_t t, char out[16])
{
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 1000)
        return -1;
    return strftime(out, 16, "%Y%m%d%H%M%S", &tm) == 14 ? 0 : -1;
}

/* Writes data to path through "path.tmp.XXXXXX" + fsync + rename(2). Returns 0 or -errno. */
static int write_atomic(const char *path, const unsigned char *data, size_t len, mode_t mode,
                        char *err, size_t errlen)
{
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (tmp == NULL) {
        rx__set_err(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    snprintf(tmp, pl + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp); /* mode 0600 */
    if (fd < 0) {
        int e = errno;
        rx__set_err(err, errlen, "%s: cannot create a temporary file: %s", path, strerror(e));
        free(tmp);
        return -e;
    }
    const char *step = "chmod";
    int e = 0;
    if (fchmod(fd, mode) != 0) {
        e = errno;
    } else {
        step = "write";
        size_t off = 0;
        while (off < len) {
            ssize_t w = write(fd, data + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                e = errno;
                break;
            }
            off += (size_t)w;
        }
        if (e == 0 && fsync(fd) != 0) {
            step = "fsync";
            e = errno;
        }
    }
    if (close(fd) != 0 && e == 0) {
        step = "close";
        e = errno;
    }
    if (e == 0 && rename(tmp, path) != 0) {
        step = "rename";
        e = errno;
    }
    if (e != 0) {
        rx__set_err(err, errlen, "%s: %s: %s", path, step, strerror(e));
        unlink(tmp);
    }
    free(tmp);
    return -e;
}

/* The CN as mbedtls_x509write_crt_set_subject_name parses it: ',' must be escaped. */
static int subject_string(const char *cn, char *out, size_t cap)
{
    size_t w = 0;
    const char prefix[] = "CN=";
    memcpy(out, prefix, sizeof prefix - 1);
    w = sizeof prefix - 1;
    for (const char *c = cn; *c != '\0'; c++) {
        if (*c == '\\' || (unsigned char)*c < 0x20)
            return -1;
        if (w + 3 >= cap)
            return -1;
        if (*c == ',')
            out[w++] = '\\';
        out[w++] = *c;
    }
    out[w] = '\0';
    return 0;
}

int rx_tls_cert_generate(const char *cert_file, const char *key_file, const char *cn,
                         const char *const *dns_names, unsigned days, char *err, size_t errlen)
{
    rx__set_err(err, errlen, "%s", "");
    char subject[160];
    if (cert_file == NULL || key_file == NULL || cn == NULL || cert_file[0] == '\0' ||
        key_file[0] == '\0' || cn[0] == '\0' || strlen(cn) > 64 || days == 0 || days > 36500 ||
        subject_string(cn, subject, sizeof subject) != 0) {
        rx__set_err(err, errlen, "rx_tls_cert_generate: invalid argument");
        return RX_EINVAL;
    }
    if (dns_names != NULL) {
        for (size_t i = 0; dns_names[i] != NULL; i++) {
            size_t l = strlen(dns_names[i]);
            if (l == 0 || l > 253) {
                rx__set_err(err, errlen, "rx_tls_cert_generate: invalid DNS name");
                return RX_EINVAL;
            }
        }
    }
    time_t now = time(NULL);
    char not_before[16], not_after[16];
    if (fmt_time(now - 86400, not_before) != 0 ||
        fmt_time(now - 86400 + (time_t)days * 86400, not_after) != 0) {
        rx__set_err(err, errlen, "rx_tls_cert_generate: validity out of range");
        return RX_EINVAL;
    }

    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_pk_context key;
    mbedtls_x509write_cert crt;
    mbedtls_mpi serial;
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_pk_init(&key);
    mbedtls_x509write_crt_init(&crt);
    mbedtls_mpi_init(&serial);
    enum { PEM_CAP = 4096 };
    unsigned char *key_pem = calloc(1, PEM_CAP), *crt_pem = calloc(1, PEM_CAP);
    unsigned char *san = NULL;
    size_t san_len = 0;
    int rc = RX_ETLS;
    const char *step = "alloc";
    int ret = 0;
    if (key_pem == NULL || crt_pem == NULL) {
        rc = RX_ENOMEM;
        rx__set_err(err, errlen, "rx_tls_cert_generate: out of memory");
        goto out;
    }

    static const unsigned char pers[] = "sai3bench-rx-certgen";
    step = "DRBG seed";
    ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, pers, sizeof pers - 1);
    if (ret != 0)
        goto fail;
    step = "key setup";
    ret = mbedtls_pk_setup(&key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (ret != 0)
        goto fail;
    step = "P-256 key generation";
    ret = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(key), mbedtls_ctr_drbg_random,
                              &drbg);
    if (ret != 0)
        goto fail;
    step = "key PEM";
    ret = mbedtls_pk_write_key_pem(&key, key_pem, PEM_CAP);
    if (ret != 0)
        goto fail;

    unsigned char sb[16];
    step = "serial";
    ret = mbedtls_ctr_drbg_random(&drbg, sb, sizeof sb);
    if (ret != 0)
        goto fail;
    sb[0] = (unsigned char)((sb[0] & 0x7f) | 0x40); /* positive, always 16 bytes */
    ret = mbedtls_mpi_read_binary(&serial, sb, sizeof sb);
    if (ret != 0)
        goto fail;

    mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&crt, &key);
    mbedtls_x509write_crt_set_issuer_key(&crt, &key);
    step = "serial";
    ret = mbedtls_x509write_crt_set_serial(&crt, &serial);
    if (ret != 0)
        goto fail;
    step = "subject name";
    ret = mbedtls_x509write_crt_set_subject_name(&crt, subject);
    if (ret != 0)
        goto fail;
    step = "issuer name";
    ret = mbedtls_x509write_crt_set_issuer_name(&crt, subject);
    if (ret != 0)
        goto fail;
    step = "validity";
    ret = mbedtls_x509write_crt_set_validity(&crt, not_before, not_after);
    if (ret != 0)
        goto fail;
    step = "basicConstraints";
    ret = mbedtls_x509write_crt_set_basic_constraints(&crt, 1, -1);
    if (ret != 0)
        goto fail;
    step = "keyUsage";
    ret = mbedtls_x509write_crt_set_key_usage(&crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE |
                                                        MBEDTLS_X509_KU_KEY_CERT_SIGN);
    if (ret != 0)
        goto fail;
    step = "subjectKeyIdentifier";
    ret = mbedtls_x509write_crt_set_subject_key_identifier(&crt);
    if (ret != 0)
        goto fail;
    step = "authorityKeyIdentifier";
    ret = mbedtls_x509write_crt_set_authority_key_identifier(&crt);
    if (ret != 0)
        goto fail;
    if (dns_names != NULL && dns_names[0] != NULL) {
        step = "subjectAltName";
        ret = san_der(dns_names, &san, &san_len);
        if (ret != 0)
            goto fail;
        ret = mbedtls_x509write_crt_set_extension(&crt, MBEDTLS_OID_SUBJECT_ALT_NAME,
                                                  MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0,
                                                  san, san_len);
        if (ret != 0)
            goto fail;
    }
    step = "certificate PEM";
    ret = mbedtls_x509write_crt_pem(&crt, crt_pem, PEM_CAP, mbedtls_ctr_drbg_random, &drbg);
    if (ret != 0)
        goto fail;

    rc = write_atomic(key_file, key_pem, strlen((const char *)key_pem), 0600, err, errlen);
    if (rc == 0)
        rc = write_atomic(cert_file, crt_pem, strlen((const char *)crt_pem), 0644, err, errlen);
    goto out;

fail:
    if (ret == MBEDTLS_ERR_ASN1_ALLOC_FAILED || ret == MBEDTLS_ERR_X509_ALLOC_FAILED ||
        ret == MBEDTLS_ERR_PK_ALLOC_FAILED || ret == MBEDTLS_ERR_MPI_ALLOC_FAILED ||
        ret == MBEDTLS_ERR_ECP_ALLOC_FAILED) {
        rc = RX_ENOMEM;
    }
    {
        char e[200];
        tls_errtext(ret, e, sizeof e);
        rx__set_err(err, errlen, "certificate generation (%s): %s", step, e);
    }
out:
    if (key_pem != NULL)
        mbedtls_platform_zeroize(key_pem, PEM_CAP);
    free(key_pem);
    free(crt_pem);
    free(san);
    mbedtls_mpi_free(&serial);
    mbedtls_x509write_crt_free(&crt);
    mbedtls_pk_free(&key);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return rc;
}
