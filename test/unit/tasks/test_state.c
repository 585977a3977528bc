/* A task's states: names both ways, which are final, and every pair of the
 * legality table against the runner's paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tasks/tasks.h"

static void test_names(void **state)
{
	for (int s = 0; s < TASK_STATE_MAX; s++) {
		enum task_state back;
		assert_int_equal(task_state_parse(task_state_name((enum task_state)s), &back), 0);
		assert_int_equal(back, s);
	}
	enum task_state x;
	assert_int_equal(task_state_parse("done", &x), -1);
	assert_int_equal(task_state_parse(NULL, &x), -1);
	assert_string_equal(task_state_name(TASK_STATE_MAX), "?");
	assert_false(task_state_final(TASK_PREPARING));
	assert_false(task_state_final(TASK_CHECKPOINTING));
	assert_true(task_state_final(TASK_TIMED_OUT));
}

static void test_every_pair(void **state)
{
	/* the runner's paths: prepare, run, checkpoint, outcome; a failed
	 * prepare or a lost sandbox fails at once; a cancel before the run
	 * still checkpoints */
	static const struct {
		enum task_state from, to;
	} legal[] = {
		{ TASK_PREPARING, TASK_RUNNING },	{ TASK_PREPARING, TASK_CHECKPOINTING },
		{ TASK_PREPARING, TASK_FAILED },	{ TASK_RUNNING, TASK_CHECKPOINTING },
		{ TASK_RUNNING, TASK_FAILED },		{ TASK_CHECKPOINTING, TASK_SUCCEEDED },
		{ TASK_CHECKPOINTING, TASK_FAILED },	{ TASK_CHECKPOINTING, TASK_CANCELLED },
		{ TASK_CHECKPOINTING, TASK_TIMED_OUT },
	};
	for (int from = 0; from < TASK_STATE_MAX; from++) {
		for (int to = 0; to < TASK_STATE_MAX; to++) {
			bool want = false;
			for (size_t i = 0; i < sizeof(legal) / sizeof(legal[0]); i++)
				want = want || ((int)legal[i].from == from && (int)legal[i].to == to);
			assert_int_equal(task_state_can((enum task_state)from, (enum task_state)to), want);
		}
		/* nothing leaves an outcome */
		if (task_state_final((enum task_state)from))
			for (int to = 0; to < TASK_STATE_MAX; to++)
				assert_false(task_state_can((enum task_state)from, (enum task_state)to));
	}
	assert_false(task_state_can(TASK_STATE_MAX, TASK_FAILED));
	assert_false(task_state_can(TASK_PREPARING, TASK_STATE_MAX));
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_names), cmocka_unit_test(test_every_pair) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
