/* UTF-8 validation and sanitising: valid text untouched, every kind of bad
 * sequence (stray continuation, overlong, surrogate, > U+10FFFF, truncated,
 * NUL) replaced by U+FFFD one byte at a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/utf8.h"

static void check_sanitize(const char *in, size_t len, const char *want)
{
	char *out = utf8_sanitize(in, len);
	assert_string_equal(out, want);
	free(out);
}

static void test_valid_text_is_untouched(void **state)
{
	const char *s = "plain ascii, caf\xC3\xA9, \xE2\x82\xAC, \xF0\x9F\x98\x80";
	assert_int_equal(utf8_valid_prefix(s, strlen(s)), strlen(s));
	check_sanitize(s, strlen(s), s);
	check_sanitize("", 0, "");
}

static void test_bad_sequences_are_replaced(void **state)
{
	check_sanitize("a\x80z", 3, "a\xEF\xBF\xBDz");				   /* stray continuation */
	check_sanitize("\xC0\xAF", 2, "\xEF\xBF\xBD\xEF\xBF\xBD");		   /* overlong '/' */
	check_sanitize("\xED\xA0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"); /* surrogate */
	check_sanitize("\xF4\x90\x80\x80", 4,
		       "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"); /* > U+10FFFF */
	check_sanitize("ok\xE2\x82", 4, "ok\xEF\xBF\xBD\xEF\xBF\xBD");	    /* truncated at the end */
	check_sanitize("a\0b", 3,
		       "a\xEF\xBF\xBD"
		       "b"); /* NUL cannot go into text */
}

static void test_valid_prefix_stops_at_first_bad_byte(void **state)
{
	assert_int_equal(utf8_valid_prefix("ab\xFFzz", 5), 2);
	assert_int_equal(utf8_valid_prefix("\xE2\x82\xAC\xE2", 4), 3);
	assert_int_equal(utf8_valid_prefix("x\0y", 3), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_text_is_untouched),
		cmocka_unit_test(test_bad_sequences_are_replaced),
		cmocka_unit_test(test_valid_prefix_stops_at_first_bad_byte),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
