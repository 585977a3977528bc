/* Event streams: SSE and NDJSON framing, output bytes as text or base64. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <json-c/json.h>

#include "native/stream.h"

static char *drain(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	return s;
}

static void test_accept(void **state)
{
	assert_int_equal(stream_format_from_accept(NULL), STREAM_NONE);
	assert_int_equal(stream_format_from_accept("application/json"), STREAM_NONE);
	assert_int_equal(stream_format_from_accept("text/event-stream"), STREAM_SSE);
	assert_int_equal(stream_format_from_accept("application/json, text/event-stream;q=0.9"), STREAM_SSE);
	assert_int_equal(stream_format_from_accept("application/x-ndjson"), STREAM_NDJSON);
	assert_int_equal(stream_format_from_accept("text/event-streamx"), STREAM_NONE);
	assert_string_equal(stream_content_type(STREAM_SSE), "text/event-stream");
	assert_string_equal(stream_content_type(STREAM_NDJSON), "application/x-ndjson");
}

static void test_sse(void **state)
{
	struct evbuffer *b = evbuffer_new();
	struct json_object *d = json_object_new_object();
	stream_add_bytes(d, "data", (const uint8_t *)"a\nb", 3);
	stream_event(b, STREAM_SSE, "stdout", 42, d);
	char *s = drain(b);
	assert_string_equal(s, "id: 42\nevent: stdout\ndata: {\"data\":\"a\\nb\"}\n\n");
	free(s);
	stream_event(b, STREAM_SSE, "exit", -1, d);
	s = drain(b);
	assert_string_equal(s, "event: exit\ndata: {\"data\":\"a\\nb\"}\n\n");
	free(s);
	json_object_put(d);
	evbuffer_free(b);
}

static void test_ndjson(void **state)
{
	struct evbuffer *b = evbuffer_new();
	struct json_object *d = json_object_new_object();
	json_object_object_add(d, "offset", json_object_new_int(7));
	stream_add_bytes(d, "data", (const uint8_t *)"\xff\x00z", 3);
	stream_event(b, STREAM_NDJSON, "stderr", 10, d);
	char *s = drain(b);
	assert_string_equal(s,
			    "{\"type\":\"stderr\",\"offset\":7,\"data\":\"/wB6\",\"encoding\":\"base64\"}\n");
	free(s);
	json_object_put(d);
	evbuffer_free(b);
}

static void test_base64(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = { { "", "" },
		      { "f", "Zg==" },
		      { "fo", "Zm8=" },
		      { "foo", "Zm9v" },
		      { "foob", "Zm9vYg==" },
		      { "fooba", "Zm9vYmE=" },
		      { "foobar", "Zm9vYmFy" } };
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct evbuffer *b = evbuffer_new();
		stream_base64(b, (const uint8_t *)cases[i].in, strlen(cases[i].in));
		char *s = drain(b);
		assert_string_equal(s, cases[i].out);
		free(s);
		evbuffer_free(b);
		struct json_object *j =
			stream_base64_string((const uint8_t *)cases[i].in, strlen(cases[i].in));
		assert_string_equal(json_object_get_string(j), cases[i].out);
		json_object_put(j);
	}
	assert_true(stream_utf8_valid((const uint8_t *)"h\xc3\xa9", 3));
	assert_false(stream_utf8_valid((const uint8_t *)"h\xc3", 2));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accept),
		cmocka_unit_test(test_sse),
		cmocka_unit_test(test_ndjson),
		cmocka_unit_test(test_base64),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
