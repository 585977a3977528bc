/* The JSON-RPC wire of the Hermes WebSocket: requests parsed with spec §8's
 * strictness (integer ids, params an object, batches and bad JSON refused),
 * params read and checked, exec's params as a command spec, and output bytes
 * as JSON text (invalid bytes as U+FFFD, NUL kept, a cut character held). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "rpc.h"

static enum rpc_parse_result parse(const char *s, struct rpc_request *r)
{
	return rpc_parse(s, strlen(s), r);
}

static void test_requests(void **state)
{
	struct rpc_request r;
	assert_int_equal(
		parse("{\"jsonrpc\":\"2.0\",\"method\":\"stat\",\"params\":{\"path\":\"/\"},\"id\":7}", &r),
		RPC_REQUEST);
	assert_string_equal(r.method, "stat");
	assert_int_equal(r.id_num, 7);
	assert_true(json_object_is_type(r.params, json_type_object));
	rpc_request_clear(&r);
	/* no params: an empty object; keys in any order; whitespace around */
	assert_int_equal(parse(" {\"id\":9223372036854775807,\"method\":\"exec\"}\r\n", &r), RPC_REQUEST);
	assert_int_equal(r.id_num, INT64_MAX);
	assert_int_equal(json_object_object_length(r.params), 0);
	rpc_request_clear(&r);
	assert_int_equal(parse("{\"method\":\"x\",\"params\":null,\"id\":-3}", &r), RPC_REQUEST);
	assert_int_equal(r.id_num, -3);
	rpc_request_clear(&r);
	/* jsonrpc is never read */
	assert_int_equal(parse("{\"jsonrpc\":\"1.0\",\"method\":\"x\",\"id\":1}", &r), RPC_REQUEST);
	rpc_request_clear(&r);
}

static void test_notifications(void **state)
{
	struct rpc_request r;
	assert_int_equal(parse("{\"jsonrpc\":\"2.0\",\"method\":\"exec\",\"params\":{}}", &r),
			 RPC_NOTIFICATION);
	rpc_request_clear(&r);
	assert_int_equal(parse("{\"method\":\"exec\",\"id\":null}", &r), RPC_NOTIFICATION);
	rpc_request_clear(&r);
}

static void test_invalid(void **state)
{
	static const struct {
		const char *in;
		int code;
		bool id; /* an integer id to echo */
	} cases[] = {
		{ "", HERMES_RPC_PARSE_ERROR, false },
		{ "{", HERMES_RPC_PARSE_ERROR, false },
		{ "{\"method\":\"x\",\"id\":1} {}", HERMES_RPC_PARSE_ERROR, false },
		{ "{\"method\":\"x\",\"id\":1}x", HERMES_RPC_PARSE_ERROR, false },
		{ "{'method':'x','id':1}", HERMES_RPC_PARSE_ERROR, false },
		{ "{\"method\":\"x\",\"id\":NaN}", HERMES_RPC_INVALID_REQUEST, false }, /* json-c reads NaN */
		{ "{\"method\":\"x\",\"id\":1,}", HERMES_RPC_PARSE_ERROR, false },
		{ "[{\"method\":\"x\",\"id\":1}]", HERMES_RPC_INVALID_REQUEST, false },
		{ "\"x\"", HERMES_RPC_INVALID_REQUEST, false },
		{ "17", HERMES_RPC_INVALID_REQUEST, false },
		{ "{\"method\":\"x\",\"id\":1.0}", HERMES_RPC_INVALID_REQUEST, false },
		{ "{\"method\":\"x\",\"id\":\"1\"}", HERMES_RPC_INVALID_REQUEST, false },
		{ "{\"method\":\"x\",\"id\":true}", HERMES_RPC_INVALID_REQUEST, false },
		{ "{\"method\":\"x\",\"id\":{}}", HERMES_RPC_INVALID_REQUEST, false },
		{ "{\"id\":1}", HERMES_RPC_INVALID_REQUEST, true },
		{ "{\"method\":\"\",\"id\":1}", HERMES_RPC_INVALID_REQUEST, true },
		{ "{\"method\":5,\"id\":1}", HERMES_RPC_INVALID_REQUEST, true },
		{ "{\"method\":\"x\",\"params\":[1],\"id\":1}", HERMES_RPC_INVALID_PARAMS, true },
		{ "{\"method\":\"x\",\"params\":\"p\",\"id\":1}", HERMES_RPC_INVALID_PARAMS, true },
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct rpc_request r;
		assert_int_equal(parse(cases[i].in, &r), RPC_INVALID);
		assert_int_equal(r.code, cases[i].code);
		assert_non_null(r.message);
		assert_int_equal(r.id != NULL && json_object_is_type(r.id, json_type_int), cases[i].id);
		rpc_request_clear(&r);
	}
	/* nested past the depth limit */
	char deep[RPC_MAX_DEPTH * 2 + 64];
	size_t n = 0;
	n += (size_t)sprintf(deep, "{\"method\":\"x\",\"id\":1,\"params\":{\"a\":");
	for (int i = 0; i < RPC_MAX_DEPTH; i++)
		deep[n++] = '[';
	deep[n] = '\0';
	struct rpc_request r;
	assert_int_equal(rpc_parse(deep, n, &r), RPC_INVALID);
	rpc_request_clear(&r);
	/* a NUL inside: not JSON */
	assert_int_equal(rpc_parse("{\"method\":\"x\",\"id\":1}\0", 22, &r), RPC_INVALID);
	rpc_request_clear(&r);
}

static struct json_object *obj(const char *s)
{
	struct json_object *o = json_tokener_parse(s);
	assert_non_null(o);
	return o;
}

static void test_params(void **state)
{
	struct core_error fail;
	struct json_object *p =
		obj("{\"s\":\"v\",\"n\":5,\"b\":true,\"neg\":-1,\"d\":1.5,\"big\":18446744073709551615,"
		    "\"nul\":null,\"rel\":\"a/b\",\"abs\":\"/a\"}");
	const char *s = NULL;
	size_t len = 0;
	assert_int_equal(rpc_param_string(p, "s", true, &s, &len, &fail), 0);
	assert_string_equal(s, "v");
	assert_int_equal(len, 1);
	s = "unchanged";
	assert_int_equal(rpc_param_string(p, "missing", false, &s, NULL, &fail), 0);
	assert_string_equal(s, "unchanged");
	assert_int_equal(rpc_param_string(p, "nul", false, &s, NULL, &fail), 0);
	assert_int_equal(rpc_param_string(p, "missing", true, &s, NULL, &fail), -1);
	assert_int_equal(fail.kind, CORE_INVALID);
	assert_non_null(strstr(fail.message, "'missing' is required"));
	assert_int_equal(rpc_param_string(p, "n", true, &s, NULL, &fail), -1);
	bool b = false;
	assert_int_equal(rpc_param_bool(p, "b", &b, &fail), 0);
	assert_true(b);
	assert_int_equal(rpc_param_bool(p, "n", &b, &fail), -1);
	uint64_t u = 0;
	assert_int_equal(rpc_param_uint(p, "n", 10, &u, &fail), 0);
	assert_int_equal(u, 5);
	assert_int_equal(rpc_param_uint(p, "n", 4, &u, &fail), -1);
	assert_int_equal(rpc_param_uint(p, "neg", 10, &u, &fail), -1);
	assert_int_equal(rpc_param_uint(p, "d", 10, &u, &fail), -1);
	assert_int_equal(rpc_param_uint(p, "big", UINT64_MAX, &u, &fail), 0);
	assert_true(u == UINT64_MAX);
	assert_int_equal(rpc_param_uint(p, "big", 1000, &u, &fail), -1);
	assert_int_equal(rpc_param_path(p, "abs", &s, &fail), 0);
	assert_int_equal(rpc_param_path(p, "rel", &s, &fail), -1);
	assert_int_equal(rpc_param_path(p, "missing", &s, &fail), -1);
	assert_int_equal(hermes_rpc_code(&fail), HERMES_RPC_INVALID_PARAMS);
	json_object_put(p);
	p = json_object_new_object();
	json_object_object_add(p, "path", json_object_new_string_len("/a\0b", 4));
	assert_int_equal(rpc_param_path(p, "path", &s, &fail), -1);
	json_object_put(p);
}

/* The error table: a kind's status, refined by a few codes; out of space
 * is one code (insufficient_storage, 507) whichever disk ran out. */
static void test_error_table(void **state)
{
	static const struct {
		enum core_err kind;
		const char *code;
		int status, rpc;
	} rows[] = {
		{ CORE_LIMIT, "insufficient_storage", 507, -32057 },
		{ CORE_LIMIT, "too_large", 413, -32013 },
		{ CORE_LIMIT, "too_many_commands", 429, -32029 },
		{ CORE_UNAVAILABLE, "database_unavailable", 503, -32053 },
		{ CORE_UNAVAILABLE, "spool_unavailable", 503, -32053 },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct core_error e;
		core_error_set(&e, rows[i].kind, rows[i].code, "x");
		assert_int_equal(hermes_http_status(&e), rows[i].status);
		assert_int_equal(hermes_rpc_code(&e), rows[i].rpc);
	}
}

static void test_exec_spec(void **state)
{
	struct command_spec spec;
	struct core_error fail;
	bool detached = true;
	struct json_object *p =
		obj("{\"command\":\"ls '-la' /tmp\",\"env\":{\"A\":\"1\",\"B\":\"x=y\"},"
		    "\"working_dir\":\"/w\",\"timeout\":3,\"sudo\":true,\"stdin_data\":\"in\"}");
	assert_int_equal(rpc_exec_spec(p, 4096, &spec, &detached, &fail), 0);
	assert_false(detached);
	assert_null(spec.argv);
	assert_string_equal(spec.shell, "ls '-la' /tmp");
	assert_false(spec.login);
	assert_string_equal(spec.command_json, "\"ls '-la' \\/tmp\"");
	assert_string_equal(spec.env[0], "A=1");
	assert_string_equal(spec.env[1], "B=x=y");
	assert_null(spec.env[2]);
	assert_string_equal(spec.cwd, "/w");
	assert_int_equal(spec.timeout_ms, 3000);
	assert_string_equal(spec.user, "root");
	assert_int_equal(spec.stdin_len, 2);
	assert_memory_equal(spec.stdin_data, "in", 2);
	assert_int_equal(spec.max_output_bytes, 4096);
	command_spec_free(&spec);
	json_object_put(p);

	/* the older SDK's "stdin", detached, an empty working_dir */
	p = obj("{\"command\":\"true\",\"stdin\":\"\",\"detached\":true,\"working_dir\":\"\"}");
	assert_int_equal(rpc_exec_spec(p, 1, &spec, &detached, &fail), 0);
	assert_true(detached);
	assert_non_null(spec.stdin_data);
	assert_int_equal(spec.stdin_len, 0);
	assert_null(spec.cwd);
	assert_null(spec.user);
	command_spec_free(&spec);
	json_object_put(p);

	static const char *const bad[] = {
		"{}",
		"{\"command\":\"\"}",
		"{\"command\":\" \\t\\n\"}",
		"{\"command\":[\"ls\"]}",
		"{\"command\":\"a\\u0000b\"}",
		"{\"command\":\"x\",\"env\":[]}",
		"{\"command\":\"x\",\"env\":{\"\":\"v\"}}",
		"{\"command\":\"x\",\"env\":{\"A=B\":\"v\"}}",
		"{\"command\":\"x\",\"env\":{\"A\":1}}",
		"{\"command\":\"x\",\"env\":{\"A\":\"a\\u0000\"}}",
		"{\"command\":\"x\",\"timeout\":-1}",
		"{\"command\":\"x\",\"timeout\":1.5}",
		"{\"command\":\"x\",\"timeout\":\"5\"}",
		"{\"command\":\"x\",\"timeout\":604801}",
		"{\"command\":\"x\",\"sudo\":\"yes\"}",
		"{\"command\":\"x\",\"detached\":1}",
		"{\"command\":\"x\",\"stdin_data\":5}",
		"{\"command\":\"x\",\"working_dir\":7}",
		"{\"command\":\"x\",\"working_dir\":\"/a\\u0000\"}",
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		p = obj(bad[i]);
		memset(&spec, 0x5a, sizeof(spec));
		assert_int_equal(rpc_exec_spec(p, 1, &spec, &detached, &fail), -1);
		assert_int_equal(fail.kind, CORE_INVALID);
		assert_null(spec.shell); /* freed and cleared */
		json_object_put(p);
	}
}

static void expect_text(const char *in, size_t len, const char *want, size_t want_len)
{
	struct json_object *s = rpc_text((const uint8_t *)in, len);
	assert_int_equal(json_object_get_string_len(s), want_len);
	assert_memory_equal(json_object_get_string(s), want, want_len);
	json_object_put(s);
}

static void test_text(void **state)
{
	expect_text("", 0, "", 0);
	expect_text("héllo", 6, "héllo", 6);
	expect_text("a\0b", 3, "a\0b", 3); /* NUL kept: JSON writes \u0000 */
	expect_text("a\xffz", 3, "a\xEF\xBF\xBDz", 5);
	expect_text("\xc3", 1, "\xEF\xBF\xBD", 3);
	expect_text("\xed\xa0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", 9); /* a surrogate */
	struct json_object *s = rpc_text((const uint8_t *)"a\0b", 3);
	assert_string_equal(json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN), "\"a\\u0000b\"");
	json_object_put(s);
}

static void test_text_whole(void **state)
{
	const uint8_t *euro = (const uint8_t *)"x\xe2\x82\xac"; /* x € */
	assert_int_equal(rpc_text_whole(euro, 4), 4);
	assert_int_equal(rpc_text_whole(euro, 3), 1); /* € cut after 2 of 3 bytes */
	assert_int_equal(rpc_text_whole(euro, 2), 1);
	assert_int_equal(rpc_text_whole(euro, 1), 1);
	assert_int_equal(rpc_text_whole(euro, 0), 0);
	const uint8_t *emoji = (const uint8_t *)"\xf0\x9f\x8e\x89";
	assert_int_equal(rpc_text_whole(emoji, 3), 0);
	assert_int_equal(rpc_text_whole(emoji, 4), 4);
	/* invalid bytes are not held back */
	assert_int_equal(rpc_text_whole((const uint8_t *)"a\xff", 2), 2);
	assert_int_equal(rpc_text_whole((const uint8_t *)"a\x80\x80\x80", 4), 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_requests),    cmocka_unit_test(test_notifications),
		cmocka_unit_test(test_invalid),	    cmocka_unit_test(test_params),
		cmocka_unit_test(test_exec_spec),   cmocka_unit_test(test_text),
		cmocka_unit_test(test_error_table), cmocka_unit_test(test_text_whole),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
