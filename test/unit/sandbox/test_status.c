/* The sandbox statuses: names round-trip, and the legality table, every
 * (from, to) pair against the moves written out here a second time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "sandbox/registry.h"

struct move {
	const char *from, *to;
};

/* Every legal move, and no other. */
static const struct move legal[] = {
	{ "creating", "running" }, { "creating", "warm" },    { "creating", "error" },
	{ "creating", "deleted" }, { "warm", "running" },     { "warm", "error" },
	{ "warm", "deleted" },	   { "running", "stopping" }, { "running", "stopped" },
	{ "running", "expired" },  { "running", "error" },    { "running", "deleted" },
	{ "stopping", "stopped" }, { "stopping", "running" }, { "stopping", "error" },
	{ "stopping", "deleted" }, { "stopped", "starting" }, { "stopped", "expired" },
	{ "stopped", "error" },	   { "stopped", "deleted" },  { "starting", "running" },
	{ "starting", "stopped" }, { "starting", "error" },   { "starting", "deleted" },
	{ "error", "deleted" },	   { "error", "expired" },
};

static bool listed(enum sandbox_status from, enum sandbox_status to)
{
	for (size_t i = 0; i < ARRAY_LEN(legal); i++)
		if (strcmp(legal[i].from, sandbox_status_name(from)) == 0 &&
		    strcmp(legal[i].to, sandbox_status_name(to)) == 0)
			return true;
	return false;
}

static void test_names_round_trip(void **state)
{
	(void)state;
	for (int s = 0; s < SANDBOX_STATUS_MAX; s++) {
		enum sandbox_status back;
		assert_int_equal(sandbox_status_parse(sandbox_status_name((enum sandbox_status)s), &back), 0);
		assert_int_equal(back, s);
	}
	enum sandbox_status x;
	assert_int_equal(sandbox_status_parse("Running", &x), -1);
	assert_int_equal(sandbox_status_parse("", &x), -1);
	assert_int_equal(sandbox_status_parse(NULL, &x), -1);
	assert_string_equal(sandbox_status_name(SANDBOX_STATUS_MAX), "unknown");
}

static void test_every_pair(void **state)
{
	(void)state;
	int n = 0;
	for (int f = 0; f < SANDBOX_STATUS_MAX; f++) {
		for (int t = 0; t < SANDBOX_STATUS_MAX; t++) {
			bool want = listed((enum sandbox_status)f, (enum sandbox_status)t);
			if (sandbox_status_can((enum sandbox_status)f, (enum sandbox_status)t) != want)
				fail_msg("%s -> %s: table says %d",
					 sandbox_status_name((enum sandbox_status)f),
					 sandbox_status_name((enum sandbox_status)t), !want);
			n += want;
		}
	}
	assert_int_equal(n, (int)ARRAY_LEN(legal));
	/* out of range never passes */
	assert_false(sandbox_status_can(SANDBOX_STATUS_MAX, SANDBOX_RUNNING));
	assert_false(sandbox_status_can(SANDBOX_RUNNING, SANDBOX_STATUS_MAX));
}

static void test_final_statuses(void **state)
{
	(void)state;
	for (int s = 0; s < SANDBOX_STATUS_MAX; s++) {
		bool final = s == SANDBOX_EXPIRED || s == SANDBOX_DELETED;
		assert_int_equal(sandbox_status_final((enum sandbox_status)s), final);
		for (int t = 0; final && t < SANDBOX_STATUS_MAX; t++)
			assert_false(sandbox_status_can((enum sandbox_status)s, (enum sandbox_status)t));
	}
	/* no status moves to itself: a move always changes something */
	for (int s = 0; s < SANDBOX_STATUS_MAX; s++)
		assert_false(sandbox_status_can((enum sandbox_status)s, (enum sandbox_status)s));
}

static void test_idle_actions(void **state)
{
	(void)state;
	const char *names[] = { "expire", "stop", "none" };
	for (int a = 0; a < SANDBOX_IDLE_ACTION_MAX; a++) {
		enum sandbox_idle_action back;
		assert_string_equal(sandbox_idle_action_name((enum sandbox_idle_action)a), names[a]);
		assert_int_equal(sandbox_idle_action_parse(names[a], &back), 0);
		assert_int_equal(back, a);
	}
	enum sandbox_idle_action x;
	assert_int_equal(sandbox_idle_action_parse("sleep", &x), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_round_trip),
		cmocka_unit_test(test_every_pair),
		cmocka_unit_test(test_final_statuses),
		cmocka_unit_test(test_idle_actions),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
