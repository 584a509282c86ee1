/* rx/time.h — clocks. Thread-safe, no allocation. */
#ifndef RX_TIME_H
#define RX_TIME_H

#include <stdint.h>

/* Monotonic nanoseconds (CLOCK_MONOTONIC). */
uint64_t rx_now_ns(void);
/* Wall-clock nanoseconds since the Unix epoch (CLOCK_REALTIME). */
uint64_t rx_wall_ns(void);

#endif
