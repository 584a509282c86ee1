/* tcp.c — client streams: resolve, connect with a deadline, optional TLS (tls.c), read, write,
 * close; and plain TCP listeners. The libuv glue for rx/stream.h.
 *
 * Accepted streams are ordinary rx_stream_t values with the same handle layout as a connected
 * client (a timer plus one attempt_t holding the TCP handle), so the read, write and close paths
 * below are shared unchanged. Plain ones start in ST_OPEN. TLS ones start in ST_HANDSHAKE, owned
 * by the listener (linked in its pending list, s->lst set) until the handshake ends: then
 * accept_done() hands them to on_accept or closes them. Closing the listener closes the pending
 * ones, since nobody else knows them.
 *
 * Memory: the stream owns a timer (deadline, and later the "process buffered TLS input" kick) and
 * one TCP handle per connection attempt. It is freed when close was requested, every handle's
 * close callback ran and no getaddrinfo request is outstanding; pending write requests complete
 * (libuv cancels them) before the TCP handle's close callback, so they never see freed memory.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <uv.h>

#include "rx/err.h"
#include "rx/log.h"
#include "rx/stream.h"
#include "rx_internal.h"

/* Plain TCP writes pass the caller's iovecs to uv_write as they are. */
_Static_assert(sizeof(struct iovec) == sizeof(uv_buf_t), "uv_buf_t is not an iovec");
_Static_assert(offsetof(struct iovec, iov_base) == offsetof(uv_buf_t, base), "iovec base");
_Static_assert(offsetof(struct iovec, iov_len) == offsetof(uv_buf_t, len), "iovec len");

#define READ_BUF (64 * 1024)
#define PLAIN_BUF (16 * 1024)

enum state {
    ST_RESOLVING,
    ST_CONNECTING,
    ST_HANDSHAKE,
    ST_OPEN,
    ST_FAILED,
    ST_CLOSING,
};

static const char *state_name(int st)
{
    switch (st) {
    case ST_RESOLVING:
        return "resolving";
    case ST_CONNECTING:
        return "connecting";
    case ST_HANDSHAKE:
        return "in the TLS handshake";
    default:
        return "connecting";
    }
}

typedef struct wreq {
    uv_write_t req;
    rx_stream_t *s;
    rx_stream_write_cb cb; /* NULL for internal TLS flushes */
    void *ud;
    char *owned; /* TLS ciphertext */
} wreq_t;

typedef struct attempt {
    uv_tcp_t tcp;
    rx_stream_t *s;
} attempt_t;

struct rx_stream {
    uv_loop_t *loop;
    void *ud;
    int state;
    int closing;
    int handles; /* open uv handles (timer, attempts) */
    int gai_pending;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    uv_connect_t conn;
    attempt_t *att; /* current TCP handle, NULL when none */
    struct addrinfo *ai, *ai_cur;
    int last_err;

    char *host;
    int port;
    int timeout_ms, nodelay, keepalive_s;
    rx_stream_connect_cb on_connect;

    rx_stream_data_cb on_data;
    rx_stream_end_cb on_end;
    int reading, read_ended, uv_reading;
    char *rbuf; /* plain TCP read buffer */

    rx_stream_close_cb on_closed;

    int is_tls;
    rx__tls_t *tls;
    char *plain; /* TLS decrypted buffer */
    char alpn[64];

    char peer[INET6_ADDRSTRLEN + 16]; /* "[ip]:port" once connected or accepted */
    char detail[512];

    /* Accepted TLS streams while their handshake runs: the listener, and its pending list. */
    rx_listener_t *lst;
    rx_stream_t *lprev, *lnext;
};

/* ---- options, accessors ---- */

void rx_stream_opts_init(rx_stream_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->connect_timeout_ms = 5000;
    o->nodelay = 1;
    o->keepalive_s = 30;
}

void *rx_stream_ud(const rx_stream_t *s)
{
    return s->ud;
}

void rx_stream_set_ud(rx_stream_t *s, void *ud)
{
    s->ud = ud;
}

uv_loop_t *rx_stream_loop(const rx_stream_t *s)
{
    return s->loop;
}

int rx_stream_is_open(const rx_stream_t *s)
{
    return s != NULL && s->state == ST_OPEN;
}

int rx_stream_is_tls(const rx_stream_t *s)
{
    return s != NULL && s->is_tls;
}

const char *rx_stream_alpn(const rx_stream_t *s)
{
    return s != NULL && s->alpn[0] != '\0' ? s->alpn : NULL;
}

const char *rx_stream_peer(const rx_stream_t *s)
{
    return s != NULL ? s->peer : "";
}

const char *rx_stream_error_detail(const rx_stream_t *s)
{
    return s != NULL ? s->detail : "";
}

int rx_stream_peer_cert_sha256(const rx_stream_t *s, uint8_t out[32])
{
    if (s == NULL || out == NULL || s->tls == NULL)
        return RX_ESTATE;
    return rx__tls_peer_cert_sha256(s->tls, out);
}

/* ---- teardown ---- */

static void stream_free(rx_stream_t *s)
{
    rx__tls_free(s->tls);
    if (s->ai != NULL)
        uv_freeaddrinfo(s->ai);
    free(s->plain);
    free(s->rbuf);
    free(s->host);
    free(s);
}

static void maybe_free(rx_stream_t *s)
{
    if (!s->closing || s->handles > 0 || s->gai_pending)
        return;
    rx_stream_close_cb cb = s->on_closed;
    if (cb != NULL)
        cb(s);
    stream_free(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    rx_stream_t *s = rx__container_of((uv_timer_t *)h, rx_stream_t, timer);
    s->handles--;
    maybe_free(s);
}

static void on_attempt_closed(uv_handle_t *h);

/* Closes the current TCP handle (its close callback decides what comes next). */
static void attempt_close(rx_stream_t *s)
{
    attempt_t *a = s->att;
    if (a == NULL)
        return;
    s->att = NULL;
    s->uv_reading = 0;
    uv_close((uv_handle_t *)&a->tcp, on_attempt_closed);
}

/* ---- writes ---- */

static void on_write(uv_write_t *req, int status)
{
    wreq_t *w = rx__container_of(req, wreq_t, req);
    rx_stream_t *s = w->s;
    rx_stream_write_cb cb = w->cb;
    void *ud = w->ud;
    free(w->owned);
    free(w);
    if (status == UV_ECANCELED)
        status = RX_ECANCELED;
    if (cb != NULL)
        cb(s, status, ud);
}

/* Hands the ciphertext mbedtls produced to uv_write. cb (may be NULL) will run for it; with
 * nothing to send, a zero-length write still carries cb. Returns 0 or a negative code (then cb
 * will not run). */
static int tls_flush(rx_stream_t *s, rx_stream_write_cb cb, void *ud)
{
    size_t len;
    char *p = rx__tls_out_take(s->tls, &len);
    if (p == NULL && cb == NULL)
        return 0;
    if (s->att == NULL) {
        free(p);
        return RX_ESTATE;
    }
    wreq_t *w = calloc(1, sizeof *w);
    if (w == NULL) {
        free(p);
        return RX_ENOMEM;
    }
    w->s = s;
    w->cb = cb;
    w->ud = ud;
    w->owned = p;
    uv_buf_t b = uv_buf_init(p != NULL ? p : (char *)"", (unsigned)len);
    int r = uv_write(&w->req, (uv_stream_t *)&s->att->tcp, &b, 1, on_write);
    if (r < 0) {
        free(p);
        free(w);
    }
    return r;
}

int rx_stream_write(rx_stream_t *s, const struct iovec *iov, int n, rx_stream_write_cb on_written,
                    void *ud)
{
    if (s == NULL || n <= 0 || iov == NULL)
        return RX_EINVAL;
    if (s->state != ST_OPEN || s->att == NULL)
        return RX_ESTATE;
    if (s->is_tls) {
        for (int i = 0; i < n; i++) {
            int r =
                rx__tls_write(s->tls, iov[i].iov_base, iov[i].iov_len, s->detail, sizeof s->detail);
            if (r < 0)
                return r;
        }
        return tls_flush(s, on_written, ud);
    }
    wreq_t *w = calloc(1, sizeof *w);
    if (w == NULL)
        return RX_ENOMEM;
    w->s = s;
    w->cb = on_written;
    w->ud = ud;
    int r = uv_write(&w->req, (uv_stream_t *)&s->att->tcp, (const uv_buf_t *)(const void *)iov,
                     (unsigned)n, on_write);
    if (r < 0)
        free(w);
    return r;
}

/* ---- connect outcome ---- */

static void accept_done(rx_stream_t *s, int status);

static void connect_done(rx_stream_t *s, int status)
{
    if (s->lst != NULL) {
        accept_done(s, status);
        return;
    }
    uv_timer_stop(&s->timer);
    if (s->ai != NULL) {
        uv_freeaddrinfo(s->ai);
        s->ai = s->ai_cur = NULL;
    }
    if (status == 0) {
        s->state = ST_OPEN;
        s->detail[0] = '\0';
        if (rx_log_enabled(RX_LOG_DEBUG)) {
            int v6 = strchr(s->host, ':') != NULL;
            rx_log(RX_LOG_DEBUG, "stream", "connected to %s%s%s:%d%s%s%s", v6 ? "[" : "", s->host,
                   v6 ? "]" : "", s->port, s->is_tls ? " (TLS, ALPN " : "",
                   s->is_tls ? (s->alpn[0] ? s->alpn : "none") : "", s->is_tls ? ")" : "");
        }
    } else {
        s->state = ST_FAILED;
        if (s->tls != NULL)
            tls_flush(s, NULL, NULL); /* a fatal alert, best-effort */
        attempt_close(s);
        rx_log(RX_LOG_DEBUG, "stream", "connect to %s port %d failed: %s (%s)", s->host, s->port,
               rx_strerror(status), s->detail);
    }
    s->on_connect(s, status);
}

static void tls_drive_handshake(rx_stream_t *s)
{
    int r = rx__tls_handshake(s->tls, s->detail, sizeof s->detail);
    if (r == 1) {
        tls_flush(s, NULL, NULL);
        return;
    }
    if (r < 0) {
        connect_done(s, r);
        return;
    }
    tls_flush(s, NULL, NULL);
    const char *a = rx__tls_alpn(s->tls);
    if (a != NULL)
        snprintf(s->alpn, sizeof s->alpn, "%s", a);
    if (!s->reading && s->att != NULL) {
        uv_read_stop((uv_stream_t *)&s->att->tcp);
        s->uv_reading = 0;
    }
    connect_done(s, 0);
}

static void on_timer(uv_timer_t *t);

/* ---- reads ---- */

static void end_read(rx_stream_t *s, int status)
{
    s->reading = 0;
    s->read_ended = 1;
    if (s->att != NULL && s->uv_reading)
        uv_read_stop((uv_stream_t *)&s->att->tcp);
    s->uv_reading = 0;
    if (s->on_end != NULL)
        s->on_end(s, status);
}

/* Decrypts what is buffered and delivers it while the user keeps reading. */
static void tls_process(rx_stream_t *s)
{
    while (s->reading && s->state == ST_OPEN) {
        int r = rx__tls_read(s->tls, s->plain, PLAIN_BUF, s->detail, sizeof s->detail);
        if (r > 0) {
            s->on_data(s, s->plain, (size_t)r);
            continue;
        }
        if (s->state == ST_OPEN)
            tls_flush(s, NULL, NULL); /* alerts mbedtls may have queued */
        if (r < 0)
            end_read(s, r);
        break;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    attempt_t *a = h->data;
    rx_stream_t *s = a->s;
    if (s->is_tls) {
        size_t len;
        rx__tls_in_space(s->tls, &buf->base, &len);
        buf->len = len;
    } else {
        buf->base = s->rbuf;
        buf->len = READ_BUF;
    }
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    attempt_t *a = st->data;
    rx_stream_t *s = a->s;
    if (nread == 0 || s->att != a)
        return;
    if (!s->is_tls) {
        if (nread > 0) {
            if (s->reading)
                s->on_data(s, buf->base, (size_t)nread);
        } else if (s->state == ST_OPEN) {
            end_read(s, (int)nread);
        }
        return;
    }
    if (nread > 0) {
        rx__tls_in_commit(s->tls, (size_t)nread);
        if (s->state == ST_HANDSHAKE)
            tls_drive_handshake(s);
        else if (s->state == ST_OPEN)
            tls_process(s);
        return;
    }
    if (s->state == ST_HANDSHAKE) {
        if (nread == UV_EOF) {
            snprintf(s->detail, sizeof s->detail,
                     "peer closed the connection during the TLS handshake");
            connect_done(s, RX_ETLS);
        } else {
            snprintf(s->detail, sizeof s->detail, "read during the TLS handshake: %s",
                     uv_strerror((int)nread));
            connect_done(s, (int)nread);
        }
    } else if (s->state == ST_OPEN) {
        end_read(s, (int)nread);
    }
}

int rx_stream_read_start(rx_stream_t *s, rx_stream_data_cb on_data, rx_stream_end_cb on_end)
{
    if (s == NULL || on_data == NULL)
        return RX_EINVAL;
    if (s->state != ST_OPEN || s->read_ended || s->att == NULL)
        return RX_ESTATE;
    s->on_data = on_data;
    s->on_end = on_end;
    if (s->reading)
        return 0;
    s->reading = 1;
    if (!s->uv_reading) {
        int r = uv_read_start((uv_stream_t *)&s->att->tcp, on_alloc, on_read);
        if (r < 0) {
            s->reading = 0;
            return r;
        }
        s->uv_reading = 1;
    }
    /* Records that arrived with the handshake or before a read_stop: deliver them from the loop,
     * not from inside this call. */
    if (s->is_tls && rx__tls_in_pending(s->tls))
        uv_timer_start(&s->timer, on_timer, 0, 0);
    return 0;
}

int rx_stream_read_stop(rx_stream_t *s)
{
    if (s == NULL)
        return RX_EINVAL;
    if (s->state != ST_OPEN || s->att == NULL)
        return RX_ESTATE;
    s->reading = 0;
    if (s->uv_reading)
        uv_read_stop((uv_stream_t *)&s->att->tcp);
    s->uv_reading = 0;
    return 0;
}

/* ---- connecting ---- */

static void try_next(rx_stream_t *s);

static void on_attempt_closed(uv_handle_t *h)
{
    attempt_t *a = h->data;
    rx_stream_t *s = a->s;
    free(a);
    s->handles--;
    if (s->closing) {
        maybe_free(s);
        return;
    }
    if (s->state == ST_CONNECTING)
        try_next(s);
}

static void format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET6) {
        uv_ip6_name((const struct sockaddr_in6 *)(const void *)sa, ip, sizeof ip);
        snprintf(buf, len, "[%s]", ip);
    } else {
        uv_ip4_name((const struct sockaddr_in *)(const void *)sa, ip, sizeof ip);
        snprintf(buf, len, "%s", ip);
    }
}

static int sockaddr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
    return ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
}

/* "ip:port" / "[ip]:port" of the remote end, "" if it cannot be read. */
static void peer_format(const uv_tcp_t *tcp, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    buf[0] = '\0';
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &sl) != 0)
        return;
    char addr[INET6_ADDRSTRLEN + 2];
    format_addr((const struct sockaddr *)&ss, addr, sizeof addr);
    snprintf(buf, len, "%s:%d", addr, sockaddr_port((const struct sockaddr *)&ss));
}

/* The current attempt failed: note why and move on once its handle is closed. */
static void attempt_failed(rx_stream_t *s, int err)
{
    char addr[INET6_ADDRSTRLEN + 2];
    format_addr(s->ai_cur->ai_addr, addr, sizeof addr);
    snprintf(s->detail, sizeof s->detail, "connect %s:%d: %s", addr, s->port, uv_strerror(err));
    rx_log(RX_LOG_DEBUG, "stream", "%s", s->detail);
    s->last_err = err;
    s->ai_cur = s->ai_cur->ai_next;
    if (s->att != NULL)
        attempt_close(s); /* on_attempt_closed → try_next */
    else
        try_next(s);
}

static void on_tcp_connect(uv_connect_t *req, int status)
{
    attempt_t *a = req->handle->data;
    rx_stream_t *s = a->s;
    if (s->closing || s->state != ST_CONNECTING || s->att != a)
        return; /* canceled by a timeout or a close */
    if (status < 0) {
        attempt_failed(s, status);
        return;
    }
    uv_tcp_t *tcp = &a->tcp;
    peer_format(tcp, s->peer, sizeof s->peer);
    if (s->nodelay)
        uv_tcp_nodelay(tcp, 1);
    if (s->keepalive_s > 0)
        uv_tcp_keepalive(tcp, 1, (unsigned)s->keepalive_s);
    if (!s->is_tls) {
        connect_done(s, 0);
        return;
    }
    s->state = ST_HANDSHAKE;
    int r = uv_read_start((uv_stream_t *)tcp, on_alloc, on_read);
    if (r < 0) {
        snprintf(s->detail, sizeof s->detail, "read start: %s", uv_strerror(r));
        connect_done(s, r);
        return;
    }
    s->uv_reading = 1;
    tls_drive_handshake(s);
}

static void try_next(rx_stream_t *s)
{
    while (s->ai_cur != NULL) {
        attempt_t *a = calloc(1, sizeof *a);
        if (a == NULL) {
            connect_done(s, RX_ENOMEM);
            return;
        }
        a->s = s;
        int r = uv_tcp_init(s->loop, &a->tcp);
        if (r < 0) {
            free(a);
            s->last_err = r;
            s->ai_cur = s->ai_cur->ai_next;
            continue;
        }
        a->tcp.data = a;
        s->handles++;
        s->att = a;
        r = uv_tcp_connect(&s->conn, &a->tcp, s->ai_cur->ai_addr, on_tcp_connect);
        if (r < 0)
            attempt_failed(s, r);
        return;
    }
    int err = s->last_err != 0 ? s->last_err : UV_EADDRNOTAVAIL;
    connect_done(s, err);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    rx_stream_t *s = rx__container_of(req, rx_stream_t, gai);
    s->gai_pending = 0;
    if (s->closing || s->state != ST_RESOLVING) {
        if (res != NULL)
            uv_freeaddrinfo(res);
        maybe_free(s);
        return;
    }
    if (status < 0) {
        snprintf(s->detail, sizeof s->detail, "resolve %s: %s", s->host, uv_strerror(status));
        connect_done(s, status);
        return;
    }
    s->ai = s->ai_cur = res;
    s->state = ST_CONNECTING;
    try_next(s);
}

static void on_timer(uv_timer_t *t)
{
    rx_stream_t *s = rx__container_of(t, rx_stream_t, timer);
    switch (s->state) {
    case ST_RESOLVING:
    case ST_CONNECTING:
    case ST_HANDSHAKE:
        if (s->lst != NULL)
            snprintf(s->detail, sizeof s->detail, "TLS handshake timed out after %d ms",
                     s->timeout_ms);
        else
            snprintf(s->detail, sizeof s->detail, "connect to %s:%d timed out after %d ms while %s",
                     s->host, s->port, s->timeout_ms, state_name(s->state));
        if (s->state == ST_RESOLVING)
            uv_cancel((uv_req_t *)&s->gai); /* its callback still runs and frees the result */
        connect_done(s, RX_ETIMEDOUT);
        break;
    case ST_OPEN:
        if (s->is_tls)
            tls_process(s); /* kick from rx_stream_read_start */
        break;
    default:
        break;
    }
}

int rx_stream_connect(uv_loop_t *loop, const char *host, int port, const rx_stream_opts_t *opts,
                      rx_stream_connect_cb on_connect, void *ud, rx_stream_t **out)
{
    if (out != NULL)
        *out = NULL;
    if (loop == NULL || host == NULL || host[0] == '\0' || port <= 0 || port > 65535 ||
        on_connect == NULL || out == NULL)
        return RX_EINVAL;
    rx_stream_opts_t defaults;
    if (opts == NULL) {
        rx_stream_opts_init(&defaults);
        opts = &defaults;
    }
    rx_stream_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return RX_ENOMEM;
    s->loop = loop;
    s->ud = ud;
    s->port = port;
    s->on_connect = on_connect;
    s->timeout_ms = opts->connect_timeout_ms;
    s->nodelay = opts->nodelay;
    s->keepalive_s = opts->keepalive_s;
    s->is_tls = opts->tls != 0;
    s->state = ST_RESOLVING;

    /* "[::1]" → "::1" */
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host++;
        hl -= 2;
    }
    s->host = malloc(hl + 1);
    if (s->host == NULL) {
        stream_free(s);
        return RX_ENOMEM;
    }
    memcpy(s->host, host, hl);
    s->host[hl] = '\0';

    int r;
    if (s->is_tls) {
        rx_tls_ctx_t *ctx = opts->tls_ctx;
        if (ctx != NULL && rx__tls_ctx_is_server(ctx)) {
            rx_log(RX_LOG_DEBUG, "stream", "connect to %s: a server TLS context was given",
                   s->host);
            stream_free(s);
            return RX_EINVAL;
        }
        if (ctx == NULL) {
            int no_ca = opts->tls_insecure_skip_verify || opts->tls_pin_sha256 != NULL;
            r = rx_tls_ctx_create(opts->ca_file, no_ca ? RX_TLS_CTX_NO_CA : 0, &ctx);
            if (r < 0) {
                stream_free(s);
                return r;
            }
        }
        const char *name = opts->server_name != NULL ? opts->server_name : s->host;
        r = rx__tls_new(ctx, name, opts->alpn, opts->tls_insecure_skip_verify, opts->tls_pin_sha256,
                        &s->tls, s->detail, sizeof s->detail);
        if (opts->tls_ctx == NULL)
            rx_tls_ctx_destroy(ctx); /* the session holds its own reference */
        if (r < 0) {
            rx_log(RX_LOG_DEBUG, "stream", "TLS setup for %s failed: %s", name, s->detail);
            stream_free(s);
            return r;
        }
        s->plain = malloc(PLAIN_BUF);
        if (s->plain == NULL) {
            stream_free(s);
            return RX_ENOMEM;
        }
    } else {
        s->rbuf = malloc(READ_BUF);
        if (s->rbuf == NULL) {
            stream_free(s);
            return RX_ENOMEM;
        }
    }

    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_NUMERICSERV;
    /* Queued before anything needs closing, so a failure here can still be undone synchronously. */
    r = uv_getaddrinfo(loop, &s->gai, on_resolved, s->host, portstr, &hints);
    if (r < 0) {
        stream_free(s);
        return r;
    }
    s->gai_pending = 1;
    uv_timer_init(loop, &s->timer);
    s->handles = 1;
    if (s->timeout_ms >= 0)
        uv_timer_start(&s->timer, on_timer, (uint64_t)s->timeout_ms, 0);
    *out = s;
    return 0;
}

/* ---- close ---- */

void rx_stream_close(rx_stream_t *s, rx_stream_close_cb on_closed)
{
    if (s == NULL || s->closing)
        return;
    int was = s->state;
    s->closing = 1;
    s->on_closed = on_closed;
    s->reading = 0;
    s->state = ST_CLOSING;
    if (s->att != NULL && s->tls != NULL && was == ST_OPEN) {
        rx__tls_close_notify(s->tls);
        tls_flush(s, NULL, NULL); /* best-effort: written now if the socket has room */
    }
    if (s->gai_pending)
        uv_cancel((uv_req_t *)&s->gai);
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
    attempt_close(s); /* pending writes complete with UV_ECANCELED → RX_ECANCELED */
}

/* ---- listeners ---- */

struct rx_listener {
    uv_tcp_t tcp;
    uv_loop_t *loop;
    int port;
    int nodelay, keepalive_s;
    int timeout_ms;    /* TLS handshake deadline */
    rx_tls_ctx_t *tls; /* server context (one reference held), NULL for plain TCP */
    rx_stream_t *hs;   /* accepted TLS streams still in the handshake */
    int closing;
    rx_accept_cb on_accept;
    void *ud;
    void (*on_closed)(rx_listener_t *l, void *ud);
    char addr[INET6_ADDRSTRLEN + 16]; /* "ip:port" bound, for logs */
    char detail[640];
};


static void pending_unlink(rx_stream_t *s)
{
    rx_listener_t *l = s->lst;
    if (l == NULL)
        return;
    if (s->lprev != NULL)
        s->lprev->lnext = s->lnext;
    else
        l->hs = s->lnext;
    if (s->lnext != NULL)
        s->lnext->lprev = s->lprev;
    s->lst = NULL;
    s->lprev = s->lnext = NULL;
}

/* The TLS handshake of an accepted stream ended (via connect_done). */
static void accept_done(rx_stream_t *s, int status)
{
    rx_listener_t *l = s->lst;
    pending_unlink(s);
    uv_timer_stop(&s->timer);
    if (status == 0) {
        s->state = ST_OPEN;
        s->detail[0] = '\0';
        rx_log(RX_LOG_DEBUG, "listen", "TLS connection from %s on %s (ALPN %s)", s->peer, l->addr,
               s->alpn[0] != '\0' ? s->alpn : "none");
        l->on_accept(l, s, 0, l->ud);
        return;
    }
    snprintf(l->detail, sizeof l->detail, "%s: %s", s->peer, s->detail);
    rx_log(RX_LOG_DEBUG, "listen", "TLS handshake on %s failed: %s (%s)", l->addr,
           rx_strerror(status), l->detail);
    s->state = ST_FAILED;
    tls_flush(s, NULL, NULL); /* a fatal alert, best-effort */
    rx_stream_close(s, NULL);
    l->on_accept(l, NULL, status, l->ud);
}

/* Builds a stream around a freshly accepted connection: the same shape as a client stream after
 * its TCP connect (timer + one attempt), so close and free are uniform. Plain streams are open at
 * once; TLS streams start their handshake and are reported later by accept_done. */
static int accept_stream(rx_listener_t *l, rx_stream_t **out)
{
    *out = NULL;
    rx_stream_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        rx__set_err(l->detail, sizeof l->detail, "accept on %s: out of memory", l->addr);
        return RX_ENOMEM;
    }
    attempt_t *a = calloc(1, sizeof *a);
    if (l->tls != NULL)
        s->plain = malloc(PLAIN_BUF);
    else
        s->rbuf = malloc(READ_BUF);
    if (a == NULL || (s->plain == NULL && s->rbuf == NULL)) {
        rx__set_err(l->detail, sizeof l->detail, "accept on %s: out of memory", l->addr);
        free(a);
        stream_free(s);
        return RX_ENOMEM;
    }
    s->loop = l->loop;
    s->nodelay = l->nodelay;
    s->keepalive_s = l->keepalive_s;
    s->timeout_ms = l->tls != NULL ? l->timeout_ms : -1;
    int r = uv_tcp_init(l->loop, &a->tcp);
    if (r < 0) {
        rx__set_err(l->detail, sizeof l->detail, "accept on %s: %s", l->addr, uv_strerror(r));
        free(a);
        stream_free(s);
        return r;
    }
    a->s = s;
    a->tcp.data = a;
    s->att = a;
    uv_timer_init(l->loop, &s->timer); /* plain: never started, it exists so close is uniform */
    s->handles = 2;
    s->state = ST_OPEN;
    r = uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&a->tcp);
    if (r < 0) {
        rx__set_err(l->detail, sizeof l->detail, "accept on %s: %s", l->addr, uv_strerror(r));
        rx_stream_close(s, NULL); /* freed from the loop once both handles closed */
        return r;
    }
    peer_format(&a->tcp, s->peer, sizeof s->peer);
    if (s->nodelay)
        uv_tcp_nodelay(&a->tcp, 1);
    if (s->keepalive_s > 0)
        uv_tcp_keepalive(&a->tcp, 1, (unsigned)s->keepalive_s);
    if (l->tls == NULL) {
        *out = s;
        return 0;
    }

    s->is_tls = 1;
    s->state = ST_HANDSHAKE;
    r = rx__tls_new_server(l->tls, &s->tls, s->detail, sizeof s->detail);
    if (r == 0) {
        r = uv_read_start((uv_stream_t *)&a->tcp, on_alloc, on_read);
        if (r < 0)
            snprintf(s->detail, sizeof s->detail, "read start: %s", uv_strerror(r));
    }
    if (r < 0) {
        rx__set_err(l->detail, sizeof l->detail, "%s: %s", s->peer,
                s->detail[0] != '\0' ? s->detail : rx_strerror(r));
        s->state = ST_FAILED;
        rx_stream_close(s, NULL);
        return r;
    }
    s->uv_reading = 1;
    if (s->timeout_ms >= 0)
        uv_timer_start(&s->timer, on_timer, (uint64_t)s->timeout_ms, 0);
    s->lst = l;
    s->lnext = l->hs;
    if (l->hs != NULL)
        l->hs->lprev = s;
    l->hs = s;
    return 0; /* *out stays NULL: on_accept comes with the handshake's outcome */
}

static void on_connection(uv_stream_t *server, int status)
{
    rx_listener_t *l = rx__container_of((uv_tcp_t *)server, rx_listener_t, tcp);
    if (l->closing)
        return;
    rx_stream_t *s = NULL;
    if (status < 0)
        rx__set_err(l->detail, sizeof l->detail, "accept on %s: %s", l->addr, uv_strerror(status));
    else
        status = accept_stream(l, &s); /* sets l->detail when it fails */
    if (status < 0) {
        rx_log(RX_LOG_DEBUG, "listen", "accept on %s failed: %s (%s)", l->addr, rx_strerror(status),
               l->detail);
        l->on_accept(l, NULL, status, l->ud);
        return;
    }
    if (s == NULL)
        return; /* TLS handshake under way */
    rx_log(RX_LOG_DEBUG, "listen", "connection from %s on %s", s->peer, l->addr);
    l->on_accept(l, s, 0, l->ud);
}

static void on_listener_closed(uv_handle_t *h)
{
    rx_listener_t *l = rx__container_of((uv_tcp_t *)h, rx_listener_t, tcp);
    if (l->on_closed != NULL)
        l->on_closed(l, l->ud);
    rx_tls_ctx_destroy(l->tls);
    free(l);
}

static void on_failed_listener_closed(uv_handle_t *h)
{
    free(rx__container_of((uv_tcp_t *)h, rx_listener_t, tcp));
}

/* One bind + listen on ai. Returns 0 with *out, or a negative code (the handle, if any, is being
 * closed and frees itself). */
static int listen_one(uv_loop_t *loop, const struct addrinfo *ai, int backlog, rx_listener_t **out,
                      char *err, size_t errlen)
{
    char addr[INET6_ADDRSTRLEN + 2];
    format_addr(ai->ai_addr, addr, sizeof addr);
    int port = sockaddr_port(ai->ai_addr);
    rx_listener_t *l = calloc(1, sizeof *l);
    if (l == NULL)
        return RX_ENOMEM;
    int r = uv_tcp_init(loop, &l->tcp);
    if (r < 0) {
        free(l);
        rx__set_err(err, errlen, "listen %s:%d: %s", addr, port, uv_strerror(r));
        return r;
    }
    l->loop = loop;
    const char *step = "bind";
    r = uv_tcp_bind(&l->tcp, ai->ai_addr, 0);
    if (r == 0) {
        /* libuv reports EADDRINUSE from bind late, at listen */
        step = "listen";
        r = uv_listen((uv_stream_t *)&l->tcp, backlog, on_connection);
    }
    if (r == 0) {
        struct sockaddr_storage ss;
        int sl = sizeof ss;
        step = "getsockname";
        r = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &sl);
        if (r == 0)
            port = sockaddr_port((const struct sockaddr *)&ss);
    }
    if (r < 0) {
        rx__set_err(err, errlen, "%s %s:%d: %s", step, addr, port, uv_strerror(r));
        uv_close((uv_handle_t *)&l->tcp, on_failed_listener_closed);
        return r;
    }
    l->port = port;
    snprintf(l->addr, sizeof l->addr, "%s:%d", addr, port);
    *out = l;
    return 0;
}

int rx_listen(uv_loop_t *loop, const char *host, int port, const rx_stream_opts_t *opts,
              int backlog, rx_accept_cb on_accept, void *ud, rx_listener_t **out, char *err,
              size_t errlen)
{
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (out != NULL)
        *out = NULL;
    if (loop == NULL || host == NULL || host[0] == '\0' || port < 0 || port > 65535 ||
        backlog < 0 || on_accept == NULL || out == NULL) {
        rx__set_err(err, errlen, "rx_listen: invalid argument");
        return RX_EINVAL;
    }
    rx_stream_opts_t defaults;
    if (opts == NULL) {
        rx_stream_opts_init(&defaults);
        opts = &defaults;
    }
    if (opts->tls && (opts->tls_ctx == NULL || !rx__tls_ctx_is_server(opts->tls_ctx))) {
        rx__set_err(err, errlen,
                "rx_listen: TLS needs a server context (rx_tls_server_ctx_create) "
                "in opts->tls_ctx");
        return RX_EINVAL;
    }
    if (backlog == 0)
        backlog = 511;

    /* "[::1]" → "::1" */
    char hbuf[256];
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof hbuf) {
        rx__set_err(err, errlen, "rx_listen: invalid host");
        return RX_EINVAL;
    }
    memcpy(hbuf, host, hl);
    hbuf[hl] = '\0';

    char portstr[8];
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    uv_getaddrinfo_t req;
    /* NULL callback: libuv resolves synchronously and maps the error to UV_EAI_*. */
    int r = uv_getaddrinfo(loop, &req, NULL, hbuf, portstr, &hints);
    if (r < 0) {
        rx__set_err(err, errlen, "resolve %s: %s", hbuf, uv_strerror(r));
        return r;
    }
    int first = 0;
    char first_err[320] = "";
    for (const struct addrinfo *ai = req.addrinfo; ai != NULL; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        rx_listener_t *l = NULL;
        char e[256];
        r = listen_one(loop, ai, backlog, &l, e, sizeof e);
        if (r == 0) {
            uv_freeaddrinfo(req.addrinfo);
            l->on_accept = on_accept;
            l->ud = ud;
            l->nodelay = opts->nodelay;
            l->keepalive_s = opts->keepalive_s;
            l->timeout_ms = opts->connect_timeout_ms;
            if (opts->tls) {
                l->tls = opts->tls_ctx;
                rx__tls_ctx_ref(l->tls);
            }
            rx_log(RX_LOG_DEBUG, "listen", "listening on %s", l->addr);
            *out = l;
            return 0;
        }
        if (first == 0) {
            first = r; /* report the first address's failure: it is the one the user expects */
            snprintf(first_err, sizeof first_err, "%s", e);
        }
    }
    uv_freeaddrinfo(req.addrinfo);
    if (first == 0) {
        first = UV_EADDRNOTAVAIL;
        snprintf(first_err, sizeof first_err, "resolve %s: no IPv4 or IPv6 address", hbuf);
    }
    rx__set_err(err, errlen, "%s", first_err);
    rx_log(RX_LOG_DEBUG, "listen", "%s", first_err);
    return first;
}

const char *rx_listener_error_detail(const rx_listener_t *l)
{
    return l != NULL ? l->detail : "";
}

int rx_listener_port(const rx_listener_t *l)
{
    return l != NULL ? l->port : 0;
}

void rx_listener_close(rx_listener_t *l, void (*on_closed)(rx_listener_t *l, void *ud))
{
    if (l == NULL || l->closing)
        return;
    l->closing = 1;
    l->on_closed = on_closed;
    /* Streams still in their TLS handshake belong to nobody else: close them. */
    while (l->hs != NULL) {
        rx_stream_t *s = l->hs;
        pending_unlink(s);
        rx_stream_close(s, NULL);
    }
    uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
}
