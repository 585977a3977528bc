/* The Hermes request bodies: create and list told apart by the keys present
 * (spec §3, the collision of Create and List with only a user_id), create's
 * members, list's filters and pages, PATCH, extend, configure, and the
 * stable codes of bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "internal.h"

static struct json_object *parse(const char *s)
{
	struct json_object *o = json_tokener_parse(s);
	assert_non_null(o);
	return o;
}

static enum hermes_post classify(const char *s)
{
	struct json_object *o = s ? parse(s) : NULL;
	enum hermes_post k = hermes_post_classify(o);
	json_object_put(o);
	return k;
}

static void test_classify(void **state)
{
	(void)state;
	static const struct {
		const char *body;
		enum hermes_post kind;
	} cases[] = {
		{ NULL, HERMES_POST_LIST },
		{ "{}", HERMES_POST_LIST },
		{ "{\"status\":\"active\"}", HERMES_POST_LIST },
		{ "{\"user_id\":\"a\",\"limit\":5}", HERMES_POST_LIST },
		{ "{\"user_id\":\"a\",\"offset\":5}", HERMES_POST_LIST },
		{ "{\"user_id\":\"a\",\"status\":\"active\"}", HERMES_POST_LIST },
		/* a list key wins over a create key: List never sends spec */
		{ "{\"user_id\":\"a\",\"limit\":5,\"spec\":{}}", HERMES_POST_LIST },
		{ "{\"user_id\":\"a\",\"spec\":{\"cpu\":\"1\"}}", HERMES_POST_CREATE },
		{ "{\"user_id\":\"\",\"labels\":{\"a\":\"b\"}}", HERMES_POST_CREATE },
		{ "{\"user_id\":\"a\",\"payloads\":[]}", HERMES_POST_CREATE },
		{ "{\"user_id\":\"a\",\"ttl_hours\":1}", HERMES_POST_CREATE },
		{ "{\"user_id\":\"alice\"}", HERMES_POST_BOTH },
		{ "{\"user_id\":\"\"}", HERMES_POST_BOTH },
		{ "{\"labels\":{}}", HERMES_POST_LIST }, /* no user_id: List's */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (classify(cases[i].body) != cases[i].kind)
			fail_msg("%s: %d, not %d", cases[i].body ? cases[i].body : "(none)",
				 classify(cases[i].body), cases[i].kind);
}

static void test_create(void **state)
{
	(void)state;
	struct json_object *o =
		parse("{\"user_id\":\"u\",\"spec\":{\"cpu\":\"500m\",\"memory\":\"512Mi\","
		      "\"image\":\"img:1\",\"requests_cpu\":\"\",\"requests_memory\":\"1Gi\"},"
		      "\"labels\":{\"a\":\"b\"},\"payloads\":[{\"api\":\"/api/v1/env\",\"body\":"
		      "{\"X\":\"1\",\"Y\":\"\\u0026\"}},{\"api\":\"/api/v1/env\",\"body\":{\"X\":\"2\"},"
		      "\"envs\":{\"Z\":\"z\"}}],\"ttl_hours\":3}");
	struct hermes_create c;
	struct core_error e;
	assert_int_equal(hermes_create_parse(o, &c, &e), 0);
	assert_string_equal(c.user_id, "u");
	assert_true(c.spec.cpus > 0.4999 && c.spec.cpus < 0.5001);
	assert_int_equal(c.spec.memory, 536870912);
	assert_string_equal(c.spec.image, "img:1");
	/* kept as written, the empty one left out */
	assert_string_equal(
		json_object_to_json_string_ext(c.spec.kept, JSON_C_TO_STRING_PLAIN),
		"{\"cpu\":\"500m\",\"memory\":\"512Mi\",\"image\":\"img:1\",\"requests_memory\":\"1Gi\"}");
	assert_string_equal(json_object_to_json_string_ext(c.env, JSON_C_TO_STRING_PLAIN),
			    "{\"X\":\"2\",\"Y\":\"&\"}");
	assert_int_equal(c.ttl_hours, 3);
	assert_non_null(c.labels);
	hermes_create_clear(&c);
	json_object_put(o);
}

static const char *create_code(const char *s)
{
	struct json_object *o = parse(s);
	struct hermes_create c;
	static struct core_error e;
	int rc = hermes_create_parse(o, &c, &e);
	hermes_create_clear(&c);
	json_object_put(o);
	if (rc == 0)
		return "ok";
	assert_int_equal(e.kind, CORE_INVALID);
	return e.code;
}

static void test_create_refused(void **state)
{
	(void)state;
	static const struct {
		const char *body, *code;
	} cases[] = {
		{ "{\"user_id\":\"u\"}", "ok" },
		{ "[]", "invalid_body" },
		{ "{\"user_id\":5}", "invalid_user_id" },
		{ "{\"user_id\":\"a\\u0000b\"}", "invalid_user_id" },
		{ "{\"user_id\":\"u\",\"spec\":[]}", "invalid_spec" },
		{ "{\"user_id\":\"u\",\"spec\":{\"cpu\":1}}", "invalid_spec" },
		{ "{\"user_id\":\"u\",\"spec\":{\"cpu\":\"abc\"}}", "invalid_cpu" },
		{ "{\"user_id\":\"u\",\"spec\":{\"cpu\":\"5m\"}}", "invalid_cpu" },
		{ "{\"user_id\":\"u\",\"spec\":{\"memory\":\"1XB\"}}", "invalid_memory" },
		{ "{\"user_id\":\"u\",\"spec\":{\"memory\":\"0\"}}", "invalid_memory" },
		{ "{\"user_id\":\"u\",\"spec\":{\"requests_cpu\":\"x\"}}", "invalid_spec" },
		{ "{\"user_id\":\"u\",\"labels\":{\"a\":1}}", "invalid_labels" },
		{ "{\"user_id\":\"u\",\"labels\":{\"\":\"x\"}}", "invalid_labels" },
		{ "{\"user_id\":\"u\",\"ttl_hours\":-1}", "invalid_ttl" },
		{ "{\"user_id\":\"u\",\"ttl_hours\":1.5}", "invalid_ttl" },
		{ "{\"user_id\":\"u\",\"ttl_hours\":\"1\"}", "invalid_ttl" },
		{ "{\"user_id\":\"u\",\"payloads\":{}}", "invalid_payload" },
		{ "{\"user_id\":\"u\",\"payloads\":[{\"body\":{}}]}", "invalid_payload" },
		{ "{\"user_id\":\"u\",\"payloads\":[{\"api\":\"/api/v1/x\"}]}", "unsupported_payload" },
		{ "{\"user_id\":\"u\",\"payloads\":[{\"api\":\"/api/v1/env\"}]}", "invalid_payload" },
		{ "{\"user_id\":\"u\",\"payloads\":[{\"api\":\"/api/v1/env\",\"body\":{\"A=B\":\"x\"}}]}",
		  "invalid_payload" },
		{ "{\"user_id\":\"u\",\"payloads\":[{\"api\":\"/api/v1/env\",\"body\":{\"A\":1}}]}",
		  "invalid_payload" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (strcmp(create_code(cases[i].body), cases[i].code) != 0)
			fail_msg("%s: %s, not %s", cases[i].body, create_code(cases[i].body), cases[i].code);
}

/* The body parsed last: l's strings point into it until the next call. */
static struct json_object *list_body;

static const char *list_code(const char *s, struct hermes_list *l)
{
	json_object_put(list_body);
	list_body = s ? parse(s) : NULL;
	static struct core_error e;
	int rc = hermes_list_parse(list_body, l, &e);
	return rc == 0 ? "ok" : e.code;
}

static void test_list(void **state)
{
	(void)state;
	struct hermes_list l;
	assert_string_equal(list_code(NULL, &l), "ok");
	assert_int_equal(l.limit, HERMES_LIST_LIMIT_DEFAULT);
	assert_int_equal(l.offset, 0);
	assert_null(l.user_id);
	assert_int_equal(l.statuses, 0);
	assert_string_equal(
		list_code("{\"user_id\":\"a\",\"status\":\"creating\",\"limit\":5,\"offset\":7}", &l), "ok");
	assert_string_equal(l.user_id, "a");
	assert_int_equal(l.statuses, (1u << SANDBOX_CREATING) | (1u << SANDBOX_STARTING));
	assert_int_equal(l.limit, 5);
	assert_int_equal(l.offset, 7);
	assert_string_equal(list_code("{\"status\":\"failed\"}", &l), "ok");
	assert_int_equal(l.statuses, 1u << SANDBOX_ERROR);
	assert_string_equal(list_code("{\"status\":\"destroying\"}", &l), "ok");
	assert_true(l.none);
	assert_string_equal(list_code("{\"status\":\"running\"}", &l), "invalid_status");
	assert_string_equal(list_code("{\"status\":\"warm\"}", &l), "invalid_status");
	assert_string_equal(list_code("{\"limit\":\"10\"}", &l), "invalid_limit");
	assert_string_equal(list_code("{\"limit\":1001}", &l), "invalid_limit");
	assert_string_equal(list_code("{\"offset\":-1}", &l), "invalid_offset");
	assert_string_equal(list_code("{\"offset\":1.0}", &l), "invalid_offset");
	list_code(NULL, &l);
}

static const char *other_code(int which, const char *s)
{
	struct json_object *o = s ? parse(s) : NULL;
	static struct core_error e;
	struct hermes_spec sp = { 0 };
	struct json_object *env = NULL;
	int64_t secs;
	int rc = which == 0   ? hermes_patch_parse(o, &sp, &e)
		 : which == 1 ? hermes_seconds_parse(o, &secs, &e)
			      : hermes_configure_parse(o, &env, &e);
	json_object_put(sp.kept);
	json_object_put(env);
	json_object_put(o);
	return rc == 0 ? "ok" : e.code;
}

static void test_patch_extend_configure(void **state)
{
	(void)state;
	assert_string_equal(other_code(0, "{}"), "nothing_to_update");
	assert_string_equal(other_code(0, "{\"spec\":{}}"), "nothing_to_update");
	assert_string_equal(other_code(0, "{\"spec\":{\"cpu\":\"\"},\"image\":\"\"}"), "nothing_to_update");
	assert_string_equal(other_code(0, "{\"image\":\"x:1\"}"), "ok");
	assert_string_equal(other_code(0, "{\"spec\":{\"memory\":\"1Gi\"}}"), "ok");
	assert_string_equal(other_code(0, "{\"image\":7}"), "invalid_image");
	assert_string_equal(other_code(0, NULL), "invalid_body");
	assert_string_equal(other_code(1, "{\"seconds\":1}"), "ok");
	assert_string_equal(other_code(1, "{\"seconds\":86400}"), "ok");
	assert_string_equal(other_code(1, "{\"seconds\":0}"), "invalid_seconds");
	assert_string_equal(other_code(1, "{\"seconds\":86401}"), "invalid_seconds");
	assert_string_equal(other_code(1, "{\"seconds\":\"5\"}"), "invalid_seconds");
	assert_string_equal(other_code(1, NULL), "invalid_seconds");
	assert_string_equal(other_code(2, NULL), "ok");
	assert_string_equal(other_code(2, "{}"), "ok");
	assert_string_equal(
		other_code(2, "{\"payloads\":[{\"api\":\"/api/v1/env\",\"body\":{\"A\":\"1\"}}]}"), "ok");
	assert_string_equal(other_code(2, "{\"payloads\":[{\"api\":\"/api/v1/run\",\"body\":{}}]}"),
			    "unsupported_payload");
	assert_string_equal(other_code(2, "[]"), "invalid_body");
	/* a PATCH's own image wins over spec.image; spec keeps what it was given */
	struct json_object *o = parse("{\"spec\":{\"image\":\"a:1\",\"cpu\":\"2\"},\"image\":\"b:2\"}");
	struct hermes_spec sp;
	struct core_error e;
	assert_int_equal(hermes_patch_parse(o, &sp, &e), 0);
	assert_string_equal(sp.image, "b:2");
	assert_true(sp.cpus > 1.999 && sp.cpus < 2.001);
	json_object_put(sp.kept);
	json_object_put(o);
}

static void test_status_names(void **state)
{
	(void)state;
	assert_string_equal(hermes_status_name(SANDBOX_CREATING), "creating");
	assert_string_equal(hermes_status_name(SANDBOX_STARTING), "creating");
	assert_string_equal(hermes_status_name(SANDBOX_RUNNING), "active");
	assert_string_equal(hermes_status_name(SANDBOX_STOPPING), "stopping");
	assert_string_equal(hermes_status_name(SANDBOX_STOPPED), "stopped");
	assert_string_equal(hermes_status_name(SANDBOX_ERROR), "failed");
	assert_string_equal(hermes_status_name(SANDBOX_DELETED), "destroying");
	struct json_object *t = hermes_time_json(1740823200123456);
	assert_string_equal(json_object_get_string(t), "2025-03-01T10:00:00Z");
	json_object_put(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_create),
		cmocka_unit_test(test_create_refused),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_patch_extend_configure),
		cmocka_unit_test(test_status_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
