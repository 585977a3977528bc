/* The native sandbox bodies: create's and PATCH's members into the core's
 * parameters, the stable codes of bad input (NUL bytes in strings
 * among them), and no ports left allocated
 * when a later member fails (ASan's leak check). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "internal.h" /* native_create_params, native_update_params */

static int create(const char *json, struct sandbox_create_params *p, int **ports, struct core_error *e)
{
	struct json_object *body = json_tokener_parse(json);
	assert_non_null(body);
	memset(p, 0, sizeof(*p));
	int rc = native_create_params(body, p, ports, e);
	json_object_put(body);
	return rc;
}

static void test_create_ports(void **state)
{
	struct sandbox_create_params p;
	struct core_error e = { 0 };
	int *ports;
	assert_int_equal(create("{\"template\":\"base\",\"ports\":[80,8080],\"wait\":false}", &p, &ports, &e),
			 0);
	assert_non_null(ports);
	assert_ptr_equal(p.ports, ports);
	assert_int_equal(p.nports, 2);
	assert_int_equal(ports[0], 80);
	assert_int_equal(ports[1], 8080);
	assert_false(p.wait);
	free(ports);
}

static void test_create_bad(void **state)
{
	static const struct {
		const char *json;
		const char *code;
	} cases[] = {
		{ "[1]", "invalid_body" },
		{ "{\"name\":5}", "invalid_body" },
		{ "{\"ports\":[0]}", "invalid_ports" },
		/* ports parsed, then a later member fails: nothing left allocated */
		{ "{\"ports\":[80],\"wait\":\"yes\"}", "invalid_body" },
		/* PostgreSQL's text takes no NUL byte */
		{ "{\"env_vars\":{\"A\":\"x\\u0000y\"}}", "invalid_env" },
		{ "{\"labels\":{\"a\":\"x\\u0000y\"}}", "invalid_labels" },
		{ "{\"name\":\"x\\u0000y\"}", "invalid_body" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sandbox_create_params p;
		struct core_error e = { 0 };
		int *ports = (int *)&e; /* overwritten */
		assert_int_equal(create(cases[i].json, &p, &ports, &e), -1);
		assert_int_equal(e.kind, CORE_INVALID);
		assert_string_equal(e.code, cases[i].code);
		assert_null(ports);
		assert_null(p.ports);
	}
}

static void test_update_nul(void **state)
{
	static const char *const bodies[] = { "{\"env_vars\":{\"A\":\"\\u0000\"}}",
					      "{\"labels\":{\"a\":\"x\\u0000\"}}",
					      "{\"name\":\"\\u0000x\"}" };
	static const char *const codes[] = { "invalid_env", "invalid_labels", "invalid_name" };
	for (size_t i = 0; i < 3; i++) {
		struct json_object *body = json_tokener_parse(bodies[i]);
		assert_non_null(body);
		struct sandbox_changes c = { 0 };
		struct core_error e = { 0 };
		assert_int_equal(native_update_params(body, &c, &e), -1);
		assert_string_equal(e.code, codes[i]);
		assert_non_null(strstr(e.message, "NUL"));
		json_object_put(body);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_ports),
		cmocka_unit_test(test_create_bad),
		cmocka_unit_test(test_update_nul),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
