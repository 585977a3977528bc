/* Admission's arithmetic: the limit (overcommit × the host's memory, 0 when
 * off, saturating), the shortfall of an ask beside what the sandboxes hold,
 * and how many of the least recently active idle-stop sandboxes make room. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h"

#define GIB (1ull << 30)

static void test_limit(void **state)
{
	(void)state;
	assert_true(admission_limit(8, 16 * GIB) == 128 * GIB);
	assert_true(admission_limit(1.5, 2 * GIB) == 3 * GIB);
	assert_true(admission_limit(0.25, 4 * GIB) == GIB);
	assert_true(admission_limit(0, 16 * GIB) == 0); /* off */
	assert_true(admission_limit(8, 0) == 0);	/* host unknown */
	assert_true(admission_limit(1e300, UINT64_MAX / 2) == UINT64_MAX);
}

static void test_shortfall(void **state)
{
	(void)state;
	assert_true(admission_shortfall(10 * GIB, 6 * GIB, 4 * GIB) == 0); /* exactly full fits */
	assert_true(admission_shortfall(10 * GIB, 6 * GIB, 4 * GIB + 1) == 1);
	assert_true(admission_shortfall(10 * GIB, 0, 12 * GIB) == 2 * GIB);
	assert_true(admission_shortfall(10 * GIB, 14 * GIB, 2 * GIB) == 6 * GIB); /* already over */
	assert_true(admission_shortfall(UINT64_MAX - 1, UINT64_MAX - 1, 5) == 1); /* saturates */
	assert_true(admission_shortfall(10 * GIB, 0, 0) == 0);
}

static void test_pick(void **state)
{
	(void)state;
	const uint64_t mem[] = { 1 * GIB, 2 * GIB, 512 << 20, 4 * GIB };
	assert_int_equal(admission_pick(mem, 4, 1), 1);
	assert_int_equal(admission_pick(mem, 4, GIB), 1);
	assert_int_equal(admission_pick(mem, 4, GIB + 1), 2); /* just enough, in order */
	assert_int_equal(admission_pick(mem, 4, 3 * GIB), 2);
	assert_int_equal(admission_pick(mem, 4, 3 * GIB + 1), 3);
	assert_int_equal(admission_pick(mem, 4, 7 * GIB + (512 << 20)), 4);
	assert_int_equal(admission_pick(mem, 4, 7 * GIB + (512 << 20) + 1), 0); /* all would not do */
	assert_int_equal(admission_pick(mem, 0, 1), 0);
	assert_int_equal(admission_pick(mem, 4, 0), 0); /* nothing to free */
	const uint64_t huge[] = { UINT64_MAX, UINT64_MAX };
	assert_int_equal(admission_pick(huge, 2, UINT64_MAX), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limit),
		cmocka_unit_test(test_shortfall),
		cmocka_unit_test(test_pick),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
