/* The native dialect's object: its routes registered on the front's router,
 * what it owns (the terminals' WebSocket hub), and the plumbing from a
 * pending sandbox call to an HTTP answer. */
#include <stdio.h>
#include <stdlib.h>

#include <json-c/json.h>

#include "core/check.h"
#include "core/config.h"
#include "http/server.h"
#include "http/websocket.h"
#include "internal.h"

static void pending_cancel(void *arg);

struct native *native_new(struct event_base *base, const struct config *cfg, const struct core *core,
			  struct router *router)
{
	struct native *nat = calloc(1, sizeof(*nat));
	CHECK(nat != NULL);
	nat->cfg = cfg;
	nat->svc = core->svc;
	nat->reg = core->reg;
	nat->cmds = core->cmds;
	nat->tasks = core->tasks;
	nat->fs = core->fs;
	nat->xfer = core->xfer;
	nat->preview = core->preview;
	nat->router = router;
	nat->ws = ws_hub_new(base);
	if (native_sandbox_routes(nat) != 0 || native_command_routes(nat) != 0 ||
	    native_terminal_routes(nat) != 0 || native_upload_routes(nat) != 0 ||
	    native_archive_routes(nat) != 0 || native_file_routes(nat) != 0 || native_pool_routes(nat) != 0 ||
	    native_task_routes(nat) != 0) {
		native_free(nat);
		return NULL;
	}
	return nat;
}

void native_shutdown(struct native *nat)
{
	ws_hub_close_all(nat->ws, 1001, "server shutting down");
}

void native_free(struct native *nat)
{
	if (!nat)
		return;
	ws_hub_free(nat->ws); /* terminals hang up their shells */
	free(nat);
}

/* ---- pending sandbox calls ---- */

struct native_pending *native_pending_new(const struct native *nat, struct http_request *req, int ok_status)
{
	struct native_pending *p = http_request_alloc(req, sizeof(*p));
	p->nat = nat;
	p->req = req;
	p->ok_status = ok_status;
	http_request_set_cancel(req, pending_cancel, p);
	return p;
}

static void pending_cancel(void *arg)
{
	struct native_pending *p = arg;
	sandbox_call_cancel(p->call);
	p->call = NULL;
}

void native_pending_reply(const struct sandbox_result *res, void *arg)
{
	struct native_pending *p = arg;
	struct http_request *req = p->req;
	p->call = NULL;
	http_request_set_cancel(req, NULL, NULL);
	if (res->err.kind != CORE_OK) {
		native_respond_error(req, &res->err);
		return;
	}
	if (res->token) {
		http_respond_json(req, p->ok_status,
				  native_preview_token_json(p->nat->preview, res, p->port));
		return;
	}
	if (res->sb) {
		http_respond_json(req, res->pending ? 202 : p->ok_status,
				  native_sandbox_json(p->nat->preview, res->sb));
		return;
	}
	if (res->pool) {
		http_respond_json(req, p->ok_status, native_pool_json(res->pool));
		return;
	}
	if (res->list) {
		char total[24];
		snprintf(total, sizeof(total), "%zu", res->total);
		http_response_header(req, "X-Total-Count", total);
		struct json_object *a = json_object_new_array_ext((int)res->n);
		for (size_t i = 0; i < res->n; i++)
			json_object_array_add(a, native_sandbox_json(p->nat->preview, res->list[i]));
		http_respond_json(req, p->ok_status, a);
		return;
	}
	http_respond_empty(req, 204);
}
