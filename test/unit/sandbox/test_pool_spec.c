/* SANDBAR_WARM_POOL as start-up checks it: "template=count" items, comma
 * separated, against the repository's own templates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "sandbox/service.h"
#include "sandbox/template.h"

static struct template_set *set;

static int setup(void **state)
{
	(void)state;
	static const struct template_policy strict = { 0 };
	set = template_set_load(SOURCE_ROOT "/devcontainers", &strict);
	return set ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	template_set_free(set);
	return 0;
}

static void check(const char *spec, const char *says)
{
	char err[256] = "";
	int rc = sandbox_pool_check(spec, set, err, sizeof(err));
	if (!says) {
		if (rc != 0)
			fail_msg("'%s' refused: %s", spec ? spec : "(null)", err);
		return;
	}
	if (rc == 0)
		fail_msg("'%s' accepted", spec);
	if (!strstr(err, says))
		fail_msg("'%s': '%s' does not say '%s'", spec, err, says);
}

static void test_good(void **state)
{
	(void)state;
	check(NULL, NULL);
	check("", NULL);
	check("base=4", NULL);
	check("base=4,python=2", NULL);
	check("base=0", NULL);
	check("base=256", NULL);
	check("base=1,base=2", NULL); /* the last one counts */
}

static void test_bad(void **state)
{
	(void)state;
	check("nope=1", "no template named 'nope'");
	check("base", "'base' is not template=count");
	check("=3", "'=3' is not template=count");
	check("base=", "'base=' is not template=count");
	check("base=x", "is not template=count");
	check("base=-1", "is not template=count");
	check("base=257", "is not template=count (0 to 256)");
	check("base=2 ", "is not template=count");
	check("base=2,", "an empty or overlong item");
	check(",base=2", "an empty or overlong item");
	check("base=2,,python=1", "an empty or overlong item");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_bad),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
