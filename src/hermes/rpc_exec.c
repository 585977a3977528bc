/* The command methods over JSON-RPC (spec §9.1, §9.2): exec (blocking with
 * streamed notifications, or detached), exec_logs and kill, on the command
 * service the native routes use. Output is coalesced into few notifications
 * (the SDK buffers 64 events a call): a timer that backs off, or a full chunk. */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "core/clock.h"
#include "core/log.h"
#include "rpc.h"

#define EXEC_CHUNK	      (1u << 20) /* pending output notified at once above this */
#define EXEC_FLUSH_FIRST_MS   25	 /* the first coalescing wait; doubled after each flush */
#define EXEC_FLUSH_MAX_MS     1000
#define EXEC_TIMEOUT_SLACK_MS 250 /* the agent's own timeout kill usually answers first */

enum exec_kind { EXEC_RUN, EXEC_DETACHED, EXEC_LOGS };

struct exec_call {
	struct rpc_call call;
	enum exec_kind kind;
	struct command_op *op; /* NULL once it ended */
	char cmd_id[37];
	int64_t started_at_ms;
	int64_t timeout_ms;
	struct evbuffer *all;	  /* the result's output, stdout and stderr in order */
	struct evbuffer *pend[2]; /* stdout, stderr not notified yet */
	struct event *flush;	  /* coalescing timer */
	int64_t flush_ms;
	struct event *deadline; /* the exec's timeout */
	uint64_t delivered, acked;
};

static void exec_start(struct rpc_call *call, struct json_object *params);
static void exec_logs_start(struct rpc_call *call, struct json_object *params);
static void exec_finish(struct rpc_call *call);
static void exec_drain(struct rpc_call *call);
static void kill_start(struct rpc_call *call, struct json_object *params);
static void kill_finish(struct rpc_call *call);
static void ev_started(void *arg, const struct command_info *info);
static void ev_output(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data, size_t len,
		      bool gap);
static void ev_exited(void *arg, const struct command_info *info);
static void ev_failed(void *arg, const struct core_error *fail);
static void flush_cb(evutil_socket_t fd, short what, void *arg);
static void deadline_cb(evutil_socket_t fd, short what, void *arg);
static void flush_output(struct exec_call *x, bool final);
static void reply_timeout(struct exec_call *x);
static struct json_object *text_of(struct evbuffer *b);
static struct json_object *time_json(int64_t ms);
static void killed(const struct core_error *fail, void *arg);

const struct rpc_method rpc_method_exec = { "exec", sizeof(struct exec_call), exec_start, exec_finish,
					    exec_drain };
const struct rpc_method rpc_method_exec_logs = { "exec_logs", sizeof(struct exec_call), exec_logs_start,
						 exec_finish, exec_drain };

struct kill_call {
	struct rpc_call call;
	struct command_op *op;
};
const struct rpc_method rpc_method_kill = { "kill", sizeof(struct kill_call), kill_start, kill_finish, NULL };

static const struct command_events exec_events = {
	.started = ev_started,
	.output = ev_output,
	.exited = ev_exited,
	.failed = ev_failed,
};

static struct json_object *time_json(int64_t ms)
{
	char buf[CLOCK_RFC3339_LEN];
	clock_rfc3339((ms > 0 ? ms : clock_real_ms()) * 1000, buf);
	return json_object_new_string(buf);
}

static void exec_init(struct exec_call *x)
{
	struct event_base *base = rpc_conn_base(x->call.conn);
	x->all = evbuffer_new();
	x->pend[0] = evbuffer_new();
	x->pend[1] = evbuffer_new();
	x->flush = evtimer_new(base, flush_cb, x);
	x->deadline = evtimer_new(base, deadline_cb, x);
	CHECK(x->all && x->pend[0] && x->pend[1] && x->flush && x->deadline);
	x->flush_ms = EXEC_FLUSH_FIRST_MS;
}

static void exec_start(struct rpc_call *call, struct json_object *params)
{
	struct exec_call *x = (struct exec_call *)call;
	const struct core *core = rpc_conn_core(call->conn);
	struct command_spec spec;
	struct core_error fail;
	bool detached;
	if (rpc_exec_spec(params, RPC_RESULT_LIMIT, &spec, &detached, &fail) != 0) {
		rpc_reply_core_error(call, &fail);
		return;
	}
	exec_init(x);
	x->kind = detached ? EXEC_DETACHED : EXEC_RUN;
	x->timeout_ms = spec.timeout_ms;
	x->op = commands_run(core->cmds, rpc_call_sandbox(call), &spec, detached, &exec_events, x);
	command_spec_free(&spec);
}

static void exec_logs_start(struct rpc_call *call, struct json_object *params)
{
	struct exec_call *x = (struct exec_call *)call;
	const char *cmd_id;
	struct core_error fail;
	if (rpc_param_string(params, "cmd_id", true, &cmd_id, NULL, &fail) != 0) {
		rpc_reply_core_error(call, &fail);
		return;
	}
	exec_init(x);
	x->kind = EXEC_LOGS;
	snprintf(x->cmd_id, sizeof(x->cmd_id), "%s", cmd_id);
	/* from the first byte still kept, on every call; answered at the exit */
	x->op = commands_logs(rpc_conn_core(call->conn)->cmds, rpc_call_sandbox(call), cmd_id, 0, true,
			      &exec_events, x);
}

static void exec_finish(struct rpc_call *call)
{
	struct exec_call *x = (struct exec_call *)call;
	command_op_cancel(x->op); /* a command runs on, drained */
	x->op = NULL;
	if (x->all) {
		evbuffer_free(x->all);
		evbuffer_free(x->pend[0]);
		evbuffer_free(x->pend[1]);
		event_free(x->flush);
		event_free(x->deadline);
	}
}

/* The connection's queue drained: let the agent send more. */
static void exec_drain(struct rpc_call *call)
{
	struct exec_call *x = (struct exec_call *)call;
	if (x->op && x->acked < x->delivered) {
		x->acked = x->delivered;
		command_op_ack(x->op, x->acked);
	}
}

static void ev_started(void *arg, const struct command_info *info)
{
	struct exec_call *x = arg;
	snprintf(x->cmd_id, sizeof(x->cmd_id), "%s", info->id);
	x->started_at_ms = info->started_at;
	if (x->kind == EXEC_DETACHED) {
		x->op = NULL; /* a detached run's op ends after this event */
		struct json_object *r = json_object_new_object();
		json_object_object_add(r, "cmd_id", json_object_new_string(info->id));
		json_object_object_add(r, "pid", json_object_new_int64(info->pid));
		json_object_object_add(r, "started_at", time_json(info->started_at));
		rpc_reply(&x->call, r);
		return;
	}
	rpc_notify(&x->call, "exec.start", NULL);
	if (x->timeout_ms > 0) {
		int64_t ms = x->timeout_ms + EXEC_TIMEOUT_SLACK_MS;
		struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
		evtimer_add(x->deadline, &tv);
	}
}

static void ev_output(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data, size_t len,
		      bool gap)
{
	struct exec_call *x = arg;
	x->delivered = offset + len;
	if (!gap && len > 0) {
		if (evbuffer_get_length(x->all) + len <= RPC_RESULT_LIMIT)
			evbuffer_add(x->all, data, len);
		struct evbuffer *p = x->pend[stream == AGENT_STREAM_STDERR ? 1 : 0];
		evbuffer_add(p, data, len);
		if (evbuffer_get_length(x->pend[0]) + evbuffer_get_length(x->pend[1]) >= EXEC_CHUNK) {
			flush_output(x, false);
		} else if (!evtimer_pending(x->flush, NULL)) {
			struct timeval tv = { x->flush_ms / 1000, (x->flush_ms % 1000) * 1000 };
			evtimer_add(x->flush, &tv);
		}
	}
	/* the agent sends more only once acked: not while the client lags */
	if (!rpc_conn_congested(x->call.conn)) {
		x->acked = x->delivered;
		command_op_ack(x->op, x->acked);
	}
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct exec_call *x = arg;
	flush_output(x, false);
	x->flush_ms = x->flush_ms * 2 > EXEC_FLUSH_MAX_MS ? EXEC_FLUSH_MAX_MS : x->flush_ms * 2;
}

/* Pending output as exec.stdout / exec.stderr, a character cut by a chunk's
 * end kept for the next (final: everything). */
static void flush_output(struct exec_call *x, bool final)
{
	static const char *const names[2] = { "exec.stdout", "exec.stderr" };
	evtimer_del(x->flush);
	for (int s = 0; s < 2; s++) {
		size_t len = evbuffer_get_length(x->pend[s]);
		if (len == 0)
			continue;
		const uint8_t *b = evbuffer_pullup(x->pend[s], -1);
		size_t n = final ? len : rpc_text_whole(b, len);
		if (n == 0)
			continue;
		struct json_object *p = json_object_new_object();
		json_object_object_add(p, "data", rpc_text(b, n));
		evbuffer_drain(x->pend[s], n);
		rpc_notify(&x->call, names[s], p);
	}
}

static struct json_object *text_of(struct evbuffer *b)
{
	size_t len = evbuffer_get_length(b);
	return rpc_text(len ? evbuffer_pullup(b, -1) : (const uint8_t *)"", len);
}

static void ev_exited(void *arg, const struct command_info *info)
{
	struct exec_call *x = arg;
	x->op = NULL;
	flush_output(x, true);
	if (info->timed_out && x->kind == EXEC_RUN) {
		reply_timeout(x);
		return;
	}
	/* the output (up to RPC_RESULT_LIMIT) made text once, in exec.done and the result */
	struct json_object *output = text_of(x->all);
	if (x->kind == EXEC_RUN) {
		struct json_object *d = json_object_new_object();
		json_object_object_add(d, "exit_code", json_object_new_int(info->exit_code));
		json_object_object_add(d, "output", json_object_get(output));
		rpc_notify(&x->call, "exec.done", d);
	}
	struct json_object *r = json_object_new_object();
	json_object_object_add(r, "cmd_id",
			       json_object_new_string(x->kind == EXEC_LOGS ? x->cmd_id : info->id));
	json_object_object_add(r, "output", output);
	json_object_object_add(r, "exit_code", json_object_new_int(info->exit_code));
	json_object_object_add(r, "started_at",
			       time_json(info->started_at ? info->started_at : x->started_at_ms));
	rpc_reply(&x->call, r);
}

static void ev_failed(void *arg, const struct core_error *fail)
{
	struct exec_call *x = arg;
	x->op = NULL;
	flush_output(x, true);
	rpc_reply_core_error(&x->call, fail);
}

/* The exec's timeout passed and no exit came: answer now; the agent kills the
 * command's group at its own deadline (SIGTERM, then SIGKILL). */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct exec_call *x = arg;
	flush_output(x, true);
	reply_timeout(x);
}

static void reply_timeout(struct exec_call *x)
{
	rpc_reply_error(
		&x->call, hermes_rpc_code(&(struct core_error){ .kind = CORE_LIMIT, .code = "timeout" }),
		"the command timed out after %lld s and was killed", (long long)(x->timeout_ms / 1000));
}

/* ---- kill ---- */

static void kill_start(struct rpc_call *call, struct json_object *params)
{
	struct kill_call *k = (struct kill_call *)call;
	const char *cmd_id, *sig = NULL;
	struct core_error fail;
	if (rpc_param_string(params, "cmd_id", true, &cmd_id, NULL, &fail) != 0 ||
	    rpc_param_string(params, "signal", false, &sig, NULL, &fail) != 0) {
		rpc_reply_core_error(call, &fail);
		return;
	}
	int signo = command_signal_parse(sig && *sig ? sig : "SIGTERM");
	if (signo < 0) {
		rpc_reply_error(call, HERMES_RPC_INVALID_PARAMS,
				"invalid params: 'signal' must be a signal name (SIGTERM, SIGKILL, SIGINT, "
				"SIGHUP, ...)");
		return;
	}
	k->op = commands_signal(rpc_conn_core(call->conn)->cmds, rpc_call_sandbox(call), cmd_id, signo,
				killed, k);
}

static void killed(const struct core_error *fail, void *arg)
{
	struct kill_call *k = arg;
	k->op = NULL;
	if (fail) {
		rpc_reply_core_error(&k->call, fail);
		return;
	}
	rpc_reply(&k->call, json_object_new_object());
}

static void kill_finish(struct rpc_call *call)
{
	struct kill_call *k = (struct kill_call *)call;
	command_op_cancel(k->op);
	k->op = NULL;
}
