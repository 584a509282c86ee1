/* AWS Signature Version 4. The contract is in sto/sigv4.h; notes here say why. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>

#include "sto/sigv4.h"

#define ALGORITHM "AWS4-HMAC-SHA256"
#define TERMINATOR "aws4_request"

static const char hexu[] = "0123456789ABCDEF";
static const char hexl[] = "0123456789abcdef";

/* ---- small helpers ---------------------------------------------------------------------- */

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t';
}

static void hex_lower(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexl[in[i] >> 4];
        out[2 * i + 1] = hexl[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Bounded writer: the first overflow sticks, so callers check once at the end. One byte is always
 * kept for the terminating NUL. */
typedef struct wbuf {
    char *p;
    size_t len;
    size_t cap;
    bool overflow;
} wbuf_t;

static void put_c(wbuf_t *w, char c)
{
    if (w->len + 1 >= w->cap) {
        w->overflow = true;
        return;
    }
    w->p[w->len++] = c;
    w->p[w->len] = '\0';
}

static void put_n(wbuf_t *w, const char *s, size_t n)
{
    if (w->overflow || n >= w->cap - w->len) {
        w->overflow = true;
        return;
    }
    memcpy(w->p + w->len, s, n);
    w->len += n;
    w->p[w->len] = '\0';
}

static void put_s(wbuf_t *w, const char *s)
{
    put_n(w, s, strlen(s));
}

/* Percent-encodes one byte `passes` times: 0 copies it, 1 gives %XY, 2 gives %25XY (the '%' of
 * the first pass encoded again; the hex digits are unreserved and stay). */
static void put_enc(wbuf_t *w, unsigned char c, int passes)
{
    if (passes <= 0 || unreserved(c)) {
        put_c(w, (char)c);
        return;
    }
    put_c(w, '%');
    if (passes >= 2) {
        put_n(w, "25", 2);
    }
    put_c(w, hexu[c >> 4]);
    put_c(w, hexu[c & 15]);
}

static bool has_ctl(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 && c != '\t') {
            return true;
        }
        if (c == 0x7f) {
            return true;
        }
    }
    return false;
}

/* Region/service names go into the credential scope, which is '/'-separated. */
static bool scope_part_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > STO_SIGV4_REGION_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || c == '/') {
            return false;
        }
    }
    return true;
}

/* ---- public helpers ---------------------------------------------------------------------- */

int sto_sha256_hex(const void *data, size_t len, char out[STO_SHA256_HEX_LEN + 1])
{
    unsigned char d[32];
    if (!out || (!data && len)) {
        return -EINVAL;
    }
    if (mbedtls_sha256_ret(data ? data : (const void *)"", len, d, 0) != 0) {
        return -EINVAL;
    }
    hex_lower(d, sizeof d, out);
    return 0;
}

int sto_uri_encode(const char *in, char *out, size_t cap, bool encode_slash)
{
    if (!in || !out) {
        return -EINVAL;
    }
    if (cap == 0) {
        return -ENOSPC;
    }
    wbuf_t w = {out, 0, cap, false};
    out[0] = '\0';
    for (const unsigned char *s = (const unsigned char *)in; *s; s++) {
        if (*s == '/' && !encode_slash) {
            put_c(&w, '/');
        } else {
            put_enc(&w, *s, 1);
        }
    }
    if (w.overflow) {
        return -ENOSPC;
    }
    return (int)w.len;
}

static int hmac(const unsigned char *key, size_t klen, const void *msg, size_t mlen,
                unsigned char out[32])
{
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    if (!md || mbedtls_md_hmac(md, key, klen, msg, mlen, out) != 0) {
        return -EINVAL;
    }
    return 0;
}

int sto_sigv4_derive_key(const char *secret, const char *date8, const char *region,
                         const char *service, unsigned char key[32])
{
    if (!secret || !date8 || !region || !service || !key) {
        return -EINVAL;
    }
    size_t slen = strlen(secret);
    if (slen == 0 || slen > STO_SIGV4_SECRET_MAX) {
        return -EINVAL;
    }
    unsigned char k0[4 + STO_SIGV4_SECRET_MAX];
    unsigned char k[32];
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, slen);
    int rc = hmac(k0, 4 + slen, date8, strlen(date8), k);
    if (rc == 0) {
        rc = hmac(k, 32, region, strlen(region), k);
    }
    if (rc == 0) {
        rc = hmac(k, 32, service, strlen(service), k);
    }
    if (rc == 0) {
        rc = hmac(k, 32, TERMINATOR, strlen(TERMINATOR), key);
    }
    mbedtls_platform_zeroize(k0, sizeof k0);
    mbedtls_platform_zeroize(k, sizeof k);
    return rc;
}

/* ---- cache --------------------------------------------------------------------------------- */

void sto_sigv4_cache_init(sto_sigv4_cache_t *cache)
{
    if (cache) {
        memset(cache, 0, sizeof *cache);
    }
}

void sto_sigv4_cache_clear(sto_sigv4_cache_t *cache)
{
    if (cache) {
        uint64_t n = cache->derivations;
        mbedtls_platform_zeroize(cache, sizeof *cache);
        cache->derivations = n;
    }
}

/* The cache compares the secret itself rather than a hash of it: a strcmp is much cheaper than
 * hashing, and the derived key it guards is secret-equivalent for the day anyway. */
static int signing_key(sto_sigv4_cache_t *cache, const char *secret, const char *date8,
                       const char *region, const char *service, unsigned char key[32])
{
    if (cache && cache->valid && strcmp(cache->date, date8) == 0 &&
        strcmp(cache->region, region) == 0 && strcmp(cache->service, service) == 0 &&
        strcmp(cache->secret, secret) == 0) {
        memcpy(key, cache->key, 32);
        return 0;
    }
    int rc = sto_sigv4_derive_key(secret, date8, region, service, key);
    if (rc != 0 || !cache) {
        return rc;
    }
    /* Lengths were validated by the caller, so these copies fit. */
    memcpy(cache->key, key, 32);
    memcpy(cache->date, date8, 9);
    memcpy(cache->region, region, strlen(region) + 1);
    memcpy(cache->service, service, strlen(service) + 1);
    mbedtls_platform_zeroize(cache->secret, sizeof cache->secret);
    memcpy(cache->secret, secret, strlen(secret) + 1);
    cache->valid = true;
    cache->derivations++;
    return 0;
}

/* ---- canonical request pieces -------------------------------------------------------------- */

/* Emits the canonical URI. Segments are encoded as they are written; ".." under normalize_path
 * truncates the output back to the previous '/', which is safe because an encoded segment never
 * contains a literal '/'. */
static void put_path(wbuf_t *w, const sto_sigv4_req_t *r)
{
    const char *p = (r->path && r->path[0]) ? r->path : "/";
    int passes = (r->double_encode ? 2 : 1) - (r->path_is_encoded ? 1 : 0);

    if (!r->normalize_path) {
        if (p[0] != '/') {
            put_c(w, '/');
        }
        for (const unsigned char *s = (const unsigned char *)p; *s; s++) {
            if (*s == '/') {
                put_c(w, '/');
            } else {
                put_enc(w, *s, passes);
            }
        }
        return;
    }

    size_t root = w->len; /* where the path starts in the canonical request */
    size_t nseg = 0;
    put_c(w, '/');
    const char *s = p;
    while (*s) {
        while (*s == '/') {
            s++;
        }
        const char *e = s;
        while (*e && *e != '/') {
            e++;
        }
        size_t n = (size_t)(e - s);
        if (n == 0 || (n == 1 && s[0] == '.')) {
            /* empty or "." segment: nothing */
        } else if (n == 2 && s[0] == '.' && s[1] == '.') {
            if (nseg > 0 && !w->overflow) {
                size_t cut = w->len;
                while (cut > root + 1 && w->p[cut - 1] != '/') {
                    cut--;
                }
                /* cut is just past the '/' that ends the previous segment, or root + 1 */
                if (cut > root + 1) {
                    cut--; /* drop that '/' too */
                }
                w->len = cut;
                w->p[w->len] = '\0';
                nseg--;
            }
        } else {
            if (nseg > 0) {
                put_c(w, '/');
            }
            for (size_t i = 0; i < n; i++) {
                put_enc(w, (unsigned char)s[i], passes);
            }
            nseg++;
        }
        s = e;
    }
    size_t plen = strlen(p);
    if (nseg > 0 && p[plen - 1] == '/') {
        put_c(w, '/');
    }
}

/* Compares two strings by their percent-encoded (one pass, '/' encoded) forms without building
 * them: the canonical query string is sorted by encoded name, then encoded value. */
typedef struct enc_iter {
    const unsigned char *s;
    char pend[2];
    int npend;
} enc_iter_t;

static int enc_next(enc_iter_t *it)
{
    if (it->npend > 0) {
        char c = it->pend[2 - it->npend];
        it->npend--;
        return (unsigned char)c;
    }
    if (!*it->s) {
        return -1;
    }
    unsigned char c = *it->s++;
    if (unreserved(c)) {
        return c;
    }
    it->pend[0] = hexu[c >> 4];
    it->pend[1] = hexu[c & 15];
    it->npend = 2;
    return '%';
}

static int enc_cmp(const char *a, const char *b)
{
    enc_iter_t ia = {(const unsigned char *)a, {0, 0}, 0};
    enc_iter_t ib = {(const unsigned char *)b, {0, 0}, 0};
    for (;;) {
        int ca = enc_next(&ia);
        int cb = enc_next(&ib);
        if (ca != cb) {
            return ca < cb ? -1 : 1;
        }
        if (ca < 0) {
            return 0;
        }
    }
}

static int query_cmp(const sto_sigv4_kv_t *a, const sto_sigv4_kv_t *b)
{
    int c = enc_cmp(a->name, b->name);
    if (c != 0) {
        return c;
    }
    return enc_cmp(a->value ? a->value : "", b->value ? b->value : "");
}

static void put_query(wbuf_t *w, const sto_sigv4_kv_t **q, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            put_c(w, '&');
        }
        for (const unsigned char *s = (const unsigned char *)q[i]->name; *s; s++) {
            put_enc(w, *s, 1);
        }
        put_c(w, '=');
        if (q[i]->value) {
            for (const unsigned char *s = (const unsigned char *)q[i]->value; *s; s++) {
                put_enc(w, *s, 1);
            }
        }
    }
}

static int name_cmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned char ca = lower((unsigned char)*a);
        unsigned char cb = lower((unsigned char)*b);
        if (ca != cb || ca == 0) {
            return (int)ca - (int)cb;
        }
    }
}

static bool header_name_ok(const char *s)
{
    if (!s || !*s) {
        return false;
    }
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || c == ':') {
            return false;
        }
    }
    return true;
}

/* Canonical value: leading/trailing whitespace dropped, inner runs collapsed to one space. */
static void put_trimmed(wbuf_t *w, const char *v)
{
    while (is_ws(*v)) {
        v++;
    }
    bool gap = false;
    for (; *v; v++) {
        if (is_ws(*v)) {
            gap = true;
            continue;
        }
        if (gap) {
            put_c(w, ' ');
            gap = false;
        }
        put_c(w, *v);
    }
}

static void put_lower(wbuf_t *w, const char *s)
{
    for (; *s; s++) {
        put_c(w, (char)lower((unsigned char)*s));
    }
}

/* Stable insertion sort: n is small (bounded by the MAX constants), and stability keeps the
 * values of repeated headers in the order the caller gave them, as SigV4 requires. */
static void sort_headers(const sto_sigv4_kv_t **h, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        const sto_sigv4_kv_t *x = h[i];
        size_t j = i;
        while (j > 0 && name_cmp(h[j - 1]->name, x->name) > 0) {
            h[j] = h[j - 1];
            j--;
        }
        h[j] = x;
    }
}

static void sort_query(const sto_sigv4_kv_t **q, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        const sto_sigv4_kv_t *x = q[i];
        size_t j = i;
        while (j > 0 && query_cmp(q[j - 1], x) > 0) {
            q[j] = q[j - 1];
            j--;
        }
        q[j] = x;
    }
}

static bool reserved_header(const char *name)
{
    return name_cmp(name, "x-amz-date") == 0 || name_cmp(name, "x-amz-content-sha256") == 0 ||
           name_cmp(name, "x-amz-security-token") == 0 || name_cmp(name, "authorization") == 0;
}

static int format_amz_date(int64_t t, char out[STO_SIGV4_AMZDATE_LEN + 1])
{
    /* 9999-12-31T23:59:59Z; gmtime_r would accept more, but the format has four year digits. */
    if (t < 0 || t > INT64_C(253402300799)) {
        return -EINVAL;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm)) {
        return -EINVAL;
    }
    if (strftime(out, STO_SIGV4_AMZDATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm) != STO_SIGV4_AMZDATE_LEN) {
        return -EINVAL;
    }
    return 0;
}

static int check_req(const sto_sigv4_req_t *r, const sto_sigv4_creds_t *c)
{
    if (!r->method || !r->method[0] || has_ctl(r->method) || strchr(r->method, ' ')) {
        return -EINVAL;
    }
    if (r->path && has_ctl(r->path)) {
        return -EINVAL;
    }
    if (!scope_part_ok(r->region) || !scope_part_ok(r->service)) {
        return -EINVAL;
    }
    if (!c->access_key || !c->access_key[0] || has_ctl(c->access_key) ||
        strchr(c->access_key, '/') || strchr(c->access_key, ' ')) {
        return -EINVAL;
    }
    size_t sl = c->secret_key ? strlen(c->secret_key) : 0;
    if (sl == 0 || sl > STO_SIGV4_SECRET_MAX) {
        return -EINVAL;
    }
    if (c->session_token && has_ctl(c->session_token)) {
        return -EINVAL;
    }
    if (r->payload_hash) {
        size_t pl = strlen(r->payload_hash);
        if (pl == 0 || pl > STO_SIGV4_PAYLOAD_MAX || has_ctl(r->payload_hash) ||
            strpbrk(r->payload_hash, " \t")) {
            return -EINVAL;
        }
    }
    if (r->nquery > STO_SIGV4_MAX_QUERY || (r->nquery && !r->query)) {
        return -EINVAL;
    }
    for (size_t i = 0; i < r->nquery; i++) {
        if (!r->query[i].name) {
            return -EINVAL;
        }
    }
    if (r->nheaders > STO_SIGV4_MAX_HEADERS || (r->nheaders && !r->headers)) {
        return -EINVAL;
    }
    bool host = false;
    for (size_t i = 0; i < r->nheaders; i++) {
        const sto_sigv4_kv_t *h = &r->headers[i];
        if (!header_name_ok(h->name) || !h->value || has_ctl(h->value) ||
            reserved_header(h->name)) {
            return -EINVAL;
        }
        if (name_cmp(h->name, "host") == 0) {
            host = true;
        }
    }
    return host ? 0 : -EINVAL;
}

/* ---- signing -------------------------------------------------------------------------------- */

int sto_sigv4_sign(sto_sigv4_cache_t *cache, const sto_sigv4_req_t *req,
                   const sto_sigv4_creds_t *creds, char *creq, size_t creq_cap,
                   sto_sigv4_out_t *out)
{
    if (!req || !creds || !creq || !out) {
        return -EINVAL;
    }
    if (creq_cap == 0) {
        return -ENOSPC;
    }
    int rc = check_req(req, creds);
    if (rc != 0) {
        return rc;
    }
    memset(out, 0, sizeof *out);
    creq[0] = '\0';

    rc = format_amz_date(req->time, out->amz_date);
    if (rc != 0) {
        return rc;
    }
    char date8[9];
    memcpy(date8, out->amz_date, 8);
    date8[8] = '\0';

    const char *payload = req->payload_hash ? req->payload_hash : STO_SIGV4_EMPTY_SHA256;
    bool is_s3 = strcmp(req->service, "s3") == 0;
    bool send_sha = is_s3 || req->content_sha256_header;
    bool has_token = creds->session_token && creds->session_token[0];
    if (send_sha) {
        memcpy(out->content_sha256, payload, strlen(payload) + 1);
    }
    out->security_token = has_token ? creds->session_token : NULL;

    /* Headers the signer adds are merged into the caller's list for sorting. */
    sto_sigv4_kv_t extra[3];
    size_t nextra = 0;
    extra[nextra++] = (sto_sigv4_kv_t){"x-amz-date", out->amz_date};
    if (send_sha) {
        extra[nextra++] = (sto_sigv4_kv_t){"x-amz-content-sha256", out->content_sha256};
    }
    if (has_token && !req->token_unsigned) {
        extra[nextra++] = (sto_sigv4_kv_t){"x-amz-security-token", creds->session_token};
    }
    const sto_sigv4_kv_t *hdr[STO_SIGV4_MAX_HEADERS + 3];
    size_t nh = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        hdr[nh++] = &req->headers[i];
    }
    for (size_t i = 0; i < nextra; i++) {
        hdr[nh++] = &extra[i];
    }
    sort_headers(hdr, nh);

    const sto_sigv4_kv_t *q[STO_SIGV4_MAX_QUERY];
    for (size_t i = 0; i < req->nquery; i++) {
        q[i] = &req->query[i];
    }
    sort_query(q, req->nquery);

    /* Canonical request. */
    wbuf_t w = {creq, 0, creq_cap, false};
    put_s(&w, req->method);
    put_c(&w, '\n');
    put_path(&w, req);
    put_c(&w, '\n');
    put_query(&w, q, req->nquery);
    put_c(&w, '\n');
    for (size_t i = 0; i < nh; i++) {
        if (i > 0 && name_cmp(hdr[i - 1]->name, hdr[i]->name) == 0) {
            put_c(&w, ',');
        } else {
            if (i > 0) {
                put_c(&w, '\n');
            }
            put_lower(&w, hdr[i]->name);
            put_c(&w, ':');
        }
        put_trimmed(&w, hdr[i]->value);
    }
    put_n(&w, "\n\n", 2);
    size_t sh_off = w.len;
    for (size_t i = 0; i < nh; i++) {
        if (i > 0 && name_cmp(hdr[i - 1]->name, hdr[i]->name) == 0) {
            continue;
        }
        if (i > 0) {
            put_c(&w, ';');
        }
        put_lower(&w, hdr[i]->name);
    }
    size_t sh_len = w.len - sh_off;
    put_c(&w, '\n');
    put_s(&w, payload);
    if (w.overflow) {
        return -ENOSPC;
    }
    out->creq_len = w.len;

    /* String to sign. Every part is bounded by check_req, so it always fits. */
    char creq_hash[STO_SHA256_HEX_LEN + 1];
    rc = sto_sha256_hex(creq, w.len, creq_hash);
    if (rc != 0) {
        return rc;
    }
    wbuf_t s = {out->string_to_sign, 0, sizeof out->string_to_sign, false};
    put_s(&s, ALGORITHM "\n");
    put_s(&s, out->amz_date);
    put_c(&s, '\n');
    size_t scope_off = s.len;
    put_s(&s, date8);
    put_c(&s, '/');
    put_s(&s, req->region);
    put_c(&s, '/');
    put_s(&s, req->service);
    put_s(&s, "/" TERMINATOR);
    size_t scope_len = s.len - scope_off;
    put_c(&s, '\n');
    put_s(&s, creq_hash);
    if (s.overflow) {
        return -ENOSPC;
    }

    unsigned char key[32];
    unsigned char mac[32];
    rc = signing_key(cache, creds->secret_key, date8, req->region, req->service, key);
    if (rc == 0) {
        rc = hmac(key, sizeof key, out->string_to_sign, s.len, mac);
    }
    mbedtls_platform_zeroize(key, sizeof key);
    if (rc != 0) {
        return rc;
    }
    hex_lower(mac, sizeof mac, out->signature);

    wbuf_t a = {out->authorization, 0, sizeof out->authorization, false};
    put_s(&a, ALGORITHM " Credential=");
    put_s(&a, creds->access_key);
    put_c(&a, '/');
    put_n(&a, out->string_to_sign + scope_off, scope_len);
    put_s(&a, ", SignedHeaders=");
    put_n(&a, creq + sh_off, sh_len);
    put_s(&a, ", Signature=");
    put_s(&a, out->signature);
    if (a.overflow) {
        return -ENOSPC;
    }
    return 0;
}
