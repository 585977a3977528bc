/* The clocks: monotonic for intervals and deadlines, real (wall) for times
 * shown to users and stored. */
#ifndef SANDBAR_CORE_CLOCK_H
#define SANDBAR_CORE_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t clock_ns(clockid_t which)
{
	struct timespec ts;
	clock_gettime(which, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t clock_mono_ms(void)
{
	return clock_ns(CLOCK_MONOTONIC) / 1000000;
}

static inline int64_t clock_mono_us(void)
{
	return clock_ns(CLOCK_MONOTONIC) / 1000;
}

static inline int64_t clock_real_ms(void)
{
	return clock_ns(CLOCK_REALTIME) / 1000000;
}

static inline int64_t clock_real_us(void)
{
	return clock_ns(CLOCK_REALTIME) / 1000;
}

#endif
