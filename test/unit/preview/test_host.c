/* Preview host names: which Host headers name a sandbox port, which are the
 * API's, which are ours but malformed; and the URL of a port. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "preview/host.h"

#define ID "0b8e2f4c-1d2a-4c3b-9e8f-7a6b5c4d3e2f"

static enum preview_host_kind parse(const char *host, struct preview_target *t)
{
	return preview_host_parse(host, strlen(host), "preview.localhost", t);
}

static void test_ok(void **state)
{
	static const struct {
		const char *host;
		int port;
	} cases[] = {
		{ "3000-" ID ".preview.localhost", 3000 },
		{ "3000-" ID ".preview.localhost:8080", 3000 },
		{ "1-" ID ".preview.localhost.", 1 },
		{ "65535-" ID ".preview.localhost.:80", 65535 },
		{ "8080-0B8E2F4C-1D2A-4C3B-9E8F-7A6B5C4D3E2F.PREVIEW.LocalHost", 8080 },
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct preview_target t = { 0 };
		assert_int_equal(parse(cases[i].host, &t), PREVIEW_HOST_OK);
		assert_int_equal(t.port, cases[i].port);
		assert_string_equal(t.sandbox_id, ID);
	}
}

static void test_not_ours(void **state)
{
	static const char *const cases[] = {
		"localhost:8080",
		"127.0.0.1:8080",
		"[::1]:8080",
		"example.com",
		"3000-" ID ".preview.localhost.example.com",
		"3000-" ID ".xpreview.localhost", /* a suffix, not a subdomain */
		"preview.localhostx",
		"",
		"3000-" ID ".preview.localhost:80x", /* not a port: not a host name we know */
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct preview_target t = { .port = -7 };
		assert_int_equal(parse(cases[i], &t), PREVIEW_HOST_NONE);
		assert_int_equal(t.port, -7);
	}
}

static void test_bad(void **state)
{
	static const char *const cases[] = {
		"preview.localhost",
		"preview.localhost:8080",
		ID ".preview.localhost",				       /* no port */
		"0-" ID ".preview.localhost",				       /* port 0 */
		"03000-" ID ".preview.localhost",			       /* leading zero */
		"65536-" ID ".preview.localhost",			       /* too big */
		"123456-" ID ".preview.localhost",			       /* too long */
		"-" ID ".preview.localhost",				       /* empty port */
		"3000-" ID "0.preview.localhost",			       /* id too long */
		"3000-0b8e2f4c1d2a4c3b9e8f7a6b5c4d3e2f.preview.localhost",     /* no dashes */
		"3000-0b8e2f4c-1d2a-4c3b-9e8f-7a6b5c4d3e2g.preview.localhost", /* not hex */
		"a.3000-" ID ".preview.localhost",			       /* two labels */
		"3000-" ID ".a.preview.localhost",
		"x3000-" ID ".preview.localhost",
		"3000_" ID ".preview.localhost",
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct preview_target t = { .port = -7 };
		assert_int_equal(parse(cases[i], &t), PREVIEW_HOST_BAD);
		assert_int_equal(t.port, -7);
	}
}

static void test_length_is_respected(void **state)
{
	/* a Host value is not NUL-terminated where the parser stops */
	static const char host[] = "3000-" ID ".preview.localhostXYZ";
	struct preview_target t;
	(void)state;
	assert_int_equal(preview_host_parse(host, sizeof(host) - 4, "preview.localhost", &t),
			 PREVIEW_HOST_OK);
	assert_int_equal(preview_host_parse(host, sizeof(host) - 5, "preview.localhost", &t),
			 PREVIEW_HOST_NONE);
}

static void test_url(void **state)
{
	char buf[128];
	struct preview_public local = { "http", "preview.localhost", 8080 };
	struct preview_public real = { "https", "preview.example.com", 0 };
	(void)state;
	int n = preview_url(buf, sizeof(buf), &local, ID, 3000);
	assert_int_equal(n, (int)strlen(buf));
	assert_string_equal(buf, "http://3000-" ID ".preview.localhost:8080");
	assert_true(preview_url(buf, sizeof(buf), &real, ID, 443) > 0);
	assert_string_equal(buf, "https://443-" ID ".preview.example.com");
	assert_int_equal(preview_url(buf, 20, &real, ID, 443), -1);
	assert_true(preview_host_of(buf, sizeof(buf), &real, ID) > 0);
	assert_string_equal(buf, ID ".preview.example.com");

	/* what preview_url writes, preview_host_parse reads back */
	struct preview_target t;
	const char *host = buf + strlen("https://");
	assert_true(preview_url(buf, sizeof(buf), &real, ID, 5173) > 0);
	assert_int_equal(preview_host_parse(host, strlen(host), "preview.example.com", &t), PREVIEW_HOST_OK);
	assert_int_equal(t.port, 5173);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ok),  cmocka_unit_test(test_not_ours),
		cmocka_unit_test(test_bad), cmocka_unit_test(test_length_is_respected),
		cmocka_unit_test(test_url),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
