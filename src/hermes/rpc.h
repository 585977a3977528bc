/* The WebSocket's JSON-RPC 2.0 (spec/hermes.md §7-§9), inside the dialect:
 * a message parsed with §8's strictness, the connection and its many calls
 * in flight, and what a method does with its call (notifications, then one
 * response). */
#ifndef SANDBAR_HERMES_RPC_H
#define SANDBAR_HERMES_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <json-c/json.h>

#include "commands/commands.h"
#include "core/check.h"
#include "core/error.h"
#include "internal.h"

struct ws_conn;
struct ws_hub;
struct sandbox_ref;
struct registry_wait;

/* ---- rpc_wire.c: one message, params, text (no I/O: unit tested, fuzzed) ---- */

enum rpc_parse_result {
	RPC_REQUEST,	  /* method and an integer id: answer it */
	RPC_NOTIFICATION, /* no id: nothing to answer (no client notification means anything) */
	RPC_INVALID,	  /* answer the error (code, message) with id, or null when unknown */
};

struct rpc_request {
	struct json_object *root;   /* owns what follows */
	struct json_object *id;	    /* as sent (echoed in an error); NULL when absent */
	int64_t id_num;		    /* RPC_REQUEST: the integer id */
	const char *method;	    /* RPC_REQUEST, RPC_NOTIFICATION */
	struct json_object *params; /* an object; an empty one when left out */
	struct json_object *empty;  /* that empty one, owned */
	int code;		    /* RPC_INVALID: -32700 parse error, -32600 invalid request, -32602 */
	const char *message;	    /* RPC_INVALID: static */
};

/* Parses one message: a JSON object (strict JSON, nothing after it, nested at
 * most RPC_MAX_DEPTH), "method" a non-empty string, "id" an integer literal
 * (1.0 and "1" are refused), "params" an object or left out. */
#define RPC_MAX_DEPTH 64
enum rpc_parse_result rpc_parse(const char *data, size_t len, struct rpc_request *out);
void rpc_request_clear(struct rpc_request *r);

/* Params: each getter fails CORE_INVALID (invalid_params, -32602) naming the
 * member on a wrong type; an absent (or null) optional member leaves *out. */
MUST_USE int rpc_param_string(struct json_object *params, const char *key, bool required, const char **out,
			      size_t *len, struct core_error *fail);
MUST_USE int rpc_param_bool(struct json_object *params, const char *key, bool *out, struct core_error *fail);
MUST_USE int rpc_param_uint(struct json_object *params, const char *key, uint64_t max, uint64_t *out,
			    struct core_error *fail);
/* A path as the file service takes it (absolute, no NUL). */
MUST_USE int rpc_param_path(struct json_object *params, const char *key, const char **out,
			    struct core_error *fail);

/* exec's params (§9.1) as the command service's spec: command (a shell
 * string, run by a fresh /bin/sh -c, or directly when it is plain words),
 * env, working_dir, timeout, sudo (root), stdin_data (or "stdin"), and
 * detached. 0, or -1 with fail set (spec freed). */
MUST_USE int rpc_exec_spec(struct json_object *params, uint64_t max_output, struct command_spec *spec,
			   bool *detached, struct core_error *fail);

/* Output bytes as a JSON string: valid UTF-8 as it is (NUL included, which
 * JSON escapes), each invalid byte as U+FFFD, as Go's decoder would read it. */
struct json_object *rpc_text(const uint8_t *data, size_t len);
/* The length of data without a last character cut short (to send once its
 * other bytes came): data's length when it ends on a whole character or an
 * invalid byte. */
size_t rpc_text_whole(const uint8_t *data, size_t len);

/* ---- connect.c: the connection (one WebSocket, one sandbox) ---- */

enum rpc_conn_state {
	RPC_CONN_LOOKUP, /* the sandbox being looked up; the HTTP request still open */
	RPC_CONN_OPEN,	 /* 101 sent: messages in, answers out */
	RPC_CONN_CLOSED, /* the socket is gone: every call abandoned; freed */
	RPC_CONN_STATE_MAX
};

struct rpc_call;
TAILQ_HEAD(rpc_calls, rpc_call);

struct rpc_conn {
	LIST_ENTRY(rpc_conn) link;
	struct hermes_connect *hc;
	enum rpc_conn_state state;
	struct http_request *req; /* RPC_CONN_LOOKUP */
	const char *project;	  /* RPC_CONN_LOOKUP: the request's (X-Project-Id), in req */
	struct registry_wait *lookup;
	struct ws_conn *ws; /* RPC_CONN_OPEN */
	char sandbox_id[37];
	struct rpc_calls calls; /* in flight, oldest first */
	size_t ncalls;
	uint64_t served; /* calls answered, for the log */
};

const struct core *rpc_conn_core(const struct rpc_conn *conn);
struct event_base *rpc_conn_base(const struct rpc_conn *conn);
const struct config *rpc_conn_config(const struct rpc_conn *conn);
/* Above the high watermark of queued output: stop reading sandbox output. */
bool rpc_conn_congested(const struct rpc_conn *conn);
/* Queues one message (the JSON of o; o is freed). */
void rpc_conn_send(struct rpc_conn *conn, struct json_object *o);

/* ---- rpc.c: calls ---- */

#define RPC_MAX_CALLS	 256		   /* in flight per connection; more are refused (-32029) */
#define RPC_HIGH_WATER	 (1u << 20)	   /* queued output above this: sandbox output waits */
#define RPC_RESULT_LIMIT ((size_t)1 << 24) /* bytes of exec "output" kept in a result */

enum rpc_call_state {
	RPC_CALL_STARTED,   /* the core is at work; nothing sent yet */
	RPC_CALL_STREAMING, /* notifications sent; the response still to come */
	RPC_CALL_DONE,	    /* answered, or abandoned with its connection: being freed */
	RPC_CALL_STATE_MAX
};

/* A method: start parses params and starts the core op; finish releases
 * what the call holds (cancels a pending core op so that no callback
 * follows, frees buffers), once, whether the call was answered or its
 * connection went; drain (may be NULL) resumes reading after congestion. */
struct rpc_method {
	const char *name;
	size_t size; /* of the method's call, which begins with struct rpc_call */
	void (*start)(struct rpc_call *call, struct json_object *params);
	void (*finish)(struct rpc_call *call);
	void (*drain)(struct rpc_call *call);
};

struct rpc_call {
	TAILQ_ENTRY(rpc_call) link;
	struct rpc_conn *conn;
	const struct rpc_method *method;
	enum rpc_call_state state;
	int64_t id;
};

/* A message of the connection: parsed, then a call started (or an error
 * answered). Never closes the connection. */
void rpc_conn_message(struct rpc_conn *conn, const uint8_t *data, size_t len);
/* The connection is gone: each call finished unanswered and freed. */
void rpc_conn_abandon(struct rpc_conn *conn);
/* The queued output fell below the low watermark. */
void rpc_conn_drained(struct rpc_conn *conn);

const char *rpc_call_sandbox(const struct rpc_call *call);
/* A notification {"jsonrpc","method","params":{"id":<call's id>, ...params}}
 * (params taken; NULL: only the id). Only before the response. */
void rpc_notify(struct rpc_call *call, const char *method, struct json_object *params);
/* The response; ends the call (finish, then freed): do not touch it after. */
void rpc_reply(struct rpc_call *call, struct json_object *result);
void rpc_reply_error(struct rpc_call *call, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A core error through the dialect's one table (errors.c). */
void rpc_reply_core_error(struct rpc_call *call, const struct core_error *e);

/* The methods (§9). */
extern const struct rpc_method rpc_method_exec, rpc_method_exec_logs, rpc_method_kill; /* rpc_exec.c */
extern const struct rpc_method rpc_method_read, rpc_method_write, rpc_method_edit, rpc_method_write_binary,
	rpc_method_read_stream, rpc_method_list_files, rpc_method_stat; /* rpc_files.c */

#endif
