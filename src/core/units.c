/* Human units in configuration and templates: durations and byte sizes.
 * Parsing is strict (no sign, no spaces, no unknown unit) and overflow-checked,
 * so a typo in the environment stops start-up instead of becoming a huge value. */
#include "core/units.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct unit {
	const char *name;
	uint64_t mult;
};

static const char *parse_number(const char *p, uint64_t *whole, uint64_t *frac, uint64_t *frac_scale);
static int scale(uint64_t whole, uint64_t frac, uint64_t frac_scale, uint64_t mult, uint64_t *out);
static const struct unit *match_unit(const struct unit *units, const char *p, size_t *len, bool icase);

/* Longest names first so "ms" wins over "m". */
static const struct unit duration_units[] = {
	{ "ms", 1 }, { "s", 1000 }, { "m", 60 * 1000 }, { "h", 3600 * 1000 }, { "d", 24 * 3600 * 1000 },
	{ NULL, 0 },
};

/* Sizes: a single letter (k, m, g, t) and the IEC forms (KiB, MiB, ...) are
 * binary, 1024-based, as Docker reads "--memory 512m"; the two-letter SI forms
 * (KB, MB, GB, TB) are decimal, 1000-based, as devcontainer.json's
 * hostRequirements.memory ("4gb") is usually meant. Case does not matter. */
static const struct unit size_units[] = {
	{ "kib", 1ull << 10 },
	{ "mib", 1ull << 20 },
	{ "gib", 1ull << 30 },
	{ "tib", 1ull << 40 },
	{ "kb", 1000ull },
	{ "mb", 1000ull * 1000 },
	{ "gb", 1000ull * 1000 * 1000 },
	{ "tb", 1000ull * 1000 * 1000 * 1000 },
	{ "k", 1ull << 10 },
	{ "m", 1ull << 20 },
	{ "g", 1ull << 30 },
	{ "t", 1ull << 40 },
	{ "b", 1 },
	{ NULL, 0 },
};

/* Reads digits with an optional fraction ("1.5"). The fraction keeps at most
 * 9 digits; more precision than a nanosecond or a byte is meaningless here. */
static const char *parse_number(const char *p, uint64_t *whole, uint64_t *frac, uint64_t *frac_scale)
{
	const char *start = p;
	uint64_t w = 0;
	while (*p >= '0' && *p <= '9') {
		unsigned d = (unsigned)(*p - '0');
		if (w > (UINT64_MAX - d) / 10)
			return NULL;
		w = w * 10 + d;
		p++;
	}
	bool have_digits = p != start;
	uint64_t f = 0, fs = 1;
	if (*p == '.') {
		p++;
		const char *fstart = p;
		while (*p >= '0' && *p <= '9') {
			if (fs < 1000000000ull) {
				f = f * 10 + (uint64_t)(*p - '0');
				fs *= 10;
			}
			p++;
		}
		if (p == fstart)
			return NULL;
		have_digits = true;
	}
	if (!have_digits)
		return NULL;
	*whole = w;
	*frac = f;
	*frac_scale = fs;
	return p;
}

/* whole.frac * mult, truncated, with overflow checks. */
static int scale(uint64_t whole, uint64_t frac, uint64_t frac_scale, uint64_t mult, uint64_t *out)
{
	if (mult != 0 && whole > UINT64_MAX / mult)
		return -1;
	uint64_t v = whole * mult;
	/* frac < frac_scale <= 1e9 and mult <= 2^40, so the product fits. */
	unsigned __int128 fp = (unsigned __int128)frac * mult / frac_scale;
	if (fp > UINT64_MAX - v)
		return -1;
	*out = v + (uint64_t)fp;
	return 0;
}

static const struct unit *match_unit(const struct unit *units, const char *p, size_t *len, bool icase)
{
	for (const struct unit *u = units; u->name; u++) {
		size_t n = strlen(u->name);
		if ((icase ? strncasecmp(p, u->name, n) : strncmp(p, u->name, n)) == 0) {
			*len = n;
			return u;
		}
	}
	return NULL;
}

int duration_parse(const char *s, int64_t *out_ms)
{
	if (!s || !*s)
		return -1;
	uint64_t whole, frac, fs, total = 0, part;
	const char *p = parse_number(s, &whole, &frac, &fs);
	if (!p)
		return -1;
	if (*p == '\0') {
		/* a bare number is seconds */
		if (scale(whole, frac, fs, 1000, &total) != 0 || total > INT64_MAX)
			return -1;
		*out_ms = (int64_t)total;
		return 0;
	}
	for (;;) {
		size_t ulen;
		const struct unit *u = match_unit(duration_units, p, &ulen, false);
		if (!u)
			return -1;
		p += ulen;
		if (scale(whole, frac, fs, u->mult, &part) != 0 || part > UINT64_MAX - total)
			return -1;
		total += part;
		if (*p == '\0')
			break;
		p = parse_number(p, &whole, &frac, &fs);
		if (!p)
			return -1;
	}
	if (total > INT64_MAX)
		return -1;
	*out_ms = (int64_t)total;
	return 0;
}

int size_parse(const char *s, uint64_t *out_bytes)
{
	if (!s || !*s)
		return -1;
	uint64_t whole, frac, fs;
	const char *p = parse_number(s, &whole, &frac, &fs);
	if (!p)
		return -1;
	uint64_t mult = 1;
	if (*p) {
		size_t ulen;
		const struct unit *u = match_unit(size_units, p, &ulen, true);
		if (!u || p[ulen] != '\0')
			return -1;
		mult = u->mult;
	}
	return scale(whole, frac, fs, mult, out_bytes);
}

void duration_format(int64_t ms, char *buf, size_t cap)
{
	static const struct unit parts[] = {
		{ "h", 3600 * 1000 }, { "m", 60 * 1000 }, { "s", 1000 }, { "ms", 1 }
	};
	if (cap == 0)
		return;
	buf[0] = '\0';
	if (ms == 0) {
		snprintf(buf, cap, "0s");
		return;
	}
	size_t used = 0;
	uint64_t v;
	if (ms < 0) {
		used += (size_t)snprintf(buf, cap, "-");
		v = (uint64_t)0 - (uint64_t)ms; /* well defined for INT64_MIN too */
	} else {
		v = (uint64_t)ms;
	}
	for (size_t i = 0; i < ARRAY_LEN(parts) && v > 0; i++) {
		uint64_t n = v / parts[i].mult;
		v %= parts[i].mult;
		if (n == 0 || used >= cap)
			continue;
		used += (size_t)snprintf(buf + used, cap - used, "%llu%s", (unsigned long long)n,
					 parts[i].name);
	}
}
