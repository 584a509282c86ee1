/* HTTP client pools of the network backends (s3, az, gs): creation from a store's options, and
 * the per-thread registry through which the stores of one loop share a pool per endpoint; the
 * request results and HTTP status mapping the three share. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rx/err.h"
#include "rx/time.h"
#include "sto/err.h"
#include "sto_internal.h"

void sto__http_result(sto_req_t *r, const rx_httpc_req_t *h, int status)
{
    r->res.t_end_ns = h->t_end_ns ? h->t_end_ns : rx_now_ns();
    if (r->op == STO_OP_GET)
        r->res.t_first_ns = h->t_first_ns;
    else if (!r->res.t_first_ns)
        r->res.t_first_ns = r->res.t_submit_ns;
    r->res.status = status;
    if (status == 0) {
        r->res.retryable = 0;
        r->res.code[0] = '\0';
        r->res.detail[0] = '\0';
    }
}

int sto__http_status(int http, int *retryable)
{
    *retryable = 0;
    if (http == 404)
        return STO_ENOTFOUND;
    if (http == 401 || http == 403)
        return STO_EPERM;
    if (http == 416)
        return STO_ESHORT;
    if (http == 429 || http == 503) {
        *retryable = 1;
        return STO_ETHROTTLE;
    }
    if (http >= 500) {
        *retryable = 1;
        return STO_ESERVER;
    }
    if (http == 408)
        *retryable = 1;
    return STO_EHTTP;
}

int sto__http_create(const sto_store_t *s, uv_loop_t *loop, const char *host, int port, int tls,
                     int max_conns, int version, rx_httpc_t **out, rx_tls_ctx_t **tls_ctx,
                     char *err, size_t errlen)
{
    rx_httpc_opts_t ho;
    rx_httpc_opts_init(&ho);
    ho.max_conns = max_conns;
    ho.version = version;
    if (s->opts.h2_max_streams > 0)
        ho.h2_max_streams = s->opts.h2_max_streams;
    if (s->opts.h2_stream_window > 0)
        ho.h2_stream_window = s->opts.h2_stream_window;
    if (s->opts.h2_conn_window > 0)
        ho.h2_conn_window = s->opts.h2_conn_window;
    ho.io_timeout_ms = s->opts.io_timeout_ms;
    ho.stream.connect_timeout_ms = s->opts.connect_timeout_ms;
    *tls_ctx = NULL;
    if (tls) {
        int rc = rx_tls_ctx_create(s->opts.ca_file,
                                   s->opts.insecure_skip_verify ? RX_TLS_CTX_NO_CA : 0, tls_ctx);
        if (rc < 0) {
            snprintf(err, errlen, "TLS setup for %s: %s (CA file %s)", host, rx_strerror(rc),
                     s->opts.ca_file           ? s->opts.ca_file
                     : getenv("AWS_CA_BUNDLE") ? getenv("AWS_CA_BUNDLE")
                                               : RX_TLS_DEFAULT_CA_FILE);
            return rc;
        }
        ho.stream.tls = 1;
        ho.stream.tls_ctx = *tls_ctx;
        ho.stream.tls_insecure_skip_verify = s->opts.insecure_skip_verify;
    }
    int rc = rx_httpc_create(loop, host, port, &ho, out);
    if (rc < 0) {
        snprintf(err, errlen, "HTTP client for %s: %s", host, rx_strerror(rc));
        rx_tls_ctx_destroy(*tls_ctx);
        *tls_ctx = NULL;
    }
    return rc;
}

/* The registry is per thread: a loop is only ever used from its own thread, so no lock. */
typedef struct shared_http {
    uv_loop_t *loop;
    char host[256];
    int port, tls, version, insecure;
    char ca[1024];
    rx_httpc_t *http;
    rx_tls_ctx_t *tls_ctx;
    int refs;
    struct shared_http *next;
} shared_http_t;

static _Thread_local shared_http_t *shared_pools;

int sto__http_acquire(const sto_store_t *s, uv_loop_t *loop, const char *host, int port, int tls,
                      rx_httpc_t **out, char *err, size_t errlen)
{
    const char *ca = s->opts.ca_file ? s->opts.ca_file : "";
    for (shared_http_t *sh = shared_pools; sh; sh = sh->next) {
        if (sh->loop == loop && sh->port == port && sh->tls == tls &&
            sh->version == s->opts.http_version && sh->insecure == s->opts.insecure_skip_verify &&
            !strcmp(sh->host, host) && !strcmp(sh->ca, ca)) {
            sh->refs++;
            *out = sh->http;
            return 0;
        }
    }
    shared_http_t *sh = calloc(1, sizeof(*sh));
    if (!sh) {
        snprintf(err, errlen, "out of memory");
        return RX_ENOMEM;
    }
    sh->loop = loop;
    snprintf(sh->host, sizeof(sh->host), "%s", host);
    sh->port = port;
    sh->tls = tls;
    sh->version = s->opts.http_version;
    sh->insecure = s->opts.insecure_skip_verify;
    snprintf(sh->ca, sizeof(sh->ca), "%s", ca);
    int rc = sto__http_create(s, loop, host, port, tls, s->opts.max_connections,
                              s->opts.http_version, &sh->http, &sh->tls_ctx, err, errlen);
    if (rc < 0) {
        free(sh);
        return rc;
    }
    sh->refs = 1;
    sh->next = shared_pools;
    shared_pools = sh;
    *out = sh->http;
    return 0;
}

void sto__http_release(rx_httpc_t *http)
{
    for (shared_http_t **pp = &shared_pools; *pp; pp = &(*pp)->next) {
        shared_http_t *sh = *pp;
        if (sh->http != http)
            continue;
        if (--sh->refs > 0)
            return;
        *pp = sh->next;
        rx_httpc_close(sh->http);
        rx_tls_ctx_destroy(sh->tls_ctx);
        free(sh);
        return;
    }
}
