/* examples/embed/main.c — embedding sai3bench's libraries through their installed headers.
 *
 * Starts a reactor (libreactor: one core thread running its own libuv loop), opens a file://
 * store (libsai3storage) in a fresh temporary directory on that core, and runs PUT, GET, LIST and
 * DELETE of one object there, printing each result. Exits 0 when every step succeeded, 1
 * otherwise. Uses nothing but the public headers <rx/...> and <sto/...>.
 *
 * Build against an installed tree (see README.md here and docs/PACKAGING.md):
 *
 *   cc -o embed main.c $(pkg-config --cflags --libs --static libsai3storage)
 *
 * Rules of the libraries shown here: a store belongs to one loop (one core) and is only touched
 * on that core's thread; the control thread reaches a core by posting a message (rx_core_post);
 * completions (done callbacks) run on the core's thread.
 */
/* mkdtemp; <uv.h> also needs POSIX (pthread_rwlock_t) under -std=c11 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <rx/engine.h>
#include <rx/err.h>
#include <rx/log.h>
#include <sto/backend.h>
#include <sto/err.h>

#define KEY "embed/hello.txt"

typedef struct demo {
    rx_engine_t *engine;
    char dir[256]; /* mkdtemp directory under $TMPDIR or /tmp */
    char uri[300]; /* file://<dir>/ */
    sto_store_t *st;
    sto_req_t req; /* one request at a time, reused */
    struct iovec iov;
    size_t listed;
    int failed;
    /* control thread waits on this until the core is finished */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int finished;
} demo_t;

static const char payload[] = "hello from an embedded sai3bench store\n";

static double ms(const sto_result_t *r)
{
    return (double)(r->t_end_ns - r->t_submit_ns) / 1e6;
}

/* Core thread: closes the store and wakes the control thread. */
static void finish(demo_t *d)
{
    if (d->st)
        sto_store_close(d->st); /* file:// closes synchronously; no request is in flight */
    d->st = NULL;
    pthread_mutex_lock(&d->mu);
    d->finished = 1;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static int check(demo_t *d, const char *what)
{
    const sto_result_t *r = &d->req.res;
    if (r->status == 0)
        return 0;
    fprintf(stderr, "%s failed: %s (%s)\n", what, rx_strerror(r->status), r->detail);
    d->failed = 1;
    finish(d);
    return -1;
}

static void submit(demo_t *d, sto_op_t op, const char *key, sto_done_fn done)
{
    memset(&d->req, 0, sizeof(d->req));
    d->req.op = op;
    d->req.key = key;
    d->req.done = done;
    d->req.ud = d;
    if (op == STO_OP_PUT) {
        d->iov.iov_base = (void *)payload;
        d->iov.iov_len = sizeof(payload) - 1;
        d->req.iov = &d->iov;
        d->req.iovcnt = 1;
    }
    int rc = sto_submit(d->st, &d->req);
    if (rc != 0) { /* done() will not run */
        fprintf(stderr, "submit %s: %s\n", sto_op_name(op), rx_strerror(rc));
        d->failed = 1;
        finish(d);
    }
}

static void on_del(sto_req_t *r)
{
    demo_t *d = r->ud;
    if (check(d, "DELETE") == 0) {
        printf("DELETE %s: ok in %.3f ms\n", KEY, ms(&r->res));
        finish(d);
    }
}

static void on_page(sto_req_t *r, const sto_entry_t *e, size_t n)
{
    demo_t *d = r->ud;
    for (size_t i = 0; i < n; i++)
        printf("LIST entry: %s %llu bytes\n", e[i].key, (unsigned long long)e[i].size);
    d->listed += n;
}

static void on_list(sto_req_t *r)
{
    demo_t *d = r->ud;
    if (check(d, "LIST") != 0)
        return;
    printf("LIST %s (recursive): %zu entries in %.3f ms\n", d->uri, d->listed, ms(&r->res));
    submit(d, STO_OP_DEL, KEY, on_del);
}

static void on_get(sto_req_t *r)
{
    demo_t *d = r->ud;
    if (check(d, "GET") != 0)
        return;
    /* GET bodies are counted, not buffered: the library reports how many bytes arrived. */
    printf("GET %s: %llu bytes in %.3f ms\n", KEY, (unsigned long long)r->res.bytes, ms(&r->res));
    if (r->res.bytes != sizeof(payload) - 1) {
        fprintf(stderr, "GET: expected %zu bytes\n", sizeof(payload) - 1);
        d->failed = 1;
        finish(d);
        return;
    }
    memset(&d->req, 0, sizeof(d->req));
    d->req.op = STO_OP_LIST;
    d->req.key = "";
    d->req.recursive = 1;
    d->req.on_page = on_page;
    d->req.done = on_list;
    d->req.ud = d;
    int rc = sto_submit(d->st, &d->req);
    if (rc != 0) {
        fprintf(stderr, "submit LIST: %s\n", rx_strerror(rc));
        d->failed = 1;
        finish(d);
    }
}

static void on_put(sto_req_t *r)
{
    demo_t *d = r->ud;
    if (check(d, "PUT") != 0)
        return;
    printf("PUT %s: %llu bytes in %.3f ms\n", KEY, (unsigned long long)r->res.bytes, ms(&r->res));
    submit(d, STO_OP_GET, KEY, on_get);
}

/* Runs on core 0's thread: the store is opened on that core's loop. */
static void start_on_core(void *arg, int closing)
{
    demo_t *d = arg;
    if (closing) { /* the core stopped before this ran */
        d->failed = 1;
        finish(d);
        return;
    }
    char err[256];
    uv_loop_t *loop = rx_core_loop(rx_engine_core(d->engine, rx_core_self_index()));
    if (sto_store_open(loop, d->uri, 0, &d->st, err, sizeof(err)) != 0) {
        fprintf(stderr, "open %s: %s\n", d->uri, err);
        d->failed = 1;
        finish(d);
        return;
    }
    printf("store: %s (backend %s, on core %d)\n", d->uri, sto_store_backend(d->st)->name,
           rx_core_self_index());
    submit(d, STO_OP_PUT, KEY, on_put);
}

int main(void)
{
    static demo_t d;
    pthread_mutex_init(&d.mu, NULL);
    pthread_cond_init(&d.cv, NULL);
    sto_err_register();    /* rx_strerror() then names storage codes too */
    rx_threadpool_size(4); /* file I/O runs on libuv's pool: size it before any loop starts */

    const char *tmp = getenv("TMPDIR");
    snprintf(d.dir, sizeof(d.dir), "%s/sai3-embed-XXXXXX", tmp && *tmp == '/' ? tmp : "/tmp");
    if (!mkdtemp(d.dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(d.uri, sizeof(d.uri), "file://%s/", d.dir);

    rx_engine_opts_t o;
    rx_engine_opts_init(&o);
    o.cores = 1;
    o.pin = 0;
    rx_engine_t *e;
    int rc = rx_engine_create(&o, &e);
    d.engine = e;
    if (rc == 0)
        rc = rx_engine_start(e);
    if (rc != 0) {
        fprintf(stderr, "reactor: %s\n", rx_strerror(rc));
        return 1;
    }
    printf("reactor: %d core started\n", rx_engine_ncores(e));

    rc = rx_core_post(rx_engine_core(e, 0), start_on_core, &d);
    if (rc != 0) {
        fprintf(stderr, "post: %s\n", rx_strerror(rc));
        return 1;
    }
    pthread_mutex_lock(&d.mu);
    while (!d.finished)
        pthread_cond_wait(&d.cv, &d.mu);
    pthread_mutex_unlock(&d.mu);

    rx_engine_stop(e);
    rx_engine_destroy(e);
    /* The PUT created embed/ under the directory; DELETE removed only the object. */
    char sub[300];
    snprintf(sub, sizeof(sub), "%s/embed", d.dir);
    rmdir(sub);
    rmdir(d.dir);
    printf("%s\n", d.failed ? "embed: FAILED" : "embed: ok");
    return d.failed ? 1 : 0;
}
