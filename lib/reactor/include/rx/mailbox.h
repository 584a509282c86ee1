/* rx/mailbox.h — a message queue drained on one libuv loop.
 *
 * Any thread may post; the callback runs on the loop's thread. uv_async_send coalesces, so each
 * wake-up drains the queue until it is empty. A message belongs to its receiver once posted.
 *
 * Lifetime: rx_mailbox_init() and rx_mailbox_close() run on the loop's thread. After close, posts
 * fail with RX_ESHUTDOWN; messages still queued (and the rest of a batch being drained when a
 * message closes the mailbox) are run on the loop thread with closing=1, from the async handle's
 * close callback, so they can free memory. Messages run in post order per posting thread.
 * The struct's memory must stay valid until close has completed and no thread can post any more
 * (posting to a closed mailbox is allowed and returns RX_ESHUTDOWN); then rx_mailbox_destroy().
 */
#ifndef RX_MAILBOX_H
#define RX_MAILBOX_H

#include <pthread.h>
#include <uv.h>

typedef void (*rx_msg_fn)(void *arg, int closing);

typedef struct rx_msg rx_msg_t;

typedef struct rx_mailbox {
    uv_async_t async;
    pthread_mutex_t lock;
    rx_msg_t *head, *tail;
    int closed;
    void (*on_closed)(struct rx_mailbox *mb);
} rx_mailbox_t;

/* Loop thread only. Returns 0, RX_EINVAL, or a libuv/negative errno code. */
int rx_mailbox_init(uv_loop_t *loop, rx_mailbox_t *mb);
/* Thread-safe. fn(arg, 0) will run on the mailbox's loop. Returns 0, RX_EINVAL, RX_ENOMEM or
 * RX_ESHUTDOWN (then fn will not run and arg stays the caller's). */
int rx_mailbox_post(rx_mailbox_t *mb, rx_msg_fn fn, void *arg);
/* Loop thread only. Closes the async handle; on_closed (may be NULL) runs from its close cb after
 * the remaining messages ran with closing=1. Idempotent (a second call does nothing). */
void rx_mailbox_close(rx_mailbox_t *mb, void (*on_closed)(rx_mailbox_t *mb));
/* Any thread, after close completed and once no thread can post any more: releases the lock. */
void rx_mailbox_destroy(rx_mailbox_t *mb);

#endif
