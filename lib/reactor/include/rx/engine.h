/* rx/engine.h — one libuv loop per core, shared nothing.
 *
 * An engine owns N core threads. Each core runs its own uv_loop_t on its own thread, pinned to a
 * CPU (pthread_setaffinity_np; pinning failure is logged, not fatal). Code reaches a core only by
 * posting to it (rx_core_post); whatever runs there owns the core's state and must not be touched
 * from other threads.
 *
 * Lifecycle (control thread): rx_engine_create → rx_engine_start → ... → rx_engine_stop (posts a
 * stop to each core; each core closes every handle still open on its loop, runs its loop until
 * empty and exits) → rx_engine_destroy (joins threads, frees). Handles that users open on a core's
 * loop are closed by the engine at stop if still open, with uv_close(h, NULL): no user close
 * callback runs for them, so their memory must outlive rx_engine_destroy (or be freed by the user
 * after it). To clean up properly, post a message that closes your handles (with your own close
 * callbacks) before calling rx_engine_stop: the mailbox is FIFO per posting thread, so it runs
 * before the stop. Messages posted after the stop was queued run with closing=1.
 *
 * File I/O and DNS use libuv's global thread pool; call rx_threadpool_size() before any loop runs.
 */
#ifndef RX_ENGINE_H
#define RX_ENGINE_H

#include <stdint.h>
#include <uv.h>

#include "rx/mailbox.h"

typedef struct rx_engine rx_engine_t;
typedef struct rx_core rx_core_t;

typedef struct rx_engine_opts {
    int cores;   /* 0 = number of available CPUs (sched_getaffinity) */
    int pin;     /* pin core i to the i-th available CPU (default 1 through rx_engine_opts_init) */
} rx_engine_opts_t;

void rx_engine_opts_init(rx_engine_opts_t *o);
/* Number of CPUs this process may run on. */
int rx_cpu_count(void);
/* Sets UV_THREADPOOL_SIZE (wanted clamped to 1..1024) unless already set in the environment, in
 * which case the value there wins. Calls setenv(): main thread, before other threads exist and
 * before any thread-pool work is queued. Returns the effective size (as libuv will parse it). */
int rx_threadpool_size(int wanted);

/* Control thread. o may be NULL (defaults). Returns 0, RX_EINVAL (cores < 0 or > 4096) or
 * RX_ENOMEM. Cores exist (rx_engine_core) but cannot be posted to until started. */
int rx_engine_create(const rx_engine_opts_t *o, rx_engine_t **out);
/* Control thread. Starts all core threads; returns when every core's loop is running.
 * Returns 0, RX_ESTATE (already started), RX_ESHUTDOWN (stopped before start), RX_ETHREAD, or a
 * libuv code from a core's loop init; on failure every started core has been stopped and joined,
 * and the engine can only be destroyed. */
int rx_engine_start(rx_engine_t *e);
/* Thread-safe (also from a core), idempotent, does not wait. Asks all cores to close their
 * handles and exit; a core logs an error if its loop still cannot be closed. */
void rx_engine_stop(rx_engine_t *e);
/* Joins (stopping first if needed) and frees. Control thread only, never from a core. After it,
 * core pointers are dangling. */
void rx_engine_destroy(rx_engine_t *e);

int rx_engine_ncores(const rx_engine_t *e);
rx_core_t *rx_engine_core(rx_engine_t *e, int i);

/* Thread-safe, until rx_engine_destroy. Runs fn(arg, 0) on the core's thread; fn(arg, 1) (also on
 * the core's thread) if the core stopped before it ran: then fn must only release arg.
 * Returns 0 (arg now belongs to fn), RX_EINVAL, RX_ENOMEM, RX_ESTATE (engine not started) or
 * RX_ESHUTDOWN (core stopped; fn will not run, arg stays the caller's). */
int rx_core_post(rx_core_t *c, rx_msg_fn fn, void *arg);
/* The loop may only be used on the core's thread. */
uv_loop_t *rx_core_loop(rx_core_t *c);
/* Any thread. */
int rx_core_index(const rx_core_t *c);
/* CPU the core is pinned to, or -1. Any thread once rx_engine_start has returned. */
int rx_core_cpu(const rx_core_t *c);

#endif
