/* rx_internal.h — shared internals of lib/reactor. Not installed; not for other libraries. */
#ifndef RX_INTERNAL_H
#define RX_INTERNAL_H

#include <stddef.h>

#include "rx/mailbox.h"

#define rx__container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* One queued message. Nodes from rx_mailbox_post() are malloc'd and freed by the mailbox after
 * they run; an embedded node (owned by its poster, e.g. a core's stop message) is never freed. */
struct rx_msg {
    struct rx_msg *next;
    rx_msg_fn fn;
    void *arg;
    int embedded;
};

/* Posts a caller-owned node (embedded must be 1). Never allocates, so it cannot fail with
 * RX_ENOMEM. The node must stay valid and must not be posted again until it has run. */
int rx__mailbox_post_msg(rx_mailbox_t *mb, rx_msg_t *m);

#endif
