/* Unit tests for lib/reactor: errors, logging, clocks, mailbox, engine. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "rx/engine.h"
#include "rx/err.h"
#include "rx/log.h"
#include "rx/mailbox.h"
#include "rx/time.h"

/* ---- helpers ---- */

/* A counter other threads bump; the test thread waits for it with a timeout so a bug fails the
 * test instead of hanging it. */
typedef struct latch {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int count;
} latch_t;

static void latch_init(latch_t *l)
{
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
    l->count = 0;
}

static void latch_fini(latch_t *l)
{
    pthread_cond_destroy(&l->cond);
    pthread_mutex_destroy(&l->lock);
}

static void latch_add(latch_t *l, int n)
{
    pthread_mutex_lock(&l->lock);
    l->count += n;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

static int latch_get(latch_t *l)
{
    pthread_mutex_lock(&l->lock);
    int n = l->count;
    pthread_mutex_unlock(&l->lock);
    return n;
}

/* Returns 1 when count >= n within 10 s. */
static int latch_wait(latch_t *l, int n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    int ok = 1;
    pthread_mutex_lock(&l->lock);
    while (l->count < n) {
        if (pthread_cond_timedwait(&l->cond, &l->lock, &ts) == ETIMEDOUT) {
            ok = l->count >= n;
            break;
        }
    }
    pthread_mutex_unlock(&l->lock);
    return ok;
}

/* Logger that records what it got; thread-safe. */
typedef struct log_rec {
    pthread_mutex_t lock;
    int n;
    int nerror;
    int counts[5];
    int last_core;
    rx_log_level_t last_level;
    char last_subsys[32];
    char last_msg[2048];
} log_rec_t;

static log_rec_t g_log = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void rec_logger(void *ud, rx_log_level_t level, const char *subsys, int core,
                       const char *msg)
{
    log_rec_t *r = ud;
    pthread_mutex_lock(&r->lock);
    r->n++;
    if (level == RX_LOG_ERROR)
        r->nerror++;
    if ((int)level >= 0 && level <= RX_LOG_TRACE)
        r->counts[level]++;
    r->last_core = core;
    r->last_level = level;
    snprintf(r->last_subsys, sizeof r->last_subsys, "%s", subsys);
    snprintf(r->last_msg, sizeof r->last_msg, "%s", msg);
    pthread_mutex_unlock(&r->lock);
}

static void log_reset(rx_log_level_t max)
{
    pthread_mutex_lock(&g_log.lock);
    g_log.n = g_log.nerror = 0;
    memset(g_log.counts, 0, sizeof g_log.counts);
    g_log.last_core = -2;
    g_log.last_msg[0] = '\0';
    g_log.last_subsys[0] = '\0';
    pthread_mutex_unlock(&g_log.lock);
    rx_log_set(rec_logger, &g_log, max);
}

static int log_errors(void)
{
    pthread_mutex_lock(&g_log.lock);
    int n = g_log.nerror;
    pthread_mutex_unlock(&g_log.lock);
    return n;
}

static rx_engine_t *start_engine(int ncores)
{
    rx_engine_opts_t o;
    rx_engine_opts_init(&o);
    o.cores = ncores;
    rx_engine_t *e = NULL;
    assert_int_equal(rx_engine_create(&o, &e), 0);
    assert_non_null(e);
    assert_int_equal(rx_engine_start(e), 0);
    return e;
}

/* ---- errors ---- */

static void test_strerror(void **state)
{
    assert_string_equal(rx_strerror(0), "success");
    assert_string_equal(rx_strerror(RX_EINVAL), "invalid argument");
    assert_string_equal(rx_strerror(RX_ESHUTDOWN), "engine is shutting down");
    assert_string_equal(rx_strerror(RX_ETIMEDOUT), "operation timed out");
    assert_int_equal(RX_EINVAL, -10001);
    assert_string_equal(rx_strerror(UV_ENOENT), uv_strerror(UV_ENOENT));
    assert_string_equal(rx_strerror(UV_EOF), "end of file");
    assert_string_equal(rx_strerror(-ECONNREFUSED), uv_strerror(UV_ECONNREFUSED));
    /* Never NULL, never leaking, whatever the code. */
    const int weird[] = {1,      42,     -4095,  -4000,  -3999,           -9999,
                         -10000, -10009, -10500, -99999, -2147483647 - 1, 2147483647};
    for (size_t i = 0; i < sizeof weird / sizeof weird[0]; i++) {
        const char *s = rx_strerror(weird[i]);
        assert_non_null(s);
        assert_true(s[0] != '\0');
    }
}

static const char *sto_name(int code)
{
    switch (code) {
    case -11001:
        return "test: bad bucket";
    case -11002:
        return "test: bad key";
    default:
        return NULL;
    }
}

static void test_err_register(void **state)
{
    static const rx_err_table_t t = {.first = -11999, .last = -11001, .name = sto_name};
    assert_string_equal(rx_strerror(-11001), "unknown error");
    rx_err_register(&t);
    rx_err_register(&t); /* idempotent */
    rx_err_register(NULL);
    assert_string_equal(rx_strerror(-11001), "test: bad bucket");
    assert_string_equal(rx_strerror(-11002), "test: bad key");
    /* In range, but the table has no name for it. */
    assert_non_null(rx_strerror(-11500));
    assert_string_equal(rx_strerror(-12000), "unknown error");
    /* The rx range still wins. */
    assert_string_equal(rx_strerror(RX_ENOMEM), "out of memory");
}

/* ---- clocks ---- */

static void test_time(void **state)
{
    uint64_t a = rx_now_ns();
    struct timespec d = {0, 2000000};
    nanosleep(&d, NULL);
    uint64_t b = rx_now_ns();
    assert_true(b > a);
    assert_true(b - a >= 2000000u);
    assert_true(b - a < 5000000000u);
    uint64_t w = rx_wall_ns();
    assert_true(w > UINT64_C(1600000000) * 1000000000u); /* after 2020 */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t w2 = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    assert_true(w2 >= w && w2 - w < 1000000000u);
}

/* ---- logging ---- */

static void log_on_core_msg(void *arg, int closing)
{
    latch_t *l = arg;
    if (!closing)
        rx_log(RX_LOG_INFO, "probe", "from core %d", rx_core_self_index());
    latch_add(l, 1);
}

static void test_log(void **state)
{
    assert_string_equal(rx_log_level_name(RX_LOG_ERROR), "error");
    assert_string_equal(rx_log_level_name(RX_LOG_WARN), "warn");
    assert_string_equal(rx_log_level_name(RX_LOG_INFO), "info");
    assert_string_equal(rx_log_level_name(RX_LOG_DEBUG), "debug");
    assert_string_equal(rx_log_level_name(RX_LOG_TRACE), "trace");
    assert_non_null(rx_log_level_name((rx_log_level_t)77));

    /* No logger: dropped, not enabled. */
    rx_log_set(NULL, NULL, RX_LOG_TRACE);
    assert_false(rx_log_enabled(RX_LOG_ERROR));
    rx_log(RX_LOG_ERROR, "x", "dropped");

    log_reset(RX_LOG_INFO);
    assert_true(rx_log_enabled(RX_LOG_ERROR));
    assert_true(rx_log_enabled(RX_LOG_INFO));
    assert_false(rx_log_enabled(RX_LOG_DEBUG));
    rx_log(RX_LOG_DEBUG, "t", "filtered %d", 1);
    rx_log(RX_LOG_TRACE, "t", "filtered %d", 2);
    assert_int_equal(g_log.n, 0);
    rx_log(RX_LOG_WARN, "t", "hello %s %d", "world", 7);
    assert_int_equal(g_log.n, 1);
    assert_int_equal(g_log.last_level, RX_LOG_WARN);
    assert_int_equal(g_log.last_core, -1);
    assert_string_equal(g_log.last_subsys, "t");
    assert_string_equal(g_log.last_msg, "hello world 7");

    /* Long messages are truncated, never overflow. */
    char big[3000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    rx_log(RX_LOG_ERROR, NULL, "%s", big);
    assert_int_equal(g_log.n, 2);
    assert_string_equal(g_log.last_subsys, "");
    size_t len = strlen(g_log.last_msg);
    assert_true(len > 500 && len < 1024);
    assert_string_equal(g_log.last_msg + len - 3, "...");

    /* From core threads: the core index is reported. */
    log_reset(RX_LOG_INFO);
    rx_engine_t *e = start_engine(2);
    for (int i = 0; i < 2; i++) {
        latch_t l;
        latch_init(&l);
        assert_int_equal(rx_core_post(rx_engine_core(e, i), log_on_core_msg, &l), 0);
        assert_true(latch_wait(&l, 1));
        latch_fini(&l);
        pthread_mutex_lock(&g_log.lock);
        assert_int_equal(g_log.last_core, i);
        assert_string_equal(g_log.last_subsys, "probe");
        char want[32];
        snprintf(want, sizeof want, "from core %d", i);
        assert_string_equal(g_log.last_msg, want);
        pthread_mutex_unlock(&g_log.lock);
    }
    rx_engine_destroy(e);
    assert_int_equal(log_errors(), 0);
    rx_log_set(NULL, NULL, RX_LOG_ERROR);
}

/* ---- engine basics ---- */

static void test_cpu_count(void **state)
{
    int n = rx_cpu_count();
    assert_true(n >= 1);
    assert_true(n <= 4096);
}

static void noop_msg(void *arg, int closing) {}

static void test_engine_create_args(void **state)
{
    rx_engine_t *e = (rx_engine_t *)1;
    rx_engine_opts_t o;
    rx_engine_opts_init(&o);
    assert_int_equal(o.cores, 0);
    assert_int_equal(o.pin, 1);
    o.cores = -1;
    assert_int_equal(rx_engine_create(&o, &e), RX_EINVAL);
    assert_null(e);
    assert_int_equal(rx_engine_create(&o, NULL), RX_EINVAL);

    /* Default: one core per available CPU. Never started: destroy just frees. */
    assert_int_equal(rx_engine_create(NULL, &e), 0);
    assert_int_equal(rx_engine_ncores(e), rx_cpu_count());
    rx_core_t *c = rx_engine_core(e, 0);
    assert_non_null(c);
    assert_int_equal(rx_core_post(c, NULL, NULL), RX_EINVAL);
    assert_int_equal(rx_core_post(NULL, noop_msg, NULL), RX_EINVAL);
    /* Not started yet. */
    assert_int_equal(rx_core_post(c, noop_msg, NULL), RX_ESTATE);
    rx_engine_destroy(e);
    rx_engine_destroy(NULL);
    rx_engine_stop(NULL);
    assert_int_equal(rx_engine_start(NULL), RX_EINVAL);

    /* Stopped before start. */
    o.cores = 1;
    assert_int_equal(rx_engine_create(&o, &e), 0);
    rx_engine_stop(e);
    assert_int_equal(rx_engine_start(e), RX_ESHUTDOWN);
    rx_engine_destroy(e);
}

static void test_engine_start(void **state)
{
    log_reset(RX_LOG_WARN);
    rx_engine_t *e = start_engine(2);
    assert_int_equal(rx_engine_ncores(e), 2);
    assert_null(rx_engine_core(e, 2));
    assert_null(rx_engine_core(e, -1));
    for (int i = 0; i < 2; i++) {
        rx_core_t *c = rx_engine_core(e, i);
        assert_non_null(c);
        assert_int_equal(rx_core_index(c), i);
        assert_non_null(rx_core_loop(c));
        int cpu = rx_core_cpu(c);
        assert_true(cpu >= -1 && cpu < 4096);
    }
    assert_ptr_not_equal(rx_core_loop(rx_engine_core(e, 0)), rx_core_loop(rx_engine_core(e, 1)));
    assert_int_equal(rx_engine_start(e), RX_ESTATE);
    assert_int_equal(rx_core_self_index(), -1);
    rx_engine_destroy(e);
    assert_int_equal(log_errors(), 0);
    rx_log_set(NULL, NULL, RX_LOG_ERROR);
}

/* Pinning: with pinning on, cores with the same CPU count land on distinct CPUs, each the one the
 * thread reports through sched_getcpu(). */
typedef struct cpu_probe {
    latch_t done;
    int cpu[2];
    int allowed[2];
} cpu_probe_t;

static cpu_probe_t *g_cpu_probe;

static void cpu_probe_msg(void *arg, int closing)
{
    int i = (int)(intptr_t)arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    pthread_getaffinity_np(pthread_self(), sizeof set, &set);
    g_cpu_probe->allowed[i] = CPU_COUNT(&set);
    g_cpu_probe->cpu[i] = sched_getcpu();
    latch_add(&g_cpu_probe->done, 1);
}

static void test_engine_pinning(void **state)
{
    cpu_probe_t p;
    latch_init(&p.done);
    g_cpu_probe = &p;
    rx_engine_t *e = start_engine(2);
    for (int i = 0; i < 2; i++)
        assert_int_equal(rx_core_post(rx_engine_core(e, i), cpu_probe_msg, (void *)(intptr_t)i), 0);
    assert_true(latch_wait(&p.done, 2));
    for (int i = 0; i < 2; i++) {
        int pinned = rx_core_cpu(rx_engine_core(e, i));
        if (pinned >= 0) {
            assert_int_equal(p.allowed[i], 1);
            assert_int_equal(p.cpu[i], pinned);
        }
    }
    if (rx_cpu_count() >= 2 && rx_core_cpu(rx_engine_core(e, 0)) >= 0 &&
        rx_core_cpu(rx_engine_core(e, 1)) >= 0)
        assert_int_not_equal(rx_core_cpu(rx_engine_core(e, 0)), rx_core_cpu(rx_engine_core(e, 1)));
    rx_engine_destroy(e);
    latch_fini(&p.done);

    /* pin = 0: nothing pinned. */
    rx_engine_opts_t o;
    rx_engine_opts_init(&o);
    o.cores = 1;
    o.pin = 0;
    assert_int_equal(rx_engine_create(&o, &e), 0);
    assert_int_equal(rx_engine_start(e), 0);
    assert_int_equal(rx_core_cpu(rx_engine_core(e, 0)), -1);
    rx_engine_destroy(e);
}

/* ---- posting runs on the core's thread ---- */

typedef struct where {
    latch_t done;
    pthread_t main;
    pthread_t thread[2][3];
    int self[2][3];
    int not_main[2][3];
} where_t;

typedef struct where_msg {
    where_t *w;
    int core, k;
} where_msg_t;

static void where_fn(void *arg, int closing)
{
    where_msg_t *m = arg;
    if (!closing) {
        m->w->self[m->core][m->k] = rx_core_self_index();
        m->w->thread[m->core][m->k] = pthread_self();
        m->w->not_main[m->core][m->k] = !pthread_equal(pthread_self(), m->w->main);
        latch_add(&m->w->done, 1);
    }
    free(m);
}

static void test_post_runs_on_core(void **state)
{
    where_t w;
    memset(&w, 0, sizeof w);
    latch_init(&w.done);
    w.main = pthread_self();
    rx_engine_t *e = start_engine(2);
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 2; i++) {
            where_msg_t *m = malloc(sizeof *m);
            *m = (where_msg_t){&w, i, k};
            assert_int_equal(rx_core_post(rx_engine_core(e, i), where_fn, m), 0);
        }
    }
    assert_true(latch_wait(&w.done, 6));
    for (int i = 0; i < 2; i++) {
        for (int k = 0; k < 3; k++) {
            assert_int_equal(w.self[i][k], i);
            assert_true(w.not_main[i][k]);
            assert_true(pthread_equal(w.thread[i][k], w.thread[i][0]));
        }
    }
    assert_false(pthread_equal(w.thread[0][0], w.thread[1][0]));
    rx_engine_destroy(e);
    latch_fini(&w.done);
}

/* ---- mailbox drain: two producers, one core ---- */

#define PER_PRODUCER 50000

typedef struct drain {
    latch_t done;
    rx_core_t *core;
    int next[2]; /* core thread only: next sequence expected per producer */
    int out_of_order;
    int wrong_core;
    atomic_int post_failures;
    unsigned char seen[2][PER_PRODUCER];
} drain_t;

typedef struct producer {
    drain_t *d;
    int id;
} producer_t;

/* The message carries producer and sequence; the drain state is global to keep messages
 * allocation-free on the producer side (the mailbox still allocates its node). */
static drain_t *g_drain;

static void seq_fn(void *arg, int closing)
{
    uintptr_t v = (uintptr_t)arg;
    int id = (int)(v >> 24);
    int seq = (int)(v & 0xffffff);
    drain_t *d = g_drain;
    if (closing)
        return;
    if (rx_core_self_index() != rx_core_index(d->core))
        d->wrong_core++;
    if (seq != d->next[id])
        d->out_of_order++;
    d->next[id] = seq + 1;
    d->seen[id][seq]++;
    latch_add(&d->done, 0);
    if (d->next[0] == PER_PRODUCER && d->next[1] == PER_PRODUCER)
        latch_add(&d->done, 1);
}

static void *producer_main(void *arg)
{
    producer_t *p = arg;
    for (int seq = 0; seq < PER_PRODUCER; seq++) {
        uintptr_t v = ((uintptr_t)p->id << 24) | (uintptr_t)seq;
        if (rx_core_post(p->d->core, seq_fn, (void *)v) != 0)
            atomic_fetch_add(&p->d->post_failures, 1);
    }
    return NULL;
}

static void test_mailbox_drain(void **state)
{
    drain_t *d = calloc(1, sizeof *d);
    assert_non_null(d);
    latch_init(&d->done);
    atomic_init(&d->post_failures, 0);
    g_drain = d;
    rx_engine_t *e = start_engine(2);
    d->core = rx_engine_core(e, 1);
    pthread_t th[2];
    producer_t p[2] = {{d, 0}, {d, 1}};
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, producer_main, &p[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&d->post_failures), 0);
    assert_true(latch_wait(&d->done, 1));
    rx_engine_destroy(e); /* joins: the core's writes are visible now */
    assert_int_equal(d->out_of_order, 0);
    assert_int_equal(d->wrong_core, 0);
    for (int id = 0; id < 2; id++) {
        assert_int_equal(d->next[id], PER_PRODUCER);
        for (int s = 0; s < PER_PRODUCER; s++)
            if (d->seen[id][s] != 1)
                fail_msg("producer %d message %d ran %d times", id, s, d->seen[id][s]);
    }
    latch_fini(&d->done);
    free(d);
}

/* ---- a timer started on a core fires ---- */

typedef struct timer_ctx {
    uv_timer_t timer;
    latch_t fired;
    latch_t closed;
    int fired_on;
    int init_rc;
    uint64_t started_ns, fired_ns;
} timer_ctx_t;

static void timer_closed(uv_handle_t *h)
{
    timer_ctx_t *t = h->data;
    latch_add(&t->closed, 1);
}

static void timer_cb(uv_timer_t *h)
{
    timer_ctx_t *t = h->data;
    t->fired_on = rx_core_self_index();
    t->fired_ns = rx_now_ns();
    latch_add(&t->fired, 1);
    if (latch_get(&t->fired) == 3)
        uv_close((uv_handle_t *)h, timer_closed);
}

static rx_engine_t *g_timer_engine;

static void start_timer_msg(void *arg, int closing)
{
    timer_ctx_t *t = arg;
    if (closing)
        return;
    uv_loop_t *loop = rx_core_loop(rx_engine_core(g_timer_engine, rx_core_self_index()));
    /* No cmocka asserts here: they must run on the test thread. */
    t->init_rc = uv_timer_init(loop, &t->timer);
    t->timer.data = t;
    t->started_ns = rx_now_ns();
    if (t->init_rc == 0)
        t->init_rc = uv_timer_start(&t->timer, timer_cb, 20, 5);
}

static void test_timer_fires(void **state)
{
    timer_ctx_t t;
    memset(&t, 0, sizeof t);
    latch_init(&t.fired);
    latch_init(&t.closed);
    t.fired_on = -7;
    rx_engine_t *e = start_engine(2);
    g_timer_engine = e;
    assert_int_equal(rx_core_post(rx_engine_core(e, 1), start_timer_msg, &t), 0);
    /* The message runs before the first fire, so init_rc is set by then. */
    assert_true(latch_wait(&t.fired, 3));
    assert_true(latch_wait(&t.closed, 1));
    rx_engine_destroy(e);
    assert_int_equal(t.init_rc, 0);
    assert_int_equal(t.fired_on, 1);
    assert_true(t.fired_ns - t.started_ns >= 15000000u);
    assert_int_equal(latch_get(&t.fired), 3);
    latch_fini(&t.fired);
    latch_fini(&t.closed);
}

/* ---- stop closes handles that are still open ---- */

typedef struct open_handles {
    uv_timer_t timer;
    uv_idle_t idle;
    uv_timer_t inactive; /* initialized, never started */
    atomic_int ticks;
    latch_t *ready;
} open_handles_t;

static void noop_timer(uv_timer_t *h)
{
    open_handles_t *o = h->data;
    atomic_fetch_add(&o->ticks, 1);
}

static void noop_idle(uv_idle_t *h)
{
    open_handles_t *o = h->data;
    atomic_fetch_add(&o->ticks, 1);
    /* Keep the loop from spinning flat out on 2 cores. */
    struct timespec d = {0, 200000};
    nanosleep(&d, NULL);
}

static rx_engine_t *g_open_engine;

static void open_handles_msg(void *arg, int closing)
{
    open_handles_t *o = arg;
    if (closing) {
        latch_add(o->ready, 1);
        return;
    }
    uv_loop_t *loop = rx_core_loop(rx_engine_core(g_open_engine, rx_core_self_index()));
    uv_timer_init(loop, &o->timer);
    o->timer.data = o;
    uv_timer_start(&o->timer, noop_timer, 1, 1);
    uv_idle_init(loop, &o->idle);
    o->idle.data = o;
    uv_idle_start(&o->idle, noop_idle);
    uv_timer_init(loop, &o->inactive);
    latch_add(o->ready, 1);
}

static void test_stop_closes_open_handles(void **state)
{
    log_reset(RX_LOG_WARN);
    latch_t ready;
    latch_init(&ready);
    open_handles_t o[2];
    memset(o, 0, sizeof o);
    rx_engine_t *e = start_engine(2);
    g_open_engine = e;
    for (int i = 0; i < 2; i++) {
        o[i].ready = &ready;
        atomic_init(&o[i].ticks, 0);
        assert_int_equal(rx_core_post(rx_engine_core(e, i), open_handles_msg, &o[i]), 0);
    }
    assert_true(latch_wait(&ready, 2));
    /* Let the handles run a bit. */
    for (int spin = 0;
         spin < 1000 && (atomic_load(&o[0].ticks) < 5 || atomic_load(&o[1].ticks) < 5); spin++) {
        struct timespec d = {0, 1000000};
        nanosleep(&d, NULL);
    }
    assert_true(atomic_load(&o[0].ticks) >= 5);
    assert_true(atomic_load(&o[1].ticks) >= 5);
    rx_engine_stop(e);
    rx_engine_destroy(e); /* would hang if a handle kept a loop alive */
    for (int i = 0; i < 2; i++) {
        assert_true(uv_is_closing((uv_handle_t *)&o[i].timer));
        assert_true(uv_is_closing((uv_handle_t *)&o[i].idle));
        assert_true(uv_is_closing((uv_handle_t *)&o[i].inactive));
    }
    /* uv_loop_close failing is logged as an error. */
    assert_int_equal(log_errors(), 0);
    latch_fini(&ready);
    rx_log_set(NULL, NULL, RX_LOG_ERROR);
}

/* ---- stop: idempotent, from any thread, from a core ---- */

static void *stopper_main(void *arg)
{
    rx_engine_stop(arg);
    rx_engine_stop(arg);
    return NULL;
}

static void stop_from_core_msg(void *arg, int closing)
{
    if (!closing)
        rx_engine_stop(arg);
}

static void test_stop_idempotent(void **state)
{
    log_reset(RX_LOG_WARN);
    rx_engine_t *e = start_engine(2);
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, stopper_main, e), 0);
    rx_engine_stop(e);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    rx_engine_stop(e);
    rx_engine_destroy(e);

    /* A core may stop the engine itself. */
    e = start_engine(2);
    assert_int_equal(rx_core_post(rx_engine_core(e, 1), stop_from_core_msg, e), 0);
    rx_engine_destroy(e); /* joins after the core-initiated stop; would hang if it failed */

    /* Destroy alone stops. */
    e = start_engine(2);
    rx_engine_destroy(e);
    assert_int_equal(log_errors(), 0);
    rx_log_set(NULL, NULL, RX_LOG_ERROR);
}

/* ---- after stop: RX_ESHUTDOWN, and queued messages run with closing=1 ---- */

typedef struct gate {
    latch_t entered;
    latch_t open;
} gate_t;

static void gate_msg(void *arg, int closing)
{
    gate_t *g = arg;
    latch_add(&g->entered, 1);
    latch_wait(&g->open, 1);
}

typedef struct owned {
    latch_t *ran;
    atomic_int *closing_seen;
    atomic_int *on_core;
    char *payload;
} owned_t;

static void owned_msg(void *arg, int closing)
{
    owned_t *o = arg;
    if (closing)
        atomic_fetch_add(o->closing_seen, 1);
    if (rx_core_self_index() == 0)
        atomic_fetch_add(o->on_core, 1);
    latch_t *ran = o->ran;
    free(o->payload);
    free(o);
    latch_add(ran, 1);
}

static void test_post_after_stop(void **state)
{
    enum { N = 100 };
    gate_t g;
    latch_init(&g.entered);
    latch_init(&g.open);
    latch_t ran;
    latch_init(&ran);
    atomic_int closing_seen, on_core;
    atomic_init(&closing_seen, 0);
    atomic_init(&on_core, 0);

    rx_engine_t *e = start_engine(1);
    rx_core_t *c = rx_engine_core(e, 0);
    /* Hold the core so that the stop and the messages after it queue up behind the gate. */
    assert_int_equal(rx_core_post(c, gate_msg, &g), 0);
    assert_true(latch_wait(&g.entered, 1));
    rx_engine_stop(e);
    for (int i = 0; i < N; i++) {
        owned_t *o = malloc(sizeof *o);
        *o = (owned_t){&ran, &closing_seen, &on_core, malloc(64)};
        assert_int_equal(rx_core_post(c, owned_msg, o), 0);
    }
    latch_add(&g.open, 1);
    assert_true(latch_wait(&ran, N));
    assert_int_equal(atomic_load(&closing_seen), N);
    assert_int_equal(atomic_load(&on_core), N);

    /* The mailbox is closed now: posting fails and the caller keeps its argument. */
    int dummy = 0;
    assert_int_equal(rx_core_post(c, owned_msg, &dummy), RX_ESHUTDOWN);
    rx_engine_destroy(e);
    latch_fini(&g.entered);
    latch_fini(&g.open);
    latch_fini(&ran);
}

/* ---- a mailbox on a plain loop ---- */

typedef struct mb_test {
    rx_mailbox_t mb;
    int on_closed;
    int order[4];
} mb_test_t;

static void mb_rec(void *arg, int closing)
{
    int *slot = arg;
    *slot = closing ? 2 : 1;
}

static void mb_on_closed(rx_mailbox_t *mb)
{
    mb_test_t *t = (mb_test_t *)((char *)mb - offsetof(mb_test_t, mb));
    t->on_closed++;
}

static void *mb_poster(void *arg)
{
    mb_test_t *t = arg;
    for (int i = 0; i < 2; i++)
        rx_mailbox_post(&t->mb, mb_rec, &t->order[i]);
    return NULL;
}

static void test_mailbox_plain_loop(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    mb_test_t t;
    memset(&t, 0, sizeof t);
    assert_int_equal(rx_mailbox_init(NULL, &t.mb), RX_EINVAL);
    assert_int_equal(rx_mailbox_init(&loop, &t.mb), 0);
    assert_int_equal(rx_mailbox_post(&t.mb, NULL, NULL), RX_EINVAL);

    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, mb_poster, &t), 0);
    pthread_join(th, NULL);
    /* The wake-up is pending: one non-blocking run drains it. */
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(t.order[0], 1);
    assert_int_equal(t.order[1], 1);

    /* Queued but not yet run when the mailbox closes: runs with closing=1 before on_closed. */
    assert_int_equal(rx_mailbox_post(&t.mb, mb_rec, &t.order[2]), 0);
    rx_mailbox_close(&t.mb, mb_on_closed);
    rx_mailbox_close(&t.mb, mb_on_closed); /* idempotent */
    assert_int_equal(rx_mailbox_post(&t.mb, mb_rec, &t.order[3]), RX_ESHUTDOWN);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(t.order[2], 2);
    assert_int_equal(t.order[3], 0);
    assert_int_equal(t.on_closed, 1);
    assert_int_equal(uv_loop_close(&loop), 0);
    rx_mailbox_destroy(&t.mb);
}

/* ---- thread pool size (runs last: it edits the environment) ---- */

static void test_threadpool_size(void **state)
{
    char *saved = getenv("UV_THREADPOOL_SIZE") ? strdup(getenv("UV_THREADPOOL_SIZE")) : NULL;

    unsetenv("UV_THREADPOOL_SIZE");
    assert_int_equal(rx_threadpool_size(0), 1);
    assert_string_equal(getenv("UV_THREADPOOL_SIZE"), "1");
    unsetenv("UV_THREADPOOL_SIZE");
    assert_int_equal(rx_threadpool_size(-5), 1);
    unsetenv("UV_THREADPOOL_SIZE");
    assert_int_equal(rx_threadpool_size(5000), 1024);
    assert_string_equal(getenv("UV_THREADPOOL_SIZE"), "1024");
    unsetenv("UV_THREADPOOL_SIZE");
    assert_int_equal(rx_threadpool_size(16), 16);
    assert_string_equal(getenv("UV_THREADPOOL_SIZE"), "16");
    /* Already set: the environment wins and is left alone. */
    assert_int_equal(rx_threadpool_size(3), 16);
    assert_string_equal(getenv("UV_THREADPOOL_SIZE"), "16");
    setenv("UV_THREADPOOL_SIZE", "7", 1);
    assert_int_equal(rx_threadpool_size(64), 7);
    setenv("UV_THREADPOOL_SIZE", "0", 1);
    assert_int_equal(rx_threadpool_size(64), 1);
    setenv("UV_THREADPOOL_SIZE", "99999", 1);
    assert_int_equal(rx_threadpool_size(2), 1024);

    if (saved != NULL) {
        setenv("UV_THREADPOOL_SIZE", saved, 1);
        free(saved);
    } else {
        unsetenv("UV_THREADPOOL_SIZE");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_err_register),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_log),
        cmocka_unit_test(test_cpu_count),
        cmocka_unit_test(test_engine_create_args),
        cmocka_unit_test(test_engine_start),
        cmocka_unit_test(test_engine_pinning),
        cmocka_unit_test(test_post_runs_on_core),
        cmocka_unit_test(test_mailbox_drain),
        cmocka_unit_test(test_timer_fires),
        cmocka_unit_test(test_stop_closes_open_handles),
        cmocka_unit_test(test_stop_idempotent),
        cmocka_unit_test(test_post_after_stop),
        cmocka_unit_test(test_mailbox_plain_loop),
        cmocka_unit_test(test_threadpool_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
