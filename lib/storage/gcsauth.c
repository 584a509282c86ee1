/* GCS endpoint, service-account keys, JWT assertions and the process-wide token cache. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <mbedtls/base64.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sto_internal.h"
#include "sto/gcsauth.h"

#define NS_PER_S 1000000000ull
#define CLAIM_STALE_NS (120ull * NS_PER_S)
#define FAIL_BACKOFF_NS (1ull * NS_PER_S)
#define SA_FILE_MAX (1u << 20)

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- URLs ---- */

int sto_gcs_url_parse(const char *url, int allow_bare, int allow_path, sto_gcs_url_t *out,
                      char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!url || !*url) {
        set_err(err, errlen, "empty URL");
        return -EINVAL;
    }
    const char *rest;
    if (strncasecmp(url, "https://", 8) == 0) {
        out->tls = 1;
        out->port = 443;
        rest = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        out->port = 80;
        rest = url + 7;
    } else if (allow_bare && !strstr(url, "://")) {
        out->port = 80;
        rest = url;
    } else {
        set_err(err, errlen, "'%.200s' must start with http:// or https://", url);
        return -EINVAL;
    }
    size_t alen = strcspn(rest, "/?#");
    const char *path = rest + alen;
    const char *a = rest, *hend;
    if (alen && a[0] == '[') {
        hend = memchr(a, ']', alen);
        if (!hend || hend == a + 1 || (size_t)(hend - a - 1) >= sizeof(out->host))
            goto bad_host;
        memcpy(out->host, a + 1, (size_t)(hend - a - 1));
        const char *p = hend + 1;
        if (p < a + alen) {
            if (*p != ':' || sto__parse_port(p + 1, (size_t)(a + alen - p - 1), &out->port) != 0)
                goto bad_host;
        }
    } else {
        const char *colon = memchr(a, ':', alen);
        size_t hl = colon ? (size_t)(colon - a) : alen;
        if (hl == 0 || hl >= sizeof(out->host))
            goto bad_host;
        for (size_t i = 0; i < hl; i++)
            if (!(isalnum((unsigned char)a[i]) || a[i] == '-' || a[i] == '.' || a[i] == '_'))
                goto bad_host;
        memcpy(out->host, a, hl);
        if (colon && sto__parse_port(colon + 1, (size_t)(a + alen - colon - 1), &out->port) != 0)
            goto bad_host;
    }
    if (*path && *path != '/') {
        set_err(err, errlen, "'%.200s': a query or fragment needs a path", url);
        return -EINVAL;
    }
    if (!allow_path && *path && strcmp(path, "/") != 0) {
        set_err(err, errlen,
                "endpoint '%.200s' must not have a path (put the bucket in the gs:// URI)", url);
        return -EINVAL;
    }
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            set_err(err, errlen, "'%.200s': the path must be percent-encoded", url);
            return -EINVAL;
        }
    if (strlen(path) >= sizeof(out->path)) {
        set_err(err, errlen, "'%.200s': path too long", url);
        return -EINVAL;
    }
    snprintf(out->path, sizeof(out->path), "%s", *path ? path : "/");
    return 0;
bad_host:
    set_err(err, errlen, "'%.200s' has no valid host[:port]", url);
    return -EINVAL;
}

int sto_gcs_endpoint_resolve(const char *config_endpoint, sto_gcs_endpoint_t *out, char *err,
                             size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const char *emu = getenv("STORAGE_EMULATOR_HOST");
    int rc;
    if (config_endpoint && *config_endpoint) {
        rc = sto_gcs_url_parse(config_endpoint, 0, 0, &out->url, err, errlen);
        snprintf(out->source, sizeof(out->source), "config");
    } else if (emu && *emu) {
        char e[300];
        rc = sto_gcs_url_parse(emu, 1, 0, &out->url, e, sizeof(e));
        if (rc < 0)
            set_err(err, errlen, "STORAGE_EMULATOR_HOST: %s", e);
        snprintf(out->source, sizeof(out->source), "STORAGE_EMULATOR_HOST");
    } else {
        rc = sto_gcs_url_parse(STO_GCS_DEFAULT_ENDPOINT, 0, 0, &out->url, err, errlen);
        snprintf(out->source, sizeof(out->source), "google");
    }
    return rc;
}

void sto_gcs_host_header(const sto_gcs_url_t *u, char *out, size_t len)
{
    int deflt = (u->tls && u->port == 443) || (!u->tls && u->port == 80);
    int v6 = strchr(u->host, ':') != NULL;
    char port[16] = "";
    if (!deflt)
        snprintf(port, sizeof(port), ":%d", u->port);
    snprintf(out, len, "%s%s%s%s", v6 ? "[" : "", u->host, v6 ? "]" : "", port);
}

int sto_gcs_encode(const char *in, char *out, size_t cap)
{
    static const char hx[] = "0123456789ABCDEF";
    if (!in || !out)
        return -EINVAL;
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        int keep = isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~';
        if (*p >= 0x80)
            keep = 0; /* isalnum is locale-dependent; never keep non-ASCII */
        size_t need = keep ? 1 : 3;
        if (o + need + 1 > cap)
            return -ENOSPC;
        if (keep) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hx[*p >> 4];
            out[o++] = hx[*p & 15];
        }
    }
    if (o + 1 > cap)
        return -ENOSPC;
    out[o] = '\0';
    return (int)o;
}

/* ---- base64url and JWTs ---- */

int sto_b64url_encode(const void *in, size_t n, char *out, size_t cap)
{
    size_t olen = 0;
    if (!out || cap == 0)
        return -ENOSPC;
    /* mbedtls needs room for the padding and the NUL */
    size_t need = 4 * ((n + 2) / 3) + 1;
    if (need > cap) {
        /* the unpadded form may still fit: encode into a scratch buffer */
        char *tmp = malloc(need);
        if (!tmp)
            return -ENOMEM;
        int rc = sto_b64url_encode(in, n, tmp, need);
        if (rc >= 0 && (size_t)rc + 1 > cap)
            rc = -ENOSPC;
        if (rc >= 0)
            memcpy(out, tmp, (size_t)rc + 1);
        free(tmp);
        return rc;
    }
    if (mbedtls_base64_encode((unsigned char *)out, cap, &olen, in, n) != 0)
        return -ENOSPC;
    while (olen && out[olen - 1] == '=')
        olen--;
    for (size_t i = 0; i < olen; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    out[olen] = '\0';
    return (int)olen;
}

/* Appends b64url(compact JSON of obj) at out+*pos. */
static int put_json_b64(json_t *obj, char *out, size_t cap, size_t *pos)
{
    if (!obj)
        return -ENOMEM;
    char *js = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    if (!js)
        return -ENOMEM;
    int n = *pos < cap ? sto_b64url_encode(js, strlen(js), out + *pos, cap - *pos) : -ENOSPC;
    free(js);
    if (n < 0)
        return n;
    *pos += (size_t)n;
    return 0;
}

int sto_gcs_jwt_input(const char *client_email, const char *kid, const char *scope, const char *aud,
                      int64_t iat, char *out, size_t cap)
{
    if (!client_email || !scope || !aud || !out)
        return -EINVAL;
    json_t *h = json_object();
    if (h) {
        json_object_set_new(h, "alg", json_string("RS256"));
        json_object_set_new(h, "typ", json_string("JWT"));
        if (kid && *kid)
            json_object_set_new(h, "kid", json_string(kid));
    }
    size_t pos = 0;
    int rc = put_json_b64(h, out, cap, &pos);
    if (rc < 0)
        return rc;
    if (pos + 2 > cap)
        return -ENOSPC;
    out[pos++] = '.';
    out[pos] = '\0';
    json_t *c = json_object();
    if (c) {
        json_object_set_new(c, "iss", json_string(client_email));
        json_object_set_new(c, "scope", json_string(scope));
        json_object_set_new(c, "aud", json_string(aud));
        json_object_set_new(c, "iat", json_integer((json_int_t)iat));
        json_object_set_new(c, "exp", json_integer((json_int_t)(iat + STO_GCS_JWT_LIFETIME)));
    }
    rc = put_json_b64(c, out, cap, &pos);
    if (rc < 0)
        return rc;
    return (int)pos;
}

int sto_gcs_jwt_sign(const sto_gcs_sa_t *sa, const char *scope, int64_t iat, char *out, size_t cap,
                     char *err, size_t errlen)
{
    if (!sa || !sa->pk) {
        set_err(err, errlen, "no private key");
        return -EINVAL;
    }
    int n = sto_gcs_jwt_input(sa->client_email, sa->private_key_id, scope, sa->token_uri, iat, out,
                              cap);
    if (n < 0) {
        set_err(err, errlen, "JWT: %s", strerror(-n));
        return n;
    }
    unsigned char hash[32];
    mbedtls_sha256_ret((const unsigned char *)out, (size_t)n, hash, 0);
    /* The RNG only blinds the RSA operation; PKCS#1 v1.5 signatures are deterministic. */
    mbedtls_entropy_context ent;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_entropy_init(&ent);
    mbedtls_ctr_drbg_init(&drbg);
    unsigned char *sig = malloc(MBEDTLS_PK_SIGNATURE_MAX_SIZE);
    size_t siglen = 0;
    int rc = sig ? mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent,
                                         (const unsigned char *)"sto-gcs-jwt", 11)
                 : -1;
    if (rc == 0)
        rc = mbedtls_pk_sign(sa->pk, MBEDTLS_MD_SHA256, hash, sizeof(hash), sig, &siglen,
                             mbedtls_ctr_drbg_random, &drbg);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&ent);
    if (!sig) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (rc != 0) {
        free(sig);
        set_err(err, errlen, "RS256 signing failed (mbedtls -0x%04x)", (unsigned)-rc);
        return -EINVAL;
    }
    if ((size_t)n + 2 > cap) {
        free(sig);
        return -ENOSPC;
    }
    out[n] = '.';
    int m = sto_b64url_encode(sig, siglen, out + n + 1, cap - (size_t)n - 1);
    free(sig);
    if (m < 0) {
        set_err(err, errlen, "JWT longer than %zu bytes", cap);
        return m;
    }
    return n + 1 + m;
}

int sto_gcs_token_form(const char *jwt, char *out, size_t cap)
{
    /* a JWT is base64url and dots: nothing to escape in a form value */
    for (const char *p = jwt; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.'))
            return -EINVAL;
    int n = snprintf(out, cap, "grant_type=%s&assertion=%s",
                     "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer", jwt);
    if (n < 0 || (size_t)n >= cap)
        return -ENOSPC;
    return n;
}

/* ---- service accounts ---- */

static int sa_str(const json_t *root, const char *field, int required, char *dst, size_t cap,
                  const char *source, char *err, size_t errlen)
{
    const json_t *v = json_object_get(root, field);
    dst[0] = '\0';
    if (!v || json_is_null(v)) {
        if (!required)
            return 0;
        set_err(err, errlen, "service account file %s: missing \"%s\"", source, field);
        return -EINVAL;
    }
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        set_err(err, errlen, "service account file %s: \"%s\" is not a string", source, field);
        return -EINVAL;
    }
    if (required && json_string_length(v) == 0) {
        set_err(err, errlen, "service account file %s: \"%s\" is empty", source, field);
        return -EINVAL;
    }
    if (json_string_length(v) >= cap) {
        set_err(err, errlen, "service account file %s: \"%s\" is too long", source, field);
        return -EINVAL;
    }
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

int sto_gcs_sa_parse(const char *json, size_t len, const char *source, sto_gcs_sa_t *out, char *err,
                     size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!source)
        source = "(inline)";
    snprintf(out->source, sizeof(out->source), "%s", source);
    json_error_t je;
    json_t *root = json ? json_loadb(json, len, 0, &je) : NULL;
    if (!root || !json_is_object(root)) {
        if (root)
            set_err(err, errlen, "service account file %s: not a JSON object", source);
        else
            set_err(err, errlen, "service account file %s: invalid JSON at line %d: %s", source,
                    json ? je.line : 0, json ? je.text : "no data");
        json_decref(root);
        return -EINVAL;
    }
    int rc = -EINVAL;
    char type[64];
    char *pem = NULL;
    if (sa_str(root, "type", 0, type, sizeof(type), source, err, errlen) < 0)
        goto out;
    if (type[0] && strcmp(type, "service_account") != 0) {
        set_err(err, errlen,
                "%s is a \"%s\" credential; only service-account keys (\"type\": "
                "\"service_account\") are supported",
                source, type);
        goto out;
    }
    if (sa_str(root, "client_email", 1, out->client_email, sizeof(out->client_email), source, err,
               errlen) < 0 ||
        sa_str(root, "token_uri", 1, out->token_uri, sizeof(out->token_uri), source, err, errlen) <
            0 ||
        sa_str(root, "private_key_id", 0, out->private_key_id, sizeof(out->private_key_id), source,
               err, errlen) < 0 ||
        sa_str(root, "project_id", 0, out->project_id, sizeof(out->project_id), source, err,
               errlen) < 0)
        goto out;
    const json_t *pk = json_object_get(root, "private_key");
    if (!pk || json_is_null(pk)) {
        set_err(err, errlen, "service account file %s: missing \"private_key\"", source);
        goto out;
    }
    if (!json_is_string(pk) || json_string_length(pk) == 0 ||
        strlen(json_string_value(pk)) != json_string_length(pk)) {
        set_err(err, errlen, "service account file %s: \"private_key\" is not a PEM string",
                source);
        goto out;
    }
    char e[200];
    if (sto_gcs_url_parse(out->token_uri, 0, 1, &out->token_url, e, sizeof(e)) < 0) {
        set_err(err, errlen, "service account file %s: token_uri: %s", source, e);
        goto out;
    }
    size_t plen = json_string_length(pk);
    pem = malloc(plen + 1);
    mbedtls_pk_context *ctx = malloc(sizeof(*ctx));
    if (!pem || !ctx) {
        free(ctx);
        rc = -ENOMEM;
        set_err(err, errlen, "out of memory");
        goto out;
    }
    memcpy(pem, json_string_value(pk), plen + 1);
    mbedtls_sha256_ret((const unsigned char *)pem, plen, out->key_hash, 0);
    mbedtls_pk_init(ctx);
    int mrc = mbedtls_pk_parse_key(ctx, (const unsigned char *)pem, plen + 1, NULL, 0);
    if (mrc != 0 || !mbedtls_pk_can_do(ctx, MBEDTLS_PK_RSA)) {
        mbedtls_pk_free(ctx);
        free(ctx);
        set_err(err, errlen,
                mrc ? "service account file %s: \"private_key\" is not a readable PEM key"
                    : "service account file %s: \"private_key\" is not an RSA key",
                source);
        goto out;
    }
    out->pk = ctx;
    rc = 0;
out:
    if (pem) {
        /* the key text: do not leave it in freed memory */
        volatile char *vp = pem;
        for (size_t i = 0; vp[i]; i++)
            vp[i] = 0;
        free(pem);
    }
    json_decref(root);
    if (rc < 0) {
        char src[sizeof(out->source)];
        memcpy(src, out->source, sizeof(src));
        memset(out, 0, sizeof(*out));
        memcpy(out->source, src, sizeof(src));
    }
    return rc;
}

int sto_gcs_sa_load(const char *path, sto_gcs_sa_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        set_err(err, errlen, "cannot read the service account file %s: %s", path, strerror(e));
        return -e;
    }
    char *buf = malloc(SA_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        return -ENOMEM;
    }
    size_t n = fread(buf, 1, SA_FILE_MAX + 1, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr || n > SA_FILE_MAX) {
        free(buf);
        set_err(err, errlen, "service account file %s: %s", path,
                rerr ? "read error" : "larger than 1 MiB");
        return -EINVAL;
    }
    int rc = sto_gcs_sa_parse(buf, n, path, out, err, errlen);
    memset(buf, 0, n);
    free(buf);
    return rc;
}

void sto_gcs_sa_free(sto_gcs_sa_t *sa)
{
    if (!sa)
        return;
    if (sa->pk) {
        mbedtls_pk_free(sa->pk);
        free(sa->pk);
        sa->pk = NULL;
    }
}

/* ---- credentials ---- */

int sto_gcs_creds_load(sto_gcs_creds_t *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->scope, sizeof(c->scope), "%s", STO_GCS_SCOPE_READ_WRITE);
    const char *proj = getenv("GOOGLE_CLOUD_PROJECT");
    if (!proj || !*proj)
        proj = getenv("GCLOUD_PROJECT");
    const char *path = getenv("GOOGLE_APPLICATION_CREDENTIALS");
    if (!path || !*path) {
        c->anonymous = 1;
        snprintf(c->source, sizeof(c->source), "none (anonymous requests)");
        snprintf(c->project, sizeof(c->project), "%s", proj ? proj : "");
        return 0;
    }
    int rc = sto_gcs_sa_load(path, &c->sa, err, errlen);
    if (rc < 0)
        return rc;
    snprintf(c->project, sizeof(c->project), "%s", proj && *proj ? proj : c->sa.project_id);
    snprintf(c->source, sizeof(c->source),
             "service account %.255s (GOOGLE_APPLICATION_CREDENTIALS=%.900s)", c->sa.client_email,
             path);
    return 0;
}

void sto_gcs_creds_free(sto_gcs_creds_t *c)
{
    if (c)
        sto_gcs_sa_free(&c->sa);
}

/* ---- token cache ---- */

struct sto_gcs_tokcache {
    /* key */
    char email[256];
    char token_uri[512];
    char scope[96];
    unsigned char key_hash[32];
    /* state, under the lock */
    sto_gcs_tok_t tok;
    int claimed;
    uint64_t claim_ns;
    uint64_t fail_ns; /* 0: the last fetch did not fail */
    char last_err[256];
    pthread_cond_t cv;
    struct sto_gcs_tokcache *next;
};

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static sto_gcs_tokcache_t *cache_head;
static uint64_t cache_gen;

sto_gcs_tokcache_t *sto_gcs_tokcache_get(const sto_gcs_sa_t *sa, const char *scope)
{
    pthread_mutex_lock(&cache_mu);
    sto_gcs_tokcache_t *c = cache_head;
    for (; c; c = c->next)
        if (!strcmp(c->email, sa->client_email) && !strcmp(c->token_uri, sa->token_uri) &&
            !strcmp(c->scope, scope) && !memcmp(c->key_hash, sa->key_hash, 32))
            break;
    if (!c && (c = calloc(1, sizeof(*c)))) {
        snprintf(c->email, sizeof(c->email), "%s", sa->client_email);
        snprintf(c->token_uri, sizeof(c->token_uri), "%s", sa->token_uri);
        snprintf(c->scope, sizeof(c->scope), "%s", scope);
        memcpy(c->key_hash, sa->key_hash, 32);
        /* monotonic clock: waits are measured with rx_now_ns()-like time */
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&c->cv, &ca);
        pthread_condattr_destroy(&ca);
        c->next = cache_head;
        cache_head = c;
    }
    pthread_mutex_unlock(&cache_mu);
    return c;
}

static int state_of(const sto_gcs_tok_t *t, uint64_t now)
{
    if (!t->gen || now >= t->expires_ns)
        return STO_GCS_TOK_NONE;
    return now >= t->refresh_ns ? STO_GCS_TOK_REFRESH : STO_GCS_TOK_FRESH;
}

int sto_gcs_tokcache_peek(sto_gcs_tokcache_t *c, uint64_t now_ns, sto_gcs_tok_t *io)
{
    pthread_mutex_lock(&cache_mu);
    if (c->tok.gen && c->tok.gen != io->gen)
        *io = c->tok;
    pthread_mutex_unlock(&cache_mu);
    return state_of(io, now_ns);
}

int sto_gcs_tokcache_claim(sto_gcs_tokcache_t *c, uint64_t now_ns)
{
    int ok = 0;
    pthread_mutex_lock(&cache_mu);
    if ((!c->claimed || now_ns - c->claim_ns > CLAIM_STALE_NS) &&
        (!c->fail_ns || now_ns - c->fail_ns >= FAIL_BACKOFF_NS)) {
        c->claimed = 1;
        c->claim_ns = now_ns;
        ok = 1;
    }
    pthread_mutex_unlock(&cache_mu);
    return ok;
}

uint64_t sto_gcs_refresh_at(uint64_t now_ns, uint64_t expires_in)
{
    if (expires_in > (UINT64_MAX / 2 - now_ns) / NS_PER_S)
        return UINT64_MAX / 2;
    uint64_t life_ns = expires_in * NS_PER_S;
    uint64_t margin_ns = life_ns / 2 < 300 * NS_PER_S ? life_ns / 2 : 300 * NS_PER_S;
    return now_ns + life_ns - margin_ns;
}

void sto_gcs_tokcache_put(sto_gcs_tokcache_t *c, const char *token, uint64_t expires_in,
                          uint64_t now_ns, int claimed)
{
    uint64_t exp = expires_in > (UINT64_MAX / 2 - now_ns) / NS_PER_S
                       ? UINT64_MAX / 2
                       : now_ns + expires_in * NS_PER_S;
    pthread_mutex_lock(&cache_mu);
    /* two fetches may race (a store without any valid token fetches on its own): keep the
     * token that lives longer */
    if (!c->tok.gen || exp >= c->tok.expires_ns) {
        snprintf(c->tok.value, sizeof(c->tok.value), "%s", token);
        c->tok.expires_ns = exp;
        c->tok.refresh_ns = sto_gcs_refresh_at(now_ns, expires_in);
        c->tok.gen = ++cache_gen;
    }
    c->fail_ns = 0;
    c->last_err[0] = '\0';
    if (claimed)
        c->claimed = 0;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&cache_mu);
}

void sto_gcs_tokcache_fail(sto_gcs_tokcache_t *c, const char *why, uint64_t now_ns, int claimed)
{
    pthread_mutex_lock(&cache_mu);
    c->fail_ns = now_ns ? now_ns : 1;
    snprintf(c->last_err, sizeof(c->last_err), "%s", why ? why : "token fetch failed");
    if (claimed)
        c->claimed = 0;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&cache_mu);
}

void sto_gcs_tokcache_unclaim(sto_gcs_tokcache_t *c)
{
    pthread_mutex_lock(&cache_mu);
    c->claimed = 0;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&cache_mu);
}

int sto_gcs_tokcache_wait(sto_gcs_tokcache_t *c, int timeout_ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    pthread_mutex_lock(&cache_mu);
    while (c->claimed) {
        if (pthread_cond_timedwait(&c->cv, &cache_mu, &dl) != 0) {
            rc = c->claimed ? -ETIMEDOUT : 0;
            break;
        }
    }
    pthread_mutex_unlock(&cache_mu);
    return rc;
}

void sto_gcs_tokcache_last_error(sto_gcs_tokcache_t *c, char *out, size_t len)
{
    pthread_mutex_lock(&cache_mu);
    snprintf(out, len, "%s", c->last_err);
    pthread_mutex_unlock(&cache_mu);
}
