/* JSONC: comments and trailing commas go, strings stay byte for byte, and
 * errors name the line of the original text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <json-c/json.h>
#include <string.h>

#include "sandbox/jsonc.h"

static struct json_object *parse(const char *text, char *err, size_t cap)
{
	err[0] = '\0';
	return jsonc_parse(text, strlen(text), err, cap);
}

static void expect_error(const char *text, const char *needle)
{
	char err[256];
	struct json_object *o = parse(text, err, sizeof(err));
	if (o)
		fail_msg("accepted: %s", text);
	if (!strstr(err, needle))
		fail_msg("error '%s' lacks '%s' for %s", err, needle, text);
}

static void test_comments_and_commas(void **state)
{
	char err[256];
	(void)state;
	const char *text = "// leading comment\n"
			   "{\n"
			   "  /* block\n   comment */ \"a\": 1, // trailing\n"
			   "  \"b\": [1, 2, 3,],\n"
			   "  \"c\": {\"d\": true,},\n"
			   "}\n"
			   "/* done */\n";
	struct json_object *o = parse(text, err, sizeof(err));
	assert_non_null(o);
	assert_string_equal(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
			    "{\"a\":1,\"b\":[1,2,3],\"c\":{\"d\":true}}");
	json_object_put(o);
}

static void test_strings_preserved(void **state)
{
	char err[256];
	(void)state;
	const char *text =
		"{\"url\": \"http://x//y\", \"glob\": \"/* not a comment */\", "
		"\"q\": \"say \\\"hi\\\" // still string\", \"bs\": \"c:\\\\\", \"comma\": \",]\"}";
	struct json_object *o = parse(text, err, sizeof(err));
	assert_non_null(o);
	struct json_object *v;
	assert_true(json_object_object_get_ex(o, "url", &v));
	assert_string_equal(json_object_get_string(v), "http://x//y");
	assert_true(json_object_object_get_ex(o, "glob", &v));
	assert_string_equal(json_object_get_string(v), "/* not a comment */");
	assert_true(json_object_object_get_ex(o, "q", &v));
	assert_string_equal(json_object_get_string(v), "say \"hi\" // still string");
	assert_true(json_object_object_get_ex(o, "bs", &v));
	assert_string_equal(json_object_get_string(v), "c:\\");
	assert_true(json_object_object_get_ex(o, "comma", &v));
	assert_string_equal(json_object_get_string(v), ",]");
	json_object_put(o);
}

static void test_any_value(void **state)
{
	char err[256];
	(void)state;
	struct json_object *o = parse(" 42 // answer", err, sizeof(err));
	assert_non_null(o);
	assert_int_equal(json_object_get_int(o), 42);
	json_object_put(o);
	o = parse("[1e3, -2.5E-2, true, false, null,]", err, sizeof(err));
	assert_non_null(o);
	assert_int_equal(json_object_array_length(o), 5);
	json_object_put(o);
	o = parse("[1,2,]", err, sizeof(err));
	assert_non_null(o);
	assert_int_equal(json_object_array_length(o), 2);
	json_object_put(o);
}

static void test_errors(void **state)
{
	(void)state;
	expect_error("{\"a\": 1 /* never closed", "line 1: unterminated comment");
	expect_error("{\n\n\"a\": \"never closed}", "line 3: unterminated string");
	expect_error("{\"a\": \"line\nbreak\"}", "line 1: unterminated string");
	expect_error("/* outer /* inner */ still outer */ {}", "line 1");
	expect_error("{\n\"a\": 1,\n\"b\" 2\n}", "line 3");
	expect_error("{\"a\": 1} {\"b\": 2}", "line 1");
	expect_error("{\"a\": 1}\n\n x", "line 3");
	expect_error("{\"a\": 1", "end of");
	expect_error("", "end of");
	expect_error("// only a comment\n", "end of");
	expect_error("[,]", "line 1");
	expect_error(" null ", "null");
	expect_error("[1,,]", "line 1");
	expect_error("{\"a\":,}", "line 1");
	expect_error("{'a': 1}", "single-quoted");
	expect_error("{\"a\": 1 / 2}", "line 1");
	expect_error("{\"a\": NaN}", "unexpected word 'NaN'");
	expect_error("[\n-Infinity]", "line 2: unexpected word 'Infinity'");
	expect_error("{\"a\": True}", "unexpected word");
	char err[64];
	assert_null(jsonc_parse("{\"a\":\0}", 7, err, sizeof(err)));
	assert_non_null(strstr(err, "NUL"));
	assert_null(jsonc_parse("{\n\n}\0", 5, err, sizeof(err)));
	assert_non_null(strstr(err, "line 3"));
}

static void test_deep_nesting(void **state)
{
	char buf[4096], err[256];
	(void)state;
	memset(buf, '[', 2000);
	memset(buf + 2000, ']', 2000);
	buf[4000] = '\0';
	assert_null(parse(buf, err, sizeof(err)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_comments_and_commas), cmocka_unit_test(test_strings_preserved),
		cmocka_unit_test(test_any_value),	    cmocka_unit_test(test_errors),
		cmocka_unit_test(test_deep_nesting),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
