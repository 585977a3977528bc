/* Command requests: signal names and numbers, and the JSON body (services
 * and their ports included) with the stable error codes of bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "commands/commands.h"
#include "internal.h" /* native_command_spec */

static void test_signal_names(void **state)
{
	assert_int_equal(command_signal_parse("SIGTERM"), 15);
	assert_int_equal(command_signal_parse("TERM"), 15);
	assert_int_equal(command_signal_parse("sigint"), 2);
	assert_int_equal(command_signal_parse("KILL"), 9);
	assert_int_equal(command_signal_parse("SIGHUP"), 1);
	assert_int_equal(command_signal_parse("QUIT"), 3);
	assert_int_equal(command_signal_parse("USR1"), 10);
	assert_int_equal(command_signal_parse("SIGUSR2"), 12);
	assert_int_equal(command_signal_parse("CONT"), 18);
	assert_int_equal(command_signal_parse("SIGSTOP"), 19);
	assert_int_equal(command_signal_parse("9"), 9);
	assert_int_equal(command_signal_parse("1"), 1);
	assert_int_equal(command_signal_parse("31"), 31);
}

static void test_signal_bad(void **state)
{
	const char *bad[] = { "",   "SIG", "SIGFOO", "0",     "32",	 "-9",
			      "09", "9x",  " 9",     "TERM ", "SIGSEGV", "100000000000000000000" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(command_signal_parse(bad[i]), -1);
	assert_int_equal(command_signal_parse(NULL), -1);
}

static int parse(const char *json, struct command_spec *spec, struct core_error *fail)
{
	struct json_object *body = json_tokener_parse(json);
	int rc = native_command_spec(body, 1 << 20, spec, fail);
	json_object_put(body);
	return rc;
}

static void test_spec_shell_and_argv(void **state)
{
	struct command_spec spec;
	struct core_error fail;
	assert_int_equal(parse("{\"command\":\"echo hi; exit 3\"}", &spec, &fail), 0);
	assert_null(spec.argv); /* a shell string: the agent runs it as sh -lc would */
	assert_string_equal(spec.shell, "echo hi; exit 3");
	assert_true(spec.login);
	assert_int_equal(spec.max_output_bytes, 65536);
	assert_string_equal(spec.command_json, "\"echo hi; exit 3\"");
	command_spec_free(&spec);

	assert_int_equal(parse("{\"command\":[\"echo\",\"$HOME;\"],\"env\":{\"A\":\"1\"},\"cwd\":\"/tmp\","
			       "\"user\":\"root\",\"timeout\":1.5,\"stdin\":\"x\",\"max_output_bytes\":10}",
			       &spec, &fail),
			 0);
	assert_string_equal(spec.argv[0], "echo");
	assert_string_equal(spec.argv[1], "$HOME;");
	assert_null(spec.argv[2]);
	assert_string_equal(spec.env[0], "A=1");
	assert_string_equal(spec.cwd, "/tmp");
	assert_string_equal(spec.user, "root");
	assert_int_equal(spec.timeout_ms, 1500);
	assert_int_equal(spec.stdin_len, 1);
	assert_int_equal(spec.max_output_bytes, 10);
	assert_false(spec.service);
	command_spec_free(&spec);

	assert_int_equal(parse("{\"command\":\"serve\",\"service\":true,\"port\":8000}", &spec, &fail), 0);
	assert_true(spec.service);
	assert_int_equal(spec.port, 8000);
	command_spec_free(&spec);
	assert_int_equal(parse("{\"command\":\"serve\",\"service\":true,\"port\":null}", &spec, &fail), 0);
	assert_true(spec.service);
	assert_int_equal(spec.port, 0);
	command_spec_free(&spec);
}

static void test_spec_bad(void **state)
{
	static const struct {
		const char *json, *code;
	} cases[] = {
		{ "[]", "invalid_body" },
		{ "{}", "invalid_command" },
		{ "{\"command\":\"\"}", "invalid_command" },
		{ "{\"command\":\"  \"}", "invalid_command" },
		{ "{\"command\":[]}", "invalid_command" },
		{ "{\"command\":[\"\"]}", "invalid_command" },
		{ "{\"command\":[1]}", "invalid_command" },
		{ "{\"command\":5}", "invalid_command" },
		{ "{\"command\":\"a\",\"env\":{\"A\":1}}", "invalid_env" },
		{ "{\"command\":\"a\",\"env\":{\"A=B\":\"1\"}}", "invalid_env" },
		{ "{\"command\":\"a\",\"env\":{\"\":\"1\"}}", "invalid_env" },
		{ "{\"command\":\"a\",\"env\":[]}", "invalid_env" },
		{ "{\"command\":\"a\",\"timeout\":-1}", "invalid_timeout" },
		{ "{\"command\":\"a\",\"timeout\":\"5\"}", "invalid_timeout" },
		{ "{\"command\":\"a\",\"cwd\":5}", "invalid_cwd" },
		{ "{\"command\":\"a\",\"user\":[]}", "invalid_user" },
		{ "{\"command\":\"a\",\"max_output_bytes\":-1}", "invalid_max_output_bytes" },
		{ "{\"command\":\"a\",\"max_output_bytes\":2000000}", "invalid_max_output_bytes" },
		{ "{\"command\":\"a\",\"stdin\":5}", "invalid_stdin" },
		{ "{\"command\":\"a\",\"service\":\"yes\"}", "invalid_service" },
		{ "{\"command\":\"a\",\"service\":1}", "invalid_service" },
		{ "{\"command\":\"a\",\"port\":8000}", "invalid_port" },
		{ "{\"command\":\"a\",\"service\":false,\"port\":8000}", "invalid_port" },
		{ "{\"command\":\"a\",\"service\":true,\"port\":0}", "invalid_port" },
		{ "{\"command\":\"a\",\"service\":true,\"port\":65536}", "invalid_port" },
		{ "{\"command\":\"a\",\"service\":true,\"port\":\"80\"}", "invalid_port" },
		{ "{\"command\":\"a\",\"service\":true,\"port\":80.5}", "invalid_port" },
		{ "{\"command\":\"a\",\"service\":true,\"stdin\":\"x\"}", "invalid_stdin" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct command_spec spec;
		struct core_error fail = { 0 };
		assert_int_equal(parse(cases[i].json, &spec, &fail), -1);
		assert_int_equal(fail.kind, CORE_INVALID);
		assert_string_equal(fail.code, cases[i].code);
		assert_null(spec.argv);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_signal_names),
		cmocka_unit_test(test_signal_bad),
		cmocka_unit_test(test_spec_shell_and_argv),
		cmocka_unit_test(test_spec_bad),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
