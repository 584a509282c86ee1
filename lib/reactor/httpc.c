/* HTTP/1.1 and HTTP/2 client pool for one endpoint on one loop (see rx/httpc.h). */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rx/err.h"
#include "rx/httpc.h"
#include "rx/time.h"

#define TICK_MS 50
#define HEAD_MAX (16 * 1024)
#define IOV_INLINE 8

enum conn_state { C_CONNECTING, C_IDLE, C_BUSY, C_H2, C_CLOSING };
#define H2_MAX_NV 64
#define H2_WRITE_BATCH (256 * 1024)

typedef struct hconn {
    rx_httpc_t *c;
    rx_stream_t *s;
    enum conn_state state;
    struct hconn *prev, *next; /* all connections */
    struct hconn *idle_next;   /* idle stack */
    rx_http1_parser_t p;
    rx_httpc_req_t *req;
    int write_pending;
    int msg_done;
    int final_seen; /* final response status line of the current request parsed */
    uint64_t last_ns;   /* last progress (busy) or since when idle */
    uint64_t served;    /* requests completed on this connection */
    struct iovec *iov;
    struct iovec iov_inline[IOV_INLINE];
    char head[HEAD_MAX];
    /* HTTP/2 (state C_H2) */
    nghttp2_session *ng;
    int nstreams;
    int h2_cap;               /* streams allowed: ours, capped by the server's SETTINGS */
    int goaway;               /* no new streams on this connection */
    int in_io;                /* inside nghttp2: flushing and completions wait */
    int want_flush;
    rx_httpc_req_t *streams;  /* in flight */
    rx_httpc_req_t *fin_head, *fin_tail; /* closed streams waiting for done() */
} hconn_t;

struct rx_httpc {
    uv_loop_t *loop;
    char *host;
    int port;
    rx_httpc_opts_t o;
    hconn_t *conns;     /* list of all */
    hconn_t *idle;      /* LIFO of idle */
    int nconns;         /* open or connecting (not closing) */
    int nconnecting;
    int nidle;
    int nclosing;       /* streams whose close callback is pending */
    rx_httpc_req_t *q_head, *q_tail;
    size_t nqueued;
    rx_httpc_req_t *deferred; /* completed inside rx_httpc_submit: done() runs on the tick */
    int in_submit;
    uv_timer_t tick;
    int tick_on;
    int tick_closed;
    int closing;
    int fails;          /* consecutive connect failures */
    uint64_t backoff_until_ns;
    uint64_t rng;
    rx_httpc_stats_t st;
    nghttp2_session_callbacks *h2cb;
};

static const rx_http1_callbacks_t parser_cb;
static void dispatch(rx_httpc_t *c);
static void conn_close(hconn_t *k);
static void h2_conn_fail(hconn_t *k, int error, const char *detail);
static void maybe_free(rx_httpc_t *c);

void rx_httpc_opts_init(rx_httpc_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->max_conns = 64;
    o->h2_max_streams = 100;
    o->h2_stream_window = 4 << 20;
    o->h2_conn_window = 16 << 20;
    o->idle_timeout_ms = 30000;
    o->io_timeout_ms = 30000;
    o->reconnect_min_ms = 100;
    o->reconnect_max_ms = 5000;
    rx_stream_opts_init(&o->stream);
}

/* ---- request queue ---- */

static void q_push_back(rx_httpc_t *c, rx_httpc_req_t *r)
{
    r->next_ = NULL;
    if (c->q_tail)
        c->q_tail->next_ = r;
    else
        c->q_head = r;
    c->q_tail = r;
    c->nqueued++;
}

static void q_push_front(rx_httpc_t *c, rx_httpc_req_t *r)
{
    r->next_ = c->q_head;
    c->q_head = r;
    if (!c->q_tail)
        c->q_tail = r;
    c->nqueued++;
}

static rx_httpc_req_t *q_pop(rx_httpc_t *c)
{
    rx_httpc_req_t *r = c->q_head;
    if (!r)
        return NULL;
    c->q_head = r->next_;
    if (!c->q_head)
        c->q_tail = NULL;
    r->next_ = NULL;
    c->nqueued--;
    return r;
}

/* ---- completion ---- */

static void req_finish(rx_httpc_t *c, rx_httpc_req_t *r, int error, int retryable,
                       const char *detail)
{
    r->error = error;
    r->retryable = error ? retryable : 0;
    if (error && detail && detail[0] && !r->detail[0])
        snprintf(r->detail, sizeof(r->detail), "%s", detail);
    if (error && !r->detail[0])
        snprintf(r->detail, sizeof(r->detail), "%s", rx_strerror(error));
    r->t_end_ns = rx_now_ns();
    r->conn_ = NULL;
    c->st.requests++;
    if (c->in_submit) {
        r->next_ = c->deferred;
        c->deferred = r;
        return;
    }
    r->done(r);
}

/* Fails every queued request (used when the endpoint cannot be reached, and at close). Only the
 * requests queued now: a request that a done() submits from here waits for the next connect
 * (after the backoff) instead of failing at once, or looping forever when done() retries. */
static void fail_queued(rx_httpc_t *c, int error, const char *detail)
{
    rx_httpc_req_t *r = c->q_head;
    c->q_head = c->q_tail = NULL;
    c->nqueued = 0;
    while (r) {
        rx_httpc_req_t *nx = r->next_;
        r->next_ = NULL;
        req_finish(c, r, error, error != RX_ECANCELED, detail);
        r = nx;
    }
}

/* ---- tick: timeouts, idle closing, connects after backoff ---- */

static void tick_cb(uv_timer_t *t);

static void tick_update(rx_httpc_t *c)
{
    int want = !c->closing && (c->nconns > 0 || c->nqueued > 0 || c->deferred);
    if (want && !c->tick_on) {
        uv_timer_start(&c->tick, tick_cb, TICK_MS, TICK_MS);
        c->tick_on = 1;
    } else if (!want && c->tick_on) {
        uv_timer_stop(&c->tick);
        c->tick_on = 0;
    }
}

static void tick_cb(uv_timer_t *t)
{
    rx_httpc_t *c = t->data;
    while (c->deferred) {
        rx_httpc_req_t *r = c->deferred;
        c->deferred = r->next_;
        r->next_ = NULL;
        r->done(r);
        if (c->closing)
            return;
    }
    uint64_t now = rx_now_ns();
    uint64_t io_ns = c->o.io_timeout_ms > 0 ? (uint64_t)c->o.io_timeout_ms * 1000000u : 0;
    uint64_t idle_ns = (uint64_t)(c->o.idle_timeout_ms > 0 ? c->o.idle_timeout_ms : 0) * 1000000u;
    for (hconn_t *k = c->conns, *nx; k; k = nx) {
        nx = k->next;
        if (k->state == C_BUSY && io_ns && now - k->last_ns > io_ns) {
            rx_httpc_req_t *r = k->req;
            k->req = NULL;
            conn_close(k);
            char d[120];
            snprintf(d, sizeof(d), "no progress for %d ms %s", c->o.io_timeout_ms,
                     r->t_first_ns ? "while receiving the response" : "waiting for the response");
            req_finish(c, r, RX_ETIMEDOUT, 1, d);
        } else if (k->state == C_IDLE && now - k->last_ns > idle_ns) {
            conn_close(k);
        } else if (k->state == C_H2 && k->nstreams && io_ns && now - k->last_ns > io_ns) {
            char d[120];
            snprintf(d, sizeof(d), "no progress on the HTTP/2 connection for %d ms",
                     c->o.io_timeout_ms);
            h2_conn_fail(k, RX_ETIMEDOUT, d);
            if (c->closing)
                return;
            nx = c->conns; /* the list may have changed under done() */
        } else if (k->state == C_H2 && !k->nstreams && !k->fin_head &&
                   now - k->last_ns > idle_ns) {
            conn_close(k);
        }
    }
    /* requests still waiting for a connection */
    if (io_ns) {
        rx_httpc_req_t **pp = &c->q_head, *prev = NULL;
        while (*pp) {
            rx_httpc_req_t *r = *pp;
            if (now - r->t_submit_ns > io_ns) {
                *pp = r->next_;
                if (c->q_tail == r)
                    c->q_tail = prev;
                c->nqueued--;
                char d[120];
                snprintf(d, sizeof(d), "no connection to the endpoint within %d ms",
                         c->o.io_timeout_ms);
                req_finish(c, r, RX_ETIMEDOUT, 1, d);
                /* done() may have queued or closed: restart the scan */
                if (c->closing)
                    return;
                pp = &c->q_head;
                prev = NULL;
                continue;
            }
            prev = r;
            pp = &r->next_;
        }
    }
    if (c->closing)
        return;
    dispatch(c);
    tick_update(c);
}

/* ---- connections ---- */

static void conn_unlink(hconn_t *k)
{
    rx_httpc_t *c = k->c;
    if (k->prev)
        k->prev->next = k->next;
    else
        c->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    k->prev = k->next = NULL;
    if (k->state == C_IDLE) {
        for (hconn_t **pp = &c->idle; *pp; pp = &(*pp)->idle_next)
            if (*pp == k) {
                *pp = k->idle_next;
                break;
            }
        c->nidle--;
    }
    if (k->state == C_CONNECTING)
        c->nconnecting--;
}

static void on_conn_closed(rx_stream_t *s)
{
    hconn_t *k = rx_stream_ud(s);
    rx_httpc_t *c = k->c;
    rx_http1_parser_fini(&k->p);
    if (k->iov != k->iov_inline)
        free(k->iov);
    if (k->ng)
        nghttp2_session_del(k->ng);
    free(k);
    c->nclosing--;
    maybe_free(c);
}

/* Detaches k from the pool and closes its stream; its request (if any) must be handled by the
 * caller before or after. Memory goes in on_conn_closed. */
static void conn_close(hconn_t *k)
{
    if (k->state == C_CLOSING)
        return;
    rx_httpc_t *c = k->c;
    conn_unlink(k);
    k->state = C_CLOSING;
    c->nconns--;
    c->nclosing++;
    rx_stream_close(k->s, on_conn_closed);
}

static void conn_make_idle(hconn_t *k)
{
    rx_httpc_t *c = k->c;
    k->state = C_IDLE;
    k->req = NULL;
    k->last_ns = rx_now_ns();
    k->idle_next = c->idle;
    c->idle = k;
    c->nidle++;
}

static void on_written(rx_stream_t *s, int status, void *ud);
static void on_data(rx_stream_t *s, const char *data, size_t len);
static void on_end(rx_stream_t *s, int status);

/* A request failed on k in a way that says nothing about the request itself (the connection
 * died). Resend once when the connection had been reused and no response byte came. */
static void conn_fail(hconn_t *k, int error, const char *detail)
{
    rx_httpc_t *c = k->c;
    rx_httpc_req_t *r = k->req;
    k->req = NULL;
    conn_close(k);
    if (!r)
        return;
    if (r->reused && !r->t_first_ns && r->attempts_ < 2) {
        c->st.resent++;
        r->reused = 0;
        q_push_front(c, r);
        dispatch(c);
        tick_update(c);
        return;
    }
    req_finish(c, r, error, 1, detail);
    dispatch(c);
    tick_update(c);
}

static void conn_send(hconn_t *k, rx_httpc_req_t *r)
{
    rx_httpc_t *c = k->c;
    k->state = C_BUSY;
    k->req = r;
    k->msg_done = 0;
    k->final_seen = 0;
    k->last_ns = rx_now_ns();
    r->conn_ = k;
    r->attempts_++;
    r->status = 0;
    r->t_first_ns = 0;
    r->body_bytes = 0;
    r->detail[0] = '\0';
    rx_http1_reset(&k->p);

    int hl = rx_http1_request_head(k->head, sizeof(k->head), r->method, r->target, r->headers,
                                   r->nheaders, r->body_len);
    if (hl < 0) {
        k->req = NULL;
        conn_make_idle(k);
        req_finish(c, r, RX_EINVAL, 0,
                   hl == -ENOSPC ? "request head larger than 16 KiB"
                                 : "invalid method, target or header in the request");
        return;
    }
    size_t need = (size_t)r->nbody + 1;
    if (need > IOV_INLINE) {
        struct iovec *n = k->iov != k->iov_inline ? realloc(k->iov, need * sizeof(*n))
                                                  : malloc(need * sizeof(*n));
        if (!n) {
            k->req = NULL;
            conn_make_idle(k);
            req_finish(c, r, RX_ENOMEM, 0, NULL);
            return;
        }
        k->iov = n;
    }
    int n = rx_http1_request_iov(k->iov, need, k->head, (size_t)hl, r->body, (size_t)r->nbody);
    if (n < 0) {
        k->req = NULL;
        conn_make_idle(k);
        req_finish(c, r, RX_EINVAL, 0, "invalid request body slices");
        return;
    }
    /* counted only for requests that go out (not for the invalid ones above) */
    r->reused = k->served > 0;
    if (r->reused)
        c->st.reused++;
    k->write_pending = 1;
    int rc = rx_stream_write(k->s, k->iov, n, on_written, k);
    if (rc < 0) {
        k->write_pending = 0;
        conn_fail(k, rc, rx_stream_error_detail(k->s));
    }
}

/* ---- HTTP/2 ---- */

typedef struct wchunk {
    size_t len;
    uint8_t data[];
} wchunk_t;

static void h2_written(rx_stream_t *s, int status, void *ud)
{
    (void)s;
    (void)status; /* a failed write shows up as the end of reading */
    free(ud);
}

static int h2_write(hconn_t *k, wchunk_t *w)
{
    struct iovec v = {w->data, w->len};
    int rc = rx_stream_write(k->s, &v, 1, h2_written, w);
    if (rc < 0)
        free(w);
    return rc;
}

/* Writes what nghttp2 has to send, in batches. Inside nghttp2 callbacks it only takes note. */
static int h2_flush(hconn_t *k)
{
    if (k->in_io) {
        k->want_flush = 1;
        return 0;
    }
    k->want_flush = 0;
    k->in_io++;
    wchunk_t *w = NULL;
    size_t cap = 0;
    int rc = 0;
    for (;;) {
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(k->ng, &d);
        if (n < 0) {
            rc = RX_EHTTP2;
            break;
        }
        if (n == 0)
            break;
        if (w && w->len + (size_t)n > cap && w->len + (size_t)n <= H2_WRITE_BATCH) {
            /* grow (small frames are the common case: start small, double) */
            size_t nc = cap * 2;
            while (nc < w->len + (size_t)n)
                nc *= 2;
            wchunk_t *g = realloc(w, sizeof(*w) + nc);
            if (!g) {
                rc = RX_ENOMEM;
                break;
            }
            w = g;
            cap = nc;
        }
        if (!w || w->len + (size_t)n > cap) {
            if (w && w->len && (rc = h2_write(k, w)) < 0) {
                w = NULL;
                break;
            }
            cap = (size_t)n > 2048 ? (size_t)n : 2048;
            w = malloc(sizeof(*w) + cap);
            if (!w) {
                rc = RX_ENOMEM;
                break;
            }
            w->len = 0;
        }
        memcpy(w->data + w->len, d, (size_t)n);
        w->len += (size_t)n;
    }
    if (w && rc == 0 && w->len)
        rc = h2_write(k, w);
    else if (w && (rc < 0 || !w->len))
        free(w);
    k->in_io--;
    if (rc == 0)
        k->last_ns = rx_now_ns();
    return rc;
}

static void h2_unlink_stream(hconn_t *k, rx_httpc_req_t *r)
{
    for (rx_httpc_req_t **pp = &k->streams; *pp; pp = &(*pp)->next_)
        if (*pp == r) {
            *pp = r->next_;
            r->next_ = NULL;
            k->nstreams--;
            return;
        }
}

static void h2_push_fin(hconn_t *k, rx_httpc_req_t *r)
{
    r->next_ = NULL;
    if (k->fin_tail)
        k->fin_tail->next_ = r;
    else
        k->fin_head = r;
    k->fin_tail = r;
}

/* Completes r (its result already set by the stream's close), or queues it again. */
static void h2_complete(rx_httpc_t *c, rx_httpc_req_t *r)
{
    if (r->resend_ && c->closing) {
        r->resend_ = 0;
        req_finish(c, r, RX_ECANCELED, 0, "client closed");
        return;
    }
    if (r->resend_) {
        r->resend_ = 0;
        c->st.resent++;
        q_push_front(c, r);
        return;
    }
    req_finish(c, r, r->error, r->retryable, r->detail);
}

/* Outside nghttp2: flushes what callbacks asked for and runs done() of closed streams. */
static void h2_settle(hconn_t *k)
{
    rx_httpc_t *c = k->c;
    while (k->state == C_H2) {
        if (k->want_flush && h2_flush(k) < 0) {
            h2_conn_fail(k, RX_EHTTP2, "cannot write HTTP/2 frames");
            return;
        }
        rx_httpc_req_t *r = k->fin_head;
        if (!r)
            break;
        k->fin_head = r->next_;
        if (!k->fin_head)
            k->fin_tail = NULL;
        h2_complete(c, r);
        if (c->closing)
            return;
    }
    if (k->state == C_H2 && !nghttp2_session_want_read(k->ng) &&
        !nghttp2_session_want_write(k->ng) && k->nstreams == 0)
        conn_close(k); /* GOAWAY done: the session is over */
}

/* The connection died: every request on it completes (or goes back to the queue when it got no
 * response byte on a connection that had served before), then the connection closes. */
static void h2_conn_fail(hconn_t *k, int error, const char *detail)
{
    rx_httpc_t *c = k->c;
    rx_httpc_req_t *fin = k->fin_head, *act = k->streams;
    k->fin_head = k->fin_tail = NULL;
    k->streams = NULL;
    k->nstreams = 0;
    uint64_t served = k->served;
    conn_close(k);
    while (fin) {
        rx_httpc_req_t *r = fin;
        fin = r->next_;
        h2_complete(c, r);
    }
    while (act) {
        rx_httpc_req_t *r = act;
        act = r->next_;
        r->next_ = NULL;
        if (served && !r->t_first_ns && r->attempts_ < 2 && !c->closing) {
            c->st.resent++;
            q_push_front(c, r);
            continue;
        }
        req_finish(c, r, error, error != RX_ECANCELED, detail);
    }
}

static ssize_t h2_read_body(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    (void)ng;
    (void)sid;
    (void)ud;
    rx_httpc_req_t *r = src->ptr;
    size_t n = 0;
    while (n < len && r->body_i_ < r->nbody) {
        const struct iovec *v = &r->body[r->body_i_];
        size_t take = v->iov_len - r->body_off_;
        if (take > len - n)
            take = len - n;
        memcpy(buf + n, (const char *)v->iov_base + r->body_off_, take);
        n += take;
        r->body_off_ += take;
        if (r->body_off_ == v->iov_len) {
            r->body_i_++;
            r->body_off_ = 0;
        }
    }
    if (r->body_i_ >= r->nbody)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int hop_by_hop(const char *n, size_t l)
{
    static const char *const hh[] = {"host", "connection", "keep-alive", "transfer-encoding",
                                     "upgrade", "proxy-connection", "content-length", NULL};
    for (int i = 0; hh[i]; i++)
        if (strlen(hh[i]) == l && strncasecmp(hh[i], n, l) == 0)
            return 1;
    return 0;
}

/* Starts r as a stream on k. Completions of failures go through k's finished list. */
static void h2_send(hconn_t *k, rx_httpc_req_t *r)
{
    rx_httpc_t *c = k->c;
    r->conn_ = k;
    r->attempts_++;
    r->reused = k->served > 0;
    r->status = 0;
    r->t_first_ns = 0;
    r->body_bytes = 0;
    r->detail[0] = '\0';
    r->body_i_ = 0;
    r->body_off_ = 0;
    r->final_ = 0;
    r->resp_called_ = 0;
    r->abort_ = 0;
    r->resend_ = 0;
    r->error = 0;
    if (r->reused)
        c->st.reused++;
    nghttp2_nv nv[H2_MAX_NV];
    size_t n = 0, used = 0;
    const char *auth = NULL;
    size_t auth_len = 0;
    char authbuf[300];
    for (size_t i = 0; i < r->nheaders; i++)
        if (r->headers[i].name_len == 4 && strncasecmp(r->headers[i].name, "host", 4) == 0) {
            auth = r->headers[i].value;
            auth_len = r->headers[i].value_len;
        }
    if (!auth) {
        int w = snprintf(authbuf, sizeof(authbuf), strchr(c->host, ':') ? "[%s]:%d" : "%s:%d",
                         c->host, c->port);
        auth = authbuf;
        auth_len = w > 0 ? (size_t)w : 0;
    }
    char clen[24];
#define NV(N, NL, V, VL)                                                                           \
    nv[n++] = (nghttp2_nv){(uint8_t *)(N), (uint8_t *)(V), (NL), (VL), NGHTTP2_NV_FLAG_NONE}
    NV(":method", 7, r->method, strlen(r->method));
    NV(":path", 5, r->target, strlen(r->target));
    NV(":scheme", 7, c->o.stream.tls ? "https" : "http", c->o.stream.tls ? 5u : 4u);
    NV(":authority", 10, auth, auth_len);
    int bad = 0;
    for (size_t i = 0; i < r->nheaders && !bad; i++) {
        const rx_http1_header_t *h = &r->headers[i];
        if (hop_by_hop(h->name, h->name_len))
            continue;
        if (n + 2 > H2_MAX_NV || used + h->name_len > sizeof(k->head)) {
            bad = 1;
            break;
        }
        char *lc = k->head + used;
        for (size_t j = 0; j < h->name_len; j++) {
            char ch = h->name[j];
            lc[j] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
        }
        used += h->name_len;
        NV(lc, h->name_len, h->value, h->value_len);
    }
    if (!bad && r->body_len >= 0) {
        int w = snprintf(clen, sizeof(clen), "%lld", (long long)r->body_len);
        NV("content-length", 14, clen, (size_t)w);
    }
#undef NV
    if (bad) {
        r->error = RX_EINVAL;
        snprintf(r->detail, sizeof(r->detail), "too many or too long request headers");
        h2_push_fin(k, r);
        return;
    }
    nghttp2_data_provider prd;
    prd.source.ptr = r;
    prd.read_callback = h2_read_body;
    int32_t sid = nghttp2_submit_request(k->ng, NULL, nv, n,
                                         r->body_len > 0 && r->nbody > 0 ? &prd : NULL, r);
    if (sid < 0) {
        if (sid == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
            k->goaway = 1; /* ids used up: new connection */
            r->resend_ = 1;
            r->attempts_--;
        } else {
            r->error = sid == NGHTTP2_ERR_INVALID_ARGUMENT ? RX_EINVAL : RX_EHTTP2;
            snprintf(r->detail, sizeof(r->detail), "HTTP/2 request: %s", nghttp2_strerror(sid));
        }
        h2_push_fin(k, r);
        return;
    }
    r->stream_id_ = sid;
    r->next_ = k->streams;
    k->streams = r;
    k->nstreams++;
    k->last_ns = rx_now_ns();
}

/* Recomputed when the server's SETTINGS arrive (dispatch reads the cached value). */
static void h2_update_capacity(hconn_t *k)
{
    uint32_t peer = nghttp2_session_get_remote_settings(k->ng,
                                                        NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    int cap = k->c->o.h2_max_streams > 0 ? k->c->o.h2_max_streams : 100;
    k->h2_cap = peer < (uint32_t)cap ? (int)peer : cap;
}

/* nghttp2 callbacks (user data = hconn) */

static int h2_on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    rx_httpc_req_t *r = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (r && !r->t_first_ns)
        r->t_first_ns = rx_now_ns();
    return 0;
}

static int h2_on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                        size_t nl, const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)flags;
    (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    rx_httpc_req_t *r = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!r || r->abort_)
        return 0;
    if (nl == 7 && memcmp(name, ":status", 7) == 0) {
        int code = 0;
        for (size_t i = 0; i < vl && i < 3; i++)
            code = value[i] >= '0' && value[i] <= '9' ? code * 10 + (value[i] - '0') : -1000;
        if (vl != 3 || code < 100) {
            r->abort_ = RX_EHTTP2;
            snprintf(r->detail, sizeof(r->detail), "bad :status '%.*s'", (int)(vl < 20 ? vl : 20),
                     (const char *)value);
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        if (code >= 200) {
            r->final_ = 1;
            r->status = code;
        }
        return 0;
    }
    if (r->final_ && !r->resp_called_ && r->on_header) {
        int rc = r->on_header(r, (const char *)name, nl, (const char *)value, vl);
        if (rc < 0) {
            r->abort_ = rc;
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
    }
    return 0;
}

static int h2_on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    hconn_t *k = ud;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        k->goaway = 1;
        return 0;
    }
    if (f->hd.type == NGHTTP2_SETTINGS) {
        h2_update_capacity(k);
        return 0;
    }
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    rx_httpc_req_t *r = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!r || r->abort_ || !r->final_ || r->resp_called_)
        return 0;
    r->resp_called_ = 1;
    if (r->on_response) {
        int rc = r->on_response(r);
        if (rc < 0) {
            r->abort_ = rc;
            nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_CANCEL);
        }
    }
    return 0;
}

static int h2_on_data(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *d,
                      size_t len, void *ud)
{
    (void)flags;
    hconn_t *k = ud;
    rx_httpc_req_t *r = nghttp2_session_get_stream_user_data(ng, sid);
    if (!r || r->abort_)
        return 0;
    k->last_ns = rx_now_ns();
    r->body_bytes += len;
    if (r->on_body) {
        int rc = r->on_body(r, d, len);
        if (rc < 0) {
            r->abort_ = rc;
            nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, sid, NGHTTP2_CANCEL);
        }
    }
    return 0;
}

static int h2_on_stream_close(nghttp2_session *ng, int32_t sid, uint32_t code, void *ud)
{
    hconn_t *k = ud;
    rx_httpc_req_t *r = nghttp2_session_get_stream_user_data(ng, sid);
    if (!r)
        return 0;
    h2_unlink_stream(k, r);
    k->served++;
    k->last_ns = rx_now_ns();
    r->retryable = 0;
    if (r->abort_) {
        r->error = r->abort_;
    } else if (code == NGHTTP2_REFUSED_STREAM && r->attempts_ < 2) {
        r->resend_ = 1; /* not processed by the server: safe to send again */
    } else if (code != NGHTTP2_NO_ERROR) {
        r->error = RX_EH2RESET;
        r->retryable = 1;
        snprintf(r->detail, sizeof(r->detail), "stream reset: %s",
                 nghttp2_http2_strerror(code));
    } else if (!r->final_) {
        r->error = RX_EHTTP2;
        snprintf(r->detail, sizeof(r->detail), "stream ended without a final response");
    } else {
        r->error = 0;
    }
    h2_push_fin(k, r);
    return 0;
}

static int h2_start(hconn_t *k)
{
    rx_httpc_t *c = k->c;
    if (nghttp2_session_client_new(&k->ng, c->h2cb, k) != 0)
        return RX_ENOMEM;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)c->o.h2_stream_window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
         (uint32_t)(c->o.limits.max_header_bytes ? c->o.limits.max_header_bytes
                                                 : RX_HTTP1_DEFAULT_MAX_HEADER_BYTES)},
    };
    if (nghttp2_submit_settings(k->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0 ||
        nghttp2_session_set_local_window_size(k->ng, NGHTTP2_FLAG_NONE, 0,
                                              c->o.h2_conn_window) != 0)
        return RX_EHTTP2;
    k->state = C_H2;
    c->st.h2_conns++;
    h2_update_capacity(k);
    return h2_flush(k);
}

static void h2_data(hconn_t *k, const char *data, size_t len)
{
    rx_httpc_t *c = k->c;
    k->last_ns = rx_now_ns();
    k->in_io++;
    ssize_t n = nghttp2_session_mem_recv(k->ng, (const uint8_t *)data, len);
    k->in_io--;
    if (n < 0) {
        char d[160];
        snprintf(d, sizeof(d), "HTTP/2: %s", nghttp2_strerror((int)n));
        h2_conn_fail(k, RX_EHTTP2, d);
    } else {
        k->want_flush = 1; /* SETTINGS acks, WINDOW_UPDATEs, pings */
        h2_settle(k);
    }
    if (!c->closing) {
        dispatch(c);
        tick_update(c);
    }
}

static int h2_callbacks(rx_httpc_t *c)
{
    if (nghttp2_session_callbacks_new(&c->h2cb) != 0)
        return RX_ENOMEM;
    nghttp2_session_callbacks_set_on_begin_headers_callback(c->h2cb, h2_on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(c->h2cb, h2_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(c->h2cb, h2_on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c->h2cb, h2_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(c->h2cb, h2_on_stream_close);
    return 0;
}

static void on_connect(rx_stream_t *s, int status)
{
    hconn_t *k = rx_stream_ud(s);
    rx_httpc_t *c = k->c;
    int use_h2 = 0;
    char d[200] = "";
    if (status == 0) {
        const char *alpn = rx_stream_alpn(s);
        int h2_alpn = alpn && strcmp(alpn, "h2") == 0;
        if (c->o.version == RX_HTTP_2 && rx_stream_is_tls(s) && !h2_alpn) {
            status = RX_ENOH2;
            snprintf(d, sizeof(d), "%s:%d did not select h2 by ALPN (selected %s)", c->host,
                     c->port, alpn ? alpn : "none");
        }
        use_h2 = c->o.version == RX_HTTP_2 || (c->o.version == RX_HTTP_AUTO && h2_alpn);
    }
    if (status == 0)
        status = rx_stream_read_start(s, on_data, on_end);
    if (status < 0) {
        if (!d[0])
            snprintf(d, sizeof(d), "%s", rx_stream_error_detail(s)[0] ? rx_stream_error_detail(s)
                                                                      : rx_strerror(status));
        conn_close(k);
        c->st.connect_fails++;
        c->fails++;
        uint64_t ms = (uint64_t)(c->o.reconnect_min_ms > 0 ? c->o.reconnect_min_ms : 1);
        for (int i = 1; i < c->fails && ms < (uint64_t)c->o.reconnect_max_ms; i++)
            ms *= 2;
        if (ms > (uint64_t)c->o.reconnect_max_ms)
            ms = (uint64_t)c->o.reconnect_max_ms;
        c->rng ^= c->rng << 13;
        c->rng ^= c->rng >> 7;
        c->rng ^= c->rng << 17;
        uint64_t jitter = ms / 2 ? c->rng % (ms / 2 + 1) : 0; /* 50%..100% of the backoff */
        c->backoff_until_ns = rx_now_ns() + (ms - jitter) * 1000000u;
        if (c->nconns == 0)
            fail_queued(c, status, d);
        if (!c->closing) {
            dispatch(c);
            tick_update(c);
        }
        return;
    }
    c->fails = 0;
    c->backoff_until_ns = 0;
    c->nconnecting--;
    c->st.connects++;
    if (use_h2) {
        k->state = C_IDLE; /* not connecting any more; h2_start makes it C_H2 */
        int rc = h2_start(k);
        if (rc < 0) {
            k->state = C_H2;
            h2_conn_fail(k, rc, "cannot start the HTTP/2 session");
        }
    } else {
        conn_make_idle(k);
    }
    dispatch(c);
    tick_update(c);
}

static int conn_open(rx_httpc_t *c)
{
    hconn_t *k = calloc(1, sizeof(*k));
    if (!k)
        return RX_ENOMEM;
    k->c = c;
    k->iov = k->iov_inline;
    rx_http1_parser_init(&k->p, &parser_cb, k, &c->o.limits);
    int rc = rx_stream_connect(c->loop, c->host, c->port, &c->o.stream, on_connect, k, &k->s);
    if (rc < 0) {
        rx_http1_parser_fini(&k->p);
        free(k);
        return rc;
    }
    k->state = C_CONNECTING;
    k->next = c->conns;
    if (c->conns)
        c->conns->prev = k;
    c->conns = k;
    c->nconns++;
    c->nconnecting++;
    return 0;
}

/* Hands queued requests to idle connections and opens connections while allowed. */
static void dispatch(rx_httpc_t *c)
{
    if (c->closing)
        return;
    for (hconn_t *k = c->conns; k && c->q_head; k = k->next) {
        if (k->state != C_H2 || k->goaway)
            continue;
        int sent = 0;
        while (c->q_head && k->nstreams < k->h2_cap && !k->goaway) {
            h2_send(k, q_pop(c));
            sent = 1;
        }
        if (sent) {
            if (h2_flush(k) < 0) {
                h2_conn_fail(k, RX_EHTTP2, "cannot write HTTP/2 frames");
                return; /* h2_conn_fail may have queued requests again: next tick */
            }
            if (k->fin_head) {
                h2_settle(k); /* inside submit, done() calls are deferred by req_finish */
                if (c->closing)
                    return;
            }
        }
    }
    while (c->q_head && c->idle) {
        hconn_t *k = c->idle;
        c->idle = k->idle_next;
        c->nidle--;
        k->idle_next = NULL;
        conn_send(k, q_pop(c));
        if (c->closing)
            return;
    }
    uint64_t now = rx_now_ns();
    size_t per = c->o.version == RX_HTTP_2 ? (size_t)(c->o.h2_max_streams > 0 ? c->o.h2_max_streams
                                                                               : 100)
                                           : 1;
    while (c->nqueued > (size_t)c->nconnecting * per && c->nconns < c->o.max_conns &&
           now >= c->backoff_until_ns) {
        if (conn_open(c) < 0) {
            /* resources or a bad host: try again on the next tick */
            c->backoff_until_ns = now + (uint64_t)TICK_MS * 1000000u;
            break;
        }
    }
}

/* ---- I/O callbacks ---- */

/* The response is complete and the request body fully written: hand it back. */
static void conn_complete(hconn_t *k, int force_close)
{
    rx_httpc_t *c = k->c;
    rx_httpc_req_t *r = k->req;
    k->req = NULL;
    k->served++;
    /* an early response with the body still going out: the connection cannot be reused */
    if (rx_http1_keep_alive(&k->p) && !k->write_pending && !force_close)
        conn_make_idle(k);
    else
        conn_close(k);
    req_finish(c, r, 0, 0, NULL);
    dispatch(c);
    tick_update(c);
}

static void on_written(rx_stream_t *s, int status, void *ud)
{
    hconn_t *k = ud;
    (void)s;
    if (k->state == C_CLOSING)
        return;
    k->write_pending = 0;
    k->last_ns = rx_now_ns();
    if (!k->req)
        return;
    if (status < 0) {
        if (k->msg_done) {
            conn_complete(k, 1); /* a full response arrived anyway (e.g. an early 4xx) */
            return;
        }
        conn_fail(k, status, rx_stream_error_detail(s)[0] ? rx_stream_error_detail(s) : NULL);
    }
}

static void on_data(rx_stream_t *s, const char *data, size_t len)
{
    hconn_t *k = rx_stream_ud(s);
    if (k->state == C_CLOSING)
        return;
    if (k->state == C_H2) {
        h2_data(k, data, len);
        return;
    }
    if (!k->req) {
        /* bytes while idle: the server broke the protocol; forget the connection */
        conn_close(k);
        return;
    }
    rx_httpc_req_t *r = k->req;
    k->last_ns = rx_now_ns();
    if (!r->t_first_ns)
        r->t_first_ns = k->last_ns;
    size_t used = 0;
    int rc = rx_http1_parse(&k->p, data, len, &used);
    if (k->state == C_CLOSING || k->req != r)
        return;
    if (rc < 0) {
        char d[200];
        snprintf(d, sizeof(d), "%s", rx_http1_error_detail(&k->p)[0] ? rx_http1_error_detail(&k->p)
                                                                      : rx_strerror(rc));
        rx_httpc_t *c = k->c;
        k->req = NULL;
        conn_close(k);
        /* a malformed response is the server's answer, not a transient failure */
        req_finish(c, r, rc, 0, d);
        dispatch(c);
        tick_update(c);
        return;
    }
    if (k->msg_done)
        /* bytes beyond the response (no pipelining here) make the connection unusable */
        conn_complete(k, used < len);
}

static void on_end(rx_stream_t *s, int status)
{
    hconn_t *k = rx_stream_ud(s);
    if (k->state == C_CLOSING)
        return;
    if (k->state == C_H2) {
        rx_httpc_t *c = k->c;
        char d[200];
        snprintf(d, sizeof(d), "%s with %d HTTP/2 requests in flight",
                 status == UV_EOF ? "connection closed" : rx_strerror(status), k->nstreams);
        h2_conn_fail(k, status == UV_EOF ? RX_EHTTP2 : status, d);
        if (!c->closing) {
            dispatch(c);
            tick_update(c);
        }
        return;
    }
    if (!k->req) {
        conn_close(k); /* the server closed an idle connection */
        return;
    }
    if (status == UV_EOF && k->final_seen) {
        int rc = rx_http1_eof(&k->p);
        if (rc == 0 && k->msg_done) {
            conn_complete(k, 1);
            return;
        }
    }
    char d[200];
    if (status == UV_EOF)
        snprintf(d, sizeof(d), "%s", k->req->t_first_ns
                                         ? "connection closed before the response was complete"
                                         : "connection closed without a response");
    else
        snprintf(d, sizeof(d), "%s %s", rx_strerror(status),
                 k->req->t_first_ns ? "while receiving the response" : "before any response");
    conn_fail(k, status == UV_EOF ? RX_HTTP1_EEOF : status, d);
}

/* ---- parser callbacks (user = hconn) ---- */

static int p_status(void *u, int code, const char *reason, size_t rl)
{
    hconn_t *k = u;
    (void)reason;
    (void)rl;
    if (code >= 200 || code == 101) {
        k->final_seen = 1;
        k->req->status = code;
    }
    return 0;
}

static int p_header(void *u, const char *n, size_t nl, const char *v, size_t vl)
{
    hconn_t *k = u;
    if (!k->final_seen || !k->req->on_header)
        return 0;
    int rc = k->req->on_header(k->req, n, nl, v, vl);
    return rc < 0 ? rc : 0;
}

static int p_headers_done(void *u)
{
    hconn_t *k = u;
    if (!k->final_seen)
        return 0;
    if (k->req->on_response) {
        int rc = k->req->on_response(k->req);
        if (rc < 0)
            return rc;
    }
    return k->req->head ? RX_HTTP1_NO_BODY : 0;
}

static int p_body(void *u, const uint8_t *d, size_t len)
{
    hconn_t *k = u;
    k->req->body_bytes += len;
    if (k->req->on_body) {
        int rc = k->req->on_body(k->req, d, len);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int p_message_done(void *u)
{
    hconn_t *k = u;
    k->msg_done = 1;
    return RX_HTTP1_PAUSE;
}

static const rx_http1_callbacks_t parser_cb = {
    .on_status = p_status,
    .on_header = p_header,
    .on_headers_done = p_headers_done,
    .on_body = p_body,
    .on_message_done = p_message_done,
};

/* ---- public ---- */

int rx_httpc_create(uv_loop_t *loop, const char *host, int port, const rx_httpc_opts_t *opts,
                    rx_httpc_t **out)
{
    if (!loop || !host || !host[0] || port < 1 || port > 65535 || !out)
        return RX_EINVAL;
    *out = NULL;
    rx_httpc_t *c = calloc(1, sizeof(*c));
    if (!c)
        return RX_ENOMEM;
    c->host = strdup(host);
    if (!c->host) {
        free(c);
        return RX_ENOMEM;
    }
    if (opts)
        c->o = *opts;
    else
        rx_httpc_opts_init(&c->o);
    if (c->o.max_conns < 1)
        c->o.max_conns = 1;
    if (c->o.reconnect_max_ms < c->o.reconnect_min_ms)
        c->o.reconnect_max_ms = c->o.reconnect_min_ms;
    c->loop = loop;
    c->port = port;
    c->rng = (uint64_t)(uintptr_t)c ^ rx_now_ns() ^ 0x9e3779b97f4a7c15ull;
    if (!c->rng)
        c->rng = 1;
    if (c->o.h2_stream_window <= 0)
        c->o.h2_stream_window = 4 << 20;
    if (c->o.h2_conn_window <= 0)
        c->o.h2_conn_window = 16 << 20;
    if (c->o.stream.tls) {
        /* ALPN follows the protocol choice */
        static const char *const a_h1[] = {"http/1.1", NULL};
        static const char *const a_h2[] = {"h2", NULL};
        static const char *const a_auto[] = {"h2", "http/1.1", NULL};
        c->o.stream.alpn = c->o.version == RX_HTTP_2      ? a_h2
                           : c->o.version == RX_HTTP_AUTO ? a_auto
                                                          : a_h1;
    }
    if (c->o.version != RX_HTTP_1 && h2_callbacks(c) < 0) {
        free(c->host);
        free(c);
        return RX_ENOMEM;
    }
    uv_timer_init(loop, &c->tick);
    c->tick.data = c;
    *out = c;
    return 0;
}

int rx_httpc_submit(rx_httpc_t *c, rx_httpc_req_t *r)
{
    if (!c || !r || !r->method || !r->target || !r->done || r->nbody < 0 ||
        (r->nbody > 0 && !r->body))
        return RX_EINVAL;
    if (c->closing)
        return RX_ESTATE;
    r->error = 0;
    r->status = 0;
    r->retryable = 0;
    r->reused = 0;
    r->t_submit_ns = rx_now_ns();
    r->t_first_ns = 0;
    r->t_end_ns = 0;
    r->body_bytes = 0;
    r->detail[0] = '\0';
    r->conn_ = NULL;
    r->attempts_ = 0;
    q_push_back(c, r);
    /* Completions that happen synchronously (an invalid request head, a write that fails at
     * once) are deferred to the tick so that done() never runs inside submit. */
    c->in_submit = 1;
    dispatch(c);
    c->in_submit = 0;
    if (c->deferred) {
        uv_timer_start(&c->tick, tick_cb, 0, TICK_MS);
        c->tick_on = 1;
        return 0;
    }
    tick_update(c);
    return 0;
}

static void on_tick_closed(uv_handle_t *h)
{
    rx_httpc_t *c = h->data;
    c->tick_closed = 1;
    maybe_free(c);
}

static void maybe_free(rx_httpc_t *c)
{
    if (c->closing && c->tick_closed && c->nclosing == 0 && c->nconns == 0) {
        if (c->h2cb)
            nghttp2_session_callbacks_del(c->h2cb);
        free(c->host);
        free(c);
    }
}

void rx_httpc_close(rx_httpc_t *c)
{
    if (!c || c->closing)
        return;
    c->closing = 1;
    while (c->deferred) {
        rx_httpc_req_t *r = c->deferred;
        c->deferred = r->next_;
        r->next_ = NULL;
        r->done(r);
    }
    fail_queued(c, RX_ECANCELED, "client closed");
    while (c->conns) {
        hconn_t *k = c->conns;
        if (k->state == C_H2) {
            h2_conn_fail(k, RX_ECANCELED, "client closed");
            continue;
        }
        rx_httpc_req_t *r = k->req;
        k->req = NULL;
        conn_close(k);
        if (r)
            req_finish(c, r, RX_ECANCELED, 0, "client closed");
    }
    /* done() callbacks above may not submit (closing), so the queue stays empty */
    uv_timer_stop(&c->tick);
    c->tick_on = 0;
    uv_close((uv_handle_t *)&c->tick, on_tick_closed);
}

void rx_httpc_stats(const rx_httpc_t *c, rx_httpc_stats_t *out)
{
    *out = c->st;
    out->open = c->nconns;
    out->idle = c->nidle;
}
