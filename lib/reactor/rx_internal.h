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

/* Formats into err (NULL or errlen 0: nothing). The err/errlen out-parameter of rx_listen and the
 * TLS context constructors. */
void rx__set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* TLS session glue between tcp.c (the socket) and tls.c (mbedtls); see tls.c. */
#include <stdint.h>

#include "rx/stream.h"
typedef struct rx__tls rx__tls_t;
int rx__tls_ctx_is_server(const rx_tls_ctx_t *ctx);
/* One more reference (dropped with rx_tls_ctx_destroy), e.g. held by a listener. */
void rx__tls_ctx_ref(rx_tls_ctx_t *ctx);
/* Client session. pin (32 bytes, copied) replaces CA/name/date verification when non-NULL.
 * RX_EINVAL for a server context (detail says so). */
int rx__tls_new(rx_tls_ctx_t *ctx, const char *server_name, const char *const *alpn, int insecure,
                const uint8_t *pin, rx__tls_t **out, char *detail, size_t dlen);
/* Server session on a server context (RX_EINVAL otherwise). */
int rx__tls_new_server(rx_tls_ctx_t *ctx, rx__tls_t **out, char *detail, size_t dlen);
void rx__tls_free(rx__tls_t *t);
void rx__tls_in_space(rx__tls_t *t, char **base, size_t *len);
void rx__tls_in_commit(rx__tls_t *t, size_t n);
int rx__tls_in_pending(const rx__tls_t *t);
/* 0 done (our own checks included), 1 wants more input, or RX_ETLS / RX_ETLSVERIFY / RX_ENOMEM
 * with detail; a fatal alert may then be waiting in the output buffer. */
int rx__tls_handshake(rx__tls_t *t, char *detail, size_t dlen);
int rx__tls_read(rx__tls_t *t, char *buf, size_t cap, char *detail, size_t dlen);
int rx__tls_write(rx__tls_t *t, const char *p, size_t n, char *detail, size_t dlen);
void rx__tls_close_notify(rx__tls_t *t);
char *rx__tls_out_take(rx__tls_t *t, size_t *len);
const char *rx__tls_alpn(const rx__tls_t *t);
/* 0, or RX_ESTATE before a successful handshake or without a peer certificate. */
int rx__tls_peer_cert_sha256(const rx__tls_t *t, uint8_t out[32]);

#endif
