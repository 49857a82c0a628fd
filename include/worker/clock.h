/* The worker's one clock for intervals and time-outs: CLOCK_MONOTONIC in nanoseconds. */
#ifndef VIRIDIAN_WORKER_CLOCK_H
#define VIRIDIAN_WORKER_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#endif
