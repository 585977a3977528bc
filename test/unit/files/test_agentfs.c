/* The file service's checks before any I/O (include/files/agentfs.h): paths,
 * ids, protected paths, edit arguments, depth; failures come from the loop,
 * never on the caller's stack, and a cancelled op calls nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>

#include "files/agentfs.h"
#include "sandbox/registry.h"

#define SID "0c6a1d2e-5b7f-4c1a-9a3e-2f1d6c8b7a90"

struct seen {
	int calls;
	enum core_err err;
	char code[64];
};

static void done(const struct core_error *fail, const struct agentfs_result *res, void *arg)
{
	struct seen *s = arg;
	s->calls++;
	assert_non_null(fail);
	assert_null(res);
	s->err = fail->kind;
	snprintf(s->code, sizeof(s->code), "%s", fail->code);
}

static struct event_base *base;
static struct registry *reg;
static struct agentfs *fs;

static int setup(void **state)
{
	(void)state;
	base = event_base_new();
	/* nothing here reaches PostgreSQL or an agent: no pool, no channels */
	struct registry_config cfg = { .cluster = "t", .instance = "i", .idle_timeout_ms = 1000 };
	reg = registry_new(base, &cfg, NULL, NULL);
	fs = agentfs_new(base, reg, 10);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	agentfs_free(fs);
	registry_free(reg);
	event_base_free(base);
	return 0;
}

static void expect(struct seen *s, enum core_err err, const char *code)
{
	assert_int_equal(s->calls, 0); /* not on the caller's stack */
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(s->calls, 1);
	assert_int_equal(s->err, err);
	assert_string_equal(s->code, code);
}

static void test_paths(void **state)
{
	(void)state;
	static const char *const bad[] = { "relative", "/a/../b", "", "/a/%2e%2e/b", NULL };
	for (size_t i = 0; bad[i]; i++) {
		struct seen s = { 0 };
		agentfs_stat(fs, SID, bad[i], done, &s);
		expect(&s, CORE_INVALID, "invalid_path");
	}
	struct seen s = { 0 };
	agentfs_read_doc(fs, SID, NULL, done, &s);
	expect(&s, CORE_INVALID, "invalid_path");
	memset(&s, 0, sizeof(s));
	agentfs_move(fs, SID, "/workspace/a", "b", false, done, &s);
	expect(&s, CORE_INVALID, "invalid_path");
}

static void test_ids_depth_edit(void **state)
{
	(void)state;
	struct seen s = { 0 };
	agentfs_stat(fs, "not-a-uuid", "/workspace", done, &s);
	expect(&s, CORE_INVALID, "invalid_id");
	memset(&s, 0, sizeof(s));
	agentfs_list(fs, SID, "/workspace", 11, done, &s);
	expect(&s, CORE_INVALID, "invalid_depth");
	memset(&s, 0, sizeof(s));
	agentfs_edit(fs, SID, "/workspace/f", "", 0, "x", 1, done, &s);
	expect(&s, CORE_INVALID, "invalid_request");
	memset(&s, 0, sizeof(s));
	agentfs_edit(fs, SID, "/workspace/f", "a", 1, NULL, 0, done, &s);
	expect(&s, CORE_INVALID, "invalid_request");
}

static void test_protected(void **state)
{
	(void)state;
	static const char *const paths[] = { "/", "/etc", "/usr/", "/proc", "/.sandbar", NULL };
	for (size_t i = 0; paths[i]; i++) {
		struct seen s = { 0 };
		agentfs_remove(fs, SID, paths[i], true, done, &s);
		expect(&s, CORE_FORBIDDEN, "protected_path");
	}
	struct seen s = { 0 };
	agentfs_move(fs, SID, "/etc", "/workspace/etc", false, done, &s);
	expect(&s, CORE_FORBIDDEN, "protected_path");
}

static void test_cancel_calls_nothing(void **state)
{
	(void)state;
	struct seen s = { 0 };
	struct agentfs_op *op = agentfs_stat(fs, SID, "bad", done, &s);
	agentfs_op_cancel(op);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(s.calls, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ids_depth_edit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_protected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_calls_nothing, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
