/* HTTP/1.1 client pool for one endpoint on one loop (see rx/httpc.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rx/err.h"
#include "rx/httpc.h"
#include "rx/time.h"

#define TICK_MS 50
#define HEAD_MAX (16 * 1024)
#define IOV_INLINE 8

enum conn_state { C_CONNECTING, C_IDLE, C_BUSY, C_CLOSING };

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
};

static const rx_http1_callbacks_t parser_cb;
static void dispatch(rx_httpc_t *c);
static void conn_close(hconn_t *k);
static void maybe_free(rx_httpc_t *c);

void rx_httpc_opts_init(rx_httpc_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->max_conns = 64;
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

static void on_connect(rx_stream_t *s, int status)
{
    hconn_t *k = rx_stream_ud(s);
    rx_httpc_t *c = k->c;
    if (status == 0) {
        status = rx_stream_read_start(s, on_data, on_end);
    }
    if (status < 0) {
        char d[200];
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
    conn_make_idle(k);
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
    while (c->nqueued > (size_t)c->nconnecting && c->nconns < c->o.max_conns &&
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
