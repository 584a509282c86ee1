/* interop_peer — our gRPC server or client, driven by interop.py against Python grpcio.
 *
 *   interop_peer server [keepalive_ms]
 *       Serves interop.Echo on 127.0.0.1 (ephemeral port), prints "PORT <n>", then one line per
 *       ended call ("END <path> <ok|deadline|cancelled|...>"), and on SIGTERM closes the server,
 *       prints "CLOSED" and exits 0.
 *   interop_peer client <port>
 *       Runs our client against a grpcio interop.Echo server; prints "PASS <name>" or
 *       "FAIL <name>: why" per check; exit status 0 when every check passed.
 *
 * Messages are raw bytes (no protobuf): grpcio generic handlers without (de)serializers pass
 * bytes through. */
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "rpc/client.h"
#include "rpc/err.h"
#include "rpc/grpc.h"
#include "rpc/server.h"
#include "rx/err.h"
#include "rx/log.h"

#define MS 1000000ull

static uv_loop_t loop;

static void logger(void *ud, rx_log_level_t level, const char *subsys, int core, const char *msg)
{
    (void)ud;
    (void)core;
    if (getenv("RPC_TEST_VERBOSE"))
        fprintf(stderr, "[%s] %s: %s\n", rx_log_level_name(level), subsys, msg);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ------------------------------------------------------------------------------------------- */
/* Server                                                                                       */

enum kind { K_UNARY, K_BIDI, K_STREAM, K_NEVER, K_SINK };

typedef struct sc {
    enum kind kind;
    uint8_t *first;
    size_t first_len;
    int msgs;
    size_t bytes;
} sc_t;

static rpc_server_t *srv;
static uv_signal_t sig;

static const char *end_name(int st)
{
    switch (st) {
    case 0:
        return "ok";
    case RPC_EDEADLINE:
        return "deadline";
    case RPC_ECANCELLED:
        return "cancelled";
    case RPC_ESHUTDOWN:
        return "shutdown";
    case RPC_ECONNLOST:
        return "connlost";
    case RPC_EKEEPALIVE:
        return "keepalive";
    case RPC_ETOOBIG:
        return "toobig";
    default:
        return "other";
    }
}

static void s_end(rpc_scall_t *c, int status, void *ud)
{
    sc_t *x = ud;
    printf("END %s %s\n", rpc_scall_path(c), end_name(status));
    free(x->first);
    free(x);
}

static void s_msg(rpc_scall_t *c, const uint8_t *msg, size_t len, void *ud)
{
    sc_t *x = ud;
    x->msgs++;
    x->bytes += len;
    if (x->kind == K_BIDI) {
        rpc_scall_send(c, msg, len);
    } else if (!x->first) {
        x->first = malloc(len ? len : 1);
        memcpy(x->first, msg, len);
        x->first_len = len;
    }
}

static void s_half(rpc_scall_t *c, void *ud)
{
    sc_t *x = ud;
    switch (x->kind) {
    case K_UNARY:
        if (x->msgs != 1) {
            rpc_scall_finish(c, RPC_STATUS_INVALID_ARGUMENT, "unary needs one message");
            return;
        }
        rpc_scall_send(c, x->first, x->first_len);
        rpc_scall_finish(c, RPC_STATUS_OK, NULL);
        break;
    case K_BIDI:
        rpc_scall_finish(c, RPC_STATUS_OK, "bidi done \xe2\x9c\x93 100%");
        break;
    case K_STREAM: {
        if (x->first_len != 8) {
            rpc_scall_finish(c, RPC_STATUS_INVALID_ARGUMENT, "want 8 bytes");
            return;
        }
        uint32_t n = get32(x->first), size = get32(x->first + 4);
        uint8_t *b = malloc(size ? size : 1);
        for (uint32_t i = 0; i < n; i++) {
            memset(b, (int)(i & 0xff), size);
            rpc_scall_send(c, b, size);
        }
        free(b);
        rpc_scall_finish(c, RPC_STATUS_OK, NULL);
        break;
    }
    case K_SINK: {
        char m[32];
        int l = snprintf(m, sizeof(m), "%zu", x->bytes);
        rpc_scall_send(c, (const uint8_t *)m, (size_t)l);
        rpc_scall_finish(c, RPC_STATUS_OK, NULL);
        break;
    }
    default:
        break;
    }
}

static const rpc_scall_cb_t s_cb = {s_msg, s_half, s_end};

static void accept_as(rpc_scall_t *c, enum kind k)
{
    sc_t *x = calloc(1, sizeof(*x));
    x->kind = k;
    rpc_scall_accept(c, &s_cb, x);
}

static void h_unary(rpc_scall_t *c, void *ud)
{
    (void)ud;
    accept_as(c, K_UNARY);
}
static void h_bidi(rpc_scall_t *c, void *ud)
{
    (void)ud;
    accept_as(c, K_BIDI);
}
static void h_stream(rpc_scall_t *c, void *ud)
{
    (void)ud;
    accept_as(c, K_STREAM);
}
static void h_never(rpc_scall_t *c, void *ud)
{
    (void)ud;
    accept_as(c, K_NEVER);
}
static void h_sink(rpc_scall_t *c, void *ud)
{
    (void)ud;
    accept_as(c, K_SINK);
}
static void h_status(rpc_scall_t *c, void *ud)
{
    (void)ud;
    rpc_scall_finish(c, RPC_STATUS_PERMISSION_DENIED, "n\xc3\xb6 100% denied \xe2\x9c\x93");
}
static void h_auth(rpc_scall_t *c, void *ud)
{
    (void)ud;
    const char *a = rpc_scall_header(c, "authorization");
    if (!a || strcmp(a, "Bearer interop") != 0) {
        rpc_scall_finish(c, RPC_STATUS_UNAUTHENTICATED, "bad token \xe2\x9c\x97");
        return;
    }
    accept_as(c, K_UNARY);
}

static void srv_closed(void *ud)
{
    (void)ud;
    printf("CLOSED\n");
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    uv_close((uv_handle_t *)s, NULL);
    rpc_server_close(srv, srv_closed, NULL);
}

static int run_server(uint64_t ka_ms)
{
    rpc_server_opts_t o;
    rpc_server_opts_init(&o);
    o.keepalive_interval_ns = ka_ms * MS;
    o.keepalive_timeout_ns = 5000 * MS;
    if (rpc_server_create(&loop, &o, &srv) != 0)
        return 1;
    rpc_server_add_method(srv, "/interop.Echo/Unary", h_unary, NULL);
    rpc_server_add_method(srv, "/interop.Echo/Bidi", h_bidi, NULL);
    rpc_server_add_method(srv, "/interop.Echo/ServerStream", h_stream, NULL);
    rpc_server_add_method(srv, "/interop.Echo/Never", h_never, NULL);
    rpc_server_add_method(srv, "/interop.Echo/Sink", h_sink, NULL);
    rpc_server_add_method(srv, "/interop.Echo/Status", h_status, NULL);
    rpc_server_add_method(srv, "/interop.Echo/Auth", h_auth, NULL);
    char err[200];
    int rc = rpc_server_listen(srv, "127.0.0.1", 0, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "listen: %s\n", err);
        return 1;
    }
    uv_signal_init(&loop, &sig);
    uv_signal_start(&sig, on_signal, SIGTERM);
    printf("PORT %d\n", rpc_server_port(srv));
    uv_run(&loop, UV_RUN_DEFAULT);
    return uv_loop_close(&loop) == 0 ? 0 : 2;
}

/* ------------------------------------------------------------------------------------------- */
/* Client                                                                                       */

typedef struct res {
    int done;
    rpc_status_t st;
    char msg[512];
    int n;
    size_t bytes;
    uint8_t *first;
    size_t first_len;
    int seq_ok;
    int fill_ok; /* message i is filled with byte i */
    uint32_t fill_size;
} res_t;

static rpc_channel_t *ch;
static int ch_failed, ch_status, fails;

static void on_channel(rpc_channel_t *c, int status, void *ud)
{
    (void)c;
    (void)ud;
    if (status < 0) {
        ch_failed = 1;
        ch_status = status;
    }
}

static void c_msg(rpc_ccall_t *c, const uint8_t *m, size_t len, void *ud)
{
    (void)c;
    res_t *r = ud;
    if (r->seq_ok && (len != 4 || get32(m) != (uint32_t)r->n))
        r->seq_ok = 0;
    if (r->fill_ok) {
        if (len != r->fill_size)
            r->fill_ok = 0;
        for (size_t i = 0; i < len && r->fill_ok; i++)
            if (m[i] != (uint8_t)(r->n & 0xff))
                r->fill_ok = 0;
    }
    if (!r->first) {
        r->first = malloc(len + 1);
        memcpy(r->first, m, len);
        r->first[len] = 0;
        r->first_len = len;
    }
    r->n++;
    r->bytes += len;
}

static void c_done(rpc_ccall_t *c, rpc_status_t st, const char *msg, void *ud)
{
    (void)c;
    res_t *r = ud;
    r->done++;
    r->st = st;
    snprintf(r->msg, sizeof(r->msg), "%s", msg);
}

static const rpc_ccall_cb_t c_cb = {c_msg, c_done};

static void tick(uv_timer_t *t)
{
    (void)t;
}

static void wait_done(res_t *r, int secs)
{
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, tick, 10, 10);
    uint64_t end = uv_hrtime() + (uint64_t)secs * 1000 * MS;
    while (!r->done && uv_hrtime() < end)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

static void sleep_loop(unsigned ms)
{
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, tick, 10, 10);
    uint64_t end = uv_hrtime() + ms * MS;
    while (uv_hrtime() < end)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

static void check(int ok, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void check(int ok, const char *name, const char *fmt, ...)
{
    if (ok) {
        printf("PASS %s\n", name);
        return;
    }
    fails++;
    char b[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof(b), fmt, ap);
    va_end(ap);
    printf("FAIL %s: %s\n", name, b);
}

static void res_free(res_t *r)
{
    free(r->first);
    memset(r, 0, sizeof(*r));
}

static int run_client(int port)
{
    rpc_channel_opts_t o;
    rpc_channel_opts_init(&o);
    o.keepalive_interval_ns = 100 * MS;
    o.keepalive_timeout_ns = 5000 * MS;
    int rc = rpc_channel_open(&loop, "127.0.0.1", port, &o, on_channel, NULL, &ch);
    if (rc != 0) {
        printf("FAIL open: %s\n", rpc_strerror(rc));
        return 1;
    }
    res_t r = {0};

    /* unary */
    rpc_unary(ch, "/interop.Echo/Unary", NULL, 0, 5000 * MS, (const uint8_t *)"hello", 5, &c_cb, &r,
              NULL);
    wait_done(&r, 10);
    check(r.done == 1 && r.st == RPC_STATUS_OK && r.n == 1 && r.first_len == 5 &&
              memcmp(r.first, "hello", 5) == 0,
          "client-unary", "done %d status %s '%s' n %d", r.done, rpc_status_name(r.st), r.msg, r.n);
    res_free(&r);

    /* bidirectional streaming */
    r.seq_ok = 1;
    rpc_ccall_t *c;
    rpc_ccall_start(ch, "/interop.Echo/Bidi", NULL, 0, 10000 * MS, &c_cb, &r, &c);
    for (uint32_t i = 0; i < 500; i++) {
        uint8_t b[4];
        put32(b, i);
        rpc_ccall_send(c, b, 4);
    }
    rpc_ccall_close_send(c);
    wait_done(&r, 15);
    check(r.done == 1 && r.st == RPC_STATUS_OK && r.n == 500 && r.seq_ok, "client-bidi",
          "done %d status %s '%s' n %d seq %d", r.done, rpc_status_name(r.st), r.msg, r.n,
          r.seq_ok);
    res_free(&r);

    /* server streaming, large messages */
    uint8_t req[8];
    put32(req, 3);
    put32(req + 4, 3u << 20);
    r.fill_ok = 1;
    r.fill_size = 3u << 20;
    rpc_unary(ch, "/interop.Echo/ServerStream", NULL, 0, 20000 * MS, req, 8, &c_cb, &r, NULL);
    wait_done(&r, 25);
    check(r.done == 1 && r.st == RPC_STATUS_OK && r.n == 3 && r.fill_ok, "client-server-stream",
          "done %d status %s '%s' n %d fill %d", r.done, rpc_status_name(r.st), r.msg, r.n,
          r.fill_ok);
    res_free(&r);

    /* client streaming, large messages */
    rpc_ccall_start(ch, "/interop.Echo/Sink", NULL, 0, 20000 * MS, &c_cb, &r, &c);
    uint8_t *big = calloc(1, 1u << 20);
    for (int i = 0; i < 4; i++)
        rpc_ccall_send(c, big, 1u << 20);
    free(big);
    rpc_ccall_close_send(c);
    wait_done(&r, 25);
    check(r.done == 1 && r.st == RPC_STATUS_OK && r.n == 1 && r.first &&
              strcmp((char *)r.first, "4194304") == 0,
          "client-sink", "done %d status %s '%s' n %d got '%s'", r.done, rpc_status_name(r.st),
          r.msg, r.n, r.first ? (char *)r.first : "");
    res_free(&r);

    /* deadline */
    uint64_t t0 = uv_hrtime();
    rpc_unary(ch, "/interop.Echo/Never", NULL, 0, 200 * MS, (const uint8_t *)"x", 1, &c_cb, &r,
              NULL);
    wait_done(&r, 10);
    uint64_t took = uv_hrtime() - t0;
    check(r.done == 1 && r.st == RPC_STATUS_DEADLINE_EXCEEDED && took < 3000 * MS,
          "client-deadline", "done %d status %s '%s' after %llu ms", r.done, rpc_status_name(r.st),
          r.msg, (unsigned long long)(took / MS));
    res_free(&r);

    /* status + message (non-ASCII and '%') */
    rpc_unary(ch, "/interop.Echo/Status", NULL, 0, 5000 * MS, (const uint8_t *)"x", 1, &c_cb, &r,
              NULL);
    wait_done(&r, 10);
    check(r.done == 1 && r.st == RPC_STATUS_PERMISSION_DENIED &&
              strcmp(r.msg, "n\xc3\xb6 100% denied \xe2\x9c\x93") == 0,
          "client-status-message", "status %s '%s'", rpc_status_name(r.st), r.msg);
    res_free(&r);

    /* metadata */
    rpc_md_t md = {"authorization", "Bearer interop-token"};
    rpc_unary(ch, "/interop.Echo/Metadata", &md, 1, 5000 * MS, (const uint8_t *)"x", 1, &c_cb, &r,
              NULL);
    wait_done(&r, 10);
    check(r.done == 1 && r.st == RPC_STATUS_OK && r.first &&
              strcmp((char *)r.first, "Bearer interop-token") == 0,
          "client-metadata", "status %s '%s' got '%s'", rpc_status_name(r.st), r.msg,
          r.first ? (char *)r.first : "");
    res_free(&r);

    /* unimplemented */
    rpc_unary(ch, "/interop.Echo/Nope", NULL, 0, 5000 * MS, (const uint8_t *)"x", 1, &c_cb, &r,
              NULL);
    wait_done(&r, 10);
    check(r.done == 1 && r.st == RPC_STATUS_UNIMPLEMENTED, "client-unimplemented", "status %s '%s'",
          rpc_status_name(r.st), r.msg);
    res_free(&r);

    /* cancel: the server sees its context end */
    rpc_ccall_start(ch, "/interop.Echo/Never", NULL, 0, 0, &c_cb, &r, &c);
    rpc_ccall_send(c, (const uint8_t *)"c", 1);
    sleep_loop(200);
    rpc_ccall_cancel(c);
    wait_done(&r, 10);
    check(r.done == 1 && r.st == RPC_STATUS_CANCELLED, "client-cancel", "status %s '%s'",
          rpc_status_name(r.st), r.msg);
    res_free(&r);

    /* keepalive: idle with PINGs every 100 ms; grpcio (configured to allow it) answers them */
    sleep_loop(1000);
    rpc_unary(ch, "/interop.Echo/Unary", NULL, 0, 5000 * MS, (const uint8_t *)"again", 5, &c_cb, &r,
              NULL);
    wait_done(&r, 10);
    check(r.done == 1 && r.st == RPC_STATUS_OK && !ch_failed, "client-keepalive-idle",
          "status %s '%s' channel failed %d (%s)", rpc_status_name(r.st), r.msg, ch_failed,
          rpc_channel_error_detail(ch));
    res_free(&r);

    rpc_channel_close(ch, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        printf("FAIL loop-close: handles left open\n");
        fails++;
    }
    return fails ? 1 : 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    rpc_err_register();
    rx_log_set(logger, NULL, RX_LOG_TRACE);
    uv_loop_init(&loop);
    if (argc >= 2 && strcmp(argv[1], "server") == 0)
        return run_server(argc >= 3 ? strtoull(argv[2], NULL, 10) : 0);
    if (argc >= 3 && strcmp(argv[1], "client") == 0)
        return run_client(atoi(argv[2]));
    fprintf(stderr, "usage: %s server [keepalive_ms] | client <port>\n", argv[0]);
    return 2;
}
