/* loop_helpers.h — loop helpers shared by the reactor's stream tests (test_stream.c,
 * test_listen.c). Header-only, static inline; include after <cmocka.h> and <uv.h>. */
#ifndef RX_TEST_LOOP_HELPERS_H
#define RX_TEST_LOOP_HELPERS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "rx/log.h"

static inline void on_watchdog(uv_timer_t *t)
{
    (void)t; /* only wakes uv_run so the wait can check its condition */
}

/* Runs the loop until *flag >= want (want 0: until *flag is non-zero); fails after 15 s. */
static inline void run_until_n(uv_loop_t *loop, const int *flag, int want)
{
    uv_timer_t wd;
    uv_timer_init(loop, &wd);
    uv_timer_start(&wd, on_watchdog, 50, 50);
    uint64_t deadline = uv_hrtime() + 15ull * 1000000000ull;
    while ((want ? *flag < want : !*flag) && uv_hrtime() < deadline)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wd, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    assert_true(want ? *flag >= want : *flag != 0);
}

/* Runs the loop until *flag is non-zero; fails after 15 s. */
static inline void run_until(uv_loop_t *loop, const int *flag)
{
    run_until_n(loop, flag, 0);
}

static inline void walk_report(uv_handle_t *h, void *arg)
{
    (void)arg;
    fprintf(stderr, "open handle left: %s\n", uv_handle_type_name(h->type));
}

/* Drains the loop and asserts nothing is left open. */
static inline void loop_finish(uv_loop_t *loop)
{
    for (int i = 0; i < 100 && uv_run(loop, UV_RUN_NOWAIT) != 0; i++)
        usleep(1000);
    int r = uv_loop_close(loop);
    if (r != 0)
        uv_walk(loop, walk_report, NULL);
    assert_int_equal(r, 0);
}

/* Deterministic bytes for payload checks. */
static inline void fill_pattern(char *p, size_t n, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (char)(x >> 16);
    }
}

/* Logger for tests: silent unless RX_TEST_VERBOSE is set. */
static inline void quiet_logger(void *ud, rx_log_level_t level, const char *subsys, int core,
                                const char *msg)
{
    (void)ud;
    (void)core;
    if (getenv("RX_TEST_VERBOSE") != NULL)
        fprintf(stderr, "[%s] %s: %s\n", rx_log_level_name(level), subsys, msg);
}

#endif
