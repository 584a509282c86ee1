/* wl/run.h — the prepare / execute / cleanup engine over an rx engine.
 *
 * A run owns per-core state (stores, data generators, slots, stats) that lives on the cores of
 * the rx engine given at creation; the control side (the thread calling wl_run_prepare/execute/
 * cleanup) drives phases by message and gathers statistics by message, never by reading core
 * memory. Each phase function blocks the calling thread until every core has finished (or the run
 * was aborted), running a private libuv loop for the control side; callbacks are called on the
 * calling thread.
 *
 * Errors: phase functions return 0, WL_EABORTED (wl_run_abort or Ctrl-C), WL_ETOOMANYERRORS
 * (error_handling.max_total_errors reached), WL_EPREPARE / WL_ECLEANUP / WL_ENOOBJECTS, or a
 * negative sto/uv code; wl_run_error_text() explains it.
 */
#ifndef WL_RUN_H
#define WL_RUN_H

#include <stdint.h>

#include "rx/engine.h"
#include "rx/log.h"
#include "wl/config.h"
#include "wl/stats.h"

typedef enum wl_phase { WL_PHASE_PREPARE = 0, WL_PHASE_EXECUTE, WL_PHASE_CLEANUP, WL_PHASE__COUNT } wl_phase_t;

const char *wl_phase_name(wl_phase_t p); /* "prepare", "execute", "cleanup" */

typedef struct wl_tick {
    wl_phase_t phase;
    uint64_t wall_ns;      /* rx_wall_ns() at the tick */
    uint64_t elapsed_ns;   /* since the phase started */
    uint64_t interval_ns;  /* covered by `delta` */
    const wl_stats_t *delta; /* ops completed in the interval, all cores merged exactly */
    uint64_t done, total;  /* prepare/cleanup: objects handled / to handle; execute: 0, 0 */
    uint64_t in_flight;    /* ops issued and not yet completed, all cores */
    int final;             /* the last tick of the phase */
} wl_tick_t;

typedef struct wl_run_cb {
    void *ud;
    /* Every tick_ns while a phase runs, and once at its end with the remainder. */
    void (*on_tick)(void *ud, const wl_tick_t *t);
    /* Human-readable notices (resolution of globs, skipped objects, warnings). */
    void (*on_message)(void *ud, rx_log_level_t level, const char *text);
} wl_run_cb_t;

typedef struct wl_run_opts {
    const wl_config_t *cfg;   /* borrowed; must outlive the run */
    rx_engine_t *engine;      /* borrowed, started */
    uint64_t seed;            /* data seed: mix of time, pid, agent id */
    uint64_t tick_ns;         /* default 1 s */
    /* Distributed runs: this agent handles the prepared objects (create, delete, DELETE ops on
     * prepared sets, DELETE of listed keys) whose index % agent_count == agent_index; GET/STAT
     * still pick from the whole set. agent_count 0 means 1; agent_index >= count is -EINVAL. */
    uint32_t agent_index, agent_count;
    wl_run_cb_t cb;
} wl_run_opts_t;

typedef struct wl_prepare_summary {
    uint64_t created, existed, failed;
    uint64_t bytes_created;
    uint64_t wall_ns;
} wl_prepare_summary_t;

typedef struct wl_run wl_run_t;

int wl_run_create(const wl_run_opts_t *o, wl_run_t **out);
/* Creates missing prepared objects. Returns 0 also when nothing was to be done. */
int wl_run_prepare(wl_run_t *r);
/* Runs the weighted mix for cfg->duration (or until abort). */
int wl_run_execute(wl_run_t *r);
/* Length of the next execute phases (a distributed stage's `duration`); 0 = cfg->duration. */
void wl_run_set_duration(wl_run_t *r, uint64_t ns);
/* Removes prepared objects and the objects/dirs the execute phase created. */
int wl_run_cleanup(wl_run_t *r);
/* Async-signal-safe and thread-safe: stops the running phase; in-flight ops finish. */
void wl_run_abort(wl_run_t *r);
int wl_run_aborted(const wl_run_t *r);

/* Totals of a finished phase (all cores merged), NULL if the phase did not run. */
const wl_stats_t *wl_run_stats(const wl_run_t *r, wl_phase_t p);
uint64_t wl_run_wall_ns(const wl_run_t *r, wl_phase_t p);
const wl_prepare_summary_t *wl_run_prepare_summary(const wl_run_t *r);
/* Explanation of the last failure ("" if none). */
const char *wl_run_error_text(const wl_run_t *r);
/* Frees everything; the engine must still be running (core state is freed on the cores). */
void wl_run_destroy(wl_run_t *r);

#endif
