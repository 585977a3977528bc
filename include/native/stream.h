/* Event streams out of the API, for every dialect: Server-Sent Events
 * (`id:`, `event:`, `data:` lines) or NDJSON (one JSON object per line with a
 * "type"), and the output bytes of a command as JSON text or base64. */
#ifndef SANDBAR_NATIVE_STREAM_H
#define SANDBAR_NATIVE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

struct json_object;

enum stream_format { STREAM_NONE, STREAM_SSE, STREAM_NDJSON, STREAM_FORMAT_MAX };

/* From an Accept header: text/event-stream or application/x-ndjson (also
 * application/ndjson, application/jsonl); STREAM_NONE otherwise. */
enum stream_format stream_format_from_accept(const char *accept);
const char *stream_content_type(enum stream_format f);

/* Appends one event. id < 0: no SSE id line. data is an object (borrowed);
 * NDJSON puts "type" first, then data's members. */
void stream_event(struct evbuffer *out, enum stream_format f, const char *type, int64_t id,
		  struct json_object *data);

/* Adds "data" to obj: the bytes as a JSON string when they are valid UTF-8,
 * else base64 with "encoding":"base64" beside it. */
void stream_add_bytes(struct json_object *obj, const char *key, const uint8_t *data, size_t len);
/* Standard base64 (with padding) of data, appended to out. */
void stream_base64(struct evbuffer *out, const uint8_t *data, size_t len);
/* As a new json string. */
struct json_object *stream_base64_string(const uint8_t *data, size_t len);
/* Valid UTF-8 without NUL bytes? (NUL is fine in JSON but not in PG text). */
bool stream_utf8_valid(const uint8_t *data, size_t len);

#endif
