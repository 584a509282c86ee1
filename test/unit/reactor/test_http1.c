/* Unit tests for the HTTP/1.1 client codec (rx/http1.h).
 *
 * Parser cases are table-driven: every input is fed whole, one byte at a time, and split in two
 * at every offset, and each run must give exactly the expected event log. Body events are merged
 * in the log, since their slicing legitimately follows the input's. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rx/err.h"
#include "rx/http1.h"

/* ---- event recorder ------------------------------------------------------------------------- */

typedef struct rec {
    char log[16384];
    size_t len;
    int in_body;
    rx_http1_parser_t *p;
    unsigned head_mask;  /* bit i: final response i is the answer to a HEAD */
    unsigned finals;     /* final responses whose headers ended so far */
    int pause_on_done;   /* on_message_done returns RX_HTTP1_PAUSE */
    int abort_on_header; /* on_header returns this when non-zero */
    const uint8_t *lo;   /* body slices must lie inside [lo, hi) */
    const uint8_t *hi;
    size_t body_bytes;
} rec_t;

static void rec_raw(rec_t *r, const char *s, size_t n)
{
    assert_true(r->len + n < sizeof(r->log));
    memcpy(r->log + r->len, s, n);
    r->len += n;
    r->log[r->len] = '\0';
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
rec_add(rec_t *r, const char *fmt, ...)
{
    char tmp[1024];
    if (r->in_body) {
        rec_raw(r, "|", 1);
        r->in_body = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof(tmp));
    rec_raw(r, tmp, (size_t)n);
}

static void rec_flush(rec_t *r)
{
    if (r->in_body) {
        rec_raw(r, "|", 1);
        r->in_body = 0;
    }
}

static int on_status(void *user, int code, const char *reason, size_t rlen)
{
    rec_add(user, "S%d %.*s|", code, (int)rlen, reason);
    return 0;
}

static int on_header(void *user, const char *n, size_t nl, const char *v, size_t vl)
{
    rec_t *r = user;
    rec_add(r, "H%.*s=%.*s|", (int)nl, n, (int)vl, v);
    return r->abort_on_header;
}

static int on_headers_done(void *user)
{
    rec_t *r = user;
    rec_add(r, "D|");
    if (rx_http1_status(r->p) < 200 && rx_http1_status(r->p) != 101)
        return 0;
    unsigned i = r->finals++;
    return (i < 32 && (r->head_mask >> i) & 1) ? RX_HTTP1_NO_BODY : 0;
}

static int on_body(void *user, const uint8_t *d, size_t n)
{
    rec_t *r = user;
    assert_true(n > 0);
    if (r->lo != NULL)
        assert_true(d >= r->lo && d + n <= r->hi);
    if (!r->in_body)
        rec_raw(r, "B", 1);
    r->in_body = 1;
    rec_raw(r, (const char *)d, n);
    r->body_bytes += n;
    return 0;
}

static int on_trailer(void *user, const char *n, size_t nl, const char *v, size_t vl)
{
    rec_add(user, "T%.*s=%.*s|", (int)nl, n, (int)vl, v);
    return 0;
}

static int on_message_done(void *user)
{
    rec_t *r = user;
    rec_add(r, "M ka=%d|", rx_http1_keep_alive(r->p));
    return r->pause_on_done ? RX_HTTP1_PAUSE : 0;
}

static const rx_http1_callbacks_t cbs = {
    .on_status = on_status,
    .on_header = on_header,
    .on_headers_done = on_headers_done,
    .on_body = on_body,
    .on_trailer = on_trailer,
    .on_message_done = on_message_done,
};

static const rx_http1_callbacks_t cbs_no_trailer = {
    .on_status = on_status,
    .on_header = on_header,
    .on_headers_done = on_headers_done,
    .on_body = on_body,
    .on_message_done = on_message_done,
};

/* For inputs too large to log. */
static const rx_http1_callbacks_t cbs_quiet = {
    .on_headers_done = on_headers_done,
    .on_message_done = on_message_done,
};

static const char *err_name(int code)
{
    switch (code) {
#define NAME(name, off, msg)                                                                       \
    case name:                                                                                     \
        return #name;
        RX_HTTP1_ERR_LIST(NAME)
#undef NAME
    case -ENOMEM:
        return "ENOMEM";
    default:
        return "other";
    }
}

/* ---- table ---------------------------------------------------------------------------------- */

typedef struct tcase {
    const char *name;
    const char *in;
    int eof;            /* call rx_http1_eof() after the input */
    unsigned head_mask; /* see rec_t */
    int skip_trailers;  /* no on_trailer callback */
    size_t max_header_bytes, max_headers;
    const char *expect;
} tcase_t;

#define OK200 "HTTP/1.1 200 OK\r\n"
#define CHUNKED OK200 "Transfer-Encoding: chunked\r\n\r\n"
#define CHUNKED_EV "S200 OK|HTransfer-Encoding=chunked|D|"

static const tcase_t cases[] = {
    {"cl_basic", OK200 "Content-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello", 0, 0, 0, 0, 0,
     "S200 OK|HContent-Length=5|HContent-Type=text/plain|D|Bhello|M ka=1|"},
    {"cl_zero", OK200 "Content-Length: 0\r\n\r\n", 0, 0, 0, 0, 0,
     "S200 OK|HContent-Length=0|D|M ka=1|"},
    {"cl_dup_same", OK200 "Content-Length: 3\r\ncontent-length: 3 , 3\r\n\r\nabc", 0, 0, 0, 0, 0,
     "S200 OK|HContent-Length=3|Hcontent-length=3 , 3|D|Babc|M ka=1|"},
    {"cl_int64_max_head", OK200 "Content-Length: 9223372036854775807\r\n\r\n", 0, 1, 0, 0, 0,
     "S200 OK|HContent-Length=9223372036854775807|D|M ka=1|"},
    {"chunked_trailers",
     CHUNKED "5;name=val\r\nhello\r\n7 ; a=\"b c\";x\r\n, world\r\nA\r\n0123456789\r\n"
             "0;last\r\nX-Checksum: abc\r\nX-Other:  d \r\n\r\n",
     0, 0, 0, 0, 0, CHUNKED_EV "Bhello, world0123456789|TX-Checksum=abc|TX-Other=d|M ka=1|"},
    {"chunked_trailers_skipped", CHUNKED "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other: d\r\n\r\n",
     0, 0, 1, 0, 0, CHUNKED_EV "Bhello|M ka=1|"},
    {"chunked_empty", CHUNKED "0\r\n\r\n", 0, 0, 0, 0, 0, CHUNKED_EV "M ka=1|"},
    {"chunked_hex_leading_zeros",
     CHUNKED "00000010\r\n0123456789abcdef\r\n1a\r\n"
             "abcdefghijklmnopqrstuvwxyz\r\n000\r\n\r\n",
     0, 0, 0, 0, 0, CHUNKED_EV "B0123456789abcdefabcdefghijklmnopqrstuvwxyz|M ka=1|"},
    {"chunked_codings",
     OK200 "Transfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n"
           "2\r\nzz\r\n0\r\n\r\n",
     0, 0, 0, 0, 0, "S200 OK|HTransfer-Encoding=gzip|HTransfer-Encoding=Chunked|D|Bzz|M ka=1|"},
    {"continue_100", "HTTP/1.1 100 Continue\r\n\r\n" OK200 "Content-Length: 2\r\n\r\nok", 0, 0, 0,
     0, 0, "S100 Continue|D|S200 OK|HContent-Length=2|D|Bok|M ka=1|"},
    {"interim_103_then_100_then_204",
     "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
     "HTTP/1.1 204 No Content\r\n\r\n",
     0, 0, 0, 0, 0, "S103 Early Hints|HLink=</a.css>|D|S100 Continue|D|S204 No Content|D|M ka=1|"},
    {"head_then_get", OK200 "Content-Length: 1234\r\n\r\n" OK200 "Content-Length: 1\r\n\r\nx", 0, 1,
     0, 0, 0, "S200 OK|HContent-Length=1234|D|M ka=1|S200 OK|HContent-Length=1|D|Bx|M ka=1|"},
    {"head_chunked", CHUNKED OK200 "Content-Length: 0\r\n\r\n", 0, 1, 0, 0, 0,
     CHUNKED_EV "M ka=1|S200 OK|HContent-Length=0|D|M ka=1|"},
    {"status_204_304",
     "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"
     "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\nETag: \"x\"\r\n\r\n" OK200
     "Content-Length: 1\r\n\r\n!",
     0, 0, 0, 0, 0,
     "S204 No Content|HContent-Length=10|D|M ka=1|S304 Not Modified|HContent-Length=99|"
     "HETag=\"x\"|D|M ka=1|S200 OK|HContent-Length=1|D|B!|M ka=1|"},
    {"eof_body", OK200 "\r\nuntil close", 1, 0, 0, 0, 0, "S200 OK|D|Buntil close|M ka=0|"},
    {"eof_body_empty", "HTTP/1.0 200 OK\r\n\r\n", 1, 0, 0, 0, 0, "S200 OK|D|M ka=0|"},
    {"eof_body_te_gzip", OK200 "Transfer-Encoding: gzip\r\n\r\nzz", 1, 0, 0, 0, 0,
     "S200 OK|HTransfer-Encoding=gzip|D|Bzz|M ka=0|"},
    {"http10_close", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", 0, 0, 0, 0, 0,
     "S200 OK|HContent-Length=1|D|Bx|M ka=0|"},
    {"http10_keep_alive",
     "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx"
     "HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n",
     0, 0, 0, 0, 0,
     "S200 OK|HConnection=Keep-Alive|HContent-Length=1|D|Bx|M ka=1|"
     "S200 OK|HConnection=keep-alive, close|HContent-Length=0|D|M ka=0|"},
    {"http11_close", OK200 "Connection: Upgrade, CLOSE\r\nContent-Length: 1\r\n\r\nx", 0, 0, 0, 0,
     0, "S200 OK|HConnection=Upgrade, CLOSE|HContent-Length=1|D|Bx|M ka=0|"},
    {"http11_eof_after_done", OK200 "Content-Length: 1\r\n\r\nx", 1, 0, 0, 0, 0,
     "S200 OK|HContent-Length=1|D|Bx|M ka=1|"},
    {"http12_minor", "HTTP/1.2 200 OK\r\nContent-Length: 0\r\n\r\n", 0, 0, 0, 0, 0,
     "S200 OK|HContent-Length=0|D|M ka=1|"},
    {"pipelined",
     OK200 "Content-Length: 3\r\n\r\none"
           "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\ntwo" CHUNKED
           "5\r\nthree\r\n0\r\n\r\n",
     0, 0, 0, 0, 0,
     "S200 OK|HContent-Length=3|D|Bone|M ka=1|S404 Not Found|HContent-Length=3|D|Btwo|M "
     "ka=1|" CHUNKED_EV "Bthree|M ka=1|"},
    {"trim_and_empty_values",
     "HTTP/1.1 200 \r\nX-A:   a b \t\r\nX-Empty:\r\nX-E2: \t \r\nX-Obs: caf\xc3\xa9\r\n"
     "Content-Length: 0\r\n\r\n",
     0, 0, 0, 0, 0,
     "S200 |HX-A=a b|HX-Empty=|HX-E2=|HX-Obs=caf\xc3\xa9|HContent-Length=0|D|M ka=1|"},
    {"no_reason", "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", 0, 0, 0, 0, 0,
     "S404 |HContent-Length=0|D|M ka=1|"},
    {"bare_lf", "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nhi\n0\nX: y\n\n", 0, 0, 0, 0, 0,
     "S200 OK|HTransfer-Encoding=chunked|D|Bhi|TX=y|M ka=1|"},
    {"switching_101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", 0, 0, 0, 0, 0,
     "S101 Switching Protocols|HUpgrade=h2c|D|M ka=0|"},
    {"eof_idle", "", 1, 0, 0, 0, 0, ""},

    /* status line */
    {"bad_status_code", "HTTP/1.1 20 OK\r\n\r\n", 0, 0, 0, 0, 0, "E:RX_HTTP1_ESTATUS|"},
    {"bad_status_not_http", "ICY 200 OK\r\n\r\n", 0, 0, 0, 0, 0, "E:RX_HTTP1_ESTATUS|"},
    {"bad_status_no_space", "HTTP/1.1 200OK\r\n\r\n", 0, 0, 0, 0, 0, "E:RX_HTTP1_ESTATUS|"},
    {"bad_status_099", "HTTP/1.1 099 Low\r\n\r\n", 0, 0, 0, 0, 0, "E:RX_HTTP1_ESTATUS|"},
    {"bad_status_empty", "\r\nHTTP/1.1 200 OK\r\n\r\n", 0, 0, 0, 0, 0, "E:RX_HTTP1_ESTATUS|"},
    {"bad_status_ctl_reason", "HTTP/1.1 200 O\x01K\r\n\r\n", 0, 0, 0, 0, 0, "E:RX_HTTP1_ESTATUS|"},
    {"bad_status_bare_cr", "HTTP/1.1 200 O\rK\r\n\r\n", 0, 0, 0, 0, 0, "E:RX_HTTP1_ESTATUS|"},
    {"bad_status_short", "HT\r\n", 0, 0, 0, 0, 0, "E:RX_HTTP1_EVERSION|"},
    {"bad_version_2", "HTTP/2.0 200 OK\r\n\r\n", 0, 0, 0, 0, 0, "E:RX_HTTP1_EVERSION|"},
    {"bad_version_junk", "HTTP/1.x 200 OK\r\n\r\n", 0, 0, 0, 0, 0, "E:RX_HTTP1_EVERSION|"},
    /* header lines */
    {"missing_colon", OK200 "Content-Length 5\r\n\r\nhello", 0, 0, 0, 0, 0,
     "S200 OK|E:RX_HTTP1_EHEADER|"},
    {"space_before_colon", OK200 "Content-Length : 5\r\n\r\nhello", 0, 0, 0, 0, 0,
     "S200 OK|E:RX_HTTP1_EHEADER|"},
    {"empty_name", OK200 ": x\r\n\r\n", 0, 0, 0, 0, 0, "S200 OK|E:RX_HTTP1_EHEADER|"},
    {"bad_name_char", OK200 "X(y): x\r\n\r\n", 0, 0, 0, 0, 0, "S200 OK|E:RX_HTTP1_EHEADER|"},
    {"obs_fold", OK200 "X-A: a\r\n b\r\nContent-Length: 0\r\n\r\n", 0, 0, 0, 0, 0,
     "S200 OK|HX-A=a|E:RX_HTTP1_EOBSFOLD|"},
    {"obs_fold_first", OK200 "\tX-A: a\r\n\r\n", 0, 0, 0, 0, 0, "S200 OK|E:RX_HTTP1_EOBSFOLD|"},
    {"bare_cr_header", OK200 "X-A: a\rb\r\n\r\n", 0, 0, 0, 0, 0, "S200 OK|E:RX_HTTP1_EHEADER|"},
    {"ctl_in_value",
     OK200 "X-A: a\x01"
           "b\r\n\r\n",
     0, 0, 0, 0, 0, "S200 OK|E:RX_HTTP1_EHEADER|"},
    {"header_limit_exact",
     "HTTP/1.1 200 OK\r\nX-Pad: 0123456789012345678901234567890123456789\r\n\r\n", 1, 0, 0, 68, 0,
     "S200 OK|HX-Pad=0123456789012345678901234567890123456789|D|M ka=0|"},
    {"header_limit_over_by_one",
     "HTTP/1.1 200 OK\r\nX-Pad: 0123456789012345678901234567890123456789\r\n\r\n", 1, 0, 0, 67, 0,
     "S200 OK|HX-Pad=0123456789012345678901234567890123456789|E:RX_HTTP1_EHEADERSIZE|"},
    {"status_line_over_limit",
     "HTTP/1.1 200 0123456789012345678901234567890123456789012345678901234567890123\r\n", 0, 0, 0,
     64, 0, "E:RX_HTTP1_EHEADERSIZE|"},
    {"too_many_headers_ok", OK200 "A: 1\r\nB: 2\r\nContent-Length: 0\r\n\r\n", 0, 0, 0, 0, 3,
     "S200 OK|HA=1|HB=2|HContent-Length=0|D|M ka=1|"},
    {"too_many_headers", OK200 "A: 1\r\nB: 2\r\nC: 3\r\nContent-Length: 0\r\n\r\n", 0, 0, 0, 0, 3,
     "S200 OK|HA=1|HB=2|HC=3|E:RX_HTTP1_ETOOMANY|"},
    {"too_many_trailers", CHUNKED "0\r\nA: 1\r\nB: 2\r\n\r\n", 0, 0, 0, 0, 1,
     CHUNKED_EV "TA=1|E:RX_HTTP1_ETOOMANY|"},
    /* framing headers */
    {"cl_negative", OK200 "Content-Length: -1\r\n\r\n", 0, 0, 0, 0, 0,
     "S200 OK|E:RX_HTTP1_ECONTENTLEN|"},
    {"cl_overflow", OK200 "Content-Length: 99999999999999999999\r\n\r\n", 0, 0, 0, 0, 0,
     "S200 OK|E:RX_HTTP1_ECONTENTLEN|"},
    {"cl_int64_max_plus_one", OK200 "Content-Length: 9223372036854775808\r\n\r\n", 0, 0, 0, 0, 0,
     "S200 OK|E:RX_HTTP1_ECONTENTLEN|"},
    {"cl_junk", OK200 "Content-Length: 12x\r\n\r\n", 0, 0, 0, 0, 0,
     "S200 OK|E:RX_HTTP1_ECONTENTLEN|"},
    {"cl_empty", OK200 "Content-Length:\r\n\r\n", 0, 0, 0, 0, 0, "S200 OK|E:RX_HTTP1_ECONTENTLEN|"},
    {"cl_dup_differ", OK200 "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 0, 0, 0, 0, 0,
     "S200 OK|HContent-Length=5|E:RX_HTTP1_ECONTENTLEN|"},
    {"cl_list_differ", OK200 "Content-Length: 5, 6\r\n\r\nhello!", 0, 0, 0, 0, 0,
     "S200 OK|E:RX_HTTP1_ECONTENTLEN|"},
    {"te_and_cl", OK200 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 0, 0, 0,
     0, 0, "S200 OK|HTransfer-Encoding=chunked|HContent-Length=5|E:RX_HTTP1_ETRANSFER|"},
    {"te_chunked_not_last", OK200 "Transfer-Encoding: chunked, gzip\r\n\r\n", 0, 0, 0, 0, 0,
     "S200 OK|E:RX_HTTP1_ETRANSFER|"},
    {"te_chunked_twice", OK200 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
     0, 0, 0, 0, 0, "S200 OK|HTransfer-Encoding=chunked|E:RX_HTTP1_ETRANSFER|"},
    {"te_empty", OK200 "Transfer-Encoding: \r\n\r\n", 0, 0, 0, 0, 0,
     "S200 OK|E:RX_HTTP1_ETRANSFER|"},
    /* chunked framing */
    {"chunk_bad_size", CHUNKED "zz\r\n", 0, 0, 0, 0, 0, CHUNKED_EV "E:RX_HTTP1_ECHUNK|"},
    {"chunk_empty_size", CHUNKED "\r\n", 0, 0, 0, 0, 0, CHUNKED_EV "E:RX_HTTP1_ECHUNK|"},
    {"chunk_size_overflow", CHUNKED "10000000000000000\r\n", 0, 0, 0, 0, 0,
     CHUNKED_EV "E:RX_HTTP1_ECHUNK|"},
    {"chunk_size_2_63", CHUNKED "8000000000000000\r\n", 0, 0, 0, 0, 0,
     CHUNKED_EV "E:RX_HTTP1_ECHUNK|"},
    {"chunk_size_ws_junk", CHUNKED "5 x\r\nhello\r\n", 0, 0, 0, 0, 0,
     CHUNKED_EV "E:RX_HTTP1_ECHUNK|"},
    {"chunk_missing_crlf", CHUNKED "5\r\nhelloX0\r\n\r\n", 0, 0, 0, 0, 0,
     CHUNKED_EV "Bhello|E:RX_HTTP1_ECHUNK|"},
    {"chunk_cr_without_lf", CHUNKED "5\r\nhello\rX0\r\n\r\n", 0, 0, 0, 0, 0,
     CHUNKED_EV "Bhello|E:RX_HTTP1_ECHUNK|"},
    {"chunk_size_cr_without_lf", CHUNKED "5\rhello\r\n", 0, 0, 0, 0, 0,
     CHUNKED_EV "E:RX_HTTP1_ECHUNK|"},
    {"chunk_ext_ctl", CHUNKED "5;a\x01\r\nhello\r\n", 0, 0, 0, 0, 0,
     CHUNKED_EV "E:RX_HTTP1_ECHUNK|"},
    {"chunk_ext_too_long",
     CHUNKED "5;0123456789012345678901234567890123456789012345678901234567890123\r\n", 0, 0, 0, 64,
     0, CHUNKED_EV "E:RX_HTTP1_ECHUNK|"},
    {"trailer_obs_fold", CHUNKED "0\r\nX: a\r\n b\r\n\r\n", 0, 0, 0, 0, 0,
     CHUNKED_EV "TX=a|E:RX_HTTP1_EOBSFOLD|"},
    {"trailer_missing_colon", CHUNKED "0\r\nX a\r\n\r\n", 0, 0, 1, 0, 0,
     CHUNKED_EV "E:RX_HTTP1_EHEADER|"},
    /* EOF */
    {"eof_mid_status", "HTTP/1.1 2", 1, 0, 0, 0, 0, "E:RX_HTTP1_EEOF|"},
    {"eof_mid_headers", OK200 "Content-Le", 1, 0, 0, 0, 0, "S200 OK|E:RX_HTTP1_EEOF|"},
    {"eof_before_blank_line", OK200 "Content-Length: 5\r\n", 1, 0, 0, 0, 0,
     "S200 OK|HContent-Length=5|E:RX_HTTP1_EEOF|"},
    {"eof_mid_body", OK200 "Content-Length: 10\r\n\r\nhello", 1, 0, 0, 0, 0,
     "S200 OK|HContent-Length=10|D|Bhello|E:RX_HTTP1_EEOF|"},
    {"eof_mid_chunk", CHUNKED "a\r\nhello", 1, 0, 0, 0, 0, CHUNKED_EV "Bhello|E:RX_HTTP1_EEOF|"},
    {"eof_before_last_chunk", CHUNKED "5\r\nhello\r\n", 1, 0, 0, 0, 0,
     CHUNKED_EV "Bhello|E:RX_HTTP1_EEOF|"},
    {"eof_in_trailers", CHUNKED "0\r\nX: y\r\n", 1, 0, 0, 0, 0, CHUNKED_EV "TX=y|E:RX_HTTP1_EEOF|"},
    {"eof_after_100", "HTTP/1.1 100 Continue\r\n\r\n", 1, 0, 0, 0, 0,
     "S100 Continue|D|E:RX_HTTP1_EEOF|"},
    /* after a closing response */
    {"extra_after_close", OK200 "Connection: close\r\nContent-Length: 1\r\n\r\nx" OK200, 0, 0, 0, 0,
     0, "S200 OK|HConnection=close|HContent-Length=1|D|Bx|M ka=0|E:RX_HTTP1_EEXTRA|"},
    {"extra_after_101", "HTTP/1.1 101 Switching Protocols\r\n\r\nPRI * HTTP/2.0", 0, 0, 0, 0, 0,
     "S101 Switching Protocols|D|M ka=0|E:RX_HTTP1_EEXTRA|"},
};

/* Feeds tc->in cut at the given offsets (ascending, inside the input) and returns the log. */
static void run_split(const tcase_t *tc, const size_t *cuts, size_t ncuts, rec_t *r)
{
    rx_http1_parser_t p;
    rx_http1_limits_t lim = {tc->max_header_bytes, tc->max_headers};
    memset(r, 0, sizeof(*r));
    r->p = &p;
    r->head_mask = tc->head_mask;
    size_t n = strlen(tc->in);
    /* an exact-size heap copy so that ASan catches any read past a piece */
    uint8_t *in = malloc(n ? n : 1);
    assert_non_null(in);
    memcpy(in, tc->in, n);
    r->lo = in;
    r->hi = in + n;
    assert_int_equal(rx_http1_parser_init(&p, tc->skip_trailers ? &cbs_no_trailer : &cbs, r, &lim),
                     0);
    int rc = 0;
    size_t start = 0;
    for (size_t i = 0; i <= ncuts && rc == 0; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        size_t used = 12345;
        rc = rx_http1_parse(&p, in + start, end - start, &used);
        assert_true(used <= end - start);
        if (rc == 0)
            assert_int_equal(used, end - start);
        start = end;
    }
    if (rc == 0 && tc->eof)
        rc = rx_http1_eof(&p);
    if (rc != 0) {
        rec_flush(r);
        rec_add(r, "E:%s|", err_name(rc));
        /* failures are sticky, with a detail */
        assert_int_equal(rx_http1_parse(&p, "H", 1, NULL), rc);
        assert_int_equal(rx_http1_eof(&p), rc);
        assert_true(strlen(rx_http1_error_detail(&p)) > 0);
    } else {
        assert_string_equal(rx_http1_error_detail(&p), "");
    }
    rec_flush(r);
    rx_http1_parser_fini(&p);
    free(in);
}

static void check_log(const tcase_t *tc, const rec_t *r, const char *how)
{
    if (strcmp(r->log, tc->expect) != 0)
        fail_msg("case %s (%s):\n  expected %s\n  got      %s", tc->name, how, tc->expect, r->log);
}

static void test_table(void **state)
{
    (void)state;
    rec_t *r = malloc(sizeof(*r));
    assert_non_null(r);
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const tcase_t *tc = &cases[c];
        size_t n = strlen(tc->in);

        run_split(tc, NULL, 0, r);
        check_log(tc, r, "whole");

        size_t *cuts = malloc((n ? n : 1) * sizeof(*cuts));
        assert_non_null(cuts);
        for (size_t i = 1; i < n; i++)
            cuts[i - 1] = i;
        run_split(tc, cuts, n > 0 ? n - 1 : 0, r);
        check_log(tc, r, "byte by byte");
        free(cuts);

        for (size_t k = 0; k <= n; k++) {
            char how[48];
            run_split(tc, &k, 1, r);
            snprintf(how, sizeof(how), "split at %zu", k);
            check_log(tc, r, how);
        }
    }
    free(r);
}

/* ---- parser tests beyond the table ---------------------------------------------------------- */

static void test_default_header_limit(void **state)
{
    (void)state;
    const char *head = "HTTP/1.1 200 OK\r\nX-Pad: ";
    const char *tail = "\r\nContent-Length: 0\r\n\r\n";
    size_t fixed = strlen(head) + strlen(tail);
    size_t total = RX_HTTP1_DEFAULT_MAX_HEADER_BYTES;
    char *buf = malloc(total + 2);
    assert_non_null(buf);
    for (int over = 0; over <= 1; over++) {
        size_t pad = total - fixed + (size_t)over;
        size_t n = 0;
        memcpy(buf + n, head, strlen(head));
        n += strlen(head);
        memset(buf + n, 'a', pad);
        n += pad;
        memcpy(buf + n, tail, strlen(tail));
        n += strlen(tail);
        assert_int_equal(n, total + (size_t)over);
        rec_t *r = calloc(1, sizeof(*r));
        assert_non_null(r);
        rx_http1_parser_t p;
        r->p = &p;
        assert_int_equal(rx_http1_parser_init(&p, &cbs_quiet, r, NULL), 0);
        size_t used;
        int rc = rx_http1_parse(&p, buf, n, &used);
        if (over) {
            assert_int_equal(rc, RX_HTTP1_EHEADERSIZE);
            assert_string_equal(rx_http1_error_detail(&p), "header block larger than 65536 bytes");
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(used, n);
            assert_string_equal(r->log, "D|M ka=1|");
        }
        rx_http1_parser_fini(&p);
        free(r);
    }
    free(buf);
}

static void test_default_max_headers(void **state)
{
    (void)state;
    char *buf = malloc(4096);
    assert_non_null(buf);
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = (size_t)sprintf(buf, "HTTP/1.1 204 No Content\r\n");
        for (unsigned i = 0; i < RX_HTTP1_DEFAULT_MAX_HEADERS + (unsigned)extra; i++)
            n += (size_t)sprintf(buf + n, "H%u: v\r\n", i);
        n += (size_t)sprintf(buf + n, "\r\n");
        rx_http1_parser_t p;
        rec_t *r = calloc(1, sizeof(*r));
        assert_non_null(r);
        r->p = &p;
        assert_int_equal(rx_http1_parser_init(&p, &cbs, r, NULL), 0);
        int rc = rx_http1_parse(&p, buf, n, NULL);
        assert_int_equal(rc, extra ? RX_HTTP1_ETOOMANY : 0);
        rx_http1_parser_fini(&p);
        free(r);
    }
    free(buf);
}

static void test_pause_and_resume(void **state)
{
    (void)state;
    const char *in = OK200 "Content-Length: 1\r\n\r\na" OK200 "Content-Length: 1\r\n\r\nb";
    size_t n = strlen(in), first = n / 2;
    rec_t *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    rx_http1_parser_t p;
    r->p = &p;
    r->pause_on_done = 1;
    assert_int_equal(rx_http1_parser_init(&p, &cbs, r, NULL), 0);
    size_t used;
    assert_int_equal(rx_http1_parse(&p, in, n, &used), 0);
    assert_int_equal(used, first);
    rec_flush(r);
    assert_string_equal(r->log, "S200 OK|HContent-Length=1|D|Ba|M ka=1|");
    assert_int_equal(rx_http1_parse(&p, in + used, n - used, &used), 0);
    assert_int_equal(used, n - first);
    rec_flush(r);
    assert_string_equal(r->log, "S200 OK|HContent-Length=1|D|Ba|M ka=1|"
                                "S200 OK|HContent-Length=1|D|Bb|M ka=1|");
    rx_http1_parser_fini(&p);
    free(r);
}

static void test_callback_abort_and_reset(void **state)
{
    (void)state;
    const char *in = OK200 "X-A: 1\r\nContent-Length: 0\r\n\r\n";
    rec_t *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    rx_http1_parser_t p;
    r->p = &p;
    r->abort_on_header = -77;
    assert_int_equal(rx_http1_parser_init(&p, &cbs, r, NULL), 0);
    size_t used;
    assert_int_equal(rx_http1_parse(&p, in, strlen(in), &used), -77);
    assert_int_equal(used, strlen(OK200));
    assert_int_equal(rx_http1_parse(&p, in, strlen(in), &used), -77);
    assert_int_equal(used, 0);
    assert_string_equal(rx_http1_error_detail(&p), "aborted by a callback (-77)");

    rx_http1_reset(&p);
    assert_string_equal(rx_http1_error_detail(&p), "");
    r->abort_on_header = 0;
    r->len = 0;
    assert_int_equal(rx_http1_parse(&p, in, strlen(in), &used), 0);
    assert_int_equal(used, strlen(in));
    assert_string_equal(r->log, "S200 OK|HX-A=1|HContent-Length=0|D|M ka=1|");
    rx_http1_parser_fini(&p);
    free(r);
}

static void test_accessors(void **state)
{
    (void)state;
    rx_http1_parser_t p;
    rec_t *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->p = &p;
    assert_int_equal(rx_http1_parser_init(&p, &cbs, r, NULL), 0);
    assert_int_equal(rx_http1_status(&p), 0);
    const char *a = "HTTP/1.0 206 Partial Content\r\nContent-Length: 3\r\n\r\nab";
    assert_int_equal(rx_http1_parse(&p, a, strlen(a), NULL), 0);
    assert_int_equal(rx_http1_status(&p), 206);
    assert_int_equal(rx_http1_version_minor(&p), 0);
    assert_int_equal(rx_http1_content_length(&p), 3);
    assert_int_equal(rx_http1_chunked(&p), 0);
    assert_int_equal(rx_http1_keep_alive(&p), 0);
    rx_http1_reset(&p);
    const char *b = CHUNKED;
    assert_int_equal(rx_http1_parse(&p, b, strlen(b), NULL), 0);
    assert_int_equal(rx_http1_chunked(&p), 1);
    assert_int_equal(rx_http1_content_length(&p), -1);
    assert_int_equal(rx_http1_version_minor(&p), 1);
    assert_int_equal(rx_http1_keep_alive(&p), 1);
    rx_http1_parser_fini(&p);
    rx_http1_parser_fini(&p); /* idempotent */
    assert_int_equal(rx_http1_parser_init(NULL, &cbs, NULL, NULL), -EINVAL);
    assert_int_equal(rx_http1_parser_init(&p, NULL, NULL, NULL), -EINVAL);
    free(r);
}

static void expect_detail(const char *in, int code, const char *detail)
{
    rx_http1_parser_t p;
    static const rx_http1_callbacks_t none = {0};
    assert_int_equal(rx_http1_parser_init(&p, &none, NULL, NULL), 0);
    assert_int_equal(rx_http1_parse(&p, in, strlen(in), NULL), code);
    assert_string_equal(rx_http1_error_detail(&p), detail);
    rx_http1_parser_fini(&p);
}

static void test_error_details(void **state)
{
    (void)state;
    expect_detail(OK200 "Content-Length: 12x\r\n\r\n", RX_HTTP1_ECONTENTLEN,
                  "Content-Length '12x' is not a number");
    expect_detail(OK200 "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", RX_HTTP1_ECONTENTLEN,
                  "Content-Length values differ (5 and 6)");
    expect_detail(OK200 "Content-Length: 99999999999999999999\r\n\r\n", RX_HTTP1_ECONTENTLEN,
                  "Content-Length '99999999999999999999' is too large");
    expect_detail("SSH-2.0-OpenSSH_9.2\r\n", RX_HTTP1_ESTATUS,
                  "status line does not start with HTTP/ ('S')");
    expect_detail("HTTP/2 200\r\n", RX_HTTP1_EVERSION,
                  "malformed HTTP version in status line 'HTTP/2 200'");
    expect_detail(OK200 "Bad Header\r\n", RX_HTTP1_EHEADER,
                  "header line 'Bad Header' has no colon");
    expect_detail(CHUNKED "g\r\n", RX_HTTP1_ECHUNK, "chunk size starts with 0x67, not a hex digit");
    expect_detail(CHUNKED "5\r\nhello0\r\n\r\n", RX_HTTP1_ECHUNK,
                  "chunk data not followed by CRLF (0x30)");
    expect_detail(OK200 "X: \x7f\r\n", RX_HTTP1_EHEADER,
                  "control character 0x7f in the value of header 'X'");
    /* long and binary values are quoted safely and bounded */
    expect_detail(OK200 "Content-Length: 1234567890123456789012345678901234567890\x80\r\n\r\n",
                  RX_HTTP1_ECONTENTLEN,
                  "Content-Length '123456789012345678901234...' is not a number");

    rx_http1_parser_t p;
    static const rx_http1_callbacks_t none = {0};
    assert_int_equal(rx_http1_parser_init(&p, &none, NULL, NULL), 0);
    const char *in = OK200 "Content-Length: 10\r\n\r\nabc";
    assert_int_equal(rx_http1_parse(&p, in, strlen(in), NULL), 0);
    assert_int_equal(rx_http1_eof(&p), RX_HTTP1_EEOF);
    assert_string_equal(rx_http1_error_detail(&p), "connection closed after 3 of 10 body bytes");
    rx_http1_parser_fini(&p);
}

static void test_errors_registered(void **state)
{
    (void)state;
    rx_http1_err_register();
    rx_http1_err_register(); /* idempotent */
    assert_string_equal(rx_strerror(RX_HTTP1_ECHUNK), "malformed chunked body");
    assert_string_equal(rx_http1_strerror(RX_HTTP1_EEOF),
                        "connection closed before the HTTP response was complete");
    assert_null(rx_http1_strerror(-1));
    assert_null(rx_http1_strerror(RX_HTTP1_ERR_BASE));
    /* the range lies inside -10101..-10199, clear of the reactor's own */
    int codes[] = {
#define CODE(name, off, msg) name,
        RX_HTTP1_ERR_LIST(CODE)
#undef CODE
    };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        assert_true(codes[i] <= -10101 && codes[i] >= -10199);
        assert_non_null(rx_http1_strerror(codes[i]));
        assert_string_equal(rx_strerror(codes[i]), rx_http1_strerror(codes[i]));
    }
}

/* ---- request writer ------------------------------------------------------------------------- */

#define HDR(n, v)                                                                                  \
    {                                                                                              \
        (n), sizeof(n) - 1, (v), sizeof(v) - 1                                                     \
    }

static void test_request_head_exact(void **state)
{
    (void)state;
    char buf[512];
    const rx_http1_header_t h[] = {HDR("Host", "bucket.s3.example:9000"),
                                   HDR("x-amz-date", "20240101T000000Z"),
                                   HDR("Expect", "100-continue"), HDR("X-Empty", "")};
    int n = rx_http1_request_head(buf, sizeof(buf), "PUT", "/bucket/obj%20a?x=1", h, 4, 1048576);
    const char *want = "PUT /bucket/obj%20a?x=1 HTTP/1.1\r\n"
                       "Host: bucket.s3.example:9000\r\n"
                       "x-amz-date: 20240101T000000Z\r\n"
                       "Expect: 100-continue\r\n"
                       "X-Empty: \r\n"
                       "Content-Length: 1048576\r\n"
                       "\r\n";
    assert_int_equal(n, (int)strlen(want));
    assert_memory_equal(buf, want, strlen(want));

    n = rx_http1_request_head(buf, sizeof(buf), "GET", "/", h, 1, -1);
    want = "GET / HTTP/1.1\r\nHost: bucket.s3.example:9000\r\n\r\n";
    assert_int_equal(n, (int)strlen(want));
    assert_memory_equal(buf, want, strlen(want));

    n = rx_http1_request_head(buf, sizeof(buf), "DELETE", "/b/k", h, 1, 0);
    want = "DELETE /b/k HTTP/1.1\r\nHost: bucket.s3.example:9000\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(n, (int)strlen(want));
    assert_memory_equal(buf, want, strlen(want));

    /* a caller's own Content-Length is fine when the writer adds none */
    const rx_http1_header_t cl[] = {HDR("Host", "h"), HDR("content-length", "7")};
    n = rx_http1_request_head(buf, sizeof(buf), "POST", "/", cl, 2, -1);
    want = "POST / HTTP/1.1\r\nHost: h\r\ncontent-length: 7\r\n\r\n";
    assert_int_equal(n, (int)strlen(want));
    assert_memory_equal(buf, want, strlen(want));
    assert_int_equal(rx_http1_request_head(buf, sizeof(buf), "POST", "/", cl, 2, 7), -EINVAL);
}

static void test_request_head_nospace(void **state)
{
    (void)state;
    char buf[256];
    const rx_http1_header_t h[] = {HDR("Host", "h.example")};
    int full = rx_http1_request_head(buf, sizeof(buf), "PUT", "/k", h, 1, 123);
    assert_true(full > 0);
    char ref[256];
    memcpy(ref, buf, (size_t)full);
    for (int cap = 0; cap < full; cap++) {
        char *exact = malloc((size_t)cap + 1); /* ASan catches writes past cap */
        assert_non_null(exact);
        assert_int_equal(rx_http1_request_head(exact, (size_t)cap, "PUT", "/k", h, 1, 123),
                         -ENOSPC);
        free(exact);
    }
    char *exact = malloc((size_t)full);
    assert_non_null(exact);
    assert_int_equal(rx_http1_request_head(exact, (size_t)full, "PUT", "/k", h, 1, 123), full);
    assert_memory_equal(exact, ref, (size_t)full);
    free(exact);
    assert_int_equal(rx_http1_request_head(NULL, 0, "GET", "/", NULL, 0, -1), -ENOSPC);
}

static void test_request_head_injection(void **state)
{
    (void)state;
    char buf[256];
    const rx_http1_header_t ok = HDR("Host", "h");
    const rx_http1_header_t bad[] = {
        HDR("X", "a\r\nX-Injected: 1"),
        HDR("X", "a\nb"),
        HDR("X", "a\rb"),
        {"X", 1, "a\0b", 3},
        HDR("X", "a\x01"),
        HDR("X-A\r\nX-B", "v"),
        HDR("X A", "v"),
        HDR("X:", "v"),
        HDR("", "v"),
        {"X\0", 2, "v", 1},
        {NULL, 0, "v", 1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rx_http1_header_t h[2] = {ok, bad[i]};
        assert_int_equal(rx_http1_request_head(buf, sizeof(buf), "GET", "/", h, 2, -1), -EINVAL);
    }
    const char *bad_targets[] = {"", "/a b", "/a\r\nHost: evil", "/a\n", "/\x7f", "/\t"};
    for (size_t i = 0; i < sizeof(bad_targets) / sizeof(bad_targets[0]); i++)
        assert_int_equal(rx_http1_request_head(buf, sizeof(buf), "GET", bad_targets[i], &ok, 1, -1),
                         -EINVAL);
    const char *bad_methods[] = {"", "GET /", "GE\rT", "G(T"};
    for (size_t i = 0; i < sizeof(bad_methods) / sizeof(bad_methods[0]); i++)
        assert_int_equal(rx_http1_request_head(buf, sizeof(buf), bad_methods[i], "/", &ok, 1, -1),
                         -EINVAL);
    assert_int_equal(rx_http1_request_head(buf, sizeof(buf), NULL, "/", &ok, 1, -1), -EINVAL);
    assert_int_equal(rx_http1_request_head(buf, sizeof(buf), "GET", NULL, &ok, 1, -1), -EINVAL);
    assert_int_equal(rx_http1_request_head(buf, sizeof(buf), "GET", "/", NULL, 1, -1), -EINVAL);
    /* HT inside a value is legal */
    const rx_http1_header_t tab[] = {HDR("X", "a\tb")};
    assert_true(rx_http1_request_head(buf, sizeof(buf), "GET", "/", tab, 1, -1) > 0);
}

static void test_request_roundtrip_through_own_parser_rules(void **state)
{
    (void)state;
    /* what the writer emits has exactly nheaders + 2 line ends: no header can smuggle a line */
    char buf[256];
    const rx_http1_header_t h[] = {HDR("Host", "h"), HDR("A", "1"), HDR("B", "two words")};
    int n = rx_http1_request_head(buf, sizeof(buf), "GET", "/x", h, 3, 5);
    assert_true(n > 0);
    int lines = 0;
    for (int i = 0; i < n; i++)
        lines += buf[i] == '\n';
    assert_int_equal(lines, 3 + 2 + 1);
    assert_memory_equal(buf + n - 4, "\r\n\r\n", 4);
}

static void test_request_iov(void **state)
{
    (void)state;
    char head[] = "PUT / HTTP/1.1\r\n\r\n";
    char b1[] = "abc", b2[] = "defg";
    struct iovec body[3] = {{b1, 3}, {NULL, 0}, {b2, 4}};
    struct iovec iov[4];
    int n = rx_http1_request_iov(iov, 4, head, strlen(head), body, 3);
    assert_int_equal(n, 3);
    assert_ptr_equal(iov[0].iov_base, head);
    assert_int_equal(iov[0].iov_len, strlen(head));
    assert_ptr_equal(iov[1].iov_base, b1);
    assert_int_equal(iov[1].iov_len, 3);
    assert_ptr_equal(iov[2].iov_base, b2);
    assert_int_equal(iov[2].iov_len, 4);
    assert_int_equal(rx_http1_request_iov(iov, 3, head, strlen(head), body, 3), 3);
    assert_int_equal(rx_http1_request_iov(iov, 2, head, strlen(head), body, 3), -ENOSPC);
    assert_int_equal(rx_http1_request_iov(iov, 1, head, strlen(head), NULL, 0), 1);
    assert_int_equal(rx_http1_request_iov(iov, 0, head, strlen(head), NULL, 0), -ENOSPC);
    assert_int_equal(rx_http1_request_iov(iov, 4, NULL, 5, NULL, 0), -EINVAL);
    assert_int_equal(rx_http1_request_iov(iov, 4, head, 3, NULL, 2), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_default_header_limit),
        cmocka_unit_test(test_default_max_headers),
        cmocka_unit_test(test_pause_and_resume),
        cmocka_unit_test(test_callback_abort_and_reset),
        cmocka_unit_test(test_accessors),
        cmocka_unit_test(test_error_details),
        cmocka_unit_test(test_errors_registered),
        cmocka_unit_test(test_request_head_exact),
        cmocka_unit_test(test_request_head_nospace),
        cmocka_unit_test(test_request_head_injection),
        cmocka_unit_test(test_request_roundtrip_through_own_parser_rules),
        cmocka_unit_test(test_request_iov),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
