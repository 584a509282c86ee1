/* Unit tests for the gRPC wire codec (rpc/grpc.h).
 *
 * Deframer streams are built with rpc_frame_header() and fed whole, split in two at every offset
 * and one byte at a time; each run must deliver exactly the expected messages, and each
 * message's pointer must lie in the caller's input exactly when its body lay inside one slice
 * (zero-copy), and outside it otherwise (assembled). */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rpc/err.h"
#include "rpc/grpc.h"
#include "rx/err.h"

/* ---- message recorder ----------------------------------------------------------------------- */

#define MAX_MSGS 16

typedef struct got {
    const uint8_t *ptr;
    size_t len;
    int compressed;
    uint8_t *copy;
} got_t;

typedef struct rec {
    got_t m[MAX_MSGS];
    size_t n;
    size_t abort_at; /* return abort_code for message number abort_at (when abort_code != 0) */
    int abort_code;
} rec_t;

static int on_message(void *ud, const uint8_t *msg, size_t len, int compressed)
{
    rec_t *r = ud;
    assert_non_null(msg);
    assert_true(compressed == 0 || compressed == 1);
    assert_true(r->n < MAX_MSGS);
    got_t *g = &r->m[r->n];
    g->ptr = msg;
    g->len = len;
    g->compressed = compressed;
    g->copy = malloc(len ? len : 1);
    assert_non_null(g->copy);
    if (len)
        memcpy(g->copy, msg, len);
    if (r->abort_code != 0 && r->n == r->abort_at) {
        r->n++;
        return r->abort_code;
    }
    r->n++;
    return 0;
}

static void rec_clear(rec_t *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->m[i].copy);
    memset(r, 0, sizeof(*r));
}

/* ---- stream builder ------------------------------------------------------------------------- */

typedef struct want {
    const uint8_t *data;
    size_t len;
    int compressed;
} want_t;

typedef struct stream {
    uint8_t *buf; /* exact size: reads past the end show up under valgrind/ASan */
    size_t len;
    size_t body_off[MAX_MSGS]; /* offset of each message body in buf */
} stream_t;

static void stream_build(stream_t *s, const want_t *w, size_t nw)
{
    size_t total = 0;
    for (size_t i = 0; i < nw; i++)
        total += RPC_FRAME_HEADER_LEN + w[i].len;
    s->buf = malloc(total ? total : 1);
    assert_non_null(s->buf);
    s->len = total;
    size_t o = 0;
    for (size_t i = 0; i < nw; i++) {
        assert_int_equal(rpc_frame_header(s->buf + o, w[i].len, w[i].compressed), 0);
        o += RPC_FRAME_HEADER_LEN;
        s->body_off[i] = o;
        if (w[i].len)
            memcpy(s->buf + o, w[i].data, w[i].len);
        o += w[i].len;
    }
}

/* Feeds s in slices ending at cuts[0..ncuts) and at s->len, then finishes; returns the first
 * non-zero result (or finish's). */
static int feed_cuts(rpc_deframer_t *d, const stream_t *s, const size_t *cuts, size_t ncuts)
{
    size_t start = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : s->len;
        int rc = rpc_deframer_feed(d, s->buf + start, end - start);
        if (rc != 0)
            return rc;
        start = end;
    }
    return rpc_deframer_finish(d);
}

/* The slice [start, end) of the cut list that holds offset off (last one that starts <= off). */
static void slice_of(const size_t *cuts, size_t ncuts, size_t total, size_t off, size_t *start,
                     size_t *end)
{
    size_t s = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t e = i < ncuts ? cuts[i] : total;
        if (off >= s && (off < e || i == ncuts)) {
            *start = s;
            *end = e;
            return;
        }
        s = e;
    }
    *start = s;
    *end = total;
}

static void check_msgs(const rec_t *r, const want_t *w, size_t nw, const stream_t *s,
                       const size_t *cuts, size_t ncuts)
{
    assert_int_equal(r->n, nw);
    for (size_t i = 0; i < nw; i++) {
        assert_int_equal(r->m[i].len, w[i].len);
        assert_int_equal(r->m[i].compressed, w[i].compressed ? 1 : 0);
        if (w[i].len)
            assert_memory_equal(r->m[i].copy, w[i].data, w[i].len);
        size_t b = s->body_off[i];
        size_t ss, se;
        slice_of(cuts, ncuts, s->len, b, &ss, &se);
        /* a zero-length body "lies" at the end of the slice that held its prefix */
        if (w[i].len == 0 && b > 0)
            slice_of(cuts, ncuts, s->len, b - 1, &ss, &se);
        int whole = b >= ss && b + w[i].len <= se;
        if (whole) {
            assert_ptr_equal(r->m[i].ptr, s->buf + b);
        } else {
            int inside = r->m[i].ptr >= s->buf && r->m[i].ptr < s->buf + s->len;
            assert_false(inside);
        }
    }
}

static uint8_t *pattern(size_t n, uint32_t seed)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
    return p;
}

/* ---- framing -------------------------------------------------------------------------------- */

static void test_frame_header(void **state)
{
    uint8_t h[5];
    assert_int_equal(rpc_frame_header(h, 0, 0), 0);
    assert_memory_equal(h, "\0\0\0\0\0", 5);
    assert_int_equal(rpc_frame_header(h, 1, 1), 0);
    assert_memory_equal(h, "\1\0\0\0\1", 5);
    assert_int_equal(rpc_frame_header(h, 0x01020304u, 7), 0);
    assert_memory_equal(h, "\1\1\2\3\4", 5);
    assert_int_equal(rpc_frame_header(h, UINT32_MAX, 0), 0);
    assert_memory_equal(h, "\0\377\377\377\377", 5);
#if SIZE_MAX > UINT32_MAX
    memset(h, 0xaa, sizeof(h));
    assert_int_equal(rpc_frame_header(h, (size_t)UINT32_MAX + 1, 0), -EMSGSIZE);
    assert_memory_equal(h, "\252\252\252\252\252", 5);
#endif
}

static void test_init_args(void **state)
{
    rpc_deframer_t d;
    rec_t r = {0};
    assert_int_equal(rpc_deframer_init(&d, 0, 0, NULL, &r), -EINVAL);
    assert_int_equal(rpc_deframer_init(NULL, 0, 0, on_message, &r), -EINVAL);
    assert_int_equal(rpc_deframer_init(&d, 0, 0x2, on_message, &r), -EINVAL);
    assert_int_equal(rpc_deframer_init(&d, 0, 0, on_message, &r), 0);
    assert_int_equal(d.max_message, RPC_DEFAULT_MAX_MESSAGE);
    assert_int_equal(RPC_DEFAULT_MAX_MESSAGE, 4 * 1024 * 1024);
    assert_int_equal(rpc_deframer_feed(&d, NULL, 0), 0);
    assert_int_equal(rpc_deframer_partial(&d), 0);
    assert_int_equal(rpc_deframer_finish(&d), 0);
    assert_string_equal(rpc_deframer_error_detail(&d), "");
    assert_int_equal(r.n, 0);
    rpc_deframer_fini(&d);
    rpc_deframer_fini(&d); /* twice is fine */
    rpc_deframer_fini(NULL);
}

/* One message of n bytes, fed whole (zero-copy) and in three slices (assembled). */
static void roundtrip_one(size_t n, size_t max)
{
    uint8_t *body = pattern(n, (uint32_t)n);
    want_t w = {body, n, 0};
    stream_t s;
    stream_build(&s, &w, 1);
    rpc_deframer_t d;
    rec_t r = {0};

    assert_int_equal(rpc_deframer_init(&d, max, 0, on_message, &r), 0);
    assert_int_equal(feed_cuts(&d, &s, NULL, 0), 0);
    check_msgs(&r, &w, 1, &s, NULL, 0);
    assert_ptr_equal(r.m[0].ptr, s.buf + 5);
    rec_clear(&r);

    if (n >= 2) {
        size_t cuts[2] = {3, 5 + n / 2};
        rpc_deframer_reset(&d);
        assert_int_equal(feed_cuts(&d, &s, cuts, 2), 0);
        check_msgs(&r, &w, 1, &s, cuts, 2);
        assert_false(r.m[0].ptr >= s.buf && r.m[0].ptr < s.buf + s.len);
        rec_clear(&r);
    }
    rpc_deframer_fini(&d);
    free(s.buf);
    free(body);
}

static void test_roundtrip_sizes(void **state)
{
    roundtrip_one(0, 0);
    roundtrip_one(1, 0);
    roundtrip_one(2, 0);
    roundtrip_one(1000, 1000);                 /* exactly a small maximum */
    roundtrip_one(70000, 0);                   /* assembled buffer above the keep limit */
    roundtrip_one(RPC_DEFAULT_MAX_MESSAGE, 0); /* exactly the default maximum */
    roundtrip_one(RPC_DEFAULT_MAX_MESSAGE + 1, RPC_DEFAULT_MAX_MESSAGE + 1);
}

static void test_too_big(void **state)
{
    /* 5 MiB against the default 4 MiB maximum: refused at the prefix, nothing delivered */
    size_t n = 5u * 1024u * 1024u;
    uint8_t *body = pattern(n, 5);
    want_t w = {body, n, 0};
    stream_t s;
    stream_build(&s, &w, 1);
    rpc_deframer_t d;
    rec_t r = {0};
    assert_int_equal(rpc_deframer_init(&d, 0, 0, on_message, &r), 0);
    assert_int_equal(rpc_deframer_feed(&d, s.buf, s.len), RPC_ETOOBIG);
    assert_int_equal(r.n, 0);
    assert_non_null(strstr(rpc_deframer_error_detail(&d), "5242880"));
    assert_non_null(strstr(rpc_deframer_error_detail(&d), "4194304"));
    assert_null(d.buf); /* nothing was buffered */
    rpc_deframer_fini(&d);
    free(s.buf);
    free(body);

    /* max + 1 with a small maximum, fed one byte at a time: fails on the last prefix byte */
    uint8_t pre[5];
    assert_int_equal(rpc_frame_header(pre, 11, 0), 0);
    assert_int_equal(rpc_deframer_init(&d, 10, 0, on_message, &r), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(rpc_deframer_feed(&d, pre + i, 1), 0);
    assert_int_equal(rpc_deframer_feed(&d, pre + 4, 1), RPC_ETOOBIG);
    assert_string_equal(rpc_deframer_error_detail(&d),
                        "message of 11 bytes exceeds the maximum of 10 bytes");
    rpc_deframer_fini(&d);

    /* the largest wire length against the default */
    memcpy(pre, "\0\377\377\377\377", 5);
    assert_int_equal(rpc_deframer_init(&d, 0, 0, on_message, &r), 0);
    assert_int_equal(rpc_deframer_feed(&d, pre, 5), RPC_ETOOBIG);
    assert_non_null(strstr(rpc_deframer_error_detail(&d), "4294967295"));
    rpc_deframer_fini(&d);
    assert_int_equal(r.n, 0);
}

static void test_several_in_one_slice(void **state)
{
    const want_t w[5] = {
        {(const uint8_t *)"a", 1, 0},    {(const uint8_t *)"", 0, 0},
        {(const uint8_t *)"bc", 2, 0},   {(const uint8_t *)"", 0, 0},
        {(const uint8_t *)"defg", 4, 0},
    };
    stream_t s;
    stream_build(&s, w, 5);
    rpc_deframer_t d;
    rec_t r = {0};
    assert_int_equal(rpc_deframer_init(&d, 0, 0, on_message, &r), 0);
    assert_int_equal(rpc_deframer_feed(&d, s.buf, s.len), 0);
    assert_int_equal(rpc_deframer_finish(&d), 0);
    check_msgs(&r, w, 5, &s, NULL, 0);
    for (size_t i = 0; i < 5; i++)
        assert_ptr_equal(r.m[i].ptr, s.buf + s.body_off[i]); /* all zero-copy */
    rec_clear(&r);
    rpc_deframer_fini(&d);
    free(s.buf);
}

static void test_every_split(void **state)
{
    uint8_t *big = pattern(300, 42);
    const want_t w[3] = {
        {(const uint8_t *)"", 0, 0},
        {(const uint8_t *)"hello gRPC", 10, 1},
        {big, 300, 0},
    };
    stream_t s;
    stream_build(&s, w, 3);
    assert_int_equal(s.len, 5 + 15 + 305);
    rpc_deframer_t d;
    rec_t r = {0};
    assert_int_equal(rpc_deframer_init(&d, 300, RPC_DEFRAMER_ACCEPT_COMPRESSED, on_message, &r), 0);

    for (size_t k = 0; k <= s.len; k++) {
        size_t cut = k;
        rpc_deframer_reset(&d);
        assert_int_equal(feed_cuts(&d, &s, &cut, 1), 0);
        check_msgs(&r, w, 3, &s, &cut, 1);
        rec_clear(&r);
    }

    size_t *every = malloc(s.len * sizeof(*every));
    assert_non_null(every);
    for (size_t i = 0; i + 1 < s.len; i++)
        every[i] = i + 1;
    rpc_deframer_reset(&d);
    assert_int_equal(feed_cuts(&d, &s, every, s.len - 1), 0);
    check_msgs(&r, w, 3, &s, every, s.len - 1);
    assert_ptr_equal(r.m[0].ptr, s.buf + 5); /* zero-length: in place even byte by byte */
    assert_false(r.m[2].ptr >= s.buf && r.m[2].ptr < s.buf + s.len);
    rec_clear(&r);

    /* three slices at a spread of points, including inside prefixes and bodies */
    for (size_t a = 0; a <= s.len; a += 7) {
        for (size_t b = a; b <= s.len; b += 13) {
            size_t cuts[2] = {a, b};
            rpc_deframer_reset(&d);
            assert_int_equal(feed_cuts(&d, &s, cuts, 2), 0);
            check_msgs(&r, w, 3, &s, cuts, 2);
            rec_clear(&r);
        }
    }
    free(every);
    rpc_deframer_fini(&d);
    free(s.buf);
    free(big);
}

static void test_zero_copy(void **state)
{
    const want_t w[2] = {{(const uint8_t *)"first", 5, 0}, {(const uint8_t *)"second!", 7, 0}};
    stream_t s;
    stream_build(&s, w, 2);
    rpc_deframer_t d;
    rec_t r = {0};
    assert_int_equal(rpc_deframer_init(&d, 0, 0, on_message, &r), 0);

    /* cut inside the second body: the first is in place, the second assembled */
    size_t cut = s.body_off[1] + 3;
    assert_int_equal(rpc_deframer_feed(&d, s.buf, cut), 0);
    assert_int_equal(r.n, 1);
    assert_ptr_equal(r.m[0].ptr, s.buf + 5);
    assert_int_equal(rpc_deframer_partial(&d), 1);
    assert_int_equal(rpc_deframer_feed(&d, s.buf + cut, s.len - cut), 0);
    assert_int_equal(rpc_deframer_partial(&d), 0);
    assert_int_equal(r.n, 2);
    assert_ptr_equal(r.m[1].ptr, d.buf); /* small buffers are kept */
    assert_memory_equal(r.m[1].copy, "second!", 7);
    rec_clear(&r);

    /* cut right after the second prefix: the body alone in the next slice is in place */
    rpc_deframer_reset(&d);
    cut = s.body_off[1];
    assert_int_equal(rpc_deframer_feed(&d, s.buf, cut), 0);
    assert_int_equal(rpc_deframer_partial(&d), 1);
    assert_int_equal(rpc_deframer_feed(&d, s.buf + cut, s.len - cut), 0);
    assert_ptr_equal(r.m[1].ptr, s.buf + cut);
    rec_clear(&r);
    rpc_deframer_fini(&d);
    assert_null(d.buf);
    free(s.buf);
}

static void test_buffer_released(void **state)
{
    size_t n = 100000;
    uint8_t *body = pattern(n, 9);
    want_t w = {body, n, 0};
    stream_t s;
    stream_build(&s, &w, 1);
    rpc_deframer_t d;
    rec_t r = {0};
    assert_int_equal(rpc_deframer_init(&d, 0, 0, on_message, &r), 0);
    /* first half: the buffer holds no more than what arrived (plus growth) */
    assert_int_equal(rpc_deframer_feed(&d, s.buf, 5 + 1000), 0);
    assert_non_null(d.buf);
    assert_true(d.buf_cap >= 1000 && d.buf_cap < 4096);
    assert_int_equal(rpc_deframer_feed(&d, s.buf + 1005, s.len - 1005), 0);
    assert_int_equal(r.n, 1);
    assert_memory_equal(r.m[0].copy, body, n);
    assert_null(d.buf); /* above 64 KiB: released after delivery */
    rec_clear(&r);
    rpc_deframer_fini(&d);
    free(s.buf);
    free(body);
}

static void expect_fail(const uint8_t *in, size_t n, unsigned flags, size_t max, int code,
                        size_t delivered, const char *detail_part)
{
    /* fed whole and byte by byte: same code, same messages delivered before it */
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        rpc_deframer_t d;
        rec_t r = {0};
        assert_int_equal(rpc_deframer_init(&d, max, flags, on_message, &r), 0);
        int rc = 0;
        if (bytewise) {
            for (size_t i = 0; i < n && rc == 0; i++)
                rc = rpc_deframer_feed(&d, in + i, 1);
        } else {
            rc = rpc_deframer_feed(&d, in, n);
        }
        if (rc == 0)
            rc = rpc_deframer_finish(&d);
        assert_int_equal(rc, code);
        assert_int_equal(r.n, delivered);
        assert_non_null(strstr(rpc_deframer_error_detail(&d), detail_part));
        /* sticky */
        assert_int_equal(rpc_deframer_feed(&d, "\0\0\0\0\0", 5), code);
        assert_int_equal(rpc_deframer_finish(&d), code);
        assert_int_equal(r.n, delivered);
        /* reset clears it */
        rpc_deframer_reset(&d);
        assert_string_equal(rpc_deframer_error_detail(&d), "");
        assert_int_equal(rpc_deframer_feed(&d, "\0\0\0\0\1x", 6), 0);
        assert_int_equal(rpc_deframer_finish(&d), 0);
        assert_int_equal(r.n, delivered + 1);
        assert_memory_equal(r.m[delivered].copy, "x", 1);
        rec_clear(&r);
        rpc_deframer_fini(&d);
    }
}

static void test_errors(void **state)
{
    /* flag byte other than 0/1, at once and after a good message */
    expect_fail((const uint8_t *)"\2\0\0\0\0", 5, 0, 0, RPC_EFRAME, 0, "0x02");
    expect_fail((const uint8_t *)"\200", 1, RPC_DEFRAMER_ACCEPT_COMPRESSED, 0, RPC_EFRAME, 0,
                "0x80");
    expect_fail((const uint8_t *)"\0\0\0\0\1a\377\0\0\0\0", 11, 0, 0, RPC_EFRAME, 1, "0xff");
    /* compressed without negotiation */
    expect_fail((const uint8_t *)"\1\0\0\0\1z", 6, 0, 0, RPC_ECOMPRESSED, 0, "compress");
    expect_fail((const uint8_t *)"\0\0\0\0\0\1\0\0\0\0", 10, 0, 0, RPC_ECOMPRESSED, 1, "compress");
    /* too big */
    expect_fail((const uint8_t *)"\0\0\0\0\5abcde", 10, 0, 4, RPC_ETOOBIG, 0, "5 bytes");
    /* truncated: inside the prefix, inside the body */
    expect_fail((const uint8_t *)"\0", 1, 0, 0, RPC_ETRUNCATED, 0, "1 of 5");
    expect_fail((const uint8_t *)"\0\0\0\0", 4, 0, 0, RPC_ETRUNCATED, 0, "4 of 5");
    expect_fail((const uint8_t *)"\0\0\0\0\3", 5, 0, 0, RPC_ETRUNCATED, 0, "0 of 3");
    expect_fail((const uint8_t *)"\0\0\0\0\3ab", 7, 0, 0, RPC_ETRUNCATED, 0, "2 of 3");
    expect_fail((const uint8_t *)"\0\0\0\0\1a\0\0", 8, 0, 0, RPC_ETRUNCATED, 1, "2 of 5");
}

static void test_truncated_every_point(void **state)
{
    const want_t w[2] = {{(const uint8_t *)"abc", 3, 0}, {(const uint8_t *)"defgh", 5, 0}};
    stream_t s;
    stream_build(&s, w, 2);
    rpc_deframer_t d;
    rec_t r = {0};
    assert_int_equal(rpc_deframer_init(&d, 0, 0, on_message, &r), 0);
    for (size_t k = 0; k <= s.len; k++) {
        rpc_deframer_reset(&d);
        assert_int_equal(rpc_deframer_feed(&d, s.buf, k), 0);
        int boundary = k == 0 || k == 8 || k == s.len;
        assert_int_equal(rpc_deframer_partial(&d), !boundary);
        assert_int_equal(rpc_deframer_finish(&d), boundary ? 0 : RPC_ETRUNCATED);
        assert_int_equal(r.n, k >= 8 ? (k == s.len ? 2 : 1) : 0);
        rec_clear(&r);
    }
    rpc_deframer_fini(&d);
    free(s.buf);
}

static void test_callback_abort(void **state)
{
    const want_t w[3] = {{(const uint8_t *)"one", 3, 0},
                         {(const uint8_t *)"two", 3, 0},
                         {(const uint8_t *)"3", 1, 0}};
    stream_t s;
    stream_build(&s, w, 3);
    rpc_deframer_t d;
    rec_t r = {0};
    r.abort_at = 1;
    r.abort_code = -42;
    assert_int_equal(rpc_deframer_init(&d, 0, 0, on_message, &r), 0);
    assert_int_equal(rpc_deframer_feed(&d, s.buf, s.len), -42);
    assert_int_equal(r.n, 2); /* the third is never delivered */
    assert_memory_equal(r.m[1].copy, "two", 3);
    assert_non_null(strstr(rpc_deframer_error_detail(&d), "-42"));
    assert_int_equal(rpc_deframer_feed(&d, s.buf, s.len), -42);
    assert_int_equal(rpc_deframer_finish(&d), -42);
    assert_int_equal(r.n, 2);
    rec_clear(&r);

    /* abort on the third message, fed byte by byte; then positive returns are ignored */
    rpc_deframer_reset(&d);
    r.abort_at = 2;
    r.abort_code = -ECANCELED;
    int rc = 0;
    for (size_t i = 0; i < s.len && rc == 0; i++)
        rc = rpc_deframer_feed(&d, s.buf + i, 1);
    assert_int_equal(rc, -ECANCELED);
    assert_int_equal(r.n, 3);
    rec_clear(&r);

    rpc_deframer_reset(&d);
    r.abort_at = 0;
    r.abort_code = 7;
    assert_int_equal(rpc_deframer_feed(&d, s.buf, s.len), 0);
    assert_int_equal(r.n, 3);
    rec_clear(&r);
    rpc_deframer_fini(&d);
    free(s.buf);
}

/* ---- grpc-timeout --------------------------------------------------------------------------- */

static void test_timeout_parse(void **state)
{
    static const struct {
        const char *in;
        uint64_t ns;
    } ok[] = {
        {"0n", 0},
        {"1n", 1},
        {"99999999n", 99999999},
        {"1u", 1000},
        {"1m", 1000000},
        {"1S", 1000000000},
        {"30S", 30000000000ull},
        {"1M", 60000000000ull},
        {"1H", 3600000000000ull},
        {"00000001S", 1000000000},
        {"00000000H", 0},
        {"100000u", 100000000},
        {"99999999M", 5999999940000000000ull},
        {"5124095H", 18446742000000000000ull},
        {"5124096H", UINT64_MAX},  /* saturates */
        {"99999999H", UINT64_MAX}, /* 8-digit hours */
        {"99999999S", 99999999000000000ull},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t ns = 12345;
        int rc = rpc_timeout_parse(ok[i].in, strlen(ok[i].in), &ns);
        if (rc != 0 || ns != ok[i].ns)
            fail_msg("'%s': rc %d ns %llu", ok[i].in, rc, (unsigned long long)ns);
    }
    static const char *const bad[] = {
        "",   "1",   "S",   "n",   "123456789S", "000000000n", "1x",  "-1S", " 1S", "1S ",  "1s",
        "1h", "+1S", "1 S", "1SS", "1.5S",       "0x1S",       "1nn", "S1",  "１S", "1\tS", "1M\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t ns = 12345;
        int rc = rpc_timeout_parse(bad[i], strlen(bad[i]), &ns);
        if (rc != RPC_ETIMEOUT_FMT || ns != 12345)
            fail_msg("'%s' accepted (rc %d)", bad[i], rc);
    }
    uint64_t ns = 0;
    assert_int_equal(rpc_timeout_parse("1\0S", 3, &ns), RPC_ETIMEOUT_FMT); /* embedded NUL */
    assert_int_equal(rpc_timeout_parse("10S", 2, &ns), RPC_ETIMEOUT_FMT);  /* length counts */
    assert_int_equal(rpc_timeout_parse("10Sxx", 3, &ns), 0);
    assert_int_equal(ns, 10000000000ull);
    assert_int_equal(rpc_timeout_parse(NULL, 0, &ns), RPC_ETIMEOUT_FMT);
}

static void test_timeout_format(void **state)
{
    static const struct {
        uint64_t ns;
        const char *out;
    } cases[] = {
        {0, "0n"},
        {1, "1n"},
        {99999999, "99999999n"},
        {100000000, "100000u"}, /* 9 digits of ns: microseconds */
        {100000001, "100001u"}, /* rounded up */
        {100000999, "100001u"},
        {100001000, "100001u"},
        {1000000000, "1000000u"},
        {30000000000ull, "30000000u"},
        {99999999000ull, "99999999u"},
        {99999999001ull, "100000m"},
        {100000000000ull, "100000m"},
        {3600000000000ull, "3600000m"},
        {99999999000000ull, "99999999m"},
        {99999999000001ull, "100000S"},
        {99999999000000000ull, "99999999S"},
        {99999999000000001ull, "1666667M"},
        {5999999940000000000ull, "99999999M"},
        {5999999940000000001ull, "1666667H"},
        {UINT64_MAX, "5124096H"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[16];
        memset(out, 'X', sizeof(out));
        int n = rpc_timeout_format(cases[i].ns, out);
        if (n != (int)strlen(cases[i].out) || strcmp(out, cases[i].out) != 0)
            fail_msg("%llu: got '%.16s' (%d), want '%s'", (unsigned long long)cases[i].ns, out, n,
                     cases[i].out);
    }
}

static uint64_t unit_ns(char u)
{
    switch (u) {
    case 'n':
        return 1;
    case 'u':
        return 1000;
    case 'm':
        return 1000000;
    case 'S':
        return 1000000000;
    case 'M':
        return 60000000000ull;
    case 'H':
        return 3600000000000ull;
    default:
        fail_msg("bad unit %c", u);
        return 0;
    }
}

static void test_timeout_roundtrip(void **state)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t ns = x >> (i % 64); /* every magnitude */
        char out[16];
        int n = rpc_timeout_format(ns, out);
        assert_true(n >= 2 && n <= 9);
        assert_int_equal((size_t)n, strlen(out));
        uint64_t back = 0;
        assert_int_equal(rpc_timeout_parse(out, (size_t)n, &back), 0);
        assert_true(back >= ns); /* never shortened */
        if (back != UINT64_MAX)
            assert_true(back - ns < unit_ns(out[n - 1])); /* at most one unit longer */
        /* the finest unit that fits: the next finer one would need 9 digits */
        if (out[n - 1] != 'n') {
            static const char order[] = "numSMH";
            char finer = order[strchr(order, out[n - 1]) - order - 1];
            uint64_t u = unit_ns(finer);
            assert_true(ns / u + (ns % u != 0) > 99999999u);
        }
    }
}

/* ---- status --------------------------------------------------------------------------------- */

static void test_status_names(void **state)
{
    static const char *const names[17] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    assert_int_equal(RPC_STATUS_COUNT, 17);
    for (int i = 0; i < 17; i++)
        assert_string_equal(rpc_status_name(i), names[i]);
    assert_int_equal(RPC_STATUS_OK, 0);
    assert_int_equal(RPC_STATUS_DEADLINE_EXCEEDED, 4);
    assert_int_equal(RPC_STATUS_RESOURCE_EXHAUSTED, 8);
    assert_int_equal(RPC_STATUS_UNIMPLEMENTED, 12);
    assert_int_equal(RPC_STATUS_UNAVAILABLE, 14);
    assert_int_equal(RPC_STATUS_UNAUTHENTICATED, 16);
    assert_string_equal(rpc_status_name(RPC_STATUS_DATA_LOSS), "DATA_LOSS");
    assert_string_equal(rpc_status_name(17), "UNKNOWN");
    assert_string_equal(rpc_status_name(-1), "UNKNOWN");
    assert_string_equal(rpc_status_name(INT_MAX), "UNKNOWN");
    assert_string_equal(rpc_status_name(INT_MIN), "UNKNOWN");
}

static void test_status_parse(void **state)
{
    static const struct {
        const char *in;
        int code;
    } ok[] = {
        {"0", 0}, {"1", 1}, {"16", 16}, {"17", 17}, {"007", 7}, {"2147483647", INT_MAX},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int code = -5;
        assert_int_equal(rpc_status_parse(ok[i].in, strlen(ok[i].in), &code), 0);
        assert_int_equal(code, ok[i].code);
    }
    static const char *const bad[] = {
        "", "-1", "+1", " 1", "1 ", "1a", "0x1", "2147483648", "99999999999999999999", "1.0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int code = -5;
        if (rpc_status_parse(bad[i], strlen(bad[i]), &code) != RPC_ESTATUS_FMT || code != -5)
            fail_msg("'%s' accepted", bad[i]);
    }
    int code = -5;
    assert_int_equal(rpc_status_parse("14x", 2, &code), 0);
    assert_int_equal(code, 14);
    assert_int_equal(rpc_status_parse("1\0", 2, &code), RPC_ESTATUS_FMT);
    assert_int_equal(rpc_status_parse(NULL, 0, &code), RPC_ESTATUS_FMT);
}

static void test_status_from_http(void **state)
{
    assert_int_equal(rpc_status_from_http(400), RPC_STATUS_INTERNAL);
    assert_int_equal(rpc_status_from_http(401), RPC_STATUS_UNAUTHENTICATED);
    assert_int_equal(rpc_status_from_http(403), RPC_STATUS_PERMISSION_DENIED);
    assert_int_equal(rpc_status_from_http(404), RPC_STATUS_UNIMPLEMENTED);
    assert_int_equal(rpc_status_from_http(429), RPC_STATUS_UNAVAILABLE);
    assert_int_equal(rpc_status_from_http(502), RPC_STATUS_UNAVAILABLE);
    assert_int_equal(rpc_status_from_http(503), RPC_STATUS_UNAVAILABLE);
    assert_int_equal(rpc_status_from_http(504), RPC_STATUS_UNAVAILABLE);
    assert_int_equal(rpc_status_from_http(500), RPC_STATUS_UNKNOWN);
    assert_int_equal(rpc_status_from_http(200), RPC_STATUS_UNKNOWN);
    assert_int_equal(rpc_status_from_http(0), RPC_STATUS_UNKNOWN);
}

/* ---- grpc-message --------------------------------------------------------------------------- */

typedef struct mcase {
    const char *in;
    size_t in_len;
    const char *out;
    size_t out_len;
} mcase_t;

#define S(x) x, sizeof(x) - 1

static void test_message_encode(void **state)
{
    static const mcase_t cases[] = {
        {S(""), S("")},
        {S("hello world"), S("hello world")},
        {S("100%"), S("100%25")},
        {S("%%"), S("%25%25")},
        {S("a\nb\r\t"), S("a%0Ab%0D%09")},
        {S("~ !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}"), S("~ !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}")},
        {S("\x7f\x1f"), S("%7F%1F")},
        {S("\0"), S("%00")},
        {S("caf\xc3\xa9"), S("caf%C3%A9")},
        {S("\xe6\x97\xa5\xe6\x9c\xac"), S("%E6%97%A5%E6%9C%AC")},
        {S("\xf0\x9f\x98\x80!"), S("%F0%9F%98%80!")},
        {S("\xff"), S("%FF")},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const mcase_t *c = &cases[i];
        char out[128];
        size_t n = 999;
        assert_int_equal(rpc_message_encoded_len(c->in, c->in_len), c->out_len);
        assert_int_equal(rpc_message_encode(out, sizeof(out), &n, c->in, c->in_len), 0);
        assert_int_equal(n, c->out_len);
        assert_memory_equal(out, c->out, c->out_len);
        assert_int_equal(out[n], '\0');
        /* exact fit works, one byte less does not */
        assert_int_equal(rpc_message_encode(out, c->out_len + 1, &n, c->in, c->in_len), 0);
        assert_memory_equal(out, c->out, c->out_len);
        assert_int_equal(rpc_message_encode(out, c->out_len, &n, c->in, c->in_len), -ENOSPC);
    }
    char out[8];
    assert_int_equal(rpc_message_encode(out, 0, NULL, "", 0), -ENOSPC);
    assert_int_equal(rpc_message_encode(out, 1, NULL, NULL, 0), 0);
    assert_string_equal(out, "");
    assert_int_equal(rpc_message_encode(NULL, 8, NULL, "a", 1), -EINVAL);
    assert_int_equal(rpc_message_encode(out, 8, NULL, NULL, 1), -EINVAL);
    /* "%" needs 3 bytes plus the NUL: a cap of 3 or 2 must not write a partial escape */
    assert_int_equal(rpc_message_encode(out, 3, NULL, "%", 1), -ENOSPC);
    assert_int_equal(rpc_message_encode(out, 4, NULL, "%", 1), 0);
    assert_string_equal(out, "%25");
}

static void test_message_decode(void **state)
{
    static const mcase_t cases[] = {
        {S(""), S("")},
        {S("plain text"), S("plain text")},
        {S("%"), S("%")},
        {S("%4"), S("%4")},
        {S("%zz"), S("%zz")},
        {S("%4g"), S("%4g")},
        {S("%g4"), S("%g4")},
        {S("abc%"), S("abc%")},
        {S("%%41"), S("%A")},
        {S("%4%41"), S("%4A")},
        {S("%41%"), S("A%")},
        {S("%25"), S("%")},
        {S("%2525"), S("%25")},
        {S("%00"), S("\0")},
        {S("caf%C3%A9"), S("caf\xc3\xa9")},
        {S("caf%c3%a9"), S("caf\xc3\xa9")},
        {S("%E6%97%A5"), S("\xe6\x97\xa5")},
        {S("raw \xc3\xa9 bytes"), S("raw \xc3\xa9 bytes")},
        {S("a%0Ab"), S("a\nb")},
        {S("100%25 done%"), S("100% done%")},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const mcase_t *c = &cases[i];
        char out[128];
        size_t n = 999;
        assert_int_equal(rpc_message_decode(out, sizeof(out), &n, c->in, c->in_len), 0);
        if (n != c->out_len || memcmp(out, c->out, n) != 0)
            fail_msg("decode '%s': got '%.*s'", c->in, (int)n, out);
        assert_int_equal(out[n], '\0');
        /* input length + 1 always fits; the exact need fits; one less does not */
        assert_int_equal(rpc_message_decode(out, c->in_len + 1, &n, c->in, c->in_len), 0);
        assert_int_equal(rpc_message_decode(out, c->out_len + 1, &n, c->in, c->in_len), 0);
        assert_int_equal(n, c->out_len);
        assert_memory_equal(out, c->out, c->out_len);
        assert_int_equal(rpc_message_decode(out, c->out_len, &n, c->in, c->in_len), -ENOSPC);
    }
    char out[4];
    assert_int_equal(rpc_message_decode(NULL, 4, NULL, "a", 1), -EINVAL);
    assert_int_equal(rpc_message_decode(out, 4, NULL, NULL, 1), -EINVAL);
    assert_int_equal(rpc_message_decode(out, 1, NULL, NULL, 0), 0);
    assert_string_equal(out, "");
}

static void test_message_roundtrip(void **state)
{
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    for (int round = 0; round < 50; round++) {
        size_t n = round == 0 ? 256 : (size_t)(round * 37 % 300);
        uint8_t *in = round == 0 ? all : pattern(n, (uint32_t)round);
        size_t elen = rpc_message_encoded_len(in, n);
        char *enc = malloc(elen + 1);
        char *dec = malloc(elen + 1);
        assert_non_null(enc);
        assert_non_null(dec);
        size_t got = 0;
        assert_int_equal(rpc_message_encode(enc, elen + 1, &got, in, n), 0);
        assert_int_equal(got, elen);
        for (size_t i = 0; i < elen; i++) {
            unsigned char c = (unsigned char)enc[i];
            assert_true(c >= 0x20 && c <= 0x7e);
            if (c == '%') /* every '%' starts an uppercase escape */
                assert_true(i + 2 < elen && strchr("0123456789ABCDEF", enc[i + 1]) &&
                            strchr("0123456789ABCDEF", enc[i + 2]));
        }
        assert_int_equal(rpc_message_decode(dec, elen + 1, &got, enc, elen), 0);
        assert_int_equal(got, n);
        if (n)
            assert_memory_equal(dec, in, n);
        free(enc);
        free(dec);
        if (in != all)
            free(in);
    }
}

/* ---- content-type --------------------------------------------------------------------------- */

static void test_content_type(void **state)
{
    static const char *const good[] = {
        "application/grpc",
        "application/grpc+proto",
        "Application/GRPC",
        "APPLICATION/GRPC+PROTO",
        "application/grpc+Proto",
        "application/grpc;charset=utf-8",
        "application/grpc+proto; foo=bar",
        "application/grpc ;x",
        "application/grpc\t;x",
        "application/grpc;",
        "application/grpc ",
    };
    static const char *const bad[] = {
        "",
        "application/grpc+json",
        "application/grpcx",
        "application/grpc+",
        "application/grpc+protobuf",
        "application/grpc+proto+proto",
        "application/grpc-web",
        "application/grpc-web+proto",
        "application/grpc/x",
        "application/json",
        "text/grpc",
        "application/grp",
        " application/grpc",
        "application/ grpc",
        "application/grpc x",
        "grpc",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!rpc_content_type_ok(good[i], strlen(good[i])))
            fail_msg("'%s' refused", good[i]);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (rpc_content_type_ok(bad[i], strlen(bad[i])))
            fail_msg("'%s' accepted", bad[i]);
    assert_false(rpc_content_type_ok("application/grpc\0", 17));
    assert_false(rpc_content_type_ok("application/grpc", 15)); /* length counts */
    assert_true(rpc_content_type_ok("application/grpc+protoXYZ", 22));
    assert_false(rpc_content_type_ok(NULL, 0));
}

/* ---- errors --------------------------------------------------------------------------------- */

static void test_errors_registered(void **state)
{
    static const struct {
        int code;
        const char *msg;
    } list[] = {
#define RPC_T(name, off, msg) {name, msg},
        RPC_ERR_LIST(RPC_T)
#undef RPC_T
    };
    size_t n = sizeof(list) / sizeof(list[0]);
    assert_int_equal(n, 14);
    /* own range, clear of reactor (-10xxx), storage (-11xxx) and workload (-12xxx) */
    assert_int_equal(RPC_ERR_BASE, -13000);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(list[i].code, RPC_ERR_BASE - (int)(i + 1));
        assert_string_equal(rpc_strerror(list[i].code), list[i].msg);
    }
    assert_int_equal(RPC_ETOOBIG, -13001);
    assert_int_equal(RPC_ESTATUS_FMT, -13006);
    rpc_err_register();
    rpc_err_register(); /* idempotent */
    for (size_t i = 0; i < n; i++)
        assert_string_equal(rx_strerror(list[i].code), list[i].msg);
    assert_string_equal(rx_strerror(RPC_ERR_BASE - (int)n - 1), "unknown error");
    assert_string_equal(rpc_strerror(-ENOSPC), rx_strerror(-ENOSPC));
    assert_string_equal(rpc_strerror(RPC_ERR_BASE), rx_strerror(RPC_ERR_BASE));
    assert_non_null(rpc_strerror(-99999));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_header),
        cmocka_unit_test(test_init_args),
        cmocka_unit_test(test_roundtrip_sizes),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_several_in_one_slice),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_zero_copy),
        cmocka_unit_test(test_buffer_released),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_truncated_every_point),
        cmocka_unit_test(test_callback_abort),
        cmocka_unit_test(test_timeout_parse),
        cmocka_unit_test(test_timeout_format),
        cmocka_unit_test(test_timeout_roundtrip),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_status_parse),
        cmocka_unit_test(test_status_from_http),
        cmocka_unit_test(test_message_encode),
        cmocka_unit_test(test_message_decode),
        cmocka_unit_test(test_message_roundtrip),
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_errors_registered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
