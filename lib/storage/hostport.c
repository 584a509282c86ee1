/* host[:port] parsing shared by the endpoint and URL parsers (s3conf.c, azauth.c, gcsauth.c). */
#include <ctype.h>
#include <string.h>

#include "sto_internal.h"

int sto__parse_port(const char *s, size_t n, int *port)
{
    if (n == 0 || n > 5)
        return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    *port = v;
    return 0;
}

int sto__parse_hostport(const char *s, size_t n, char *host, size_t hlen, int *port)
{
    if (n && s[0] == '[') {
        const char *hend = memchr(s, ']', n);
        if (!hend || hend == s + 1 || (size_t)(hend - s - 1) >= hlen)
            return -1;
        memcpy(host, s + 1, (size_t)(hend - s - 1));
        host[hend - s - 1] = '\0';
        const char *p = hend + 1;
        if (p < s + n) {
            if (*p != ':')
                return -1;
            return sto__parse_port(p + 1, (size_t)(s + n - p - 1), port);
        }
        return 0;
    }
    const char *colon = memchr(s, ':', n);
    size_t hl = colon ? (size_t)(colon - s) : n;
    if (hl == 0 || hl >= hlen)
        return -1;
    for (size_t i = 0; i < hl; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '.' || s[i] == '_'))
            return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (colon)
        return sto__parse_port(colon + 1, (size_t)(s + n - colon - 1), port);
    return 0;
}
