/* Kubernetes quantities as Hermes' spec.cpu and spec.memory: decimal and
 * binary suffixes, exponents, fractions rounded up to the unit, and what is
 * no quantity or does not fit 64 bits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

static uint64_t cpu(const char *s)
{
	uint64_t v = 12345;
	assert_int_equal(hermes_quantity_cpu(s, strlen(s), &v), 0);
	return v;
}

static uint64_t mem(const char *s)
{
	uint64_t v = 12345;
	assert_int_equal(hermes_quantity_memory(s, strlen(s), &v), 0);
	return v;
}

static void test_cpu(void **state)
{
	(void)state;
	assert_int_equal(cpu("500m"), 500000000);
	assert_int_equal(cpu("250m"), 250000000);
	assert_int_equal(cpu("2"), 2000000000);
	assert_int_equal(cpu("1.5"), 1500000000);
	assert_int_equal(cpu("0.1"), 100000000);
	assert_int_equal(cpu(".5"), 500000000);
	assert_int_equal(cpu("+1"), 1000000000);
	assert_int_equal(cpu("1e3"), 1000000000000ULL);
	assert_int_equal(cpu("100e-3"), 100000000);
	assert_int_equal(cpu("0"), 0);
	assert_int_equal(cpu("0.0000000001"), 1); /* rounded up to a nano CPU */
	assert_int_equal(cpu("1k"), 1000000000000ULL);
}

static void test_memory(void **state)
{
	(void)state;
	assert_int_equal(mem("512Mi"), 536870912);
	assert_int_equal(mem("4Gi"), 4294967296ULL);
	assert_int_equal(mem("1G"), 1000000000);
	assert_int_equal(mem("1Ki"), 1024);
	assert_int_equal(mem("1k"), 1000);
	assert_int_equal(mem("128974848"), 128974848);
	assert_int_equal(mem("129e6"), 129000000);
	assert_int_equal(mem("123M"), 123000000);
	assert_int_equal(mem("1.5Gi"), 1610612736);
	/* a fraction's zeros pass 64 bits before the division (found by fuzz_quantity) */
	assert_int_equal(mem("1.50000000000Gi"), 1610612736);
	assert_int_equal(mem("0.30000000Pi"), 337769972052788ULL);
	assert_int_equal(mem("0.5"), 1);  /* up to a whole byte */
	assert_int_equal(mem("500m"), 1); /* half a byte, as Kubernetes reads it */
	assert_int_equal(mem("1Ti"), 1099511627776ULL);
	assert_int_equal(mem("8Ei"), 9223372036854775808ULL);
	assert_int_equal(mem("0.000Mi"), 0);
	assert_int_equal(mem("007"), 7);
}

static void test_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"m",
		"Mi",
		"-1",
		"1.2.3",
		"1 Gi",
		" 1",
		"1Gi ",
		"1gi",
		"1mi",
		"1K",
		"1KiB",
		"1e",
		"1e+",
		"1e99",
		"1E999",
		"0x10",
		"abc",
		"1..",
		".",
		"1Zi",
		"16Ei",
		"1e1000",
		"2e19",
		"1,5",
		"1Gib",
		"1 ",
		"++1",
		"1e-",
		"1e+-3",
		"1234567890123456789", /* more digits than kept */
		"1e3m",		       /* an exponent or a suffix, not both */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v;
		if (hermes_quantity_memory(bad[i], strlen(bad[i]), &v) == 0)
			fail_msg("'%s' read as %llu bytes", bad[i], (unsigned long long)v);
	}
	uint64_t v;
	assert_int_equal(hermes_quantity_cpu("20G", 3, &v), -1); /* 2e19 nano CPUs: over 64 bits */
	assert_int_equal(hermes_quantity_cpu("18E", 3, &v), -1);
	/* the length given is the string: a NUL inside ends nothing */
	assert_int_equal(hermes_quantity_memory("1\0Gi", 4, &v), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cpu),
		cmocka_unit_test(test_memory),
		cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
