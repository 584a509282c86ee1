#include <time.h>

#include "rx/time.h"

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    /* Cannot fail for these clocks on Linux. */
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t rx_now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

uint64_t rx_wall_ns(void)
{
    return clock_ns(CLOCK_REALTIME);
}
