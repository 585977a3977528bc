/* GET /api/sandboxes/{id}/terminal: an interactive shell on a PTY over a
 * WebSocket. The shell is started first and the connection upgraded only once
 * it runs, so a missing or stopped sandbox is an ordinary HTTP error. Binary
 * frames carry terminal bytes both ways; text frames carry JSON control:
 * in {"type":"resize","rows","cols"}, {"type":"input","data"}; out
 * {"type":"started","id","pid"}, {"type":"exit","exit_code","signal"},
 * {"type":"error","code","message"}. The client going away hangs the shell up
 * (SIGHUP to its process group), as closing a terminal window does. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "commands/commands.h"
#include "http/server.h"
#include "http/websocket.h"
#include "internal.h"

#define TERM_ROWS_DEFAULT   24
#define TERM_COLS_DEFAULT   80
#define TERM_DIM_MAX	    1000
#define TERM_OUT_HIGH_WATER (256 * 1024) /* WebSocket output queued above this: stop acking */

enum term_state {
	TERM_STARTING, /* shell being started, HTTP request still open */
	TERM_OPEN,     /* WebSocket up, bytes flowing */
	TERM_CLOSING,  /* shell gone or client gone: closing the other side */
	TERM_STATE_MAX
};

struct terminal {
	struct native *nat;
	enum term_state state;
	struct http_request *req; /* until the upgrade (or the client leaves) */
	struct ws_conn *ws;
	struct command_op *op; /* NULL once it ended */
	char sandbox_id[37];
	uint64_t delivered, acked; /* output bytes sent to the client / acked to the agent */
	bool client_gone;
};

static void term_set_state(struct terminal *t, enum term_state next);
static void term_cancel(void *arg);
static void term_started(void *arg, const struct command_info *info);
static void term_output(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data, size_t len,
			bool gap);
static void term_exited(void *arg, const struct command_info *info);
static void term_failed(void *arg, const struct core_error *fail);
static void ws_message(struct ws_conn *ws, bool binary, const uint8_t *data, size_t len, void *arg);
static void ws_drain(struct ws_conn *ws, void *arg);
static void ws_closed(struct ws_conn *ws, void *arg);
static void term_hang_up(struct terminal *t);
static void term_maybe_free(struct terminal *t);

static const struct command_events term_events = {
	.started = term_started,
	.output = term_output,
	.exited = term_exited,
	.failed = term_failed,
};
static const struct ws_ops term_ws_ops = { .message = ws_message, .drain = ws_drain, .closed = ws_closed };

/* Runs the user's login shell: bash when the image has it. */
static const char *const shell_argv[] = {
	"/bin/sh",
	"-c",
	"if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi",
	NULL,
};

static void term_set_state(struct terminal *t, enum term_state next)
{
	static const unsigned legal[TERM_STATE_MAX] = {
		[TERM_STARTING] = 1u << TERM_OPEN | 1u << TERM_CLOSING,
		[TERM_OPEN] = 1u << TERM_CLOSING,
		[TERM_CLOSING] = 0,
	};
	CHECK(next < TERM_STATE_MAX && (legal[t->state] & (1u << next)));
	t->state = next;
}

static bool dim_param(struct http_request *req, const char *name, int def, int *out)
{
	const char *v = http_request_query(req, name);
	if (!v) {
		*out = def;
		return true;
	}
	char *end;
	long n = strtol(v, &end, 10);
	if (!*v || *end || n < 1 || n > TERM_DIM_MAX) {
		http_respond_error(req, 400, "invalid_terminal_size", "%s must be a number from 1 to %d",
				   name, TERM_DIM_MAX);
		return false;
	}
	*out = (int)n;
	return true;
}

static void terminal_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	if (!ws_is_handshake(req)) {
		ws_refuse(req);
		return;
	}
	int rows, cols;
	if (!dim_param(req, "rows", TERM_ROWS_DEFAULT, &rows) ||
	    !dim_param(req, "cols", TERM_COLS_DEFAULT, &cols))
		return;
	const char *user = http_request_query(req, "user");
	if (user && (!*user || strlen(user) > 64)) {
		http_respond_error(req, 400, "invalid_user", "user must be 1 to 64 bytes");
		return;
	}
	struct terminal *t = calloc(1, sizeof(*t));
	CHECK(t != NULL);
	t->nat = nat;
	t->req = req;
	t->state = TERM_STARTING;
	snprintf(t->sandbox_id, sizeof(t->sandbox_id), "%s", http_request_param(req, "id"));
	char *env[] = { "TERM=xterm-256color", NULL };
	struct command_spec spec = {
		.argv = (char **)shell_argv,
		.command_json = "\"terminal\"",
		.env = env,
		.user = (char *)user,
		.stdin_open = true,
		.pty_rows = rows,
		.pty_cols = cols,
	};
	http_request_set_cancel(req, term_cancel, t);
	t->op = commands_run(nat->cmds, t->sandbox_id, &spec, false, &term_events, t);
}

/* The client left before the upgrade: the shell (once started) is hung up. */
static void term_cancel(void *arg)
{
	struct terminal *t = arg;
	t->req = NULL;
	t->client_gone = true;
}

static void term_started(void *arg, const struct command_info *info)
{
	struct terminal *t = arg;
	if (t->client_gone || !t->req) {
		term_hang_up(t);
		return;
	}
	struct http_request *req = t->req;
	t->req = NULL;
	http_request_set_cancel(req, NULL, NULL);
	t->ws = ws_accept(t->nat->ws, req, &term_ws_ops, t);
	if (!t->ws) { /* checked before starting; cannot happen */
		term_hang_up(t);
		return;
	}
	term_set_state(t, TERM_OPEN);
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string("started"));
	json_object_object_add(o, "id", json_object_new_string(info->id));
	json_object_object_add(o, "pid", json_object_new_int(info->pid));
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	ws_send(t->ws, false, s, strlen(s));
	json_object_put(o);
}

static void term_ack(struct terminal *t)
{
	if (t->op && t->acked < t->delivered && ws_pending(t->ws) < TERM_OUT_HIGH_WATER) {
		t->acked = t->delivered;
		command_op_ack(t->op, t->acked);
	}
}

static void term_output(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data, size_t len,
			bool gap)
{
	struct terminal *t = arg;
	t->delivered = offset + len;
	if (t->state != TERM_OPEN) {
		/* nobody reads: let the agent go on */
		t->acked = t->delivered;
		command_op_ack(t->op, t->acked);
		return;
	}
	if (len)
		ws_send(t->ws, true, data, len);
	term_ack(t);
}

static void ws_drain(struct ws_conn *ws, void *arg)
{
	term_ack(arg);
}

static void send_control(struct terminal *t, struct json_object *o)
{
	if (t->ws && t->state == TERM_OPEN) {
		const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		ws_send(t->ws, false, s, strlen(s));
	}
	json_object_put(o);
}

static void send_error(struct terminal *t, const char *code, const char *message)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string("error"));
	json_object_object_add(o, "code", json_object_new_string(code));
	json_object_object_add(o, "message", json_object_new_string(message));
	send_control(t, o);
}

static void term_exited(void *arg, const struct command_info *info)
{
	struct terminal *t = arg;
	t->op = NULL;
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string("exit"));
	json_object_object_add(o, "exit_code", json_object_new_int(info->exit_code));
	json_object_object_add(o, "signal", json_object_new_int(info->signal));
	send_control(t, o);
	if (t->state == TERM_OPEN) {
		term_set_state(t, TERM_CLOSING);
		ws_close(t->ws, 1000, "exited");
		return;
	}
	term_maybe_free(t);
}

static void term_failed(void *arg, const struct core_error *fail)
{
	struct terminal *t = arg;
	t->op = NULL;
	if (t->state == TERM_STARTING) {
		if (t->req) {
			http_request_set_cancel(t->req, NULL, NULL);
			native_respond_error(t->req, fail);
			t->req = NULL;
		}
		term_set_state(t, TERM_CLOSING);
		term_maybe_free(t);
		return;
	}
	send_error(t, fail->code, fail->message);
	if (t->state == TERM_OPEN) {
		term_set_state(t, TERM_CLOSING);
		ws_close(t->ws, 1011, "command failed");
		return;
	}
	term_maybe_free(t);
}

static void ws_message(struct ws_conn *ws, bool binary, const uint8_t *data, size_t len, void *arg)
{
	struct terminal *t = arg;
	if (!t->op)
		return;
	registry_touch(t->nat->reg, t->sandbox_id);
	if (binary) {
		command_op_input(t->op, data, len);
		return;
	}
	struct json_tokener *tok = json_tokener_new();
	struct json_object *msg = json_tokener_parse_ex(tok, (const char *)data, (int)len);
	json_tokener_free(tok);
	struct json_object *type, *v1, *v2;
	const char *ty =
		msg && json_object_object_get_ex(msg, "type", &type) ? json_object_get_string(type) : "";
	if (strcmp(ty, "resize") == 0 && json_object_object_get_ex(msg, "rows", &v1) &&
	    json_object_object_get_ex(msg, "cols", &v2) && json_object_get_int(v1) >= 1 &&
	    json_object_get_int(v1) <= TERM_DIM_MAX && json_object_get_int(v2) >= 1 &&
	    json_object_get_int(v2) <= TERM_DIM_MAX) {
		command_op_resize(t->op, json_object_get_int(v1), json_object_get_int(v2));
	} else if (strcmp(ty, "input") == 0 && json_object_object_get_ex(msg, "data", &v1) &&
		   json_object_is_type(v1, json_type_string)) {
		command_op_input(t->op, json_object_get_string(v1), (size_t)json_object_get_string_len(v1));
	} else {
		send_error(t, "invalid_control",
			   "text frames must be {\"type\":\"resize\",\"rows\",\"cols\"} or "
			   "{\"type\":\"input\",\"data\"}");
	}
	json_object_put(msg);
}

static void ws_closed(struct ws_conn *ws, void *arg)
{
	struct terminal *t = arg;
	t->ws = NULL;
	if (t->state == TERM_OPEN)
		term_set_state(t, TERM_CLOSING);
	if (t->op)
		term_hang_up(t);
	else
		term_maybe_free(t);
}

/* No one is at the terminal any more: SIGHUP the shell's group and stop listening. */
static void term_hang_up(struct terminal *t)
{
	if (t->state != TERM_CLOSING)
		term_set_state(t, TERM_CLOSING);
	if (t->op) {
		command_op_signal(t->op, SIGHUP);
		command_op_cancel(t->op);
		t->op = NULL;
	}
	term_maybe_free(t);
}

static void term_maybe_free(struct terminal *t)
{
	if (!t->op && !t->ws && !t->req)
		free(t);
}

int native_terminal_routes(struct native *nat)
{
	return router_add(nat->router, "GET", "/api/sandboxes/{id}/terminal", terminal_route, nat);
}
