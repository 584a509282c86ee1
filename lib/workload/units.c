/* Sizes, durations and counts as users write them.
 *
 * Arithmetic is exact: the integer and fraction digits are kept as integers and scaled in 128 bits,
 * so "1.5GB" is exactly 1500000000 and overflow is detected rather than rounded away.
 */
#include "wl/units.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef unsigned __int128 u128;

#define MAX_FRAC_DIGITS 18

static int fail(int rc, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(int rc, char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int is_sep(char ch)
{
    return ch == '_' || ch == ',' || ch == ' ';
}

/* Trims blanks at both ends into [*b, *e). */
static void trim(const char *s, const char **b, const char **e)
{
    const char *p = s, *q = s + strlen(s);
    while (p < q && isspace((unsigned char)*p))
        p++;
    while (q > p && isspace((unsigned char)q[-1]))
        q--;
    *b = p;
    *e = q;
}

/* A decimal number: digits with '_' separators between them, optional ".digits".
 * Returns chars consumed (0 = no number), sets *ip / *fp / *fdigits; *ovf when the integer part
 * does not fit 64 bits. */
static size_t scan_number(const char *p, const char *e, int allow_frac, uint64_t *ip, uint64_t *fp,
                          int *fdigits, int *ovf)
{
    const char *s = p;
    u128 v = 0;
    *ip = 0;
    *fp = 0;
    *fdigits = 0;
    *ovf = 0;
    if (p >= e || !isdigit((unsigned char)*p))
        return 0;
    while (p < e) {
        if (isdigit((unsigned char)*p)) {
            v = v * 10 + (unsigned)(*p - '0');
            if (v > UINT64_MAX)
                *ovf = 1, v = UINT64_MAX;
            p++;
        } else if (*p == '_' && p + 1 < e && isdigit((unsigned char)p[1])) {
            p++;
        } else {
            break;
        }
    }
    *ip = (uint64_t)v;
    if (allow_frac && p + 1 < e && *p == '.' && isdigit((unsigned char)p[1])) {
        p++;
        while (p < e && isdigit((unsigned char)*p)) {
            if (*fdigits < MAX_FRAC_DIGITS) {
                *fp = *fp * 10 + (uint64_t)(*p - '0');
                (*fdigits)++;
            }
            p++;
        }
    }
    return (size_t)(p - s);
}

static u128 pow10u(int n)
{
    u128 r = 1;
    while (n-- > 0)
        r *= 10;
    return r;
}

/* ip.fp × mult, rounded down; returns -ERANGE on overflow. */
static int scale(uint64_t ip, uint64_t fp, int fdigits, uint64_t mult, uint64_t *out)
{
    u128 whole = (u128)ip * mult;
    u128 frac = (u128)fp * mult / pow10u(fdigits);
    u128 r = whole + frac;
    if (whole / mult != ip || r > UINT64_MAX)
        return -ERANGE;
    *out = (uint64_t)r;
    return 0;
}

struct unit {
    const char *name;
    uint64_t mult;
};

#define K10 1000ULL
#define K2 1024ULL

static const struct unit size_units[] = {
    {"b", 1},
    {"k", K10},
    {"kb", K10},
    {"m", K10 *K10},
    {"mb", K10 *K10},
    {"g", K10 *K10 *K10},
    {"gb", K10 *K10 *K10},
    {"t", K10 *K10 *K10 *K10},
    {"tb", K10 *K10 *K10 *K10},
    {"p", K10 *K10 *K10 *K10 *K10},
    {"pb", K10 *K10 *K10 *K10 *K10},
    {"ki", K2},
    {"kib", K2},
    {"mi", K2 *K2},
    {"mib", K2 *K2},
    {"gi", K2 *K2 *K2},
    {"gib", K2 *K2 *K2},
    {"ti", K2 *K2 *K2 *K2},
    {"tib", K2 *K2 *K2 *K2},
    {"pi", K2 *K2 *K2 *K2 *K2},
    {"pib", K2 *K2 *K2 *K2 *K2},
};

int wl_parse_size(const char *s, uint64_t *out, char *err, size_t errlen)
{
    const char *b, *e;
    if (!s)
        return fail(-EINVAL, err, errlen, "empty size");
    trim(s, &b, &e);
    int n = (int)(e - b);
    if (b == e)
        return fail(-EINVAL, err, errlen, "empty size");
    if (*b == '-')
        return fail(-EINVAL, err, errlen, "'%.*s' is not a size: sizes cannot be negative", n, b);
    const char *p = b;
    if (*p == '+')
        p++;
    uint64_t ip, fp;
    int fd, ovf;
    size_t used = scan_number(p, e, 1, &ip, &fp, &fd, &ovf);
    if (!used)
        return fail(-EINVAL, err, errlen,
                    "'%.*s' is not a size: expected a number with an optional unit, such as "
                    "4096, 64KiB or 1.5GB",
                    n, b);
    p += used;
    while (p < e && *p == ' ')
        p++;
    const char *u = p;
    size_t ulen = (size_t)(e - u);
    uint64_t mult = 1;
    int have_unit = ulen > 0;
    if (have_unit) {
        size_t i;
        for (i = 0; i < sizeof(size_units) / sizeof(size_units[0]); i++)
            if (strlen(size_units[i].name) == ulen && !strncasecmp(u, size_units[i].name, ulen))
                break;
        if (i == sizeof(size_units) / sizeof(size_units[0]))
            return fail(-EINVAL, err, errlen,
                        "'%.*s' is not a size: unknown unit '%.*s' (use B, KB, KiB, MB, MiB, ...)",
                        n, b, (int)ulen, u);
        mult = size_units[i].mult;
    }
    if (fd > 0 && mult == 1)
        return fail(-EINVAL, err, errlen,
                    "'%.*s' is not a size: a fraction needs a unit such as KiB or MB", n, b);
    if (ovf || scale(ip, fp, fd, mult, out) < 0)
        return fail(-ERANGE, err, errlen, "'%.*s' is too large for a size (maximum 16 EiB - 1)", n,
                    b);
    return 0;
}

static const struct unit dur_units[] = {
    {"ns", 1ULL},
    {"nsec", 1ULL},
    {"us", 1000ULL},
    {"usec", 1000ULL},
    {"\xc2\xb5s", 1000ULL},
    {"ms", 1000000ULL},
    {"msec", 1000000ULL},
    {"s", 1000000000ULL},
    {"sec", 1000000000ULL},
    {"secs", 1000000000ULL},
    {"second", 1000000000ULL},
    {"seconds", 1000000000ULL},
    {"m", 60000000000ULL},
    {"min", 60000000000ULL},
    {"mins", 60000000000ULL},
    {"minute", 60000000000ULL},
    {"minutes", 60000000000ULL},
    {"h", 3600000000000ULL},
    {"hr", 3600000000000ULL},
    {"hrs", 3600000000000ULL},
    {"hour", 3600000000000ULL},
    {"hours", 3600000000000ULL},
    {"d", 86400000000000ULL},
    {"day", 86400000000000ULL},
    {"days", 86400000000000ULL},
};

int wl_parse_duration_ns(const char *s, uint64_t *out, char *err, size_t errlen)
{
    const char *b, *e;
    if (!s)
        return fail(-EINVAL, err, errlen, "empty duration");
    trim(s, &b, &e);
    int n = (int)(e - b);
    if (b == e)
        return fail(-EINVAL, err, errlen, "empty duration");
    if (*b == '-')
        return fail(-EINVAL, err, errlen, "'%.*s' is not a duration: durations cannot be negative",
                    n, b);
    const char *p = b;
    if (*p == '+')
        p++;
    uint64_t total = 0;
    int parts = 0;
    while (p < e) {
        uint64_t ip, fp, v;
        int fd, ovf;
        size_t used = scan_number(p, e, 1, &ip, &fp, &fd, &ovf);
        if (!used)
            return fail(-EINVAL, err, errlen,
                        "'%.*s' is not a duration: expected a number with a unit, such as 30s, "
                        "5m, 1h30m or 500ms",
                        n, b);
        p += used;
        while (p < e && *p == ' ')
            p++;
        const char *u = p;
        while (p < e && !isdigit((unsigned char)*p) && *p != ' ' && *p != '.')
            p++;
        size_t ulen = (size_t)(p - u);
        uint64_t mult;
        if (ulen == 0) {
            if (parts > 0 || p < e)
                return fail(-EINVAL, err, errlen,
                            "'%.*s' is not a duration: every number needs a unit (ns, us, ms, s, "
                            "m, h, d)",
                            n, b);
            mult = 1000000000ULL; /* plain number = seconds */
        } else {
            size_t i;
            for (i = 0; i < sizeof(dur_units) / sizeof(dur_units[0]); i++)
                if (strlen(dur_units[i].name) == ulen && !strncasecmp(u, dur_units[i].name, ulen))
                    break;
            if (i == sizeof(dur_units) / sizeof(dur_units[0]))
                return fail(-EINVAL, err, errlen,
                            "'%.*s' is not a duration: unknown unit '%.*s' (use ns, us, ms, s, m, "
                            "h or d)",
                            n, b, (int)ulen, u);
            mult = dur_units[i].mult;
        }
        if (ovf || scale(ip, fp, fd, mult, &v) < 0 || total + v < total)
            return fail(-ERANGE, err, errlen, "'%.*s' is too long for a duration", n, b);
        total += v;
        parts++;
        while (p < e && *p == ' ')
            p++;
    }
    *out = total;
    return 0;
}

int wl_parse_count(const char *s, uint64_t *out, char *err, size_t errlen)
{
    const char *b, *e;
    if (!s)
        return fail(-EINVAL, err, errlen, "empty count");
    trim(s, &b, &e);
    int n = (int)(e - b);
    if (b == e)
        return fail(-EINVAL, err, errlen, "empty count");
    if (*b == '-')
        return fail(-EINVAL, err, errlen, "'%.*s' is not a count: counts cannot be negative", n, b);
    const char *p = b;
    if (*p == '+')
        p++;
    u128 v = 0;
    int ovf = 0, digits = 0;
    while (p < e) {
        if (isdigit((unsigned char)*p)) {
            v = v * 10 + (unsigned)(*p - '0');
            if (v > UINT64_MAX)
                ovf = 1, v = UINT64_MAX;
            digits++;
            p++;
        } else if (is_sep(*p) && digits > 0 && p + 1 < e && isdigit((unsigned char)p[1])) {
            p++;
        } else {
            break;
        }
    }
    if (!digits || p != e)
        return fail(-EINVAL, err, errlen,
                    "'%.*s' is not a count: expected a whole number such as 1000000, 1_000_000 "
                    "or 1,000,000",
                    n, b);
    if (ovf)
        return fail(-ERANGE, err, errlen, "'%.*s' is too large for a count", n, b);
    *out = (uint64_t)v;
    return 0;
}

char *wl_fmt_bytes(uint64_t bytes, char *buf, size_t len)
{
    static const char *const names[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (!buf || !len)
        return buf;
    if (bytes < 1024) {
        snprintf(buf, len, "%llu B", (unsigned long long)bytes);
        return buf;
    }
    double v = (double)bytes / 1024.0;
    int i = 0;
    while (v >= 1024.0 && i < 5) {
        v /= 1024.0;
        i++;
    }
    snprintf(buf, len, "%.2f %s", v, names[i]);
    return buf;
}

char *wl_fmt_ns(uint64_t ns, char *buf, size_t len)
{
    if (!buf || !len)
        return buf;
    if (ns < 1000)
        snprintf(buf, len, "%llu ns", (unsigned long long)ns);
    else if (ns < 1000000)
        snprintf(buf, len, "%.2f us", (double)ns / 1e3);
    else if (ns < 1000000000)
        snprintf(buf, len, "%.2f ms", (double)ns / 1e6);
    else
        snprintf(buf, len, "%.1f s", (double)ns / 1e9);
    return buf;
}
