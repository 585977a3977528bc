/* Human units in configuration: durations ("15m", "30s", "1h30m", "250ms";
 * a bare number is seconds) and sizes ("512m", "2g", "100MB", "1GiB"; a bare
 * number is bytes). */
#ifndef SANDBAR_CORE_UNITS_H
#define SANDBAR_CORE_UNITS_H

#include <stddef.h>
#include <stdint.h>

#include "core/check.h"

/* 0 on success, -1 on malformed input, overflow, or a negative value. */
MUST_USE int duration_parse(const char *s, int64_t *out_ms);
MUST_USE int size_parse(const char *s, uint64_t *out_bytes);
/* Formats as the shortest exact form ("15m", "1h30m", "250ms", "0s"). */
void duration_format(int64_t ms, char *buf, size_t cap);

#endif
