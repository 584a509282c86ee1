/* Unit tests for the TLS server side of rx/stream.h: rx_tls_cert_generate, fingerprints, server
 * contexts, rx_listen with TLS, certificate pinning and mutual TLS, with rx clients (and one
 * `openssl s_client` for interop) on the same loop. Certificates are generated into a mkdtemp
 * directory that the group teardown removes. Loopback only: no packet ever leaves the machine. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <mbedtls/x509_crt.h>
#include <uv.h>

#include "rx/err.h"
#include "rx/log.h"
#include "rx/stream.h"

#include "loop_helpers.h"

/* ---- fixture: generated certificates ---- */

static struct {
    char dir[64];
    char srv_crt[128], srv_key[128];     /* CN=rx-test-server, SAN localhost + rx.test */
    char other_crt[128], other_key[128]; /* an unrelated self-signed certificate */
    char cli_crt[128], cli_key[128];     /* client certificate for mutual TLS */
    uint8_t srv_fp[32], cli_fp[32];
} g;

static const char *const srv_names[] = {"localhost", "rx.test", NULL};

static int gen(char *crt, char *key, const char *base, const char *cn, const char *const *names)
{
    snprintf(crt, 128, "%s/%s.crt", g.dir, base);
    snprintf(key, 128, "%s/%s.key", g.dir, base);
    char err[256];
    int r = rx_tls_cert_generate(crt, key, cn, names, 30, err, sizeof err);
    if (r != 0)
        fprintf(stderr, "rx_tls_cert_generate %s: %d %s\n", base, r, err);
    return r;
}

static int group_setup(void **state)
{
    snprintf(g.dir, sizeof g.dir, "/tmp/rx-tls-server-XXXXXX");
    if (mkdtemp(g.dir) == NULL)
        return -1;
    char err[256];
    if (gen(g.srv_crt, g.srv_key, "srv", "rx-test-server", srv_names) != 0 ||
        gen(g.other_crt, g.other_key, "other", "rx-test-other", srv_names) != 0 ||
        gen(g.cli_crt, g.cli_key, "cli", "rx-test-client", NULL) != 0)
        return -1;
    if (rx_tls_cert_file_sha256(g.srv_crt, g.srv_fp, err, sizeof err) != 0 ||
        rx_tls_cert_file_sha256(g.cli_crt, g.cli_fp, err, sizeof err) != 0)
        return -1;
    return 0;
}

/* Removes every file of the directory (the tests leave a few extra ones) and the directory. */
static int group_teardown(void **state)
{
    if (g.dir[0] == '\0')
        return 0;
    uv_fs_t req;
    if (uv_fs_scandir(NULL, &req, g.dir, 0, NULL) >= 0) {
        uv_dirent_t ent;
        while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
            char p[256];
            snprintf(p, sizeof p, "%s/%s", g.dir, ent.name);
            unlink(p);
        }
    }
    uv_fs_req_cleanup(&req);
    rmdir(g.dir);
    return 0;
}

/* ---- the server under test: an rx_listener_t whose TLS streams echo ---- */

enum { MAXCONN = 16 };

typedef struct sv {
    uv_loop_t *loop;
    rx_listener_t *l;
    rx_tls_ctx_t *ctx;
    int port;
    int accepted, accept_errors, last_error;
    char last_detail[640];
    int closed, ended_eof, lclosed;
    char alpn[MAXCONN][16];
    int peer_fp_rc[MAXCONN];
    uint8_t peer_fp[MAXCONN][32];
    rx_stream_t *conns[MAXCONN];
} sv_t;

static void sv_on_closed(rx_stream_t *s)
{
    sv_t *sv = rx_stream_ud(s);
    sv->closed++;
    for (int i = 0; i < MAXCONN; i++) {
        if (sv->conns[i] == s)
            sv->conns[i] = NULL;
    }
}

static void sv_on_written(rx_stream_t *s, int status, void *ud)
{
    (void)s;
    (void)status;
    free(ud);
}

static void sv_on_data(rx_stream_t *s, const char *data, size_t len)
{
    char *copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, data, len);
    struct iovec iov = {copy, len};
    assert_int_equal(rx_stream_write(s, &iov, 1, sv_on_written, copy), 0);
}

static void sv_on_end(rx_stream_t *s, int status)
{
    sv_t *sv = rx_stream_ud(s);
    if (status == UV_EOF)
        sv->ended_eof++;
    rx_stream_close(s, sv_on_closed);
}

static void sv_on_accept(rx_listener_t *l, rx_stream_t *s, int status, void *ud)
{
    sv_t *sv = ud;
    assert_ptr_equal(l, sv->l);
    if (status < 0) {
        assert_null(s);
        sv->accept_errors++;
        sv->last_error = status;
        snprintf(sv->last_detail, sizeof sv->last_detail, "%s", rx_listener_error_detail(l));
        return;
    }
    assert_non_null(s);
    assert_true(rx_stream_is_open(s));
    assert_true(rx_stream_is_tls(s));
    assert_null(rx_stream_ud(s));
    rx_stream_set_ud(s, sv);
    int slot = sv->accepted++;
    assert_true(slot < MAXCONN);
    sv->conns[slot] = s;
    const char *a = rx_stream_alpn(s);
    snprintf(sv->alpn[slot], sizeof sv->alpn[slot], "%s", a != NULL ? a : "");
    sv->peer_fp_rc[slot] = rx_stream_peer_cert_sha256(s, sv->peer_fp[slot]);
    assert_int_equal(rx_stream_read_start(s, sv_on_data, sv_on_end), 0);
}

static void sv_on_lclosed(rx_listener_t *l, void *ud)
{
    sv_t *sv = ud;
    sv->lclosed++;
}

static const char *const alpn_srv[] = {"h2", "http/1.1", NULL};
static const char *const alpn_h2[] = {"h2", NULL};

/* A TLS listener on 127.0.0.1 with the generated server certificate. */
static void sv_start_opts(uv_loop_t *loop, sv_t *sv, const char *const *alpn, const char *client_ca,
                          int timeout_ms)
{
    memset(sv, 0, sizeof *sv);
    sv->loop = loop;
    char err[256];
    assert_int_equal(
        rx_tls_server_ctx_create(g.srv_crt, g.srv_key, alpn, client_ca, &sv->ctx, err, sizeof err),
        0);
    rx_stream_opts_t o;
    rx_stream_opts_init(&o);
    o.tls = 1;
    o.tls_ctx = sv->ctx;
    if (timeout_ms != 0)
        o.connect_timeout_ms = timeout_ms;
    assert_int_equal(
        rx_listen(loop, "127.0.0.1", 0, &o, 0, sv_on_accept, sv, &sv->l, err, sizeof err), 0);
    /* The listener holds its own reference: the creator may drop its one now. */
    rx_tls_ctx_destroy(sv->ctx);
    sv->ctx = NULL;
    sv->port = rx_listener_port(sv->l);
    assert_true(sv->port > 0);
    assert_string_equal(rx_listener_error_detail(sv->l), "");
}

static void sv_start(uv_loop_t *loop, sv_t *sv)
{
    sv_start_opts(loop, sv, alpn_srv, NULL, 0);
}

static void sv_stop(sv_t *sv)
{
    for (int i = 0; i < MAXCONN; i++) {
        if (sv->conns[i] != NULL)
            rx_stream_close(sv->conns[i], sv_on_closed);
    }
    rx_listener_close(sv->l, sv_on_lclosed);
    run_until(sv->loop, &sv->lclosed);
}

/* ---- an rx client ---- */

typedef struct client {
    uv_loop_t *loop;
    rx_stream_t *s;
    int connected, connect_status, ended, end_status, closed, done;
    char detail[512];
    char alpn[16];
    char *rx;
    size_t rx_len, rx_cap, expect;
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

static void c_on_connect(rx_stream_t *s, int status)
{
    client_t *c = rx_stream_ud(s);
    c->connected = 1;
    c->connect_status = status;
    snprintf(c->detail, sizeof c->detail, "%s", rx_stream_error_detail(s));
    const char *a = rx_stream_alpn(s);
    snprintf(c->alpn, sizeof c->alpn, "%s", a != NULL ? a : "");
    if (status == 0)
        assert_int_equal(rx_stream_read_start(s, c_on_data, c_on_end), 0);
}

/* Connects with o and waits for on_connect; returns its status. */
static int client_connect(uv_loop_t *loop, client_t *c, const char *host, int port,
                          const rx_stream_opts_t *o)
{
    memset(c, 0, sizeof *c);
    c->loop = loop;
    assert_int_equal(rx_stream_connect(loop, host, port, o, c_on_connect, c, &c->s), 0);
    run_until(loop, &c->connected);
    return c->connect_status;
}

static void client_close_wait(client_t *c)
{
    if (c->s != NULL)
        rx_stream_close(c->s, c_on_closed);
    run_until(c->loop, &c->closed);
    free(c->rx);
    c->rx = NULL;
}

static void client_ping(client_t *c, const char *msg)
{
    size_t n = strlen(msg);
    c->rx_len = 0;
    c->done = 0;
    c->expect = n;
    struct iovec iov = {(void *)msg, n};
    assert_int_equal(rx_stream_write(c->s, &iov, 1, NULL, NULL), 0);
    run_until(c->loop, &c->done);
    assert_int_equal(c->rx_len, n);
    assert_memory_equal(c->rx, msg, n);
}

/* Client options verifying against ca_file (NULL: no CA settings), server name "localhost". */
static void tls_opts(rx_stream_opts_t *o, rx_tls_ctx_t *ctx)
{
    rx_stream_opts_init(o);
    o->tls = 1;
    o->tls_ctx = ctx;
    o->server_name = "localhost";
    o->alpn = alpn_h2;
}

/* A client whose handshake must fail with want_client; the listener must report a failure too.
 * Returns nothing; the listener's detail is in sv->last_detail. */
static void expect_fail(uv_loop_t *loop, sv_t *sv, const rx_stream_opts_t *o, int want_client)
{
    int errs = sv->accept_errors;
    client_t c;
    int r = client_connect(loop, &c, "127.0.0.1", sv->port, o);
    if (r != want_client)
        fprintf(stderr, "client: %d (%s) %s\n", r, rx_strerror(r), c.detail);
    assert_int_equal(r, want_client);
    assert_true(c.detail[0] != '\0');
    assert_false(rx_stream_is_open(c.s));
    run_until_n(loop, &sv->accept_errors, errs + 1);
    assert_true(sv->last_error < 0);
    assert_non_null(strstr(sv->last_detail, "127.0.0.1:"));
    client_close_wait(&c);
}

/* ---- a raw TCP client (libuv), to feed the listener garbage or nothing ---- */

typedef struct raw {
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_write_t w;
    const char *send;
    int connected, eof, closed;
    size_t got;
    char buf[4096];
} raw_t;

static void raw_closed(uv_handle_t *h)
{
    raw_t *r = h->data;
    r->closed = 1;
}

static void raw_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    raw_t *r = h->data;
    b->base = r->buf;
    b->len = sizeof r->buf;
}

static void raw_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    raw_t *r = st->data;
    if (n > 0)
        r->got += (size_t)n;
    else if (n < 0)
        r->eof = 1;
}

static void raw_written(uv_write_t *w, int status)
{
    (void)w;
    (void)status;
}

static void raw_on_connect(uv_connect_t *req, int status)
{
    raw_t *r = req->handle->data;
    assert_int_equal(status, 0);
    r->connected = 1;
    assert_int_equal(uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read), 0);
    if (r->send != NULL) {
        uv_buf_t b = uv_buf_init((char *)r->send, (unsigned)strlen(r->send));
        assert_int_equal(uv_write(&r->w, (uv_stream_t *)&r->tcp, &b, 1, raw_written), 0);
    }
}

static void raw_start(uv_loop_t *loop, raw_t *r, int port, const char *send)
{
    memset(r, 0, sizeof *r);
    r->send = send;
    assert_int_equal(uv_tcp_init(loop, &r->tcp), 0);
    r->tcp.data = r;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", port, &a);
    assert_int_equal(uv_tcp_connect(&r->conn, &r->tcp, (const struct sockaddr *)&a, raw_on_connect),
                     0);
}

static void raw_close_wait(uv_loop_t *loop, raw_t *r)
{
    uv_close((uv_handle_t *)&r->tcp, raw_closed);
    run_until(loop, &r->closed);
}

/* ---- a child process (openssl), run while the loop keeps serving ---- */

typedef struct child {
    uv_process_t proc;
    int exited;
    int64_t status;
} child_t;

static void child_closed(uv_handle_t *h)
{
    (void)h;
}

static void child_exit(uv_process_t *p, int64_t status, int sig)
{
    child_t *c = p->data;
    c->exited = 1;
    c->status = sig != 0 ? -sig : status;
    uv_close((uv_handle_t *)p, child_closed);
}

/* Runs argv with stdin /dev/null and stdout + stderr into out_path; returns the exit status. */
static int64_t run_child(uv_loop_t *loop, char **argv, const char *out_path)
{
    int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = fd;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = fd;
    uv_process_options_t po;
    memset(&po, 0, sizeof po);
    po.file = argv[0];
    po.args = argv;
    po.exit_cb = child_exit;
    po.stdio = stdio;
    po.stdio_count = 3;
    child_t c;
    memset(&c, 0, sizeof c);
    c.proc.data = &c;
    int r = uv_spawn(loop, &c.proc, &po);
    close(fd);
    if (r != 0)
        fprintf(stderr, "cannot run %s: %s\n", argv[0], uv_strerror(r));
    assert_int_equal(r, 0);
    run_until(loop, &c.exited);
    uv_run(loop, UV_RUN_NOWAIT); /* the process handle's close callback */
    return c.status;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* ---- tests ---- */

static void test_fingerprint(void **state)
{
    uint8_t fp[32], back[32];
    for (int i = 0; i < 32; i++)
        fp[i] = (uint8_t)(i * 37 + 5);
    char s[96];
    rx_tls_fingerprint_format(fp, s);
    assert_int_equal(strlen(s), 95);
    assert_memory_equal(s, "05:2A:4F:74:99:BE:E3:08", 23);
    assert_int_equal(rx_tls_fingerprint_parse(s, back), 0);
    assert_memory_equal(back, fp, 32);

    /* prefixes, lower case, no separators */
    char buf[128];
    snprintf(buf, sizeof buf, "sha256:%s", s);
    memset(back, 0, sizeof back);
    assert_int_equal(rx_tls_fingerprint_parse(buf, back), 0);
    assert_memory_equal(back, fp, 32);
    snprintf(buf, sizeof buf, "SHA256:%s", s);
    assert_int_equal(rx_tls_fingerprint_parse(buf, back), 0);
    char plain[65];
    size_t k = 0;
    for (size_t i = 0; i < 95; i++) {
        if (s[i] != ':')
            plain[k++] = (char)(s[i] >= 'A' && s[i] <= 'F' ? s[i] - 'A' + 'a' : s[i]);
    }
    plain[k] = '\0';
    assert_int_equal(k, 64);
    memset(back, 0, sizeof back);
    assert_int_equal(rx_tls_fingerprint_parse(plain, back), 0);
    assert_memory_equal(back, fp, 32);

    /* rejects leave out untouched */
    uint8_t keep[32];
    memset(keep, 0xAB, sizeof keep);
    memcpy(back, keep, sizeof back);
    const char *bad[] = {
        "",
        "sha256:",
        "05:2A",
        "sha1:05:2A:4F:74:99:BE:E3:08:2D:52:77:9C:C1:E6:0B:30:55:7A:9F:C4:E9:0E:33:58:7D:A2:"
        "C7:EC:11:36:5B:80",
        /* one separator missing (mixed forms) */
        "052A:4F:74:99:BE:E3:08:2D:52:77:9C:C1:E6:0B:30:55:7A:9F:C4:E9:0E:33:58:7D:A2:C7:EC:11:"
        "36:5B:80:",
        /* wrong separator */
        "05-2A-4F-74-99-BE-E3-08-2D-52-77-9C-C1-E6-0B-30-55-7A-9F-C4-E9-0E-33-58-7D-A2-C7-EC-11-"
        "36-5B-80",
        /* not hex */
        "G5:2A:4F:74:99:BE:E3:08:2D:52:77:9C:C1:E6:0B:30:55:7A:9F:C4:E9:0E:33:58:7D:A2:C7:EC:11:"
        "36:5B:80",
        /* 63 and 65 digits */
        "052a4f7499bee3082d52779cc1e60b30557a9fc4e90e33587da2c7ec11365b8",
        "052a4f7499bee3082d52779cc1e60b30557a9fc4e90e33587da2c7ec11365b800",
        /* trailing blank */
        "052a4f7499bee3082d52779cc1e60b30557a9fc4e90e33587da2c7ec11365b8 ",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (rx_tls_fingerprint_parse(bad[i], back) != RX_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_memory_equal(back, keep, 32);
    }
    assert_int_equal(rx_tls_fingerprint_parse(NULL, back), RX_EINVAL);
}

static void test_generate(void **state)
{
    /* files from the fixture: key 0600, PEM, parsable with the right extensions */
    struct stat st;
    assert_int_equal(stat(g.srv_key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(g.srv_crt, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    char *pem = slurp(g.srv_crt);
    assert_non_null(strstr(pem, "-----BEGIN CERTIFICATE-----"));
    free(pem);
    pem = slurp(g.srv_key);
    assert_non_null(strstr(pem, "PRIVATE KEY-----"));
    free(pem);

    mbedtls_x509_crt crt;
    mbedtls_x509_crt_init(&crt);
    assert_int_equal(mbedtls_x509_crt_parse_file(&crt, g.srv_crt), 0);
    assert_int_equal(crt.version, 3);
    assert_true(crt.ca_istrue);
    assert_int_equal(mbedtls_pk_get_type(&crt.pk), MBEDTLS_PK_ECKEY);
    assert_int_equal(mbedtls_pk_get_bitlen(&crt.pk), 256);
    assert_int_equal(crt.sig_md, MBEDTLS_MD_SHA256);
    assert_int_equal(crt.serial.len, 16);
    assert_int_equal(mbedtls_x509_crt_check_key_usage(&crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE), 0);
    assert_int_equal(mbedtls_x509_crt_check_key_usage(&crt, MBEDTLS_X509_KU_KEY_CERT_SIGN), 0);
    assert_false(mbedtls_x509_time_is_past(&crt.valid_to));
    assert_false(mbedtls_x509_time_is_future(&crt.valid_from));
    /* issuer == subject, CN as given */
    assert_int_equal(crt.issuer_raw.len, crt.subject_raw.len);
    assert_memory_equal(crt.issuer_raw.p, crt.subject_raw.p, crt.subject_raw.len);
    char dn[256];
    assert_true(mbedtls_x509_dn_gets(dn, sizeof dn, &crt.subject) > 0);
    assert_string_equal(dn, "CN=rx-test-server");
    /* SAN: localhost, rx.test, in order */
    const mbedtls_x509_sequence *san = &crt.subject_alt_names;
    for (int i = 0; srv_names[i] != NULL; i++) {
        assert_non_null(san);
        assert_int_equal(san->buf.tag, MBEDTLS_ASN1_CONTEXT_SPECIFIC | 2);
        assert_int_equal(san->buf.len, strlen(srv_names[i]));
        assert_memory_equal(san->buf.p, srv_names[i], san->buf.len);
        san = san->next;
    }
    assert_null(san);
    /* self-signed: verifies against itself */
    uint32_t flags = 0;
    assert_int_equal(mbedtls_x509_crt_verify(&crt, &crt, NULL, "rx.test", &flags, NULL, NULL), 0);
    mbedtls_x509_crt_free(&crt);

    /* no SAN at all */
    mbedtls_x509_crt_init(&crt);
    assert_int_equal(mbedtls_x509_crt_parse_file(&crt, g.cli_crt), 0);
    assert_null(crt.subject_alt_names.buf.p);
    mbedtls_x509_crt_free(&crt);

    /* fingerprints: stable per file, different between files and between generations */
    uint8_t fp[32], fp2[32];
    char err[256];
    assert_int_equal(rx_tls_cert_file_sha256(g.srv_crt, fp, err, sizeof err), 0);
    assert_memory_equal(fp, g.srv_fp, 32);
    assert_int_equal(rx_tls_cert_file_sha256(g.other_crt, fp2, err, sizeof err), 0);
    assert_memory_not_equal(fp, fp2, 32);
    char crt2[160], key2[160];
    snprintf(crt2, sizeof crt2, "%s/regen.crt", g.dir);
    snprintf(key2, sizeof key2, "%s/regen.key", g.dir);
    const char *const one[] = {"a.example", NULL};
    assert_int_equal(rx_tls_cert_generate(crt2, key2, "comma, in CN", one, 1, err, sizeof err), 0);
    assert_int_equal(rx_tls_cert_file_sha256(crt2, fp, err, sizeof err), 0);
    assert_int_equal(rx_tls_cert_generate(crt2, key2, "comma, in CN", one, 1, err, sizeof err), 0);
    assert_int_equal(rx_tls_cert_file_sha256(crt2, fp2, err, sizeof err), 0);
    assert_memory_not_equal(fp, fp2, 32); /* new key and serial */
    mbedtls_x509_crt_init(&crt);
    assert_int_equal(mbedtls_x509_crt_parse_file(&crt, crt2), 0);
    assert_true(mbedtls_x509_dn_gets(dn, sizeof dn, &crt.subject) > 0);
    assert_string_equal(dn, "CN=comma\\, in CN");
    mbedtls_x509_crt_free(&crt);

    /* errors */
    err[0] = 'x';
    assert_int_equal(rx_tls_cert_generate("/nonexistent-rx-dir/a.crt", "/nonexistent-rx-dir/a.key",
                                          "x", NULL, 1, err, sizeof err),
                     -ENOENT);
    assert_non_null(strstr(err, "/nonexistent-rx-dir/a.key"));
    assert_int_equal(rx_tls_cert_generate(crt2, key2, "", NULL, 1, err, sizeof err), RX_EINVAL);
    assert_int_equal(rx_tls_cert_generate(crt2, key2, NULL, NULL, 1, err, sizeof err), RX_EINVAL);
    assert_int_equal(rx_tls_cert_generate(crt2, key2, "x", NULL, 0, err, sizeof err), RX_EINVAL);
    assert_int_equal(rx_tls_cert_generate(NULL, key2, "x", NULL, 1, err, sizeof err), RX_EINVAL);
    const char *const empty_name[] = {"", NULL};
    assert_int_equal(rx_tls_cert_generate(crt2, key2, "x", empty_name, 1, NULL, 0), RX_EINVAL);

    err[0] = '\0';
    assert_int_equal(rx_tls_cert_file_sha256("/nonexistent-rx-dir/a.crt", fp, err, sizeof err),
                     RX_ETLSCA);
    assert_non_null(strstr(err, "/nonexistent-rx-dir/a.crt"));
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(rx_tls_cert_file_sha256(g.srv_key, fp, err, sizeof err), RX_ETLSCA);
    assert_non_null(strstr(err, g.srv_key));
}

static void test_ctx_args(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char err[512];
    rx_tls_ctx_t *ctx = (rx_tls_ctx_t *)(uintptr_t)1;

    /* server contexts */
    assert_int_equal(rx_tls_server_ctx_create(NULL, g.srv_key, NULL, NULL, &ctx, err, sizeof err),
                     RX_EINVAL);
    assert_null(ctx);
    assert_int_equal(
        rx_tls_server_ctx_create(g.srv_crt, g.srv_key, NULL, NULL, NULL, err, sizeof err),
        RX_EINVAL);
    assert_int_equal(rx_tls_server_ctx_create("/nonexistent-rx/x.crt", g.srv_key, NULL, NULL, &ctx,
                                              err, sizeof err),
                     RX_ETLSCA);
    assert_non_null(strstr(err, "/nonexistent-rx/x.crt"));
    assert_int_equal(rx_tls_server_ctx_create(g.srv_crt, "/nonexistent-rx/x.key", NULL, NULL, &ctx,
                                              err, sizeof err),
                     RX_ETLSCA);
    assert_non_null(strstr(err, "/nonexistent-rx/x.key"));
    assert_int_equal(
        rx_tls_server_ctx_create(g.srv_crt, g.srv_crt, NULL, NULL, &ctx, err, sizeof err),
        RX_ETLSCA); /* a certificate is not a key */
    assert_int_equal(
        rx_tls_server_ctx_create(g.srv_crt, g.other_key, NULL, NULL, &ctx, err, sizeof err),
        RX_EINVAL); /* key of another certificate */
    assert_non_null(strstr(err, "does not match"));
    const char *const bad_alpn[] = {"h2", "", NULL};
    assert_int_equal(
        rx_tls_server_ctx_create(g.srv_crt, g.srv_key, bad_alpn, NULL, &ctx, err, sizeof err),
        RX_EINVAL);
    assert_int_equal(rx_tls_server_ctx_create(g.srv_crt, g.srv_key, NULL, "/nonexistent-rx/ca.crt",
                                              &ctx, err, sizeof err),
                     RX_ETLSCA);
    assert_non_null(strstr(err, "/nonexistent-rx/ca.crt"));
    assert_null(ctx);
    rx_tls_ctx_t *srv = NULL;
    assert_int_equal(
        rx_tls_server_ctx_create(g.srv_crt, g.srv_key, alpn_srv, NULL, &srv, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_non_null(srv);
    assert_int_equal(rx_tls_ctx_use_cert(srv, g.cli_crt, g.cli_key, err, sizeof err), RX_EINVAL);

    /* client contexts and rx_tls_ctx_use_cert */
    rx_tls_ctx_t *cli = NULL;
    assert_int_equal(rx_tls_ctx_create(g.srv_crt, 0, &cli), 0);
    assert_int_equal(rx_tls_ctx_use_cert(cli, g.cli_crt, g.other_key, err, sizeof err), RX_EINVAL);
    assert_int_equal(rx_tls_ctx_use_cert(cli, "/nonexistent-rx/c.crt", g.cli_key, err, sizeof err),
                     RX_ETLSCA);
    assert_non_null(strstr(err, "/nonexistent-rx/c.crt"));
    assert_int_equal(rx_tls_ctx_use_cert(cli, g.cli_crt, g.cli_key, err, sizeof err), 0);
    assert_int_equal(rx_tls_ctx_use_cert(cli, g.cli_crt, g.cli_key, err, sizeof err), RX_EINVAL);
    assert_int_equal(rx_tls_ctx_use_cert(NULL, g.cli_crt, g.cli_key, err, sizeof err), RX_EINVAL);

    /* wrong kind of context */
    rx_stream_opts_t o;
    rx_stream_opts_init(&o);
    o.tls = 1;
    o.tls_ctx = srv;
    rx_stream_t *s = (rx_stream_t *)(uintptr_t)1;
    int dummy;
    assert_int_equal(rx_stream_connect(&loop, "127.0.0.1", 443, &o, c_on_connect, &dummy, &s),
                     RX_EINVAL);
    assert_null(s);
    o.tls_ctx = cli;
    rx_listener_t *l = (rx_listener_t *)(uintptr_t)1;
    assert_int_equal(
        rx_listen(&loop, "127.0.0.1", 0, &o, 0, sv_on_accept, &dummy, &l, err, sizeof err),
        RX_EINVAL);
    assert_null(l);
    assert_non_null(strstr(err, "server context"));
    o.tls_ctx = NULL;
    assert_int_equal(
        rx_listen(&loop, "127.0.0.1", 0, &o, 0, sv_on_accept, &dummy, &l, err, sizeof err),
        RX_EINVAL);

    uint8_t fp[32];
    assert_int_equal(rx_stream_peer_cert_sha256(NULL, fp), RX_ESTATE);
    assert_string_equal(rx_listener_error_detail(NULL), "");
    rx_tls_ctx_destroy(srv);
    rx_tls_ctx_destroy(cli);
    loop_finish(&loop);
}

/* CA verification against the generated certificate, ALPN h2 on both sides, a 256 KiB echo, the
 * peer fingerprint equal to the file's. */
static void test_echo_ca_alpn(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sv_t sv;
    sv_start(&loop, &sv);
    rx_tls_ctx_t *ctx = NULL;
    assert_int_equal(rx_tls_ctx_create(g.srv_crt, 0, &ctx), 0);
    rx_stream_opts_t o;
    tls_opts(&o, ctx);
    client_t c;
    int r = client_connect(&loop, &c, "127.0.0.1", sv.port, &o);
    if (r != 0)
        fprintf(stderr, "connect: %s: %s\n", rx_strerror(r), c.detail);
    assert_int_equal(r, 0);
    assert_true(rx_stream_is_tls(c.s));
    assert_string_equal(c.alpn, "h2");
    run_until(&loop, &sv.accepted);
    assert_string_equal(sv.alpn[0], "h2");
    assert_int_equal(sv.peer_fp_rc[0], RX_ESTATE); /* no client certificate */
    uint8_t fp[32];
    assert_int_equal(rx_stream_peer_cert_sha256(c.s, fp), 0);
    assert_memory_equal(fp, g.srv_fp, 32);

    enum { TOTAL = 256 * 1024 };
    char *data = malloc(TOTAL);
    assert_non_null(data);
    fill_pattern(data, TOTAL, 7);
    c.expect = TOTAL;
    struct iovec iov[4];
    for (int i = 0; i < 4; i++) {
        iov[i].iov_base = data + (size_t)i * (TOTAL / 4);
        iov[i].iov_len = TOTAL / 4;
    }
    assert_int_equal(rx_stream_write(c.s, iov, 4, NULL, NULL), 0);
    run_until(&loop, &c.done);
    assert_int_equal(c.rx_len, TOTAL);
    assert_memory_equal(c.rx, data, TOTAL);
    free(data);

    /* the client closes (close_notify): the server's stream ends with UV_EOF */
    client_close_wait(&c);
    run_until(&loop, &sv.closed);
    assert_int_equal(sv.ended_eof, 1);

    /* a second server name from the SAN list, and a client without ALPN against a server
     * without ALPN */
    o.server_name = "rx.test";
    assert_int_equal(client_connect(&loop, &c, "127.0.0.1", sv.port, &o), 0);
    client_ping(&c, "rx.test");
    client_close_wait(&c);
    sv_stop(&sv);

    sv_start_opts(&loop, &sv, NULL, NULL, 0);
    o.alpn = NULL;
    assert_int_equal(client_connect(&loop, &c, "127.0.0.1", sv.port, &o), 0);
    assert_string_equal(c.alpn, "");
    client_ping(&c, "no alpn");
    run_until(&loop, &sv.accepted);
    assert_string_equal(sv.alpn[0], "");
    client_close_wait(&c);
    assert_int_equal(sv.accept_errors, 0);
    sv_stop(&sv);
    rx_tls_ctx_destroy(ctx);
    loop_finish(&loop);
}

static void test_pin(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sv_t sv;
    sv_start(&loop, &sv);

    /* matching pin, no CA, no server name (the certificate has no IP SAN): accepted */
    rx_stream_opts_t o;
    tls_opts(&o, NULL);
    o.server_name = NULL;
    o.ca_file = "/nonexistent-rx/ca.crt"; /* not even loaded with a pin */
    uint8_t pin[32];
    memcpy(pin, g.srv_fp, 32);
    o.tls_pin_sha256 = pin;
    client_t c;
    int r = client_connect(&loop, &c, "127.0.0.1", sv.port, &o);
    if (r != 0)
        fprintf(stderr, "connect: %s: %s\n", rx_strerror(r), c.detail);
    assert_int_equal(r, 0);
    memset(pin, 0, sizeof pin); /* copied at connect */
    assert_string_equal(c.alpn, "h2");
    client_ping(&c, "pinned");
    uint8_t fp[32];
    assert_int_equal(rx_stream_peer_cert_sha256(c.s, fp), 0);
    assert_memory_equal(fp, g.srv_fp, 32);
    client_close_wait(&c);

    /* a shared context without CA works with a pin too */
    rx_tls_ctx_t *noca = NULL;
    assert_int_equal(rx_tls_ctx_create(NULL, RX_TLS_CTX_NO_CA, &noca), 0);
    tls_opts(&o, noca);
    o.tls_pin_sha256 = g.srv_fp;
    assert_int_equal(client_connect(&loop, &c, "127.0.0.1", sv.port, &o), 0);
    client_close_wait(&c);

    /* wrong pin (the other certificate's): RX_ETLSVERIFY with both fingerprints */
    uint8_t other[32];
    char err[256];
    assert_int_equal(rx_tls_cert_file_sha256(g.other_crt, other, err, sizeof err), 0);
    o.tls_pin_sha256 = other;
    expect_fail(&loop, &sv, &o, RX_ETLSVERIFY);
    char want_s[96], got_s[96];
    rx_tls_fingerprint_format(other, want_s);
    rx_tls_fingerprint_format(g.srv_fp, got_s);
    client_t c2;
    assert_int_equal(client_connect(&loop, &c2, "127.0.0.1", sv.port, &o), RX_ETLSVERIFY);
    assert_non_null(strstr(c2.detail, want_s));
    assert_non_null(strstr(c2.detail, got_s));
    assert_true(strstr(c2.detail, want_s) < strstr(c2.detail, got_s)); /* expected, then got */
    client_close_wait(&c2);
    run_until_n(&loop, &sv.accept_errors, 2);

    /* the listener is unharmed */
    assert_int_equal(sv.accepted, 2);
    o.tls_pin_sha256 = g.srv_fp;
    assert_int_equal(client_connect(&loop, &c, "127.0.0.1", sv.port, &o), 0);
    client_ping(&c, "still here");
    client_close_wait(&c);
    rx_tls_ctx_destroy(noca);
    sv_stop(&sv);
    loop_finish(&loop);
}

/* No usable CA, the wrong CA, the wrong name: the client fails with RX_ETLSVERIFY, the listener
 * reports a failed handshake and keeps listening. */
static void test_verify_failures(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sv_t sv;
    sv_start(&loop, &sv);
    rx_stream_opts_t o;

    rx_tls_ctx_t *sys = NULL; /* the system bundle does not know our certificate */
    assert_int_equal(rx_tls_ctx_create(RX_TLS_DEFAULT_CA_FILE, 0, &sys), 0);
    tls_opts(&o, sys);
    expect_fail(&loop, &sv, &o, RX_ETLSVERIFY);

    rx_tls_ctx_t *wrong = NULL;
    assert_int_equal(rx_tls_ctx_create(g.other_crt, 0, &wrong), 0);
    tls_opts(&o, wrong);
    expect_fail(&loop, &sv, &o, RX_ETLSVERIFY);
    assert_non_null(strstr(sv.last_detail, "TLS handshake"));

    rx_tls_ctx_t *ok = NULL;
    assert_int_equal(rx_tls_ctx_create(g.srv_crt, 0, &ok), 0);
    tls_opts(&o, ok);
    o.server_name = "not-in-the-certificate.example";
    expect_fail(&loop, &sv, &o, RX_ETLSVERIFY);

    /* a CA-less context cannot verify: refused before any I/O */
    rx_tls_ctx_t *noca = NULL;
    assert_int_equal(rx_tls_ctx_create(NULL, RX_TLS_CTX_NO_CA, &noca), 0);
    tls_opts(&o, noca);
    rx_stream_t *s = NULL;
    int dummy;
    assert_int_equal(rx_stream_connect(&loop, "127.0.0.1", sv.port, &o, c_on_connect, &dummy, &s),
                     RX_ETLSCA);

    tls_opts(&o, ok);
    client_t c;
    assert_int_equal(client_connect(&loop, &c, "127.0.0.1", sv.port, &o), 0);
    client_ping(&c, "verified");
    client_close_wait(&c);
    assert_int_equal(sv.accepted, 1);
    assert_int_equal(sv.accept_errors, 3);
    rx_tls_ctx_destroy(sys);
    rx_tls_ctx_destroy(wrong);
    rx_tls_ctx_destroy(ok);
    rx_tls_ctx_destroy(noca);
    sv_stop(&sv);
    loop_finish(&loop);
}

/* A server with ALPN requires a matching protocol from the client. */
static void test_alpn_required(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sv_t sv;
    sv_start_opts(&loop, &sv, alpn_h2, NULL, 0);
    rx_tls_ctx_t *ctx = NULL;
    assert_int_equal(rx_tls_ctx_create(g.srv_crt, 0, &ctx), 0);
    rx_stream_opts_t o;
    tls_opts(&o, ctx);

    o.alpn = NULL; /* offers none */
    expect_fail(&loop, &sv, &o, RX_ETLS);
    assert_int_equal(sv.last_error, RX_ETLS);
    assert_non_null(strstr(sv.last_detail, "ALPN"));

    static const char *const h11[] = {"http/1.1", NULL}; /* offers others */
    o.alpn = h11;
    expect_fail(&loop, &sv, &o, RX_ETLS);
    assert_int_equal(sv.last_error, RX_ETLS);

    static const char *const both[] = {"http/1.1", "h2", NULL};
    o.alpn = both;
    client_t c;
    assert_int_equal(client_connect(&loop, &c, "127.0.0.1", sv.port, &o), 0);
    assert_string_equal(c.alpn, "h2");
    client_close_wait(&c);
    rx_tls_ctx_destroy(ctx);
    sv_stop(&sv);
    loop_finish(&loop);
}

static void test_mutual_tls(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sv_t sv;
    sv_start_opts(&loop, &sv, alpn_srv, g.cli_crt, 0);
    rx_stream_opts_t o;

    /* no client certificate */
    rx_tls_ctx_t *anon = NULL;
    assert_int_equal(rx_tls_ctx_create(g.srv_crt, 0, &anon), 0);
    tls_opts(&o, anon);
    expect_fail(&loop, &sv, &o, RX_ETLS);
    assert_int_equal(sv.last_error, RX_ETLSVERIFY);
    assert_non_null(strstr(sv.last_detail, "no certificate"));

    /* a certificate the server does not trust */
    rx_tls_ctx_t *stranger = NULL;
    char err[256];
    assert_int_equal(rx_tls_ctx_create(g.srv_crt, 0, &stranger), 0);
    assert_int_equal(rx_tls_ctx_use_cert(stranger, g.other_crt, g.other_key, err, sizeof err), 0);
    tls_opts(&o, stranger);
    expect_fail(&loop, &sv, &o, RX_ETLS);
    assert_int_equal(sv.last_error, RX_ETLSVERIFY);
    assert_non_null(strstr(sv.last_detail, "certificate verification failed"));

    /* the right one */
    rx_tls_ctx_t *known = NULL;
    assert_int_equal(rx_tls_ctx_create(g.srv_crt, 0, &known), 0);
    assert_int_equal(rx_tls_ctx_use_cert(known, g.cli_crt, g.cli_key, err, sizeof err), 0);
    tls_opts(&o, known);
    client_t c;
    int r = client_connect(&loop, &c, "127.0.0.1", sv.port, &o);
    if (r != 0)
        fprintf(stderr, "connect: %s: %s\n", rx_strerror(r), c.detail);
    assert_int_equal(r, 0);
    client_ping(&c, "mutual");
    run_until(&loop, &sv.accepted);
    assert_int_equal(sv.peer_fp_rc[0], 0);
    assert_memory_equal(sv.peer_fp[0], g.cli_fp, 32);
    /* the client also pins the server meanwhile: pin + client certificate together */
    client_close_wait(&c);
    o.tls_pin_sha256 = g.srv_fp;
    assert_int_equal(client_connect(&loop, &c, "127.0.0.1", sv.port, &o), 0);
    client_close_wait(&c);
    assert_int_equal(sv.accept_errors, 2);
    rx_tls_ctx_destroy(anon);
    rx_tls_ctx_destroy(stranger);
    rx_tls_ctx_destroy(known);
    sv_stop(&sv);
    loop_finish(&loop);
}

/* Plain TCP peers: garbage, an early close, silence until the deadline. The listener reports each
 * and keeps accepting. */
static void test_bad_peers(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sv_t sv;
    sv_start_opts(&loop, &sv, alpn_srv, NULL, 300);

    raw_t r;
    raw_start(&loop, &r, sv.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    run_until_n(&loop, &sv.accept_errors, 1);
    assert_int_equal(sv.last_error, RX_ETLS);
    assert_non_null(strstr(sv.last_detail, "127.0.0.1:"));
    assert_non_null(strstr(sv.last_detail, "TLS handshake"));
    run_until(&loop, &r.eof); /* the server closed the connection */
    raw_close_wait(&loop, &r);

    raw_start(&loop, &r, sv.port, NULL);
    run_until(&loop, &r.connected);
    raw_close_wait(&loop, &r); /* closes before saying anything */
    run_until_n(&loop, &sv.accept_errors, 2);
    assert_int_equal(sv.last_error, RX_ETLS);
    assert_non_null(strstr(sv.last_detail, "closed"));

    uint64_t t0 = uv_hrtime();
    raw_start(&loop, &r, sv.port, NULL); /* silent */
    run_until_n(&loop, &sv.accept_errors, 3);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    assert_int_equal(sv.last_error, RX_ETIMEDOUT);
    assert_non_null(strstr(sv.last_detail, "timed out after 300 ms"));
    assert_true(ms >= 250);
    run_until(&loop, &r.eof);
    assert_int_equal(r.got, 0);
    raw_close_wait(&loop, &r);

    rx_tls_ctx_t *ctx = NULL;
    assert_int_equal(rx_tls_ctx_create(g.srv_crt, 0, &ctx), 0);
    rx_stream_opts_t o;
    tls_opts(&o, ctx);
    client_t c;
    assert_int_equal(client_connect(&loop, &c, "127.0.0.1", sv.port, &o), 0);
    client_ping(&c, "after the bad ones");
    client_close_wait(&c);
    assert_int_equal(sv.accepted, 1);
    assert_int_equal(sv.accept_errors, 3);
    rx_tls_ctx_destroy(ctx);
    sv_stop(&sv);
    loop_finish(&loop);
}

/* Closing the listener closes connections still in their handshake (nobody else owns them); no
 * on_accept runs for them, and nothing is left on the loop. */
static void test_close_during_handshake(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sv_t sv;
    sv_start_opts(&loop, &sv, alpn_srv, NULL, -1); /* no deadline */
    raw_t r[3];
    for (int i = 0; i < 3; i++) {
        raw_start(&loop, &r[i], sv.port, NULL);
        run_until(&loop, &r[i].connected);
    }
    /* let the listener accept them */
    uint64_t until = uv_hrtime() + 100ull * 1000000ull;
    while (uv_hrtime() < until) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    sv_stop(&sv);
    for (int i = 0; i < 3; i++) {
        run_until(&loop, &r[i].eof);
        raw_close_wait(&loop, &r[i]);
    }
    assert_int_equal(sv.accepted, 0);
    assert_int_equal(sv.accept_errors, 0);
    loop_finish(&loop);
}

/* OpenSSL as the client: ALPN h2 and chain verification of the generated certificate. */
static void test_openssl_client(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sv_t sv;
    sv_start(&loop, &sv);
    char connect[32], out[160];
    snprintf(connect, sizeof connect, "127.0.0.1:%d", sv.port);
    snprintf(out, sizeof out, "%s/s_client.out", g.dir);
    char *argv[] = {"openssl",
                    "s_client",
                    "-connect",
                    connect,
                    "-alpn",
                    "h2",
                    "-CAfile",
                    g.srv_crt,
                    "-servername",
                    "localhost",
                    "-verify_hostname",
                    "localhost",
                    "-verify_return_error",
                    NULL};
    int64_t st = run_child(&loop, argv, out);
    char *text = slurp(out);
    if (st != 0 || strstr(text, "ALPN protocol: h2") == NULL)
        fprintf(stderr, "openssl s_client exited %lld:\n%s\n", (long long)st, text);
    assert_int_equal(st, 0);
    assert_non_null(strstr(text, "ALPN protocol: h2"));
    assert_non_null(strstr(text, "Verify return code: 0 (ok)"));
    assert_non_null(strstr(text, "TLSv1.2"));
    free(text);
    run_until(&loop, &sv.accepted);
    assert_string_equal(sv.alpn[0], "h2");
    run_until(&loop, &sv.closed); /* s_client sent close_notify on stdin EOF */

    /* and openssl's own verifier accepts the generated certificate as its own anchor */
    char *argv2[] = {"openssl",          "verify",  "-CAfile", g.srv_crt,
                     "-verify_hostname", "rx.test", g.srv_crt, NULL};
    st = run_child(&loop, argv2, out);
    text = slurp(out);
    if (st != 0)
        fprintf(stderr, "openssl verify exited %lld:\n%s\n", (long long)st, text);
    assert_int_equal(st, 0);
    free(text);
    sv_stop(&sv);
    loop_finish(&loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    rx_log_set(quiet_logger, NULL, RX_LOG_DEBUG);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_generate),
        cmocka_unit_test(test_ctx_args),
        cmocka_unit_test(test_echo_ca_alpn),
        cmocka_unit_test(test_pin),
        cmocka_unit_test(test_verify_failures),
        cmocka_unit_test(test_alpn_required),
        cmocka_unit_test(test_mutual_tls),
        cmocka_unit_test(test_bad_peers),
        cmocka_unit_test(test_close_during_handshake),
        cmocka_unit_test(test_openssl_client),
    };
    return cmocka_run_group_tests_name("tls-server", tests, group_setup, group_teardown) != 0;
}
