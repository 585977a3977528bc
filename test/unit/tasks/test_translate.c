/* The CLIs' JSON lines into task events: the lines each real CLI printed
 * for "create hello.txt containing hi" against the scripted model (the
 * .jsonl files here), our custom format, and lines that are not events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "tasks/translate.h"

#define EVENTS_MAX 64

struct seen {
	size_t n;
	char type[EVENTS_MAX][16];
	struct json_object *data[EVENTS_MAX];
};

static void collect(void *arg, const char *type, struct json_object *data)
{
	struct seen *s = arg;
	assert_true(s->n < EVENTS_MAX);
	snprintf(s->type[s->n], sizeof(s->type[0]), "%s", type);
	s->data[s->n++] = data;
}

static void seen_free(struct seen *s)
{
	for (size_t i = 0; i < s->n; i++)
		json_object_put(s->data[i]);
	s->n = 0;
}

static const char *field(struct seen *s, size_t i, const char *key)
{
	struct json_object *v;
	if (!json_object_object_get_ex(s->data[i], key, &v))
		return NULL;
	return json_object_get_string(v);
}

/* Feeds a whole file line by line, the clock moving 10 ms a line. */
static void feed_file(struct task_translator *t, const char *name, struct seen *s)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/test/unit/tasks/%s", SOURCE_ROOT, name);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int64_t now = 1000;
	while ((n = getline(&line, &cap, f)) > 0) {
		task_translate_line(t, line, (size_t)(line[n - 1] == '\n' ? n - 1 : n), now, collect, s);
		now += 10;
	}
	free(line);
	fclose(f);
}

static void feed(struct task_translator *t, const char *line, struct seen *s)
{
	task_translate_line(t, line, strlen(line), 0, collect, s);
}

static void test_opencode(void **state)
{
	struct task_translator t;
	struct seen s = { 0 };
	task_translator_init(&t, TASK_AGENT_OPENCODE);
	feed_file(&t, "opencode.jsonl", &s);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.type[0], "tool");
	assert_string_equal(field(&s, 0, "name"), "write");
	assert_string_equal(field(&s, 0, "input"), "/w/hello.txt");
	assert_string_equal(field(&s, 0, "output"), "Wrote file successfully.");
	assert_string_equal(field(&s, 0, "status"), "completed");
	assert_string_equal(s.type[1], "message");
	assert_string_equal(field(&s, 1, "text"), "Done: created hello.txt.");
	assert_string_equal(t.final_message, "Done: created hello.txt.");
	assert_true(t.have_tokens);
	assert_int_equal(t.input_tokens, 240); /* two steps of 120 */
	assert_int_equal(t.output_tokens, 60);
	assert_null(t.error);
	assert_int_equal(t.events, 6);
	seen_free(&s);
	/* an error event fails the run */
	feed(&t,
	     "{\"type\":\"error\",\"error\":{\"name\":\"APIError\",\"data\":{\"message\":\"model down\"}}}",
	     &s);
	assert_string_equal(s.type[0], "error");
	assert_string_equal(t.error, "model down");
	seen_free(&s);
	/* a bash tool also shows as a build */
	feed(&t,
	     "{\"type\":\"tool_use\",\"part\":{\"tool\":\"bash\",\"state\":{\"status\":\"completed\","
	     "\"input\":"
	     "{\"command\":\"make\"},\"output\":\"ok\\n\",\"metadata\":{\"exit\":0},\"time\":{\"start\":1,"
	     "\"end\":5}}}}",
	     &s);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.type[1], "build");
	assert_string_equal(field(&s, 1, "command"), "make");
	assert_string_equal(field(&s, 0, "duration_ms"), "4");
	seen_free(&s);
	task_translator_free(&t);
}

static void test_claude(void **state)
{
	struct task_translator t;
	struct seen s = { 0 };
	task_translator_init(&t, TASK_AGENT_CLAUDE);
	feed_file(&t, "claude.jsonl", &s);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.type[0], "tool");
	assert_string_equal(field(&s, 0, "name"), "Write");
	assert_string_equal(field(&s, 0, "input"), "/w/hello.txt");
	assert_non_null(strstr(field(&s, 0, "output"), "File created successfully"));
	assert_string_equal(field(&s, 0, "duration_ms"), "10"); /* the next line, 10 ms later */
	assert_string_equal(s.type[1], "message");
	assert_string_equal(t.final_message, "Done: created hello.txt.");
	assert_int_equal(t.input_tokens, 240);
	assert_int_equal(t.output_tokens, 60);
	assert_null(t.error);
	seen_free(&s);
	feed(&t,
	     "{\"type\":\"result\",\"subtype\":\"error_during_execution\",\"is_error\":true,\"result\":"
	     "\"boom\"}",
	     &s);
	assert_string_equal(t.error, "boom");
	/* a retry is not fatal */
	task_translator_free(&t);
	task_translator_init(&t, TASK_AGENT_CLAUDE);
	seen_free(&s);
	feed(&t, "{\"type\":\"system\",\"subtype\":\"api_retry\",\"attempt\":1,\"error\":\"unknown\"}", &s);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.type[0], "error");
	assert_string_equal(field(&s, 0, "fatal"), "false");
	assert_null(t.error);
	seen_free(&s);
	task_translator_free(&t);
}

static void test_codex(void **state)
{
	struct task_translator t;
	struct seen s = { 0 };
	task_translator_init(&t, TASK_AGENT_CODEX);
	feed_file(&t, "codex.jsonl", &s);
	/* the metadata warning, the command (a tool and a build), the message */
	assert_int_equal(s.n, 4);
	assert_string_equal(s.type[0], "error");
	assert_string_equal(field(&s, 0, "fatal"), "false");
	assert_string_equal(s.type[1], "tool");
	assert_string_equal(field(&s, 1, "name"), "command");
	assert_string_equal(field(&s, 1, "duration_ms"), "10");
	assert_string_equal(s.type[2], "build");
	assert_string_equal(field(&s, 2, "exit_code"), "0");
	assert_string_equal(s.type[3], "message");
	assert_string_equal(t.final_message, "Done: created hello.txt.");
	assert_int_equal(t.input_tokens, 240);
	assert_null(t.error);
	seen_free(&s);
	feed(&t, "{\"type\":\"turn.failed\",\"error\":{\"message\":\"stream disconnected\"}}", &s);
	assert_string_equal(t.error, "stream disconnected");
	seen_free(&s);
	task_translator_free(&t);
}

static void test_custom(void **state)
{
	struct task_translator t;
	struct seen s = { 0 };
	task_translator_init(&t, TASK_AGENT_CUSTOM);
	feed(&t, "{\"type\":\"message\",\"text\":\"working\"}", &s);
	feed(&t,
	     "{\"type\":\"tool\",\"name\":\"write\",\"input\":{\"path\":\"a.txt\"},\"output\":\"ok\","
	     "\"duration_ms\":3}",
	     &s);
	feed(&t, "plain text line", &s);
	feed(&t, "{\"type\":\"usage\",\"input_tokens\":5,\"output_tokens\":7}", &s);
	feed(&t, "{\"type\":\"result\",\"status\":\"succeeded\",\"message\":\"all done\"}", &s);
	feed(&t, "{\"type\":\"whatever\"}", &s);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.type[0], "message");
	assert_string_equal(s.type[1], "tool");
	assert_string_equal(field(&s, 1, "input"), "a.txt");
	assert_string_equal(s.type[2], "build");
	assert_string_equal(field(&s, 2, "output"), "plain text line");
	assert_true(t.custom_status && t.succeeded);
	assert_string_equal(t.final_message, "all done");
	assert_int_equal(t.output_tokens, 7);
	seen_free(&s);
	feed(&t, "{\"type\":\"result\",\"status\":\"failed\",\"reason\":\"tests fail\"}", &s);
	assert_false(t.succeeded);
	assert_string_equal(t.error, "tests fail");
	task_translator_free(&t);
}

static void test_not_events(void **state)
{
	static const char *const lines[] = { "",
					     "   ",
					     "not json",
					     "{",
					     "{\"type\":1}",
					     "[1,2]",
					     "{\"a\":1} trailing",
					     "{\"type\":\"tool_use\",\"part\":7}",
					     "{\"type\":\"text\",\"part\":{\"text\":5}}" };
	for (int a = 0; a < TASK_AGENT_CUSTOM; a++) {
		struct task_translator t;
		struct seen s = { 0 };
		task_translator_init(&t, (enum task_agent)a);
		for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
			feed(&t, lines[i], &s);
		assert_null(t.error);
		assert_null(t.final_message);
		seen_free(&s);
		task_translator_free(&t);
	}
	enum task_agent ag;
	assert_int_equal(task_agent_parse("claude", &ag), 0);
	assert_int_equal(ag, TASK_AGENT_CLAUDE);
	assert_int_equal(task_agent_parse("gpt", &ag), -1);
	assert_string_equal(task_agent_name(TASK_AGENT_CODEX), "codex");
}

static void test_summary(void **state)
{
	char big[1000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	struct json_object *v = json_object_new_string(big), *sum = task_summary(v, 10);
	assert_string_equal(json_object_get_string(sum), "xxxxxxxxxx\xe2\x80\xa6");
	json_object_put(sum);
	json_object_put(v);
	/* cut on a UTF-8 boundary: é is two bytes */
	v = json_object_new_string("ééééé");
	sum = task_summary(v, 5);
	assert_string_equal(json_object_get_string(sum), "éé\xe2\x80\xa6");
	json_object_put(sum);
	json_object_put(v);
	v = json_tokener_parse("{\"command\":[\"bash\",\"-lc\",\"ls\"]}");
	sum = task_summary(v, 100);
	assert_string_equal(json_object_get_string(sum), "ls");
	json_object_put(sum);
	json_object_put(v);
	v = json_tokener_parse("{\"other\":1}");
	sum = task_summary(v, 100);
	assert_string_equal(json_object_get_string(sum), "{\"other\":1}");
	json_object_put(sum);
	json_object_put(v);
	sum = task_summary(NULL, 10);
	assert_string_equal(json_object_get_string(sum), "");
	json_object_put(sum);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_opencode),   cmocka_unit_test(test_claude),
		cmocka_unit_test(test_codex),	   cmocka_unit_test(test_custom),
		cmocka_unit_test(test_not_events), cmocka_unit_test(test_summary),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
