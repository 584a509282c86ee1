/* Unit tests for rx/httpc.h: the client pool against an in-process scripted HTTP/1.1 server
 * (uv_tcp on 127.0.0.1, port 0) that runs on the same loop as the client. Each test scripts the
 * server's answers, checks exact values on both sides, closes everything and requires
 * uv_loop_close() == 0. Loopback only. */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "rx/err.h"
#include "rx/http1.h"
#include "rx/httpc.h"
#include "rx/log.h"
#include "rx/stream.h"

#define MS (1000000ull)
#define HDR(n, v)                                                                                  \
    {                                                                                              \
        (n), sizeof(n) - 1, (v), sizeof(v) - 1                                                     \
    }

static const rx_http1_header_t host_hdr[] = {HDR("Host", "127.0.0.1")};

/* =========================================================================================== */
/* Scripted server                                                                              */

typedef struct srv srv_t;
typedef struct sconn sconn_t;

/* Called for each complete request (head + Content-Length body), or with srv->on_head as soon as
 * the head is complete (body: whatever part of it arrived with the head). */
typedef void (*srv_handler_fn)(sconn_t *k, const char *head, size_t hl, const char *body,
                               size_t bl);

struct sconn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* timed scripts */
    srv_t *srv;
    sconn_t *next;
    int id;   /* 1-based accept order */
    int nreq; /* requests received on this connection */
    int closing;
    int nclosed; /* of the two handles */
    int reading;
    char *in;
    size_t in_len, in_cap;
    const char *const *parts; /* script: sent one by one, gap_ms apart */
    int nparts, part, gap_ms, close_after;
    char rbuf[65536];
};

struct srv {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listening;
    int port;
    int accepted; /* connections accepted so far */
    int nconns;   /* server connections not yet freed */
    int nreqs;    /* requests received so far */
    int on_head;
    sconn_t *conns;
    srv_handler_fn handler;
    void *ud;
    char last_head[4096];
    char *last_body;
    size_t last_body_len;
};

static void sconn_handle_closed(uv_handle_t *h)
{
    sconn_t *k = h->data;
    if (++k->nclosed < 2)
        return;
    srv_t *s = k->srv;
    for (sconn_t **pp = &s->conns; *pp; pp = &(*pp)->next)
        if (*pp == k) {
            *pp = k->next;
            break;
        }
    s->nconns--;
    free(k->in);
    free(k);
}

static void sconn_close(sconn_t *k)
{
    if (k->closing)
        return;
    k->closing = 1;
    k->reading = 0;
    uv_close((uv_handle_t *)&k->tcp, sconn_handle_closed);
    uv_close((uv_handle_t *)&k->timer, sconn_handle_closed);
}

typedef struct swr {
    uv_write_t req;
    sconn_t *k;
    int close_after;
    char data[];
} swr_t;

static void swr_done(uv_write_t *w, int status)
{
    swr_t *x = (swr_t *)w;
    (void)status;
    if (x->close_after)
        sconn_close(x->k);
    free(x);
}

/* Sends len bytes (copied); close_after: close the connection once they went out. */
static void srv_send(sconn_t *k, const char *data, size_t len, int close_after)
{
    if (k->closing)
        return;
    swr_t *x = malloc(sizeof(*x) + len + 1);
    assert_non_null(x);
    memcpy(x->data, data, len);
    x->k = k;
    x->close_after = close_after;
    uv_buf_t b = uv_buf_init(x->data, (unsigned)len);
    assert_int_equal(uv_write(&x->req, (uv_stream_t *)&k->tcp, &b, 1, swr_done), 0);
}

static void srv_sends(sconn_t *k, const char *s)
{
    srv_send(k, s, strlen(s), 0);
}

static void sconn_script_tick(uv_timer_t *t)
{
    sconn_t *k = t->data;
    if (k->closing)
        return;
    int last = k->part + 1 == k->nparts;
    const char *p = k->parts[k->part++];
    srv_send(k, p, strlen(p), last && k->close_after);
    if (!last)
        uv_timer_start(&k->timer, sconn_script_tick, (uint64_t)k->gap_ms, 0);
}

/* Sends parts[0..n) one by one, the first after gap_ms and each next gap_ms later. parts must be
 * static. */
static void srv_script(sconn_t *k, const char *const *parts, int n, int gap_ms, int close_after)
{
    k->parts = parts;
    k->nparts = n;
    k->part = 0;
    k->gap_ms = gap_ms;
    k->close_after = close_after;
    uv_timer_start(&k->timer, sconn_script_tick, (uint64_t)gap_ms, 0);
}

static void srv_stop_reading(sconn_t *k)
{
    k->reading = 0;
    uv_read_stop((uv_stream_t *)&k->tcp);
}

static int lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch;
}

/* Content-Length of a request head, -1 when absent. */
static long long head_content_length(const char *h, size_t hl)
{
    static const char key[] = "\ncontent-length:";
    size_t kl = sizeof(key) - 1;
    for (size_t i = 0; i + kl <= hl; i++) {
        size_t j = 0;
        while (j < kl && lower((unsigned char)h[i + j]) == key[j])
            j++;
        if (j == kl) {
            long long v = 0;
            size_t p = i + kl;
            while (p < hl && h[p] == ' ')
                p++;
            while (p < hl && h[p] >= '0' && h[p] <= '9')
                v = v * 10 + (h[p++] - '0');
            return v;
        }
    }
    return -1;
}

static void sconn_process(sconn_t *k)
{
    srv_t *s = k->srv;
    while (!k->closing && k->reading) {
        const char *e = memmem(k->in, k->in_len, "\r\n\r\n", 4);
        if (!e)
            return;
        size_t hl = (size_t)(e - k->in) + 4;
        long long cl = head_content_length(k->in, hl);
        size_t bl = cl > 0 ? (size_t)cl : 0;
        size_t have = k->in_len - hl;
        if (!s->on_head && have < bl)
            return;
        if (have > bl)
            have = bl;
        size_t cp = hl < sizeof(s->last_head) - 1 ? hl : sizeof(s->last_head) - 1;
        memcpy(s->last_head, k->in, cp);
        s->last_head[cp] = '\0';
        free(s->last_body);
        s->last_body = malloc(have + 1);
        assert_non_null(s->last_body);
        memcpy(s->last_body, k->in + hl, have);
        s->last_body_len = have;
        k->nreq++;
        s->nreqs++;
        if (s->handler)
            s->handler(k, k->in, hl, k->in + hl, have);
        if (s->on_head) {
            k->in_len = 0; /* the handler decides about the rest; it is not parsed */
            return;
        }
        memmove(k->in, k->in + hl + bl, k->in_len - hl - bl);
        k->in_len -= hl + bl;
    }
}

static void sconn_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    sconn_t *k = h->data;
    (void)sz;
    b->base = k->rbuf;
    b->len = sizeof(k->rbuf);
}

static void sconn_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    sconn_t *k = st->data;
    if (n < 0) {
        sconn_close(k);
        return;
    }
    if (n == 0 || !k->reading)
        return;
    if (k->in_len + (size_t)n > k->in_cap) {
        k->in_cap = (k->in_len + (size_t)n) * 2;
        k->in = realloc(k->in, k->in_cap);
        assert_non_null(k->in);
    }
    memcpy(k->in + k->in_len, b->base, (size_t)n);
    k->in_len += (size_t)n;
    sconn_process(k);
}

static void srv_on_conn(uv_stream_t *l, int status)
{
    srv_t *s = l->data;
    assert_int_equal(status, 0);
    sconn_t *k = calloc(1, sizeof(*k));
    assert_non_null(k);
    k->srv = s;
    uv_tcp_init(l->loop, &k->tcp);
    uv_timer_init(l->loop, &k->timer);
    k->tcp.data = k;
    k->timer.data = k;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&k->tcp), 0);
    k->id = ++s->accepted;
    k->next = s->conns;
    s->conns = k;
    s->nconns++;
    k->reading = 1;
    assert_int_equal(uv_read_start((uv_stream_t *)&k->tcp, sconn_alloc, sconn_read), 0);
}

/* rcvbuf > 0: SO_RCVBUF of the listener (inherited by accepted sockets). */
static void srv_start(uv_loop_t *loop, srv_t *s, srv_handler_fn h, void *ud, int rcvbuf)
{
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->handler = h;
    s->ud = ud;
    struct sockaddr_in a;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &a), 0);
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    assert_int_equal(uv_tcp_bind(&s->listener, (const struct sockaddr *)&a, 0), 0);
    if (rcvbuf > 0)
        assert_int_equal(uv_recv_buffer_size((uv_handle_t *)&s->listener, &rcvbuf), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 64, srv_on_conn), 0);
    s->listening = 1;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    assert_int_equal(uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len), 0);
    s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void srv_stop(srv_t *s)
{
    for (sconn_t *k = s->conns; k; k = k->next)
        sconn_close(k);
    if (s->listening) {
        s->listening = 0;
        uv_close((uv_handle_t *)&s->listener, NULL);
    }
}

static sconn_t *srv_conn(srv_t *s, int id)
{
    for (sconn_t *k = s->conns; k; k = k->next)
        if (k->id == id)
            return k;
    return NULL;
}

/* =========================================================================================== */
/* Fixture: loop + watchdog + server + client                                                   */

typedef struct fx {
    uv_loop_t loop;
    uv_timer_t wd;
    srv_t srv;
    rx_httpc_t *c;
    int closed_client;
    int ndone; /* done() calls of every request of the test */
} fx_t;

static void wd_tick(uv_timer_t *t)
{
    (void)t; /* wakes uv_run so the loops below check their deadline */
}

static void fx_init(fx_t *f)
{
    memset(f, 0, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->wd);
    uv_timer_start(&f->wd, wd_tick, 20, 20);
}

/* Starts the server and a client on it; o may be NULL. */
static void fx_start(fx_t *f, srv_handler_fn h, const rx_httpc_opts_t *o)
{
    fx_init(f);
    srv_start(&f->loop, &f->srv, h, f, 0);
    assert_int_equal(rx_httpc_create(&f->loop, "127.0.0.1", f->srv.port, o, &f->c), 0);
    assert_non_null(f->c);
}

/* Runs the loop until *v >= target; fails after 10 s. */
static void run_until(fx_t *f, const int *v, int target)
{
    uint64_t deadline = uv_hrtime() + 10000 * MS;
    while (*v < target && uv_hrtime() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    if (*v < target)
        fprintf(stderr, "run_until: %d < %d after 10 s\n", *v, target);
    assert_true(*v >= target);
}

static void run_for(fx_t *f, int ms)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)ms * MS;
    while (uv_hrtime() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
}

static void walk_report(uv_handle_t *h, void *arg)
{
    (void)arg;
    fprintf(stderr, "open handle left: %s%s\n", uv_handle_type_name(h->type),
            uv_is_closing(h) ? " (closing)" : "");
}

/* Closes the client (if still open), the server and the watchdog; runs the loop until nothing is
 * left (the client frees itself once its handles closed) and closes it. */
static void fx_finish(fx_t *f)
{
    if (f->c && !f->closed_client)
        rx_httpc_close(f->c);
    f->c = NULL;
    srv_stop(&f->srv);
    uv_close((uv_handle_t *)&f->wd, NULL);
    uint64_t deadline = uv_hrtime() + 5000 * MS;
    while (uv_run(&f->loop, UV_RUN_NOWAIT) != 0 && uv_hrtime() < deadline)
        uv_sleep(1);
    assert_int_equal(f->srv.nconns, 0);
    int r = uv_loop_close(&f->loop);
    if (r != 0)
        uv_walk(&f->loop, walk_report, NULL);
    assert_int_equal(r, 0);
    free(f->srv.last_body);
}

static void fx_close_client(fx_t *f)
{
    rx_httpc_close(f->c);
    f->closed_client = 1;
}

static rx_httpc_stats_t fx_stats(fx_t *f)
{
    rx_httpc_stats_t st;
    rx_httpc_stats(f->c, &st);
    return st;
}

/* =========================================================================================== */
/* Test requests                                                                                */

static int g_in_submit; /* set around every rx_httpc_submit of the tests */

typedef struct treq treq_t;
struct treq {
    rx_httpc_req_t r;
    fx_t *f;
    int idx;
    int ndone;
    int nresp;          /* on_response calls */
    int resp_status;    /* status seen in on_response */
    int nbody_calls;
    int body_before_resp;
    char body[512];     /* first bytes of the response body */
    size_t body_len;
    char xtest[64];     /* value of X-Test */
    int saw_xtest, saw_final, saw_interim;
    int abort_body;     /* on_body returns this when non-zero */
    int submit_rc_in_done; /* result of a submit tried from done (close test) */
    uint64_t done_ns;
    void (*then)(treq_t *q); /* runs at the end of done */
};

static int hdr_is(const char *n, size_t nl, const char *want)
{
    size_t wl = strlen(want);
    if (nl != wl)
        return 0;
    for (size_t i = 0; i < nl; i++)
        if (lower((unsigned char)n[i]) != lower((unsigned char)want[i]))
            return 0;
    return 1;
}

static int t_on_response(rx_httpc_req_t *r)
{
    treq_t *q = r->ud;
    q->nresp++;
    q->resp_status = r->status;
    assert_true(r->t_first_ns != 0);
    return 0;
}

static int t_on_header(rx_httpc_req_t *r, const char *n, size_t nl, const char *v, size_t vl)
{
    treq_t *q = r->ud;
    assert_int_not_equal(r->status, 0); /* final response headers only */
    if (hdr_is(n, nl, "X-Test")) {
        q->saw_xtest++;
        snprintf(q->xtest, sizeof(q->xtest), "%.*s", (int)vl, v);
    }
    if (hdr_is(n, nl, "X-Final"))
        q->saw_final++;
    if (hdr_is(n, nl, "X-Interim"))
        q->saw_interim++;
    return 0;
}

static int t_on_body(rx_httpc_req_t *r, const uint8_t *d, size_t len)
{
    treq_t *q = r->ud;
    q->nbody_calls++;
    if (!q->nresp)
        q->body_before_resp = 1;
    size_t room = sizeof(q->body) - 1 - q->body_len;
    size_t n = len < room ? len : room;
    memcpy(q->body + q->body_len, d, n);
    q->body_len += n;
    q->body[q->body_len] = '\0';
    return q->abort_body;
}

static void t_done(rx_httpc_req_t *r)
{
    treq_t *q = r->ud;
    assert_false(g_in_submit); /* never from inside rx_httpc_submit */
    q->ndone++;
    q->f->ndone++;
    q->done_ns = uv_hrtime();
    if (r->error == 0)
        assert_string_equal(r->detail, "");
    else
        assert_true(r->detail[0] != '\0');
    if (q->then)
        q->then(q);
}

static void treq_init(treq_t *q, fx_t *f, const char *method, const char *target)
{
    memset(q, 0, sizeof(*q));
    q->f = f;
    q->r.method = method;
    q->r.target = target;
    q->r.headers = host_hdr;
    q->r.nheaders = 1;
    q->r.body_len = -1;
    q->r.on_response = t_on_response;
    q->r.on_header = t_on_header;
    q->r.on_body = t_on_body;
    q->r.done = t_done;
    q->r.ud = q;
}

static int submit_rc(rx_httpc_t *c, treq_t *q)
{
    g_in_submit = 1;
    int rc = rx_httpc_submit(c, &q->r);
    g_in_submit = 0;
    return rc;
}

static void submit(rx_httpc_t *c, treq_t *q)
{
    assert_int_equal(submit_rc(c, q), 0);
}

static void assert_ok(const treq_t *q, int status, const char *body)
{
    if (q->r.error != 0)
        fprintf(stderr, "request %d failed: %d %s\n", q->idx, q->r.error, q->r.detail);
    assert_int_equal(q->ndone, 1);
    assert_int_equal(q->r.error, 0);
    assert_int_equal(q->r.retryable, 0);
    assert_int_equal(q->r.status, status);
    assert_string_equal(q->r.detail, "");
    if (body) {
        assert_string_equal(q->body, body);
        assert_int_equal(q->r.body_bytes, strlen(body));
    }
    assert_true(q->r.t_first_ns >= q->r.t_submit_ns);
    assert_true(q->r.t_end_ns >= q->r.t_first_ns);
}

/* ---- common handlers ---- */

static const char resp_hello[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Test: abc\r\n\r\nhello";

static void h_hello(sconn_t *k, const char *head, size_t hl, const char *body, size_t bl)
{
    (void)head, (void)hl, (void)body, (void)bl;
    srv_sends(k, resp_hello);
}

/* =========================================================================================== */
/* 1. Simple GET                                                                                */

static void test_simple_get(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, h_hello, NULL);
    treq_t q;
    treq_init(&q, &f, "GET", "/hello?x=1");
    submit(f.c, &q);
    assert_int_equal(q.ndone, 0);
    run_until(&f, &q.ndone, 1);
    assert_ok(&q, 200, "hello");
    assert_int_equal(q.r.body_bytes, 5);
    assert_int_equal(q.saw_xtest, 1);
    assert_string_equal(q.xtest, "abc");
    assert_int_equal(q.nresp, 1);
    assert_int_equal(q.resp_status, 200);
    assert_int_equal(q.body_before_resp, 0);
    assert_int_equal(q.r.reused, 0);
    assert_true(q.r.t_first_ns > 0);
    assert_true(q.r.t_first_ns >= q.r.t_submit_ns);
    assert_true(q.r.t_end_ns >= q.r.t_first_ns);
    assert_string_equal(f.srv.last_head, "GET /hello?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    rx_httpc_stats_t st = fx_stats(&f);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.connect_fails, 0);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.reused, 0);
    assert_int_equal(st.resent, 0);
    assert_int_equal(st.open, 1);
    assert_int_equal(st.idle, 1);
    assert_int_equal(f.srv.accepted, 1);
    fx_finish(&f);
}

/* =========================================================================================== */
/* 2. Keep-alive reuse: 10 sequential requests, each submitted from the previous done()         */

#define NSEQ 10

static treq_t g_seq[NSEQ];

static void seq_then(treq_t *q)
{
    if (q->idx + 1 < NSEQ)
        submit(q->f->c, &g_seq[q->idx + 1]);
}

static void test_keepalive_reuse(void **state)
{
    (void)state;
    rx_httpc_opts_t o;
    rx_httpc_opts_init(&o);
    o.max_conns = 4;
    fx_t f;
    fx_start(&f, h_hello, &o);
    for (int i = 0; i < NSEQ; i++) {
        treq_init(&g_seq[i], &f, "GET", "/seq");
        g_seq[i].idx = i;
        g_seq[i].then = seq_then;
    }
    submit(f.c, &g_seq[0]);
    run_until(&f, &f.ndone, NSEQ);
    for (int i = 0; i < NSEQ; i++) {
        assert_ok(&g_seq[i], 200, "hello");
        assert_int_equal(g_seq[i].r.reused, i > 0);
    }
    rx_httpc_stats_t st = fx_stats(&f);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.reused, NSEQ - 1);
    assert_int_equal(st.requests, NSEQ);
    assert_int_equal(st.resent, 0);
    assert_int_equal(st.open, 1);
    assert_int_equal(st.idle, 1);
    assert_int_equal(f.srv.accepted, 1);
    assert_int_equal(f.srv.nreqs, NSEQ);
    fx_finish(&f);
}

/* =========================================================================================== */
/* 3. Concurrency cap: 10 at once, max_conns 3, each response delayed 20 ms                    */

static const char *const delayed_hello[] = {resp_hello};
static int g_busy, g_busy_max; /* server connections with a response owed */

static void h_delayed(sconn_t *k, const char *head, size_t hl, const char *body, size_t bl)
{
    (void)head, (void)hl, (void)body, (void)bl;
    srv_script(k, delayed_hello, 1, 20, 0);
    g_busy = 0;
    for (sconn_t *x = k->srv->conns; x; x = x->next)
        if (x->part < x->nparts)
            g_busy++;
    if (g_busy > g_busy_max)
        g_busy_max = g_busy;
}

static void test_concurrency_cap(void **state)
{
    (void)state;
    rx_httpc_opts_t o;
    rx_httpc_opts_init(&o);
    o.max_conns = 3;
    fx_t f;
    fx_start(&f, h_delayed, &o);
    g_busy = g_busy_max = 0;
    treq_t q[10];
    uint64_t t0 = uv_hrtime();
    for (int i = 0; i < 10; i++) {
        treq_init(&q[i], &f, "GET", "/slow");
        q[i].idx = i;
        submit(f.c, &q[i]);
    }
    rx_httpc_stats_t st = fx_stats(&f);
    assert_int_equal(st.open, 3); /* three connecting at once, no more */
    run_until(&f, &f.ndone, 10);
    uint64_t el = uv_hrtime() - t0;
    for (int i = 0; i < 10; i++)
        assert_ok(&q[i], 200, "hello");
    assert_int_equal(f.srv.accepted, 3);
    assert_int_equal(f.srv.nreqs, 10);
    assert_int_equal(g_busy_max, 3);
    st = fx_stats(&f);
    assert_int_equal(st.connects, 3);
    assert_int_equal(st.reused, 7);
    assert_int_equal(st.open, 3);
    assert_int_equal(st.idle, 3);
    /* 10 requests over 3 connections: 4 rounds of >= 20 ms (timer granularity: 1 ms) */
    assert_true(el >= 75 * MS);
    fx_finish(&f);
}

/* =========================================================================================== */
/* 4. PUT with a body in slices                                                                 */

static const char resp_empty[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

static void h_empty(sconn_t *k, const char *head, size_t hl, const char *body, size_t bl)
{
    (void)head, (void)hl, (void)body, (void)bl;
    srv_sends(k, resp_empty);
}

static void test_put_slices(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, h_empty, NULL);
    static const rx_http1_header_t hdrs[] = {HDR("Host", "bucket.example.test:9000"),
                                             HDR("X-Amz-Meta-A", "1 2")};
    struct iovec iov[3] = {{(void *)"abc", 3}, {(void *)"defgh", 5}, {(void *)"ij", 2}};
    treq_t q;
    treq_init(&q, &f, "PUT", "/bkt/key%20x?partNumber=1");
    q.r.headers = hdrs;
    q.r.nheaders = 2;
    q.r.body = iov;
    q.r.nbody = 3;
    q.r.body_len = 10;
    submit(f.c, &q);
    run_until(&f, &q.ndone, 1);
    assert_ok(&q, 200, "");
    assert_string_equal(f.srv.last_head, "PUT /bkt/key%20x?partNumber=1 HTTP/1.1\r\n"
                                         "Host: bucket.example.test:9000\r\n"
                                         "X-Amz-Meta-A: 1 2\r\n"
                                         "Content-Length: 10\r\n\r\n");
    assert_int_equal(f.srv.last_body_len, 10);
    assert_memory_equal(f.srv.last_body, "abcdefghij", 10);

    /* More slices than the inline iovec array (8), then more again (the array grows), with an
     * empty slice in the middle; the same connection carries all three. */
    for (int round = 0; round < 2; round++) {
        int ns = round == 0 ? 20 : 40;
        struct iovec many[40];
        char data[40];
        for (int i = 0; i < ns; i++) {
            data[i] = (char)('A' + i % 26);
            many[i].iov_base = &data[i];
            many[i].iov_len = i == 7 ? 0 : 1;
        }
        treq_t p;
        treq_init(&p, &f, "PUT", "/many");
        p.r.body = many;
        p.r.nbody = ns;
        p.r.body_len = ns - 1;
        submit(f.c, &p);
        run_until(&f, &p.ndone, 1);
        assert_ok(&p, 200, "");
        assert_int_equal(p.r.reused, 1);
        char want[128];
        snprintf(want, sizeof(want),
                         "PUT /many HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n",
                         ns - 1);
        assert_string_equal(f.srv.last_head, want);
        assert_int_equal(f.srv.last_body_len, (size_t)(ns - 1));
        char wantb[40];
        int w = 0;
        for (int i = 0; i < ns; i++)
            if (i != 7)
                wantb[w++] = data[i];
        assert_memory_equal(f.srv.last_body, wantb, (size_t)w);
    }
    assert_int_equal(f.srv.accepted, 1);
    fx_finish(&f);
}

/* =========================================================================================== */
/* 5. HEAD: Content-Length without a body, then a GET on the same connection                    */

static void h_head(sconn_t *k, const char *head, size_t hl, const char *body, size_t bl)
{
    (void)hl, (void)body, (void)bl;
    if (strncmp(head, "HEAD ", 5) == 0)
        srv_sends(k, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nX-Test: h\r\n\r\n");
    else
        srv_sends(k, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
}

static void test_head(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, h_head, NULL);
    treq_t q;
    treq_init(&q, &f, "HEAD", "/obj");
    q.r.head = 1;
    submit(f.c, &q);
    run_until(&f, &q.ndone, 1);
    assert_ok(&q, 200, "");
    assert_int_equal(q.r.body_bytes, 0);
    assert_int_equal(q.nbody_calls, 0);
    assert_int_equal(q.saw_xtest, 1);
    assert_string_equal(f.srv.last_head, "HEAD /obj HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    rx_httpc_stats_t st = fx_stats(&f);
    assert_int_equal(st.idle, 1);

    treq_t g;
    treq_init(&g, &f, "GET", "/obj");
    submit(f.c, &g);
    run_until(&f, &g.ndone, 1);
    assert_ok(&g, 200, "ok");
    assert_int_equal(g.r.reused, 1);
    st = fx_stats(&f);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.reused, 1);
    assert_int_equal(f.srv.accepted, 1);
    fx_finish(&f);
}

/* =========================================================================================== */
/* 6. Stale keep-alive connection, and a fresh connection closed without a response             */

/* The second request on a connection is read, then the connection is closed unanswered. */
static void h_close_second(sconn_t *k, const char *head, size_t hl, const char *body, size_t bl)
{
    (void)head, (void)hl, (void)body, (void)bl;
    if (k->nreq == 2)
        sconn_close(k);
    else
        srv_sends(k, resp_hello);
}

static void test_stale_keepalive(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, h_close_second, NULL);
    treq_t a, b;
    treq_init(&a, &f, "GET", "/a");
    submit(f.c, &a);
    run_until(&f, &a.ndone, 1);
    assert_ok(&a, 200, "hello");

    treq_init(&b, &f, "GET", "/b");
    submit(f.c, &b);
    run_until(&f, &b.ndone, 1);
    assert_ok(&b, 200, "hello");
    assert_int_equal(b.r.reused, 0); /* it went out again on a new connection */
    assert_int_equal(b.nresp, 1);
    rx_httpc_stats_t st = fx_stats(&f);
    assert_int_equal(st.resent, 1);
    assert_int_equal(st.connects, 2);
    assert_int_equal(st.reused, 1); /* the first attempt of b */
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.open, 1);
    assert_int_equal(f.srv.accepted, 2);
    assert_int_equal(f.srv.nreqs, 3);
    assert_string_equal(f.srv.last_head, "GET /b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    fx_finish(&f);
}

/* Every request is read and its connection closed unanswered. */
static void h_close_always(sconn_t *k, const char *head, size_t hl, const char *body, size_t bl)
{
    (void)head, (void)hl, (void)body, (void)bl;
    sconn_close(k);
}

static void test_fresh_conn_closed(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, h_close_always, NULL);
    treq_t q;
    treq_init(&q, &f, "GET", "/x");
    submit(f.c, &q);
    run_until(&f, &q.ndone, 1);
    run_for(&f, 30); /* a resend would show up at the server */
    assert_int_equal(q.ndone, 1);
    assert_int_equal(q.r.error, RX_HTTP1_EEOF);
    assert_int_equal(q.r.retryable, 1);
    assert_int_equal(q.r.status, 0);
    assert_int_equal(q.r.t_first_ns, 0);
    assert_true(q.r.detail[0] != '\0');
    assert_int_equal(q.nresp, 0);
    rx_httpc_stats_t st = fx_stats(&f);
    assert_int_equal(st.resent, 0);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.open, 0);
    assert_int_equal(f.srv.accepted, 1);
    assert_int_equal(f.srv.nreqs, 1);
    fx_finish(&f);
}

/* =========================================================================================== */
/* 7. Malformed response                                                                        */

/* The first connection answers garbage; later ones answer properly. */
static void h_garbage_first(sconn_t *k, const char *head, size_t hl, const char *body, size_t bl)
{
    (void)head, (void)hl, (void)body, (void)bl;
    if (k->id == 1)
        srv_sends(k, "garbage\r\n\r\n");
    else
        srv_sends(k, resp_hello);
}

static void test_malformed(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, h_garbage_first, NULL);
    treq_t q;
    treq_init(&q, &f, "GET", "/m");
    submit(f.c, &q);
    run_until(&f, &q.ndone, 1);
    assert_int_equal(q.r.error, RX_HTTP1_ESTATUS);
    assert_true(q.r.error <= RX_HTTP1_ERR_BASE - 1 && q.r.error >= RX_HTTP1_ERR_BASE - 99);
    assert_int_equal(q.r.status, 0);
    assert_int_equal(q.r.retryable, 0);
    assert_non_null(strstr(q.r.detail, "HTTP/")); /* "status line does not start with HTTP/" */
    assert_true(q.r.t_first_ns != 0);
    assert_int_equal(q.nresp, 0);
    rx_httpc_stats_t st = fx_stats(&f);
    assert_int_equal(st.open, 0);

    treq_t n;
    treq_init(&n, &f, "GET", "/m2");
    submit(f.c, &n);
    run_until(&f, &n.ndone, 1);
    assert_ok(&n, 200, "hello");
    assert_int_equal(n.r.reused, 0);
    st = fx_stats(&f);
    assert_int_equal(st.connects, 2);
    assert_int_equal(st.resent, 0);
    assert_int_equal(f.srv.accepted, 2);
    fx_finish(&f);
}

/* =========================================================================================== */
/* 8. Truncated body; and a body delimited by the close                                         */

static void h_truncated(sconn_t *k, const char *head, size_t hl, const char *body, size_t bl)
{
    (void)hl, (void)body, (void)bl;
    if (strncmp(head, "GET /trunc ", 11) == 0) {
        static const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
        srv_send(k, r, sizeof(r) - 1, 1);
    } else {
        static const char r[] = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end";
        srv_send(k, r, sizeof(r) - 1, 1);
    }
}

static void test_truncated_body(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, h_truncated, NULL);
    treq_t q;
    treq_init(&q, &f, "GET", "/trunc");
    submit(f.c, &q);
    run_until(&f, &q.ndone, 1);
    assert_int_equal(q.r.error, RX_HTTP1_EEOF);
    assert_int_equal(q.r.retryable, 1);
    assert_int_equal(q.r.status, 200);
    assert_true(q.r.t_first_ns != 0);
    assert_true(q.r.t_first_ns >= q.r.t_submit_ns);
    assert_true(q.r.t_end_ns >= q.r.t_first_ns);
    assert_int_equal(q.r.body_bytes, 10);
    assert_string_equal(q.body, "0123456789");
    assert_true(q.r.detail[0] != '\0');

    treq_t e;
    treq_init(&e, &f, "GET", "/eof");
    submit(f.c, &e);
    run_until(&f, &e.ndone, 1);
    assert_ok(&e, 200, "until the end");
    rx_httpc_stats_t st = fx_stats(&f);
    assert_int_equal(st.resent, 0);
    assert_int_equal(st.connects, 2);
    assert_int_equal(st.open, 0); /* Connection: close */
    assert_int_equal(f.srv.accepted, 2);
    fx_finish(&f);
}

/* =========================================================================================== */
/* 9. io_timeout                                                                                */

static void test_io_timeout(void **state)
{
    (void)state;
    rx_httpc_opts_t o;
    rx_httpc_opts_init(&o);
    o.io_timeout_ms = 200;
    fx_t f;
    fx_start(&f, NULL, &o); /* reads requests, never answers */
    treq_t q;
    treq_init(&q, &f, "GET", "/never");
    submit(f.c, &q);
    run_until(&f, &q.ndone, 1);
    uint64_t el = q.r.t_end_ns - q.r.t_submit_ns;
    assert_int_equal(q.r.error, RX_ETIMEDOUT);
    assert_int_equal(q.r.retryable, 1);
    assert_int_equal(q.r.status, 0);
    assert_true(q.r.detail[0] != '\0');
    assert_true(el >= 200 * MS);
    assert_true(el <= 1500 * MS);
    assert_int_equal(f.srv.nreqs, 1);
    rx_httpc_stats_t st = fx_stats(&f);
    assert_int_equal(st.open, 0);
    assert_int_equal(st.resent, 0);
    fx_finish(&f);
}

/* =========================================================================================== */
/* 10. Connect refused, with the reconnect backoff                                              */

/* A loopback port with nobody listening (a listener bound and closed again). */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, len), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static treq_t g_refused[2];

static void refused_then(treq_t *q)
{
    if (q->idx == 0)
        submit(q->f->c, &g_refused[1]); /* right away, from done */
}

static void test_connect_refused(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f);
    rx_httpc_opts_t o;
    rx_httpc_opts_init(&o);
    o.reconnect_min_ms = 200;
    o.reconnect_max_ms = 1000;
    assert_int_equal(rx_httpc_create(&f.loop, "127.0.0.1", closed_port(), &o, &f.c), 0);
    for (int i = 0; i < 2; i++) {
        treq_init(&g_refused[i], &f, "GET", "/r");
        g_refused[i].idx = i;
        g_refused[i].then = refused_then;
    }
    submit(f.c, &g_refused[0]);
    run_until(&f, &f.ndone, 2);
    for (int i = 0; i < 2; i++) {
        treq_t *q = &g_refused[i];
        assert_int_equal(q->ndone, 1);
        assert_int_equal(q->r.error, UV_ECONNREFUSED);
        assert_int_equal(q->r.retryable, 1);
        assert_int_equal(q->r.status, 0);
        assert_true(q->r.detail[0] != '\0');
    }
    /* The second waited for the backoff: 200 ms minus up to 50% jitter. */
    uint64_t waited = g_refused[1].r.t_end_ns - g_refused[1].r.t_submit_ns;
    assert_true(waited >= 100 * MS);
    assert_true(waited < 1500 * MS);
    rx_httpc_stats_t st = fx_stats(&f);
    assert_int_equal(st.connect_fails, 2);
    assert_int_equal(st.connects, 0);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.open, 0);
    fx_finish(&f);
}

/* =========================================================================================== */
/* 11. done() never runs inside submit; invalid requests; argument checks                       */

static void test_done_not_in_submit(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, h_hello, NULL);
    static const rx_http1_header_t bad[] = {HDR("Host", "127.0.0.1"), HDR("bad name", "v")};

    /* Argument checks: refused synchronously, done never runs. */
    treq_t x;
    treq_init(&x, &f, "GET", "/");
    x.r.done = NULL;
    assert_int_equal(submit_rc(f.c, &x), RX_EINVAL);
    treq_init(&x, &f, NULL, "/");
    assert_int_equal(submit_rc(f.c, &x), RX_EINVAL);
    treq_init(&x, &f, "GET", NULL);
    assert_int_equal(submit_rc(f.c, &x), RX_EINVAL);
    treq_init(&x, &f, "PUT", "/");
    x.r.nbody = 1;
    assert_int_equal(submit_rc(f.c, &x), RX_EINVAL);
    treq_init(&x, &f, "PUT", "/");
    x.r.nbody = -1;
    assert_int_equal(submit_rc(f.c, &x), RX_EINVAL);
    assert_int_equal(rx_httpc_submit(NULL, &x.r), RX_EINVAL);
    rx_httpc_t *bogus = (rx_httpc_t *)(uintptr_t)1;
    assert_int_equal(rx_httpc_create(&f.loop, "", 80, NULL, &bogus), RX_EINVAL);
    assert_int_equal(rx_httpc_create(&f.loop, "127.0.0.1", 0, NULL, &bogus), RX_EINVAL);
    assert_int_equal(rx_httpc_create(&f.loop, "127.0.0.1", 65536, NULL, &bogus), RX_EINVAL);
    assert_int_equal(rx_httpc_create(NULL, "127.0.0.1", 80, NULL, &bogus), RX_EINVAL);
    rx_httpc_close(NULL);

    /* A bad header with no connection yet: fails once a connection is there. */
    treq_t b0;
    treq_init(&b0, &f, "GET", "/bad0");
    b0.r.headers = bad;
    b0.r.nheaders = 2;
    submit(f.c, &b0);
    assert_int_equal(b0.ndone, 0);
    run_until(&f, &b0.ndone, 1);
    assert_int_equal(b0.r.error, RX_EINVAL);
    assert_int_equal(b0.r.retryable, 0);
    assert_int_equal(b0.r.status, 0);
    assert_true(b0.r.detail[0] != '\0');
    assert_int_equal(f.srv.nreqs, 0);

    /* A good request, on the connection opened for the bad one. */
    treq_t g;
    treq_init(&g, &f, "GET", "/good");
    submit(f.c, &g);
    assert_int_equal(g.ndone, 0);
    run_until(&f, &g.ndone, 1);
    assert_ok(&g, 200, "hello");
    assert_int_equal(g.r.reused, 0);

    /* A bad header with an idle connection: fails at once, done runs later from the loop. */
    treq_t b1;
    treq_init(&b1, &f, "GET", "/bad1");
    b1.r.headers = bad;
    b1.r.nheaders = 2;
    submit(f.c, &b1);
    assert_int_equal(b1.ndone, 0);
    run_until(&f, &b1.ndone, 1);
    assert_int_equal(b1.r.error, RX_EINVAL);
    assert_int_equal(b1.r.retryable, 0);
    assert_int_equal(b1.r.reused, 0); /* it never went out */
    assert_true(b1.r.detail[0] != '\0');

    /* The connection is still good. */
    treq_t g2;
    treq_init(&g2, &f, "GET", "/good2");
    submit(f.c, &g2);
    run_until(&f, &g2.ndone, 1);
    assert_ok(&g2, 200, "hello");
    assert_int_equal(g2.r.reused, 1);

    rx_httpc_stats_t st = fx_stats(&f);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.requests, 4);
    assert_int_equal(st.reused, 1);
    assert_int_equal(f.srv.accepted, 1);
    assert_int_equal(f.srv.nreqs, 2);

    /* After close: RX_ESTATE, nothing runs. */
    fx_close_client(&f);
    treq_init(&x, &f, "GET", "/late");
    assert_int_equal(submit_rc(f.c, &x), RX_ESTATE);
    assert_int_equal(f.ndone, 4);
    fx_finish(&f);
    assert_int_equal(x.ndone, 0);
}

/* =========================================================================================== */
/* 12. Early response while the request body is still going out                                 */

static int g_early_seen;

/* Connection 1: answers 403 after the head and stops reading. Others: 200. */
static void h_early(sconn_t *k, const char *head, size_t hl, const char *body, size_t bl)
{
    (void)hl, (void)body, (void)bl;
    if (k->id == 1) {
        g_early_seen = strncmp(head, "PUT /big HTTP/1.1\r\n", 19) == 0;
        srv_stop_reading(k);
        srv_sends(k, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
    } else {
        srv_sends(k, resp_hello);
    }
}

/* More than the client's kernel buffers can take while the server does not read: the body's
 * write is still pending when the 403 arrives. */
static size_t early_body_size(void)
{
    size_t sz = 1u << 20;
    FILE *fp = fopen("/proc/sys/net/ipv4/tcp_wmem", "r");
    if (fp) {
        unsigned long a, b, c;
        if (fscanf(fp, "%lu %lu %lu", &a, &b, &c) == 3)
            sz += c;
        fclose(fp);
    } else {
        sz += 8u << 20;
    }
    return sz;
}

static void test_early_response(void **state)
{
    (void)state;
    fx_t f;
    fx_init(&f);
    srv_start(&f.loop, &f.srv, h_early, &f, 4096);
    f.srv.on_head = 1;
    assert_int_equal(rx_httpc_create(&f.loop, "127.0.0.1", f.srv.port, NULL, &f.c), 0);
    g_early_seen = 0;
    size_t sz = early_body_size();
    char *big = calloc(1, sz);
    assert_non_null(big);
    struct iovec iov = {big, sz};
    treq_t q;
    treq_init(&q, &f, "PUT", "/big");
    q.r.body = &iov;
    q.r.nbody = 1;
    q.r.body_len = (int64_t)sz;
    submit(f.c, &q);
    run_until(&f, &q.ndone, 1);
    assert_int_equal(g_early_seen, 1);
    assert_ok(&q, 403, "");
    rx_httpc_stats_t st = fx_stats(&f);
    assert_int_equal(st.open, 0); /* not reusable: the body was cut short */

    /* The server's second connection (server switched back to whole requests) */
    f.srv.on_head = 0;
    treq_t g;
    treq_init(&g, &f, "GET", "/after");
    submit(f.c, &g);
    run_until(&f, &g.ndone, 1);
    assert_ok(&g, 200, "hello");
    assert_int_equal(g.r.reused, 0);
    st = fx_stats(&f);
    assert_int_equal(st.connects, 2);
    assert_int_equal(st.reused, 0);
    assert_int_equal(st.resent, 0);
    assert_int_equal(f.srv.accepted, 2);
    fx_finish(&f);
    free(big);
}

/* =========================================================================================== */
/* 13. Close with requests queued and in flight                                                 */

static void close_then(treq_t *q)
{
    treq_t extra;
    treq_init(&extra, q->f, "GET", "/from-done");
    q->submit_rc_in_done = submit_rc(q->f->c, &extra);
}

static void test_close_pending(void **state)
{
    (void)state;
    rx_httpc_opts_t o;
    rx_httpc_opts_init(&o);
    o.max_conns = 2;
    fx_t f;
    fx_start(&f, NULL, &o); /* never answers */
    treq_t q[5];
    for (int i = 0; i < 5; i++) {
        treq_init(&q[i], &f, "GET", "/pending");
        q[i].idx = i;
        q[i].then = close_then;
        submit(f.c, &q[i]);
    }
    run_until(&f, &f.srv.nreqs, 2); /* two in flight, three queued */
    rx_httpc_stats_t st = fx_stats(&f);
    assert_int_equal(st.open, 2);
    assert_int_equal(st.idle, 0);
    assert_int_equal(f.ndone, 0);
    fx_close_client(&f);
    assert_int_equal(f.ndone, 5); /* from inside rx_httpc_close */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(q[i].ndone, 1);
        assert_int_equal(q[i].r.error, RX_ECANCELED);
        assert_int_equal(q[i].r.retryable, 0);
        assert_true(q[i].r.detail[0] != '\0');
        assert_int_equal(q[i].submit_rc_in_done, RX_ESTATE);
    }
    rx_httpc_close(f.c); /* idempotent until the loop ran */
    fx_finish(&f);
    for (int i = 0; i < 5; i++)
        assert_int_equal(q[i].ndone, 1);
    assert_int_equal(f.srv.accepted, 2);

    /* Close while the only connection is still connecting. */
    fx_t g;
    fx_start(&g, h_hello, NULL);
    treq_t c1;
    treq_init(&c1, &g, "GET", "/c");
    submit(g.c, &c1);
    fx_close_client(&g);
    assert_int_equal(c1.ndone, 1);
    assert_int_equal(c1.r.error, RX_ECANCELED);
    fx_finish(&g);
    assert_int_equal(c1.ndone, 1);

    /* Close with a done() still deferred (bad request on an idle connection). */
    fx_t h;
    fx_start(&h, h_hello, NULL);
    treq_t ok;
    treq_init(&ok, &h, "GET", "/ok");
    submit(h.c, &ok);
    run_until(&h, &ok.ndone, 1);
    assert_ok(&ok, 200, "hello");
    static const rx_http1_header_t bad[] = {HDR("Host", "x"), HDR("a:b", "v")};
    treq_t b;
    treq_init(&b, &h, "GET", "/bad");
    b.r.headers = bad;
    b.r.nheaders = 2;
    submit(h.c, &b);
    assert_int_equal(b.ndone, 0);
    fx_close_client(&h);
    assert_int_equal(b.ndone, 1);
    assert_int_equal(b.r.error, RX_EINVAL);
    fx_finish(&h);
    assert_int_equal(b.ndone, 1);
}

/* =========================================================================================== */
/* 14. Chunked body across reads, after a 100 Continue                                          */

static const char *const chunked_parts[] = {
    "HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Final: yes\r\n\r\n5\r\nhel",
    "lo\r\n7;ext=1\r\n, world\r\n0\r\n",
    "X-Trailer: t\r\n\r\n",
};

static void h_chunked(sconn_t *k, const char *head, size_t hl, const char *body, size_t bl)
{
    (void)hl, (void)body, (void)bl;
    if (strncmp(head, "PUT ", 4) == 0)
        srv_script(k, chunked_parts, 4, 5, 0);
    else
        srv_sends(k, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n");
}

static void test_chunked_continue(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, h_chunked, NULL);
    static const rx_http1_header_t hdrs[] = {HDR("Host", "127.0.0.1"),
                                             HDR("Expect", "100-continue")};
    struct iovec iov = {(void *)"data", 4};
    treq_t q;
    treq_init(&q, &f, "PUT", "/c");
    q.r.headers = hdrs;
    q.r.nheaders = 2;
    q.r.body = &iov;
    q.r.nbody = 1;
    q.r.body_len = 4;
    submit(f.c, &q);
    run_until(&f, &q.ndone, 1);
    assert_ok(&q, 200, "hello, world");
    assert_int_equal(q.r.body_bytes, 12);
    assert_true(q.nbody_calls >= 2); /* the body arrived in several reads */
    assert_int_equal(q.nresp, 1);
    assert_int_equal(q.resp_status, 200);
    assert_int_equal(q.saw_final, 1);
    assert_int_equal(q.saw_interim, 0); /* interim headers are not the response's */
    assert_int_equal(f.srv.last_body_len, 4);
    assert_memory_equal(f.srv.last_body, "data", 4);

    treq_t g;
    treq_init(&g, &f, "GET", "/c2");
    submit(f.c, &g);
    run_until(&f, &g.ndone, 1);
    assert_ok(&g, 200, "abcd");
    assert_int_equal(g.r.reused, 1);
    assert_int_equal(f.srv.accepted, 1);
    fx_finish(&f);
}

/* =========================================================================================== */
/* Extra: a callback aborts; idle connections time out                                          */

static void test_callback_abort(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, h_hello, NULL);
    treq_t q;
    treq_init(&q, &f, "GET", "/abort");
    q.abort_body = -12345;
    submit(f.c, &q);
    run_until(&f, &q.ndone, 1);
    assert_int_equal(q.r.error, -12345);
    assert_int_equal(q.r.status, 200);
    assert_true(q.r.detail[0] != '\0');
    rx_httpc_stats_t st = fx_stats(&f);
    assert_int_equal(st.open, 0);

    treq_t g;
    treq_init(&g, &f, "GET", "/next");
    submit(f.c, &g);
    run_until(&f, &g.ndone, 1);
    assert_ok(&g, 200, "hello");
    assert_int_equal(f.srv.accepted, 2);
    fx_finish(&f);
}

static void test_idle_timeout(void **state)
{
    (void)state;
    rx_httpc_opts_t o;
    rx_httpc_opts_init(&o);
    o.idle_timeout_ms = 100;
    fx_t f;
    fx_start(&f, h_hello, &o);
    treq_t q;
    treq_init(&q, &f, "GET", "/i");
    submit(f.c, &q);
    run_until(&f, &q.ndone, 1);
    assert_ok(&q, 200, "hello");
    assert_int_equal(fx_stats(&f).idle, 1);
    run_for(&f, 400);
    rx_httpc_stats_t st = fx_stats(&f);
    assert_int_equal(st.open, 0);
    assert_int_equal(st.idle, 0);
    assert_int_equal(f.srv.nconns, 0); /* the server saw the close */

    /* The server closes an idle connection: the client forgets it. */
    treq_t a;
    treq_init(&a, &f, "GET", "/j");
    submit(f.c, &a);
    run_until(&f, &a.ndone, 1);
    assert_ok(&a, 200, "hello");
    assert_int_equal(fx_stats(&f).idle, 1);
    sconn_close(srv_conn(&f.srv, 2));
    run_for(&f, 50);
    assert_int_equal(fx_stats(&f).open, 0);
    fx_finish(&f);
}

static void quiet_logger(void *ud, rx_log_level_t level, const char *subsys, int core,
                         const char *msg)
{
    (void)ud, (void)core;
    if (getenv("RX_TEST_VERBOSE") != NULL)
        fprintf(stderr, "[%s] %s: %s\n", rx_log_level_name(level), subsys, msg);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    rx_log_set(quiet_logger, NULL, RX_LOG_DEBUG);
    rx_http1_err_register();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_keepalive_reuse),
        cmocka_unit_test(test_concurrency_cap),
        cmocka_unit_test(test_put_slices),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_stale_keepalive),
        cmocka_unit_test(test_fresh_conn_closed),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_truncated_body),
        cmocka_unit_test(test_io_timeout),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_done_not_in_submit),
        cmocka_unit_test(test_early_response),
        cmocka_unit_test(test_close_pending),
        cmocka_unit_test(test_chunked_continue),
        cmocka_unit_test(test_callback_abort),
        cmocka_unit_test(test_idle_timeout),
    };
    return cmocka_run_group_tests_name("httpc", tests, NULL, NULL) != 0;
}
