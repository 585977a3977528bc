/* Random bytes as a private preview's token (not NUL-terminated): no crash,
 * one of the verdicts, and never OK for bytes that are not what mint wrote. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "preview/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct preview_secret secret = { "fuzz-secret-fuzz-secret-fuzz-sec" };
	static const char id[] = "0b8e2f4c-1d2a-4c3b-9e8f-7a6b5c4d3e2f";
	enum preview_token_verdict v = preview_token_check((const char *)data, size, &secret, id, 3000, 0);
	CHECK(v <= PREVIEW_TOKEN_EXPIRED);
	if (v == PREVIEW_TOKEN_OK || v == PREVIEW_TOKEN_EXPIRED) {
		/* a signature that holds: the bytes are exactly a minted token */
		char want[PREVIEW_TOKEN_MAX];
		long long exp = 0;
		const char *dot = memchr(data, '.', size);
		CHECK(dot != NULL);
		for (const char *p = dot + 1; *p != '.'; p++)
			exp = exp * 10 + (*p - '0');
		preview_token_mint(want, &secret, id, 3000, exp);
		CHECK(strlen(want) == size && memcmp(want, data, size) == 0);
	}
	return 0;
}
