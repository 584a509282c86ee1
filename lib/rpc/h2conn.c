/* h2conn.c — HTTP/2 connection machinery shared by the gRPC server and client (rpc_internal.h):
 * deferred tasks, deadline timers, per-stream outbound message queues read by nghttp2 as data
 * providers, and an nghttp2 session pumped over an rx_stream with keepalive PINGs.
 *
 * Why a pump with a cap: nghttp2_session_mem_send() hands out one frame at a time and would
 * happily serialize every queued byte the peer's windows allow. We copy frames into batches of up
 * to RPC__WRITE_BATCH bytes and stop while RPC__WQ_HIGH bytes sit in unfinished writes; the next
 * write completion pumps again. Messages that do not fit stay in their call's rpc__out_t, where
 * rpc_*_pending() sees them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/err.h"
#include "rpc/grpc.h"
#include "rpc_internal.h"
#include "rx/err.h"
#include "rx/log.h"

#define container_of(p, T, m) ((T *)(void *)((char *)(p)-offsetof(T, m)))

/* ------------------------------------------------------------------------------------------- */
/* Deferred tasks                                                                               */

static void sched_idle_cb(uv_idle_t *h)
{
    rpc__sched_t *s = h->data;
    /* Only what was queued before this pass: tasks posted by the tasks run next pass, so tasks
     * that keep posting cannot starve I/O. Posting appends, so the list is ordered by gen. */
    unsigned gen = s->gen++;
    rpc__task_t *t;
    while (!s->closing && (t = s->head) != NULL && (int)(t->gen - gen) <= 0) {
        s->head = t->next;
        if (s->head)
            s->head->prev = NULL;
        else
            s->tail = NULL;
        t->next = t->prev = NULL;
        t->queued = 0;
        t->fn(t);
    }
    if (!s->closing && s->head == NULL)
        uv_idle_stop(&s->idle);
}

void rpc__sched_init(uv_loop_t *loop, rpc__sched_t *s)
{
    memset(s, 0, sizeof(*s));
    uv_idle_init(loop, &s->idle);
    s->idle.data = s;
}

void rpc__sched_post(rpc__sched_t *s, rpc__task_t *t, rpc__task_fn fn)
{
    if (s->closing || t->queued)
        return;
    t->fn = fn;
    t->gen = s->gen;
    t->queued = 1;
    t->next = NULL;
    t->prev = s->tail;
    if (s->tail)
        s->tail->next = t;
    else
        s->head = t;
    s->tail = t;
    uv_idle_start(&s->idle, sched_idle_cb);
}

void rpc__sched_cancel(rpc__sched_t *s, rpc__task_t *t)
{
    if (!t->queued)
        return;
    if (t->prev)
        t->prev->next = t->next;
    else
        s->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        s->tail = t->prev;
    t->next = t->prev = NULL;
    t->queued = 0;
}

static void sched_closed(uv_handle_t *h)
{
    rpc__sched_t *s = h->data;
    if (s->on_closed)
        s->on_closed(s);
}

void rpc__sched_close(rpc__sched_t *s, void (*on_closed)(rpc__sched_t *s))
{
    if (s->closing)
        return;
    s->closing = 1;
    s->on_closed = on_closed;
    for (rpc__task_t *t = s->head, *nx; t; t = nx) {
        nx = t->next;
        t->next = t->prev = NULL;
        t->queued = 0;
    }
    s->head = s->tail = NULL;
    uv_close((uv_handle_t *)&s->idle, sched_closed);
}

/* ------------------------------------------------------------------------------------------- */
/* Deadlines                                                                                    */

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Milliseconds from now until at, rounded up (0 when due). */
static uint64_t ms_until(uint64_t at, uint64_t now)
{
    if (at <= now)
        return 0;
    uint64_t d = at - now;
    return d / 1000000u + (d % 1000000u != 0);
}

static void timers_cb(uv_timer_t *h);

static void timers_arm(rpc__timers_t *t)
{
    if (t->closing)
        return;
    uint64_t min = 0;
    for (rpc__dl_t *n = t->head; n; n = n->next)
        if (min == 0 || n->at < min)
            min = n->at;
    if (min == 0) {
        if (t->armed) {
            uv_timer_stop(&t->timer);
            t->armed = 0;
        }
        return;
    }
    if (t->armed == min)
        return;
    t->armed = min;
    uint64_t ms = ms_until(min, uv_hrtime());
    /* uv timers count from the loop's cached time, which may lag: an early wake re-arms. */
    uv_timer_start(&t->timer, timers_cb, ms, 0);
}

static void dl_unlink(rpc__timers_t *t, rpc__dl_t *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        t->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    n->next = n->prev = NULL;
    n->linked = 0;
}

static void timers_cb(uv_timer_t *h)
{
    rpc__timers_t *t = h->data;
    t->armed = 0;
    for (;;) {
        uint64_t now = uv_hrtime();
        rpc__dl_t *due = NULL;
        for (rpc__dl_t *n = t->head; n; n = n->next)
            if (n->at <= now) {
                due = n;
                break;
            }
        if (!due)
            break;
        /* one at a time: a fire may remove or add other nodes */
        dl_unlink(t, due);
        due->fire(due);
        if (t->closing)
            return;
    }
    timers_arm(t);
}

void rpc__timers_init(uv_loop_t *loop, rpc__timers_t *t)
{
    memset(t, 0, sizeof(*t));
    uv_timer_init(loop, &t->timer);
    t->timer.data = t;
}

void rpc__timers_add(rpc__timers_t *t, rpc__dl_t *n, uint64_t at, void (*fire)(rpc__dl_t *n))
{
    if (n->linked)
        dl_unlink(t, n);
    if (at == 0)
        at = 1;
    n->at = at;
    n->fire = fire;
    n->prev = NULL;
    n->next = t->head;
    if (t->head)
        t->head->prev = n;
    t->head = n;
    n->linked = 1;
    if (t->armed == 0 || at < t->armed)
        timers_arm(t);
}

void rpc__timers_remove(rpc__timers_t *t, rpc__dl_t *n)
{
    if (!n->linked)
        return;
    dl_unlink(t, n);
    if (t->head == NULL && t->armed) {
        uv_timer_stop(&t->timer);
        t->armed = 0;
    }
}

static void timers_closed(uv_handle_t *h)
{
    rpc__timers_t *t = h->data;
    if (t->on_closed)
        t->on_closed(t);
}

void rpc__timers_close(rpc__timers_t *t, void (*on_closed)(rpc__timers_t *t))
{
    if (t->closing)
        return;
    t->closing = 1;
    t->on_closed = on_closed;
    while (t->head)
        dl_unlink(t, t->head);
    uv_close((uv_handle_t *)&t->timer, timers_closed);
}

/* ------------------------------------------------------------------------------------------- */
/* Outbound messages                                                                            */

int rpc__out_push(rpc__out_t *o, const uint8_t *msg, size_t len)
{
    uint8_t hdr[RPC_FRAME_HEADER_LEN];
    int rc = rpc_frame_header(hdr, len, 0);
    if (rc < 0)
        return rc;
    if (len > SIZE_MAX - sizeof(rpc__msg_t) - RPC_FRAME_HEADER_LEN)
        return -EMSGSIZE;
    rpc__msg_t *m = malloc(sizeof(*m) + RPC_FRAME_HEADER_LEN + len);
    if (!m)
        return -ENOMEM;
    m->next = NULL;
    m->len = RPC_FRAME_HEADER_LEN + len;
    m->off = 0;
    memcpy(m->data, hdr, RPC_FRAME_HEADER_LEN);
    if (len)
        memcpy(m->data + RPC_FRAME_HEADER_LEN, msg, len);
    if (o->tail)
        o->tail->next = m;
    else
        o->head = m;
    o->tail = m;
    o->pending += m->len;
    return 0;
}

void rpc__out_drop_unsent(rpc__out_t *o)
{
    rpc__msg_t **pp = &o->head;
    o->tail = NULL;
    while (*pp) {
        rpc__msg_t *m = *pp;
        if (m->off == 0) {
            *pp = m->next;
            o->pending -= m->len;
            free(m);
        } else {
            o->tail = m;
            pp = &m->next;
        }
    }
}

void rpc__out_free(rpc__out_t *o)
{
    rpc__msg_t *m = o->head;
    while (m) {
        rpc__msg_t *nx = m->next;
        free(m);
        m = nx;
    }
    o->head = o->tail = NULL;
    o->pending = 0;
}

ssize_t rpc__out_read(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                      nghttp2_data_source *src, void *ud)
{
    (void)ud;
    rpc__out_t *o = src->ptr;
    size_t n = 0;
    while (n < len && o->head) {
        rpc__msg_t *m = o->head;
        size_t take = m->len - m->off;
        if (take > len - n)
            take = len - n;
        memcpy(buf + n, m->data + m->off, take);
        m->off += take;
        n += take;
        o->pending -= take;
        if (m->off == m->len) {
            o->head = m->next;
            if (!o->head)
                o->tail = NULL;
            free(m);
        }
    }
    if (!o->head && o->eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        o->eof_done = 1;
        if (o->on_eof)
            o->on_eof(o, ng, sid, flags);
        return (ssize_t)n;
    }
    if (n == 0) {
        o->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* ------------------------------------------------------------------------------------------- */
/* The connection                                                                               */

typedef struct wchunk {
    rpc__conn_t *c;
    size_t len, cap;
    uint8_t data[];
} wchunk_t;

static void ka_cb(uv_timer_t *t);

static void ka_arm(rpc__conn_t *c)
{
    if (!c->ka_interval || c->dead || !c->ng)
        return;
    uint64_t at =
        c->ping_at ? sat_add(c->ping_at, c->ka_timeout) : sat_add(c->last_recv, c->ka_interval);
    uv_timer_start(&c->ka, ka_cb, ms_until(at, uv_hrtime()), 0);
}

static void ka_cb(uv_timer_t *t)
{
    rpc__conn_t *c = container_of(t, rpc__conn_t, ka);
    if (c->dead)
        return;
    uint64_t now = uv_hrtime();
    if (c->ping_at) {
        if (c->last_recv >= c->ping_at) {
            c->ping_at = 0; /* something arrived since the PING: the peer is alive */
        } else if (now >= sat_add(c->ping_at, c->ka_timeout)) {
            char d[160];
            snprintf(d, sizeof(d), "keepalive: nothing received from %s within %llu ms after PING",
                     c->peer[0] ? c->peer : "the peer",
                     (unsigned long long)(c->ka_timeout / 1000000u));
            rpc__conn_fail(c, RPC_EKEEPALIVE, d);
            return;
        }
    }
    if (!c->ping_at && now >= sat_add(c->last_recv, c->ka_interval)) {
        int rc = nghttp2_submit_ping(c->ng, NGHTTP2_FLAG_NONE, NULL);
        if (rc != 0) {
            rpc__conn_fail(c, RPC_EPROTOCOL, nghttp2_strerror(rc));
            return;
        }
        c->ping_at = now;
        rx_log(RX_LOG_TRACE, RPC__LOG, "%s %s: keepalive PING", c->role, c->peer);
        rpc__conn_pump(c);
        if (c->dead)
            return;
    }
    ka_arm(c);
}

static void flush_task(rpc__task_t *t)
{
    rpc__conn_pump(container_of(t, rpc__conn_t, flush_task));
}

void rpc__conn_init(rpc__conn_t *c, uv_loop_t *loop, rx_stream_t *s, rpc__sched_t *sched,
                    const rpc__conn_ops_t *ops, const char *role, uint64_t ka_interval,
                    uint64_t ka_timeout)
{
    c->loop = loop;
    c->s = s;
    c->ng = NULL;
    c->ops = ops;
    c->sched = sched;
    c->role = role;
    c->ka_interval = ka_interval;
    c->ka_timeout = ka_interval ? (ka_timeout ? ka_timeout : RPC__KA_TIMEOUT_DEFAULT) : 0;
    uv_timer_init(loop, &c->ka);
}

/* The session has nothing more to read or write (GOAWAY exchanged, or a fatal error with our
 * GOAWAY written): the connection is over once our last bytes left. */
static void check_over(rpc__conn_t *c)
{
    if (!c->dead && c->wq_bytes == 0 && !nghttp2_session_want_read(c->ng) &&
        !nghttp2_session_want_write(c->ng))
        rpc__conn_fail(c, c->term_err ? c->term_err : RPC_ECONNLOST, "HTTP/2 session ended");
}

static void on_written(rx_stream_t *s, int status, void *ud)
{
    (void)s;
    wchunk_t *w = ud;
    rpc__conn_t *c = w->c;
    c->wq_bytes -= w->len;
    free(w);
    if (c->dead)
        return;
    if (status < 0) {
        char d[160];
        snprintf(d, sizeof(d), "write to %s: %s", c->peer, rx_strerror(status));
        rpc__conn_fail(c, RPC_ECONNLOST, d);
        return;
    }
    if (c->wq_bytes < RPC__WQ_HIGH && nghttp2_session_want_write(c->ng))
        rpc__conn_pump(c);
    else
        check_over(c);
}

static int write_chunk(rpc__conn_t *c, wchunk_t *w)
{
    struct iovec v = {w->data, w->len};
    c->wq_bytes += w->len;
    int rc = rx_stream_write(c->s, &v, 1, on_written, w);
    if (rc < 0) {
        c->wq_bytes -= w->len;
        free(w);
    }
    return rc;
}

void rpc__conn_pump(rpc__conn_t *c)
{
    if (c->dead || !c->ng || !c->s)
        return;
    if (c->in_io) {
        c->want_flush = 1;
        return;
    }
    c->want_flush = 0;
    c->in_io++;
    wchunk_t *w = NULL;
    int err = 0;
    char d[160] = "";
    while (!c->dead && c->wq_bytes + (w ? w->len : 0) < RPC__WQ_HIGH) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(c->ng, &p);
        if (n < 0) {
            err = RPC_EPROTOCOL;
            snprintf(d, sizeof(d), "HTTP/2 send: %s", nghttp2_strerror((int)n));
            break;
        }
        if (n == 0)
            break;
        if (w && w->len + (size_t)n > w->cap) {
            int rc = write_chunk(c, w);
            w = NULL;
            if (rc < 0) {
                err = RPC_ECONNLOST;
                snprintf(d, sizeof(d), "write to %s: %s", c->peer, rx_strerror(rc));
                break;
            }
        }
        if (!w) {
            size_t cap = (size_t)n > RPC__WRITE_BATCH ? (size_t)n : RPC__WRITE_BATCH;
            w = malloc(sizeof(*w) + cap);
            if (!w) {
                err = -ENOMEM;
                snprintf(d, sizeof(d), "out of memory");
                break;
            }
            w->c = c;
            w->len = 0;
            w->cap = cap;
        }
        memcpy(w->data + w->len, p, (size_t)n);
        w->len += (size_t)n;
    }
    if (w && w->len && !err && !c->dead) {
        int rc = write_chunk(c, w);
        if (rc < 0) {
            err = RPC_ECONNLOST;
            snprintf(d, sizeof(d), "write to %s: %s", c->peer, rx_strerror(rc));
        }
    } else {
        free(w);
    }
    c->in_io--;
    if (c->dead)
        return;
    if (err) {
        rpc__conn_fail(c, err, d);
        return;
    }
    check_over(c);
}

void rpc__conn_flush(rpc__conn_t *c)
{
    if (c->dead || !c->ng)
        return;
    rpc__sched_post(c->sched, &c->flush_task, flush_task);
}

void rpc__conn_resume(rpc__conn_t *c, rpc__out_t *o, int32_t sid)
{
    if (c->dead || !c->ng)
        return;
    if (o->deferred) {
        o->deferred = 0;
        nghttp2_session_resume_data(c->ng, sid); /* fails harmlessly for closed streams */
    }
    rpc__conn_flush(c);
}

void rpc__conn_goaway(rpc__conn_t *c, uint32_t code)
{
    if (c->dead || !c->ng)
        return;
    nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->ng),
                          code, NULL, 0);
    rpc__conn_pump(c);
}

static void on_read(rx_stream_t *s, const char *data, size_t len)
{
    rpc__conn_t *c = rx_stream_ud(s);
    if (c->dead)
        return;
    c->last_recv = uv_hrtime();
    if (c->ping_at) {
        /* the peer is alive: the idle clock restarts now, the next PING after an interval */
        c->ping_at = 0;
        ka_arm(c);
    }
    c->in_io++;
    ssize_t n = nghttp2_session_mem_recv(c->ng, (const uint8_t *)data, len);
    c->in_io--;
    if (c->dead)
        return;
    if (n < 0) {
        char d[160];
        snprintf(d, sizeof(d), "HTTP/2 from %s: %s", c->peer, nghttp2_strerror((int)n));
        rpc__conn_fail(c, RPC_EPROTOCOL, d);
        return;
    }
    /* ACKs, WINDOW_UPDATEs and what callbacks submitted: once per loop pass, batched */
    rpc__conn_flush(c);
}

static void on_read_end(rx_stream_t *s, int status)
{
    rpc__conn_t *c = rx_stream_ud(s);
    if (c->dead)
        return;
    char d[160];
    if (status == UV_EOF)
        snprintf(d, sizeof(d), "connection closed by %s", c->peer[0] ? c->peer : "the peer");
    else
        snprintf(d, sizeof(d), "read from %s: %s", c->peer, rx_strerror(status));
    rpc__conn_fail(c, RPC_ECONNLOST, d);
}

int rpc__conn_start(rpc__conn_t *c, nghttp2_session *ng)
{
    c->ng = ng;
    c->last_recv = uv_hrtime();
    if (!c->peer[0])
        snprintf(c->peer, sizeof(c->peer), "%s", rx_stream_peer(c->s));
    int rc = rx_stream_read_start(c->s, on_read, on_read_end);
    if (rc < 0)
        return rc;
    ka_arm(c);
    rpc__conn_flush(c);
    return 0;
}

void rpc__conn_fail(rpc__conn_t *c, int err, const char *detail)
{
    if (c->dead)
        return;
    c->dead = 1;
    rx_log(RX_LOG_DEBUG, RPC__LOG, "%s connection %s ended: %s (%s)", c->role,
           c->peer[0] ? c->peer : "(not connected)", rpc_strerror(err), detail ? detail : "");
    uv_timer_stop(&c->ka);
    rpc__sched_cancel(c->sched, &c->flush_task);
    if (c->s && rx_stream_is_open(c->s))
        rx_stream_read_stop(c->s);
    c->ops->on_fail(c, err, detail ? detail : "");
}

static void conn_part_closed(rpc__conn_t *c)
{
    if (--c->open_handles == 0)
        c->ops->on_closed(c);
}

static void ka_closed(uv_handle_t *h)
{
    conn_part_closed(container_of((uv_timer_t *)h, rpc__conn_t, ka));
}

static void stream_closed(rx_stream_t *s)
{
    rpc__conn_t *c = rx_stream_ud(s);
    c->s = NULL;
    conn_part_closed(c);
}

void rpc__conn_close(rpc__conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->dead = 1;
    rpc__sched_cancel(c->sched, &c->flush_task);
    c->open_handles = 1 + (c->s != NULL);
    uv_timer_stop(&c->ka);
    uv_close((uv_handle_t *)&c->ka, ka_closed);
    if (c->s)
        rx_stream_close(c->s, stream_closed);
}

int rpc__session_settings(nghttp2_session *ng, int server, uint32_t max_streams)
{
    nghttp2_settings_entry iv[3];
    size_t n = 0;
    if (server) {
        iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, max_streams};
    } else {
        iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_PUSH, 0};
    }
    iv[n++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, RPC__STREAM_WINDOW};
    int rc = nghttp2_submit_settings(ng, NGHTTP2_FLAG_NONE, iv, n);
    if (rc == 0)
        rc = nghttp2_session_set_local_window_size(ng, NGHTTP2_FLAG_NONE, 0, RPC__CONN_WINDOW);
    return rc == 0 ? 0 : (rc == NGHTTP2_ERR_NOMEM ? -ENOMEM : RPC_EPROTOCOL);
}
