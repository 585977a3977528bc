/* The coding-agent CLIs' JSON event lines (OpenCode, Claude Code, Codex) and
 * our `custom` format, translated line by line into task events (message,
 * tool, build, error). Pure: no I/O, the clock is the caller's. */
#ifndef SANDBAR_TASKS_TRANSLATE_H
#define SANDBAR_TASKS_TRANSLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/check.h"

struct json_object;

enum task_agent {
	TASK_AGENT_OPENCODE,
	TASK_AGENT_CLAUDE,
	TASK_AGENT_CODEX,
	TASK_AGENT_CUSTOM,
	TASK_AGENT_MAX
};
const char *task_agent_name(enum task_agent a);
/* 0, or -1 for a name that is no agent. */
MUST_USE int task_agent_parse(const char *name, enum task_agent *out);
/* The index of name in names[0..n), -1 when absent (state.c). */
int task_name_index(const char *const *names, int n, const char *name);

/* Summaries kept in a tool event (input, output) and a build event (output). */
#define TASK_SUMMARY_MAX 300
#define TASK_BUILD_MAX	 2000
/* Tool calls waiting for their result (Claude, Codex): the oldest are dropped past this. */
#define TASK_PENDING_MAX 32

struct task_pending_tool {
	char *id, *name;
	struct json_object *input;
	int64_t started_ms;
};

struct task_translator {
	enum task_agent agent;
	char *final_message; /* the agent's last text, NULL before any */
	char *error;	     /* the run's own report of its failure, NULL when none */
	int64_t input_tokens, output_tokens;
	bool have_tokens;
	bool custom_status; /* custom: a result line set succeeded below */
	bool succeeded;
	uint64_t lines, events; /* lines seen, lines that were events of this agent */
	struct task_pending_tool pending[TASK_PENDING_MAX];
	size_t npending;
};

/* One of our events: type "message", "tool", "build" or "error"; data is
 * handed to the callee (put it when done). */
typedef void (*task_emit_fn)(void *arg, const char *type, struct json_object *data);

void task_translator_init(struct task_translator *t, enum task_agent agent);
void task_translator_free(struct task_translator *t);
/* One line of the agent's stdout, without its newline (any bytes: a line
 * that is no JSON object is skipped, or for custom a build event); now_ms
 * times tool calls. */
void task_translate_line(struct task_translator *t, const char *line, size_t len, int64_t now_ms,
			 task_emit_fn emit, void *arg);

/* A summary of any JSON value: a string as it is, an object by its most
 * telling field (a path, a command, a pattern) or as compact JSON; cut to
 * max bytes on a UTF-8 boundary with "…". Never NULL. */
struct json_object *task_summary(struct json_object *v, size_t max);

#endif
