/* SSE and NDJSON event framing, and the JSON form of output bytes, shared by
 * the API dialects: text when it is UTF-8, base64 when it is not. */
#include "native/stream.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "core/check.h"
#include "core/base64.h"
#include "core/utf8.h"

static bool accept_has(const char *accept, const char *type);

static bool accept_has(const char *accept, const char *type)
{
	size_t n = strlen(type);
	for (const char *p = accept; p && *p;) {
		while (*p == ' ' || *p == ',')
			p++;
		if (strncasecmp(p, type, n) == 0 &&
		    (p[n] == '\0' || p[n] == ',' || p[n] == ';' || p[n] == ' '))
			return true;
		p = strchr(p, ',');
	}
	return false;
}

enum stream_format stream_format_from_accept(const char *accept)
{
	if (!accept)
		return STREAM_NONE;
	if (accept_has(accept, "text/event-stream"))
		return STREAM_SSE;
	if (accept_has(accept, "application/x-ndjson") || accept_has(accept, "application/ndjson") ||
	    accept_has(accept, "application/jsonl"))
		return STREAM_NDJSON;
	return STREAM_NONE;
}

const char *stream_content_type(enum stream_format f)
{
	switch (f) {
	case STREAM_SSE:
		return "text/event-stream";
	case STREAM_NDJSON:
		return "application/x-ndjson";
	default:
		return "application/json";
	}
}

void stream_event(struct evbuffer *out, enum stream_format f, const char *type, int64_t id,
		  struct json_object *data)
{
	CHECK(f == STREAM_SSE || f == STREAM_NDJSON);
	if (f == STREAM_SSE) {
		if (id >= 0)
			evbuffer_add_printf(out, "id: %lld\n", (long long)id);
		/* JSON text never holds a raw newline, so one data line is enough */
		const char *js = json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN |
									      JSON_C_TO_STRING_NOSLASHESCAPE);
		evbuffer_add_printf(out, "event: %s\ndata: %s\n\n", type, js);
		return;
	}
	struct json_object *line = json_object_new_object();
	json_object_object_add(line, "type", json_object_new_string(type));
	json_object_object_foreach(data, key, val) json_object_object_add(line, key, json_object_get(val));
	const char *js =
		json_object_to_json_string_ext(line, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	evbuffer_add(out, js, strlen(js));
	evbuffer_add(out, "\n", 1);
	json_object_put(line);
}

bool stream_utf8_valid(const uint8_t *data, size_t len)
{
	return utf8_valid_prefix((const char *)data, len) == len;
}

void stream_base64(struct evbuffer *out, const uint8_t *data, size_t len)
{
	size_t n = base64_encoded_size(len); /* with the NUL, which is not committed */
	struct evbuffer_iovec v;
	if (len == 0)
		return;
	CHECK(evbuffer_reserve_space(out, (ev_ssize_t)n, &v, 1) >= 1 && v.iov_len >= n);
	v.iov_len = base64_encode(data, len, v.iov_base);
	CHECK(evbuffer_commit_space(out, &v, 1) == 0);
}

struct json_object *stream_base64_string(const uint8_t *data, size_t len)
{
	size_t got;
	char *buf = base64_encode_alloc(data, len, &got);
	struct json_object *s = json_object_new_string_len(buf, (int)got);
	free(buf);
	return s;
}

void stream_add_bytes(struct json_object *obj, const char *key, const uint8_t *data, size_t len)
{
	if (stream_utf8_valid(data, len)) {
		json_object_object_add(obj, key, json_object_new_string_len((const char *)data, (int)len));
		return;
	}
	json_object_object_add(obj, key, stream_base64_string(data, len));
	json_object_object_add(obj, "encoding", json_object_new_string("base64"));
}
