#include <stdlib.h>

#include "rx/err.h"
#include "rx/mailbox.h"
#include "rx_internal.h"

/* Runs a detached list. closed is only written on the loop thread (rx_mailbox_close), which is
 * this thread, so reading it without the lock is race-free. Once a message closes the mailbox,
 * the rest of the list runs with closing=1. */
static void run_list(rx_mailbox_t *mb, rx_msg_t *m)
{
    while (m != NULL) {
        rx_msg_t *next = m->next;
        rx_msg_fn fn = m->fn;
        void *arg = m->arg;
        if (!m->embedded)
            free(m);
        fn(arg, mb->closed);
        m = next;
    }
}

static rx_msg_t *take_all(rx_mailbox_t *mb)
{
    pthread_mutex_lock(&mb->lock);
    rx_msg_t *list = mb->head;
    mb->head = mb->tail = NULL;
    pthread_mutex_unlock(&mb->lock);
    return list;
}

static void async_cb(uv_async_t *h)
{
    rx_mailbox_t *mb = rx__container_of(h, rx_mailbox_t, async);
    /* Sends coalesce: drain until empty. After close, the close callback takes what is left. */
    while (!mb->closed) {
        rx_msg_t *list = take_all(mb);
        if (list == NULL)
            break;
        run_list(mb, list);
    }
}

static void close_cb(uv_handle_t *h)
{
    rx_mailbox_t *mb = rx__container_of(h, rx_mailbox_t, async);
    /* closed is set, so nothing can be added any more: one pass drains everything. */
    run_list(mb, take_all(mb));
    if (mb->on_closed != NULL)
        mb->on_closed(mb);
}

int rx_mailbox_init(uv_loop_t *loop, rx_mailbox_t *mb)
{
    if (loop == NULL || mb == NULL)
        return RX_EINVAL;
    mb->head = mb->tail = NULL;
    mb->closed = 0;
    mb->on_closed = NULL;
    int rc = pthread_mutex_init(&mb->lock, NULL);
    if (rc != 0)
        return -rc;
    rc = uv_async_init(loop, &mb->async, async_cb);
    if (rc != 0) {
        pthread_mutex_destroy(&mb->lock);
        return rc;
    }
    return 0;
}

int rx__mailbox_post_msg(rx_mailbox_t *mb, rx_msg_t *m)
{
    m->next = NULL;
    pthread_mutex_lock(&mb->lock);
    if (mb->closed) {
        pthread_mutex_unlock(&mb->lock);
        return RX_ESHUTDOWN;
    }
    int was_empty = mb->head == NULL;
    if (was_empty)
        mb->head = m;
    else
        mb->tail->next = m;
    mb->tail = m;
    /* Only the post that makes the queue non-empty needs a wake-up: the drain empties the queue
     * under the lock, so any later post sees it empty and wakes again. The send happens under the
     * lock so that rx_mailbox_close (which sets closed under the same lock before uv_close) can
     * never race a send into a handle or loop that is being torn down. */
    if (was_empty)
        uv_async_send(&mb->async);
    pthread_mutex_unlock(&mb->lock);
    return 0;
}

int rx_mailbox_post(rx_mailbox_t *mb, rx_msg_fn fn, void *arg)
{
    if (mb == NULL || fn == NULL)
        return RX_EINVAL;
    rx_msg_t *m = malloc(sizeof *m);
    if (m == NULL)
        return RX_ENOMEM;
    m->fn = fn;
    m->arg = arg;
    m->embedded = 0;
    int rc = rx__mailbox_post_msg(mb, m);
    if (rc != 0)
        free(m);
    return rc;
}

void rx_mailbox_close(rx_mailbox_t *mb, void (*on_closed)(rx_mailbox_t *mb))
{
    pthread_mutex_lock(&mb->lock);
    int was_closed = mb->closed;
    mb->closed = 1;
    pthread_mutex_unlock(&mb->lock);
    if (was_closed)
        return;
    mb->on_closed = on_closed;
    uv_close((uv_handle_t *)&mb->async, close_cb);
}

void rx_mailbox_destroy(rx_mailbox_t *mb)
{
    pthread_mutex_destroy(&mb->lock);
}
