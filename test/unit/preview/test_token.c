/* Private previews' tokens: minted ones check for their sandbox and port
 * until they expire; anything else is malformed, wrong or expired. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "preview/token.h"

#define ID  "0b8e2f4c-1d2a-4c3b-9e8f-7a6b5c4d3e2f"
#define ID2 "0b8e2f4c-1d2a-4c3b-9e8f-7a6b5c4d3e20"

static const struct preview_secret secret = { "0123456789abcdef0123456789abcdef" };
static const struct preview_secret other = { "0123456789abcdef0123456789abcdeF" };

static enum preview_token_verdict check(const char *t, const struct preview_secret *s, const char *id,
					int port, int64_t now)
{
	return preview_token_check(t, strlen(t), s, id, port, now);
}

static void test_round_trip(void **state)
{
	char t[PREVIEW_TOKEN_MAX];
	(void)state;
	preview_token_mint(t, &secret, ID, 3000, 1800000000);
	assert_int_equal(strncmp(t, "3000.1800000000.", 16), 0);
	assert_int_equal(strlen(t), 16 + 64);
	assert_int_equal(check(t, &secret, ID, 3000, 1799999999), PREVIEW_TOKEN_OK);
	assert_int_equal(check(t, &secret, ID, 3000, 1800000000), PREVIEW_TOKEN_EXPIRED);
	assert_int_equal(check(t, &secret, ID, 3001, 1700000000), PREVIEW_TOKEN_WRONG);
	assert_int_equal(check(t, &secret, ID2, 3000, 1700000000), PREVIEW_TOKEN_WRONG);
	assert_int_equal(check(t, &other, ID, 3000, 1700000000), PREVIEW_TOKEN_WRONG);
	/* a later expiry with the old signature */
	char forged[PREVIEW_TOKEN_MAX];
	memcpy(forged, t, sizeof(forged));
	forged[5] = '9';
	assert_int_equal(check(forged, &secret, ID, 3000, 1700000000), PREVIEW_TOKEN_WRONG);
	/* one flipped signature digit */
	memcpy(forged, t, sizeof(forged));
	forged[strlen(forged) - 1] = forged[strlen(forged) - 1] == '0' ? '1' : '0';
	assert_int_equal(check(forged, &secret, ID, 3000, 1700000000), PREVIEW_TOKEN_WRONG);
	/* the length given, not the NUL, ends it */
	assert_int_equal(preview_token_check(t, strlen(t) - 1, &secret, ID, 3000, 1700000000),
			 PREVIEW_TOKEN_MALFORMED);
}

static void test_malformed(void **state)
{
	static const char sig[] = "0000000000000000000000000000000000000000000000000000000000000000";
	static const char *const cases[] = {
		"",
		"3000",
		"3000.1800000000",
		"3000.1800000000.abc",
		"0.1800000000.", /* port 0 */
		"65536.1800000000.",
		"03000.1800000000.",
		"3000.01800000000.",
		"+3000.1800000000.",
		"3000..",
		".1800000000.",
		"3000.1800000000x",
		"3000.1234567890123456789.", /* past 18 digits */
	};
	char t[200];
	(void)state;
	/* well formed, wrongly signed */
	snprintf(t, sizeof(t), "3000.1800000000.%s", sig);
	assert_int_equal(check(t, &secret, ID, 3000, 0), PREVIEW_TOKEN_WRONG);
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		size_t n = strlen(cases[i]);
		memcpy(t, cases[i], n + 1);
		if (n && cases[i][n - 1] == '.')
			strcat(t, sig);
		assert_int_equal(check(t, &secret, ID, 3000, 0), PREVIEW_TOKEN_MALFORMED);
	}
	/* upper-case hex is not ours */
	char ok[PREVIEW_TOKEN_MAX];
	preview_token_mint(ok, &secret, ID, 3000, 1800000000);
	for (char *p = ok + 16; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	assert_int_equal(check(ok, &secret, ID, 3000, 0), PREVIEW_TOKEN_MALFORMED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
