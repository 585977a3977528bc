/* The native API's task routes: start a coding-agent task, list and read
 * tasks, follow their events (SSE or NDJSON, resumable), cancel, diff,
 * revert. Thin: parse, call the task service (src/tasks/), render. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/config.h"
#include "core/strv.h"
#include "http/server.h"
#include "internal.h"
#include "native/stream.h"
#include "tasks/tasks.h"

#define PROMPT_MAX    (256u << 10)
#define MODEL_MAX     200
#define ENV_MAX	      100
#define ENV_VALUE_MAX (32u << 10)
#define ENV_TOTAL_MAX (256u << 10) /* with the prompt, well inside the agent's 1 MiB spawn frame */
/* an SSE comment this often keeps a quiet stream through proxies' read timeouts */
#define PING_SECONDS 15

struct task_req {
	struct http_request *req;
	struct native *nat;
	struct task_op *op;
	enum stream_format fmt;
	bool started;
	struct event *ping; /* SSE: the keep-alive comment */
};

static void create_route(struct http_request *req, void *arg);
static void create_body(struct http_request *req, struct json_object *body, void *arg);
static void list_route(struct http_request *req, void *arg);
static void get_route(struct http_request *req, void *arg);
static void events_route(struct http_request *req, void *arg);
static void cancel_route(struct http_request *req, void *arg);
static void diff_route(struct http_request *req, void *arg);
static void revert_route(struct http_request *req, void *arg);
static void req_cancel(void *arg);
static void info_answer(const struct core_error *fail, const struct task_info *info, void *arg);
static void list_answer(const struct core_error *fail, const struct task_info *list, size_t n, void *arg);
static void diff_answer(const struct core_error *fail, const char *text, size_t len, void *arg);
static void revert_answer(const struct core_error *fail, const char *text, size_t len, void *arg);
static void watch_opened(void *arg);
static void watch_event(void *arg, int64_t seq, const char *type, const char *data);
static void watch_end(void *arg, const struct core_error *fail);
static void ping_fire(evutil_socket_t fd, short what, void *arg);

static const struct task_watch_ops watch_ops = {
	.opened = watch_opened,
	.event = watch_event,
	.end = watch_end,
};

int native_task_routes(struct native *nat)
{
	struct router *r = nat->router;
	if (router_add(r, "POST", "/api/sandboxes/{id}/tasks", create_route, nat) != 0 ||
	    router_add(r, "GET", "/api/sandboxes/{id}/tasks", list_route, nat) != 0 ||
	    router_add(r, "GET", "/api/sandboxes/{id}/tasks/{tid}", get_route, nat) != 0 ||
	    router_add(r, "GET", "/api/sandboxes/{id}/tasks/{tid}/events", events_route, nat) != 0 ||
	    router_add(r, "POST", "/api/sandboxes/{id}/tasks/{tid}/cancel", cancel_route, nat) != 0 ||
	    router_add(r, "GET", "/api/sandboxes/{id}/tasks/{tid}/diff", diff_route, nat) != 0 ||
	    router_add(r, "POST", "/api/sandboxes/{id}/tasks/{tid}/revert", revert_route, nat) != 0)
		return -1;
	return 0;
}

static struct task_req *req_new(struct http_request *req, struct native *nat)
{
	struct task_req *tr = http_request_alloc(req, sizeof(*tr));
	tr->req = req;
	tr->nat = nat;
	http_request_set_cancel(req, req_cancel, tr);
	return tr;
}

static void ping_stop(struct task_req *tr)
{
	if (tr->ping)
		event_free(tr->ping);
	tr->ping = NULL;
}

static void req_cancel(void *arg)
{
	struct task_req *tr = arg;
	ping_stop(tr);
	task_op_cancel(tr->op);
	tr->op = NULL;
}

/* The request is answered (or about to be): no cancel, no more op. */
static void req_done(struct task_req *tr)
{
	ping_stop(tr);
	tr->op = NULL;
	http_request_set_cancel(tr->req, NULL, NULL);
}

/* ---- the task's JSON ---- */

static struct json_object *task_json(const struct task_info *t)
{
	struct json_object *o = json_object_new_object();
	bool final = task_state_final(t->state);
	json_object_object_add(o, "id", json_object_new_string(t->id));
	json_object_object_add(o, "sandbox_id", json_object_new_string(t->sandbox_id));
	json_object_object_add(o, "agent", json_object_new_string(task_agent_name(t->agent)));
	json_object_object_add(o, "prompt", json_object_new_string(t->prompt ? t->prompt : ""));
	json_object_object_add(o, "model", t->model ? json_object_new_string(t->model) : NULL);
	json_object_object_add(o, "status",
			       json_object_new_string(final ? task_state_name(t->state) : "running"));
	json_object_object_add(o, "phase",
			       json_object_new_string(final ? "done" : task_state_name(t->state)));
	json_object_object_add(o, "reason", t->reason ? json_object_new_string(t->reason) : NULL);
	json_object_object_add(o, "result", t->result ? json_tokener_parse(t->result) : NULL);
	json_object_object_add(o, "before_commit",
			       t->before_commit ? json_object_new_string(t->before_commit) : NULL);
	json_object_object_add(o, "after_commit",
			       t->after_commit ? json_object_new_string(t->after_commit) : NULL);
	json_object_object_add(o, "timeout_seconds", json_object_new_int64(t->timeout_ms / 1000));
	json_object_object_add(o, "events", json_object_new_int64(t->last_seq));
	json_object_object_add(o, "created_at", native_time_json(t->created_at_us));
	json_object_object_add(o, "ended_at", native_time_json(t->ended_at_us));
	char url[160];
	snprintf(url, sizeof(url), "/api/sandboxes/%s/tasks/%s/events", t->sandbox_id, t->id);
	json_object_object_add(o, "events_url", json_object_new_string(url));
	return o;
}

/* ---- create ---- */

static bool env_name_ok(const char *k)
{
	if (!k[0] || strlen(k) > 128 || (k[0] >= '0' && k[0] <= '9'))
		return false;
	for (const char *p = k; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		      *p == '_'))
			return false;
	return true;
}

static void spec_free(struct task_spec *s)
{
	strv_free(s->env);
	strv_free(s->command);
}

/* The body of POST .../tasks; on bad input fills e and returns -1. */
static int task_spec_parse(struct json_object *body, int64_t max_timeout_ms, struct task_spec *s,
			   struct core_error *e)
{
	struct json_object *v;
	memset(s, 0, sizeof(*s));
	if (!json_object_is_type(body, json_type_object))
		return core_error_invalid(e, "invalid_body", "the body must be a JSON object");
	if (!json_object_object_get_ex(body, "agent", &v) || !json_object_is_type(v, json_type_string) ||
	    task_agent_parse(json_object_get_string(v), &s->agent) != 0)
		return core_error_invalid(e, "invalid_agent",
					  "'agent' must be one of opencode, claude, codex, custom");
	if (!json_object_object_get_ex(body, "prompt", &v) || !json_object_is_type(v, json_type_string) ||
	    json_object_get_string_len(v) == 0 || (size_t)json_object_get_string_len(v) > PROMPT_MAX ||
	    strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v))
		return core_error_invalid(e, "invalid_prompt",
					  "'prompt' must be a non-empty string (at most 256 KiB)");
	s->prompt = json_object_get_string(v);
	if (json_object_object_get_ex(body, "model", &v) && v) {
		if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0 ||
		    json_object_get_string_len(v) > MODEL_MAX || strchr(json_object_get_string(v), '\n'))
			return core_error_invalid(
				e, "invalid_model",
				"'model' must be a model name (a string of 1 to 200 bytes)");
		s->model = json_object_get_string(v);
	}
	if (json_object_object_get_ex(body, "cwd", &v) && v) {
		if (!json_object_is_type(v, json_type_string) || json_object_get_string(v)[0] != '/' ||
		    json_object_get_string_len(v) > 4096)
			return core_error_invalid(e, "invalid_cwd",
						  "'cwd' must be an absolute path in the sandbox");
		s->cwd = json_object_get_string(v);
	}
	if (json_object_object_get_ex(body, "timeout_seconds", &v) && v) {
		int64_t sec = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
		if (sec <= 0 || sec > max_timeout_ms / 1000) {
			core_error_set(e, CORE_INVALID, "invalid_timeout",
				       "'timeout_seconds' must be an integer from 1 to %lld",
				       (long long)(max_timeout_ms / 1000));
			return -1;
		}
		s->timeout_ms = sec * 1000;
	}
	if (json_object_object_get_ex(body, "env", &v) && v) {
		if (!json_object_is_type(v, json_type_object) || json_object_object_length(v) > ENV_MAX)
			return core_error_invalid(e, "invalid_env",
						  "'env' must be an object of at most 100 strings");
		size_t n = 0, total = 0;
		s->env = calloc((size_t)json_object_object_length(v) + 1, sizeof(char *));
		CHECK(s->env != NULL);
		json_object_object_foreach(v, key, val)
		{
			if (!env_name_ok(key) || !json_object_is_type(val, json_type_string) ||
			    (size_t)json_object_get_string_len(val) > ENV_VALUE_MAX ||
			    strlen(json_object_get_string(val)) != (size_t)json_object_get_string_len(val)) {
				core_error_set(
					e, CORE_INVALID, "invalid_env",
					"'env': '%.64s' must be a variable name ([A-Za-z_][A-Za-z0-9_]*) "
					"with a string value",
					key);
				spec_free(s);
				return -1;
			}
			if (asprintf(&s->env[n++], "%s=%s", key, json_object_get_string(val)) < 0)
				CHECK(0);
			total += strlen(s->env[n - 1]);
			if (total > ENV_TOTAL_MAX) {
				spec_free(s);
				return core_error_invalid(e, "invalid_env", "'env' is over 256 KiB in all");
			}
		}
	}
	bool has_cmd = json_object_object_get_ex(body, "command", &v) && v;
	if (s->agent != TASK_AGENT_CUSTOM && has_cmd) {
		spec_free(s);
		return core_error_invalid(e, "invalid_command", "'command' is for agent custom only");
	}
	if (s->agent == TASK_AGENT_CUSTOM) {
		size_t n = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 0;
		bool ok = has_cmd &&
			  ((json_object_is_type(v, json_type_string) && json_object_get_string_len(v) > 0) ||
			   n > 0);
		for (size_t i = 0; ok && i < n; i++) {
			struct json_object *w = json_object_array_get_idx(v, i);
			ok = json_object_is_type(w, json_type_string) && json_object_get_string_len(w) > 0;
		}
		if (!ok) {
			spec_free(s);
			return core_error_invalid(
				e, "invalid_command",
				"agent custom needs 'command': a shell string or an array of strings");
		}
		s->command = calloc(n > 0 ? n + 1 : 4, sizeof(char *));
		CHECK(s->command != NULL);
		if (n == 0) {
			s->command[0] = strdup("/bin/sh");
			s->command[1] = strdup("-c");
			s->command[2] = strdup(json_object_get_string(v));
		}
		for (size_t i = 0; i < n; i++)
			s->command[i] = strdup(json_object_get_string(json_object_array_get_idx(v, i)));
		s->command_json = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
	}
	return 0;
}

static void create_route(struct http_request *req, void *arg)
{
	http_request_read_json(req, 0, create_body, arg);
}

static void create_body(struct http_request *req, struct json_object *body, void *arg)
{
	struct native *nat = arg;
	struct task_spec spec;
	struct core_error fail;
	if (task_spec_parse(body, nat->cfg->task_max_timeout_ms, &spec, &fail) != 0) {
		native_respond_error(req, &fail);
		return;
	}
	struct task_req *tr = req_new(req, nat);
	tr->op = tasks_create(nat->tasks, http_request_param(req, "id"), &spec, info_answer, tr);
	spec_free(&spec);
}

static void info_answer(const struct core_error *fail, const struct task_info *info, void *arg)
{
	struct task_req *tr = arg;
	bool created = strcmp(http_request_method(tr->req), "POST") == 0 &&
		       http_request_param(tr->req, "tid") == NULL;
	bool cancel = http_request_param(tr->req, "tid") && strcmp(http_request_method(tr->req), "POST") == 0;
	req_done(tr);
	if (fail && fail->code && strcmp(fail->code, "task_running") == 0 && info) {
		/* the running task's id, so the client can follow or cancel it */
		struct json_object *err = json_object_new_object();
		json_object_object_add(err, "code", json_object_new_string(fail->code));
		json_object_object_add(err, "message", json_object_new_string(fail->message));
		json_object_object_add(err, "task_id", json_object_new_string(info->id));
		struct json_object *b = json_object_new_object();
		json_object_object_add(b, "error", err);
		http_respond_json(tr->req, 409, b);
		return;
	}
	if (fail) {
		native_respond_error(tr->req, fail);
		return;
	}
	http_respond_json(tr->req, created ? 201 : cancel ? 202 : 200, task_json(info));
}

static void list_answer(const struct core_error *fail, const struct task_info *list, size_t n, void *arg)
{
	struct task_req *tr = arg;
	req_done(tr);
	if (fail) {
		native_respond_error(tr->req, fail);
		return;
	}
	struct json_object *a = json_object_new_array_ext((int)n);
	for (size_t i = 0; i < n; i++)
		json_object_array_add(a, task_json(&list[i]));
	http_respond_json(tr->req, 200, a);
}

static void list_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	struct task_req *tr = req_new(req, nat);
	tr->op = tasks_list(nat->tasks, http_request_param(req, "id"), list_answer, tr);
}

static void get_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	struct task_req *tr = req_new(req, nat);
	tr->op = tasks_get(nat->tasks, http_request_param(req, "id"), http_request_param(req, "tid"),
			   info_answer, tr);
}

static void cancel_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	struct task_req *tr = req_new(req, nat);
	tr->op = tasks_cancel(nat->tasks, http_request_param(req, "id"), http_request_param(req, "tid"),
			      info_answer, tr);
}

/* ---- diff, revert ---- */

static void diff_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	struct task_req *tr = req_new(req, nat);
	tr->op = tasks_diff(nat->tasks, http_request_param(req, "id"), http_request_param(req, "tid"),
			    diff_answer, tr);
}

static void diff_answer(const struct core_error *fail, const char *text, size_t len, void *arg)
{
	struct task_req *tr = arg;
	req_done(tr);
	if (fail) {
		native_respond_error(tr->req, fail);
		return;
	}
	http_response_start(tr->req, 200, "text/x-diff; charset=utf-8", (int64_t)len);
	http_response_write_bytes(tr->req, text, len);
	http_response_end(tr->req);
}

static void revert_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	struct task_req *tr = req_new(req, nat);
	tr->op = tasks_revert(nat->tasks, http_request_param(req, "id"), http_request_param(req, "tid"),
			      revert_answer, tr);
}

static void revert_answer(const struct core_error *fail, const char *text, size_t len, void *arg)
{
	struct task_req *tr = arg;
	req_done(tr);
	if (fail) {
		native_respond_error(tr->req, fail);
		return;
	}
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "task_id", json_object_new_string(http_request_param(tr->req, "tid")));
	json_object_object_add(o, "commit", json_object_new_string_len(text, (int)len));
	http_respond_json(tr->req, 200, o);
}

/* ---- events ---- */

static bool parse_seq(const char *s, int64_t *out)
{
	if (!s || *s < '0' || *s > '9' || strlen(s) > 12)
		return false;
	char *end;
	long long v = strtoll(s, &end, 10);
	if (*end)
		return false;
	*out = v;
	return true;
}

static void events_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	int64_t since = 0;
	const char *q = http_request_query(req, "since");
	const char *last = http_request_header(req, "Last-Event-ID");
	if ((q && !parse_seq(q, &since)) || (!q && last && !parse_seq(last, &since))) {
		http_respond_error(
			req, 400, "invalid_since",
			"'since' (or Last-Event-ID) must be an event number, a non-negative integer");
		return;
	}
	struct task_req *tr = req_new(req, nat);
	tr->fmt = stream_format_from_accept(http_request_header(req, "Accept"));
	if (tr->fmt == STREAM_NONE)
		tr->fmt = STREAM_SSE;
	tr->op = tasks_watch(nat->tasks, http_request_param(req, "id"), http_request_param(req, "tid"), since,
			     &watch_ops, tr);
}

static void watch_opened(void *arg)
{
	struct task_req *tr = arg;
	tr->started = true;
	http_response_header(tr->req, "Cache-Control", "no-store");
	http_response_header(tr->req, "X-Accel-Buffering", "no");
	http_response_start(tr->req, 200, stream_content_type(tr->fmt), -1);
	if (tr->fmt != STREAM_SSE)
		return;
	tr->ping = event_new(http_request_base(tr->req), -1, EV_PERSIST, ping_fire, tr);
	CHECK(tr->ping != NULL);
	struct timeval tv = { PING_SECONDS, 0 };
	evtimer_add(tr->ping, &tv);
}

static void ping_fire(evutil_socket_t fd, short what, void *arg)
{
	struct task_req *tr = arg;
	static const char ping[] = ": keep-alive\n\n";
	http_response_write_bytes(tr->req, ping, sizeof(ping) - 1);
}

static void watch_event(void *arg, int64_t seq, const char *type, const char *data)
{
	struct task_req *tr = arg;
	struct evbuffer *b = evbuffer_new();
	CHECK(b != NULL);
	if (tr->fmt == STREAM_SSE)
		evbuffer_add_printf(b, "id: %lld\nevent: %s\ndata: %s\n\n", (long long)seq, type, data);
	else
		evbuffer_add_printf(b, "{\"id\":%lld,\"type\":\"%s\",\"data\":%s}\n", (long long)seq, type,
				    data);
	http_response_write(tr->req, b);
	evbuffer_free(b);
}

static void watch_end(void *arg, const struct core_error *fail)
{
	struct task_req *tr = arg;
	req_done(tr);
	if (fail && !tr->started) {
		native_respond_error(tr->req, fail);
		return;
	}
	if (fail) { /* PostgreSQL went away mid-stream: the client reconnects with Last-Event-ID */
		http_response_abort(tr->req);
		return;
	}
	http_response_end(tr->req);
}
