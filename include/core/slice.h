/* A borrowed byte range: parsed fields point into their buffer, never copied. */
#ifndef SANDBAR_CORE_SLICE_H
#define SANDBAR_CORE_SLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct slice {
	const char *ptr;
	size_t len;
};

static inline struct slice slice_from(const char *s)
{
	return (struct slice){ s, s ? strlen(s) : 0 };
}

static inline bool slice_eq(struct slice a, const char *s)
{
	size_t n = strlen(s);
	return a.len == n && memcmp(a.ptr, s, n) == 0;
}

#endif
