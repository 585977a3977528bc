/* The clocks: monotonic for intervals and deadlines, real (wall) for times
 * shown to users and stored. */
#ifndef SANDBAR_CORE_CLOCK_H
#define SANDBAR_CORE_CLOCK_H

#include <stdint.h>
#include <sys/time.h>
#include <time.h>

/* A duration in milliseconds as libevent's timeval. */
static inline struct timeval clock_tv(int64_t ms)
{
	return (struct timeval){ .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
}

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

/* A wall time (Unix microseconds) as RFC 3339 in UTC with microseconds and
 * "Z" (2025-03-01T10:00:00.123456Z), what the dialects show (Go's
 * time.Parse(RFC3339) reads it); _seconds: whole seconds, truncated
 * (2025-03-01T10:00:00Z), where a dialect's documents say so. out holds
 * CLOCK_RFC3339_LEN bytes. */
#define CLOCK_RFC3339_LEN 40
void clock_rfc3339(int64_t us, char *out);
void clock_rfc3339_seconds(int64_t us, char *out);

#endif
