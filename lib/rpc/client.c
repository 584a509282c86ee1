/* client.c — the gRPC client (rpc/client.h): one nghttp2 client session on one rx_stream.
 *
 * Calls wait in the channel's queue until the connection is up and the server's first SETTINGS
 * arrived (so its SETTINGS_MAX_CONCURRENT_STREAMS is known and nothing is refused for going over
 * it), then become streams while fewer than that many are open. A call's memory goes when its
 * on_done ran and nghttp2 no longer knows its stream (closed, or the connection dead), so stream
 * user data and data providers never dangle.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/client.h"
#include "rpc/err.h"
#include "rpc/grpc.h"
#include "rpc_internal.h"
#include "rx/err.h"
#include "rx/log.h"

#ifndef SAI3_VERSION
#define SAI3_VERSION "0.1.0"
#endif

#define container_of(p, T, m) ((T *)(void *)((char *)(p)-offsetof(T, m)))

#define MAX_MD 64

enum ch_state { CH_CONNECTING, CH_READY, CH_FAILED };

struct rpc_ccall {
    rpc__out_t out; /* first: the data provider's source */
    rpc_channel_t *ch;
    rpc_ccall_t *prev, *next; /* all calls of the channel */
    rpc_ccall_t *wnext;       /* waiting queue */
    int waiting;

    /* request: path and metadata, "name\0value\0" after the path */
    char *req;
    size_t nmd;
    uint64_t deadline;
    rpc__dl_t dl;
    int32_t sid;
    int h2_open;

    /* response */
    int http_status;
    int resp_done; /* final response HEADERS complete */
    int ct_seen, ct_ok;
    char ct[64];
    int grpc_status; /* -1 = none */
    int bad_status;
    char *grpc_msg; /* raw (encoded) */
    size_t grpc_msg_len;
    rpc_deframer_t df;

    /* completion */
    int done, done_ran;
    rpc_status_t status;
    char *msg;
    rpc__task_t done_task;

    rpc_ccall_cb_t cb;
    void *ud;
};

struct rpc_channel {
    rpc__conn_t h; /* first */
    uv_loop_t *loop;
    char *authority, *user_agent;
    int tls;
    size_t max_message;
    nghttp2_session_callbacks *cbs;
    enum ch_state state;
    int closing, settings_seen, goaway, conn_closed, finalizing, parts;
    rpc_channel_cb cb;
    void *ud;
    int cb_ok_pending, cb_fail_pending, fail_err;
    rpc__task_t cb_task, dispatch_task;
    rpc_ccall_t *calls;
    size_t ncalls;
    rpc_ccall_t *wq_head, *wq_tail;
    uint32_t nstreams;
    rpc__sched_t sched;
    rpc__timers_t tm;
    char detail[256];
    void (*on_closed)(void *ud);
    void *closed_ud;
};

static void ch_maybe_free(rpc_channel_t *ch);
static void call_maybe_free(rpc_ccall_t *c);

static const char *const h2_alpn[] = {"h2", NULL};

void rpc_channel_opts_init(rpc_channel_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    rx_stream_opts_init(&o->stream);
}

/* ------------------------------------------------------------------------------------------- */
/* Calls                                                                                        */

static void done_task(rpc__task_t *t)
{
    rpc_ccall_t *c = container_of(t, rpc_ccall_t, done_task);
    c->cb.on_done(c, c->status, c->msg ? c->msg : "", c->ud);
    c->done_ran = 1;
    call_maybe_free(c);
}

static void wq_remove(rpc_channel_t *ch, rpc_ccall_t *c)
{
    if (!c->waiting)
        return;
    rpc_ccall_t **pp = &ch->wq_head, *prev = NULL;
    while (*pp && *pp != c) {
        prev = *pp;
        pp = &(*pp)->wnext;
    }
    if (*pp) {
        *pp = c->wnext;
        if (ch->wq_tail == c)
            ch->wq_tail = prev;
    }
    c->wnext = NULL;
    c->waiting = 0;
}

/* The call is over: on_done follows from the loop. msg is copied. */
static void call_done(rpc_ccall_t *c, rpc_status_t status, const char *msg)
{
    if (c->done)
        return;
    rpc_channel_t *ch = c->ch;
    c->done = 1;
    c->status = status;
    c->msg = strdup(msg ? msg : "");
    wq_remove(ch, c);
    rpc__timers_remove(&ch->tm, &c->dl);
    rpc__sched_post(&ch->sched, &c->done_task, done_task);
}

/* Ends the call and resets its stream (when it has one). */
static void call_abort(rpc_ccall_t *c, rpc_status_t status, const char *msg, uint32_t code)
{
    rpc_channel_t *ch = c->ch;
    if (c->done)
        return;
    if (c->h2_open && !ch->h.dead) {
        nghttp2_submit_rst_stream(ch->h.ng, NGHTTP2_FLAG_NONE, c->sid, code);
        rpc__conn_flush(&ch->h);
    }
    call_done(c, status, msg);
}

static void call_free(rpc_ccall_t *c)
{
    rpc_channel_t *ch = c->ch;
    if (c->prev)
        c->prev->next = c->next;
    else
        ch->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    ch->ncalls--;
    wq_remove(ch, c);
    rpc__timers_remove(&ch->tm, &c->dl);
    rpc__sched_cancel(&ch->sched, &c->done_task);
    rpc_deframer_fini(&c->df);
    rpc__out_free(&c->out);
    free(c->req);
    free(c->grpc_msg);
    free(c->msg);
    free(c);
    ch_maybe_free(ch);
}

static void call_maybe_free(rpc_ccall_t *c)
{
    if (!c->done_ran || c->h2_open || c->done_task.queued)
        return;
    call_free(c);
}

static void deadline_fire(rpc__dl_t *n)
{
    rpc_ccall_t *c = container_of(n, rpc_ccall_t, dl);
    call_abort(c, RPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded", NGHTTP2_CANCEL);
}

static int df_message(void *ud, const uint8_t *msg, size_t len, int compressed)
{
    (void)compressed;
    rpc_ccall_t *c = ud;
    if (c->done || c->ch->h.dead)
        return 0;
    if (c->cb.on_message)
        c->cb.on_message(c, msg, len, c->ud);
    return 0;
}

/* The server ended the stream (END_STREAM): the status from what it sent. */
static void call_complete(rpc_ccall_t *c)
{
    if (c->done)
        return;
    rpc_channel_t *ch = c->ch;
    int trunc = c->resp_done ? rpc_deframer_finish(&c->df) : 0;
    char buf[200];
    rpc_status_t st;
    const char *msg = "";
    char *dec = NULL;
    if (c->grpc_status >= 0) {
        st = c->grpc_status < RPC_STATUS_COUNT ? (rpc_status_t)c->grpc_status : RPC_STATUS_UNKNOWN;
        if (c->grpc_msg) {
            dec = malloc(c->grpc_msg_len + 1);
            size_t dl;
            if (dec && rpc_message_decode(dec, c->grpc_msg_len + 1, &dl, c->grpc_msg,
                                          c->grpc_msg_len) == 0)
                msg = dec;
        }
        if (st == RPC_STATUS_OK && trunc < 0) {
            st = RPC_STATUS_INTERNAL;
            msg = "stream ended inside a message";
        }
    } else if (c->bad_status) {
        st = RPC_STATUS_INTERNAL;
        msg = "malformed grpc-status";
    } else if (c->http_status != 200) {
        st = rpc_status_from_http(c->http_status);
        snprintf(buf, sizeof(buf), "HTTP status %d without grpc-status", c->http_status);
        msg = buf;
    } else if (c->ct_seen && !c->ct_ok) {
        st = RPC_STATUS_UNKNOWN;
        snprintf(buf, sizeof(buf), "unexpected content-type '%s'", c->ct);
        msg = buf;
    } else {
        st = RPC_STATUS_INTERNAL;
        msg = "missing grpc-status";
    }
    call_done(c, st, msg);
    free(dec);
    /* still sending: stop, as gRPC clients do */
    if (c->h2_open && nghttp2_session_get_stream_local_close(ch->h.ng, c->sid) == 0) {
        nghttp2_submit_rst_stream(ch->h.ng, NGHTTP2_FLAG_NONE, c->sid, NGHTTP2_NO_ERROR);
        rpc__conn_flush(&ch->h);
    }
}

/* ------------------------------------------------------------------------------------------- */
/* Channel state                                                                                */

static void cb_task(rpc__task_t *t)
{
    rpc_channel_t *ch = container_of(t, rpc_channel_t, cb_task);
    if (ch->closing)
        return;
    if (ch->cb_ok_pending) {
        ch->cb_ok_pending = 0;
        if (ch->cb)
            ch->cb(ch, 0, ch->ud);
        if (ch->closing)
            return;
    }
    if (ch->cb_fail_pending) {
        ch->cb_fail_pending = 0;
        if (ch->cb)
            ch->cb(ch, ch->fail_err, ch->ud);
    }
}

/* The channel can take no more calls: reported once; waiting calls end. */
static void ch_report_fail(rpc_channel_t *ch, int err, const char *detail)
{
    if (ch->state == CH_FAILED)
        return;
    ch->state = CH_FAILED;
    ch->fail_err = err;
    snprintf(ch->detail, sizeof(ch->detail), "%s",
             detail && detail[0] ? detail : rpc_strerror(err));
    if (!ch->closing) {
        ch->cb_fail_pending = 1;
        rpc__sched_post(&ch->sched, &ch->cb_task, cb_task);
    }
    while (ch->wq_head)
        call_done(ch->wq_head, RPC_STATUS_UNAVAILABLE, ch->detail);
}

static void ch_on_fail(rpc__conn_t *h, int err, const char *detail)
{
    rpc_channel_t *ch = (rpc_channel_t *)(void *)h;
    ch_report_fail(ch, err, detail);
    const char *d = detail && detail[0] ? detail : rpc_strerror(err);
    for (rpc_ccall_t *c = ch->calls; c; c = c->next) {
        c->h2_open = 0;
        call_done(c, RPC_STATUS_UNAVAILABLE, d);
    }
    ch->nstreams = 0;
    rpc__conn_close(h);
    /* calls already past on_done (zombie streams) can go now */
    for (rpc_ccall_t *c = ch->calls, *nx; c; c = nx) {
        nx = c->next;
        call_maybe_free(c);
    }
}

static void ch_on_closed(rpc__conn_t *h)
{
    rpc_channel_t *ch = (rpc_channel_t *)(void *)h;
    if (h->ng) {
        nghttp2_session_del(h->ng);
        h->ng = NULL;
    }
    ch->conn_closed = 1;
    ch_maybe_free(ch);
}

static const rpc__conn_ops_t ch_ops = {ch_on_fail, ch_on_closed};

static void add_nv(nghttp2_nv *nv, size_t *n, const char *name, const char *value, size_t vl)
{
    nv[*n] = (nghttp2_nv){(uint8_t *)(uintptr_t)name, (uint8_t *)(uintptr_t)value, strlen(name), vl,
                          NGHTTP2_NV_FLAG_NONE};
    (*n)++;
}

static void call_submit(rpc_channel_t *ch, rpc_ccall_t *c)
{
    nghttp2_nv nv[8 + MAX_MD];
    size_t n = 0;
    char tmo[16];
    add_nv(nv, &n, ":method", "POST", 4);
    add_nv(nv, &n, ":scheme", ch->tls ? "https" : "http", ch->tls ? 5 : 4);
    add_nv(nv, &n, ":path", c->req, strlen(c->req));
    add_nv(nv, &n, ":authority", ch->authority, strlen(ch->authority));
    add_nv(nv, &n, "te", "trailers", 8);
    add_nv(nv, &n, "content-type", "application/grpc", 16);
    add_nv(nv, &n, "user-agent", ch->user_agent, strlen(ch->user_agent));
    if (c->deadline) {
        uint64_t now = uv_hrtime();
        uint64_t left = c->deadline > now ? c->deadline - now : 1;
        int tl = rpc_timeout_format(left, tmo);
        add_nv(nv, &n, "grpc-timeout", tmo, (size_t)tl);
    }
    const char *p = c->req + strlen(c->req) + 1;
    for (size_t i = 0; i < c->nmd; i++) {
        const char *v = p + strlen(p) + 1;
        add_nv(nv, &n, p, v, strlen(v));
        p = v + strlen(v) + 1;
    }
    nghttp2_data_provider prd;
    prd.source.ptr = &c->out;
    prd.read_callback = rpc__out_read;
    int32_t sid = nghttp2_submit_request(ch->h.ng, NULL, nv, n, &prd, c);
    if (sid < 0) {
        char d[160];
        snprintf(d, sizeof(d), "cannot start an HTTP/2 stream: %s", nghttp2_strerror(sid));
        call_done(c, RPC_STATUS_UNAVAILABLE, d);
        return;
    }
    c->sid = sid;
    c->h2_open = 1;
    ch->nstreams++;
}

static void dispatch_task(rpc__task_t *t)
{
    rpc_channel_t *ch = container_of(t, rpc_channel_t, dispatch_task);
    if (ch->closing || ch->state != CH_READY || !ch->settings_seen || ch->h.dead)
        return;
    uint32_t max =
        nghttp2_session_get_remote_settings(ch->h.ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    int sent = 0;
    while (ch->wq_head && ch->nstreams < max) {
        rpc_ccall_t *c = ch->wq_head;
        wq_remove(ch, c);
        call_submit(ch, c);
        sent = 1;
    }
    if (sent)
        rpc__conn_flush(&ch->h);
}

static void ch_dispatch(rpc_channel_t *ch)
{
    if (ch->wq_head)
        rpc__sched_post(&ch->sched, &ch->dispatch_task, dispatch_task);
}

/* ------------------------------------------------------------------------------------------- */
/* nghttp2 callbacks (user data: the channel)                                                   */

static int cb_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    (void)flags;
    rpc_channel_t *ch = ud;
    if (ch->h.dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    rpc_ccall_t *c = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!c || c->done)
        return 0;
    if (nl == 7 && memcmp(name, ":status", 7) == 0) {
        int code = 0;
        for (size_t i = 0; i < vl && i < 3; i++)
            code = code * 10 + (value[i] - '0');
        c->http_status = vl == 3 ? code : 0;
    } else if (nl == 12 && memcmp(name, "content-type", 12) == 0) {
        c->ct_seen = 1;
        c->ct_ok = rpc_content_type_ok((const char *)value, vl);
        snprintf(c->ct, sizeof(c->ct), "%.*s", (int)(vl < 60 ? vl : 60), (const char *)value);
    } else if (nl == 11 && memcmp(name, "grpc-status", 11) == 0) {
        int code;
        if (rpc_status_parse((const char *)value, vl, &code) == 0) {
            c->grpc_status = code;
            c->bad_status = 0;
        } else {
            c->bad_status = 1;
        }
    } else if (nl == 12 && memcmp(name, "grpc-message", 12) == 0) {
        char *m = malloc(vl + 1);
        if (m) {
            memcpy(m, value, vl);
            m[vl] = '\0';
            free(c->grpc_msg);
            c->grpc_msg = m;
            c->grpc_msg_len = vl;
        }
    }
    return 0;
}

static int cb_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    rpc_channel_t *ch = ud;
    if (ch->h.dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    rpc_ccall_t *c =
        f->hd.stream_id ? nghttp2_session_get_stream_user_data(ng, f->hd.stream_id) : NULL;
    switch (f->hd.type) {
    case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK)) {
            ch->settings_seen = 1;
            ch_dispatch(ch);
        }
        break;
    case NGHTTP2_GOAWAY: {
        char d[200];
        size_t dl = f->goaway.opaque_data_len < 80 ? f->goaway.opaque_data_len : 80;
        snprintf(d, sizeof(d), "%s sent GOAWAY (%s)%s%.*s", ch->h.peer,
                 nghttp2_http2_strerror(f->goaway.error_code), dl ? ": " : "", (int)dl,
                 (const char *)f->goaway.opaque_data);
        rx_log(RX_LOG_DEBUG, RPC__LOG, "client: %s", d);
        ch->goaway = 1;
        ch_report_fail(ch, RPC_EGOAWAY, d);
        break;
    }
    case NGHTTP2_HEADERS:
        if (!c || c->done)
            break;
        if (f->headers.cat == NGHTTP2_HCAT_RESPONSE ||
            (f->headers.cat == NGHTTP2_HCAT_HEADERS && !c->resp_done)) {
            if (c->http_status >= 100 && c->http_status < 200)
                break; /* informational */
            c->resp_done = 1;
            if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
                call_complete(c); /* Trailers-Only */
            } else if (c->http_status != 200) {
                char d[80];
                snprintf(d, sizeof(d), "HTTP status %d", c->http_status);
                call_abort(c, rpc_status_from_http(c->http_status), d, NGHTTP2_CANCEL);
            } else if (!c->ct_ok) {
                char d[120];
                snprintf(d, sizeof(d), "unexpected content-type '%s'", c->ct);
                call_abort(c, RPC_STATUS_UNKNOWN, d, NGHTTP2_CANCEL);
            }
        } else if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            call_complete(c); /* trailers */
        }
        break;
    case NGHTTP2_DATA:
        if (c && !c->done && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
            call_complete(c);
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
    rpc_channel_t *ch = ud;
    if (ch->h.dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    rpc_ccall_t *c = nghttp2_session_get_stream_user_data(ng, sid);
    if (!c || c->done || !c->resp_done)
        return 0;
    int rc = rpc_deframer_feed(&c->df, data, len);
    if (rc < 0 && !c->done && !ch->h.dead) {
        const char *d = rpc_deframer_error_detail(&c->df);
        char buf[200];
        snprintf(buf, sizeof(buf), "%s", d && d[0] ? d : rpc_strerror(rc));
        call_abort(c, rc == RPC_ETOOBIG ? RPC_STATUS_RESOURCE_EXHAUSTED : RPC_STATUS_INTERNAL, buf,
                   NGHTTP2_CANCEL);
    }
    return 0;
}

static int cb_stream_close(nghttp2_session *ng, int32_t sid, uint32_t code, void *ud)
{
    rpc_channel_t *ch = ud;
    if (ch->h.dead)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    rpc_ccall_t *c = nghttp2_session_get_stream_user_data(ng, sid);
    if (!c)
        return 0;
    nghttp2_session_set_stream_user_data(ng, sid, NULL);
    c->h2_open = 0;
    ch->nstreams--;
    if (!c->done) {
        char d[120];
        if (code == NGHTTP2_REFUSED_STREAM) {
            snprintf(d, sizeof(d), "stream refused by the server (REFUSED_STREAM)");
            call_done(c, RPC_STATUS_UNAVAILABLE, d);
        } else if (code == NGHTTP2_NO_ERROR) {
            call_done(c, RPC_STATUS_INTERNAL, "stream closed by the server without a status");
        } else {
            snprintf(d, sizeof(d), "stream reset by the server (%s)", nghttp2_http2_strerror(code));
            call_done(c, RPC_STATUS_CANCELLED, d);
        }
    }
    ch_dispatch(ch);
    call_maybe_free(c);
    return 0;
}

static int cb_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
    (void)ng;
    rpc_channel_t *ch = ud;
    if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR)
        ch->h.term_err = RPC_EPROTOCOL;
    return 0;
}

static int cb_error(nghttp2_session *ng, int code, const char *msg, size_t len, void *ud)
{
    (void)ng;
    rpc_channel_t *ch = ud;
    rx_log(RX_LOG_DEBUG, RPC__LOG, "client connection %s: nghttp2: %.*s (%d)", ch->h.peer, (int)len,
           msg, code);
    return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* Channel                                                                                      */

static void on_connect(rx_stream_t *s, int status)
{
    rpc__conn_t *h = rx_stream_ud(s);
    rpc_channel_t *ch = (rpc_channel_t *)(void *)h;
    char d[300];
    if (status < 0) {
        snprintf(d, sizeof(d), "%s",
                 rx_stream_error_detail(s)[0] ? rx_stream_error_detail(s) : rx_strerror(status));
        rpc__conn_fail(h, status, d);
        return;
    }
    snprintf(h->peer, sizeof(h->peer), "%s", rx_stream_peer(s));
    const char *alpn = rx_stream_alpn(s);
    if (ch->tls && (!alpn || strcmp(alpn, "h2") != 0)) {
        snprintf(d, sizeof(d), "%s did not select h2 by ALPN (selected %s)", h->peer,
                 alpn ? alpn : "none");
        rpc__conn_fail(h, RPC_ENOH2, d);
        return;
    }
    nghttp2_session *ng = NULL;
    int rc = nghttp2_session_client_new(&ng, ch->cbs, ch);
    if (rc != 0) {
        rpc__conn_fail(h, -ENOMEM, "cannot create the HTTP/2 session");
        return;
    }
    h->ng = ng;
    rc = rpc__session_settings(ng, 0, 0);
    if (rc == 0)
        rc = rpc__conn_start(h, ng);
    if (rc != 0) {
        rpc__conn_fail(h, rc, "cannot start the HTTP/2 session");
        return;
    }
    ch->state = CH_READY;
    rx_log(RX_LOG_DEBUG, RPC__LOG, "client connected to %s%s", h->peer, ch->tls ? " (TLS)" : "");
    ch->cb_ok_pending = 1;
    rpc__sched_post(&ch->sched, &ch->cb_task, cb_task);
}

int rpc_channel_open(uv_loop_t *loop, const char *host, int port, const rpc_channel_opts_t *o,
                     rpc_channel_cb cb, void *ud, rpc_channel_t **out)
{
    if (out)
        *out = NULL;
    if (!loop || !host || !host[0] || port <= 0 || port > 65535 || !out)
        return -EINVAL;
    rpc_channel_opts_t defo;
    if (!o) {
        rpc_channel_opts_init(&defo);
        o = &defo;
    }
    rpc_channel_t *ch = calloc(1, sizeof(*ch));
    if (!ch)
        return -ENOMEM;
    ch->loop = loop;
    ch->cb = cb;
    ch->ud = ud;
    ch->tls = o->stream.tls != 0;
    ch->max_message = o->max_message ? o->max_message : RPC_DEFAULT_MAX_MESSAGE;
    if (o->authority) {
        ch->authority = strdup(o->authority);
    } else {
        size_t hl = strlen(host);
        int v6 = strchr(host, ':') != NULL && host[0] != '[';
        ch->authority = malloc(hl + 16);
        if (ch->authority)
            snprintf(ch->authority, hl + 16, v6 ? "[%s]:%d" : "%s:%d", host, port);
    }
    ch->user_agent = strdup(o->user_agent ? o->user_agent : "sai3bench-rpc/" SAI3_VERSION);
    if (!ch->authority || !ch->user_agent || nghttp2_session_callbacks_new(&ch->cbs) != 0) {
        free(ch->authority);
        free(ch->user_agent);
        free(ch);
        return -ENOMEM;
    }
    nghttp2_session_callbacks_set_on_header_callback(ch->cbs, cb_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(ch->cbs, cb_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(ch->cbs, cb_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(ch->cbs, cb_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(ch->cbs, cb_frame_send);
    nghttp2_session_callbacks_set_error_callback2(ch->cbs, cb_error);

    rx_stream_opts_t so = o->stream;
    if (so.tls)
        so.alpn = h2_alpn;
    rx_stream_t *s = NULL;
    int rc = rx_stream_connect(loop, host, port, &so, on_connect, &ch->h, &s);
    if (rc < 0) {
        nghttp2_session_callbacks_del(ch->cbs);
        free(ch->authority);
        free(ch->user_agent);
        free(ch);
        return rc;
    }
    rpc__sched_init(loop, &ch->sched);
    rpc__timers_init(loop, &ch->tm);
    rpc__conn_init(&ch->h, loop, s, &ch->sched, &ch_ops, "client", o->keepalive_interval_ns,
                   o->keepalive_timeout_ns);
    ch->state = CH_CONNECTING;
    *out = ch;
    return 0;
}

static void ch_final(rpc_channel_t *ch)
{
    void (*cb)(void *) = ch->on_closed;
    void *ud = ch->closed_ud;
    nghttp2_session_callbacks_del(ch->cbs);
    free(ch->authority);
    free(ch->user_agent);
    free(ch);
    if (cb)
        cb(ud);
}

static void sched_closed(rpc__sched_t *s)
{
    rpc_channel_t *ch = container_of(s, rpc_channel_t, sched);
    if (--ch->parts == 0)
        ch_final(ch);
}

static void timers_closed(rpc__timers_t *t)
{
    rpc_channel_t *ch = container_of(t, rpc_channel_t, tm);
    if (--ch->parts == 0)
        ch_final(ch);
}

static void ch_maybe_free(rpc_channel_t *ch)
{
    if (!ch->closing || ch->finalizing || ch->ncalls > 0 || !ch->conn_closed)
        return;
    ch->finalizing = 1;
    ch->parts = 2;
    rpc__sched_close(&ch->sched, sched_closed);
    rpc__timers_close(&ch->tm, timers_closed);
}

void rpc_channel_close(rpc_channel_t *ch, void (*on_closed)(void *ud), void *ud)
{
    if (!ch || ch->closing)
        return;
    ch->closing = 1;
    ch->on_closed = on_closed;
    ch->closed_ud = ud;
    for (rpc_ccall_t *c = ch->calls; c; c = c->next)
        call_done(c, RPC_STATUS_CANCELLED, "channel closed");
    if (!ch->h.dead) {
        rpc__conn_goaway(&ch->h, NGHTTP2_NO_ERROR);
        rpc__conn_fail(&ch->h, RX_ECANCELED, "channel closed");
    }
    ch_maybe_free(ch);
}

const char *rpc_channel_error_detail(const rpc_channel_t *ch)
{
    return ch && ch->state == CH_FAILED ? ch->detail : "";
}

rx_stream_t *rpc_channel_stream(const rpc_channel_t *ch)
{
    return rpc_channel_ready(ch) ? ch->h.s : NULL;
}

int rpc_channel_ready(const rpc_channel_t *ch)
{
    return ch && ch->state == CH_READY && !ch->h.dead && !ch->closing;
}

/* ------------------------------------------------------------------------------------------- */
/* Call API                                                                                     */

static int md_name_ok(const char *n)
{
    if (!n || !n[0] || n[0] == ':')
        return 0;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
              *p == '.'))
            return 0;
    return 1;
}

static int md_value_ok(const char *v)
{
    if (!v)
        return 0;
    for (const char *p = v; *p; p++)
        if (*p == '\r' || *p == '\n')
            return 0;
    return 1;
}

int rpc_ccall_start(rpc_channel_t *ch, const char *path, const rpc_md_t *md, size_t nmd,
                    uint64_t timeout_ns, const rpc_ccall_cb_t *cb, void *ud, rpc_ccall_t **out)
{
    if (out)
        *out = NULL;
    if (!ch || !path || path[0] != '/' || !cb || !cb->on_done || (nmd && !md) || nmd > MAX_MD)
        return -EINVAL;
    size_t need = strlen(path) + 1;
    for (size_t i = 0; i < nmd; i++) {
        if (!md_name_ok(md[i].name) || !md_value_ok(md[i].value))
            return -EINVAL;
        need += strlen(md[i].name) + strlen(md[i].value) + 2;
    }
    if (ch->closing || ch->state == CH_FAILED)
        return RX_ESTATE;
    rpc_ccall_t *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->req = malloc(need);
    if (!c->req) {
        free(c);
        return -ENOMEM;
    }
    char *p = c->req;
    size_t l = strlen(path) + 1;
    memcpy(p, path, l);
    p += l;
    for (size_t i = 0; i < nmd; i++) {
        l = strlen(md[i].name) + 1;
        memcpy(p, md[i].name, l);
        p += l;
        l = strlen(md[i].value) + 1;
        memcpy(p, md[i].value, l);
        p += l;
    }
    c->nmd = nmd;
    c->ch = ch;
    c->cb = *cb;
    c->ud = ud;
    c->grpc_status = -1;
    rpc_deframer_init(&c->df, ch->max_message, 0, df_message, c);
    c->next = ch->calls;
    if (ch->calls)
        ch->calls->prev = c;
    ch->calls = c;
    ch->ncalls++;
    c->waiting = 1;
    if (ch->wq_tail)
        ch->wq_tail->wnext = c;
    else
        ch->wq_head = c;
    ch->wq_tail = c;
    if (timeout_ns) {
        uint64_t now = uv_hrtime();
        c->deadline = timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + timeout_ns;
        rpc__timers_add(&ch->tm, &c->dl, c->deadline, deadline_fire);
    }
    ch_dispatch(ch);
    if (out)
        *out = c;
    return 0;
}

int rpc_ccall_send(rpc_ccall_t *c, const uint8_t *msg, size_t len)
{
    if (!c || (!msg && len))
        return -EINVAL;
    if (c->done || c->out.eof)
        return RX_ESTATE;
    if (len > UINT32_MAX)
        return -EMSGSIZE;
    int rc = rpc__out_push(&c->out, msg, len);
    if (rc < 0)
        return rc;
    if (c->h2_open)
        rpc__conn_resume(&c->ch->h, &c->out, c->sid);
    return 0;
}

int rpc_ccall_close_send(rpc_ccall_t *c)
{
    if (!c)
        return -EINVAL;
    if (c->done)
        return RX_ESTATE;
    if (c->out.eof)
        return 0;
    c->out.eof = 1;
    if (c->h2_open)
        rpc__conn_resume(&c->ch->h, &c->out, c->sid);
    return 0;
}

size_t rpc_ccall_pending(const rpc_ccall_t *c)
{
    return c ? c->out.pending : 0;
}

void rpc_ccall_cancel(rpc_ccall_t *c)
{
    if (!c || c->done)
        return;
    call_abort(c, RPC_STATUS_CANCELLED, "cancelled by the client", NGHTTP2_CANCEL);
}

int rpc_unary(rpc_channel_t *ch, const char *path, const rpc_md_t *md, size_t nmd,
              uint64_t timeout_ns, const uint8_t *msg, size_t len, const rpc_ccall_cb_t *cb,
              void *ud, rpc_ccall_t **out)
{
    rpc_ccall_t *c = NULL;
    if (out)
        *out = NULL;
    int rc = rpc_ccall_start(ch, path, md, nmd, timeout_ns, cb, ud, &c);
    if (rc < 0)
        return rc;
    rc = rpc_ccall_send(c, msg, len);
    if (rc == 0)
        rc = rpc_ccall_close_send(c);
    if (rc < 0) {
        /* still waiting in the queue (dispatch runs from the loop): withdraw it silently */
        c->done = 1;
        c->done_ran = 1;
        call_free(c);
        return rc;
    }
    if (out)
        *out = c;
    return 0;
}
