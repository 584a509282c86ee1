/* server.c — the gRPC server (rpc/server.h): nghttp2 server sessions on accepted rx_streams.
 *
 * Life of a call (one HTTP/2 stream): allocated at its first HEADERS, headers collected, checked
 * at END_HEADERS, handed to the method's handler, then fed DATA through its deframer. It ends
 * (on_end posted as a task) when its trailers were written, or when something killed it; its
 * memory goes when both the user side is done (handler returned, on_end ran) and nghttp2 no
 * longer knows the stream (stream closed, or the connection dead). So nghttp2's stream user data
 * and data providers never point at freed memory, whatever the user does in callbacks.
 *
 * A connection stays open (reading stopped) after it failed until its last call is freed, so
 * rpc_scall_stream() and rpc_scall_peer() stay valid for a call's whole life.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/err.h"
#include "rpc/grpc.h"
#include "rpc/server.h"
#include "rpc_internal.h"
#include "rx/err.h"
#include "rx/log.h"

#define container_of(p, T, m) ((T *)(void *)((char *)(p)-offsetof(T, m)))

/* Request header bytes kept per call (names + values); beyond: RESOURCE_EXHAUSTED. */
#define HDR_MAX (64u * 1024u)
/* A client's RST_STREAM(CANCEL) this close to the call's deadline is the client's deadline: the
 * client started its clock earlier (one way latency and queueing), so its timer fires first. */
#define DEADLINE_SLACK_MAX (20ull * 1000000ull)

typedef struct method {
    struct method *next;
    rpc_handler_fn fn;
    void *ud;
    char path[];
} method_t;

typedef struct sconn sconn_t;

struct rpc_scall {
    rpc__out_t out; /* first: the data provider's source */
    sconn_t *k;
    rpc_scall_t *prev, *next; /* the connection's calls */
    int32_t sid;

    /* request */
    char *path;
    char *hbuf; /* "name\0value\0" pairs */
    size_t hlen, hcap;
    int is_post, ct_ok, bad_timeout, hdr_too_big;
    uint64_t timeout_ns, deadline;
    rpc__dl_t dl;
    rpc_deframer_t df;

    rpc_scall_cb_t cb;
    void *ud;

    /* state */
    int in_handler, handled, accepted;
    int resp_sent;   /* response HEADERS submitted */
    int finished;    /* trailers submitted (by the user or the server) */
    int half_closed; /* client's END_STREAM received */
    int peer_rst, rst_deadline;
    uint32_t rst_code; /* RST_STREAM after our END_STREAM when the client still sends */
    int ended, end_ran, end_status;
    int h2_done; /* nghttp2 closed the stream, or the connection is dead */
    rpc__task_t end_task;

    /* trailers for the data provider's EOF */
    int t_status;
    char *t_msg;
};

struct sconn {
    rpc__conn_t h; /* first */
    rpc_server_t *srv;
    sconn_t *prev, *next;
    rpc_scall_t *calls;
    size_t ncalls;
    int is_tls;
};

struct rpc_server {
    uv_loop_t *loop;
    rpc_server_opts_t o;
    nghttp2_session_callbacks *cbs;
    method_t *methods;
    rx_listener_t *l;
    int listener_open;
    int port;
    sconn_t *conns;
    size_t nconns;
    rpc__sched_t sched;
    rpc__timers_t tm;
    int closing, finalizing, parts;
    void (*on_closed)(void *ud);
    void *closed_ud;
};

static void server_maybe_free(rpc_server_t *s);
static void call_maybe_free(rpc_scall_t *c);

void rpc_server_opts_init(rpc_server_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    rx_stream_opts_init(&o->stream);
}

/* ------------------------------------------------------------------------------------------- */
/* Calls                                                                                        */

static void end_task(rpc__task_t *t)
{
    rpc_scall_t *c = container_of(t, rpc_scall_t, end_task);
    if (c->accepted && c->cb.on_end)
        c->cb.on_end(c, c->end_status, c->ud);
    c->end_ran = 1;
    call_maybe_free(c);
}

/* The call is over for the user: on_end(status) follows from the loop (accepted calls only). */
static void call_end(rpc_scall_t *c, int status)
{
    if (c->ended)
        return;
    c->ended = 1;
    c->end_status = status;
    rpc__timers_remove(&c->k->srv->tm, &c->dl);
    rpc__sched_post(&c->k->srv->sched, &c->end_task, end_task);
}

static void call_free(rpc_scall_t *c)
{
    sconn_t *k = c->k;
    if (c->prev)
        c->prev->next = c->next;
    else
        k->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    k->ncalls--;
    rpc__timers_remove(&k->srv->tm, &c->dl);
    rpc__sched_cancel(&k->srv->sched, &c->end_task);
    rpc_deframer_fini(&c->df);
    rpc__out_free(&c->out);
    free(c->path);
    free(c->hbuf);
    free(c->t_msg);
    free(c);
    if (k->h.dead && k->ncalls == 0)
        rpc__conn_close(&k->h);
}

static void call_maybe_free(rpc_scall_t *c)
{
    if (c->in_handler || !c->h2_done || c->end_task.queued || (c->ended && !c->end_ran))
        return;
    if (c->accepted && !c->ended)
        return; /* cannot happen: accepted calls end before or when their stream goes */
    call_free(c);
}

static int add_header(rpc_scall_t *c, const uint8_t *n, size_t nl, const uint8_t *v, size_t vl)
{
    size_t need = nl + vl + 2;
    if (c->hlen + need > HDR_MAX) {
        c->hdr_too_big = 1;
        return 0;
    }
    if (c->hlen + need > c->hcap) {
        size_t cap = c->hcap ? c->hcap : 512;
        while (cap < c->hlen + need)
            cap *= 2;
        char *b = realloc(c->hbuf, cap);
        if (!b)
            return -1;
        c->hbuf = b;
        c->hcap = cap;
    }
    memcpy(c->hbuf + c->hlen, n, nl);
    c->hbuf[c->hlen + nl] = '\0';
    memcpy(c->hbuf + c->hlen + nl + 1, v, vl);
    c->hbuf[c->hlen + nl + 1 + vl] = '\0';
    c->hlen += need;
    return 0;
}

#define MKNV(N, V, VL)                                                                             \
    ((nghttp2_nv){(uint8_t *)(N), (uint8_t *)(V), sizeof(N) - 1, (VL),                             \
                  NGHTTP2_NV_FLAG_NO_COPY_NAME})

/* grpc-status / grpc-message entries; enc receives the encoded message (caller frees). */
static size_t status_nv(nghttp2_nv *nv, char *code, int status, const char *msg, char **enc)
{
    size_t n = 0;
    int cl = snprintf(code, 16, "%d", status);
    nv[n++] = MKNV("grpc-status", code, (size_t)cl);
    *enc = NULL;
    if (msg && msg[0]) {
        size_t ml = strlen(msg);
        size_t el = rpc_message_encoded_len(msg, ml);
        char *e = malloc(el + 1);
        if (e && rpc_message_encode(e, el + 1, &el, msg, ml) == 0) {
            nv[n++] = MKNV("grpc-message", e, el);
            *enc = e;
        } else {
            free(e);
        }
    }
    return n;
}

static void on_out_eof(rpc__out_t *o, nghttp2_session *ng, int32_t sid, uint32_t *flags)
{
    rpc_scall_t *c = (rpc_scall_t *)(void *)o;
    *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    nghttp2_nv nv[2];
    char code[16];
    char *enc;
    size_t n = status_nv(nv, code, c->t_status, c->t_msg, &enc);
    nghttp2_submit_trailer(ng, sid, nv, n);
    free(enc);
}

/* Submits the end of the response: Trailers-Only when nothing was sent yet, else trailers after
 * the queued messages. end_status != 0: the call ends now with it (the server's own decision);
 * 0: it ends when the trailers are written. */
static int call_finish(rpc_scall_t *c, int status, const char *msg, int end_status,
                       uint32_t rst_code)
{
    rpc__conn_t *h = &c->k->h;
    if (c->finished || c->h2_done || h->dead)
        return RX_ESTATE;
    c->finished = 1;
    c->rst_code = rst_code;
    int rc = 0;
    if (!c->resp_sent) {
        c->resp_sent = 1;
        nghttp2_nv nv[4];
        nv[0] = MKNV(":status", "200", 3);
        nv[1] = MKNV("content-type", "application/grpc", 16);
        char code[16];
        char *enc;
        size_t n = 2 + status_nv(nv + 2, code, status, msg, &enc);
        rc = nghttp2_submit_response(h->ng, c->sid, nv, n, NULL);
        free(enc);
        rpc__conn_flush(h);
    } else {
        c->t_status = status;
        free(c->t_msg);
        c->t_msg = msg && msg[0] ? strdup(msg) : NULL;
        c->out.eof = 1;
        c->out.on_eof = on_out_eof;
        rpc__conn_resume(h, &c->out, c->sid);
    }
    if (end_status)
        call_end(c, end_status);
    return rc == 0 ? 0 : RX_ESTATE;
}

/* A non-gRPC refusal (wrong method or content-type): HTTP status plus grpc-status. */
static void call_refuse_http(rpc_scall_t *c, const char *http, int status, const char *msg)
{
    rpc__conn_t *h = &c->k->h;
    c->finished = 1;
    c->resp_sent = 1;
    c->rst_code = NGHTTP2_NO_ERROR;
    nghttp2_nv nv[3];
    nv[0] = MKNV(":status", http, 3);
    char code[16];
    char *enc;
    size_t n = 1 + status_nv(nv + 1, code, status, msg, &enc);
    nghttp2_submit_response(h->ng, c->sid, nv, n, NULL);
    free(enc);
    rpc__conn_flush(h);
}

static void deadline_fire(rpc__dl_t *n)
{
    rpc_scall_t *c = container_of(n, rpc_scall_t, dl);
    if (c->ended || c->h2_done)
        return;
    rx_log(RX_LOG_DEBUG, RPC__LOG, "server call %s from %s: deadline exceeded", c->path,
           c->k->h.peer);
    if (!c->finished) {
        rpc__out_drop_unsent(&c->out);
        call_finish(c, RPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded", RPC_EDEADLINE,
                    NGHTTP2_CANCEL);
    } else {
        /* trailers queued but not written (flow control): give up on them */
        call_end(c, RPC_EDEADLINE);
        nghttp2_submit_rst_stream(c->k->h.ng, NGHTTP2_FLAG_NONE, c->sid, NGHTTP2_CANCEL);
        rpc__conn_flush(&c->k->h);
    }
}

static int df_message(void *ud, const uint8_t *msg, size_t len, int compressed)
{
    (void)compressed;
    rpc_scall_t *c = ud;
    if (c->ended || c->finished || c->k->h.dead)
        return 0;
    if (c->cb.on_message)
        c->cb.on_message(c, msg, len, c->ud);
    return 0;
}

/* A deframer failure: the server ends the call. */
static void call_bad_input(rpc_scall_t *c, int rc)
{
    const char *d = rpc_deframer_error_detail(&c->df);
    if (!d || !d[0])
        d = rpc_strerror(rc);
    int st, end;
    switch (rc) {
    case RPC_ETOOBIG:
        st = RPC_STATUS_RESOURCE_EXHAUSTED;
        end = RPC_ETOOBIG;
        break;
    case RPC_ECOMPRESSED:
        st = RPC_STATUS_UNIMPLEMENTED;
        end = RPC_EPROTOCOL;
        break;
    case -ENOMEM:
        st = RPC_STATUS_RESOURCE_EXHAUSTED;
        end = -ENOMEM;
        break;
    default:
        st = RPC_STATUS_INTERNAL;
        end = RPC_EPROTOCOL;
        break;
    }
    rx_log(RX_LOG_DEBUG, RPC__LOG, "server call %s from %s: %s", c->path, c->k->h.peer, d);
    rpc__out_drop_unsent(&c->out);
    if (call_finish(c, st, d, end, NGHTTP2_NO_ERROR) < 0)
        call_end(c, end);
}

/* ------------------------------------------------------------------------------------------- */
/* nghttp2 callbacks (user data: the sconn)                                                     */

static int cb_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    sconn_t *k = ud;
    if (k->h.dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    rpc_scall_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    c->k = k;
    c->sid = f->hd.stream_id;
    c->next = k->calls;
    if (k->calls)
        k->calls->prev = c;
    k->calls = c;
    k->ncalls++;
    nghttp2_session_set_stream_user_data(ng, c->sid, c);
    return 0;
}

static int cb_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)flags;
    sconn_t *k = ud;
    if (k->h.dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    rpc_scall_t *c = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!c || c->handled)
        return 0;
    if (nl > 0 && name[0] == ':') {
        if (nl == 7 && memcmp(name, ":method", 7) == 0) {
            c->is_post = vl == 4 && memcmp(value, "POST", 4) == 0;
        } else if (nl == 5 && memcmp(name, ":path", 5) == 0 && !c->path) {
            c->path = malloc(vl + 1);
            if (!c->path)
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            memcpy(c->path, value, vl);
            c->path[vl] = '\0';
        }
        return 0;
    }
    if (nl == 12 && memcmp(name, "content-type", 12) == 0) {
        c->ct_ok = rpc_content_type_ok((const char *)value, vl);
    } else if (nl == 12 && memcmp(name, "grpc-timeout", 12) == 0) {
        uint64_t ns;
        if (rpc_timeout_parse((const char *)value, vl, &ns) == 0) {
            c->timeout_ns = ns;
            uint64_t now = uv_hrtime();
            c->deadline = ns > UINT64_MAX - now ? UINT64_MAX : now + ns;
        } else {
            c->bad_timeout = 1;
        }
    }
    if (add_header(c, name, nl, value, vl) < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static const method_t *find_method(const rpc_server_t *s, const char *path)
{
    for (const method_t *m = s->methods; m; m = m->next)
        if (strcmp(m->path, path) == 0)
            return m;
    return NULL;
}

/* The request's headers are complete: check them and run the handler. */
static void request_ready(sconn_t *k, rpc_scall_t *c)
{
    rpc_server_t *s = k->srv;
    c->handled = 1;
    const method_t *m = NULL;
    char d[300];
    if (!c->is_post) {
        call_refuse_http(c, "405", RPC_STATUS_INTERNAL, "gRPC requires POST");
    } else if (!c->ct_ok) {
        const char *ct = rpc_scall_header(c, "content-type");
        snprintf(d, sizeof(d), "invalid gRPC request content-type '%s'", ct ? ct : "");
        call_refuse_http(c, "415", RPC_STATUS_INTERNAL, d);
    } else if (!c->path) {
        call_finish(c, RPC_STATUS_INTERNAL, "no :path", 0, NGHTTP2_NO_ERROR);
    } else if (c->hdr_too_big) {
        call_finish(c, RPC_STATUS_RESOURCE_EXHAUSTED, "request metadata too large", 0,
                    NGHTTP2_NO_ERROR);
    } else if (c->bad_timeout) {
        snprintf(d, sizeof(d), "malformed grpc-timeout '%s'", rpc_scall_header(c, "grpc-timeout"));
        call_finish(c, RPC_STATUS_INTERNAL, d, 0, NGHTTP2_NO_ERROR);
    } else if (s->closing) {
        call_finish(c, RPC_STATUS_UNAVAILABLE, "server shutting down", 0, NGHTTP2_NO_ERROR);
    } else if (!(m = find_method(s, c->path))) {
        snprintf(d, sizeof(d), "unknown method %.250s", c->path);
        call_finish(c, RPC_STATUS_UNIMPLEMENTED, d, 0, NGHTTP2_NO_ERROR);
    }
    if (!m)
        return;
    rpc_deframer_init(&c->df, s->o.max_message, 0, df_message, c);
    c->in_handler = 1;
    m->fn(c, m->ud);
    c->in_handler = 0;
    if (!c->accepted && !c->finished && !c->ended)
        call_finish(c, RPC_STATUS_INTERNAL, "the handler neither accepted nor finished the call", 0,
                    NGHTTP2_NO_ERROR);
    if (c->accepted && !c->ended && !c->finished && c->deadline)
        rpc__timers_add(&s->tm, &c->dl, c->deadline, deadline_fire);
    call_maybe_free(c);
}

static void remote_end(rpc_scall_t *c)
{
    if (c->half_closed)
        return;
    c->half_closed = 1;
    if (!c->accepted || c->ended || c->finished || c->k->h.dead)
        return;
    int rc = rpc_deframer_finish(&c->df);
    if (rc < 0) {
        call_bad_input(c, rc);
        return;
    }
    if (c->cb.on_half_close)
        c->cb.on_half_close(c, c->ud);
}

static int cb_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    sconn_t *k = ud;
    if (k->h.dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    rpc_scall_t *c =
        f->hd.stream_id ? nghttp2_session_get_stream_user_data(ng, f->hd.stream_id) : NULL;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        if (!c)
            return 0;
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST && !c->handled)
            request_ready(k, c);
        if ((f->hd.flags & NGHTTP2_FLAG_END_STREAM) && !k->h.dead)
            remote_end(c);
        break;
    case NGHTTP2_DATA:
        if (c && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
            remote_end(c);
        break;
    case NGHTTP2_RST_STREAM:
        if (c) {
            c->peer_rst = 1;
            if (f->rst_stream.error_code == NGHTTP2_CANCEL && c->deadline) {
                uint64_t slack = c->timeout_ns / 4;
                if (slack > DEADLINE_SLACK_MAX)
                    slack = DEADLINE_SLACK_MAX;
                if (uv_hrtime() + slack >= c->deadline)
                    c->rst_deadline = 1;
            }
        }
        break;
    case NGHTTP2_GOAWAY:
        rx_log(RX_LOG_DEBUG, RPC__LOG, "server connection %s: client sent GOAWAY (%s)", k->h.peer,
               nghttp2_http2_strerror(f->goaway.error_code));
        break;
    default:
        break;
    }
    return 0;
}

static int cb_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *data,
                         size_t len, void *ud)
{
    (void)flags;
    sconn_t *k = ud;
    if (k->h.dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    rpc_scall_t *c = nghttp2_session_get_stream_user_data(ng, sid);
    if (!c || !c->accepted || c->ended || c->finished)
        return 0;
    int rc = rpc_deframer_feed(&c->df, data, len);
    if (rc < 0 && !c->ended && !c->finished && !k->h.dead)
        call_bad_input(c, rc);
    return 0;
}

static int cb_stream_close(nghttp2_session *ng, int32_t sid, uint32_t code, void *ud)
{
    sconn_t *k = ud;
    if (k->h.dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    rpc_scall_t *c = nghttp2_session_get_stream_user_data(ng, sid);
    if (!c)
        return 0;
    nghttp2_session_set_stream_user_data(ng, sid, NULL);
    c->h2_done = 1;
    if (!c->ended && c->accepted) {
        int st;
        if (c->rst_deadline)
            st = RPC_EDEADLINE;
        else if (c->peer_rst)
            st = RPC_ECANCELLED;
        else if (c->finished && code == NGHTTP2_NO_ERROR)
            st = 0;
        else
            st = RPC_EPROTOCOL;
        rx_log(RX_LOG_DEBUG, RPC__LOG, "server call %s from %s: stream closed (%s): %s", c->path,
               k->h.peer, nghttp2_http2_strerror(code), st ? rpc_strerror(st) : "ok");
        call_end(c, st);
    }
    call_maybe_free(c);
    return 0;
}

static int cb_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    sconn_t *k = ud;
    if (k->h.dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        if (f->goaway.error_code != NGHTTP2_NO_ERROR)
            k->h.term_err = RPC_EPROTOCOL;
        return 0;
    }
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    rpc_scall_t *c = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!c || !c->finished)
        return 0;
    /* our END_STREAM is out: a client still sending is told to stop, as gRPC servers do */
    if (!c->half_closed)
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, c->sid, c->rst_code);
    if (!c->ended)
        call_end(c, 0);
    return 0;
}

static int cb_error(nghttp2_session *ng, int code, const char *msg, size_t len, void *ud)
{
    (void)ng;
    sconn_t *k = ud;
    rx_log(RX_LOG_DEBUG, RPC__LOG, "server connection %s: nghttp2: %.*s (%d)", k->h.peer, (int)len,
           msg, code);
    return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* Connections                                                                                  */

static void sconn_on_fail(rpc__conn_t *h, int err, const char *detail)
{
    (void)detail;
    sconn_t *k = (sconn_t *)(void *)h;
    for (rpc_scall_t *c = k->calls; c; c = c->next) {
        c->h2_done = 1;
        if (!c->ended)
            call_end(c, err);
    }
    /* Calls past on_end whose stream was still open (trailers held back by flow control, say)
     * go now; the others are freed from their end tasks. The last one closes the stream. */
    for (rpc_scall_t *c = k->calls, *nx; c; c = nx) {
        nx = c->next;
        call_maybe_free(c);
    }
    if (k->ncalls == 0)
        rpc__conn_close(h);
}

static void sconn_on_closed(rpc__conn_t *h)
{
    sconn_t *k = (sconn_t *)(void *)h;
    rpc_server_t *s = k->srv;
    if (h->ng)
        nghttp2_session_del(h->ng);
    if (k->prev)
        k->prev->next = k->next;
    else
        s->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    s->nconns--;
    free(k);
    server_maybe_free(s);
}

static const rpc__conn_ops_t sconn_ops = {sconn_on_fail, sconn_on_closed};

static void on_accept(rx_listener_t *l, rx_stream_t *st, int status, void *ud)
{
    (void)l;
    rpc_server_t *s = ud;
    if (status < 0) {
        rx_log(RX_LOG_DEBUG, RPC__LOG, "accept failed: %s (%s)", rx_strerror(status),
               rx_listener_error_detail(l));
        return;
    }
    if (s->closing) {
        rx_stream_close(st, NULL);
        return;
    }
    sconn_t *k = calloc(1, sizeof(*k));
    if (!k) {
        rx_stream_close(st, NULL);
        return;
    }
    k->srv = s;
    k->is_tls = rx_stream_is_tls(st);
    rpc__conn_init(&k->h, s->loop, st, &s->sched, &sconn_ops, "server", s->o.keepalive_interval_ns,
                   s->o.keepalive_timeout_ns);
    snprintf(k->h.peer, sizeof(k->h.peer), "%s", rx_stream_peer(st));
    rx_stream_set_ud(st, &k->h);
    k->next = s->conns;
    if (s->conns)
        s->conns->prev = k;
    s->conns = k;
    s->nconns++;
    rx_log(RX_LOG_DEBUG, RPC__LOG, "server connection from %s%s", k->h.peer,
           k->is_tls ? " (TLS)" : "");

    const char *alpn = rx_stream_alpn(st);
    if (k->is_tls && alpn && strcmp(alpn, "h2") != 0) {
        char d[120];
        snprintf(d, sizeof(d), "client selected ALPN '%s', not h2", alpn);
        rpc__conn_fail(&k->h, RPC_ENOH2, d);
        return;
    }
    nghttp2_session *ng = NULL;
    nghttp2_option *opt = NULL;
    int rc = nghttp2_option_new(&opt);
    if (rc == 0) {
        /* the peer's SETTINGS may arrive after its first requests: no cap assumed before */
        rc = nghttp2_session_server_new2(&ng, s->cbs, k, opt);
        nghttp2_option_del(opt);
    }
    if (rc == 0)
        rc = rpc__session_settings(ng, 1, s->o.max_concurrent_streams);
    if (rc == 0) {
        rc = rpc__conn_start(&k->h, ng);
    } else if (ng) {
        k->h.ng = ng; /* freed in sconn_on_closed */
    }
    if (rc != 0)
        rpc__conn_fail(&k->h, -ENOMEM, "cannot start the HTTP/2 session");
}

/* ------------------------------------------------------------------------------------------- */
/* Server                                                                                       */

int rpc_server_create(uv_loop_t *loop, const rpc_server_opts_t *o, rpc_server_t **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!loop)
        return -EINVAL;
    rpc_server_t *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    if (o)
        s->o = *o;
    else
        rpc_server_opts_init(&s->o);
    if (!s->o.max_message)
        s->o.max_message = RPC_DEFAULT_MAX_MESSAGE;
    if (!s->o.max_concurrent_streams)
        s->o.max_concurrent_streams = 100;
    s->loop = loop;
    if (nghttp2_session_callbacks_new(&s->cbs) != 0) {
        free(s);
        return -ENOMEM;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(s->cbs, cb_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(s->cbs, cb_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(s->cbs, cb_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(s->cbs, cb_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(s->cbs, cb_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(s->cbs, cb_frame_send);
    nghttp2_session_callbacks_set_error_callback2(s->cbs, cb_error);
    rpc__sched_init(loop, &s->sched);
    rpc__timers_init(loop, &s->tm);
    *out = s;
    return 0;
}

int rpc_server_add_method(rpc_server_t *s, const char *path, rpc_handler_fn fn, void *ud)
{
    if (!s || !path || path[0] != '/' || !fn)
        return -EINVAL;
    if (find_method(s, path))
        return -EEXIST;
    size_t l = strlen(path);
    method_t *m = malloc(sizeof(*m) + l + 1);
    if (!m)
        return -ENOMEM;
    memcpy(m->path, path, l + 1);
    m->fn = fn;
    m->ud = ud;
    m->next = s->methods;
    s->methods = m;
    return 0;
}

int rpc_server_listen(rpc_server_t *s, const char *host, int port, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!s || !host)
        return -EINVAL;
    if (s->l || s->closing) {
        if (err && errlen)
            snprintf(err, errlen, "the server is already listening or closing");
        return RX_ESTATE;
    }
    int rc = rx_listen(s->loop, host, port, &s->o.stream, 0, on_accept, s, &s->l, err, errlen);
    if (rc < 0)
        return rc;
    s->listener_open = 1;
    s->port = rx_listener_port(s->l);
    rx_log(RX_LOG_DEBUG, RPC__LOG, "gRPC server listening on %s port %d%s", host, s->port,
           s->o.stream.tls ? " (TLS)" : "");
    return 0;
}

int rpc_server_port(const rpc_server_t *s)
{
    return s ? s->port : 0;
}

size_t rpc_server_connections(const rpc_server_t *s)
{
    size_t n = 0;
    if (!s)
        return 0;
    for (const sconn_t *k = s->conns; k; k = k->next)
        if (!k->h.dead)
            n++;
    return n;
}

static void server_final(rpc_server_t *s)
{
    void (*cb)(void *) = s->on_closed;
    void *ud = s->closed_ud;
    while (s->methods) {
        method_t *m = s->methods;
        s->methods = m->next;
        free(m);
    }
    nghttp2_session_callbacks_del(s->cbs);
    free(s);
    if (cb)
        cb(ud);
}

static void sched_closed(rpc__sched_t *sc)
{
    rpc_server_t *s = container_of(sc, rpc_server_t, sched);
    if (--s->parts == 0)
        server_final(s);
}

static void timers_closed(rpc__timers_t *t)
{
    rpc_server_t *s = container_of(t, rpc_server_t, tm);
    if (--s->parts == 0)
        server_final(s);
}

static void server_maybe_free(rpc_server_t *s)
{
    if (!s->closing || s->finalizing || s->listener_open || s->nconns > 0)
        return;
    s->finalizing = 1;
    s->parts = 2;
    rpc__sched_close(&s->sched, sched_closed);
    rpc__timers_close(&s->tm, timers_closed);
}

static void listener_closed(rx_listener_t *l, void *ud)
{
    (void)l;
    rpc_server_t *s = ud;
    s->listener_open = 0;
    server_maybe_free(s);
}

void rpc_server_close(rpc_server_t *s, void (*on_closed)(void *ud), void *ud)
{
    if (!s || s->closing)
        return;
    s->closing = 1;
    s->on_closed = on_closed;
    s->closed_ud = ud;
    rx_log(RX_LOG_DEBUG, RPC__LOG, "gRPC server closing (%zu connections)", s->nconns);
    if (s->l) {
        rx_listener_close(s->l, listener_closed);
        s->l = NULL;
    }
    for (sconn_t *k = s->conns, *nx; k; k = nx) {
        nx = k->next;
        rpc__conn_goaway(&k->h, NGHTTP2_NO_ERROR);
        rpc__conn_fail(&k->h, RPC_ESHUTDOWN, "server shutting down");
    }
    if (s->nconns == 0 && !s->listener_open) {
        /* nothing asynchronous left but our own handles: their close callbacks give "later" */
        server_maybe_free(s);
    }
}

/* ------------------------------------------------------------------------------------------- */
/* Call API                                                                                     */

void rpc_scall_accept(rpc_scall_t *c, const rpc_scall_cb_t *cb, void *ud)
{
    if (!c || !c->in_handler || c->accepted || c->finished)
        return;
    c->accepted = 1;
    if (cb)
        c->cb = *cb;
    c->ud = ud;
}

const char *rpc_scall_path(const rpc_scall_t *c)
{
    return c && c->path ? c->path : "";
}

const char *rpc_scall_header(const rpc_scall_t *c, const char *name)
{
    if (!c || !name || !c->hbuf)
        return NULL;
    size_t off = 0;
    while (off < c->hlen) {
        const char *n = c->hbuf + off;
        size_t nl = strlen(n);
        const char *v = n + nl + 1;
        size_t vl = strlen(v);
        if (strcmp(n, name) == 0)
            return v;
        off += nl + vl + 2;
    }
    return NULL;
}

const char *rpc_scall_peer(const rpc_scall_t *c)
{
    return c ? c->k->h.peer : "";
}

int rpc_scall_is_tls(const rpc_scall_t *c)
{
    return c ? c->k->is_tls : 0;
}

uint64_t rpc_scall_deadline(const rpc_scall_t *c)
{
    return c ? c->deadline : 0;
}

rx_stream_t *rpc_scall_stream(const rpc_scall_t *c)
{
    return c ? c->k->h.s : NULL;
}

int rpc_scall_send(rpc_scall_t *c, const uint8_t *msg, size_t len)
{
    if (!c || (!msg && len))
        return RX_EINVAL;
    rpc__conn_t *h = &c->k->h;
    if (c->finished || c->ended || c->h2_done || h->dead)
        return RX_ESTATE;
    if (len > UINT32_MAX)
        return -EMSGSIZE;
    int rc = rpc__out_push(&c->out, msg, len);
    if (rc < 0)
        return rc == -ENOMEM ? RX_ENOMEM : rc;
    if (!c->resp_sent) {
        nghttp2_nv nv[2];
        nv[0] = MKNV(":status", "200", 3);
        nv[1] = MKNV("content-type", "application/grpc", 16);
        nghttp2_data_provider prd;
        prd.source.ptr = &c->out;
        prd.read_callback = rpc__out_read;
        rc = nghttp2_submit_response(h->ng, c->sid, nv, 2, &prd);
        if (rc != 0)
            return rc == NGHTTP2_ERR_NOMEM ? RX_ENOMEM : RX_ESTATE;
        c->resp_sent = 1;
        rpc__conn_flush(h);
    } else {
        rpc__conn_resume(h, &c->out, c->sid);
    }
    return 0;
}

size_t rpc_scall_pending(const rpc_scall_t *c)
{
    return c ? c->out.pending : 0;
}

int rpc_scall_finish(rpc_scall_t *c, rpc_status_t status, const char *message)
{
    if (!c)
        return RX_EINVAL;
    if (c->finished || c->ended)
        return RX_ESTATE;
    return call_finish(c, (int)status, message, 0, NGHTTP2_NO_ERROR);
}
