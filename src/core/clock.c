/* Wall times as text: RFC 3339 in UTC, with microseconds or in whole
 * seconds, the two forms the dialects render. */
#include "core/clock.h"

#include <stdio.h>

/* "2025-03-01T10:00:00" into out; its length. */
static size_t rfc3339_seconds(int64_t us, char *out)
{
	time_t t = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&t, &tm);
	return strftime(out, CLOCK_RFC3339_LEN, "%Y-%m-%dT%H:%M:%S", &tm);
}

void clock_rfc3339(int64_t us, char *out)
{
	size_t n = rfc3339_seconds(us, out);
	snprintf(out + n, CLOCK_RFC3339_LEN - n, ".%06dZ", (int)(us % 1000000));
}

void clock_rfc3339_seconds(int64_t us, char *out)
{
	size_t n = rfc3339_seconds(us, out);
	snprintf(out + n, CLOCK_RFC3339_LEN - n, "Z");
}
