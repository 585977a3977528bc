/* Kubernetes quantities as the Hermes SDK sends spec.cpu and spec.memory
 * ("500m", "2", "1.5", "512Mi", "1G", "1e3"): a decimal number, then a
 * binary suffix (Ki..Ei, powers of 1024), a decimal one (m, k, M..E, powers
 * of 1000) or an exponent (e3, E-2). Exact integer arithmetic, rounded up
 * as Kubernetes rounds a value to its scale. */
#include <stdint.h>
#include <string.h>

#include "internal.h"

#define DIGITS_MAX 18 /* significant digits: the mantissa stays below 10^18 */
#define EXP_MAX	   30

struct quantity {
	uint64_t mant; /* value = mant × 10^exp10 × 1024^pow1024 */
	int exp10;
	int pow1024;
};

static int parse_suffix(const char *s, size_t len, struct quantity *q)
{
	static const struct {
		const char *name;
		int exp10, pow1024;
	} suffixes[] = {
		{ "", 0, 0 },	{ "m", -3, 0 }, { "k", 3, 0 },	{ "M", 6, 0 },	{ "G", 9, 0 },
		{ "T", 12, 0 }, { "P", 15, 0 }, { "E", 18, 0 }, { "Ki", 0, 1 }, { "Mi", 0, 2 },
		{ "Gi", 0, 3 }, { "Ti", 0, 4 }, { "Pi", 0, 5 }, { "Ei", 0, 6 },
	};
	for (size_t i = 0; i < ARRAY_LEN(suffixes); i++) {
		if (strlen(suffixes[i].name) == len && memcmp(suffixes[i].name, s, len) == 0) {
			q->exp10 += suffixes[i].exp10;
			q->pow1024 = suffixes[i].pow1024;
			return 0;
		}
	}
	/* an exponent: e or E, an optional sign, digits */
	if (len < 2 || (s[0] != 'e' && s[0] != 'E'))
		return -1;
	size_t i = 1;
	int sign = 1;
	if (s[i] == '+' || s[i] == '-')
		sign = s[i++] == '-' ? -1 : 1;
	if (i == len)
		return -1;
	int e = 0;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9' || e > EXP_MAX)
			return -1;
		e = e * 10 + (s[i] - '0');
	}
	if (e > EXP_MAX)
		return -1;
	q->exp10 += sign * e;
	return 0;
}

static int parse_quantity(const char *s, size_t len, struct quantity *q)
{
	memset(q, 0, sizeof(*q));
	size_t i = 0;
	if (i < len && s[i] == '+')
		i++;
	int digits = 0, significant = 0;
	bool point = false;
	for (; i < len; i++) {
		if (s[i] == '.' && !point) {
			point = true;
			continue;
		}
		if (s[i] < '0' || s[i] > '9')
			break;
		digits++;
		if (q->mant == 0 && s[i] == '0') {
			if (point)
				q->exp10--;
			continue;
		}
		if (++significant > DIGITS_MAX)
			return -1;
		q->mant = q->mant * 10 + (uint64_t)(s[i] - '0');
		if (point)
			q->exp10--;
	}
	if (digits == 0)
		return -1;
	return parse_suffix(s + i, len - i, q);
}

/* q × 10^scale, rounded up, into *out: -1 when it does not fit 64 bits. */
static int quantity_scaled(const struct quantity *q, int scale, uint64_t *out)
{
	const unsigned __int128 max = UINT64_MAX;
	unsigned __int128 v = q->mant;
	/* no check here: a fraction's digits ("1.50000000000Gi") may pass 64 bits
	 * before the division by their 10s; below 10^18 × 1024^6 < 2^120 fits */
	for (int i = 0; i < q->pow1024; i++)
		v *= 1024;
	int e = q->exp10 + scale;
	for (; e > 0 && v; e--) {
		v *= 10;
		if (v > max)
			return -1;
	}
	bool rest = false;
	for (; e < 0 && v; e++) {
		rest |= v % 10 != 0;
		v /= 10;
	}
	if (e < 0) /* it went to 0 before its scale: a remainder rounds up to 1 */
		rest = rest || q->mant != 0;
	v += rest;
	if (v > max)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

int hermes_quantity_cpu(const char *s, size_t len, uint64_t *nano_cpus)
{
	struct quantity q;
	return parse_quantity(s, len, &q) == 0 && quantity_scaled(&q, 9, nano_cpus) == 0 ? 0 : -1;
}

int hermes_quantity_memory(const char *s, size_t len, uint64_t *bytes)
{
	struct quantity q;
	return parse_quantity(s, len, &q) == 0 && quantity_scaled(&q, 0, bytes) == 0 ? 0 : -1;
}
