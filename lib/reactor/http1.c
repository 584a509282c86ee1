/* HTTP/1.1 client codec. See rx/http1.h for the contract.
 *
 * Header lines are taken whole: a line that lies inside one input is parsed in place (zero-copy),
 * one that spans inputs is gathered in p->buf first. Everything else (chunk framing, bodies) is a
 * byte-level state machine that never buffers, so the events do not depend on how the input is
 * split. Every check that could fire before a line is complete is made on the same bytes in the
 * same order whatever the split, for the same reason (the fuzzer compares splits). */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rx/err.h"
#include "rx/http1.h"

enum {
    S_STATUS,        /* collecting the status line */
    S_HEADER,        /* collecting header lines */
    S_BODY_LEN,      /* Content-Length body */
    S_BODY_EOF,      /* body delimited by the close */
    S_CHUNK_SIZE,    /* hex digits of a chunk size */
    S_CHUNK_WS,      /* blanks after the size: only ';' may follow */
    S_CHUNK_EXT,     /* chunk extensions, ignored up to the line end */
    S_CHUNK_SIZE_LF, /* CR seen on the chunk-size line */
    S_CHUNK_DATA,    /* chunk payload */
    S_CHUNK_DATA_CR, /* CRLF after the payload */
    S_CHUNK_DATA_LF,
    S_TRAILER, /* collecting trailer lines */
    S_DONE,    /* a final response is complete */
    S_FAILED,
};

/* p->flags, per message */
enum {
    F_CONN_CLOSE = 1u << 0,
    F_CONN_KEEPALIVE = 1u << 1,
    F_TE = 1u << 2,         /* Transfer-Encoding present */
    F_CHUNKED = 1u << 3,    /* ... with chunked as its final coding */
    F_CL = 1u << 4,         /* Content-Length present */
    F_CHUNK_DIGIT = 1u << 5 /* at least one digit on the current chunk-size line */
};

/* Internal step results: negative error, else a mask of RX_HTTP1_PAUSE. */
#define STEP_OK 0

#define MIN_HEADER_BYTES 64u
#define MAX_CHUNK_SIZE_BEFORE_SHIFT ((uint64_t)1 << 59) /* keeps chunk sizes below 2^63 */

/* ---- errors --------------------------------------------------------------------------------- */

RX_ERR_TABLE(RX_HTTP1_ERR_LIST, RX_HTTP1_ERR_BASE, http1_err_msg, http1_err_table);

const char *rx_http1_strerror(int code)
{
    return http1_err_msg(code);
}

void rx_http1_err_register(void)
{
    rx_err_register(&http1_err_table);
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
fail(rx_http1_parser_t *p, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->detail, sizeof(p->detail), fmt, ap);
    va_end(ap);
    p->error = code;
    p->state = S_FAILED;
    return code;
}

/* A printable, bounded copy of untrusted bytes for error details. */
static const char *quote(char *out, size_t cap, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        if (i == 24 && n > 27) {
            for (int k = 0; k < 3 && o + 1 < cap; k++)
                out[o++] = '.';
            break;
        }
        unsigned char c = (unsigned char)s[i];
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[o] = '\0';
    return out;
}

/* ---- character classes ---------------------------------------------------------------------- */

static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* Field values, reason phrases, chunk extensions: no CTL except HT, no DEL. */
static int is_text(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int ieq(const char *a, size_t alen, const char *lit)
{
    size_t n = strlen(lit);
    if (alen != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)lit[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x - 'A' + 'a');
        if (x != y)
            return 0;
    }
    return 1;
}

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && is_ws((unsigned char)(*s)[0])) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && is_ws((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

/* Calls fn(p, element, len) for each comma-separated list element, trimmed (empty ones too). */
static int each_element(rx_http1_parser_t *p, const char *v, size_t n,
                        int (*fn)(rx_http1_parser_t *, const char *, size_t, const char *, size_t),
                        const char *whole)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || v[i] == ',') {
            const char *e = v + start;
            size_t elen = i - start;
            trim(&e, &elen);
            int rc = fn(p, e, elen, whole, n);
            if (rc < 0)
                return rc;
            start = i + 1;
        }
    }
    return 0;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void start_message(rx_http1_parser_t *p)
{
    p->state = S_STATUS;
    p->flags = 0;
    p->status = 0;
    p->minor = 1;
    p->content_length = -1;
    p->remaining = 0;
    p->block_bytes = 0;
    p->nfields = 0;
    p->buf_len = 0;
}

int rx_http1_parser_init(rx_http1_parser_t *p, const rx_http1_callbacks_t *cb, void *user,
                         const rx_http1_limits_t *limits)
{
    if (p == NULL || cb == NULL)
        return -EINVAL;
    memset(p, 0, sizeof(*p));
    p->cb = cb;
    p->user = user;
    p->max_header_bytes = RX_HTTP1_DEFAULT_MAX_HEADER_BYTES;
    p->max_headers = RX_HTTP1_DEFAULT_MAX_HEADERS;
    if (limits != NULL && limits->max_header_bytes != 0)
        p->max_header_bytes = limits->max_header_bytes;
    if (p->max_header_bytes < MIN_HEADER_BYTES)
        p->max_header_bytes = MIN_HEADER_BYTES;
    if (limits != NULL && limits->max_headers != 0)
        p->max_headers = limits->max_headers;
    rx_http1_reset(p);
    return 0;
}

void rx_http1_parser_fini(rx_http1_parser_t *p)
{
    if (p == NULL)
        return;
    free(p->buf);
    p->buf = NULL;
    p->buf_len = 0;
    p->buf_cap = 0;
}

void rx_http1_reset(rx_http1_parser_t *p)
{
    start_message(p);
    p->error = 0;
    p->keep_alive = 0;
    p->expect_final = 0;
    p->detail[0] = '\0';
}

int rx_http1_keep_alive(const rx_http1_parser_t *p)
{
    return p->keep_alive;
}

int rx_http1_status(const rx_http1_parser_t *p)
{
    return p->status;
}

int rx_http1_version_minor(const rx_http1_parser_t *p)
{
    return p->minor;
}

int64_t rx_http1_content_length(const rx_http1_parser_t *p)
{
    return p->content_length;
}

int rx_http1_chunked(const rx_http1_parser_t *p)
{
    return (p->flags & F_CHUNKED) != 0;
}

const char *rx_http1_error_detail(const rx_http1_parser_t *p)
{
    return p->detail;
}

/* ---- callbacks ------------------------------------------------------------------------------ */

/* Maps a callback's return value to a step result. */
static int cb_result(rx_http1_parser_t *p, int rc)
{
    if (rc < 0)
        return fail(p, rc, "aborted by a callback (%d)", rc);
    return rc & RX_HTTP1_PAUSE;
}

/* Combines the step result a (>= 0) with the next one, b: an error wins, pauses add up. */
static int then(int a, int b)
{
    return b < 0 ? b : (a | b);
}

static int message_done(rx_http1_parser_t *p)
{
    p->state = S_DONE;
    p->expect_final = 0;
    if (p->cb->on_message_done == NULL)
        return STEP_OK;
    return cb_result(p, p->cb->on_message_done(p->user));
}

static int deliver_body(rx_http1_parser_t *p, const uint8_t *d, size_t n)
{
    if (n == 0 || p->cb->on_body == NULL)
        return STEP_OK;
    return cb_result(p, p->cb->on_body(p->user, d, n));
}

/* ---- status line ---------------------------------------------------------------------------- */

static const char http_prefix[] = "HTTP/";

/* Checks the first bytes of a status line as soon as they arrive, so that a peer that is not
 * speaking HTTP fails fast instead of after max_header_bytes. s holds the first n bytes. */
static int check_status_prefix(rx_http1_parser_t *p, const uint8_t *s, size_t n)
{
    /* Stops at a CR: it may turn out to be the line's terminator. The same bytes are checked
     * whether they arrive alone or with the whole line, so every split fails alike. */
    for (size_t i = 0; i < n && i < 5 && s[i] != '\r'; i++) {
        if (s[i] != (uint8_t)http_prefix[i]) {
            char q[40];
            return fail(p, RX_HTTP1_ESTATUS, "status line does not start with HTTP/ ('%s')",
                        quote(q, sizeof(q), (const char *)s, i + 1));
        }
    }
    return STEP_OK;
}

static int parse_status(rx_http1_parser_t *p, const char *s, size_t n)
{
    char q[40];
    int rc = check_status_prefix(p, (const uint8_t *)s, n);
    if (rc < 0)
        return rc;
    if (n < 8 || s[5] < '0' || s[5] > '9' || s[6] != '.' || s[7] < '0' || s[7] > '9')
        return fail(p, RX_HTTP1_EVERSION, "malformed HTTP version in status line '%s'",
                    quote(q, sizeof(q), s, n));
    if (s[5] != '1')
        return fail(p, RX_HTTP1_EVERSION, "HTTP version %c.%c is not supported", s[5], s[7]);
    p->minor = s[7] - '0';
    if (n < 12 || s[8] != ' ')
        return fail(p, RX_HTTP1_ESTATUS, "status line '%s' is malformed",
                    quote(q, sizeof(q), s, n));
    int code = 0;
    for (int i = 9; i < 12; i++) {
        if (s[i] < '0' || s[i] > '9')
            return fail(p, RX_HTTP1_ESTATUS, "status code in '%s' is not 3 digits",
                        quote(q, sizeof(q), s, n));
        code = code * 10 + (s[i] - '0');
    }
    if (code < 100)
        return fail(p, RX_HTTP1_ESTATUS, "status code %03d is out of range", code);
    const char *reason = s + 12;
    size_t rlen = 0;
    if (n > 12) {
        if (s[12] != ' ')
            return fail(p, RX_HTTP1_ESTATUS, "status code in '%s' is not 3 digits",
                        quote(q, sizeof(q), s, n));
        reason = s + 13;
        rlen = n - 13;
        for (size_t i = 0; i < rlen; i++) {
            if (!is_text((unsigned char)reason[i]))
                return fail(p, RX_HTTP1_ESTATUS, "control character in reason phrase");
        }
    }
    p->status = code;
    p->state = S_HEADER;
    if (p->cb->on_status == NULL)
        return STEP_OK;
    return cb_result(p, p->cb->on_status(p->user, code, reason, rlen));
}

/* ---- header fields -------------------------------------------------------------------------- */

static int cl_element(rx_http1_parser_t *p, const char *e, size_t n, const char *whole, size_t wlen)
{
    char q[40];
    if (n == 0)
        return fail(p, RX_HTTP1_ECONTENTLEN, "Content-Length '%s' is not a number",
                    quote(q, sizeof(q), whole, wlen));
    for (size_t i = 0; i < n; i++) {
        if (e[i] < '0' || e[i] > '9')
            return fail(p, RX_HTTP1_ECONTENTLEN, "Content-Length '%s' is not a number",
                        quote(q, sizeof(q), whole, wlen));
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(e[i] - '0');
        if (v > ((uint64_t)INT64_MAX - d) / 10)
            return fail(p, RX_HTTP1_ECONTENTLEN, "Content-Length '%s' is too large",
                        quote(q, sizeof(q), whole, wlen));
        v = v * 10 + d;
    }
    if ((p->flags & F_CL) && (uint64_t)p->content_length != v)
        return fail(p, RX_HTTP1_ECONTENTLEN, "Content-Length values differ (%lld and %llu)",
                    (long long)p->content_length, (unsigned long long)v);
    p->flags |= F_CL;
    p->content_length = (int64_t)v;
    return 0;
}

static int te_element(rx_http1_parser_t *p, const char *e, size_t n, const char *whole, size_t wlen)
{
    char q[40];
    size_t name_len = 0;
    while (name_len < n && e[name_len] != ';' && !is_ws((unsigned char)e[name_len]))
        name_len++;
    if (name_len == 0)
        return fail(p, RX_HTTP1_ETRANSFER, "Transfer-Encoding '%s' has an empty coding",
                    quote(q, sizeof(q), whole, wlen));
    if (p->flags & F_CHUNKED)
        return fail(p, RX_HTTP1_ETRANSFER, "Transfer-Encoding '%s': chunked is not the last coding",
                    quote(q, sizeof(q), whole, wlen));
    p->flags |= F_TE;
    if (ieq(e, name_len, "chunked"))
        p->flags |= F_CHUNKED;
    return 0;
}

static int conn_element(rx_http1_parser_t *p, const char *e, size_t n, const char *whole,
                        size_t wlen)
{
    (void)whole;
    (void)wlen;
    if (ieq(e, n, "close"))
        p->flags |= F_CONN_CLOSE;
    else if (ieq(e, n, "keep-alive"))
        p->flags |= F_CONN_KEEPALIVE;
    return 0;
}

/* Splits and checks one field line (not empty, no line terminator). */
static int parse_field(rx_http1_parser_t *p, const char *s, size_t n, int trailer)
{
    char q[40];
    const char *what = trailer ? "trailer" : "header";
    if (is_ws((unsigned char)s[0]))
        return fail(p, RX_HTTP1_EOBSFOLD, "%s line starts with whitespace (obsolete folding)",
                    what);
    if (++p->nfields > p->max_headers)
        return fail(p, RX_HTTP1_ETOOMANY, "more than %zu %s fields", p->max_headers, what);
    size_t nl = 0;
    while (nl < n && s[nl] != ':') {
        if (!is_tchar((unsigned char)s[nl])) {
            if (is_ws((unsigned char)s[nl]) && memchr(s + nl, ':', n - nl) != NULL)
                return fail(p, RX_HTTP1_EHEADER, "whitespace before the colon in %s '%s'", what,
                            quote(q, sizeof(q), s, n));
            const void *colon = memchr(s + nl, ':', n - nl);
            if (colon == NULL)
                return fail(p, RX_HTTP1_EHEADER, "%s line '%s' has no colon", what,
                            quote(q, sizeof(q), s, n));
            return fail(p, RX_HTTP1_EHEADER, "invalid character 0x%02x in %s name '%s'",
                        (unsigned char)s[nl], what, quote(q, sizeof(q), s, nl));
        }
        nl++;
    }
    if (nl == n)
        return fail(p, RX_HTTP1_EHEADER, "%s line '%s' has no colon", what,
                    quote(q, sizeof(q), s, n));
    if (nl == 0)
        return fail(p, RX_HTTP1_EHEADER, "%s line '%s' has an empty name", what,
                    quote(q, sizeof(q), s, n));
    const char *v = s + nl + 1;
    size_t vl = n - nl - 1;
    trim(&v, &vl);
    for (size_t i = 0; i < vl; i++) {
        if (!is_text((unsigned char)v[i]))
            return fail(p, RX_HTTP1_EHEADER, "control character 0x%02x in the value of %s '%s'",
                        (unsigned char)v[i], what, quote(q, sizeof(q), s, nl));
    }
    if (trailer) {
        if (p->cb->on_trailer == NULL)
            return STEP_OK;
        return cb_result(p, p->cb->on_trailer(p->user, s, nl, v, vl));
    }
    int rc = 0;
    if (ieq(s, nl, "content-length"))
        rc = each_element(p, v, vl, cl_element, v);
    else if (ieq(s, nl, "transfer-encoding"))
        rc = vl == 0 ? fail(p, RX_HTTP1_ETRANSFER, "empty Transfer-Encoding")
                     : each_element(p, v, vl, te_element, v);
    else if (ieq(s, nl, "connection"))
        rc = each_element(p, v, vl, conn_element, v);
    if (rc < 0)
        return rc;
    if (p->cb->on_header == NULL)
        return STEP_OK;
    return cb_result(p, p->cb->on_header(p->user, s, nl, v, vl));
}

/* The empty line that ends a response's header block: decides how the body is framed. */
static int headers_done(rx_http1_parser_t *p)
{
    /* Checked before the callback, so that on_headers_done never sees an ambiguous framing
     * (RFC 9112 §6.3: a smuggling or splitting attempt, to be treated as an error). */
    if (p->status >= 200 && (p->flags & F_TE) && (p->flags & F_CL))
        return fail(p, RX_HTTP1_ETRANSFER, "both Transfer-Encoding and Content-Length");
    int rc = 0;
    if (p->cb->on_headers_done != NULL) {
        rc = p->cb->on_headers_done(p->user);
        if (rc < 0)
            return fail(p, rc, "aborted by a callback (%d)", rc);
    }
    int pause = rc & RX_HTTP1_PAUSE;
    int no_body = (rc & RX_HTTP1_NO_BODY) != 0;

    if (p->status < 200 && p->status != 101) {
        /* interim: the final response of the same request follows */
        start_message(p);
        p->expect_final = 1;
        return pause;
    }
    p->keep_alive = p->minor >= 1 ? !(p->flags & F_CONN_CLOSE)
                                  : (p->flags & F_CONN_KEEPALIVE) && !(p->flags & F_CONN_CLOSE);
    if (p->status == 101)
        p->keep_alive = 0;
    if (no_body || p->status == 101 || p->status == 204 || p->status == 304)
        return then(pause, message_done(p));
    if (p->flags & F_TE) {
        if (p->flags & F_CHUNKED) {
            p->state = S_CHUNK_SIZE;
            p->remaining = 0;
            p->block_bytes = 0;
            return pause;
        }
        p->keep_alive = 0;
        p->state = S_BODY_EOF;
        return pause;
    }
    if (p->flags & F_CL) {
        if (p->content_length == 0)
            return then(pause, message_done(p));
        p->remaining = (uint64_t)p->content_length;
        p->state = S_BODY_LEN;
        return pause;
    }
    p->keep_alive = 0;
    p->state = S_BODY_EOF;
    return pause;
}

static int process_line(rx_http1_parser_t *p, const char *s, size_t n)
{
    const void *cr = memchr(s, '\r', n);
    if (p->state == S_STATUS) {
        if (n == 0)
            return fail(p, RX_HTTP1_ESTATUS, "empty status line");
        if (cr != NULL) {
            int rc = check_status_prefix(p, (const uint8_t *)s, n);
            if (rc < 0)
                return rc;
            return fail(p, RX_HTTP1_ESTATUS, "CR not followed by LF in the status line");
        }
        return parse_status(p, s, n);
    }
    int trailer = p->state == S_TRAILER;
    if (cr != NULL)
        return fail(p, RX_HTTP1_EHEADER, "CR not followed by LF in a %s line",
                    trailer ? "trailer" : "header");
    if (n > 0)
        return parse_field(p, s, n, trailer);
    if (trailer)
        return message_done(p);
    return headers_done(p);
}

static int buf_append(rx_http1_parser_t *p, const uint8_t *d, size_t n)
{
    if (p->buf_len + n > p->buf_cap) {
        size_t cap = p->buf_cap ? p->buf_cap : 256;
        while (cap < p->buf_len + n)
            cap *= 2;
        if (cap > p->max_header_bytes)
            cap = p->max_header_bytes;
        uint8_t *nb = realloc(p->buf, cap);
        if (nb == NULL)
            return fail(p, -ENOMEM, "no memory for a %zu-byte header line", cap);
        p->buf = nb;
        p->buf_cap = cap;
    }
    memcpy(p->buf + p->buf_len, d, n);
    p->buf_len += n;
    return STEP_OK;
}

/* Takes bytes of a status, header or trailer line; *used tells how many. */
static int feed_line(rx_http1_parser_t *p, const uint8_t *d, size_t len, size_t *used)
{
    size_t budget = p->max_header_bytes - p->block_bytes;
    size_t scan = len < budget ? len : budget;
    const uint8_t *lf = memchr(d, '\n', scan);
    *used = 0;
    if (lf == NULL) {
        if (p->state == S_STATUS && p->buf_len < 5 && scan > 0) {
            uint8_t head[5];
            size_t k = p->buf_len;
            if (k > 0)
                memcpy(head, p->buf, k);
            size_t add = scan < 5 - k ? scan : 5 - k;
            memcpy(head + k, d, add);
            int rc = check_status_prefix(p, head, k + add);
            if (rc < 0)
                return rc;
        }
        if (len > budget)
            return fail(p, RX_HTTP1_EHEADERSIZE, "%s larger than %zu bytes",
                        p->state == S_TRAILER ? "trailer section" : "header block",
                        p->max_header_bytes);
        int rc = buf_append(p, d, len);
        if (rc < 0)
            return rc;
        p->block_bytes += len;
        *used = len;
        return STEP_OK;
    }
    size_t n = (size_t)(lf - d) + 1;
    p->block_bytes += n;
    *used = n;
    const char *line = (const char *)d;
    size_t ll = n;
    if (p->buf_len > 0) {
        int rc = buf_append(p, d, n);
        if (rc < 0)
            return rc;
        line = (const char *)p->buf;
        ll = p->buf_len;
        p->buf_len = 0;
    }
    ll--; /* LF */
    if (ll > 0 && line[ll - 1] == '\r')
        ll--;
    return process_line(p, line, ll);
}

/* ---- chunked framing ------------------------------------------------------------------------ */

static int chunk_line_done(rx_http1_parser_t *p)
{
    p->block_bytes = 0;
    if (p->remaining == 0) {
        p->state = S_TRAILER;
        p->nfields = 0;
        p->buf_len = 0;
        return STEP_OK;
    }
    p->state = S_CHUNK_DATA;
    return STEP_OK;
}

/* One byte of a chunk-size line or of the CRLF after chunk data. */
static int chunk_byte(rx_http1_parser_t *p, unsigned char c)
{
    if (p->state == S_CHUNK_SIZE || p->state == S_CHUNK_WS || p->state == S_CHUNK_EXT) {
        if (++p->block_bytes > p->max_header_bytes)
            return fail(p, RX_HTTP1_ECHUNK, "chunk-size line longer than %zu bytes",
                        p->max_header_bytes);
    }
    switch (p->state) {
    case S_CHUNK_SIZE: {
        int h = hexval(c);
        if (h >= 0) {
            if (p->remaining >= MAX_CHUNK_SIZE_BEFORE_SHIFT)
                return fail(p, RX_HTTP1_ECHUNK, "chunk size too large");
            p->remaining = (p->remaining << 4) | (unsigned)h;
            p->flags |= F_CHUNK_DIGIT;
            return STEP_OK;
        }
        if (!(p->flags & F_CHUNK_DIGIT))
            return fail(p, RX_HTTP1_ECHUNK, "chunk size starts with 0x%02x, not a hex digit", c);
        if (is_ws(c))
            p->state = S_CHUNK_WS;
        else if (c == ';')
            p->state = S_CHUNK_EXT;
        else if (c == '\r')
            p->state = S_CHUNK_SIZE_LF;
        else if (c == '\n')
            return chunk_line_done(p);
        else
            return fail(p, RX_HTTP1_ECHUNK, "invalid character 0x%02x after the chunk size", c);
        return STEP_OK;
    }
    case S_CHUNK_WS:
        if (c == ';')
            p->state = S_CHUNK_EXT;
        else if (!is_ws(c))
            return fail(p, RX_HTTP1_ECHUNK, "invalid character 0x%02x after the chunk size", c);
        return STEP_OK;
    case S_CHUNK_EXT:
        if (c == '\r')
            p->state = S_CHUNK_SIZE_LF;
        else if (c == '\n')
            return chunk_line_done(p);
        else if (!is_text(c))
            return fail(p, RX_HTTP1_ECHUNK, "control character 0x%02x in a chunk extension", c);
        return STEP_OK;
    case S_CHUNK_SIZE_LF:
        if (c != '\n')
            return fail(p, RX_HTTP1_ECHUNK, "CR not followed by LF on a chunk-size line");
        return chunk_line_done(p);
    case S_CHUNK_DATA_CR:
        if (c == '\r') {
            p->state = S_CHUNK_DATA_LF;
            return STEP_OK;
        }
        if (c != '\n')
            return fail(p, RX_HTTP1_ECHUNK, "chunk data not followed by CRLF (0x%02x)", c);
        break;
    case S_CHUNK_DATA_LF:
        if (c != '\n')
            return fail(p, RX_HTTP1_ECHUNK, "chunk data not followed by CRLF (CR then 0x%02x)", c);
        break;
    default:
        return fail(p, RX_HTTP1_ECHUNK, "internal state %d", p->state);
    }
    /* end of a chunk's CRLF: the next size line */
    p->state = S_CHUNK_SIZE;
    p->remaining = 0;
    p->block_bytes = 0;
    p->flags &= ~(unsigned)F_CHUNK_DIGIT;
    return STEP_OK;
}

/* ---- driver --------------------------------------------------------------------------------- */

int rx_http1_parse(rx_http1_parser_t *p, const void *data, size_t len, size_t *consumed)
{
    const uint8_t *d = data;
    size_t pos = 0;
    int rc = STEP_OK;
    if (consumed != NULL)
        *consumed = 0;
    if (p->state == S_FAILED)
        return p->error;
    if (d == NULL && len > 0)
        return -EINVAL;

    while (pos < len) {
        size_t n = 1;
        switch (p->state) {
        case S_DONE:
            if (!p->keep_alive) {
                rc = fail(p, RX_HTTP1_EEXTRA,
                          p->status == 101 ? "data after 101 Switching Protocols"
                                           : "data after a response that closes the connection");
                break;
            }
            start_message(p);
            n = 0;
            break;
        case S_STATUS:
        case S_HEADER:
        case S_TRAILER:
            rc = feed_line(p, d + pos, len - pos, &n);
            break;
        case S_BODY_LEN: {
            n = len - pos;
            if ((uint64_t)n > p->remaining)
                n = (size_t)p->remaining;
            p->remaining -= n;
            rc = deliver_body(p, d + pos, n);
            if (rc >= 0 && p->remaining == 0)
                rc = then(rc, message_done(p));
            break;
        }
        case S_BODY_EOF:
            n = len - pos;
            rc = deliver_body(p, d + pos, n);
            break;
        case S_CHUNK_DATA: {
            n = len - pos;
            if ((uint64_t)n > p->remaining)
                n = (size_t)p->remaining;
            p->remaining -= n;
            if (p->remaining == 0)
                p->state = S_CHUNK_DATA_CR;
            rc = deliver_body(p, d + pos, n);
            break;
        }
        case S_FAILED:
            rc = p->error;
            n = 0;
            break;
        default:
            rc = chunk_byte(p, d[pos]);
            break;
        }
        if (rc < 0) {
            if (consumed != NULL)
                *consumed = pos;
            return rc;
        }
        pos += n;
        if (rc & RX_HTTP1_PAUSE)
            break;
    }
    if (consumed != NULL)
        *consumed = pos;
    return 0;
}

int rx_http1_eof(rx_http1_parser_t *p)
{
    switch (p->state) {
    case S_FAILED:
        return p->error;
    case S_DONE:
        return 0;
    case S_STATUS:
        if (p->buf_len == 0 && !p->expect_final)
            return 0;
        if (p->buf_len == 0)
            return fail(p, RX_HTTP1_EEOF, "connection closed after a %d interim response",
                        p->status);
        return fail(p, RX_HTTP1_EEOF, "connection closed in the status line");
    case S_HEADER:
        return fail(p, RX_HTTP1_EEOF, "connection closed in the header block");
    case S_BODY_EOF: {
        int rc = message_done(p);
        return rc < 0 ? rc : 0;
    }
    case S_BODY_LEN:
        return fail(p, RX_HTTP1_EEOF, "connection closed after %llu of %lld body bytes",
                    (unsigned long long)((uint64_t)p->content_length - p->remaining),
                    (long long)p->content_length);
    case S_TRAILER:
        return fail(p, RX_HTTP1_EEOF, "connection closed in the trailer section");
    default:
        return fail(p, RX_HTTP1_EEOF, "connection closed in a chunked body");
    }
}

/* ---- request writer ------------------------------------------------------------------------- */

typedef struct out {
    char *buf;
    size_t cap;
    size_t len;
    int full;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (o->full || n > o->cap - o->len) {
        o->full = 1;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void puts_lit(out_t *o, const char *s)
{
    put(o, s, strlen(s));
}

static int valid_token(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_tchar((unsigned char)s[i]))
            return 0;
    }
    return 1;
}

int rx_http1_request_head(char *buf, size_t cap, const char *method, const char *target,
                          const rx_http1_header_t *headers, size_t nheaders, int64_t body_len)
{
    if (method == NULL || target == NULL || (buf == NULL && cap > 0) ||
        (headers == NULL && nheaders > 0))
        return -EINVAL;
    size_t ml = strlen(method), tl = strlen(target);
    if (!valid_token(method, ml) || tl == 0)
        return -EINVAL;
    for (size_t i = 0; i < tl; i++) {
        unsigned char c = (unsigned char)target[i];
        if (c <= 0x20 || c == 0x7f)
            return -EINVAL;
    }
    for (size_t h = 0; h < nheaders; h++) {
        const rx_http1_header_t *f = &headers[h];
        if (f->name == NULL || (f->value == NULL && f->value_len > 0) ||
            !valid_token(f->name, f->name_len))
            return -EINVAL;
        for (size_t i = 0; i < f->value_len; i++) {
            if (!is_text((unsigned char)f->value[i]))
                return -EINVAL;
        }
        if (body_len >= 0 && ieq(f->name, f->name_len, "content-length"))
            return -EINVAL;
    }
    if (cap > INT_MAX)
        cap = INT_MAX;
    out_t o = {buf, cap, 0, 0};
    put(&o, method, ml);
    put(&o, " ", 1);
    put(&o, target, tl);
    puts_lit(&o, " HTTP/1.1\r\n");
    for (size_t h = 0; h < nheaders; h++) {
        put(&o, headers[h].name, headers[h].name_len);
        put(&o, ": ", 2);
        if (headers[h].value_len > 0)
            put(&o, headers[h].value, headers[h].value_len);
        put(&o, "\r\n", 2);
    }
    if (body_len >= 0) {
        char num[48];
        int k = snprintf(num, sizeof(num), "Content-Length: %lld\r\n", (long long)body_len);
        put(&o, num, (size_t)k);
    }
    put(&o, "\r\n", 2);
    if (o.full)
        return -ENOSPC;
    return (int)o.len;
}

int rx_http1_request_iov(struct iovec *iov, size_t iov_cap, const void *head, size_t head_len,
                         const struct iovec *body, size_t nbody)
{
    if ((head == NULL && head_len > 0) || (body == NULL && nbody > 0) ||
        (iov == NULL && iov_cap > 0))
        return -EINVAL;
    size_t need = 1;
    for (size_t i = 0; i < nbody; i++)
        need += body[i].iov_len > 0;
    if (need > iov_cap || need > INT_MAX)
        return -ENOSPC;
    iov[0].iov_base = (void *)(uintptr_t)head;
    iov[0].iov_len = head_len;
    size_t k = 1;
    for (size_t i = 0; i < nbody; i++) {
        if (body[i].iov_len > 0)
            iov[k++] = body[i];
    }
    return (int)k;
}
