/* Durations and sizes: the accepted forms, the refused ones, overflow, and
 * formatting back to the shortest exact form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/units.h"

static void test_duration_valid(void **state)
{
	static const struct {
		const char *in;
		int64_t ms;
	} cases[] = {
		{ "15m", 15 * 60000 },
		{ "30s", 30000 },
		{ "1h30m", 5400000 },
		{ "250ms", 250 },
		{ "2h", 7200000 },
		{ "0", 0 },
		{ "45", 45000 },
		{ "1d", 86400000 },
		{ "1.5s", 1500 },
		{ "0.5", 500 },
		{ "1m30s250ms", 90250 },
		{ "0s", 0 },
		{ "9223372036854775ms", 9223372036854775 },
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		int64_t ms = -1;
		assert_int_equal(duration_parse(cases[i].in, &ms), 0);
		assert_int_equal(ms, cases[i].ms);
	}
}

static void test_duration_invalid(void **state)
{
	static const char *const bad[] = {
		"",
		"-5s",
		"+5s",
		"5 s",
		" 5s",
		"5x",
		"s",
		"1h-30m",
		"ms",
		"5S",
		"1.s",
		".",
		"5s ",
		"99999999999999999999",
		"9223372036854775808ms",
		"106751991167301d",
		"1e3s",
		"5sm",
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		int64_t ms = 42;
		assert_int_equal(duration_parse(bad[i], &ms), -1);
		assert_int_equal(ms, 42);
	}
	int64_t ms;
	assert_int_equal(duration_parse(NULL, &ms), -1);
}

static void test_size_valid(void **state)
{
	static const struct {
		const char *in;
		uint64_t bytes;
	} cases[] = {
		{ "512m", 512ull << 20 },
		{ "2g", 2ull << 30 },
		{ "2G", 2ull << 30 },
		{ "100MB", 100000000ull },
		{ "4gb", 4000000000ull },
		{ "1GiB", 1ull << 30 },
		{ "64k", 65536 },
		{ "64KiB", 65536 },
		{ "64kb", 64000 },
		{ "1t", 1ull << 40 },
		{ "123", 123 },
		{ "0", 0 },
		{ "10b", 10 },
		{ "1.5k", 1536 },
		{ "18446744073709551615", UINT64_MAX },
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		uint64_t b = 1;
		assert_int_equal(size_parse(cases[i].in, &b), 0);
		assert_true(b == cases[i].bytes);
	}
}

static void test_size_invalid(void **state)
{
	static const char *const bad[] = {
		"", "-1", "1x", "k", "1 k", "1kk", "1kbb", "18446744073709551616", "16777216t", "1.k", "0x10",
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		uint64_t b = 7;
		assert_int_equal(size_parse(bad[i], &b), -1);
		assert_true(b == 7);
	}
}

static void test_duration_format(void **state)
{
	static const struct {
		int64_t ms;
		const char *out;
	} cases[] = {
		{ 0, "0s" },	     { 900000, "15m" },	  { 5400000, "1h30m" }, { 250, "250ms" },
		{ 1500, "1s500ms" }, { 86400000, "24h" }, { 3600001, "1h1ms" }, { -30000, "-30s" },
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char buf[64];
		duration_format(cases[i].ms, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].out);
		if (cases[i].ms >= 0) {
			int64_t back;
			assert_int_equal(duration_parse(buf, &back), 0);
			assert_int_equal(back, cases[i].ms);
		}
	}
	char small[4];
	duration_format(5400000, small, sizeof(small)); /* truncates, stays terminated */
	assert_true(strlen(small) < sizeof(small));
	char big[64];
	duration_format(INT64_MIN, big, sizeof(big));
	assert_true(big[0] == '-');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_duration_valid),	cmocka_unit_test(test_duration_invalid),
		cmocka_unit_test(test_size_valid),	cmocka_unit_test(test_size_invalid),
		cmocka_unit_test(test_duration_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
