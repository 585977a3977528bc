/* Private previews' tokens: minted for one sandbox port until a time,
 * checked against the host's sandbox and port. */
#include "preview/token.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/sha256.h"

static void sign(const struct preview_secret *secret, const char *sandbox_id, int port, int64_t expires_s,
		 char hex[65])
{
	char msg[128];
	int n = snprintf(msg, sizeof(msg), "sandbar-preview\n%s\n%d\n%" PRId64, sandbox_id, port, expires_s);
	CHECK(n > 0 && (size_t)n < sizeof(msg));
	unsigned char mac[32];
	hmac_sha256(secret->key, sizeof(secret->key), msg, (size_t)n, mac);
	sha256_hex(mac, hex);
}

void preview_token_mint(char out[PREVIEW_TOKEN_MAX], const struct preview_secret *secret,
			const char *sandbox_id, int port, int64_t expires_s)
{
	char hex[65];
	sign(secret, sandbox_id, port, expires_s, hex);
	int n = snprintf(out, PREVIEW_TOKEN_MAX, "%d.%" PRId64 ".%s", port, expires_s, hex);
	CHECK(n > 0 && n < PREVIEW_TOKEN_MAX);
}

/* A decimal number of 1..max_digits digits, no sign, no leading zero. */
static bool number(const char **p, const char *end, int max_digits, int64_t *out)
{
	const char *s = *p;
	int64_t v = 0;
	int digits = 0;
	while (s < end && *s >= '0' && *s <= '9') {
		if (++digits > max_digits || (digits == 2 && v == 0))
			return false;
		v = v * 10 + (*s++ - '0');
	}
	if (digits == 0)
		return false;
	*p = s;
	*out = v;
	return true;
}

enum preview_token_verdict preview_token_check(const char *token, size_t len,
					       const struct preview_secret *secret, const char *sandbox_id,
					       int port, int64_t now_s)
{
	const char *p = token, *end = token + len;
	int64_t tport, expires;
	if (!number(&p, end, 5, &tport) || tport < 1 || tport > 65535 || p == end || *p++ != '.' ||
	    !number(&p, end, 18, &expires) || p == end || *p++ != '.' || end - p != 64)
		return PREVIEW_TOKEN_MALFORMED;
	for (const char *h = p; h < end; h++)
		if (!((*h >= '0' && *h <= '9') || (*h >= 'a' && *h <= 'f')))
			return PREVIEW_TOKEN_MALFORMED;
	char want[65];
	sign(secret, sandbox_id, (int)tport, expires, want);
	unsigned char diff = 0;
	for (size_t i = 0; i < 64; i++)
		diff |= (unsigned char)(want[i] ^ p[i]);
	if (diff != 0 || tport != port)
		return PREVIEW_TOKEN_WRONG;
	return expires > now_s ? PREVIEW_TOKEN_OK : PREVIEW_TOKEN_EXPIRED;
}
