/* Random bytes (not NUL-terminated, NULs allowed: a JSON string's length) as
 * a Kubernetes quantity, read as nano CPUs and as bytes. No crash, and an
 * oracle of its own: the grammar checked here ([+]digits[.digits], then a
 * suffix or an exponent), the number read by strtold and scaled in long
 * double; what parses is that value rounded up (within long double's error),
 * what fits 64 bits and keeps the parser's bounds (18 significant digits,
 * exponents to 30) parses, and nothing else does. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <math.h>

#include "../../src/hermes/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct expect {
	bool grammar;	    /* the bytes are a quantity's grammar */
	bool bounded;	    /* and within the parser's bounds */
	long double lo, hi; /* the value at scale 0, with long double's error either side */
};

static void expect_of(const char *s, size_t len, struct expect *x)
{
	memset(x, 0, sizeof(*x));
	/* the number: [+], digits with at most one point; significant digits
	 * from the first that is not 0 */
	const char *p = s + (len > 0 && s[0] == '+'), *q = p, *dot = NULL, *first = NULL;
	while (q < s + len && ((*q >= '0' && *q <= '9') || (*q == '.' && !dot))) {
		if (*q == '.')
			dot = q;
		else if (!first && *q != '0')
			first = q;
		q++;
	}
	size_t digits = (size_t)(q - p) - (dot != NULL);
	size_t significant = first ? (size_t)(q - first) - (dot && dot > first) : 0;
	bool nonzero = first != NULL;
	if (digits == 0)
		return;
	size_t end = (size_t)(q - s), i;
	/* the suffixes as Kubernetes defines them, worked out rather than listed:
	 * none; m; k M G T P E, 1000 to the power of their place; Ki Mi Gi Ti Pi Ei,
	 * 1024 to the power of theirs */
	static const char decimal[] = "kMGTPE", binary[] = "KMGTPE";
	const char *suffix = s + end;
	size_t slen = len - end;
	int exp10 = 0, pow1024 = 0;
	bool found = slen == 0;
	if (slen == 1 && suffix[0] == 'm') {
		exp10 = -3;
		found = true;
	} else if (slen == 1 && suffix[0] != '\0' && strchr(decimal, suffix[0])) {
		exp10 = 3 * (int)(strchr(decimal, suffix[0]) - decimal + 1);
		found = true;
	} else if (slen == 2 && suffix[1] == 'i' && suffix[0] != '\0' && strchr(binary, suffix[0])) {
		pow1024 = (int)(strchr(binary, suffix[0]) - binary + 1);
		found = true;
	}
	bool exp_bounded = true;
	if (!found) {
		if (len - end < 2 || (s[end] != 'e' && s[end] != 'E'))
			return;
		i = end + 1;
		int sign = 1;
		if (s[i] == '+' || s[i] == '-')
			sign = s[i++] == '-' ? -1 : 1;
		if (i == len)
			return;
		long e = 0;
		for (; i < len; i++) {
			if (s[i] < '0' || s[i] > '9')
				return;
			if (e <= 1000)
				e = e * 10 + (s[i] - '0');
		}
		exp_bounded = e <= 30;
		exp10 = sign * (int)(e > 1000 ? 1000 : e);
	}
	x->grammar = true;
	x->bounded = exp_bounded && significant <= 18;
	if (!x->bounded)
		return;
	char *num = malloc(end + 1);
	CHECK(num != NULL);
	memcpy(num, s, end);
	num[end] = '\0';
	long double v = strtold(num, NULL);
	free(num);
	v *= powl(10.0L, (long double)exp10) * powl(1024.0L, (long double)pow1024);
	x->lo = v * (1.0L - 1e-15L);
	x->hi = v * (1.0L + 1e-15L);
	if (nonzero && x->hi < 1e-300L) /* gone below long double's range */
		x->hi = 1e-300L;
}

/* the parser's answer against the value at this scale */
static void check_scaled(const struct expect *x, int scale, int rc, uint64_t got)
{
	if (!x->grammar || !x->bounded) {
		CHECK(rc != 0);
		return;
	}
	long double m = powl(10.0L, (long double)scale);
	long double lo = ceill(x->lo * m), hi = ceill(x->hi * m);
	const long double max = 18446744073709551615.0L;
	if (hi <= max)
		CHECK(rc == 0);
	if (lo > max)
		CHECK(rc != 0);
	if (rc == 0)
		CHECK(lo <= (long double)got && (long double)got <= hi);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct expect x;
	expect_of(s, size, &x);
	uint64_t nanos = 0, bytes = 0;
	int rc_cpu = hermes_quantity_cpu(s, size, &nanos);
	int rc_mem = hermes_quantity_memory(s, size, &bytes);
	CHECK(rc_cpu == 0 || rc_cpu == -1);
	CHECK(rc_mem == 0 || rc_mem == -1);
	check_scaled(&x, 9, rc_cpu, nanos);
	check_scaled(&x, 0, rc_mem, bytes);
	if (rc_cpu == 0) /* what fits as nano CPUs fits as bytes, both rounded up */
		CHECK(rc_mem == 0 && bytes == nanos / 1000000000 + (nanos % 1000000000 != 0));
	return 0;
}
