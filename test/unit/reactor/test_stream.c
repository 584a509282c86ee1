/* Unit tests for rx/stream.h: TCP against an in-test libuv echo server (127.0.0.1 and [::1]),
 * TLS against a real `openssl s_server` with a CA and certificate made by the openssl CLI.
 * Loopback only: no packet ever leaves the machine. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "rx/err.h"
#include "rx/log.h"
#include "rx/stream.h"

extern char **environ;

#include "loop_helpers.h"

/* ---- in-test TCP servers: echo, or accept-and-ignore ---- */

typedef struct srv srv_t;

typedef struct sconn {
    uv_tcp_t tcp;
    srv_t *srv;
    struct sconn *next;
    char buf[65536];
} sconn_t;

struct srv {
    uv_tcp_t listener;
    int port;
    int echo; /* 0: accept and never read */
    sconn_t *conns;
    int nconns;
};

typedef struct echo_w {
    uv_write_t req;
    char data[];
} echo_w_t;

static void echo_written(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void sconn_closed(uv_handle_t *h)
{
    sconn_t *c = h->data;
    srv_t *srv = c->srv;
    for (sconn_t **pp = &srv->conns; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    srv->nconns--;
    free(c);
}

static void sconn_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    sconn_t *c = h->data;
    b->base = c->buf;
    b->len = sizeof c->buf;
}

static void sconn_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    sconn_t *c = st->data;
    if (n > 0) {
        echo_w_t *w = malloc(sizeof *w + (size_t)n);
        assert_non_null(w);
        memcpy(w->data, b->base, (size_t)n);
        uv_buf_t ob = uv_buf_init(w->data, (unsigned)n);
        assert_int_equal(uv_write(&w->req, st, &ob, 1, echo_written), 0);
    } else if (n < 0) {
        if (!uv_is_closing((uv_handle_t *)&c->tcp))
            uv_close((uv_handle_t *)&c->tcp, sconn_closed);
    }
}

static void srv_on_conn(uv_stream_t *l, int status)
{
    srv_t *srv = l->data;
    assert_int_equal(status, 0);
    sconn_t *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->srv = srv;
    uv_tcp_init(l->loop, &c->tcp);
    c->tcp.data = c;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    c->next = srv->conns;
    srv->conns = c;
    srv->nconns++;
    if (srv->echo)
        uv_read_start((uv_stream_t *)&c->tcp, sconn_alloc, sconn_read);
}

static void srv_start(uv_loop_t *loop, srv_t *srv, const char *ip, int echo)
{
    memset(srv, 0, sizeof *srv);
    srv->echo = echo;
    struct sockaddr_storage ss;
    if (strchr(ip, ':') != NULL)
        assert_int_equal(uv_ip6_addr(ip, 0, (struct sockaddr_in6 *)&ss), 0);
    else
        assert_int_equal(uv_ip4_addr(ip, 0, (struct sockaddr_in *)&ss), 0);
    uv_tcp_init(loop, &srv->listener);
    srv->listener.data = srv;
    assert_int_equal(uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&srv->listener, 16, srv_on_conn), 0);
    int len = sizeof ss;
    assert_int_equal(uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len), 0);
    srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
}

static void srv_stop(srv_t *srv)
{
    for (sconn_t *c = srv->conns; c != NULL; c = c->next) {
        if (!uv_is_closing((uv_handle_t *)&c->tcp))
            uv_close((uv_handle_t *)&c->tcp, sconn_closed);
    }
    uv_close((uv_handle_t *)&srv->listener, NULL);
}

/* A loopback port nobody listens on (bound, read, released). */
static int free_port(int v6)
{
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    }
    assert_int_equal(bind(fd, (struct sockaddr *)&ss, len), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    int port =
        ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    close(fd);
    return port;
}

/* ---- a client driven by callbacks ---- */

typedef struct client {
    uv_loop_t *loop;
    rx_stream_t *s;
    int connected;
    int connect_status;
    char detail[600];
    char alpn[32];
    int ended;
    int end_status;
    int closed;
    int done; /* test-specific completion flag */
    char *rx;
    size_t rx_len, rx_cap;
    size_t expect; /* close once this many bytes arrived (0: never) */
    int writes_done, writes_ok, writes_canceled, writes_other;
    int pause_once; /* read_stop after the first slice, read_start again from a timer */
    uv_timer_t resume;
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

static void c_on_data(rx_stream_t *s, const char *data, size_t len);

static void c_resume(uv_timer_t *t)
{
    client_t *c = t->data;
    assert_int_equal(rx_stream_read_start(c->s, c_on_data, c_on_end), 0);
    uv_close((uv_handle_t *)t, NULL);
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
    if (c->expect != 0 && c->rx_len >= c->expect) {
        c->done = 1;
        rx_stream_close(s, c_on_closed);
        return;
    }
    if (c->pause_once) {
        c->pause_once = 0;
        assert_int_equal(rx_stream_read_stop(s), 0);
        uv_timer_init(c->loop, &c->resume);
        c->resume.data = c;
        uv_timer_start(&c->resume, c_resume, 20, 0);
    }
}

static void c_on_written(rx_stream_t *s, int status, void *ud)
{
    client_t *c = rx_stream_ud(s);
    (void)ud;
    c->writes_done++;
    if (status == 0)
        c->writes_ok++;
    else if (status == RX_ECANCELED)
        c->writes_canceled++;
    else
        c->writes_other++;
}

static void c_on_connect(rx_stream_t *s, int status)
{
    client_t *c = rx_stream_ud(s);
    c->connected = 1;
    c->connect_status = status;
    snprintf(c->detail, sizeof c->detail, "%s", rx_stream_error_detail(s));
    const char *a = rx_stream_alpn(s);
    snprintf(c->alpn, sizeof c->alpn, "%s", a != NULL ? a : "");
    if (status == 0) {
        assert_true(rx_stream_is_open(s));
        assert_int_equal(rx_stream_read_start(s, c_on_data, c_on_end), 0);
    } else {
        assert_false(rx_stream_is_open(s));
    }
}

static void client_init(client_t *c, uv_loop_t *loop)
{
    memset(c, 0, sizeof *c);
    c->loop = loop;
}

/* Connects and waits for on_connect. Returns the status. */
static int client_connect(client_t *c, const char *host, int port, const rx_stream_opts_t *o)
{
    int r = rx_stream_connect(c->loop, host, port, o, c_on_connect, c, &c->s);
    assert_int_equal(r, 0);
    assert_non_null(c->s);
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

/* ---- TCP tests ---- */

static void echo_roundtrip(const char *listen_ip, const char *connect_host)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    srv_t srv;
    srv_start(&loop, &srv, listen_ip, 1);

    client_t c;
    client_init(&c, &loop);
    rx_stream_opts_t o;
    rx_stream_opts_init(&o);
    assert_int_equal(client_connect(&c, connect_host, srv.port, &o), 0);
    assert_false(rx_stream_is_tls(c.s));
    assert_null(rx_stream_alpn(c.s));

    /* 1 MiB as 16 writes of 16 iovecs of 4 KiB each. */
    enum { TOTAL = 1 << 20, NW = 16, NIOV = 16, PIECE = TOTAL / NW / NIOV };
    char *data = malloc(TOTAL);
    assert_non_null(data);
    fill_pattern(data, TOTAL, 7);
    c.expect = TOTAL;
    for (int w = 0; w < NW; w++) {
        struct iovec iov[NIOV];
        for (int i = 0; i < NIOV; i++) {
            iov[i].iov_base = data + ((size_t)w * NIOV + (size_t)i) * PIECE;
            iov[i].iov_len = PIECE;
        }
        assert_int_equal(rx_stream_write(c.s, iov, NIOV, c_on_written, NULL), 0);
    }
    run_until(&loop, &c.done);
    run_until(&loop, &c.closed);
    assert_int_equal(c.rx_len, TOTAL);
    assert_memory_equal(c.rx, data, TOTAL);
    assert_int_equal(c.writes_done, NW);
    assert_int_equal(c.writes_ok, NW);
    free(c.rx);
    free(data);
    srv_stop(&srv);
    loop_finish(&loop);
}

static void test_tcp_echo_v4(void **state)
{
    echo_roundtrip("127.0.0.1", "127.0.0.1");
}

static int have_ipv6_loopback(void)
{
    /* The brief: skip only when lo has no ::1. */
    FILE *f = popen("ip -6 addr show lo 2>/dev/null", "r");
    if (f == NULL)
        return 0;
    char line[256];
    int found = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strstr(line, "::1/128") != NULL)
            found = 1;
    }
    pclose(f);
    return found;
}

static void test_tcp_echo_v6(void **state)
{
    if (!have_ipv6_loopback()) {
        skip();
        return;
    }
    echo_roundtrip("::1", "::1");
    echo_roundtrip("::1", "[::1]");
}

static void test_tcp_localhost(void **state)
{
    echo_roundtrip("127.0.0.1", "localhost");
}

static void test_tcp_close_cancels_writes(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    srv_t srv;
    srv_start(&loop, &srv, "127.0.0.1", 0); /* never reads */
    client_t c;
    client_init(&c, &loop);
    assert_int_equal(client_connect(&c, "127.0.0.1", srv.port, NULL), 0);

    enum { MB = 1 << 20, NW = 64 };
    char *data = calloc(1, MB);
    assert_non_null(data);
    for (int i = 0; i < NW; i++) {
        struct iovec iov = {data, MB};
        assert_int_equal(rx_stream_write(c.s, &iov, 1, c_on_written, NULL), 0);
    }
    rx_stream_t *s = c.s;
    rx_stream_close(s, c_on_closed);
    rx_stream_close(s, c_on_closed); /* idempotent */
    struct iovec iov = {data, 1};
    assert_int_equal(rx_stream_write(s, &iov, 1, c_on_written, NULL), RX_ESTATE);
    assert_int_equal(rx_stream_read_start(s, c_on_data, c_on_end), RX_ESTATE);
    assert_int_equal(rx_stream_read_stop(s), RX_ESTATE);
    assert_int_equal(c.writes_done, 0); /* never from inside the call */
    run_until(&loop, &c.closed);
    assert_int_equal(c.closed, 1);
    assert_int_equal(c.writes_done, NW);
    assert_true(c.writes_canceled >= 1);
    assert_int_equal(c.writes_other, 0);
    assert_int_equal(c.writes_ok + c.writes_canceled, NW);
    free(data);
    srv_stop(&srv);
    loop_finish(&loop);
}

static void test_tcp_refused(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    int port = free_port(0);
    client_t c;
    client_init(&c, &loop);
    assert_int_equal(client_connect(&c, "127.0.0.1", port, NULL), UV_ECONNREFUSED);
    assert_non_null(strstr(c.detail, "127.0.0.1"));
    /* A failed stream refuses I/O but must still be closed. */
    struct iovec iov = {(void *)"x", 1};
    assert_int_equal(rx_stream_write(c.s, &iov, 1, NULL, NULL), RX_ESTATE);
    assert_int_equal(rx_stream_read_start(c.s, c_on_data, c_on_end), RX_ESTATE);
    client_close_wait(&c);
    loop_finish(&loop);
}

static void test_tcp_timeout_zero(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    srv_t srv;
    srv_start(&loop, &srv, "127.0.0.1", 1);
    rx_stream_opts_t o;
    rx_stream_opts_init(&o);
    o.connect_timeout_ms = 0; /* already expired: fires before the resolver answers */
    const char *hosts[] = {"127.0.0.1", "localhost"};
    for (int i = 0; i < 2; i++) {
        client_t c;
        client_init(&c, &loop);
        assert_int_equal(client_connect(&c, hosts[i], srv.port, &o), RX_ETIMEDOUT);
        assert_non_null(strstr(c.detail, "timed out"));
        client_close_wait(&c);
    }
    srv_stop(&srv);
    loop_finish(&loop);
}

/* Close before on_connect: on_connect never runs, everything is freed. */
static void test_tcp_close_while_connecting(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    client_t c;
    client_init(&c, &loop);
    assert_int_equal(rx_stream_connect(&loop, "localhost", 9, NULL, c_on_connect, &c, &c.s), 0);
    struct iovec iov = {(void *)"x", 1};
    assert_int_equal(rx_stream_write(c.s, &iov, 1, NULL, NULL), RX_ESTATE);
    rx_stream_close(c.s, c_on_closed);
    run_until(&loop, &c.closed);
    assert_int_equal(c.connected, 0);
    loop_finish(&loop);
}

static void test_args(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    rx_stream_t *s = (rx_stream_t *)(uintptr_t)1;
    assert_int_equal(rx_stream_connect(&loop, "127.0.0.1", 0, NULL, c_on_connect, NULL, &s),
                     RX_EINVAL);
    assert_null(s);
    assert_int_equal(rx_stream_connect(&loop, "", 80, NULL, c_on_connect, NULL, &s), RX_EINVAL);
    assert_int_equal(rx_stream_connect(&loop, "x", 80, NULL, NULL, NULL, &s), RX_EINVAL);
    rx_stream_close(NULL, NULL);
    rx_tls_ctx_destroy(NULL);
    rx_tls_ctx_t *ctx = NULL;
    assert_int_equal(rx_tls_ctx_create("/nonexistent/ca.pem", 0, &ctx), RX_ETLSCA);
    assert_null(ctx);
    /* A NO_CA context serves only insecure streams. */
    assert_int_equal(rx_tls_ctx_create(NULL, RX_TLS_CTX_NO_CA, &ctx), 0);
    assert_string_equal(rx_tls_ctx_ca_file(ctx), "");
    rx_stream_opts_t o;
    rx_stream_opts_init(&o);
    assert_int_equal(o.connect_timeout_ms, 5000);
    assert_int_equal(o.nodelay, 1);
    assert_int_equal(o.keepalive_s, 30);
    o.tls = 1;
    o.tls_ctx = ctx;
    assert_int_equal(rx_stream_connect(&loop, "localhost", 443, &o, c_on_connect, NULL, &s),
                     RX_ETLSCA);
    rx_tls_ctx_destroy(ctx);
    assert_string_equal(rx_strerror(RX_ETLSVERIFY), "TLS certificate verification failed");
    assert_string_equal(rx_strerror(RX_ETLS), "TLS handshake or record failure");
    assert_string_equal(rx_strerror(RX_ETLSCA), "TLS CA bundle could not be loaded");
    loop_finish(&loop);
}

/* A peer that completes TCP but never answers the ClientHello: the deadline covers the TLS
 * handshake. */
static void test_tls_handshake_timeout(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    srv_t srv;
    srv_start(&loop, &srv, "127.0.0.1", 0);
    rx_stream_opts_t o;
    rx_stream_opts_init(&o);
    o.connect_timeout_ms = 200;
    o.tls = 1;
    o.tls_insecure_skip_verify = 1;
    client_t c;
    client_init(&c, &loop);
    assert_int_equal(client_connect(&c, "127.0.0.1", srv.port, &o), RX_ETIMEDOUT);
    assert_non_null(strstr(c.detail, "TLS handshake"));
    client_close_wait(&c);
    srv_stop(&srv);
    loop_finish(&loop);
}

/* ---- TLS against openssl s_server ---- */

typedef struct tls_fixture {
    char dir[64];
    char ca[128], cert[128], key[128];
    int port;
    pid_t pid;
} tls_fixture_t;

static tls_fixture_t g_tls;

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int r = system(cmd);
    return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

static int port_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static pid_t start_s_server(int port)
{
    char accept[32], cert[160], key[160];
    snprintf(accept, sizeof accept, "127.0.0.1:%d", port);
    snprintf(cert, sizeof cert, "%s", g_tls.cert);
    snprintf(key, sizeof key, "%s", g_tls.key);
    char *argv[] = {"openssl", "s_server", "-accept",     accept, "-cert",  cert, "-key",
                    key,       "-alpn",    "h2,http/1.1", "-rev", "-quiet", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid = -1;
    int r = posix_spawnp(&pid, "openssl", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    return r == 0 ? pid : -1;
}

static int tls_setup(void **state)
{
    snprintf(g_tls.dir, sizeof g_tls.dir, "/tmp/rx-stream-XXXXXX");
    if (mkdtemp(g_tls.dir) == NULL)
        return -1;
    snprintf(g_tls.ca, sizeof g_tls.ca, "%s/ca.crt", g_tls.dir);
    snprintf(g_tls.cert, sizeof g_tls.cert, "%s/srv.crt", g_tls.dir);
    snprintf(g_tls.key, sizeof g_tls.key, "%s/srv.key", g_tls.dir);
    const char *d = g_tls.dir;
    int r = sh("(cd %s && printf 'subjectAltName=DNS:localhost\\nbasicConstraints=CA:FALSE\\n"
               "keyUsage=digitalSignature\\nextendedKeyUsage=serverAuth\\n' > ext.cnf && "
               "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
               "-keyout ca.key -out ca.crt -days 2 -subj /CN=rx-test-ca "
               "-addext basicConstraints=critical,CA:TRUE "
               "-addext keyUsage=critical,keyCertSign,cRLSign && "
               "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
               "-keyout srv.key -out srv.csr -subj /CN=localhost && "
               "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
               "-out srv.crt -days 2 -extfile ext.cnf) >/dev/null 2>&1",
               d);
    if (r != 0) {
        fprintf(stderr, "certificate generation failed (%d)\n", r);
        return -1;
    }
    for (int attempt = 0; attempt < 5; attempt++) {
        int port = free_port(0);
        pid_t pid = start_s_server(port);
        if (pid < 0)
            return -1;
        for (int i = 0; i < 200; i++) {
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid) {
                pid = -1; /* exited: port taken? retry with another */
                break;
            }
            if (port_accepts(port)) {
                g_tls.port = port;
                g_tls.pid = pid;
                return 0;
            }
            usleep(50 * 1000);
        }
        if (pid > 0) {
            kill(pid, SIGTERM);
            waitpid(pid, NULL, 0);
        }
    }
    return -1;
}

static int tls_teardown(void **state)
{
    if (g_tls.pid > 0) {
        kill(g_tls.pid, SIGTERM);
        waitpid(g_tls.pid, NULL, 0);
        g_tls.pid = 0;
    }
    if (g_tls.dir[0] != '\0') {
        const char *files[] = {"ca.crt",  "ca.key",  "ca.srl", "srv.crt",
                               "srv.key", "srv.csr", "ext.cnf"};
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            char p[160];
            snprintf(p, sizeof p, "%s/%s", g_tls.dir, files[i]);
            unlink(p);
        }
        rmdir(g_tls.dir);
    }
    return 0;
}

static const char *const alpn_h2[] = {"h2", "http/1.1", NULL};

static void tls_opts(rx_stream_opts_t *o)
{
    rx_stream_opts_init(o);
    o->tls = 1;
    o->server_name = "localhost";
    o->ca_file = g_tls.ca;
}

static void test_tls_verify_alpn_roundtrip(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    rx_stream_opts_t o;
    tls_opts(&o);
    o.alpn = alpn_h2;
    client_t c;
    client_init(&c, &loop);
    c.pause_once = 1; /* exercises read_stop / read_start with records already decrypted */
    int r = client_connect(&c, "127.0.0.1", g_tls.port, &o);
    if (r != 0)
        fprintf(stderr, "detail: %s\n", c.detail);
    assert_int_equal(r, 0);
    assert_true(rx_stream_is_tls(c.s));
    assert_string_equal(c.alpn, "h2");
    assert_string_equal(rx_stream_alpn(c.s), "h2");

    /* ~130 KB of lines, written as several multi-iovec writes; s_server -rev reverses each. */
    enum { NLINES = 2000, LINE = 65 };
    char *text = malloc((size_t)NLINES * LINE);
    char *want = malloc((size_t)NLINES * LINE);
    assert_non_null(text);
    assert_non_null(want);
    for (int i = 0; i < NLINES; i++) {
        char *l = text + (size_t)i * LINE;
        char tmp[128];
        snprintf(tmp, sizeof tmp, "line %06d abcdefghijklmnopqrstuvwxyz 0123456789 ABCDEFGHIJKLMN",
                 i);
        assert_true(strlen(tmp) >= LINE - 1);
        memcpy(l, tmp, LINE - 1);
        l[LINE - 1] = '\n';
        char *w = want + (size_t)i * LINE;
        for (int k = 0; k < LINE - 1; k++)
            w[k] = l[LINE - 2 - k];
        w[LINE - 1] = '\n';
    }
    c.expect = (size_t)NLINES * LINE;
    for (int i = 0; i < NLINES; i += 100) {
        struct iovec iov[4];
        for (int k = 0; k < 4; k++) {
            iov[k].iov_base = text + (size_t)(i + k * 25) * LINE;
            iov[k].iov_len = 25 * LINE;
        }
        assert_int_equal(rx_stream_write(c.s, iov, 4, c_on_written, NULL), 0);
    }
    run_until(&loop, &c.done);
    run_until(&loop, &c.closed);
    assert_int_equal(c.rx_len, (size_t)NLINES * LINE);
    assert_memory_equal(c.rx, want, (size_t)NLINES * LINE);
    assert_int_equal(c.writes_ok, NLINES / 100);
    free(c.rx);
    free(text);
    free(want);
    loop_finish(&loop);
}

static void test_tls_no_alpn(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    rx_stream_opts_t o;
    tls_opts(&o);
    client_t c;
    client_init(&c, &loop);
    assert_int_equal(client_connect(&c, "localhost", g_tls.port, &o), 0);
    assert_null(rx_stream_alpn(c.s));
    client_close_wait(&c);
    loop_finish(&loop);
}

static void test_tls_system_bundle_fails(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    rx_tls_ctx_t *ctx = NULL;
    assert_int_equal(rx_tls_ctx_create(RX_TLS_DEFAULT_CA_FILE, 0, &ctx), 0);
    rx_stream_opts_t o;
    tls_opts(&o);
    o.tls_ctx = ctx;
    client_t c;
    client_init(&c, &loop);
    assert_int_equal(client_connect(&c, "127.0.0.1", g_tls.port, &o), RX_ETLSVERIFY);
    assert_non_null(strstr(c.detail, "verification failed"));
    assert_non_null(strstr(c.detail, "trusted CA")); /* mbedtls: "not correctly signed by..." */
    client_close_wait(&c);
    rx_tls_ctx_destroy(ctx);
    loop_finish(&loop);
}

static void test_tls_insecure(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    rx_stream_opts_t o;
    rx_stream_opts_init(&o);
    o.tls = 1;
    o.ca_file = RX_TLS_DEFAULT_CA_FILE; /* ignored: nothing is verified */
    o.tls_insecure_skip_verify = 1;
    o.alpn = alpn_h2;
    client_t c;
    client_init(&c, &loop);
    assert_int_equal(client_connect(&c, "127.0.0.1", g_tls.port, &o), 0);
    assert_string_equal(c.alpn, "h2");
    const char msg[] = "insecure but working\n";
    c.expect = sizeof msg - 1;
    struct iovec iov = {(void *)msg, sizeof msg - 1};
    assert_int_equal(rx_stream_write(c.s, &iov, 1, NULL, NULL), 0);
    run_until(&loop, &c.done);
    run_until(&loop, &c.closed);
    assert_memory_equal(c.rx, "gnikrow tub erucesni\n", sizeof msg - 1);
    free(c.rx);
    loop_finish(&loop);
}

static void test_tls_name_mismatch(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    rx_stream_opts_t o;
    tls_opts(&o);
    o.server_name = "example.invalid";
    client_t c;
    client_init(&c, &loop);
    assert_int_equal(client_connect(&c, "127.0.0.1", g_tls.port, &o), RX_ETLSVERIFY);
    assert_non_null(strstr(c.detail, "CN"));
    client_close_wait(&c);
    /* An IP literal as the verified name fails too (mbedtls 2.28 has no IP SAN matching). */
    tls_opts(&o);
    o.server_name = NULL;
    client_init(&c, &loop);
    assert_int_equal(client_connect(&c, "127.0.0.1", g_tls.port, &o), RX_ETLSVERIFY);
    client_close_wait(&c);
    loop_finish(&loop);
}

/* One context for several streams; destroying it while a stream still uses it is safe. Also the
 * AWS_CA_BUNDLE default. */
static void test_tls_shared_ctx_env(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(setenv("AWS_CA_BUNDLE", g_tls.ca, 1), 0);
    rx_tls_ctx_t *ctx = NULL;
    assert_int_equal(rx_tls_ctx_create(NULL, 0, &ctx), 0);
    unsetenv("AWS_CA_BUNDLE");
    assert_string_equal(rx_tls_ctx_ca_file(ctx), g_tls.ca);
    rx_stream_opts_t o;
    tls_opts(&o);
    o.ca_file = NULL;
    o.tls_ctx = ctx;
    o.alpn = alpn_h2;
    for (int i = 0; i < 3; i++) {
        client_t c;
        client_init(&c, &loop);
        assert_int_equal(client_connect(&c, "127.0.0.1", g_tls.port, &o), 0);
        if (i == 2)
            rx_tls_ctx_destroy(ctx); /* the open stream keeps it alive */
        const char msg[] = "abc\n";
        c.expect = 4;
        struct iovec iov = {(void *)msg, 4};
        assert_int_equal(rx_stream_write(c.s, &iov, 1, c_on_written, NULL), 0);
        run_until(&loop, &c.done);
        run_until(&loop, &c.closed);
        assert_memory_equal(c.rx, "cba\n", 4);
        free(c.rx);
    }
    loop_finish(&loop);
}

/* Close with TLS writes pending. */
static void test_tls_close_pending(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    rx_stream_opts_t o;
    tls_opts(&o);
    client_t c;
    client_init(&c, &loop);
    assert_int_equal(client_connect(&c, "127.0.0.1", g_tls.port, &o), 0);
    enum { MB = 1 << 20, NW = 32 };
    char *data = malloc(MB);
    assert_non_null(data);
    memset(data, 'z', MB); /* no newline: s_server keeps buffering, never answers */
    for (int i = 0; i < NW; i++) {
        struct iovec iov = {data, MB};
        assert_int_equal(rx_stream_write(c.s, &iov, 1, c_on_written, NULL), 0);
    }
    free(data); /* TLS copied it */
    rx_stream_close(c.s, c_on_closed);
    run_until(&loop, &c.closed);
    assert_int_equal(c.writes_done, NW);
    assert_true(c.writes_canceled >= 1);
    assert_int_equal(c.writes_other, 0);
    free(c.rx);
    loop_finish(&loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    rx_log_set(quiet_logger, NULL, RX_LOG_DEBUG);
    const struct CMUnitTest tcp_tests[] = {
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_tcp_echo_v4),
        cmocka_unit_test(test_tcp_echo_v6),
        cmocka_unit_test(test_tcp_localhost),
        cmocka_unit_test(test_tcp_close_cancels_writes),
        cmocka_unit_test(test_tcp_refused),
        cmocka_unit_test(test_tcp_timeout_zero),
        cmocka_unit_test(test_tcp_close_while_connecting),
        cmocka_unit_test(test_tls_handshake_timeout),
    };
    const struct CMUnitTest tls_tests[] = {
        cmocka_unit_test(test_tls_verify_alpn_roundtrip), cmocka_unit_test(test_tls_no_alpn),
        cmocka_unit_test(test_tls_system_bundle_fails),   cmocka_unit_test(test_tls_insecure),
        cmocka_unit_test(test_tls_name_mismatch),         cmocka_unit_test(test_tls_shared_ctx_env),
        cmocka_unit_test(test_tls_close_pending),
    };
    int fails = cmocka_run_group_tests_name("stream-tcp", tcp_tests, NULL, NULL);
    fails += cmocka_run_group_tests_name("stream-tls", tls_tests, tls_setup, tls_teardown);
    return fails != 0;
}
