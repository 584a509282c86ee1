/* rpc_internal.h — what server.c and client.c share (implemented in h2conn.c).
 *
 * Three small tools and one connection type:
 *   - rpc__sched_t: deferred work. Objects post an embedded task; a uv_idle handle runs the posted
 *     tasks from the loop (in posting order) and stops itself when the list is empty. This is how
 *     every user callback that an API call causes (on_end, on_done, the channel callback) runs
 *     "later, from the loop", and how writes coalesce: API calls post the connection's flush.
 *   - rpc__timers_t: one uv timer for many deadlines (a list of nodes, the timer armed at the
 *     earliest). Lists are short (the calls of one server or channel), so a scan is fine.
 *   - rpc__out_t: the outbound messages of one HTTP/2 stream, framed and copied at push, read by
 *     nghttp2 through rpc__out_read() (the data provider): DEFERRED when empty, resumed by
 *     rpc__conn_resume(). nghttp2 therefore never holds more than a frame of a call's data; the
 *     rest waits here and is what rpc_*_pending() report.
 *   - rpc__conn_t: an nghttp2 session over an rx_stream: feeding received bytes
 *     (nghttp2_session_mem_recv), the send pump (nghttp2_session_mem_send → batched
 *     rx_stream_write, at most RPC__WQ_HIGH bytes in flight), keepalive PINGs, failure and close.
 *     The role (server.c, client.c) owns the nghttp2 callbacks and embeds the conn.
 *
 * Re-entrancy: user callbacks that deliver data (on_message, on_half_close, handlers) run inside
 * nghttp2 callbacks; user code may call any API from there. So: nothing inside nghttp2 callbacks
 * calls mem_send/mem_recv (conn->in_io defers the pump), nothing frees the session before the
 * stream's close callback, and objects are freed only from tasks or close callbacks, never while a
 * frame of ours is on the stack.
 *
 * Threads: everything belongs to the loop thread of its server or channel.
 */
#ifndef RPC_INTERNAL_H
#define RPC_INTERNAL_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "rx/stream.h"

#define RPC__LOG "rpc"

/* Send pump: bytes handed to rx_stream_write and not yet completed; the pump stops above it. */
#define RPC__WQ_HIGH (512u * 1024u)
/* One rx_stream_write carries at most this much (more frames are batched up to it). */
#define RPC__WRITE_BATCH (64u * 1024u)
/* Flow-control windows we announce (receiving side). */
#define RPC__STREAM_WINDOW (1u << 20)
#define RPC__CONN_WINDOW (16u << 20)
/* Default keepalive timeout when only the interval is given. */
#define RPC__KA_TIMEOUT_DEFAULT (10ull * 1000000000ull)

/* ---- deferred tasks ---- */

typedef struct rpc__task rpc__task_t;
typedef void (*rpc__task_fn)(rpc__task_t *t);
struct rpc__task {
    rpc__task_t *prev, *next;
    rpc__task_fn fn;
    unsigned gen; /* pass of the scheduler it was posted in */
    int queued;
};

typedef struct rpc__sched {
    uv_idle_t idle;
    rpc__task_t *head, *tail;
    unsigned gen;
    int closing;
    void (*on_closed)(struct rpc__sched *s);
} rpc__sched_t;

void rpc__sched_init(uv_loop_t *loop, rpc__sched_t *s);
/* Queues t (no-op when already queued); fn runs from the loop. Ignored once closing. */
void rpc__sched_post(rpc__sched_t *s, rpc__task_t *t, rpc__task_fn fn);
/* Unqueues t if queued (before freeing its owner). */
void rpc__sched_cancel(rpc__sched_t *s, rpc__task_t *t);
/* Closes the idle handle; on_closed runs from its close callback. Tasks still queued are dropped.
 */
void rpc__sched_close(rpc__sched_t *s, void (*on_closed)(rpc__sched_t *s));

/* ---- deadlines ---- */

typedef struct rpc__dl rpc__dl_t;
struct rpc__dl {
    rpc__dl_t *prev, *next;
    uint64_t at; /* uv_hrtime() ns */
    void (*fire)(rpc__dl_t *n);
    int linked;
};

typedef struct rpc__timers {
    uv_timer_t timer;
    rpc__dl_t *head;
    uint64_t armed; /* deadline the timer is set for, 0 = stopped */
    int closing;
    void (*on_closed)(struct rpc__timers *t);
} rpc__timers_t;

void rpc__timers_init(uv_loop_t *loop, rpc__timers_t *t);
/* fire runs from the timer callback once uv_hrtime() >= at; the node is unlinked first. */
void rpc__timers_add(rpc__timers_t *t, rpc__dl_t *n, uint64_t at, void (*fire)(rpc__dl_t *n));
void rpc__timers_remove(rpc__timers_t *t, rpc__dl_t *n);
void rpc__timers_close(rpc__timers_t *t, void (*on_closed)(rpc__timers_t *t));

/* ---- outbound message queue of one stream ---- */

typedef struct rpc__msg rpc__msg_t;
struct rpc__msg {
    rpc__msg_t *next;
    size_t len, off; /* framed length (prefix included), bytes already taken */
    uint8_t data[];
};

typedef struct rpc__out rpc__out_t;
struct rpc__out {
    rpc__msg_t *head, *tail;
    size_t pending; /* bytes queued and not yet taken by nghttp2 */
    int eof;        /* no more messages: end the data after the queue */
    int deferred;   /* the read callback returned NGHTTP2_ERR_DEFERRED */
    int eof_done;   /* EOF was reported to nghttp2 */
    /* Called when EOF is reported (inside nghttp2's read callback): may add
     * NGHTTP2_DATA_FLAG_NO_END_STREAM and submit trailers. NULL = END_STREAM on the DATA. */
    void (*on_eof)(rpc__out_t *o, nghttp2_session *ng, int32_t sid, uint32_t *flags);
};

/* Frames (5-byte prefix) and copies msg. Returns 0, -EMSGSIZE, -ENOMEM. */
int rpc__out_push(rpc__out_t *o, const uint8_t *msg, size_t len);
/* Drops the messages not started yet (a partly sent message stays, so the framing holds). */
void rpc__out_drop_unsent(rpc__out_t *o);
void rpc__out_free(rpc__out_t *o);
/* nghttp2_data_source_read_callback; source->ptr is the rpc__out_t. */
ssize_t rpc__out_read(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                      nghttp2_data_source *src, void *ud);

/* ---- the connection ---- */

typedef struct rpc__conn rpc__conn_t;

typedef struct rpc__conn_ops {
    /* The connection died (read end, write error, protocol error, keepalive, session over):
     * no more I/O. Called at most once, possibly inside nghttp2 callbacks. The role ends its calls
     * and calls rpc__conn_close() when it no longer needs the stream. */
    void (*on_fail)(rpc__conn_t *c, int err, const char *detail);
    /* The stream and the keepalive timer are closed: the role frees the session and the conn. */
    void (*on_closed)(rpc__conn_t *c);
} rpc__conn_ops_t;

struct rpc__conn {
    uv_loop_t *loop;
    rx_stream_t *s;      /* NULL once closed */
    nghttp2_session *ng; /* NULL until attached */
    const rpc__conn_ops_t *ops;
    rpc__sched_t *sched;
    rpc__task_t flush_task;
    const char *role; /* "server"/"client", for logs */
    char peer[64];

    int in_io;        /* inside mem_recv/mem_send: the pump waits */
    int want_flush;   /* something was submitted while in_io */
    int dead;         /* failed or closing: no more I/O */
    int closing;      /* rpc__conn_close called */
    int open_handles; /* stream, keepalive timer */
    size_t wq_bytes;  /* written, not completed */

    uv_timer_t ka;
    uint64_t ka_interval, ka_timeout; /* ns; 0 = off */
    uint64_t last_recv;               /* uv_hrtime of the last received bytes */
    uint64_t ping_at;                 /* uv_hrtime of the outstanding keepalive PING, 0 = none */
    int term_err;                     /* our GOAWAY carried an error: why the session ends */
};

/* Prepares c (the keepalive timer is initialised: rpc__conn_close() must follow eventually). s may
 * still be connecting. */
void rpc__conn_init(rpc__conn_t *c, uv_loop_t *loop, rx_stream_t *s, rpc__sched_t *sched,
                    const rpc__conn_ops_t *ops, const char *role, uint64_t ka_interval,
                    uint64_t ka_timeout);
/* The session is made (SETTINGS submitted): start reading, keepalive, and send. Returns 0 or a
 * negative code (then the caller fails the connection). */
int rpc__conn_start(rpc__conn_t *c, nghttp2_session *ng);
/* Asks for a flush: from the pump's task, or after the current nghttp2 call returns. */
void rpc__conn_flush(rpc__conn_t *c);
/* After pushing to an out queue of stream sid: resumes a deferred data provider, flushes. */
void rpc__conn_resume(rpc__conn_t *c, rpc__out_t *o, int32_t sid);
/* Runs the send pump now (not inside nghttp2 callbacks: then it only takes note). */
void rpc__conn_pump(rpc__conn_t *c);
/* Submits GOAWAY(code) and pumps it out if possible. */
void rpc__conn_goaway(rpc__conn_t *c, uint32_t code);
/* Marks c dead (stops reading and keepalive) and calls ops->on_fail once. */
void rpc__conn_fail(rpc__conn_t *c, int err, const char *detail);
/* Closes the stream and the timer (marks dead without on_fail if not yet); ops->on_closed follows
 * from the loop. Idempotent. */
void rpc__conn_close(rpc__conn_t *c);

/* Submits our SETTINGS (server: MAX_CONCURRENT_STREAMS = max_streams; client: no push; both:
 * RPC__STREAM_WINDOW) and raises the connection window to RPC__CONN_WINDOW. Returns 0, -ENOMEM or
 * RPC_EPROTOCOL. */
int rpc__session_settings(nghttp2_session *ng, int server, uint32_t max_streams);

#endif
