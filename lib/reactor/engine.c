#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rx/engine.h"
#include "rx/err.h"
#include "rx/log.h"
#include "rx_internal.h"

#define MAX_CORES 4096
#define MAX_THREADPOOL 1024 /* libuv's MAX_THREADPOOL_SIZE */
#define CLOSE_RETRIES 8

enum eng_state { ENG_CREATED, ENG_STARTING, ENG_RUNNING, ENG_DONE };

struct rx_core {
    rx_engine_t *eng;
    int index;
    int cpu;             /* written by the core before it reports in; -1 when not pinned */
    int thread_started;  /* control thread only */
    int mb_inited;       /* under eng->lock */
    int init_rc;         /* under eng->lock */
    atomic_int postable; /* 1 once the mailbox exists; it then stays valid until destroy */
    pthread_t thread;
    uv_loop_t loop;
    rx_mailbox_t mb;
    rx_msg_t ready_msg; /* embedded: posting them cannot fail for lack of memory */
    rx_msg_t stop_msg;
};

struct rx_engine {
    int ncores;
    int pin;
    int ncpus;
    int *cpus; /* CPUs from sched_getaffinity, in order */
    rx_core_t *cores;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    enum eng_state state; /* under lock */
    int stopping;         /* under lock */
    int nready, nfailed;  /* under lock */
};

static _Thread_local int tls_core_index = -1;
static pthread_mutex_t loop_init_lock = PTHREAD_MUTEX_INITIALIZER;

int rx_core_self_index(void)
{
    return tls_core_index;
}

void rx_engine_opts_init(rx_engine_opts_t *o)
{
    o->cores = 0;
    o->pin = 1;
}

int rx_cpu_count(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int rx_threadpool_size(int wanted)
{
    const char *v = getenv("UV_THREADPOOL_SIZE");
    if (v != NULL) {
        /* Mirror libuv's own parsing (threadpool.c: atoi, 0 -> 1, clamp as unsigned). */
        unsigned n = (unsigned)atoi(v);
        if (n == 0)
            n = 1;
        if (n > MAX_THREADPOOL)
            n = MAX_THREADPOOL;
        return (int)n;
    }
    if (wanted < 1)
        wanted = 1;
    if (wanted > MAX_THREADPOOL)
        wanted = MAX_THREADPOOL;
    char buf[16];
    snprintf(buf, sizeof buf, "%d", wanted);
    if (setenv("UV_THREADPOOL_SIZE", buf, 0) != 0)
        rx_log(RX_LOG_WARN, "reactor", "cannot set UV_THREADPOOL_SIZE: %s", rx_strerror(-errno));
    return wanted;
}

/* ---- core thread ---- */

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    rx_core_t *c = arg;
    if (uv_is_closing(h))
        return;
    if ((uv_handle_t *)&c->mb.async != h)
        rx_log(RX_LOG_DEBUG, "reactor", "closing %s handle left open at stop",
               uv_handle_type_name(uv_handle_get_type(h)));
    uv_close(h, NULL);
}

static void ready_msg_fn(void *arg, int closing)
{
    rx_core_t *c = arg;
    rx_engine_t *e = c->eng;
    pthread_mutex_lock(&e->lock);
    e->nready++;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

static void stop_msg_fn(void *arg, int closing)
{
    rx_core_t *c = arg;
    /* Messages queued behind this one run with closing=1 from the mailbox's close callback. */
    rx_mailbox_close(&c->mb, NULL);
    uv_walk(&c->loop, close_walk_cb, c);
}

static void pin_self(rx_core_t *c)
{
    rx_engine_t *e = c->eng;
    c->cpu = -1;
    if (!e->pin || e->ncpus == 0)
        return;
    int cpu = e->cpus[c->index % e->ncpus];
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    if (rc != 0) {
        rx_log(RX_LOG_WARN, "reactor", "core %d: cannot pin to CPU %d: %s", c->index, cpu,
               rx_strerror(-rc));
        return;
    }
    c->cpu = cpu;
}

static void run_until_closed(rx_core_t *c)
{
    int rc = 0;
    int tries = 0;
    for (;;) {
        uv_run(&c->loop, UV_RUN_DEFAULT);
        /* uv_run only returns early if user code called uv_stop(): keep serving until stop. */
        if (!c->mb.closed)
            continue;
        rc = uv_loop_close(&c->loop);
        if (rc != UV_EBUSY || ++tries > CLOSE_RETRIES)
            break;
        /* A close callback (or a message run with closing=1) opened a new handle. */
        uv_walk(&c->loop, close_walk_cb, c);
    }
    if (rc != 0)
        rx_log(RX_LOG_ERROR, "reactor", "core %d: uv_loop_close failed: %s", c->index,
               rx_strerror(rc));
}

static void *core_main(void *arg)
{
    rx_core_t *c = arg;
    rx_engine_t *e = c->eng;
    tls_core_index = c->index;
    pin_self(c);

    /* libuv 1.44 lazily caches its clock id in a plain static on the first uv_loop_init; serialize
     * inits so that write happens-before every other loop's reads. */
    pthread_mutex_lock(&loop_init_lock);
    int rc = uv_loop_init(&c->loop);
    pthread_mutex_unlock(&loop_init_lock);
    if (rc == 0) {
        rc = rx_mailbox_init(&c->loop, &c->mb);
        if (rc != 0)
            uv_loop_close(&c->loop);
    }
    pthread_mutex_lock(&e->lock);
    if (rc != 0) {
        c->init_rc = rc;
        e->nfailed++;
        pthread_cond_broadcast(&e->cond);
        pthread_mutex_unlock(&e->lock);
        rx_log(RX_LOG_ERROR, "reactor", "core %d: loop init failed: %s", c->index, rx_strerror(rc));
        tls_core_index = -1;
        return NULL;
    }
    c->mb_inited = 1;
    atomic_store_explicit(&c->postable, 1, memory_order_release);
    /* Reported from inside uv_run, so rx_engine_start returns only when the loop is running. */
    rx__mailbox_post_msg(&c->mb, &c->ready_msg);
    if (e->stopping) /* stop raced with start: the stop walked past this core */
        rx__mailbox_post_msg(&c->mb, &c->stop_msg);
    pthread_mutex_unlock(&e->lock);

    run_until_closed(c);
    tls_core_index = -1;
    return NULL;
}

/* ---- control thread ---- */

int rx_engine_create(const rx_engine_opts_t *o, rx_engine_t **out)
{
    if (out == NULL)
        return RX_EINVAL;
    *out = NULL;
    rx_engine_opts_t def;
    if (o == NULL) {
        rx_engine_opts_init(&def);
        o = &def;
    }
    if (o->cores < 0 || o->cores > MAX_CORES)
        return RX_EINVAL;

    rx_engine_t *e = calloc(1, sizeof *e);
    if (e == NULL)
        return RX_ENOMEM;
    e->ncores = o->cores > 0 ? o->cores : rx_cpu_count();
    e->pin = o->pin;
    e->cores = calloc((size_t)e->ncores, sizeof *e->cores);
    e->cpus = calloc(CPU_SETSIZE, sizeof *e->cpus);
    if (e->cores == NULL || e->cpus == NULL)
        goto nomem;
    if (pthread_mutex_init(&e->lock, NULL) != 0)
        goto nomem;
    if (pthread_cond_init(&e->cond, NULL) != 0) {
        pthread_mutex_destroy(&e->lock);
        goto nomem;
    }

    if (e->pin) {
        cpu_set_t set;
        CPU_ZERO(&set);
        if (sched_getaffinity(0, sizeof set, &set) == 0) {
            for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
                if (CPU_ISSET(cpu, &set))
                    e->cpus[e->ncpus++] = cpu;
        } else {
            rx_log(RX_LOG_WARN, "reactor", "sched_getaffinity failed (%s): cores not pinned",
                   rx_strerror(-errno));
        }
    }

    for (int i = 0; i < e->ncores; i++) {
        rx_core_t *c = &e->cores[i];
        c->eng = e;
        c->index = i;
        c->cpu = -1;
        atomic_init(&c->postable, 0);
        c->ready_msg = (rx_msg_t){.fn = ready_msg_fn, .arg = c, .embedded = 1};
        c->stop_msg = (rx_msg_t){.fn = stop_msg_fn, .arg = c, .embedded = 1};
    }
    e->state = ENG_CREATED;
    *out = e;
    return 0;

nomem:
    free(e->cores);
    free(e->cpus);
    free(e);
    return RX_ENOMEM;
}

static void join_all(rx_engine_t *e)
{
    for (int i = 0; i < e->ncores; i++) {
        rx_core_t *c = &e->cores[i];
        if (c->thread_started) {
            pthread_join(c->thread, NULL);
            c->thread_started = 0;
        }
    }
}

int rx_engine_start(rx_engine_t *e)
{
    if (e == NULL)
        return RX_EINVAL;
    pthread_mutex_lock(&e->lock);
    if (e->state != ENG_CREATED) {
        pthread_mutex_unlock(&e->lock);
        return RX_ESTATE;
    }
    if (e->stopping) {
        e->state = ENG_DONE;
        pthread_mutex_unlock(&e->lock);
        return RX_ESHUTDOWN;
    }
    e->state = ENG_STARTING;
    pthread_mutex_unlock(&e->lock);

    int rc = 0;
    int nstarted = 0;
    for (int i = 0; i < e->ncores; i++) {
        rx_core_t *c = &e->cores[i];
        int err = pthread_create(&c->thread, NULL, core_main, c);
        if (err != 0) {
            rx_log(RX_LOG_ERROR, "reactor", "core %d: pthread_create failed: %s", i,
                   rx_strerror(-err));
            rc = RX_ETHREAD;
            break;
        }
        c->thread_started = 1;
        nstarted++;
    }

    pthread_mutex_lock(&e->lock);
    while (e->nready + e->nfailed < nstarted)
        pthread_cond_wait(&e->cond, &e->lock);
    if (rc == 0 && e->nfailed > 0) {
        for (int i = 0; i < e->ncores && rc == 0; i++)
            rc = e->cores[i].init_rc;
    }
    pthread_mutex_unlock(&e->lock);

    if (rc != 0) {
        rx_engine_stop(e);
        join_all(e);
        pthread_mutex_lock(&e->lock);
        e->state = ENG_DONE;
        pthread_mutex_unlock(&e->lock);
        return rc;
    }
    pthread_mutex_lock(&e->lock);
    e->state = ENG_RUNNING;
    pthread_mutex_unlock(&e->lock);
    return 0;
}

void rx_engine_stop(rx_engine_t *e)
{
    if (e == NULL)
        return;
    pthread_mutex_lock(&e->lock);
    if (!e->stopping) {
        e->stopping = 1;
        /* Cores not yet up post their own stop when they come up (core_main). */
        for (int i = 0; i < e->ncores; i++) {
            rx_core_t *c = &e->cores[i];
            if (c->mb_inited)
                rx__mailbox_post_msg(&c->mb, &c->stop_msg);
        }
    }
    pthread_mutex_unlock(&e->lock);
}

void rx_engine_destroy(rx_engine_t *e)
{
    if (e == NULL)
        return;
    rx_engine_stop(e);
    join_all(e);
    for (int i = 0; i < e->ncores; i++) {
        if (e->cores[i].mb_inited)
            rx_mailbox_destroy(&e->cores[i].mb);
    }
    pthread_cond_destroy(&e->cond);
    pthread_mutex_destroy(&e->lock);
    free(e->cores);
    free(e->cpus);
    free(e);
}

int rx_engine_ncores(const rx_engine_t *e)
{
    return e != NULL ? e->ncores : 0;
}

rx_core_t *rx_engine_core(rx_engine_t *e, int i)
{
    if (e == NULL || i < 0 || i >= e->ncores)
        return NULL;
    return &e->cores[i];
}

int rx_core_post(rx_core_t *c, rx_msg_fn fn, void *arg)
{
    if (c == NULL || fn == NULL)
        return RX_EINVAL;
    if (!atomic_load_explicit(&c->postable, memory_order_acquire))
        return RX_ESTATE;
    return rx_mailbox_post(&c->mb, fn, arg);
}

uv_loop_t *rx_core_loop(rx_core_t *c)
{
    return &c->loop;
}

int rx_core_index(const rx_core_t *c)
{
    return c->index;
}

int rx_core_cpu(const rx_core_t *c)
{
    return c->cpu;
}
