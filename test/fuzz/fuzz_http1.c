/* libFuzzer target for the HTTP/1.1 client codec (rx/http1.h).
 *
 * Input: one option byte, then the bytes a server sends. The response bytes are parsed whole,
 * split at two points chosen from the input, and (when short) one byte at a time; the three runs
 * must give the same event stream (body events merged) and the same result. Invariants checked on
 * every event: body slices lie inside the input and never add up to more than it, statuses are
 * 100..999, names are tokens, values are trimmed and free of CR/LF, a message ends only after its
 * headers ended. The request writer is fed the same bytes as a header value and a target: what it
 * accepts can never add a line.
 *
 * Option byte: bits 0-2 head mask (responses 0..2 answer HEAD requests), bit 3 no trailer
 * callback, bit 4 small limits (64 bytes, 4 fields), bit 5 call rx_http1_eof() at the end. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rx/err.h"
#include "rx/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

typedef struct run {
    rx_http1_parser_t *p;
    const uint8_t *lo, *hi;
    uint64_t hash;
    size_t events;
    size_t body;
    int in_body;
    unsigned head_mask;
    unsigned finals;
    int headers_open; /* on_status seen, on_headers_done not yet */
    int body_allowed; /* on_headers_done of a final response seen, message not done */
} run_t;

static void mix(run_t *r, const void *d, size_t n)
{
    const uint8_t *b = d;
    for (size_t i = 0; i < n; i++) {
        r->hash ^= b[i];
        r->hash *= 0x100000001b3ull;
    }
}

static void event(run_t *r, char tag)
{
    r->in_body = 0;
    r->events++;
    mix(r, &tag, 1);
}

static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void check_field(const char *n, size_t nl, const char *v, size_t vl)
{
    CHECK(nl > 0);
    for (size_t i = 0; i < nl; i++)
        CHECK(is_tchar((unsigned char)n[i]));
    if (vl > 0) {
        CHECK(v[0] != ' ' && v[0] != '\t' && v[vl - 1] != ' ' && v[vl - 1] != '\t');
        CHECK(memchr(v, '\r', vl) == NULL && memchr(v, '\n', vl) == NULL);
    }
}

static int on_status(void *user, int code, const char *reason, size_t rlen)
{
    run_t *r = user;
    CHECK(code >= 100 && code <= 999);
    CHECK(!r->headers_open && !r->body_allowed);
    CHECK(memchr(reason, '\n', rlen) == NULL && memchr(reason, '\r', rlen) == NULL);
    r->headers_open = 1;
    event(r, 'S');
    mix(r, &code, sizeof(code));
    mix(r, reason, rlen);
    return 0;
}

static int on_header(void *user, const char *n, size_t nl, const char *v, size_t vl)
{
    run_t *r = user;
    CHECK(r->headers_open);
    check_field(n, nl, v, vl);
    event(r, 'H');
    mix(r, n, nl);
    mix(r, ":", 1);
    mix(r, v, vl);
    return 0;
}

static int on_headers_done(void *user)
{
    run_t *r = user;
    CHECK(r->headers_open);
    r->headers_open = 0;
    event(r, 'D');
    int st = rx_http1_status(r->p);
    if (st < 200 && st != 101)
        return 0;
    r->body_allowed = 1;
    unsigned i = r->finals++;
    return (i < 3 && (r->head_mask >> i) & 1) ? RX_HTTP1_NO_BODY : 0;
}

static int on_body(void *user, const uint8_t *d, size_t n)
{
    run_t *r = user;
    CHECK(r->body_allowed);
    CHECK(n > 0 && d >= r->lo && d + n <= r->hi);
    r->body += n;
    CHECK(r->body <= (size_t)(r->hi - r->lo));
    if (!r->in_body) {
        event(r, 'B');
        r->in_body = 1;
    }
    mix(r, d, n);
    return 0;
}

static int on_trailer(void *user, const char *n, size_t nl, const char *v, size_t vl)
{
    run_t *r = user;
    CHECK(r->body_allowed);
    check_field(n, nl, v, vl);
    event(r, 'T');
    mix(r, n, nl);
    mix(r, ":", 1);
    mix(r, v, vl);
    return 0;
}

static int on_message_done(void *user)
{
    run_t *r = user;
    CHECK(r->body_allowed && !r->headers_open);
    r->body_allowed = 0;
    event(r, 'M');
    char ka = (char)('0' + rx_http1_keep_alive(r->p));
    mix(r, &ka, 1);
    return 0;
}

static const rx_http1_callbacks_t cbs = {on_status, on_header,  on_headers_done,
                                         on_body,   on_trailer, on_message_done};
static const rx_http1_callbacks_t cbs_nt = {on_status, on_header, on_headers_done,
                                            on_body,   NULL,      on_message_done};

/* Parses in at the cut offsets; returns the final result, fills r. */
static int parse(const uint8_t *in, size_t n, const size_t *cuts, size_t ncuts, unsigned opt,
                 run_t *r)
{
    rx_http1_parser_t p;
    rx_http1_limits_t small = {64, 4};
    memset(r, 0, sizeof(*r));
    r->p = &p;
    r->lo = in;
    r->hi = in + n;
    r->hash = 0xcbf29ce484222325ull;
    r->head_mask = opt & 7u;
    CHECK(rx_http1_parser_init(&p, (opt & 8u) ? &cbs_nt : &cbs, r, (opt & 16u) ? &small : NULL) ==
          0);
    int rc = 0;
    size_t start = 0;
    for (size_t i = 0; i <= ncuts && rc == 0; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        size_t used = (size_t)-1;
        rc = rx_http1_parse(&p, in + start, end - start, &used);
        CHECK(used <= end - start);
        CHECK(rc != 0 || used == end - start);
        start = end;
    }
    if (rc == 0 && (opt & 32u))
        rc = rx_http1_eof(&p);
    if (rc != 0) {
        CHECK(rc < 0);
        CHECK(rx_http1_strerror(rc) != NULL);
        CHECK(rx_http1_error_detail(&p)[0] != '\0');
        CHECK(rx_http1_parse(&p, in, n, NULL) == rc); /* sticky */
        CHECK(rx_http1_eof(&p) == rc);
    } else {
        CHECK(rx_http1_error_detail(&p)[0] == '\0');
    }
    rx_http1_reset(&p);
    CHECK(rx_http1_error_detail(&p)[0] == '\0');
    rx_http1_parser_fini(&p);
    event(r, 'E');
    mix(r, &rc, sizeof(rc));
    return rc;
}

static void check_writer(const uint8_t *d, size_t n)
{
    if (n > 200)
        n = 200;
    char target[201];
    memcpy(target, d, n);
    target[n] = '\0';
    rx_http1_header_t h[2] = {{"Host", 4, "h", 1}, {"X-V", 3, (const char *)d, n}};
    char buf[512];
    int w = rx_http1_request_head(buf, sizeof(buf), "GET", "/", h, 2, (int64_t)n);
    if (w >= 0) {
        size_t lines = 0;
        for (int i = 0; i < w; i++)
            lines += buf[i] == '\n';
        CHECK(lines == 5);
    }
    /* the target may stop at a NUL; any accepted target adds no line either */
    w = rx_http1_request_head(buf, sizeof(buf), "GET", target, h, 1, -1);
    if (w >= 0) {
        size_t lines = 0;
        for (int i = 0; i < w; i++)
            lines += buf[i] == '\n';
        CHECK(lines == 3);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned opt = data[0];
    size_t n = size - 1;
    /* an exact copy so that reads past the response bytes are caught */
    uint8_t *in = malloc(n ? n : 1);
    if (in == NULL)
        return 0;
    memcpy(in, data + 1, n);

    run_t whole, split;
    int rc = parse(in, n, NULL, 0, opt, &whole);

    /* two cuts derived from the content, so the fuzzer can steer them */
    size_t cuts[2] = {0, 0};
    if (n > 0) {
        uint64_t h = whole.hash;
        cuts[0] = (size_t)(h % (n + 1));
        cuts[1] = (size_t)((h >> 32) % (n + 1));
        if (cuts[0] > cuts[1]) {
            size_t t = cuts[0];
            cuts[0] = cuts[1];
            cuts[1] = t;
        }
    }
    CHECK(parse(in, n, cuts, 2, opt, &split) == rc);
    CHECK(split.hash == whole.hash && split.events == whole.events && split.body == whole.body);

    if (n <= 2048) {
        size_t *every = malloc((n ? n : 1) * sizeof(*every));
        if (every != NULL) {
            for (size_t i = 1; i < n; i++)
                every[i - 1] = i;
            CHECK(parse(in, n, every, n ? n - 1 : 0, opt, &split) == rc);
            CHECK(split.hash == whole.hash && split.events == whole.events);
            free(every);
        }
    }
    check_writer(in, n);
    free(in);
    return 0;
}
