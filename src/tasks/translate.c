/* Each coding-agent CLI's JSON lines (as OpenCode 1.18, Claude Code 2.1 and
 * Codex 0.171 print them), and our custom format's, into task events one line
 * at a time, as they come; unknown lines and fields are skipped. */
#include "tasks/translate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/utf8.h"

static struct json_object *jget(struct json_object *o, ...);
static const char *jstr(struct json_object *o, const char *key);
static struct json_object *text_cut(const char *s, size_t len, size_t max);
static void emit_message(struct task_translator *t, const char *text, task_emit_fn emit, void *arg);
static void emit_error(struct task_translator *t, const char *message, bool fatal, task_emit_fn emit,
		       void *arg);
static void emit_tool(const char *name, struct json_object *input, struct json_object *output,
		      int64_t duration_ms, bool failed, task_emit_fn emit, void *arg);
static void emit_build(const char *command, struct json_object *output, struct json_object *exit_code,
		       task_emit_fn emit, void *arg);
static void pending_add(struct task_translator *t, const char *id, const char *name,
			struct json_object *input, int64_t now_ms);
static bool pending_take(struct task_translator *t, const char *id, struct task_pending_tool *out);
static void pending_clear(struct task_pending_tool *p);
static bool opencode_line(struct task_translator *t, struct json_object *o, task_emit_fn emit, void *arg);
static bool claude_line(struct task_translator *t, struct json_object *o, int64_t now_ms, task_emit_fn emit,
			void *arg);
static bool codex_line(struct task_translator *t, struct json_object *o, int64_t now_ms, task_emit_fn emit,
		       void *arg);
static bool custom_line(struct task_translator *t, struct json_object *o, task_emit_fn emit, void *arg);

static const char *const agent_names[TASK_AGENT_MAX] = {
	[TASK_AGENT_OPENCODE] = "opencode",
	[TASK_AGENT_CLAUDE] = "claude",
	[TASK_AGENT_CODEX] = "codex",
	[TASK_AGENT_CUSTOM] = "custom",
};

const char *task_agent_name(enum task_agent a)
{
	return (unsigned)a < TASK_AGENT_MAX ? agent_names[a] : "?";
}

int task_agent_parse(const char *name, enum task_agent *out)
{
	int i = task_name_index(agent_names, TASK_AGENT_MAX, name);
	if (i < 0)
		return -1;
	*out = (enum task_agent)i;
	return 0;
}

void task_translator_init(struct task_translator *t, enum task_agent agent)
{
	memset(t, 0, sizeof(*t));
	t->agent = agent;
}

void task_translator_free(struct task_translator *t)
{
	free(t->final_message);
	free(t->error);
	for (size_t i = 0; i < t->npending; i++)
		pending_clear(&t->pending[i]);
	memset(t, 0, sizeof(*t));
}

void task_translate_line(struct task_translator *t, const char *line, size_t len, int64_t now_ms,
			 task_emit_fn emit, void *arg)
{
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
		len--;
	if (len == 0)
		return;
	t->lines++;
	struct json_object *o = NULL;
	if (line[0] == '{') {
		struct json_tokener *tok = json_tokener_new();
		CHECK(tok != NULL);
		o = json_tokener_parse_ex(tok, line, (int)len);
		if (json_tokener_get_error(tok) != json_tokener_success ||
		    json_tokener_get_parse_end(tok) != len || !json_object_is_type(o, json_type_object)) {
			json_object_put(o);
			o = NULL;
		}
		json_tokener_free(tok);
	}
	bool known = false;
	if (!o) {
		if (t->agent == TASK_AGENT_CUSTOM) /* plain output of a custom agent: shown as it is */
			emit_build(NULL, text_cut(line, len, TASK_BUILD_MAX), NULL, emit, arg);
		return;
	}
	switch (t->agent) {
	case TASK_AGENT_OPENCODE:
		known = opencode_line(t, o, emit, arg);
		break;
	case TASK_AGENT_CLAUDE:
		known = claude_line(t, o, now_ms, emit, arg);
		break;
	case TASK_AGENT_CODEX:
		known = codex_line(t, o, now_ms, emit, arg);
		break;
	default:
		known = custom_line(t, o, emit, arg);
		break;
	}
	if (known)
		t->events++;
	json_object_put(o);
}

/* ---- helpers ---- */

/* o["a"]["b"]... (NULL-terminated keys); NULL when any step is missing. */
static struct json_object *jget(struct json_object *o, ...)
{
	va_list ap;
	va_start(ap, o);
	for (const char *k; o && (k = va_arg(ap, const char *)) != NULL;) {
		struct json_object *v = NULL;
		if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, k, &v))
			v = NULL;
		o = v;
	}
	va_end(ap);
	return o;
}

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v = jget(o, key, NULL);
	return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

/* A JSON string of at most max bytes of s (valid UTF-8 kept whole, "…" when cut). */
static struct json_object *text_cut(const char *s, size_t len, size_t max)
{
	char *clean = utf8_sanitize(s, len);
	CHECK(clean != NULL);
	size_t n = strlen(clean);
	if (n > max) {
		n = utf8_valid_prefix(clean, max);
		char *cut = malloc(n + 4);
		CHECK(cut != NULL);
		memcpy(cut, clean, n);
		memcpy(cut + n, "\xe2\x80\xa6", 4); /* "…" */
		free(clean);
		clean = cut;
		n += 3;
	}
	struct json_object *v = json_object_new_string_len(clean, (int)n);
	free(clean);
	return v;
}

struct json_object *task_summary(struct json_object *v, size_t max)
{
	static const char *const telling[] = { "filePath", "file_path", "path",	 "command",    "cmd",
					       "pattern",  "url",	"query", "description" };
	if (!v)
		return json_object_new_string("");
	if (json_object_is_type(v, json_type_string))
		return text_cut(json_object_get_string(v), (size_t)json_object_get_string_len(v), max);
	if (json_object_is_type(v, json_type_object)) {
		for (size_t i = 0; i < ARRAY_LEN(telling); i++) {
			struct json_object *f = jget(v, telling[i], NULL);
			if (json_object_is_type(f, json_type_string))
				return task_summary(f, max);
			if (json_object_is_type(f, json_type_array) && json_object_array_length(f) > 0) {
				/* codex's shell: ["bash", "-lc", "..."]: the last word says most */
				return task_summary(
					json_object_array_get_idx(f, json_object_array_length(f) - 1), max);
			}
		}
	}
	if (json_object_is_type(v, json_type_array)) {
		/* content blocks: their texts */
		size_t n = json_object_array_length(v);
		for (size_t i = 0; i < n; i++) {
			const char *s = jstr(json_object_array_get_idx(v, i), "text");
			if (s)
				return text_cut(s, strlen(s), max);
		}
	}
	const char *js =
		json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	return text_cut(js, strlen(js), max);
}

static void emit_message(struct task_translator *t, const char *text, task_emit_fn emit, void *arg)
{
	if (!text || !*text)
		return;
	free(t->final_message);
	t->final_message = strdup(text);
	CHECK(t->final_message != NULL);
	struct json_object *d = json_object_new_object();
	json_object_object_add(d, "text", json_object_new_string(text));
	emit(arg, "message", d);
}

/* fatal: the run reports that it failed (transient retries are not). */
static void emit_error(struct task_translator *t, const char *message, bool fatal, task_emit_fn emit,
		       void *arg)
{
	const char *m = message && *message ? message : "the agent reported an error";
	if (fatal) {
		free(t->error);
		t->error = strdup(m);
		CHECK(t->error != NULL);
	}
	struct json_object *d = json_object_new_object();
	json_object_object_add(d, "message", text_cut(m, strlen(m), TASK_BUILD_MAX));
	json_object_object_add(d, "fatal", json_object_new_boolean(fatal));
	emit(arg, "error", d);
}

static void emit_tool(const char *name, struct json_object *input, struct json_object *output,
		      int64_t duration_ms, bool failed, task_emit_fn emit, void *arg)
{
	struct json_object *d = json_object_new_object();
	json_object_object_add(d, "name", json_object_new_string(name && *name ? name : "tool"));
	json_object_object_add(d, "input", task_summary(input, TASK_SUMMARY_MAX));
	json_object_object_add(d, "output", task_summary(output, TASK_SUMMARY_MAX));
	json_object_object_add(d, "duration_ms",
			       duration_ms >= 0 ? json_object_new_int64(duration_ms) : NULL);
	json_object_object_add(d, "status", json_object_new_string(failed ? "failed" : "completed"));
	emit(arg, "tool", d);
}

/* output taken; exit_code borrowed (may be NULL) */
static void emit_build(const char *command, struct json_object *output, struct json_object *exit_code,
		       task_emit_fn emit, void *arg)
{
	struct json_object *d = json_object_new_object();
	json_object_object_add(d, "command",
			       command ? text_cut(command, strlen(command), TASK_SUMMARY_MAX) : NULL);
	json_object_object_add(d, "output", output);
	json_object_object_add(d, "exit_code",
			       json_object_is_type(exit_code, json_type_int) ? json_object_get(exit_code)
									     : NULL);
	emit(arg, "build", d);
}

/* A shell tool's call worth showing as a build event: its command and output. */
static void maybe_build(const char *command, struct json_object *output, struct json_object *exit_code,
			task_emit_fn emit, void *arg)
{
	if (!command)
		return;
	const char *out = json_object_is_type(output, json_type_string) ? json_object_get_string(output) : "";
	size_t n = strlen(out);
	/* the end of long output is what tells how it went */
	size_t from = n > TASK_BUILD_MAX ? utf8_valid_prefix(out, n - TASK_BUILD_MAX) : 0;
	emit_build(command, json_object_new_string_len(out + from, (int)(n - from)), exit_code, emit, arg);
}

static void pending_clear(struct task_pending_tool *p)
{
	free(p->id);
	free(p->name);
	json_object_put(p->input);
	memset(p, 0, sizeof(*p));
}

static void pending_add(struct task_translator *t, const char *id, const char *name,
			struct json_object *input, int64_t now_ms)
{
	if (!id)
		return;
	if (t->npending == TASK_PENDING_MAX) {
		pending_clear(&t->pending[0]);
		memmove(&t->pending[0], &t->pending[1], (TASK_PENDING_MAX - 1) * sizeof(t->pending[0]));
		t->npending--;
	}
	struct task_pending_tool *p = &t->pending[t->npending++];
	p->id = strdup(id);
	p->name = strdup(name ? name : "tool");
	CHECK(p->id && p->name);
	p->input = json_object_get(input);
	p->started_ms = now_ms;
}

/* The pending call id (moved into out: clear it after), false when unknown. */
static bool pending_take(struct task_translator *t, const char *id, struct task_pending_tool *out)
{
	for (size_t i = 0; id && i < t->npending; i++) {
		if (strcmp(t->pending[i].id, id) != 0)
			continue;
		*out = t->pending[i];
		memmove(&t->pending[i], &t->pending[i + 1], (t->npending - i - 1) * sizeof(t->pending[0]));
		t->npending--;
		return true;
	}
	return false;
}

static void add_tokens(struct task_translator *t, struct json_object *in, struct json_object *out,
		       bool replace)
{
	if (!json_object_is_type(in, json_type_int) && !json_object_is_type(out, json_type_int))
		return;
	if (replace || !t->have_tokens)
		t->input_tokens = t->output_tokens = 0;
	t->input_tokens += json_object_get_int64(in);
	t->output_tokens += json_object_get_int64(out);
	t->have_tokens = true;
}

/* ---- OpenCode: step_start, tool_use, step_finish, text, reasoning, error ---- */

static bool opencode_line(struct task_translator *t, struct json_object *o, task_emit_fn emit, void *arg)
{
	const char *type = jstr(o, "type");
	struct json_object *part = jget(o, "part", NULL);
	if (!type)
		return false;
	if (strcmp(type, "text") == 0) {
		emit_message(t, jstr(part, "text"), emit, arg);
		return true;
	}
	if (strcmp(type, "tool_use") == 0) {
		struct json_object *state = jget(part, "state", NULL);
		const char *status = jstr(state, "status");
		bool failed = status && strcmp(status, "completed") != 0;
		struct json_object *out = jget(state, failed ? "error" : "output", NULL);
		struct json_object *t0 = jget(state, "time", "start", NULL),
				   *t1 = jget(state, "time", "end", NULL);
		int64_t dur = json_object_is_type(t0, json_type_int) && json_object_is_type(t1, json_type_int)
				      ? json_object_get_int64(t1) - json_object_get_int64(t0)
				      : -1;
		const char *tool = jstr(part, "tool");
		struct json_object *input = jget(state, "input", NULL);
		emit_tool(tool, input, out, dur, failed, emit, arg);
		if (tool && strcmp(tool, "bash") == 0)
			maybe_build(jstr(input, "command"), out, jget(state, "metadata", "exit", NULL), emit,
				    arg);
		return true;
	}
	if (strcmp(type, "step_finish") == 0) {
		add_tokens(t, jget(part, "tokens", "input", NULL), jget(part, "tokens", "output", NULL),
			   false);
		return true;
	}
	if (strcmp(type, "error") == 0) {
		const char *m = jstr(jget(o, "error", "data", NULL), "message");
		emit_error(t, m ? m : jstr(jget(o, "error", NULL), "name"), true, emit, arg);
		return true;
	}
	return strcmp(type, "step_start") == 0 || strcmp(type, "reasoning") == 0;
}

/* ---- Claude Code: system, assistant, user, result, stream_event ---- */

static void claude_blocks(struct task_translator *t, struct json_object *content, bool user, int64_t now_ms,
			  task_emit_fn emit, void *arg)
{
	size_t n = json_object_is_type(content, json_type_array) ? json_object_array_length(content) : 0;
	for (size_t i = 0; i < n; i++) {
		struct json_object *b = json_object_array_get_idx(content, i);
		const char *bt = jstr(b, "type");
		if (!bt)
			continue;
		if (!user && strcmp(bt, "text") == 0) {
			emit_message(t, jstr(b, "text"), emit, arg);
		} else if (!user && strcmp(bt, "tool_use") == 0) {
			pending_add(t, jstr(b, "id"), jstr(b, "name"), jget(b, "input", NULL), now_ms);
		} else if (user && strcmp(bt, "tool_result") == 0) {
			struct task_pending_tool p = { 0 };
			bool found = pending_take(t, jstr(b, "tool_use_id"), &p);
			struct json_object *err = jget(b, "is_error", NULL);
			bool failed =
				json_object_is_type(err, json_type_boolean) && json_object_get_boolean(err);
			struct json_object *out = jget(b, "content", NULL);
			emit_tool(found ? p.name : "tool", p.input, out, found ? now_ms - p.started_ms : -1,
				  failed, emit, arg);
			if (found && strcmp(p.name, "Bash") == 0) {
				struct json_object *text = task_summary(out, SIZE_MAX);
				maybe_build(jstr(p.input, "command"), text, NULL, emit, arg);
				json_object_put(text);
			}
			pending_clear(&p);
		}
	}
}

static bool claude_line(struct task_translator *t, struct json_object *o, int64_t now_ms, task_emit_fn emit,
			void *arg)
{
	const char *type = jstr(o, "type");
	if (!type)
		return false;
	if (strcmp(type, "assistant") == 0 || strcmp(type, "user") == 0) {
		claude_blocks(t, jget(o, "message", "content", NULL), type[0] == 'u', now_ms, emit, arg);
		return true;
	}
	if (strcmp(type, "result") == 0) {
		add_tokens(t, jget(o, "usage", "input_tokens", NULL), jget(o, "usage", "output_tokens", NULL),
			   true);
		struct json_object *is_error = jget(o, "is_error", NULL);
		const char *result = jstr(o, "result");
		if (json_object_is_type(is_error, json_type_boolean) && json_object_get_boolean(is_error)) {
			const char *sub = jstr(o, "subtype");
			emit_error(t, result ? result : sub, true, emit, arg);
		} else if (result && *result) {
			free(t->final_message);
			t->final_message = strdup(result);
			CHECK(t->final_message != NULL);
		}
		return true;
	}
	if (strcmp(type, "system") == 0) {
		const char *sub = jstr(o, "subtype");
		if (sub && strcmp(sub, "api_retry") == 0) {
			const char *e = jstr(o, "error");
			char m[200];
			snprintf(m, sizeof(m), "the model API failed (%s); retrying", e ? e : "unknown");
			emit_error(t, m, false, emit, arg);
		}
		return true;
	}
	return strcmp(type, "stream_event") == 0;
}

/* ---- Codex: thread.*, turn.*, item.started/completed, error ---- */

static bool codex_line(struct task_translator *t, struct json_object *o, int64_t now_ms, task_emit_fn emit,
		       void *arg)
{
	const char *type = jstr(o, "type");
	struct json_object *item = jget(o, "item", NULL);
	const char *it = jstr(item, "type");
	if (!type)
		return false;
	if (strcmp(type, "item.started") == 0) {
		pending_add(t, jstr(item, "id"), it, NULL, now_ms);
		return true;
	}
	if (strcmp(type, "item.completed") == 0 && it) {
		struct task_pending_tool p = { 0 };
		bool found = pending_take(t, jstr(item, "id"), &p);
		int64_t dur = found ? now_ms - p.started_ms : -1;
		pending_clear(&p);
		if (strcmp(it, "agent_message") == 0) {
			emit_message(t, jstr(item, "text"), emit, arg);
		} else if (strcmp(it, "error") == 0) {
			emit_error(t, jstr(item, "message"), false, emit, arg);
		} else if (strcmp(it, "command_execution") == 0) {
			struct json_object *code = jget(item, "exit_code", NULL);
			bool failed =
				json_object_is_type(code, json_type_int) && json_object_get_int(code) != 0;
			struct json_object *out = jget(item, "aggregated_output", NULL);
			emit_tool("command", jget(item, "command", NULL), out, dur, failed, emit, arg);
			maybe_build(jstr(item, "command"), out, code, emit, arg);
		} else if (strcmp(it, "file_change") == 0) {
			const char *status = jstr(item, "status");
			emit_tool("file_change", jget(item, "changes", NULL), jget(item, "status", NULL), dur,
				  status && strcmp(status, "completed") != 0, emit, arg);
		} else if (strcmp(it, "mcp_tool_call") == 0 || strcmp(it, "web_search") == 0) {
			const char *name = jstr(item, "tool");
			emit_tool(name ? name : it,
				  jget(item, strcmp(it, "web_search") == 0 ? "query" : "arguments", NULL),
				  jget(item, "result", NULL), dur, jget(item, "error", NULL) != NULL, emit,
				  arg);
		}
		return true;
	}
	if (strcmp(type, "turn.completed") == 0) {
		add_tokens(t, jget(o, "usage", "input_tokens", NULL), jget(o, "usage", "output_tokens", NULL),
			   false);
		return true;
	}
	if (strcmp(type, "turn.failed") == 0) {
		emit_error(t, jstr(jget(o, "error", NULL), "message"), true, emit, arg);
		return true;
	}
	if (strcmp(type, "error") == 0) {
		/* "Reconnecting... 2/5": transient; a run that gives up says turn.failed */
		emit_error(t, jstr(o, "message"), false, emit, arg);
		return true;
	}
	return strncmp(type, "thread.", 7) == 0 || strncmp(type, "turn.", 5) == 0 ||
	       strcmp(type, "item.updated") == 0;
}

/* ---- custom: our own event lines ---- */

static bool custom_line(struct task_translator *t, struct json_object *o, task_emit_fn emit, void *arg)
{
	const char *type = jstr(o, "type");
	if (!type)
		return false;
	if (strcmp(type, "message") == 0) {
		emit_message(t, jstr(o, "text"), emit, arg);
	} else if (strcmp(type, "tool") == 0) {
		struct json_object *dur = jget(o, "duration_ms", NULL);
		const char *status = jstr(o, "status");
		emit_tool(jstr(o, "name"), jget(o, "input", NULL), jget(o, "output", NULL),
			  json_object_is_type(dur, json_type_int) ? json_object_get_int64(dur) : -1,
			  status && strcmp(status, "failed") == 0, emit, arg);
	} else if (strcmp(type, "build") == 0) {
		const char *out = jstr(o, "output");
		emit_build(jstr(o, "command"),
			   text_cut(out ? out : "", out ? strlen(out) : 0, TASK_BUILD_MAX),
			   jget(o, "exit_code", NULL), emit, arg);
	} else if (strcmp(type, "error") == 0) {
		struct json_object *fatal = jget(o, "fatal", NULL);
		emit_error(t, jstr(o, "message"),
			   json_object_is_type(fatal, json_type_boolean) && json_object_get_boolean(fatal),
			   emit, arg);
	} else if (strcmp(type, "usage") == 0) {
		add_tokens(t, jget(o, "input_tokens", NULL), jget(o, "output_tokens", NULL), false);
	} else if (strcmp(type, "result") == 0) {
		const char *status = jstr(o, "status"), *message = jstr(o, "message");
		if (message && *message) {
			free(t->final_message);
			t->final_message = strdup(message);
			CHECK(t->final_message != NULL);
		}
		t->custom_status = status != NULL;
		t->succeeded = status && strcmp(status, "succeeded") == 0;
		if (status && !t->succeeded) {
			const char *reason = jstr(o, "reason");
			free(t->error);
			t->error = strdup(reason && *reason ? reason : "the agent reported failure");
			CHECK(t->error != NULL);
		}
	} else {
		return false;
	}
	return true;
}
