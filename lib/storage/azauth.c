/* Azure Blob addressing, credentials and SharedKey signing. See sto/azauth.h. */
#include <ctype.h>
#include <errno.h>
#include <mbedtls/base64.h>
#include <mbedtls/md.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sto_internal.h"
#include "sto/azauth.h"
#include "sto/err.h"
#include "sto/sigv4.h"

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

static bool has_ctl(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return true;
    }
    return false;
}

/* ---- connection strings and the environment ---------------------------------------------- */

int sto_az_key_set(sto_az_creds_t *c, const char *b64)
{
    size_t n = strlen(b64), olen = 0;
    if (n == 0)
        return -EINVAL;
    unsigned char tmp[STO_AZ_KEY_MAX + 4];
    if (mbedtls_base64_decode(tmp, sizeof(tmp), &olen, (const unsigned char *)b64, n) != 0 ||
        olen == 0 || olen > STO_AZ_KEY_MAX) {
        memset(tmp, 0, sizeof(tmp));
        return -EINVAL;
    }
    memcpy(c->key, tmp, olen);
    c->key_len = olen;
    memset(tmp, 0, sizeof(tmp));
    return 0;
}

static const char *trim(const char *s, size_t *len)
{
    size_t n = *len;
    while (n && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    *len = n;
    return s;
}

static bool key_is(const char *k, size_t kl, const char *name)
{
    return kl == strlen(name) && strncasecmp(k, name, kl) == 0;
}

/* Copies [v, v+vl) into out (cap bytes with the NUL); -1 when it does not fit. */
static int copy_val(char *out, size_t cap, const char *v, size_t vl)
{
    if (vl >= cap)
        return -1;
    memcpy(out, v, vl);
    out[vl] = '\0';
    return 0;
}

static int strip_slash_copy(char *out, size_t cap, const char *v, size_t vl)
{
    while (vl && v[vl - 1] == '/')
        vl--;
    return copy_val(out, cap, v, vl);
}

int sto_az_connstr_parse(const char *cs, sto_az_creds_t *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    if (!cs) {
        set_err(err, errlen, "no connection string");
        return -EINVAL;
    }
    char key_b64[256] = "", proto[16] = "", suffix[256] = "", proxy[STO_AZ_URL_MAX + 1] = "";
    bool dev = false, have_key = false;
    const char *p = cs;
    while (*p) {
        const char *end = strchr(p, ';');
        size_t sl = end ? (size_t)(end - p) : strlen(p);
        const char *seg = trim(p, &sl);
        p = end ? end + 1 : p + strlen(p);
        if (sl == 0)
            continue;
        const char *eq = memchr(seg, '=', sl);
        if (!eq) {
            set_err(err, errlen, "connection string: '%.*s' is not Key=Value",
                    (int)(sl < 40 ? sl : 40), seg);
            return -EINVAL;
        }
        size_t kl = (size_t)(eq - seg), vl = sl - kl - 1;
        const char *k = trim(seg, &kl);
        const char *v = trim(eq + 1, &vl);
        int bad = 0;
        if (key_is(k, kl, "AccountName")) {
            bad = copy_val(c->account, sizeof(c->account), v, vl);
        } else if (key_is(k, kl, "AccountKey")) {
            bad = copy_val(key_b64, sizeof(key_b64), v, vl);
            have_key = vl > 0;
        } else if (key_is(k, kl, "SharedAccessSignature")) {
            if (vl && *v == '?') {
                v++;
                vl--;
            }
            bad = copy_val(c->sas, sizeof(c->sas), v, vl);
        } else if (key_is(k, kl, "BlobEndpoint")) {
            bad = strip_slash_copy(c->blob_endpoint, sizeof(c->blob_endpoint), v, vl);
        } else if (key_is(k, kl, "DefaultEndpointsProtocol")) {
            bad = copy_val(proto, sizeof(proto), v, vl);
        } else if (key_is(k, kl, "EndpointSuffix")) {
            bad = copy_val(suffix, sizeof(suffix), v, vl);
        } else if (key_is(k, kl, "UseDevelopmentStorage")) {
            dev = vl == 4 && strncasecmp(v, "true", 4) == 0;
        } else if (key_is(k, kl, "DevelopmentStorageProxyUri")) {
            bad = strip_slash_copy(proxy, sizeof(proxy), v, vl);
        } /* other keys (QueueEndpoint, TableEndpoint, FileEndpoint, ...) do not concern blobs */
        if (bad) {
            set_err(err, errlen, "connection string: the value of %.*s is too long", (int)kl, k);
            memset(key_b64, 0, sizeof(key_b64));
            return -EINVAL;
        }
    }
    int rc = 0;
    if (proto[0] && strcasecmp(proto, "https") != 0 && strcasecmp(proto, "http") != 0) {
        set_err(err, errlen,
                "connection string: DefaultEndpointsProtocol must be http or https, "
                "not '%s'",
                proto);
        rc = -EINVAL;
    } else if (dev) {
        /* the emulator's documented account, key and address */
        snprintf(c->account, sizeof(c->account), "%s", STO_AZ_DEV_ACCOUNT);
        if (proxy[0]) {
            if ((size_t)snprintf(c->blob_endpoint, sizeof(c->blob_endpoint), "%s:10000/%s", proxy,
                                 STO_AZ_DEV_ACCOUNT) >= sizeof(c->blob_endpoint)) {
                set_err(err, errlen, "connection string: DevelopmentStorageProxyUri too long");
                rc = -EINVAL;
            }
        } else {
            snprintf(c->blob_endpoint, sizeof(c->blob_endpoint), "%s", STO_AZ_DEV_ENDPOINT);
        }
        sto_az_key_set(c, STO_AZ_DEV_KEY);
        c->auth = STO_AZ_SHARED_KEY;
        c->sas[0] = '\0';
    } else if (have_key) {
        if (!c->account[0]) {
            set_err(err, errlen, "connection string: AccountKey without AccountName");
            rc = -EINVAL;
        } else if (sto_az_key_set(c, key_b64) != 0) {
            set_err(err, errlen, "connection string: AccountKey is not a base64 key");
            rc = -EINVAL;
        } else {
            c->auth = STO_AZ_SHARED_KEY;
            c->sas[0] = '\0';
        }
    } else if (c->sas[0]) {
        c->auth = STO_AZ_SAS;
    } else if (!c->account[0] && !c->blob_endpoint[0]) {
        set_err(err, errlen, "connection string names no account, key, SAS or BlobEndpoint");
        rc = -EINVAL;
    }
    if (rc == 0 && !c->blob_endpoint[0] && c->account[0]) {
        if ((size_t)snprintf(c->blob_endpoint, sizeof(c->blob_endpoint), "%s://%s.blob.%s",
                             proto[0] ? proto : "https", c->account,
                             suffix[0] ? suffix : "core.windows.net") >= sizeof(c->blob_endpoint)) {
            set_err(err, errlen, "connection string: EndpointSuffix too long");
            rc = -EINVAL;
        }
        for (char *q = c->blob_endpoint; *q && *q != ':'; q++)
            *q = (char)tolower((unsigned char)*q);
    }
    memset(key_b64, 0, sizeof(key_b64));
    if (rc) {
        memset(c, 0, sizeof(*c));
        return rc;
    }
    return 0;
}

int sto_az_creds_load(sto_az_creds_t *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    const char *cs = getenv("AZURE_STORAGE_CONNECTION_STRING");
    if (cs && *cs) {
        char e[200] = "";
        if (sto_az_connstr_parse(cs, c, e, sizeof(e)) != 0) {
            set_err(err, errlen, "AZURE_STORAGE_CONNECTION_STRING: %s", e);
            return STO_EPERM;
        }
        snprintf(c->source, sizeof(c->source), "AZURE_STORAGE_CONNECTION_STRING");
        return 0;
    }
    const char *acct = getenv("AZURE_STORAGE_ACCOUNT");
    const char *key = getenv("AZURE_STORAGE_KEY");
    const char *sas = getenv("AZURE_STORAGE_SAS_TOKEN");
    if (acct && *acct) {
        if (strlen(acct) > STO_AZ_ACCOUNT_MAX || has_ctl(acct)) {
            set_err(err, errlen, "AZURE_STORAGE_ACCOUNT is not an account name");
            return STO_EPERM;
        }
        snprintf(c->account, sizeof(c->account), "%s", acct);
    }
    if (key && *key) {
        if (sto_az_key_set(c, key) != 0) {
            set_err(err, errlen, "AZURE_STORAGE_KEY is not a base64 account key");
            memset(c, 0, sizeof(*c));
            return STO_EPERM;
        }
        c->auth = STO_AZ_SHARED_KEY;
        snprintf(c->source, sizeof(c->source), "AZURE_STORAGE_KEY");
        return 0;
    }
    if (sas && *sas) {
        if (*sas == '?')
            sas++;
        if (strlen(sas) > STO_AZ_SAS_MAX || has_ctl(sas) || strchr(sas, ' ')) {
            set_err(err, errlen, "AZURE_STORAGE_SAS_TOKEN is not a SAS query string");
            memset(c, 0, sizeof(*c));
            return STO_EPERM;
        }
        snprintf(c->sas, sizeof(c->sas), "%s", sas);
        c->auth = STO_AZ_SAS;
        snprintf(c->source, sizeof(c->source), "AZURE_STORAGE_SAS_TOKEN");
        return 0;
    }
    c->auth = STO_AZ_ANONYMOUS;
    snprintf(c->source, sizeof(c->source), "none (anonymous requests)");
    return 0;
}

int sto_az_creds_bind(sto_az_creds_t *c, const char *account, char *err, size_t errlen)
{
    if (!account || !account[0] || strlen(account) > STO_AZ_ACCOUNT_MAX) {
        set_err(err, errlen, "bad storage account name");
        return STO_EPERM;
    }
    if (c->account[0] && strcmp(c->account, account) != 0 && c->auth != STO_AZ_ANONYMOUS) {
        set_err(err, errlen,
                "the URI names storage account '%s' but the credentials (%s) are for account "
                "'%s'",
                account, c->source[0] ? c->source : "given", c->account);
        return STO_EPERM;
    }
    snprintf(c->account, sizeof(c->account), "%s", account);
    return 0;
}

/* ---- endpoints ---------------------------------------------------------------------------- */

static bool is_ip(const char *h)
{
    if (strchr(h, ':'))
        return true;
    int dots = 0;
    for (const char *p = h; *p; p++) {
        if (*p == '.')
            dots++;
        else if (!isdigit((unsigned char)*p))
            return false;
    }
    return dots == 3;
}

int sto_az_endpoint_parse(const char *url, const char *account, sto_az_endpoint_t *out, char *err,
                          size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const char *rest;
    if (!url) {
        set_err(err, errlen, "no endpoint");
        return STO_EURI;
    }
    if (strncasecmp(url, "https://", 8) == 0) {
        out->tls = 1;
        out->port = 443;
        rest = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        out->port = 80;
        rest = url + 7;
    } else {
        set_err(err, errlen, "endpoint '%.100s' must start with http:// or https://", url);
        return STO_EURI;
    }
    size_t n = strcspn(rest, "/");
    if (sto__parse_hostport(rest, n, out->host, sizeof(out->host), &out->port) != 0) {
        set_err(err, errlen, "endpoint '%.100s' has no valid host[:port]", url);
        return STO_EURI;
    }
    const char *path = rest + n;
    size_t pl = strlen(path);
    while (pl && path[pl - 1] == '/')
        pl--;
    for (size_t i = 0; i < pl; i++) {
        unsigned char ch = (unsigned char)path[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '?' || ch == '#') {
            set_err(err, errlen,
                    "endpoint '%.100s': the path may not have a query, spaces or "
                    "control characters",
                    url);
            return STO_EURI;
        }
    }
    if (pl) {
        if (pl >= sizeof(out->base_path)) {
            set_err(err, errlen, "endpoint '%.100s': path too long", url);
            return STO_EURI;
        }
        memcpy(out->base_path, path, pl);
        out->base_path[pl] = '\0';
    } else if (is_ip(out->host) || strcasecmp(out->host, "localhost") == 0) {
        /* IP-style URL (an emulator): the account is the first path segment */
        if (!account || !account[0]) {
            set_err(err, errlen, "endpoint '%.100s' is path-style but no account is known", url);
            return STO_EURI;
        }
        out->base_path[0] = '/';
        int k = sto_uri_encode(account, out->base_path + 1, sizeof(out->base_path) - 1, true);
        if (k < 0) {
            set_err(err, errlen, "account name too long");
            return STO_EURI;
        }
    }
    return 0;
}

int sto_az_endpoint_resolve(const char *account, const char *config_endpoint,
                            const sto_az_creds_t *c, sto_az_endpoint_t *out, char *err,
                            size_t errlen)
{
    int rc;
    const char *src;
    if (config_endpoint && *config_endpoint) {
        rc = sto_az_endpoint_parse(config_endpoint, account, out, err, errlen);
        src = "config";
    } else if (c && c->blob_endpoint[0]) {
        rc = sto_az_endpoint_parse(c->blob_endpoint, account, out, err, errlen);
        src = "connection string";
    } else {
        char url[STO_AZ_ACCOUNT_MAX + 64];
        if (!account || !account[0] || strlen(account) > STO_AZ_ACCOUNT_MAX) {
            set_err(err, errlen, "no storage account");
            return STO_EURI;
        }
        for (const char *p = account; *p; p++) {
            if (!isalnum((unsigned char)*p) && *p != '-') {
                set_err(err, errlen,
                        "'%s' is not an Azure storage account name (letters and digits); "
                        "for an emulator set the endpoint",
                        account);
                return STO_EURI;
            }
        }
        snprintf(url, sizeof(url), "https://%s.blob.core.windows.net", account);
        rc = sto_az_endpoint_parse(url, account, out, err, errlen);
        src = "azure";
    }
    if (rc == 0)
        snprintf(out->source, sizeof(out->source), "%s", src);
    return rc;
}

void sto_az_host_header(const sto_az_endpoint_t *e, char *out, size_t len)
{
    int deflt = (e->tls && e->port == 443) || (!e->tls && e->port == 80);
    int v6 = strchr(e->host, ':') != NULL;
    char port[16] = "";
    if (!deflt)
        snprintf(port, sizeof(port), ":%d", e->port);
    snprintf(out, len, "%s%s%s%s", v6 ? "[" : "", e->host, v6 ? "]" : "", port);
}

/* ---- StringToSign ------------------------------------------------------------------------- */

typedef struct wbuf {
    char *buf;
    size_t cap, len;
    bool over;
} wbuf_t;

static void put(wbuf_t *w, const char *s, size_t n)
{
    if (w->over || n >= w->cap - w->len) {
        w->over = true;
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void puts_(wbuf_t *w, const char *s)
{
    put(w, s, strlen(s));
}

static void putc_(wbuf_t *w, char c)
{
    put(w, &c, 1);
}

/* Trimmed, inner runs of spaces and tabs as one space. */
static void put_collapsed(wbuf_t *w, const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    bool space = false;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            space = true;
            continue;
        }
        if (space)
            putc_(w, ' ');
        space = false;
        putc_(w, *v);
    }
}

static const char *find_header(const sto_az_sign_in_t *in, const char *name)
{
    for (size_t i = 0; i < in->nheaders; i++)
        if (in->headers[i].name && strcasecmp(in->headers[i].name, name) == 0)
            return in->headers[i].value ? in->headers[i].value : "";
    return "";
}

typedef struct lkv {
    char name[64];
    const char *value;
} lkv_t;

static int lower_into(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n == 0 || n >= cap)
        return -EINVAL;
    for (size_t i = 0; i <= n; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    return 0;
}

static int lkv_cmp(const lkv_t *a, const lkv_t *b)
{
    int c = strcmp(a->name, b->name);
    return c ? c : strcmp(a->value, b->value);
}

static void lkv_sort(lkv_t *v, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        lkv_t t = v[i];
        size_t j = i;
        while (j > 0 && lkv_cmp(&v[j - 1], &t) > 0) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = t;
    }
}

int sto_az_string_to_sign(const sto_az_sign_in_t *in, char *out, size_t cap)
{
    if (!in || !out || cap == 0 || !in->method || !in->method[0] || !in->account ||
        !in->account[0] || !in->path || in->path[0] != '/' || in->nheaders > STO_AZ_MAX_HEADERS ||
        in->nquery > STO_AZ_MAX_QUERY || (in->nheaders && !in->headers) ||
        (in->nquery && !in->query))
        return -EINVAL;
    if (has_ctl(in->method) || has_ctl(in->account) || has_ctl(in->path))
        return -EINVAL;
    for (size_t i = 0; i < in->nheaders; i++)
        if (!in->headers[i].name || has_ctl(in->headers[i].name) ||
            (in->headers[i].value && has_ctl(in->headers[i].value)))
            return -EINVAL;
    for (size_t i = 0; i < in->nquery; i++)
        if (!in->query[i].name || !in->query[i].name[0] || has_ctl(in->query[i].name) ||
            (in->query[i].value && has_ctl(in->query[i].value)))
            return -EINVAL;

    wbuf_t w = {out, cap, 0, false};
    out[0] = '\0';
    puts_(&w, in->method);
    putc_(&w, '\n');
    static const char *const std[] = {
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-MD5",
        "Content-Type",
        "Date",
        "If-Modified-Since",
        "If-Match",
        "If-None-Match",
        "If-Unmodified-Since",
        "Range",
    };
    for (size_t i = 0; i < sizeof(std) / sizeof(std[0]); i++) {
        const char *v = find_header(in, std[i]);
        /* version 2015-02-21 and later: a zero Content-Length is signed as empty */
        if (i == 2 && strcmp(v, "0") == 0)
            v = "";
        puts_(&w, v);
        putc_(&w, '\n');
    }

    lkv_t h[STO_AZ_MAX_HEADERS];
    size_t nh = 0;
    for (size_t i = 0; i < in->nheaders; i++) {
        if (strncasecmp(in->headers[i].name, "x-ms-", 5) != 0)
            continue;
        if (lower_into(h[nh].name, sizeof(h[nh].name), in->headers[i].name) != 0)
            return -EINVAL;
        h[nh].value = in->headers[i].value ? in->headers[i].value : "";
        nh++;
    }
    lkv_sort(h, nh);
    for (size_t i = 0; i < nh; i++) {
        if (i && strcmp(h[i].name, h[i - 1].name) == 0)
            return -EINVAL;
        puts_(&w, h[i].name);
        putc_(&w, ':');
        put_collapsed(&w, h[i].value);
        putc_(&w, '\n');
    }

    putc_(&w, '/');
    puts_(&w, in->account);
    puts_(&w, in->path);
    lkv_t q[STO_AZ_MAX_QUERY];
    for (size_t i = 0; i < in->nquery; i++) {
        if (lower_into(q[i].name, sizeof(q[i].name), in->query[i].name) != 0)
            return -EINVAL;
        q[i].value = in->query[i].value ? in->query[i].value : "";
    }
    lkv_sort(q, in->nquery);
    for (size_t i = 0; i < in->nquery; i++) {
        if (i && strcmp(q[i].name, q[i - 1].name) == 0) {
            putc_(&w, ',');
        } else {
            putc_(&w, '\n');
            puts_(&w, q[i].name);
            putc_(&w, ':');
        }
        puts_(&w, q[i].value);
    }
    if (w.over)
        return -ENOSPC;
    return (int)w.len;
}

int sto_az_signature(const unsigned char *key, size_t key_len, const char *msg, size_t len,
                     char sig[STO_AZ_SIG_LEN + 1])
{
    unsigned char mac[32];
    const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
    sig[0] = '\0';
    if (!key || key_len == 0 || !msg || !md ||
        mbedtls_md_hmac(md, key, key_len, (const unsigned char *)msg, len, mac) != 0)
        return -EINVAL;
    size_t olen = 0;
    if (mbedtls_base64_encode((unsigned char *)sig, STO_AZ_SIG_LEN + 1, &olen, mac, sizeof(mac)) !=
        0)
        return -EINVAL;
    sig[olen] = '\0';
    return 0;
}

void sto_az_date(int64_t t, char out[STO_AZ_DATE_LEN + 1])
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm)) {
        memset(&tm, 0, sizeof(tm));
        tm.tm_mday = 1;
        tm.tm_year = 70;
        tm.tm_wday = 4;
    }
    snprintf(out, STO_AZ_DATE_LEN + 1, "%s, %02d %s %04d %02d:%02d:%02d GMT",
             days[(unsigned)tm.tm_wday % 7], tm.tm_mday % 100, months[(unsigned)tm.tm_mon % 12],
             (tm.tm_year + 1900) % 10000, tm.tm_hour % 100, tm.tm_min % 100, tm.tm_sec % 100);
}

int sto_az_sas_append(char *target, size_t cap, const char *sas)
{
    size_t n = strlen(target);
    if (!sas)
        return (int)n;
    if (*sas == '?')
        sas++;
    size_t sl = strlen(sas);
    if (sl == 0)
        return (int)n;
    if (n + 1 + sl + 1 > cap)
        return -ENOSPC;
    target[n] = strchr(target, '?') ? '&' : '?';
    memcpy(target + n + 1, sas, sl + 1);
    return (int)(n + 1 + sl);
}

void sto_az_block_id(uint32_t nonce, uint32_t n, char out[STO_AZ_BLOCK_ID_LEN + 1])
{
    char raw[STO_AZ_BLOCK_ID_RAW + 1];
    snprintf(raw, sizeof(raw), "sai3%08x-%011u", (unsigned)nonce, (unsigned)n);
    size_t olen = 0;
    if (mbedtls_base64_encode((unsigned char *)out, STO_AZ_BLOCK_ID_LEN + 1, &olen,
                              (const unsigned char *)raw, STO_AZ_BLOCK_ID_RAW) != 0)
        olen = 0;
    out[olen] = '\0';
}

/* ---- request building --------------------------------------------------------------------- */

static const char *keep(sto_az_request_t *o, const char *s)
{
    size_t n = strlen(s) + 1;
    if (o->used + n > sizeof(o->arena))
        return NULL;
    char *p = o->arena + o->used;
    memcpy(p, s, n);
    o->used += n;
    return p;
}

static int add_header(sto_az_request_t *o, const char *name, const char *value)
{
    if (o->nheaders == STO_AZ_MAX_HEADERS)
        return -ENOSPC;
    const char *v = keep(o, value);
    if (!v)
        return -ENOSPC;
    o->headers[o->nheaders].name = name;
    o->headers[o->nheaders].value = v;
    o->nheaders++;
    return 0;
}

static int append_enc(char *t, size_t *pos, const char *s, bool encode_slash)
{
    int n = sto_uri_encode(s, t + *pos, STO_AZ_TARGET_MAX - *pos, encode_slash);
    if (n < 0)
        return n;
    *pos += (size_t)n;
    return 0;
}

static int append_raw(char *t, size_t *pos, const char *s)
{
    size_t n = strlen(s);
    if (*pos + n + 1 > STO_AZ_TARGET_MAX)
        return -ENOSPC;
    memcpy(t + *pos, s, n + 1);
    *pos += n;
    return 0;
}

int sto_az_request_build(const sto_az_endpoint_t *e, const sto_az_creds_t *c, const char *account,
                         const sto_az_req_in_t *in, sto_az_request_t *out, char *err, size_t errlen)
{
    out->nheaders = 0;
    out->used = 0;
    out->target[0] = '\0';
    out->string_to_sign[0] = '\0';
    if (!e || !c || !in || !in->method || !in->container || !in->container[0] || !account ||
        !account[0] || in->nquery > STO_AZ_MAX_QUERY || (in->nquery && !in->query) ||
        (in->nheaders && !in->headers)) {
        set_err(err, errlen, "Azure request needs a method, an account and a container");
        return -EINVAL;
    }
    for (size_t i = 0; i < in->nheaders; i++) {
        if (!in->headers[i].name || !in->headers[i].value || has_ctl(in->headers[i].name) ||
            has_ctl(in->headers[i].value)) {
            set_err(err, errlen, "bad request header");
            return -EINVAL;
        }
    }
    /* path */
    size_t pos = 0;
    int rc;
    if ((rc = append_raw(out->target, &pos, e->base_path)) ||
        (rc = append_raw(out->target, &pos, "/")) ||
        (rc = append_enc(out->target, &pos, in->container, true)))
        return rc;
    if (in->blob && in->blob[0]) {
        if ((rc = append_raw(out->target, &pos, "/")) ||
            (rc = append_enc(out->target, &pos, in->blob, false)))
            return rc;
    }
    size_t path_len = pos;
    for (size_t i = 0; i < in->nquery; i++) {
        if (!in->query[i].name || !in->query[i].name[0]) {
            set_err(err, errlen, "empty query parameter name");
            return -EINVAL;
        }
        if ((rc = append_raw(out->target, &pos, i ? "&" : "?")) ||
            (rc = append_enc(out->target, &pos, in->query[i].name, true)) ||
            (rc = append_raw(out->target, &pos, "=")) ||
            (rc =
                 append_enc(out->target, &pos, in->query[i].value ? in->query[i].value : "", true)))
            return rc;
    }

    char host[300];
    sto_az_host_header(e, host, sizeof(host));
    if ((rc = add_header(out, "Host", host)))
        return rc;
    for (size_t i = 0; i < in->nheaders; i++)
        if ((rc = add_header(out, in->headers[i].name, in->headers[i].value)))
            return rc;
    char date[STO_AZ_DATE_LEN + 1];
    sto_az_date(in->time, date);
    if ((rc = add_header(out, "x-ms-date", date)) ||
        (rc = add_header(out, "x-ms-version", STO_AZ_VERSION)))
        return rc;

    if (c->auth == STO_AZ_SHARED_KEY) {
        /* the path alone: end the target there for the signer, then put the query back */
        char saved = out->target[path_len];
        out->target[path_len] = '\0';
        /* Content-Length is signed but left to the HTTP layer, which writes it from the body */
        sto_az_kv_t sh[STO_AZ_MAX_HEADERS + 1];
        memcpy(sh, out->headers, out->nheaders * sizeof(sh[0]));
        size_t nsh = out->nheaders;
        char cl[24];
        if (in->content_length >= 0) {
            snprintf(cl, sizeof(cl), "%lld", (long long)in->content_length);
            sh[nsh++] = (sto_az_kv_t){"Content-Length", cl};
        }
        if (nsh > STO_AZ_MAX_HEADERS) {
            out->target[path_len] = saved;
            return -ENOSPC;
        }
        sto_az_sign_in_t si = {
            .method = in->method,
            .account = account,
            .path = out->target,
            .query = in->query,
            .nquery = in->nquery,
            .headers = sh,
            .nheaders = nsh,
        };
        int n = sto_az_string_to_sign(&si, out->string_to_sign, sizeof(out->string_to_sign));
        out->target[path_len] = saved;
        char sig[STO_AZ_SIG_LEN + 1];
        if (n < 0 || sto_az_signature(c->key, c->key_len, out->string_to_sign, (size_t)n, sig)) {
            set_err(err, errlen, "signing failed (%s)", n == -ENOSPC ? "too long" : "bad input");
            return n == -ENOSPC ? -ENOSPC : -EINVAL;
        }
        char auth[STO_AZ_ACCOUNT_MAX + STO_AZ_SIG_LEN + 16];
        snprintf(auth, sizeof(auth), "SharedKey %s:%s", account, sig);
        if ((rc = add_header(out, "Authorization", auth)))
            return rc;
    } else if (c->auth == STO_AZ_SAS) {
        int n = sto_az_sas_append(out->target, sizeof(out->target), c->sas);
        if (n < 0)
            return n;
    }
    return 0;
}
