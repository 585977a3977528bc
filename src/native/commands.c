/* The native API's command routes: execute (whole answer or an event
 * stream), detached commands and services, their records, logs, stdin,
 * signals and a service's removal. Thin: parse, call the command service
 * (src/commands/commands.c), write HTTP. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "native/stream.h"
#include "core/config.h"
#include "commands/commands.h"
#include "http/server.h"
#include "internal.h"

/* Above this much unsent output, stop acknowledging the agent until the
 * client drains: the command then waits, not our memory. */
#define STREAM_HIGH_WATER (64u * 1024)

struct cmd_stream {
	struct http_request *req;
	struct native *nat;
	struct command_op *op;
	enum stream_format fmt;
	bool started;	     /* response head sent */
	bool collect;	     /* op is a commands_execute */
	bool detached;	     /* POST .../commands */
	bool body_streaming; /* stdin: the body is flowing */
	bool eof;
	uint64_t unacked; /* output offset not yet acknowledged */
	bool waiting_drain;
};

static void execute_route(struct http_request *req, void *arg);
static void execute_body(struct http_request *req, struct json_object *body, void *arg);
static void detached_route(struct http_request *req, void *arg);
static void detached_body(struct http_request *req, struct json_object *body, void *arg);
static void list_route(struct http_request *req, void *arg);
static void get_route(struct http_request *req, void *arg);
static void logs_route(struct http_request *req, void *arg);
static void stdin_route(struct http_request *req, void *arg);
static void signal_route(struct http_request *req, void *arg);
static void signal_body(struct http_request *req, struct json_object *body, void *arg);
static void remove_route(struct http_request *req, void *arg);
static void stream_cancel(void *arg);
static void on_started(void *arg, const struct command_info *info);
static void on_output(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data, size_t len,
		      bool gap);
static void on_caught_up(void *arg, uint64_t offset);
static void on_exited(void *arg, const struct command_info *info);
static void on_failed(void *arg, const struct core_error *fail);
static void on_drain(void *arg);
static void collected(const struct core_error *fail, const struct command_result *res, void *arg);
static void records_answer(const struct core_error *fail, const struct command_record *recs, size_t n,
			   void *arg);
static void done_answer(const struct core_error *fail, void *arg);
static void stdin_ready(const struct core_error *fail, void *arg);
static void stdin_data(struct http_request *req, struct evbuffer *chunk, void *arg);
static void stdin_end(struct http_request *req, void *arg);

static const struct command_events stream_events = {
	.started = on_started,
	.output = on_output,
	.caught_up = on_caught_up,
	.exited = on_exited,
	.failed = on_failed,
};

int native_command_routes(struct native *nat)
{
	struct router *r = nat->router;
	if (router_add(r, "POST", "/api/sandboxes/{id}/execute", execute_route, nat) != 0 ||
	    router_add(r, "POST", "/api/sandboxes/{id}/commands", detached_route, nat) != 0 ||
	    router_add(r, "GET", "/api/sandboxes/{id}/commands", list_route, nat) != 0 ||
	    router_add(r, "GET", "/api/sandboxes/{id}/commands/{cid}", get_route, nat) != 0 ||
	    router_add(r, "GET", "/api/sandboxes/{id}/commands/{cid}/logs", logs_route, nat) != 0 ||
	    router_add(r, "POST", "/api/sandboxes/{id}/commands/{cid}/stdin", stdin_route, nat) != 0 ||
	    router_add(r, "POST", "/api/sandboxes/{id}/commands/{cid}/signal", signal_route, nat) != 0 ||
	    router_add(r, "DELETE", "/api/sandboxes/{id}/commands/{cid}", remove_route, nat) != 0)
		return -1;
	return 0;
}

static struct cmd_stream *stream_new(struct http_request *req, struct native *nat)
{
	struct cmd_stream *st = http_request_alloc(req, sizeof(*st));
	st->req = req;
	st->nat = nat;
	st->fmt = stream_format_from_accept(http_request_header(req, "Accept"));
	http_request_set_cancel(req, stream_cancel, st);
	return st;
}

static void stream_cancel(void *arg)
{
	struct cmd_stream *st = arg;
	struct command_op *op = st->op;
	st->op = NULL;
	if (!op)
		return;
	if (st->collect)
		commands_collect_cancel(op);
	else
		command_op_cancel(op);
}

/* The request is answered: no cancel, no more op. */
static void stream_done(struct cmd_stream *st)
{
	st->op = NULL;
	http_request_set_cancel(st->req, NULL, NULL);
}

static void stream_write_event(struct cmd_stream *st, const char *type, int64_t id, struct json_object *data)
{
	struct evbuffer *b = evbuffer_new();
	CHECK(b != NULL);
	stream_event(b, st->fmt, type, id, data);
	http_response_write(st->req, b);
	evbuffer_free(b);
	json_object_put(data);
}

static void stream_head(struct cmd_stream *st)
{
	if (st->started)
		return;
	st->started = true;
	http_response_header(st->req, "Cache-Control", "no-store");
	http_response_header(st->req, "X-Accel-Buffering", "no");
	http_response_start(st->req, 200, stream_content_type(st->fmt), -1);
}

/* ---- execute ---- */

static bool parse_spec(struct http_request *req, struct native *nat, struct json_object *body,
		       struct command_spec *spec)
{
	struct core_error fail;
	if (native_command_spec(body, commands_max_output_cap(nat->cmds), spec, &fail) != 0) {
		native_respond_error(req, &fail);
		return false;
	}
	return true;
}

static void execute_route(struct http_request *req, void *arg)
{
	http_request_read_json(req, 0, execute_body, arg);
}

static void execute_body(struct http_request *req, struct json_object *body, void *arg)
{
	struct native *nat = arg;
	struct command_spec spec;
	if (!parse_spec(req, nat, body, &spec))
		return;
	if (spec.service) {
		command_spec_free(&spec);
		http_respond_error(req, 400, "invalid_service",
				   "a service is a detached command: POST .../commands");
		return;
	}
	struct cmd_stream *st = stream_new(req, nat);
	const char *id = http_request_param(req, "id");
	if (st->fmt == STREAM_NONE) {
		st->collect = true;
		st->op = commands_execute(nat->cmds, id, &spec, collected, st);
	} else {
		st->op = commands_run(nat->cmds, id, &spec, false, &stream_events, st);
	}
	command_spec_free(&spec);
}

static void add_bytes(struct json_object *o, const char *key, const uint8_t *data, size_t len, bool b64)
{
	if (b64)
		json_object_object_add(o, key, stream_base64_string(data, len));
	else
		json_object_object_add(o, key,
				       json_object_new_string_len(len ? (const char *)data : "", (int)len));
}

static void collected(const struct core_error *fail, const struct command_result *res, void *arg)
{
	struct cmd_stream *st = arg;
	stream_done(st);
	if (fail) {
		native_respond_error(st->req, fail);
		return;
	}
	/* one encoding for the three fields, so they stay comparable */
	bool b64 = !stream_utf8_valid(res->all, res->all_len) || !stream_utf8_valid(res->out, res->out_len) ||
		   !stream_utf8_valid(res->err, res->err_len);
	struct json_object *o = json_object_new_object();
	add_bytes(o, "output", res->all, res->all_len, b64);
	json_object_object_add(o, "exitCode", json_object_new_int(res->info->exit_code));
	json_object_object_add(o, "truncated", json_object_new_boolean(res->truncated));
	add_bytes(o, "stdout", res->out, res->out_len, b64);
	add_bytes(o, "stderr", res->err, res->err_len, b64);
	json_object_object_add(o, "exit_code", json_object_new_int(res->info->exit_code));
	json_object_object_add(o, "duration_ms", json_object_new_int64(res->duration_ms));
	json_object_object_add(o, "timed_out", json_object_new_boolean(res->info->timed_out));
	if (b64)
		json_object_object_add(o, "encoding", json_object_new_string("base64"));
	http_respond_json(st->req, 200, o);
}

/* ---- events ---- */

static void on_started(void *arg, const struct command_info *info)
{
	struct cmd_stream *st = arg;
	struct json_object *d = json_object_new_object();
	json_object_object_add(d, "id", json_object_new_string(info->id));
	json_object_object_add(d, "pid", json_object_new_int(info->pid));
	json_object_object_add(d, "started_at", native_time_json(1000 * info->started_at));
	if (st->detached) {
		stream_done(st);
		http_respond_json(st->req, 201, d);
		return;
	}
	stream_head(st);
	stream_write_event(st, "start", -1, d);
}

static void on_output(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data, size_t len,
		      bool gap)
{
	struct cmd_stream *st = arg;
	stream_head(st);
	struct json_object *d = json_object_new_object();
	json_object_object_add(d, "offset", json_object_new_int64((int64_t)offset));
	if (gap) {
		stream_write_event(st, "gap", (int64_t)offset, d);
	} else {
		stream_add_bytes(d, "data", data, len);
		stream_write_event(st, stream == AGENT_STREAM_STDERR ? "stderr" : "stdout",
				   (int64_t)(offset + len), d);
	}
	st->unacked = offset + len;
	if (http_response_pending(st->req) > STREAM_HIGH_WATER) {
		if (!st->waiting_drain) {
			st->waiting_drain = true;
			http_response_on_drain(st->req, on_drain, st);
		}
		return;
	}
	command_op_ack(st->op, st->unacked);
}

static void on_drain(void *arg)
{
	struct cmd_stream *st = arg;
	st->waiting_drain = false;
	http_response_on_drain(st->req, NULL, NULL);
	if (st->op)
		command_op_ack(st->op, st->unacked);
}

static void on_caught_up(void *arg, uint64_t offset)
{
	struct cmd_stream *st = arg;
	stream_done(st);
	stream_head(st);
	struct json_object *d = json_object_new_object();
	json_object_object_add(d, "offset", json_object_new_int64((int64_t)offset));
	stream_write_event(st, "end", (int64_t)offset, d);
	http_response_end(st->req);
}

static void on_exited(void *arg, const struct command_info *info)
{
	struct cmd_stream *st = arg;
	stream_done(st);
	stream_head(st);
	struct json_object *d = json_object_new_object();
	json_object_object_add(d, "exit_code", json_object_new_int(info->exit_code));
	json_object_object_add(d, "signal", info->signal ? json_object_new_int(info->signal) : NULL);
	json_object_object_add(d, "timed_out", json_object_new_boolean(info->timed_out));
	json_object_object_add(d, "duration_ms", json_object_new_int64(info->ended_at - info->started_at));
	json_object_object_add(d, "ended_at", native_time_json(1000 * info->ended_at));
	json_object_object_add(d, "offset", json_object_new_int64((int64_t)info->offset));
	stream_write_event(st, "exit", (int64_t)info->offset, d);
	http_response_end(st->req);
}

static void on_failed(void *arg, const struct core_error *fail)
{
	struct cmd_stream *st = arg;
	stream_done(st);
	if (!st->started) {
		native_respond_error(st->req, fail);
		return;
	}
	struct json_object *d = json_object_new_object();
	json_object_object_add(d, "code", json_object_new_string(fail->code));
	json_object_object_add(d, "message", json_object_new_string(fail->message));
	stream_write_event(st, "error", -1, d);
	http_response_end(st->req);
}

/* ---- detached ---- */

static void detached_route(struct http_request *req, void *arg)
{
	http_request_read_json(req, 0, detached_body, arg);
}

static void detached_body(struct http_request *req, struct json_object *body, void *arg)
{
	struct native *nat = arg;
	struct command_spec spec;
	if (!parse_spec(req, nat, body, &spec))
		return;
	spec.stdin_open = spec.stdin_data == NULL; /* fed through .../stdin */
	struct cmd_stream *st = stream_new(req, nat);
	st->detached = true;
	st->op = commands_run(nat->cmds, http_request_param(req, "id"), &spec, true, &stream_events, st);
	command_spec_free(&spec);
}

static void records_answer(const struct core_error *fail, const struct command_record *recs, size_t n,
			   void *arg)
{
	struct cmd_stream *st = arg;
	bool one = http_request_param(st->req, "cid") != NULL; /* GET .../commands/{cid} */
	stream_done(st);
	if (fail) {
		native_respond_error(st->req, fail);
		return;
	}
	if (one) {
		http_respond_json(st->req, 200, native_command_json(&recs[0]));
		return;
	}
	struct json_object *a = json_object_new_array_ext((int)n);
	for (size_t i = 0; i < n; i++)
		json_object_array_add(a, native_command_json(&recs[i]));
	http_respond_json(st->req, 200, a);
}

/* 204 once done (a signal sent, a service removed), else the error. */
static void done_answer(const struct core_error *fail, void *arg)
{
	struct cmd_stream *st = arg;
	stream_done(st);
	if (fail)
		native_respond_error(st->req, fail);
	else
		http_respond_empty(st->req, 204);
}

static void list_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	struct cmd_stream *st = stream_new(req, nat);
	st->op = commands_list(nat->cmds, http_request_param(req, "id"), records_answer, st);
}

static void get_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	struct cmd_stream *st = stream_new(req, nat);
	st->op = commands_get(nat->cmds, http_request_param(req, "id"), http_request_param(req, "cid"),
			      records_answer, st);
}

/* ---- logs ---- */

static bool parse_u64(const char *s, uint64_t *out)
{
	if (!s || *s < '0' || *s > '9')
		return false;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (*end)
		return false;
	*out = v;
	return true;
}

static bool query_flag(struct http_request *req, const char *name)
{
	const char *v = http_request_query(req, name);
	return v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "") == 0);
}

static void logs_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	uint64_t offset = 0;
	const char *q = http_request_query(req, "offset");
	const char *last = http_request_header(req, "Last-Event-ID");
	if (q && !parse_u64(q, &offset)) {
		http_respond_error(req, 400, "invalid_offset", "'offset' must be a non-negative integer");
		return;
	}
	if (!q && last && !parse_u64(last, &offset)) {
		http_respond_error(req, 400, "invalid_offset", "Last-Event-ID must be an output offset");
		return;
	}
	struct cmd_stream *st = stream_new(req, nat);
	if (st->fmt == STREAM_NONE)
		st->fmt = STREAM_NDJSON;
	st->op = commands_logs(nat->cmds, http_request_param(req, "id"), http_request_param(req, "cid"),
			       offset, query_flag(req, "follow"), &stream_events, st);
}

/* ---- stdin ---- */

static void stdin_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	struct cmd_stream *st = stream_new(req, nat);
	st->eof = query_flag(req, "eof");
	st->op = commands_stdin_open(nat->cmds, http_request_param(req, "id"), http_request_param(req, "cid"),
				     stdin_ready, st);
}

static const struct http_body_stream stdin_body = { .data = stdin_data, .end = stdin_end };

static void stdin_ready(const struct core_error *fail, void *arg)
{
	struct cmd_stream *st = arg;
	if (fail) {
		stream_done(st);
		native_respond_error(st->req, fail);
		return;
	}
	if (!st->body_streaming) {
		st->body_streaming = true;
		http_request_stream_body(st->req, &stdin_body, st);
		return;
	}
	http_request_body_resume(st->req); /* the channel drained */
}

static void stdin_data(struct http_request *req, struct evbuffer *chunk, void *arg)
{
	struct cmd_stream *st = arg;
	while (evbuffer_get_length(chunk) > 0) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(chunk, -1, NULL, &v, 1) < 1)
			break;
		if (command_stdin_write(st->op, v.iov_base, v.iov_len) != 0) {
			http_request_body_pause(req);
			return;
		}
		evbuffer_drain(chunk, v.iov_len);
	}
}

static void stdin_end(struct http_request *req, void *arg)
{
	struct cmd_stream *st = arg;
	struct command_op *op = st->op;
	stream_done(st);
	command_stdin_end(op, st->eof);
	http_respond_empty(req, 204);
}

/* ---- signal ---- */

static void signal_route(struct http_request *req, void *arg)
{
	http_request_read_json(req, 0, signal_body, arg);
}

static void signal_body(struct http_request *req, struct json_object *body, void *arg)
{
	struct native *nat = arg;
	struct json_object *v;
	int signo = -1;
	if (body && json_object_is_type(body, json_type_object) &&
	    json_object_object_get_ex(body, "signal", &v)) {
		if (json_object_is_type(v, json_type_string))
			signo = command_signal_parse(json_object_get_string(v));
		else if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 1 &&
			 json_object_get_int64(v) <= 31)
			signo = (int)json_object_get_int64(v);
	}
	if (signo < 0) {
		http_respond_error(req, 400, "invalid_signal",
				   "'signal' must be a signal name (SIGTERM, INT, ...) or a number 1..31");
		return;
	}
	struct cmd_stream *st = stream_new(req, nat);
	st->op = commands_signal(nat->cmds, http_request_param(req, "id"), http_request_param(req, "cid"),
				 signo, done_answer, st);
}

/* ---- a service removed ---- */

static void remove_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	struct cmd_stream *st = stream_new(req, nat);
	st->op = commands_remove_service(nat->cmds, http_request_param(req, "id"),
					 http_request_param(req, "cid"), done_answer, st);
}
