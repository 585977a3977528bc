/* Shared by the task translator targets: random bytes as a CLI's stdout,
 * cut into lines and translated one by one, every event checked (a known
 * type, an object of data) and freed. */
#ifndef SANDBAR_FUZZ_TASK_LINES_H
#define SANDBAR_FUZZ_TASK_LINES_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "tasks/translate.h"

static void fuzz_task_event(void *arg, const char *type, struct json_object *data)
{
	size_t *n = arg;
	static const char *const types[] = { "message", "tool", "build", "error" };
	int known = 0;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		known |= strcmp(type, types[i]) == 0;
	if (!known || !json_object_is_type(data, json_type_object))
		abort();
	/* what gets stored must serialize */
	if (!json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN))
		abort();
	json_object_put(data);
	(*n)++;
}

static int fuzz_task_lines(enum task_agent agent, const uint8_t *data, size_t size)
{
	struct task_translator t;
	size_t events = 0;
	task_translator_init(&t, agent);
	for (size_t at = 0; at < size;) {
		const uint8_t *nl = memchr(data + at, '\n', size - at);
		size_t n = nl ? (size_t)(nl - (data + at)) : size - at;
		task_translate_line(&t, (const char *)data + at, n, (int64_t)at, fuzz_task_event, &events);
		at += n + 1;
	}
	if (t.npending > TASK_PENDING_MAX)
		abort();
	task_translator_free(&t);
	return 0;
}

#endif
