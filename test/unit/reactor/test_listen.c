/* Unit tests for the listener half of rx/stream.h: an rx_listener_t and rx_stream_connect clients
 * on the same loop (one loop per test, closed with uv_loop_close == 0 at the end).
 * Loopback only: no packet ever leaves the machine. */
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
#include <uv.h>

#include "rx/err.h"
#include "rx/log.h"
#include "rx/stream.h"

#include "loop_helpers.h"

/* ---- the server under test: an rx_listener_t whose streams echo (or not) ---- */

enum { MAXCONN = 64 };

typedef struct sv {
    uv_loop_t *loop;
    rx_listener_t *l;
    int port;
    int echo;          /* echo what is read */
    int close_on_end;  /* close a stream when its reading ends */
    int no_read;       /* do not read_start accepted streams */
    const char *hello; /* written on accept; the stream is closed when that write completes */
    int accepted, accept_errors, ud_ok;
    int ended, ended_eof, ended_other;
    int closed;
    int writes_ok, writes_canceled, writes_other;
    int lclosed;
    rx_stream_t *conns[MAXCONN];
    char peer[MAXCONN][64];
} sv_t;

static void sv_forget(sv_t *sv, rx_stream_t *s)
{
    for (int i = 0; i < MAXCONN; i++) {
        if (sv->conns[i] == s)
            sv->conns[i] = NULL;
    }
}

static void sv_on_closed(rx_stream_t *s)
{
    sv_t *sv = rx_stream_ud(s);
    sv->closed++;
    sv_forget(sv, s);
}

static void sv_on_written(rx_stream_t *s, int status, void *ud)
{
    sv_t *sv = rx_stream_ud(s);
    free(ud);
    if (status == 0)
        sv->writes_ok++;
    else if (status == RX_ECANCELED)
        sv->writes_canceled++;
    else
        sv->writes_other++;
}

static void sv_on_data(rx_stream_t *s, const char *data, size_t len)
{
    sv_t *sv = rx_stream_ud(s);
    if (!sv->echo)
        return;
    char *copy = malloc(len); /* data is only valid during the call */
    assert_non_null(copy);
    memcpy(copy, data, len);
    struct iovec iov = {copy, len};
    assert_int_equal(rx_stream_write(s, &iov, 1, sv_on_written, copy), 0);
}

static void sv_on_end(rx_stream_t *s, int status)
{
    sv_t *sv = rx_stream_ud(s);
    sv->ended++;
    if (status == UV_EOF)
        sv->ended_eof++;
    else
        sv->ended_other++;
    if (sv->close_on_end)
        rx_stream_close(s, sv_on_closed);
}

static void sv_hello_written(rx_stream_t *s, int status, void *ud)
{
    sv_t *sv = rx_stream_ud(s);
    (void)ud;
    if (status == 0)
        sv->writes_ok++;
    else
        sv->writes_other++;
    rx_stream_close(s, sv_on_closed);
}

static void sv_on_accept(rx_listener_t *l, rx_stream_t *s, int status, void *ud)
{
    sv_t *sv = ud;
    assert_ptr_equal(l, sv->l);
    if (status < 0) {
        assert_null(s);
        sv->accept_errors++;
        return;
    }
    assert_non_null(s);
    assert_true(rx_stream_is_open(s));
    assert_false(rx_stream_is_tls(s));
    assert_null(rx_stream_alpn(s));
    assert_ptr_equal(rx_stream_loop(s), sv->loop);
    if (rx_stream_ud(s) == NULL)
        sv->ud_ok++;
    rx_stream_set_ud(s, sv);
    int slot = sv->accepted++;
    assert_true(slot < MAXCONN);
    sv->conns[slot] = s;
    snprintf(sv->peer[slot], sizeof sv->peer[slot], "%s", rx_stream_peer(s));
    if (!sv->no_read)
        assert_int_equal(rx_stream_read_start(s, sv_on_data, sv_on_end), 0);
    if (sv->hello != NULL) {
        struct iovec iov = {(void *)sv->hello, strlen(sv->hello)};
        assert_int_equal(rx_stream_write(s, &iov, 1, sv_hello_written, NULL), 0);
        assert_int_equal(sv->writes_ok, 0); /* never from inside the call */
    }
}

static void sv_on_lclosed(rx_listener_t *l, void *ud)
{
    sv_t *sv = ud;
    assert_ptr_equal(l, sv->l);
    sv->lclosed++;
}

/* Returns rx_listen's code; on success sv->l and sv->port are set. */
static int sv_start(uv_loop_t *loop, sv_t *sv, const char *host, int backlog)
{
    memset(sv, 0, sizeof *sv);
    sv->loop = loop;
    sv->echo = 1;
    sv->close_on_end = 1;
    char err[256];
    int r = rx_listen(loop, host, 0, NULL, backlog, sv_on_accept, sv, &sv->l, err, sizeof err);
    if (r < 0) {
        assert_null(sv->l);
        assert_true(err[0] != '\0');
        return r;
    }
    assert_non_null(sv->l);
    sv->port = rx_listener_port(sv->l);
    assert_true(sv->port > 0 && sv->port < 65536);
    return 0;
}

static void sv_stop(sv_t *sv)
{
    for (int i = 0; i < MAXCONN; i++) {
        if (sv->conns[i] != NULL)
            rx_stream_close(sv->conns[i], sv_on_closed);
    }
    int want = sv->lclosed + 1;
    rx_listener_close(sv->l, sv_on_lclosed);
    rx_listener_close(sv->l, sv_on_lclosed); /* idempotent */
    run_until_n(sv->loop, &sv->lclosed, want);
    assert_int_equal(sv->lclosed, want);
}

/* ---- a client driven by callbacks ---- */

typedef struct client {
    uv_loop_t *loop;
    rx_stream_t *s;
    int connected;
    int connect_status;
    int ended;
    int end_status;
    int closed;
    int done;
    int no_read;
    char peer[64];
    char *rx;
    size_t rx_len, rx_cap;
    size_t expect; /* done once this many bytes arrived (0: never) */
    int writes_done, writes_ok, writes_other;
} client_t;

static void c_on_closed(rx_stream_t *s)
{
    client_t *c = rx_stream_ud(s);
    c->closed++;
    c->s = NULL;
}

static void c_on_end(rx_stream_t *s, int status)
{
    client_t *c = rx_stream_ud(s);
    c->ended = 1;
    c->end_status = status;
}

static void c_on_data(rx_stream_t *s, const char *data, size_t len)
{
    client_t *c = rx_stream_ud(s);
    assert_true(len > 0);
    if (c->rx_len + len > c->rx_cap) {
        c->rx_cap = (c->rx_len + len) * 2;
        c->rx = realloc(c->rx, c->rx_cap);
        assert_non_null(c->rx);
    }
    memcpy(c->rx + c->rx_len, data, len);
    c->rx_len += len;
    if (c->expect != 0 && c->rx_len >= c->expect)
        c->done = 1;
}

static void c_on_written(rx_stream_t *s, int status, void *ud)
{
    client_t *c = rx_stream_ud(s);
    (void)ud;
    c->writes_done++;
    if (status == 0)
        c->writes_ok++;
    else
        c->writes_other++;
}

static void c_on_connect(rx_stream_t *s, int status)
{
    client_t *c = rx_stream_ud(s);
    c->connected = 1;
    c->connect_status = status;
    snprintf(c->peer, sizeof c->peer, "%s", rx_stream_peer(s));
    if (status == 0 && !c->no_read)
        assert_int_equal(rx_stream_read_start(s, c_on_data, c_on_end), 0);
}

static void client_init(client_t *c, uv_loop_t *loop)
{
    memset(c, 0, sizeof *c);
    c->loop = loop;
}

/* Starts a connect (does not wait). */
static void client_start(client_t *c, const char *host, int port)
{
    assert_int_equal(rx_stream_connect(c->loop, host, port, NULL, c_on_connect, c, &c->s), 0);
    assert_non_null(c->s);
}

static int client_connect(client_t *c, const char *host, int port)
{
    client_start(c, host, port);
    run_until(c->loop, &c->connected);
    return c->connect_status;
}

static void client_close_wait(client_t *c)
{
    if (c->s != NULL)
        rx_stream_close(c->s, c_on_closed);
    run_until(c->loop, &c->closed);
    assert_int_equal(c->closed, 1);
    free(c->rx);
    c->rx = NULL;
}

/* Sends a short message and waits for its echo. */
static void client_ping(client_t *c, const char *msg)
{
    size_t n = strlen(msg);
    c->rx_len = 0;
    c->done = 0;
    c->expect = n;
    struct iovec iov = {(void *)msg, n};
    assert_int_equal(rx_stream_write(c->s, &iov, 1, c_on_written, NULL), 0);
    run_until(c->loop, &c->done);
    assert_int_equal(c->rx_len, n);
    assert_memory_equal(c->rx, msg, n);
}

/* "ip:port" with a port in 1..65535; returns the port. */
static int peer_port(const char *peer, const char *ip_prefix)
{
    size_t pl = strlen(ip_prefix);
    assert_true(strncmp(peer, ip_prefix, pl) == 0);
    assert_true(peer[pl] == ':');
    char *end;
    long port = strtol(peer + pl + 1, &end, 10);
    assert_true(*end == '\0');
    assert_true(port > 0 && port < 65536);
    return (int)port;
}

/* ---- tests ---- */

static void test_args(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    rx_listener_t *l = (rx_listener_t *)(uintptr_t)1;
    char err[128];
    int dummy;
    assert_int_equal(rx_listen(NULL, "127.0.0.1", 0, NULL, 0, sv_on_accept, NULL, &l, err,
                               sizeof err),
                     RX_EINVAL);
    assert_null(l);
    assert_true(err[0] != '\0');
    assert_int_equal(rx_listen(&loop, NULL, 0, NULL, 0, sv_on_accept, NULL, &l, err, sizeof err),
                     RX_EINVAL);
    assert_int_equal(rx_listen(&loop, "", 0, NULL, 0, sv_on_accept, NULL, &l, err, sizeof err),
                     RX_EINVAL);
    assert_int_equal(rx_listen(&loop, "[]", 0, NULL, 0, sv_on_accept, NULL, &l, err, sizeof err),
                     RX_EINVAL);
    assert_int_equal(
        rx_listen(&loop, "127.0.0.1", -1, NULL, 0, sv_on_accept, NULL, &l, err, sizeof err),
        RX_EINVAL);
    assert_int_equal(
        rx_listen(&loop, "127.0.0.1", 65536, NULL, 0, sv_on_accept, NULL, &l, err, sizeof err),
        RX_EINVAL);
    assert_int_equal(
        rx_listen(&loop, "127.0.0.1", 0, NULL, -1, sv_on_accept, NULL, &l, err, sizeof err),
        RX_EINVAL);
    assert_int_equal(rx_listen(&loop, "127.0.0.1", 0, NULL, 0, NULL, NULL, &l, err, sizeof err),
                     RX_EINVAL);
    assert_int_equal(
        rx_listen(&loop, "127.0.0.1", 0, NULL, 0, sv_on_accept, NULL, NULL, err, sizeof err),
        RX_EINVAL);
    /* err may be NULL */
    assert_int_equal(rx_listen(&loop, "127.0.0.1", 0, NULL, 0, NULL, NULL, &l, NULL, 0),
                     RX_EINVAL);
    /* TLS server mode is not implemented: refused, not silently plaintext. */
    rx_stream_opts_t o;
    rx_stream_opts_init(&o);
    o.tls = 1;
    assert_int_equal(rx_listen(&loop, "127.0.0.1", 0, &o, 0, sv_on_accept, &dummy, &l, err,
                               sizeof err),
                     RX_EINVAL);
    assert_null(l);
    assert_non_null(strstr(err, "TLS"));
    /* Not a local address. */
    assert_int_equal(rx_listen(&loop, "192.0.2.1", 0, NULL, 0, sv_on_accept, &dummy, &l, err,
                               sizeof err),
                     UV_EADDRNOTAVAIL);
    assert_null(l);
    assert_non_null(strstr(err, "192.0.2.1"));
    assert_int_equal(rx_listener_port(NULL), 0);
    rx_listener_close(NULL, NULL);
    assert_string_equal(rx_stream_peer(NULL), "");
    loop_finish(&loop);
}

/* Echo both ways: the client writes 1 MiB as 16 writes of 16 iovecs, the rx server echoes every
 * slice, the client checks the exact bytes; then the client closes and the server sees UV_EOF. */
static void echo_roundtrip(uv_loop_t *loop, const char *listen_host, const char *connect_host,
                           const char *ip)
{
    sv_t sv;
    assert_int_equal(sv_start(loop, &sv, listen_host, 0), 0);

    client_t c;
    client_init(&c, loop);
    assert_int_equal(client_connect(&c, connect_host, sv.port), 0);
    run_until(loop, &sv.accepted);
    assert_int_equal(sv.accepted, 1);
    assert_int_equal(sv.ud_ok, 1);

    /* peers: the client sees the listener's address, the server sees the client's. */
    char want[80];
    snprintf(want, sizeof want, "%s:%d", ip, sv.port);
    assert_string_equal(c.peer, want);
    assert_string_equal(rx_stream_peer(c.s), want);
    int cport = peer_port(sv.peer[0], ip);
    assert_int_not_equal(cport, sv.port);
    assert_string_equal(rx_stream_peer(sv.conns[0]), sv.peer[0]);

    enum { TOTAL = 1 << 20, NW = 16, NIOV = 16, PIECE = TOTAL / NW / NIOV };
    char *data = malloc(TOTAL);
    assert_non_null(data);
    fill_pattern(data, TOTAL, 11);
    c.expect = TOTAL;
    for (int w = 0; w < NW; w++) {
        struct iovec iov[NIOV];
        for (int i = 0; i < NIOV; i++) {
            iov[i].iov_base = data + ((size_t)w * NIOV + (size_t)i) * PIECE;
            iov[i].iov_len = PIECE;
        }
        assert_int_equal(rx_stream_write(c.s, iov, NIOV, c_on_written, NULL), 0);
    }
    run_until(loop, &c.done);
    assert_int_equal(c.rx_len, TOTAL);
    assert_memory_equal(c.rx, data, TOTAL);
    assert_int_equal(c.writes_ok, NW);
    assert_int_equal(sv.writes_other + sv.writes_canceled, 0);
    assert_true(sv.writes_ok >= 1);

    /* client closes → the server's stream ends with UV_EOF and is closed by sv_on_end */
    client_close_wait(&c);
    run_until(loop, &sv.closed);
    assert_int_equal(sv.ended_eof, 1);
    assert_int_equal(sv.ended_other, 0);
    free(data);
    sv_stop(&sv);
}

static void test_echo_v4(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    echo_roundtrip(&loop, "127.0.0.1", "127.0.0.1", "127.0.0.1");
    loop_finish(&loop);
}

static void test_echo_v6(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    /* Skipped only when ::1 cannot be bound (no IPv6 loopback in this sandbox/container): then
     * rx_listen gives UV_EADDRNOTAVAIL. Any other failure fails the test. */
    sv_t probe;
    int r = sv_start(&loop, &probe, "::1", 0);
    if (r == UV_EADDRNOTAVAIL) {
        loop_finish(&loop);
        skip();
        return;
    }
    assert_int_equal(r, 0);
    sv_stop(&probe);
    echo_roundtrip(&loop, "::1", "::1", "[::1]");
    echo_roundtrip(&loop, "[::1]", "[::1]", "[::1]");
    loop_finish(&loop);
}

/* The server writes, closes once the write completed; the client reads it, then UV_EOF. */
static void test_server_closes(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sv_t sv;
    assert_int_equal(sv_start(&loop, &sv, "localhost", 0), 0);
    sv.hello = "hello from the server";
    client_t c;
    client_init(&c, &loop);
    assert_int_equal(client_connect(&c, "localhost", sv.port), 0);
    run_until(&loop, &sv.closed);
    assert_int_equal(sv.writes_ok, 1);
    run_until(&loop, &c.ended);
    assert_int_equal(c.end_status, UV_EOF);
    assert_int_equal(c.rx_len, strlen(sv.hello));
    assert_memory_equal(c.rx, sv.hello, c.rx_len);
    assert_true(rx_stream_is_open(c.s)); /* reading ended; the owner still has to close */
    client_close_wait(&c);
    assert_int_equal(sv.ended, 0);
    sv_stop(&sv);
    loop_finish(&loop);
}

/* Pending writes of an accepted stream get RX_ECANCELED at close, never from inside the call;
 * close is idempotent; the stream refuses I/O once closing. */
static void test_accepted_close_cancels_writes(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sv_t sv;
    assert_int_equal(sv_start(&loop, &sv, "127.0.0.1", 0), 0);
    sv.no_read = 1;
    client_t c;
    client_init(&c, &loop);
    c.no_read = 1; /* the client never reads, so the server's writes back up */
    assert_int_equal(client_connect(&c, "127.0.0.1", sv.port), 0);
    run_until(&loop, &sv.accepted);
    rx_stream_t *s = sv.conns[0];

    enum { MB = 1 << 20, NW = 64 };
    char *data = calloc(1, MB);
    assert_non_null(data);
    for (int i = 0; i < NW; i++) {
        struct iovec iov = {data, MB};
        assert_int_equal(rx_stream_write(s, &iov, 1, sv_on_written, NULL), 0);
    }
    rx_stream_close(s, sv_on_closed);
    rx_stream_close(s, sv_on_closed);
    assert_false(rx_stream_is_open(s));
    struct iovec iov = {data, 1};
    assert_int_equal(rx_stream_write(s, &iov, 1, sv_on_written, NULL), RX_ESTATE);
    assert_int_equal(rx_stream_read_start(s, sv_on_data, sv_on_end), RX_ESTATE);
    assert_int_equal(sv.writes_ok + sv.writes_canceled + sv.writes_other, 0);
    run_until(&loop, &sv.closed);
    assert_int_equal(sv.closed, 1);
    assert_int_equal(sv.writes_ok + sv.writes_canceled, NW);
    assert_true(sv.writes_canceled >= 1);
    assert_int_equal(sv.writes_other, 0);
    client_close_wait(&c);
    free(data);
    sv_stop(&sv);
    loop_finish(&loop);
}

static void test_addr_in_use(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sv_t sv;
    assert_int_equal(sv_start(&loop, &sv, "127.0.0.1", 0), 0);
    rx_listener_t *l2 = (rx_listener_t *)(uintptr_t)1;
    char err[256];
    int dummy;
    assert_int_equal(rx_listen(&loop, "127.0.0.1", sv.port, NULL, 0, sv_on_accept, &dummy, &l2,
                               err, sizeof err),
                     UV_EADDRINUSE);
    assert_null(l2);
    char port[16];
    snprintf(port, sizeof port, ":%d", sv.port);
    assert_non_null(strstr(err, port));
    assert_non_null(strstr(err, "127.0.0.1"));
    /* the first listener is unharmed */
    client_t c;
    client_init(&c, &loop);
    assert_int_equal(client_connect(&c, "127.0.0.1", sv.port), 0);
    client_ping(&c, "still here");
    client_close_wait(&c);
    run_until(&loop, &sv.closed);
    sv_stop(&sv);
    loop_finish(&loop);
}

/* Closing the listener leaves accepted streams working; new connects are refused. */
static void test_listener_close_keeps_streams(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sv_t sv;
    assert_int_equal(sv_start(&loop, &sv, "127.0.0.1", 0), 0);
    sv.close_on_end = 0;
    client_t c[2];
    for (int i = 0; i < 2; i++) {
        client_init(&c[i], &loop);
        assert_int_equal(client_connect(&c[i], "127.0.0.1", sv.port), 0);
    }
    run_until_n(&loop, &sv.accepted, 2);

    rx_listener_close(sv.l, sv_on_lclosed);
    assert_int_equal(sv.lclosed, 0); /* from the loop, not from inside the call */
    run_until(&loop, &sv.lclosed);
    assert_int_equal(sv.lclosed, 1);

    client_ping(&c[0], "first");
    client_ping(&c[1], "second");
    assert_true(rx_stream_is_open(sv.conns[0]));
    assert_true(rx_stream_is_open(sv.conns[1]));

    client_t late;
    client_init(&late, &loop);
    assert_int_equal(client_connect(&late, "127.0.0.1", sv.port), UV_ECONNREFUSED);
    client_close_wait(&late);

    /* the test closes the server streams: both clients see UV_EOF */
    rx_stream_close(sv.conns[0], sv_on_closed);
    rx_stream_close(sv.conns[1], sv_on_closed);
    run_until_n(&loop, &sv.closed, 2);
    for (int i = 0; i < 2; i++) {
        run_until(&loop, &c[i].ended);
        assert_int_equal(c[i].end_status, UV_EOF);
        client_close_wait(&c[i]);
    }
    assert_int_equal(sv.accept_errors, 0);
    loop_finish(&loop);
}

/* 50 clients connect at once (default backlog 511); every one is accepted and echoes. */
static void test_many_clients(void **state)
{
    enum { N = 50 };
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sv_t sv;
    assert_int_equal(sv_start(&loop, &sv, "127.0.0.1", 0), 0);
    client_t *c = calloc(N, sizeof *c);
    assert_non_null(c);
    for (int i = 0; i < N; i++) {
        client_init(&c[i], &loop);
        client_start(&c[i], "127.0.0.1", sv.port);
    }
    for (int i = 0; i < N; i++) {
        run_until(&loop, &c[i].connected);
        assert_int_equal(c[i].connect_status, 0);
    }
    run_until_n(&loop, &sv.accepted, N);
    assert_int_equal(sv.accepted, N);
    assert_int_equal(sv.accept_errors, 0);
    assert_int_equal(sv.ud_ok, N);
    /* every server-side peer is a distinct client port */
    for (int i = 0; i < N; i++) {
        int pi = peer_port(sv.peer[i], "127.0.0.1");
        for (int j = 0; j < i; j++)
            assert_int_not_equal(pi, peer_port(sv.peer[j], "127.0.0.1"));
    }
    for (int i = 0; i < N; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "client %d", i);
        client_ping(&c[i], msg);
    }
    for (int i = 0; i < N; i++)
        client_close_wait(&c[i]);
    run_until_n(&loop, &sv.closed, N);
    assert_int_equal(sv.ended_eof, N);
    free(c);
    sv_stop(&sv);
    loop_finish(&loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    rx_log_set(quiet_logger, NULL, RX_LOG_DEBUG);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_echo_v4),
        cmocka_unit_test(test_echo_v6),
        cmocka_unit_test(test_server_closes),
        cmocka_unit_test(test_accepted_close_cancels_writes),
        cmocka_unit_test(test_addr_in_use),
        cmocka_unit_test(test_listener_close_keeps_streams),
        cmocka_unit_test(test_many_clients),
    };
    return cmocka_run_group_tests_name("listen", tests, NULL, NULL) != 0;
}
