/* Wall times as text: RFC 3339, UTC, the one format every dialect renders. */
#include "core/clock.h"

#include <stdio.h>

void clock_rfc3339(int64_t us, char *out)
{
	time_t t = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&t, &tm);
	size_t n = strftime(out, CLOCK_RFC3339_LEN, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, CLOCK_RFC3339_LEN - n, ".%06dZ", (int)(us % 1000000));
}
