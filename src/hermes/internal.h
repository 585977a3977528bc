/* What the Hermes dialect's files share: its object, route registration, the
 * envelope and the one error table (REST envelope codes and JSON-RPC codes). */
#ifndef SANDBAR_HERMES_INTERNAL_H
#define SANDBAR_HERMES_INTERNAL_H

#include <json-c/json.h>

#include "core/check.h"
#include "core/error.h"
#include "hermes/hermes.h"

struct hermes {
	struct event_base *base;
	const struct config *cfg;
	const struct core *core;
	struct router *router;		/* the front's: routes are registered on it */
	struct hermes_connect *connect; /* connect.c: the WebSocket route and its connections */
};

/* connect.c: GET /api/v1/sandboxes/{id}/connect, JSON-RPC over a WebSocket;
 * shutdown says "going away" to every connection, free drops them. */
struct hermes_connect *hermes_connect_new(struct hermes *h);
void hermes_connect_shutdown(struct hermes_connect *hc);
void hermes_connect_free(struct hermes_connect *hc);

/* errors.c: the one table. A core error as an HTTP status and an envelope
 * code (the same number: "atlas error 404: ..." reads well in the SDK), and
 * as a JSON-RPC error code (-32001 a missing file, -32602 bad params, ...). */
int hermes_http_status(const struct core_error *e);
int hermes_rpc_code(const struct core_error *e);
/* JSON-RPC codes that are not a core error. */
#define HERMES_RPC_PARSE_ERROR	    -32700
#define HERMES_RPC_INVALID_REQUEST  -32600
#define HERMES_RPC_METHOD_NOT_FOUND -32601
#define HERMES_RPC_INVALID_PARAMS   -32602
#define HERMES_RPC_INTERNAL	    -32603
#define HERMES_RPC_NOT_FOUND	    -32001 /* the one code the SDK reads: no such file */

/* envelope.c: {"code":0,"message":"ok","data":data,"request_id"} (data is
 * taken; NULL renders null), and an error's envelope with its status. */
void hermes_reply(struct http_request *req, struct json_object *data);
void hermes_respond_error(struct http_request *req, const struct core_error *e);

#endif
