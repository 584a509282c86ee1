#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "rx/err.h"
#include "sto/err.h"
#include "sto/uri.h"

#define SUPPORTED "file://, direct://, s3://, az://, gs:// (or gcs://)"

static const struct {
    const char *name;
    sto_scheme_t scheme;
} schemes[] = {
    {"file", STO_SCHEME_FILE}, {"direct", STO_SCHEME_DIRECT}, {"s3", STO_SCHEME_S3},
    {"az", STO_SCHEME_AZ},     {"gs", STO_SCHEME_GS},         {"gcs", STO_SCHEME_GS},
};

static int fail(int code, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(int code, char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *sto_scheme_name(sto_scheme_t s)
{
    switch (s) {
    case STO_SCHEME_FILE:
        return "file";
    case STO_SCHEME_DIRECT:
        return "direct";
    case STO_SCHEME_S3:
        return "s3";
    case STO_SCHEME_AZ:
        return "az";
    case STO_SCHEME_GS:
        return "gs";
    }
    return "?";
}

/* Lexically normalises an absolute path: collapses "//", drops ".", resolves ".." (never above
 * "/"), drops the trailing slash. Returns 0 or -1 when out is too small. */
static int normalise(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    const char *p = in;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 1 && p[0] == '.') {
            /* skip */
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--; /* the '/' before the removed component */
        } else {
            if (o + 1 + n + 1 > outlen)
                return -1;
            out[o++] = '/';
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
    }
    if (o == 0) {
        if (outlen < 2)
            return -1;
        out[o++] = '/';
    }
    out[o] = '\0';
    return 0;
}

static int parse_local(const char *uri, const char *rest, sto_uri_t *out, char *err, size_t errlen)
{
    size_t rlen = strlen(rest);
    if (rlen == 0)
        return fail(STO_EURI, err, errlen,
                    "empty path in \"%s\" (use %s:///absolute/dir/ or %s://./relative/dir/)", uri,
                    sto_scheme_name(out->scheme), sto_scheme_name(out->scheme));
    char full[STO_PATH_MAX * 2];
    if (rest[0] == '/') {
        if (rlen >= sizeof(full))
            return fail(STO_EURI, err, errlen, "path too long in \"%.64s...\"", uri);
        memcpy(full, rest, rlen + 1);
    } else {
        char cwd[STO_PATH_MAX];
        if (!getcwd(cwd, sizeof(cwd)))
            return fail(STO_EURI, err, errlen, "cannot resolve relative path in \"%s\": getcwd: %s",
                        uri, strerror(errno));
        int n = snprintf(full, sizeof(full), "%s/%s", cwd, rest);
        if (n < 0 || (size_t)n >= sizeof(full))
            return fail(STO_EURI, err, errlen, "path too long in \"%.64s...\"", uri);
    }
    if (normalise(full, out->path, sizeof(out->path)) != 0)
        return fail(STO_EURI, err, errlen, "path too long in \"%.64s...\" (max %d bytes)", uri,
                    STO_PATH_MAX - 1);
    out->trailing_slash = rest[rlen - 1] == '/';
    return 0;
}

/* Copies component [p, p+n) into dst (size dstlen). */
static int take(char *dst, size_t dstlen, const char *p, size_t n)
{
    if (n >= dstlen)
        return -1;
    memcpy(dst, p, n);
    dst[n] = '\0';
    return 0;
}

static int valid_port(const char *p, size_t n)
{
    if (n == 0 || n > 5)
        return 0;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)p[i]))
            return 0;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

static int parse_cloud(const char *uri, const char *rest, sto_uri_t *out, char *err, size_t errlen)
{
    const char *sch = sto_scheme_name(out->scheme);
    const char *p = rest;
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);

    if (out->scheme == STO_SCHEME_S3 && n > 0 && memchr(p, ':', n)) {
        /* s3://host:port/bucket/prefix: the endpoint comes first. */
        const char *colon = memchr(p, ':', n);
        if (colon == p || !valid_port(colon + 1, (size_t)(p + n - colon - 1)))
            return fail(STO_EURI, err, errlen,
                        "bad endpoint \"%.*s\" in \"%s\" (expected s3://host:port/bucket/prefix/)",
                        (int)n, p, uri);
        if (take(out->endpoint, sizeof(out->endpoint), p, n) != 0)
            return fail(STO_EURI, err, errlen, "endpoint too long in \"%s\"", uri);
        p = slash ? slash + 1 : p + n;
        slash = strchr(p, '/');
        n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 0)
            return fail(STO_EURI, err, errlen,
                        "missing bucket after endpoint in \"%s\" (expected "
                        "s3://host:port/bucket/prefix/)",
                        uri);
    }
    if (n == 0) {
        if (out->scheme == STO_SCHEME_AZ)
            return fail(STO_EURI, err, errlen,
                        "missing storage account in \"%s\" (expected az://account/container/"
                        "prefix/)",
                        uri);
        return fail(STO_EURI, err, errlen,
                    "missing bucket in \"%s\" (expected %s://bucket/prefix/)", uri, sch);
    }
    size_t alen = n;
    if (out->scheme == STO_SCHEME_AZ) {
        /* authority = "account/container" */
        const char *c = slash ? slash + 1 : p + n;
        const char *cs = strchr(c, '/');
        size_t cn = cs ? (size_t)(cs - c) : strlen(c);
        if (cn == 0)
            return fail(STO_EURI, err, errlen,
                        "missing container in \"%s\" (expected az://account/container/prefix/)",
                        uri);
        alen = (size_t)(c + cn - p);
        slash = cs;
    }
    if (take(out->authority, sizeof(out->authority), p, alen) != 0)
        return fail(STO_EURI, err, errlen, "bucket or container name too long in \"%.64s...\"",
                    uri);
    const char *prefix = slash ? slash + 1 : "";
    size_t plen = strlen(prefix);
    out->trailing_slash = (plen > 0 && prefix[plen - 1] == '/') || (plen == 0 && slash != NULL);
    while (plen > 0 && prefix[plen - 1] == '/')
        plen--;
    if (take(out->path, sizeof(out->path), prefix, plen) != 0)
        return fail(STO_EURI, err, errlen, "prefix too long in \"%.64s...\"", uri);
    return 0;
}

int sto_uri_parse(const char *uri, sto_uri_t *out, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!uri || !out)
        return fail(STO_EURI, err, errlen, "no URI given");
    memset(out, 0, sizeof(*out));
    size_t len = strlen(uri);
    if (len == 0)
        return fail(STO_EURI, err, errlen,
                    "empty URI (expected e.g. file:///data/ or s3://bucket/prefix/)");
    if (len >= STO_PATH_MAX)
        return fail(STO_EURI, err, errlen, "URI too long (%zu bytes; max %d): \"%.64s...\"", len,
                    STO_PATH_MAX - 1, uri);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)uri[i];
        if (c < 0x20 || c == 0x7f)
            return fail(STO_EURI, err, errlen, "control character 0x%02x at offset %zu in URI", c,
                        i);
    }
    const char *sep = strstr(uri, "://");
    size_t slen = sep ? (size_t)(sep - uri) : 0;
    if (!sep || slen == 0)
        return fail(STO_EURI, err, errlen,
                    "missing scheme \"://\" in \"%s\" (expected e.g. file:///data/ or "
                    "s3://bucket/prefix/; supported: " SUPPORTED ")",
                    uri);
    size_t i;
    for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        if (strlen(schemes[i].name) == slen && strncasecmp(uri, schemes[i].name, slen) == 0)
            break;
    }
    if (i == sizeof(schemes) / sizeof(schemes[0]))
        return fail(STO_ESCHEME, err, errlen,
                    "unknown scheme \"%.*s://\" in \"%s\"; supported: " SUPPORTED, (int)slen, uri,
                    uri);
    out->scheme = schemes[i].scheme;
    const char *rest = sep + 3;
    if (out->scheme == STO_SCHEME_FILE || out->scheme == STO_SCHEME_DIRECT)
        return parse_local(uri, rest, out, err, errlen);
    return parse_cloud(uri, rest, out, err, errlen);
}

int sto_uri_join(const char *base, const char *rel, char *out, size_t outlen)
{
    if (!base || !rel || !out || outlen == 0)
        return RX_EINVAL;
    if (strstr(rel, "://")) {
        size_t n = strlen(rel);
        if (n >= outlen)
            return RX_EINVAL;
        memcpy(out, rel, n + 1);
        return 0;
    }
    /* floor: the part of base no slash is stripped from ("s3://", "file:///", "/"). */
    size_t blen = strlen(base), floor = 0;
    const char *sep = strstr(base, "://");
    if (sep)
        floor = (size_t)(sep - base) + 3;
    if (base[floor] == '/')
        floor++;
    while (blen > floor && base[blen - 1] == '/')
        blen--;
    while (*rel == '/')
        rel++;
    size_t rlen = strlen(rel);
    if (rlen == 0)
        blen = strlen(base); /* nothing to add: base unchanged */
    int slash = blen > floor && rlen > 0;
    if (blen + (size_t)slash + rlen >= outlen)
        return RX_EINVAL;
    memmove(out, base, blen);
    if (slash)
        out[blen] = '/';
    memcpy(out + blen + (size_t)slash, rel, rlen + 1);
    return 0;
}
