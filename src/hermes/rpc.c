/* JSON-RPC calls on one connection: each message becomes a call of a method,
 * many run at once and each is answered as it finishes; a call's
 * notifications always go out before its response, which ends it. Errors are
 * answered, never a reason to close the socket. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "rpc.h"

static void call_set_state(struct rpc_call *call, enum rpc_call_state next);
static void call_end(struct rpc_call *call, bool answered);
static struct json_object *envelope(struct json_object *id);
static void reply_invalid(struct rpc_conn *conn, struct json_object *id, int code, const char *message);

static const struct rpc_method *const methods[] = {
	&rpc_method_exec,	&rpc_method_exec_logs, &rpc_method_kill,	 &rpc_method_read,
	&rpc_method_write,	&rpc_method_edit,      &rpc_method_write_binary, &rpc_method_read_stream,
	&rpc_method_list_files, &rpc_method_stat,
};

static const char *const call_state_names[RPC_CALL_STATE_MAX] = { "started", "streaming", "done" };

static void call_set_state(struct rpc_call *call, enum rpc_call_state next)
{
	static const unsigned legal[RPC_CALL_STATE_MAX] = {
		[RPC_CALL_STARTED] = 1u << RPC_CALL_STREAMING | 1u << RPC_CALL_DONE,
		[RPC_CALL_STREAMING] = 1u << RPC_CALL_DONE,
		[RPC_CALL_DONE] = 0,
	};
	CHECK(next < RPC_CALL_STATE_MAX && (legal[call->state] & (1u << next)));
	log_debug("sandbox=%s rpc %lld %s: %s -> %s", call->conn->sandbox_id, (long long)call->id,
		  call->method->name, call_state_names[call->state], call_state_names[next]);
	call->state = next;
}

static struct json_object *envelope(struct json_object *id)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "jsonrpc", json_object_new_string("2.0"));
	json_object_object_add(o, "id", id);
	return o;
}

static void reply_invalid(struct rpc_conn *conn, struct json_object *id, int code, const char *message)
{
	struct json_object *o = envelope(id);
	struct json_object *e = json_object_new_object();
	json_object_object_add(e, "code", json_object_new_int(code));
	json_object_object_add(e, "message", json_object_new_string(message));
	json_object_object_add(o, "error", e);
	rpc_conn_send(conn, o);
}

void rpc_conn_message(struct rpc_conn *conn, const uint8_t *data, size_t len)
{
	struct rpc_request req;
	enum rpc_parse_result r = rpc_parse((const char *)data, len, &req);
	if (r == RPC_NOTIFICATION) {
		rpc_request_clear(&req); /* the client has nothing to tell us */
		return;
	}
	if (r == RPC_INVALID) {
		log_debug("sandbox=%s rpc: %s", conn->sandbox_id, req.message);
		/* only an integer id is echoed: the SDK reads no other (JSON-RPC: null) */
		bool int_id = req.id && json_object_is_type(req.id, json_type_int);
		reply_invalid(conn, int_id ? json_object_get(req.id) : NULL, req.code, req.message);
		rpc_request_clear(&req);
		return;
	}
	const struct rpc_method *m = NULL;
	for (size_t i = 0; i < ARRAY_LEN(methods) && !m; i++) {
		if (strcmp(methods[i]->name, req.method) == 0)
			m = methods[i];
	}
	if (!m) {
		char msg[160];
		snprintf(msg, sizeof(msg), "method not found: %.100s", req.method);
		reply_invalid(conn, json_object_new_int64(req.id_num), HERMES_RPC_METHOD_NOT_FOUND, msg);
	} else if (conn->ncalls >= RPC_MAX_CALLS) {
		char msg[120];
		snprintf(msg, sizeof(msg), "too many calls in flight on this connection (%d)", RPC_MAX_CALLS);
		reply_invalid(conn, json_object_new_int64(req.id_num), -32029, msg);
	} else {
		CHECK(m->size >= sizeof(struct rpc_call));
		struct rpc_call *call = calloc(1, m->size);
		CHECK(call != NULL);
		call->conn = conn;
		call->method = m;
		call->id = req.id_num;
		call->state = RPC_CALL_STARTED;
		TAILQ_INSERT_TAIL(&conn->calls, call, link);
		conn->ncalls++;
		m->start(call, req.params); /* may answer at once */
	}
	rpc_request_clear(&req);
}

const char *rpc_call_sandbox(const struct rpc_call *call)
{
	return call->conn->sandbox_id;
}

void rpc_notify(struct rpc_call *call, const char *method, struct json_object *params)
{
	CHECK(call->state != RPC_CALL_DONE);
	if (call->state == RPC_CALL_STARTED)
		call_set_state(call, RPC_CALL_STREAMING);
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "jsonrpc", json_object_new_string("2.0"));
	json_object_object_add(o, "method", json_object_new_string(method));
	struct json_object *p = json_object_new_object();
	json_object_object_add(p, "id", json_object_new_int64(call->id));
	if (params) {
		json_object_object_foreach(params, key, val)
			json_object_object_add(p, key, json_object_get(val));
		json_object_put(params);
	}
	json_object_object_add(o, "params", p);
	rpc_conn_send(call->conn, o);
}

/* The response is queued (answered), or the connection went: what the call
 * holds goes, then the call. */
static void call_end(struct rpc_call *call, bool answered)
{
	struct rpc_conn *conn = call->conn;
	call_set_state(call, RPC_CALL_DONE);
	call->method->finish(call); /* a command runs on; a read or write stops */
	TAILQ_REMOVE(&conn->calls, call, link);
	conn->ncalls--;
	conn->served += answered;
	free(call);
}

void rpc_reply(struct rpc_call *call, struct json_object *result)
{
	CHECK(call->state != RPC_CALL_DONE);
	struct json_object *o = envelope(json_object_new_int64(call->id));
	/* a null result decodes as zero values; every method sends one */
	json_object_object_add(o, "result", result ? result : json_object_new_object());
	rpc_conn_send(call->conn, o);
	call_end(call, true);
}

void rpc_reply_error(struct rpc_call *call, int code, const char *fmt, ...)
{
	CHECK(call->state != RPC_CALL_DONE);
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	reply_invalid(call->conn, json_object_new_int64(call->id), code, msg);
	call_end(call, true);
}

void rpc_reply_core_error(struct rpc_call *call, const struct core_error *e)
{
	rpc_reply_error(call, hermes_rpc_code(e), "%s", e->message);
}

void rpc_conn_abandon(struct rpc_conn *conn)
{
	struct rpc_call *call;
	while ((call = TAILQ_FIRST(&conn->calls)) != NULL) {
		log_debug("sandbox=%s rpc %lld %s: abandoned with its connection", conn->sandbox_id,
			  (long long)call->id, call->method->name);
		call_end(call, false);
	}
}

void rpc_conn_drained(struct rpc_conn *conn)
{
	struct rpc_call *call, *next;
	for (call = TAILQ_FIRST(&conn->calls); call; call = next) {
		next = TAILQ_NEXT(call, link);
		/* a drain may answer (and free) this call, not another */
		if (call->method->drain && !rpc_conn_congested(conn))
			call->method->drain(call);
	}
}
