/* GET /api/v1/sandboxes/{id}/connect: the WebSocket one attached Sandbox of
 * the SDK keeps (spec §7). The sandbox is looked up in the request's project,
 * as REST does (never woken: a stopped one answers 101 at once too), then the
 * connection carries JSON-RPC until the client drops it; its commands run on. */
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "http/router.h"
#include "http/server.h"
#include "http/websocket.h"
#include "rpc.h"
#include "sandbox/registry.h"

#define RPC_PING_MS (30 * 1000) /* a ping this often; a peer silent for 4 of them is gone */

struct hermes_connect {
	struct hermes *h;
	struct ws_hub *hub;
	LIST_HEAD(, rpc_conn) conns;
};

static void conn_set_state(struct rpc_conn *conn, enum rpc_conn_state next);
static void connect_route(struct http_request *req, void *arg);
static void conn_cancel(void *arg);
static void conn_found(struct sandbox_ref *ref, const struct core_error *err, void *arg);
static void conn_free(struct rpc_conn *conn);
static void ws_message(struct ws_conn *ws, bool binary, const uint8_t *data, size_t len, void *arg);
static void ws_drain(struct ws_conn *ws, void *arg);
static void ws_closed(struct ws_conn *ws, void *arg);

static const struct ws_ops rpc_ws_ops = { .message = ws_message, .drain = ws_drain, .closed = ws_closed };
static const char *const conn_state_names[RPC_CONN_STATE_MAX] = { "lookup", "open", "closed" };

struct hermes_connect *hermes_connect_new(struct hermes *h)
{
	struct hermes_connect *hc = calloc(1, sizeof(*hc));
	CHECK(hc != NULL);
	hc->h = h;
	hc->hub = ws_hub_new(h->base);
	LIST_INIT(&hc->conns);
	if (router_add(h->router, "GET", "/api/v1/sandboxes/{id}/connect", connect_route, hc) != 0) {
		hermes_connect_free(hc);
		return NULL;
	}
	return hc;
}

void hermes_connect_shutdown(struct hermes_connect *hc)
{
	if (hc)
		ws_hub_close_all(hc->hub, 1001, "server shutting down");
}

void hermes_connect_free(struct hermes_connect *hc)
{
	if (!hc)
		return;
	ws_hub_free(hc->hub); /* the open connections' closed callbacks free them */
	while (!LIST_EMPTY(&hc->conns)) {
		struct rpc_conn *conn = LIST_FIRST(&hc->conns); /* still looking up */
		registry_wait_cancel(conn->lookup);
		conn->lookup = NULL;
		conn_set_state(conn, RPC_CONN_CLOSED);
		conn_free(conn);
	}
	free(hc);
}

static void conn_set_state(struct rpc_conn *conn, enum rpc_conn_state next)
{
	static const unsigned legal[RPC_CONN_STATE_MAX] = {
		[RPC_CONN_LOOKUP] = 1u << RPC_CONN_OPEN | 1u << RPC_CONN_CLOSED,
		[RPC_CONN_OPEN] = 1u << RPC_CONN_CLOSED,
		[RPC_CONN_CLOSED] = 0,
	};
	CHECK(next < RPC_CONN_STATE_MAX && (legal[conn->state] & (1u << next)));
	log_debug("sandbox=%s hermes ws %p: %s -> %s", conn->sandbox_id, (void *)conn,
		  conn_state_names[conn->state], conn_state_names[next]);
	conn->state = next;
	if (next == RPC_CONN_CLOSED)
		rpc_conn_abandon(conn);
}

static void conn_free(struct rpc_conn *conn)
{
	CHECK(conn->state == RPC_CONN_CLOSED && TAILQ_EMPTY(&conn->calls));
	LIST_REMOVE(conn, link);
	free(conn);
}

static void connect_route(struct http_request *req, void *arg)
{
	struct hermes_connect *hc = arg;
	if (!ws_is_handshake(req)) {
		ws_refuse(req);
		return;
	}
	struct core_error e;
	const char *project = hermes_request_project(req, &e);
	if (!project) {
		hermes_respond_error(req, &e);
		return;
	}
	struct rpc_conn *conn = calloc(1, sizeof(*conn));
	CHECK(conn != NULL);
	conn->hc = hc;
	conn->state = RPC_CONN_LOOKUP;
	conn->req = req;
	conn->project = project;
	TAILQ_INIT(&conn->calls);
	snprintf(conn->sandbox_id, sizeof(conn->sandbox_id), "%s", http_request_param(req, "id"));
	LIST_INSERT_HEAD(&hc->conns, conn, link);
	http_request_set_cancel(req, conn_cancel, conn);
	/* found is enough: a stopped sandbox is dialled at once, and each call
	 * on it then wakes it (or fails) as the same call over REST would */
	conn->lookup = registry_acquire(hc->h->core->reg, http_request_param(req, "id"), REGISTRY_LIVE,
					conn_found, conn);
}

/* The client left during the lookup. */
static void conn_cancel(void *arg)
{
	struct rpc_conn *conn = arg;
	registry_wait_cancel(conn->lookup);
	conn->lookup = NULL;
	conn->req = NULL;
	conn_set_state(conn, RPC_CONN_CLOSED);
	conn_free(conn);
}

static void conn_found(struct sandbox_ref *ref, const struct core_error *err, void *arg)
{
	struct rpc_conn *conn = arg;
	struct http_request *req = conn->req;
	conn->lookup = NULL;
	conn->req = NULL;
	http_request_set_cancel(req, NULL, NULL);
	struct core_error e;
	if (err) {
		e = *err;
		if (e.kind == CORE_INVALID ||
		    (e.kind == CORE_CONFLICT && e.code && strcmp(e.code, "sandbox_not_live") == 0)) {
			/* not an id we could have, or deleted: no such sandbox to the SDK */
			core_error_set(&e, CORE_NOT_FOUND, "not_found", "no sandbox %s in project %s",
				       conn->sandbox_id, conn->project);
		}
	}
	/* another project's is not found, as over REST */
	bool visible =
		!err && hermes_sandbox_visible(sandbox_ref_get(ref), conn->project, conn->sandbox_id, &e);
	conn->project = NULL;
	sandbox_ref_put(ref);
	if (!visible) {
		hermes_respond_error(req, &e);
		conn_set_state(conn, RPC_CONN_CLOSED);
		conn_free(conn);
		return;
	}
	conn->ws = ws_accept(conn->hc->hub, req, &rpc_ws_ops, conn);
	CHECK(conn->ws != NULL); /* the handshake was checked before the lookup */
	ws_set_max_message(conn->ws, conn->hc->h->cfg->hermes_ws_max_message);
	ws_keepalive(conn->ws, RPC_PING_MS);
	conn_set_state(conn, RPC_CONN_OPEN);
	log_info("sandbox=%s hermes ws: connected", conn->sandbox_id);
}

static void ws_message(struct ws_conn *ws, bool binary, const uint8_t *data, size_t len, void *arg)
{
	struct rpc_conn *conn = arg;
	if (conn->state == RPC_CONN_OPEN)
		rpc_conn_message(conn, data, len); /* a binary frame is read as the same JSON */
}

static void ws_drain(struct ws_conn *ws, void *arg)
{
	struct rpc_conn *conn = arg;
	if (conn->state == RPC_CONN_OPEN)
		rpc_conn_drained(conn);
}

/* A bare TCP close (the SDK's Close), a close frame, shutdown: the calls in
 * flight are dropped quietly; their commands run on. */
static void ws_closed(struct ws_conn *ws, void *arg)
{
	struct rpc_conn *conn = arg;
	conn->ws = NULL;
	log_info("sandbox=%s hermes ws: closed after %llu calls (%zu in flight dropped)", conn->sandbox_id,
		 (unsigned long long)conn->served, conn->ncalls);
	conn_set_state(conn, RPC_CONN_CLOSED);
	conn_free(conn);
}

const struct core *rpc_conn_core(const struct rpc_conn *conn)
{
	return conn->hc->h->core;
}

struct event_base *rpc_conn_base(const struct rpc_conn *conn)
{
	return conn->hc->h->base;
}

const struct config *rpc_conn_config(const struct rpc_conn *conn)
{
	return conn->hc->h->cfg;
}

bool rpc_conn_congested(const struct rpc_conn *conn)
{
	return conn->ws && ws_pending(conn->ws) > RPC_HIGH_WATER;
}

void rpc_conn_send(struct rpc_conn *conn, struct json_object *o)
{
	if (conn->ws) {
		size_t len;
		const char *s = json_object_to_json_string_length(
			o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
		ws_send(conn->ws, false, s, len);
	}
	json_object_put(o);
}
