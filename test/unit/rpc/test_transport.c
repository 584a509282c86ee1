/* Unit tests for the gRPC transport (rpc/server.h, rpc/client.h): our client against our server on
 * loopback, one libuv loop in the test thread, plus raw TCP peers for the failure paths
 * (a server that never answers, a client that goes silent, garbage instead of HTTP/2).
 *
 * Times are only checked as generous upper bounds ("detected within 2 s"). */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <nghttp2/nghttp2.h>
#include <uv.h>

#include "rpc/client.h"
#include "rpc/err.h"
#include "rpc/grpc.h"
#include "rpc/server.h"
#include "rx/err.h"
#include "rx/log.h"
#include "rx/stream.h"

#define MS 1000000ull
#define WAIT_S 30 /* valgrind is slow: generous */

/* ---- loop helpers ---------------------------------------------------------------------------- */

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until *flag >= want; fails after WAIT_S seconds. */
static void run_until_n(uv_loop_t *loop, const int *flag, int want)
{
    uv_timer_t wd;
    uv_timer_init(loop, &wd);
    uv_timer_start(&wd, on_watchdog, 20, 20);
    uint64_t deadline = uv_hrtime() + WAIT_S * 1000ull * MS;
    while (*flag < want && uv_hrtime() < deadline)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wd, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    if (*flag < want)
        fprintf(stderr, "run_until: got %d, wanted %d\n", *flag, want);
    assert_true(*flag >= want);
}

static void run_until(uv_loop_t *loop, const int *flag)
{
    run_until_n(loop, flag, 1);
}

/* Runs the loop for ms milliseconds. */
static void run_for(uv_loop_t *loop, unsigned ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uint64_t end = uv_hrtime() + ms * MS;
    uv_timer_start(&t, on_watchdog, 5, 5);
    while (uv_hrtime() < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static void walk_report(uv_handle_t *h, void *arg)
{
    (void)arg;
    fprintf(stderr, "open handle left: %s (active %d)\n", uv_handle_type_name(h->type),
            uv_is_active(h));
}

static void loop_finish(uv_loop_t *loop)
{
    for (int i = 0; i < 200 && uv_run(loop, UV_RUN_NOWAIT) != 0; i++)
        usleep(1000);
    int r = uv_loop_close(loop);
    if (r != 0)
        uv_walk(loop, walk_report, NULL);
    assert_int_equal(r, 0);
}

static void fill_pattern(uint8_t *p, size_t n, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
}

static int check_pattern(const uint8_t *p, size_t n, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        if (p[i] != (uint8_t)(x >> 16))
            return 0;
    }
    return 1;
}

static void quiet_logger(void *ud, rx_log_level_t level, const char *subsys, int core,
                         const char *msg)
{
    (void)ud;
    (void)core;
    if (getenv("RPC_TEST_VERBOSE") != NULL)
        fprintf(stderr, "[%s] %s: %s\n", rx_log_level_name(level), subsys, msg);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- server side: methods and what they saw ------------------------------------------------ */

#define MAX_SCALLS 512

enum skind { K_UNARY, K_BIDI, K_STREAM, K_SINK, K_NEVER, K_EARLY, K_BIG, K_GATE, K_CLOSESRV };

typedef struct sctx {
    enum skind kind;
    rpc_scall_t *c;
    int idx;
    int msgs;
    size_t bytes;
    uint8_t *first;
    size_t first_len;
    int half_closed;
} sctx_t;

typedef struct srv_state {
    rpc_server_t *srv;
    int handlers, accepted, half_closes, msgs;
    int ended;
    int end_status[MAX_SCALLS];
    int end_count[MAX_SCALLS];
    char auth_seen[128];
    int refused;
    uint64_t deadline_seen;
    size_t pending_after_queue;
    /* gate: held calls answered in batches of gate_batch */
    sctx_t *held[MAX_SCALLS];
    int nheld, active, max_active, gate_batch;
    int closed;
    const char *bidi_final; /* grpc-message of the bidi finish */
    size_t big_len;
} srv_state_t;

static srv_state_t S;

static void s_end(rpc_scall_t *c, int status, void *ud)
{
    sctx_t *x = ud;
    assert_ptr_equal(x->c, c);
    assert_true(x->idx < MAX_SCALLS);
    S.end_count[x->idx]++;
    assert_int_equal(S.end_count[x->idx], 1);
    S.end_status[x->idx] = status;
    S.ended++;
    if (x->kind == K_GATE)
        S.active--;
    for (int i = 0; i < S.nheld; i++)
        if (S.held[i] == x)
            S.held[i] = NULL;
    free(x->first);
    free(x);
}

static void s_msg(rpc_scall_t *c, const uint8_t *msg, size_t len, void *ud)
{
    sctx_t *x = ud;
    S.msgs++;
    x->msgs++;
    x->bytes += len;
    switch (x->kind) {
    case K_UNARY:
    case K_STREAM:
        if (!x->first) {
            x->first = malloc(len ? len : 1);
            memcpy(x->first, msg, len);
            x->first_len = len;
        }
        break;
    case K_BIDI:
        assert_int_equal(rpc_scall_send(c, msg, len), 0);
        break;
    case K_EARLY:
        assert_int_equal(rpc_scall_finish(c, RPC_STATUS_OK, "early"), 0);
        assert_int_equal(rpc_scall_finish(c, RPC_STATUS_OK, NULL), RX_ESTATE);
        assert_int_equal(rpc_scall_send(c, msg, len), RX_ESTATE);
        break;
    case K_CLOSESRV:
        rpc_server_close(S.srv, NULL, NULL);
        break;
    default:
        break;
    }
}

static void s_half_close(rpc_scall_t *c, void *ud)
{
    sctx_t *x = ud;
    S.half_closes++;
    x->half_closed = 1;
    switch (x->kind) {
    case K_UNARY:
        assert_int_equal(x->msgs, 1);
        assert_int_equal(rpc_scall_send(c, x->first, x->first_len), 0);
        assert_int_equal(rpc_scall_finish(c, RPC_STATUS_OK, NULL), 0);
        break;
    case K_BIDI:
        assert_int_equal(rpc_scall_finish(c, RPC_STATUS_OK, S.bidi_final), 0);
        break;
    case K_STREAM: {
        assert_int_equal(x->first_len, 8);
        uint32_t n = get32(x->first), size = get32(x->first + 4);
        uint8_t *b = malloc(size);
        size_t total = 0;
        for (uint32_t i = 0; i < n; i++) {
            fill_pattern(b, size, i);
            assert_int_equal(rpc_scall_send(c, b, size), 0);
            total += size + 5;
        }
        free(b);
        S.pending_after_queue = rpc_scall_pending(c);
        assert_int_equal(S.pending_after_queue, total);
        assert_int_equal(rpc_scall_finish(c, RPC_STATUS_OK, NULL), 0);
        break;
    }
    case K_SINK: {
        char m[64];
        snprintf(m, sizeof(m), "bytes=%zu msgs=%d", x->bytes, x->msgs);
        assert_int_equal(rpc_scall_finish(c, RPC_STATUS_OK, m), 0);
        break;
    }
    case K_BIG: {
        uint8_t *b = calloc(1, S.big_len);
        assert_int_equal(rpc_scall_send(c, b, S.big_len), 0);
        free(b);
        break; /* never finishes: the client resets */
    }
    default:
        break;
    }
}

static const rpc_scall_cb_t s_cb = {s_msg, s_half_close, s_end};

static void accept_kind(rpc_scall_t *c, enum skind kind)
{
    S.handlers++;
    sctx_t *x = calloc(1, sizeof(*x));
    x->kind = kind;
    x->c = c;
    x->idx = S.accepted++;
    assert_true(x->idx < MAX_SCALLS);
    rpc_scall_accept(c, &s_cb, x);
    if (kind == K_NEVER)
        S.deadline_seen = rpc_scall_deadline(c);
    if (kind == K_GATE) {
        S.held[S.nheld++] = x;
        S.active++;
        if (S.active > S.max_active)
            S.max_active = S.active;
        if (S.active == S.gate_batch) {
            for (int i = 0; i < S.nheld; i++)
                if (S.held[i]) {
                    sctx_t *h = S.held[i];
                    uint8_t b[4];
                    put32(b, (uint32_t)h->idx);
                    assert_int_equal(rpc_scall_send(h->c, b, 4), 0);
                    assert_int_equal(rpc_scall_finish(h->c, RPC_STATUS_OK, NULL), 0);
                }
        }
    }
}

static void h_unary(rpc_scall_t *c, void *ud)
{
    (void)ud;
    assert_string_equal(rpc_scall_path(c), "/test.Echo/Unary");
    assert_string_equal(rpc_scall_header(c, "content-type"), "application/grpc");
    assert_string_equal(rpc_scall_header(c, "te"), "trailers");
    assert_non_null(rpc_scall_header(c, "user-agent"));
    assert_null(rpc_scall_header(c, "no-such-header"));
    assert_int_equal(rpc_scall_is_tls(c), 0);
    assert_non_null(rpc_scall_stream(c));
    assert_true(strncmp(rpc_scall_peer(c), "127.0.0.1:", 10) == 0);
    accept_kind(c, K_UNARY);
}
static void h_bidi(rpc_scall_t *c, void *ud)
{
    (void)ud;
    accept_kind(c, K_BIDI);
}
static void h_stream(rpc_scall_t *c, void *ud)
{
    (void)ud;
    accept_kind(c, K_STREAM);
}
static void h_sink(rpc_scall_t *c, void *ud)
{
    (void)ud;
    accept_kind(c, K_SINK);
}
static void h_never(rpc_scall_t *c, void *ud)
{
    (void)ud;
    accept_kind(c, K_NEVER);
}
static void h_early(rpc_scall_t *c, void *ud)
{
    (void)ud;
    accept_kind(c, K_EARLY);
}
static void h_big(rpc_scall_t *c, void *ud)
{
    (void)ud;
    accept_kind(c, K_BIG);
}
static void h_gate(rpc_scall_t *c, void *ud)
{
    (void)ud;
    accept_kind(c, K_GATE);
}
static void h_closesrv(rpc_scall_t *c, void *ud)
{
    (void)ud;
    accept_kind(c, K_CLOSESRV);
}
static void h_auth(rpc_scall_t *c, void *ud)
{
    (void)ud;
    const char *a = rpc_scall_header(c, "authorization");
    snprintf(S.auth_seen, sizeof(S.auth_seen), "%s", a ? a : "(none)");
    if (!a || strcmp(a, "Bearer good-token") != 0) {
        S.refused++;
        assert_int_equal(rpc_scall_finish(c, RPC_STATUS_UNAUTHENTICATED, "bad token"), 0);
        return;
    }
    accept_kind(c, K_UNARY);
}

/* ---- client side ----------------------------------------------------------------------------- */

typedef struct crec {
    int done;
    rpc_status_t status;
    char msg[256];
    int nmsg;
    size_t bytes;
    int seq_ok;     /* messages carry 4-byte sequence numbers 0, 1, ... */
    int pattern_ok; /* messages follow fill_pattern(seed = index) */
    uint32_t pattern_size;
    uint8_t *first;
    size_t first_len;
    int close_channel_on_msg;
    int close_channel_on_done;
} crec_t;

typedef struct env {
    uv_loop_t loop;
    rpc_server_t *srv;
    rpc_channel_t *ch;
    int port;
    int srv_closed, ch_closed;
    int ch_cb_ok, ch_cb_fail, ch_fail_status;
    int done; /* calls done */
} env_t;

static env_t *E;

static void c_msg(rpc_ccall_t *c, const uint8_t *msg, size_t len, void *ud)
{
    (void)c;
    crec_t *r = ud;
    assert_int_equal(r->done, 0);
    if (r->seq_ok && (len != 4 || get32(msg) != (uint32_t)r->nmsg))
        r->seq_ok = 0;
    if (r->pattern_ok && (len != r->pattern_size || !check_pattern(msg, len, (unsigned)r->nmsg)))
        r->pattern_ok = 0;
    if (!r->first) {
        r->first = malloc(len ? len : 1);
        memcpy(r->first, msg, len);
        r->first_len = len;
    }
    r->nmsg++;
    r->bytes += len;
    if (r->close_channel_on_msg) {
        r->close_channel_on_msg = 0;
        rpc_channel_close(E->ch, NULL, NULL);
    }
}

static void ch_closed_cb(void *ud)
{
    env_t *e = ud;
    e->ch_closed = 1;
}

static void c_done(rpc_ccall_t *c, rpc_status_t status, const char *message, void *ud)
{
    (void)c;
    crec_t *r = ud;
    assert_int_equal(r->done, 0);
    r->done = 1;
    r->status = status;
    snprintf(r->msg, sizeof(r->msg), "%s", message);
    E->done++;
    if (r->close_channel_on_done)
        rpc_channel_close(E->ch, ch_closed_cb, E);
}

static const rpc_ccall_cb_t c_cb = {c_msg, c_done};

static void on_channel(rpc_channel_t *ch, int status, void *ud)
{
    env_t *e = ud;
    assert_ptr_equal(ch, e->ch);
    if (status == 0) {
        assert_int_equal(e->ch_cb_ok, 0);
        assert_int_equal(e->ch_cb_fail, 0);
        e->ch_cb_ok = 1;
    } else {
        assert_int_equal(e->ch_cb_fail, 0);
        e->ch_cb_fail = 1;
        e->ch_fail_status = status;
    }
}

static void srv_closed_cb(void *ud)
{
    env_t *e = ud;
    e->srv_closed = 1;
}

static void env_server(env_t *e, const rpc_server_opts_t *so)
{
    assert_int_equal(rpc_server_create(&e->loop, so, &e->srv), 0);
    S.srv = e->srv;
    assert_int_equal(rpc_server_add_method(e->srv, "/test.Echo/Unary", h_unary, NULL), 0);
    assert_int_equal(rpc_server_add_method(e->srv, "/test.Echo/Unary", h_unary, NULL), -EEXIST);
    assert_int_equal(rpc_server_add_method(e->srv, "bad", h_unary, NULL), -EINVAL);
    assert_int_equal(rpc_server_add_method(e->srv, "/test.Echo/Bidi", h_bidi, NULL), 0);
    assert_int_equal(rpc_server_add_method(e->srv, "/test.Echo/Stream", h_stream, NULL), 0);
    assert_int_equal(rpc_server_add_method(e->srv, "/test.Echo/Sink", h_sink, NULL), 0);
    assert_int_equal(rpc_server_add_method(e->srv, "/test.Echo/Never", h_never, NULL), 0);
    assert_int_equal(rpc_server_add_method(e->srv, "/test.Echo/Early", h_early, NULL), 0);
    assert_int_equal(rpc_server_add_method(e->srv, "/test.Echo/Big", h_big, NULL), 0);
    assert_int_equal(rpc_server_add_method(e->srv, "/test.Echo/Gate", h_gate, NULL), 0);
    assert_int_equal(rpc_server_add_method(e->srv, "/test.Echo/CloseSrv", h_closesrv, NULL), 0);
    assert_int_equal(rpc_server_add_method(e->srv, "/test.Echo/Auth", h_auth, NULL), 0);
    char err[200];
    assert_int_equal(rpc_server_listen(e->srv, "127.0.0.1", 0, err, sizeof(err)), 0);
    e->port = rpc_server_port(e->srv);
    assert_true(e->port > 0);
    assert_int_equal(rpc_server_listen(e->srv, "127.0.0.1", 0, err, sizeof(err)), RX_ESTATE);
}

static void env_channel(env_t *e, const rpc_channel_opts_t *co)
{
    assert_int_equal(rpc_channel_open(&e->loop, "127.0.0.1", e->port, co, on_channel, e, &e->ch),
                     0);
    assert_int_equal(rpc_channel_ready(e->ch), 0);
    assert_null(rpc_channel_stream(e->ch));
}

static void env_start(env_t *e, const rpc_server_opts_t *so, const rpc_channel_opts_t *co)
{
    memset(e, 0, sizeof(*e));
    memset(&S, 0, sizeof(S));
    E = e;
    assert_int_equal(uv_loop_init(&e->loop), 0);
    env_server(e, so);
    env_channel(e, co);
}

static void env_stop(env_t *e)
{
    if (e->ch) {
        rpc_channel_close(e->ch, ch_closed_cb, e);
        rpc_channel_close(e->ch, ch_closed_cb, e); /* idempotent */
    }
    if (e->srv) {
        rpc_server_close(e->srv, srv_closed_cb, e);
        rpc_server_close(e->srv, srv_closed_cb, e);
    }
    if (e->ch)
        run_until(&e->loop, &e->ch_closed);
    if (e->srv)
        run_until(&e->loop, &e->srv_closed);
    loop_finish(&e->loop);
    E = NULL;
}

static void crec_free(crec_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(r[i].first);
}

/* ---- tests ------------------------------------------------------------------------------------
 */

static void test_unary(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, NULL, NULL);
    crec_t r = {0};
    const char *hello = "hello, gRPC";
    rpc_ccall_t *c = NULL;
    assert_int_equal(rpc_unary(e.ch, "/test.Echo/Unary", NULL, 0, 0, (const uint8_t *)hello,
                               strlen(hello), &c_cb, &r, &c),
                     0);
    assert_non_null(c);
    assert_int_equal(r.done, 0); /* never inside the call */
    run_until(&e.loop, &r.done);
    assert_int_equal(e.ch_cb_ok, 1);
    assert_int_equal(rpc_channel_ready(e.ch), 1);
    assert_non_null(rpc_channel_stream(e.ch));
    assert_int_equal(r.status, RPC_STATUS_OK);
    assert_string_equal(r.msg, "");
    assert_int_equal(r.nmsg, 1);
    assert_int_equal(r.first_len, strlen(hello));
    assert_memory_equal(r.first, hello, strlen(hello));
    run_until(&e.loop, &S.ended);
    assert_int_equal(S.end_status[0], 0);
    assert_int_equal(S.half_closes, 1);
    assert_int_equal(rpc_server_connections(e.srv), 1);

    /* a second call on the same connection, empty message */
    crec_t r2 = {0};
    assert_int_equal(rpc_unary(e.ch, "/test.Echo/Unary", NULL, 0, 0, NULL, 0, &c_cb, &r2, NULL), 0);
    run_until(&e.loop, &r2.done);
    assert_int_equal(r2.status, RPC_STATUS_OK);
    assert_int_equal(r2.nmsg, 1);
    assert_int_equal(r2.bytes, 0);
    crec_free(&r, 1);
    crec_free(&r2, 1);
    env_stop(&e);
}

static void test_bidi_1000(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, NULL, NULL);
    S.bidi_final = "fin: Grüße, 100% naïve ☃ %41 \x01 done";
    crec_t r = {0};
    r.seq_ok = 1;
    rpc_ccall_t *c;
    assert_int_equal(rpc_ccall_start(e.ch, "/test.Echo/Bidi", NULL, 0, 0, &c_cb, &r, &c), 0);
    for (uint32_t i = 0; i < 1000; i++) {
        uint8_t b[4];
        put32(b, i);
        assert_int_equal(rpc_ccall_send(c, b, 4), 0);
    }
    assert_int_equal(rpc_ccall_pending(c), 1000 * 9);
    assert_int_equal(rpc_ccall_close_send(c), 0);
    assert_int_equal(rpc_ccall_close_send(c), 0); /* idempotent */
    assert_int_equal(rpc_ccall_send(c, (const uint8_t *)"x", 1), RX_ESTATE);
    run_until(&e.loop, &r.done);
    assert_int_equal(r.status, RPC_STATUS_OK);
    assert_int_equal(r.nmsg, 1000);
    assert_true(r.seq_ok);
    assert_string_equal(r.msg, S.bidi_final);
    run_until(&e.loop, &S.ended);
    assert_int_equal(S.msgs, 1000);
    assert_int_equal(S.half_closes, 1);
    assert_int_equal(S.end_status[0], 0);
    crec_free(&r, 1);
    env_stop(&e);
}

static void test_server_stream_large(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, NULL, NULL);
    const uint32_t n = 4, size = 3u << 20;
    crec_t r = {0};
    r.pattern_ok = 1;
    r.pattern_size = size;
    uint8_t req[8];
    put32(req, n);
    put32(req + 4, size);
    assert_int_equal(
        rpc_unary(e.ch, "/test.Echo/Stream", NULL, 0, 0, req, sizeof(req), &c_cb, &r, NULL), 0);
    run_until(&e.loop, &r.done);
    assert_int_equal(r.status, RPC_STATUS_OK);
    assert_int_equal(r.nmsg, (int)n);
    assert_true(r.pattern_ok);
    assert_int_equal(r.bytes, (size_t)n * size);
    assert_int_equal(S.pending_after_queue, (size_t)n * (size + 5));
    run_until(&e.loop, &S.ended);
    assert_int_equal(S.end_status[0], 0);

    /* client → server: large messages, back-pressure visible in pending() */
    crec_t r2 = {0};
    rpc_ccall_t *c;
    assert_int_equal(rpc_ccall_start(e.ch, "/test.Echo/Sink", NULL, 0, 0, &c_cb, &r2, &c), 0);
    uint8_t *b = malloc(size);
    fill_pattern(b, size, 7);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(rpc_ccall_send(c, b, size), 0);
    free(b);
    assert_int_equal(rpc_ccall_pending(c), (size_t)n * (size + 5));
    assert_int_equal(rpc_ccall_close_send(c), 0);
    run_until(&e.loop, &r2.done);
    assert_int_equal(r2.status, RPC_STATUS_OK);
    char want[64];
    snprintf(want, sizeof(want), "bytes=%zu msgs=%u", (size_t)n * size, n);
    assert_string_equal(r2.msg, want);
    crec_free(&r, 1);
    crec_free(&r2, 1);
    env_stop(&e);
}

static void test_too_big(void **state)
{
    (void)state;
    env_t e;
    rpc_server_opts_t so;
    rpc_server_opts_init(&so);
    so.max_message = 1u << 20;
    rpc_channel_opts_t co;
    rpc_channel_opts_init(&co);
    co.max_message = 64u * 1024u;
    env_start(&e, &so, &co);

    /* client → server above the server's maximum */
    size_t len = (1u << 20) + 1;
    uint8_t *b = calloc(1, len);
    crec_t r = {0};
    assert_int_equal(rpc_unary(e.ch, "/test.Echo/Sink", NULL, 0, 0, b, len, &c_cb, &r, NULL), 0);
    free(b);
    run_until(&e.loop, &r.done);
    assert_int_equal(r.status, RPC_STATUS_RESOURCE_EXHAUSTED);
    run_until(&e.loop, &S.ended);
    assert_int_equal(S.end_status[0], RPC_ETOOBIG);
    assert_int_equal(S.msgs, 0);

    /* exactly the maximum is fine */
    b = calloc(1, 1u << 20);
    crec_t r1 = {0};
    assert_int_equal(rpc_unary(e.ch, "/test.Echo/Sink", NULL, 0, 0, b, 1u << 20, &c_cb, &r1, NULL),
                     0);
    free(b);
    run_until(&e.loop, &r1.done);
    assert_int_equal(r1.status, RPC_STATUS_OK);
    run_until_n(&e.loop, &S.ended, 2);

    /* server → client above the client's maximum */
    S.big_len = 100u * 1024u;
    crec_t r2 = {0};
    assert_int_equal(rpc_unary(e.ch, "/test.Echo/Big", NULL, 0, 0, NULL, 0, &c_cb, &r2, NULL), 0);
    run_until(&e.loop, &r2.done);
    assert_int_equal(r2.status, RPC_STATUS_RESOURCE_EXHAUSTED);
    assert_int_equal(r2.nmsg, 0);
    run_until_n(&e.loop, &S.ended, 3);
    assert_int_equal(S.end_status[2], RPC_ECANCELLED);
    crec_free(&r, 1);
    crec_free(&r1, 1);
    crec_free(&r2, 1);
    env_stop(&e);
}

static void test_unimplemented(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, NULL, NULL);
    crec_t r = {0};
    assert_int_equal(
        rpc_unary(e.ch, "/test.Echo/Nope", NULL, 0, 0, (const uint8_t *)"x", 1, &c_cb, &r, NULL),
        0);
    run_until(&e.loop, &r.done);
    assert_int_equal(r.status, RPC_STATUS_UNIMPLEMENTED);
    assert_non_null(strstr(r.msg, "/test.Echo/Nope"));
    assert_int_equal(S.handlers, 0);

    /* bad arguments */
    assert_int_equal(rpc_ccall_start(e.ch, "noslash", NULL, 0, 0, &c_cb, &r, NULL), -EINVAL);
    rpc_md_t bad = {"Upper", "x"};
    assert_int_equal(rpc_ccall_start(e.ch, "/a/b", &bad, 1, 0, &c_cb, &r, NULL), -EINVAL);
    crec_free(&r, 1);
    env_stop(&e);
}

static void test_unauthenticated(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, NULL, NULL);
    rpc_md_t md[] = {{"authorization", "Bearer wrong"}, {"x-extra", "1"}};
    crec_t r = {0};
    assert_int_equal(
        rpc_unary(e.ch, "/test.Echo/Auth", md, 2, 0, (const uint8_t *)"x", 1, &c_cb, &r, NULL), 0);
    run_until(&e.loop, &r.done);
    assert_int_equal(r.status, RPC_STATUS_UNAUTHENTICATED);
    assert_string_equal(r.msg, "bad token");
    assert_string_equal(S.auth_seen, "Bearer wrong");
    assert_int_equal(S.refused, 1);
    assert_int_equal(S.accepted, 0);

    md[0].value = "Bearer good-token";
    crec_t r2 = {0};
    assert_int_equal(
        rpc_unary(e.ch, "/test.Echo/Auth", md, 2, 0, (const uint8_t *)"y", 1, &c_cb, &r2, NULL), 0);
    run_until(&e.loop, &r2.done);
    assert_int_equal(r2.status, RPC_STATUS_OK);
    assert_int_equal(r2.nmsg, 1);
    run_until(&e.loop, &S.ended);
    crec_free(&r, 1);
    crec_free(&r2, 1);
    env_stop(&e);
}

static void test_deadline(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, NULL, NULL);
    crec_t r = {0};
    uint64_t t0 = uv_hrtime();
    assert_int_equal(rpc_unary(e.ch, "/test.Echo/Never", NULL, 0, 50 * MS, (const uint8_t *)"x", 1,
                               &c_cb, &r, NULL),
                     0);
    run_until(&e.loop, &r.done);
    uint64_t took = uv_hrtime() - t0;
    assert_int_equal(r.status, RPC_STATUS_DEADLINE_EXCEEDED);
    assert_true(took >= 45 * MS);
    assert_true(took < 2000 * MS);
    run_until(&e.loop, &S.ended);
    assert_int_equal(S.end_status[0], RPC_EDEADLINE);
    assert_true(S.deadline_seen > t0);
    crec_free(&r, 1);
    env_stop(&e);
}

static void test_cancel(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, NULL, NULL);
    crec_t r = {0};
    rpc_ccall_t *c;
    assert_int_equal(rpc_ccall_start(e.ch, "/test.Echo/Never", NULL, 0, 0, &c_cb, &r, &c), 0);
    assert_int_equal(rpc_ccall_send(c, (const uint8_t *)"x", 1), 0);
    run_until(&e.loop, &S.accepted);
    run_until(&e.loop, &S.msgs);
    rpc_ccall_cancel(c);
    assert_int_equal(r.done, 0);
    rpc_ccall_cancel(c); /* no-op */
    run_until(&e.loop, &r.done);
    assert_int_equal(r.status, RPC_STATUS_CANCELLED);
    run_until(&e.loop, &S.ended);
    assert_int_equal(S.end_status[0], RPC_ECANCELLED);

    /* cancel while still queued (before the stream exists) */
    crec_t r2 = {0};
    assert_int_equal(rpc_ccall_start(e.ch, "/test.Echo/Never", NULL, 0, 0, &c_cb, &r2, &c), 0);
    rpc_ccall_cancel(c);
    run_until(&e.loop, &r2.done);
    assert_int_equal(r2.status, RPC_STATUS_CANCELLED);
    crec_free(&r, 1);
    crec_free(&r2, 1);
    env_stop(&e);
}

static void test_server_finish_early(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, NULL, NULL);
    crec_t r = {0};
    rpc_ccall_t *c;
    assert_int_equal(rpc_ccall_start(e.ch, "/test.Echo/Early", NULL, 0, 0, &c_cb, &r, &c), 0);
    assert_int_equal(rpc_ccall_send(c, (const uint8_t *)"x", 1), 0);
    run_until(&e.loop, &r.done);
    assert_int_equal(r.status, RPC_STATUS_OK);
    assert_string_equal(r.msg, "early");
    run_until(&e.loop, &S.ended);
    assert_int_equal(S.end_status[0], 0);
    assert_int_equal(S.half_closes, 0);
    crec_free(&r, 1);
    env_stop(&e);
}

/* ---- raw peers ------------------------------------------------------------------------------- */

typedef struct raw {
    rx_listener_t *l;
    int l_closed;
    rx_stream_t *s[8];
    int ns;
    int closed;
    int ended;
    int connected;
    uint8_t *out;
    size_t out_len;
    int written;
} raw_t;

static raw_t R;

static void raw_ignore(rx_stream_t *s, const char *data, size_t len)
{
    (void)s;
    (void)data;
    (void)len;
}

static void raw_end(rx_stream_t *s, int status)
{
    (void)s;
    (void)status;
    R.ended++;
}

static void raw_accept(rx_listener_t *l, rx_stream_t *s, int status, void *ud)
{
    (void)l;
    (void)ud;
    assert_int_equal(status, 0);
    assert_true(R.ns < 8);
    R.s[R.ns++] = s;
    assert_int_equal(rx_stream_read_start(s, raw_ignore, raw_end), 0);
}

static void raw_stream_closed(rx_stream_t *s)
{
    (void)s;
    R.closed++;
}

static void raw_listener_closed(rx_listener_t *l, void *ud)
{
    (void)l;
    (void)ud;
    R.l_closed = 1;
}

static void raw_written(rx_stream_t *s, int status, void *ud)
{
    (void)s;
    (void)ud;
    (void)status;
    R.written = 1;
}

static void raw_connected(rx_stream_t *s, int status)
{
    assert_int_equal(status, 0);
    R.connected = 1;
    assert_int_equal(rx_stream_read_start(s, raw_ignore, raw_end), 0);
    struct iovec v = {R.out, R.out_len};
    assert_int_equal(rx_stream_write(s, &v, 1, raw_written, NULL), 0);
}

static void raw_close_all(uv_loop_t *loop)
{
    int n = R.ns;
    for (int i = 0; i < n; i++)
        rx_stream_close(R.s[i], raw_stream_closed);
    if (R.l)
        rx_listener_close(R.l, raw_listener_closed);
    run_until_n(loop, &R.closed, n);
    if (R.l)
        run_until(loop, &R.l_closed);
    free(R.out);
    memset(&R, 0, sizeof(R));
}

static void test_keepalive_client(void **state)
{
    (void)state;
    env_t e;
    memset(&e, 0, sizeof(e));
    memset(&S, 0, sizeof(S));
    memset(&R, 0, sizeof(R));
    E = &e;
    assert_int_equal(uv_loop_init(&e.loop), 0);
    char err[200];
    assert_int_equal(
        rx_listen(&e.loop, "127.0.0.1", 0, NULL, 0, raw_accept, NULL, &R.l, err, sizeof(err)), 0);
    e.port = rx_listener_port(R.l);
    rpc_channel_opts_t co;
    rpc_channel_opts_init(&co);
    co.keepalive_interval_ns = 100 * MS;
    co.keepalive_timeout_ns = 200 * MS;
    uint64_t t0 = uv_hrtime();
    env_channel(&e, &co);
    crec_t r = {0};
    assert_int_equal(
        rpc_unary(e.ch, "/test.Echo/Unary", NULL, 0, 0, (const uint8_t *)"x", 1, &c_cb, &r, NULL),
        0);
    run_until(&e.loop, &e.ch_cb_fail);
    uint64_t took = uv_hrtime() - t0;
    assert_int_equal(e.ch_cb_ok, 1);
    assert_int_equal(e.ch_fail_status, RPC_EKEEPALIVE);
    assert_true(took >= 250 * MS);
    assert_true(took < 2000 * MS);
    assert_non_null(strstr(rpc_channel_error_detail(e.ch), "keepalive"));
    assert_int_equal(rpc_channel_ready(e.ch), 0);
    run_until(&e.loop, &r.done);
    assert_int_equal(r.status, RPC_STATUS_UNAVAILABLE);
    crec_t r2 = {0};
    assert_int_equal(rpc_unary(e.ch, "/test.Echo/Unary", NULL, 0, 0, NULL, 0, &c_cb, &r2, NULL),
                     RX_ESTATE);
    rpc_channel_close(e.ch, ch_closed_cb, &e);
    run_until(&e.loop, &e.ch_closed);
    raw_close_all(&e.loop);
    crec_free(&r, 1);
    loop_finish(&e.loop);
}

/* Serializes an HTTP/2 client preface, SETTINGS and one request with nghttp2 (no data, END_STREAM
 * on the HEADERS), for a raw client that then goes silent. */
static void build_raw_request(const char *path)
{
    nghttp2_session_callbacks *cbs;
    nghttp2_session *ng;
    assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
    assert_int_equal(nghttp2_session_client_new(&ng, cbs, NULL), 0);
    assert_int_equal(nghttp2_submit_settings(ng, NGHTTP2_FLAG_NONE, NULL, 0), 0);
    nghttp2_nv nv[] = {
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
        NV(":method", "POST"),
        NV(":scheme", "http"),
        NV(":path", path),
        NV(":authority", "localhost"),
        NV("content-type", "application/grpc"),
        NV("te", "trailers"),
#undef NV
    };
    assert_true(nghttp2_submit_request(ng, NULL, nv, sizeof(nv) / sizeof(nv[0]), NULL, NULL) > 0);
    R.out = NULL;
    R.out_len = 0;
    for (;;) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(ng, &p);
        assert_true(n >= 0);
        if (n == 0)
            break;
        R.out = realloc(R.out, R.out_len + (size_t)n);
        memcpy(R.out + R.out_len, p, (size_t)n);
        R.out_len += (size_t)n;
    }
    nghttp2_session_del(ng);
    nghttp2_session_callbacks_del(cbs);
}

static void test_keepalive_server(void **state)
{
    (void)state;
    env_t e;
    memset(&e, 0, sizeof(e));
    memset(&S, 0, sizeof(S));
    memset(&R, 0, sizeof(R));
    E = &e;
    assert_int_equal(uv_loop_init(&e.loop), 0);
    rpc_server_opts_t so;
    rpc_server_opts_init(&so);
    so.keepalive_interval_ns = 100 * MS;
    so.keepalive_timeout_ns = 200 * MS;
    env_server(&e, &so);
    build_raw_request("/test.Echo/Never");
    rx_stream_t *s;
    assert_int_equal(rx_stream_connect(&e.loop, "127.0.0.1", e.port, NULL, raw_connected, NULL, &s),
                     0);
    R.s[R.ns++] = s;
    run_until(&e.loop, &S.accepted);
    uint64_t t0 = uv_hrtime();
    assert_int_equal(rpc_server_connections(e.srv), 1);
    run_until(&e.loop, &S.ended);
    uint64_t took = uv_hrtime() - t0;
    assert_int_equal(S.end_status[0], RPC_EKEEPALIVE);
    assert_true(took < 2000 * MS);
    run_until(&e.loop, &R.ended); /* the server closed the connection */
    assert_int_equal(rpc_server_connections(e.srv), 0);
    raw_close_all(&e.loop);
    rpc_server_close(e.srv, srv_closed_cb, &e);
    run_until(&e.loop, &e.srv_closed);
    loop_finish(&e.loop);
}

/* ---- a raw HTTP/2 client (nghttp2) that looks at frames ------------------------------------ */

typedef struct pstream {
    int32_t sid;
    int headers_frames;
    int first_headers_end_stream;
    char status[8], ctype[64], grpc_status[8], grpc_message[256];
    size_t data_bytes;
    int closed, rst_recv;
    uint32_t rst_code;
    const uint8_t *body; /* request body, sent then END_STREAM; NULL with hold: never ends */
    size_t body_len, body_off;
    int hold;
} pstream_t;

typedef struct probe {
    uv_loop_t *loop;
    rx_stream_t *s;
    nghttp2_session *ng;
    int connected, closed;
    int nclosed; /* streams closed */
} probe_t;

static void probe_written(rx_stream_t *s, int status, void *ud)
{
    (void)s;
    (void)status;
    free(ud);
}

static void probe_pump(probe_t *p)
{
    for (;;) {
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(p->ng, &d);
        assert_true(n >= 0);
        if (n == 0)
            break;
        uint8_t *b = malloc((size_t)n);
        memcpy(b, d, (size_t)n);
        struct iovec v = {b, (size_t)n};
        if (rx_stream_write(p->s, &v, 1, probe_written, b) < 0)
            free(b);
    }
}

static void probe_data(rx_stream_t *s, const char *data, size_t len)
{
    probe_t *p = rx_stream_ud(s);
    assert_true(nghttp2_session_mem_recv(p->ng, (const uint8_t *)data, len) >= 0);
    probe_pump(p);
}

static void probe_end(rx_stream_t *s, int status)
{
    (void)s;
    (void)status;
}

static void probe_connected(rx_stream_t *s, int status)
{
    probe_t *p = rx_stream_ud(s);
    assert_int_equal(status, 0);
    p->connected = 1;
    assert_int_equal(rx_stream_read_start(s, probe_data, probe_end), 0);
    probe_pump(p);
}

static int pb_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)flags;
    (void)ud;
    pstream_t *ps = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!ps)
        return 0;
#define KEEP(N, F)                                                                                 \
    if (nl == strlen(N) && memcmp(name, N, nl) == 0)                                               \
        snprintf(ps->F, sizeof(ps->F), "%.*s", (int)vl, (const char *)value);
    KEEP(":status", status)
    KEEP("content-type", ctype)
    KEEP("grpc-status", grpc_status)
    KEEP("grpc-message", grpc_message)
#undef KEEP
    return 0;
}

static int pb_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    pstream_t *ps =
        f->hd.stream_id ? nghttp2_session_get_stream_user_data(ng, f->hd.stream_id) : NULL;
    if (!ps)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS) {
        if (ps->headers_frames++ == 0)
            ps->first_headers_end_stream = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    } else if (f->hd.type == NGHTTP2_RST_STREAM) {
        ps->rst_recv = 1;
        ps->rst_code = f->rst_stream.error_code;
    }
    return 0;
}

static int pb_data(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *d, size_t len,
                   void *ud)
{
    (void)flags;
    (void)d;
    (void)ud;
    pstream_t *ps = nghttp2_session_get_stream_user_data(ng, sid);
    if (ps)
        ps->data_bytes += len;
    return 0;
}

static int pb_close(nghttp2_session *ng, int32_t sid, uint32_t code, void *ud)
{
    (void)code;
    probe_t *p = ud;
    pstream_t *ps = nghttp2_session_get_stream_user_data(ng, sid);
    if (ps) {
        ps->closed = 1;
        p->nclosed++;
    }
    return 0;
}

static ssize_t pb_read(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                       nghttp2_data_source *src, void *ud)
{
    (void)ng;
    (void)sid;
    (void)ud;
    pstream_t *ps = src->ptr;
    size_t n = ps->body_len - ps->body_off;
    if (n > len)
        n = len;
    if (n)
        memcpy(buf, ps->body + ps->body_off, n);
    ps->body_off += n;
    if (ps->body_off == ps->body_len) {
        if (ps->hold && n == 0)
            return NGHTTP2_ERR_DEFERRED;
        if (!ps->hold)
            *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static void probe_open_window(probe_t *p, uv_loop_t *loop, int port, int zero_window)
{
    memset(p, 0, sizeof(*p));
    p->loop = loop;
    nghttp2_session_callbacks *cbs;
    assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
    nghttp2_session_callbacks_set_on_header_callback(cbs, pb_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, pb_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, pb_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, pb_close);
    assert_int_equal(nghttp2_session_client_new(&p->ng, cbs, p), 0);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_settings_entry iv = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 0};
    assert_int_equal(nghttp2_submit_settings(p->ng, NGHTTP2_FLAG_NONE, &iv, zero_window ? 1 : 0),
                     0);
    assert_int_equal(rx_stream_connect(loop, "127.0.0.1", port, NULL, probe_connected, p, &p->s),
                     0);
    run_until(loop, &p->connected);
}

static void probe_open(probe_t *p, uv_loop_t *loop, int port)
{
    probe_open_window(p, loop, port, 0);
}

/* method/ctype/timeout may be NULL (header left out). */
static void probe_request(probe_t *p, pstream_t *ps, const char *method, const char *path,
                          const char *ctype, const char *timeout)
{
    nghttp2_nv nv[8];
    size_t n = 0;
#define ADD(N, V)                                                                                  \
    nv[n++] = (nghttp2_nv){(uint8_t *)(N), (uint8_t *)(uintptr_t)(V), strlen(N), strlen(V),        \
                           NGHTTP2_NV_FLAG_NONE}
    ADD(":method", method);
    ADD(":scheme", "http");
    ADD(":path", path);
    ADD(":authority", "localhost");
    if (ctype)
        ADD("content-type", ctype);
    if (timeout)
        ADD("grpc-timeout", timeout);
#undef ADD
    nghttp2_data_provider prd = {.source.ptr = ps, .read_callback = pb_read};
    int32_t sid =
        nghttp2_submit_request(p->ng, NULL, nv, n, ps->body || ps->hold ? &prd : NULL, ps);
    assert_true(sid > 0);
    ps->sid = sid;
    probe_pump(p);
}

static void probe_closed_cb(rx_stream_t *s)
{
    probe_t *p = rx_stream_ud(s);
    p->closed = 1;
}

static void probe_close(probe_t *p)
{
    rx_stream_close(p->s, probe_closed_cb);
    run_until(p->loop, &p->closed);
    nghttp2_session_del(p->ng);
}

static void test_wire_details(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, NULL, NULL);
    probe_t p;
    probe_open(&p, &e.loop, e.port);
    pstream_t ps[7];
    memset(ps, 0, sizeof(ps));

    /* unknown method, client still open: Trailers-Only (one HEADERS with END_STREAM carrying
     * :status 200, content-type, grpc-status 12), then RST_STREAM(NO_ERROR) */
    ps[0].hold = 1;
    probe_request(&p, &ps[0], "POST", "/x.Y/Z", "application/grpc", NULL);
    /* wrong content-type → 415; GET → 405 */
    probe_request(&p, &ps[1], "POST", "/test.Echo/Unary", "text/plain", NULL);
    probe_request(&p, &ps[2], "GET", "/test.Echo/Unary", "application/grpc", NULL);
    /* malformed grpc-timeout */
    probe_request(&p, &ps[3], "POST", "/test.Echo/Unary", "application/grpc+proto", "12x");
    /* the server's own deadline (this client never resets): DEADLINE_EXCEEDED + RST(CANCEL) */
    ps[4].hold = 1;
    probe_request(&p, &ps[4], "POST", "/test.Echo/Never", "application/grpc", "30m");
    /* the stream ends inside a message: INTERNAL, on_end(RPC_EPROTOCOL) */
    static const uint8_t trunc[] = {0, 0, 0, 0, 10, 'a', 'b'};
    ps[5].body = trunc;
    ps[5].body_len = sizeof(trunc);
    probe_request(&p, &ps[5], "POST", "/test.Echo/Sink", "application/grpc", NULL);
    /* a message with the compressed flag, none negotiated: UNIMPLEMENTED */
    static const uint8_t comp[] = {1, 0, 0, 0, 1, 'z'};
    ps[6].body = comp;
    ps[6].body_len = sizeof(comp);
    probe_request(&p, &ps[6], "POST", "/test.Echo/Sink", "application/grpc", NULL);

    run_until_n(&e.loop, &p.nclosed, 7);
    assert_int_equal(ps[0].headers_frames, 1);
    assert_int_equal(ps[0].first_headers_end_stream, 1);
    assert_string_equal(ps[0].status, "200");
    assert_string_equal(ps[0].ctype, "application/grpc");
    assert_string_equal(ps[0].grpc_status, "12");
    assert_int_equal(ps[0].rst_recv, 1);
    assert_int_equal(ps[0].rst_code, NGHTTP2_NO_ERROR);

    assert_string_equal(ps[1].status, "415");
    assert_int_equal(ps[1].first_headers_end_stream, 1);
    assert_string_equal(ps[2].status, "405");
    assert_string_equal(ps[3].status, "200");
    assert_string_equal(ps[3].grpc_status, "13");

    assert_int_equal(ps[4].headers_frames, 1);
    assert_string_equal(ps[4].grpc_status, "4");
    assert_int_equal(ps[4].rst_recv, 1);
    assert_int_equal(ps[4].rst_code, NGHTTP2_CANCEL);

    assert_string_equal(ps[5].grpc_status, "13");
    assert_string_equal(ps[6].grpc_status, "12");

    /* server calls: Never (deadline), Sink (truncated), Sink (compressed) */
    run_until_n(&e.loop, &S.ended, 3);
    int dl = 0, proto = 0;
    for (int i = 0; i < 3; i++) {
        dl += S.end_status[i] == RPC_EDEADLINE;
        proto += S.end_status[i] == RPC_EPROTOCOL;
    }
    assert_int_equal(dl, 1);
    assert_int_equal(proto, 2);
    probe_close(&p);
    env_stop(&e);
}

/* A call that ended (on_end ran) while its stream stays open, because its trailers wait behind a
 * zero flow-control window, is freed when the connection dies (else the server never closes). */
static void test_zombie_call_on_conn_loss(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, NULL, NULL);
    probe_t p;
    probe_open_window(&p, &e.loop, e.port, 1);
    pstream_t ps;
    memset(&ps, 0, sizeof(ps));
    /* one message (echoed: stalled by the window), then a prefix announcing 5 MiB */
    static const uint8_t body[] = {0, 0, 0, 0, 1, 'a', 0, 0, 0x50, 0, 0};
    ps.body = body;
    ps.body_len = sizeof(body);
    ps.hold = 1;
    probe_request(&p, &ps, "POST", "/test.Echo/Bidi", "application/grpc", NULL);
    run_until(&e.loop, &S.ended);
    assert_int_equal(S.end_status[0], RPC_ETOOBIG);
    assert_int_equal(S.msgs, 1);
    run_for(&e.loop, 50);
    assert_int_equal(ps.closed, 0); /* the stream is still open: trailers are held back */
    assert_int_equal(rpc_server_connections(e.srv), 2);
    probe_close(&p);
    /* env_stop: the server must close completely */
    env_stop(&e);
}

static void test_garbage(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, NULL, NULL);
    memset(&R, 0, sizeof(R));
    const char *g = "GET / HTTP/1.1\r\nHost: x\r\n\r\n\x01\x02\x03 garbage garbage garbage";
    R.out_len = strlen(g);
    R.out = malloc(R.out_len);
    memcpy(R.out, g, R.out_len);
    rx_stream_t *s;
    assert_int_equal(rx_stream_connect(&e.loop, "127.0.0.1", e.port, NULL, raw_connected, NULL, &s),
                     0);
    R.s[R.ns++] = s;
    run_until(&e.loop, &R.ended); /* closed by the server */
    raw_close_all(&e.loop);
    /* still serving */
    crec_t r = {0};
    assert_int_equal(
        rpc_unary(e.ch, "/test.Echo/Unary", NULL, 0, 0, (const uint8_t *)"ok", 2, &c_cb, &r, NULL),
        0);
    run_until(&e.loop, &r.done);
    assert_int_equal(r.status, RPC_STATUS_OK);
    assert_int_equal(rpc_server_connections(e.srv), 1);
    crec_free(&r, 1);
    env_stop(&e);
}

static void test_connect_refused(void **state)
{
    (void)state;
    env_t e;
    memset(&e, 0, sizeof(e));
    memset(&R, 0, sizeof(R));
    E = &e;
    assert_int_equal(uv_loop_init(&e.loop), 0);
    char err[200];
    assert_int_equal(
        rx_listen(&e.loop, "127.0.0.1", 0, NULL, 0, raw_accept, NULL, &R.l, err, sizeof(err)), 0);
    e.port = rx_listener_port(R.l);
    raw_close_all(&e.loop); /* the port is free again */
    env_channel(&e, NULL);
    crec_t r[3] = {{0}};
    for (int i = 0; i < 3; i++)
        assert_int_equal(rpc_unary(e.ch, "/test.Echo/Unary", NULL, 0, 0, (const uint8_t *)"x", 1,
                                   &c_cb, &r[i], NULL),
                         0);
    run_until(&e.loop, &e.ch_cb_fail);
    assert_int_equal(e.ch_cb_ok, 0);
    assert_true(e.ch_fail_status < 0);
    assert_true(rpc_channel_error_detail(e.ch)[0] != '\0');
    run_until_n(&e.loop, &e.done, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r[i].status, RPC_STATUS_UNAVAILABLE);
    rpc_channel_close(e.ch, ch_closed_cb, &e);
    run_until(&e.loop, &e.ch_closed);
    loop_finish(&e.loop);
}

static void test_many_concurrent(void **state)
{
    (void)state;
    env_t e;
    rpc_server_opts_t so;
    rpc_server_opts_init(&so);
    so.max_concurrent_streams = 100;
    env_start(&e, &so, NULL);
    S.gate_batch = 100;
    enum { N = 300 };
    crec_t *r = calloc(N, sizeof(*r));
    for (int i = 0; i < N; i++)
        assert_int_equal(rpc_unary(e.ch, "/test.Echo/Gate", NULL, 0, 0, (const uint8_t *)"g", 1,
                                   &c_cb, &r[i], NULL),
                         0);
    run_until_n(&e.loop, &e.done, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].status, RPC_STATUS_OK);
        assert_int_equal(r[i].nmsg, 1);
    }
    assert_int_equal(S.max_active, 100);
    run_until_n(&e.loop, &S.ended, N);
    crec_free(r, N);
    free(r);
    env_stop(&e);
}

static void test_server_close_active(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, NULL, NULL);
    enum { N = 5 };
    crec_t r[N] = {{0}};
    for (int i = 0; i < N; i++) {
        rpc_ccall_t *c;
        assert_int_equal(rpc_ccall_start(e.ch, "/test.Echo/Never", NULL, 0, 0, &c_cb, &r[i], &c),
                         0);
        assert_int_equal(rpc_ccall_send(c, (const uint8_t *)"x", 1), 0);
    }
    run_until_n(&e.loop, &S.accepted, N);
    rpc_server_close(e.srv, srv_closed_cb, &e);
    assert_int_equal(S.ended, 0); /* not inside the call */
    run_until(&e.loop, &e.srv_closed);
    e.srv = NULL;
    assert_int_equal(S.ended, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(S.end_status[i], RPC_ESHUTDOWN);
    run_until_n(&e.loop, &e.done, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(r[i].status, RPC_STATUS_UNAVAILABLE);
    run_until(&e.loop, &e.ch_cb_fail);
    assert_true(e.ch_fail_status == RPC_EGOAWAY || e.ch_fail_status == RPC_ECONNLOST);
    env_stop(&e);
}

static void test_channel_close_active(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, NULL, NULL);
    enum { N = 5 };
    crec_t r[N] = {{0}};
    for (int i = 0; i < N; i++) {
        rpc_ccall_t *c;
        assert_int_equal(rpc_ccall_start(e.ch, "/test.Echo/Never", NULL, 0, 0, &c_cb, &r[i], &c),
                         0);
        assert_int_equal(rpc_ccall_send(c, (const uint8_t *)"x", 1), 0);
    }
    run_until_n(&e.loop, &S.accepted, N);
    rpc_channel_close(e.ch, ch_closed_cb, &e);
    assert_int_equal(e.done, 0);
    run_until(&e.loop, &e.ch_closed);
    assert_int_equal(e.done, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].status, RPC_STATUS_CANCELLED);
        assert_string_equal(r[i].msg, "channel closed");
    }
    assert_int_equal(e.ch_cb_fail, 0); /* never after rpc_channel_close */
    e.ch = NULL;
    run_until_n(&e.loop, &S.ended, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(S.end_status[i], RPC_ECONNLOST);
    env_stop(&e);
}

static void test_close_from_callbacks(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, NULL, NULL);
    /* the channel closed from inside on_message of a streaming call */
    crec_t r = {0};
    r.close_channel_on_msg = 1;
    rpc_ccall_t *c;
    assert_int_equal(rpc_ccall_start(e.ch, "/test.Echo/Bidi", NULL, 0, 0, &c_cb, &r, &c), 0);
    for (uint32_t i = 0; i < 50; i++) {
        uint8_t b[4];
        put32(b, i);
        assert_int_equal(rpc_ccall_send(c, b, 4), 0);
    }
    run_until(&e.loop, &r.done);
    assert_int_equal(r.status, RPC_STATUS_CANCELLED);
    run_until(&e.loop, &S.ended);
    assert_int_equal(S.end_status[0], RPC_ECONNLOST);
    run_for(&e.loop, 20);
    e.ch = NULL; /* freed by itself (closed with a NULL callback) */

    /* the server closed from inside on_message */
    e.ch_cb_ok = e.ch_cb_fail = 0;
    env_channel(&e, NULL);
    crec_t r2 = {0};
    assert_int_equal(rpc_ccall_start(e.ch, "/test.Echo/CloseSrv", NULL, 0, 0, &c_cb, &r2, &c), 0);
    assert_int_equal(rpc_ccall_send(c, (const uint8_t *)"x", 1), 0);
    assert_int_equal(rpc_ccall_send(c, (const uint8_t *)"y", 1), 0);
    run_until(&e.loop, &r2.done);
    assert_int_equal(r2.status, RPC_STATUS_UNAVAILABLE);
    run_until_n(&e.loop, &S.ended, 2);
    assert_int_equal(S.end_status[1], RPC_ESHUTDOWN);
    assert_int_equal(S.msgs >= 1, 1);
    run_for(&e.loop, 20);
    e.srv = NULL; /* closed with a NULL callback */

    run_until(&e.loop, &e.ch_cb_fail); /* the channel failed when the server went */
    crec_t r3 = {0};
    assert_int_equal(rpc_unary(e.ch, "/test.Echo/Unary", NULL, 0, 0, NULL, 0, &c_cb, &r3, NULL),
                     RX_ESTATE);
    rpc_channel_close(e.ch, ch_closed_cb, &e);
    run_until(&e.loop, &e.ch_closed);
    crec_free(&r, 1);
    crec_free(&r2, 1);
    e.ch = NULL;
    env_stop(&e);
}

static void test_close_in_done(void **state)
{
    (void)state;
    env_t e;
    env_start(&e, NULL, NULL);
    crec_t r[3] = {{0}};
    r[0].close_channel_on_done = 1;
    assert_int_equal(rpc_unary(e.ch, "/test.Echo/Unary", NULL, 0, 0, NULL, 0, &c_cb, &r[0], NULL),
                     0);
    rpc_ccall_t *c;
    assert_int_equal(rpc_ccall_start(e.ch, "/test.Echo/Never", NULL, 0, 0, &c_cb, &r[1], &c), 0);
    assert_int_equal(rpc_ccall_start(e.ch, "/test.Echo/Never", NULL, 0, 0, &c_cb, &r[2], &c), 0);
    run_until(&e.loop, &e.ch_closed);
    assert_int_equal(e.done, 3);
    assert_int_equal(r[0].status, RPC_STATUS_OK);
    assert_int_equal(r[1].status, RPC_STATUS_CANCELLED);
    assert_int_equal(r[2].status, RPC_STATUS_CANCELLED);
    e.ch = NULL;
    crec_free(r, 3);
    env_stop(&e);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    rpc_err_register();
    rx_log_set(quiet_logger, NULL, RX_LOG_TRACE);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary),
        cmocka_unit_test(test_bidi_1000),
        cmocka_unit_test(test_server_stream_large),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_unimplemented),
        cmocka_unit_test(test_unauthenticated),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_server_finish_early),
        cmocka_unit_test(test_keepalive_client),
        cmocka_unit_test(test_keepalive_server),
        cmocka_unit_test(test_wire_details),
        cmocka_unit_test(test_zombie_call_on_conn_loss),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_many_concurrent),
        cmocka_unit_test(test_server_close_active),
        cmocka_unit_test(test_channel_close_active),
        cmocka_unit_test(test_close_from_callbacks),
        cmocka_unit_test(test_close_in_done),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
