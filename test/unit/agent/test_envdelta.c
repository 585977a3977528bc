/* The login environment as a difference (src/agent/envdelta.c): what the
 * capture printed parsed strictly, the profile's changes kept without a
 * shell's own variables, and laid over a command's environment so that a
 * variable set on purpose (the request's, the sandbox's) wins and one that
 * still has the value the profile saw takes the profile's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "envdelta.h"

#define V(...) ((char *[]){ __VA_ARGS__, NULL })

static void expect_env(char **got, char *const *want)
{
	size_t i = 0;
	assert_non_null(got);
	for (; want[i]; i++) {
		if (!got[i])
			fail_msg("missing %s", want[i]);
		assert_string_equal(got[i], want[i]);
	}
	if (got[i])
		fail_msg("extra %s", got[i]);
}

static void test_parse(void **state)
{
	(void)state;
	static const char out[] = "A=1\0PATH=/x:/y\0EMPTY=\0EQ=a=b\0";
	char **e = envdelta_parse(out, sizeof(out) - 1);
	expect_env(e, V("A=1", "PATH=/x:/y", "EMPTY=", "EQ=a=b"));
	free(e);
	e = envdelta_parse("", 0);
	expect_env(e, V(NULL));
	free(e);
	/* no NUL at the end, no '=', an empty name, an empty entry */
	assert_null(envdelta_parse("A=1", 3));
	assert_null(envdelta_parse("A=1\0B\0", 6));
	assert_null(envdelta_parse("=1\0", 3));
	assert_null(envdelta_parse("A=1\0\0", 5));
}

static void test_diff(void **state)
{
	(void)state;
	char *base[] = { "PATH=/usr/bin:/bin", "HOME=/home/u", NULL };
	char *after[] = { "PATH=/usr/bin:/bin:/opt/tool/bin",
			  "HOME=/home/u",
			  "TOOL_HOME=/opt/tool",
			  "PWD=/home/u",
			  "OLDPWD=/",
			  "SHLVL=1",
			  "_=/usr/bin/env",
			  "LANG=C.UTF-8",
			  NULL };
	char **d = envdelta_diff(base, after);
	expect_env(d, V("PATH=/usr/bin:/bin:/opt/tool/bin", "TOOL_HOME=/opt/tool", "LANG=C.UTF-8"));
	free(d);
	d = envdelta_diff(after, after);
	expect_env(d, V(NULL));
	free(d);
	d = envdelta_diff(NULL, base); /* a copy */
	expect_env(d, base);
	free(d);
}

static void test_apply(void **state)
{
	(void)state;
	char *base[] = { "PATH=/usr/bin:/bin", "HOME=/home/u", NULL };
	char *delta[] = { "PATH=/usr/local/bin:/usr/bin:/bin", "TOOL=profile", "LANG=C.UTF-8", NULL };
	/* the sandbox's default PATH is what the profile saw: the profile's wins */
	char *env[] = { "PATH=/usr/bin:/bin", "HOME=/home/u", "X=1", NULL };
	char **e = envdelta_apply(env, base, delta);
	expect_env(e, V("PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/home/u", "X=1", "TOOL=profile",
			"LANG=C.UTF-8"));
	free(e);
	/* set on purpose (the request's or the sandbox's env): they win */
	char *mine[] = { "PATH=/mine", "TOOL=request", NULL };
	e = envdelta_apply(mine, base, delta);
	expect_env(e, V("PATH=/mine", "TOOL=request", "LANG=C.UTF-8"));
	free(e);
	/* nothing to change */
	char *all[] = { "PATH=/mine", "TOOL=request", "LANG=en", NULL };
	assert_null(envdelta_apply(all, base, delta));
	char *none[] = { NULL };
	assert_null(envdelta_apply(env, base, none));
	/* an empty environment takes the whole delta */
	e = envdelta_apply(none, base, delta);
	expect_env(e, delta);
	free(e);
	assert_string_equal(envdelta_get(env, "X", 1), "1");
	assert_null(envdelta_get(env, "HOM", 3));
	assert_null(envdelta_get(NULL, "X", 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_diff),
		cmocka_unit_test(test_apply),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
