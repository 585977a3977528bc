/* The Hermes REST routes under /api/v1/sandboxes (spec §2): create and list
 * on one POST, get, delete, stop/start/restart, extend, PATCH, configure.
 * Each request is a small state machine: a sandbox named by id is found
 * first (in the request's project, X-Project-Id, else "default": another
 * project's, an expired or a deleted one is not found), then the core is
 * called, then the answer goes in the envelope. Lifecycle calls are answered
 * once accepted; GET follows the sandbox through its statuses. */
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/config.h"
#include "http/router.h"
#include "http/server.h"
#include "internal.h"

enum hreq_state {
	HREQ_FIND, /* the sandbox named by id, in the project */
	HREQ_CALL, /* the core's call */
	HREQ_LIST, /* user_id alone: that user's list after the create */
	HREQ_DONE,
	HREQ_STATE_MAX
};

enum hreq_op {
	OP_GET,
	OP_DELETE,
	OP_STOP,
	OP_START,
	OP_RESTART,
	OP_EXTEND,
	OP_UPDATE,
	OP_CONFIGURE,
	OP_CREATE,
	OP_LIST,
	OP_BOTH,
	OP_MAX
};

/* One request, in its memory; what it owns is put by hreq_release. */
struct hreq {
	struct hermes *h;
	struct http_request *req;
	struct sandbox_call *call;
	enum hreq_state state;
	enum hreq_op op;
	const char *project, *id;
	int64_t seconds;
	struct hermes_spec spec; /* PATCH */
	struct json_object *env; /* configure's payloads (NULL: apply again) */
	struct hermes_create create;
	struct hermes_list list;
	struct json_object *created; /* OP_BOTH: the new sandbox's Info */
};

static void route_post(struct http_request *req, void *arg);
static void post_body(struct http_request *req, struct json_object *body, void *arg);
static void route_id(struct http_request *req, void *arg);
static void id_body(struct http_request *req, struct json_object *body, void *arg);
static void hreq_find(struct hreq *r);
static void found(const struct sandbox_result *res, void *arg);
static void hreq_call(struct hreq *r);
static void called(const struct sandbox_result *res, void *arg);
static void hreq_list(struct hreq *r);
static void hreq_cancel(void *arg);

int hermes_rest_routes(struct hermes *h)
{
	struct router *rt = h->router;
	static const struct {
		const char *method, *path;
		route_fn fn;
	} routes[] = {
		{ "POST", "/api/v1/sandboxes", route_post },
		{ "GET", "/api/v1/sandboxes/{id}", route_id },
		{ "DELETE", "/api/v1/sandboxes/{id}", route_id },
		{ "PATCH", "/api/v1/sandboxes/{id}", route_id },
		{ "POST", "/api/v1/sandboxes/{id}/stop", route_id },
		{ "POST", "/api/v1/sandboxes/{id}/start", route_id },
		{ "POST", "/api/v1/sandboxes/{id}/restart", route_id },
		{ "POST", "/api/v1/sandboxes/{id}/extend", route_id },
		{ "POST", "/api/v1/sandboxes/{id}/configure", route_id },
	};
	for (size_t i = 0; i < ARRAY_LEN(routes); i++)
		if (router_add(rt, routes[i].method, routes[i].path, routes[i].fn, h) != 0)
			return -1;
	return 0;
}

static void hreq_set_state(struct hreq *r, enum hreq_state next)
{
	CHECK(next < HREQ_STATE_MAX);
	CHECK(next == HREQ_DONE || next > r->state || (r->state == HREQ_FIND && next == HREQ_FIND));
	r->state = next;
}

static struct hreq *hreq_new(struct hermes *h, struct http_request *req, enum hreq_op op)
{
	struct core_error e;
	const char *project = hermes_request_project(req, &e);
	if (!project) {
		hermes_respond_error(req, &e);
		return NULL;
	}
	struct hreq *r = http_request_alloc(req, sizeof(*r));
	r->h = h;
	r->req = req;
	r->op = op;
	r->project = project;
	r->id = http_request_param(req, "id");
	http_request_set_cancel(req, hreq_cancel, r);
	return r;
}

/* What the request owns, given back (once). */
static void hreq_release(struct hreq *r)
{
	http_request_set_cancel(r->req, NULL, NULL);
	json_object_put(r->spec.kept);
	json_object_put(r->env);
	json_object_put(r->created);
	hermes_create_clear(&r->create);
	r->spec.kept = r->env = r->created = NULL;
}

static void hreq_cancel(void *arg)
{
	struct hreq *r = arg;
	sandbox_call_cancel(r->call);
	r->call = NULL;
	hreq_set_state(r, HREQ_DONE);
	hreq_release(r);
}

static void hreq_fail(struct hreq *r, const struct core_error *e)
{
	hreq_set_state(r, HREQ_DONE);
	hreq_release(r);
	hermes_respond_error(r->req, e);
}

static void hreq_reply(struct hreq *r, struct json_object *data)
{
	hreq_set_state(r, HREQ_DONE);
	hreq_release(r);
	hermes_reply(r->req, data);
}

/* ---- POST /api/v1/sandboxes: create, list, or both ---- */

static void route_post(struct http_request *req, void *arg)
{
	http_request_read_json(req, 0, post_body, arg);
}

static void post_body(struct http_request *req, struct json_object *body, void *arg)
{
	struct hermes *h = arg;
	enum hermes_post kind = hermes_post_classify(body);
	struct hreq *r = hreq_new(h, req,
				  kind == HERMES_POST_LIST     ? OP_LIST
				  : kind == HERMES_POST_CREATE ? OP_CREATE
							       : OP_BOTH);
	if (!r)
		return;
	struct core_error e;
	if ((r->op != OP_CREATE && hermes_list_parse(body, &r->list, &e) != 0) ||
	    (r->op != OP_LIST && hermes_create_parse(body, &r->create, &e) != 0)) {
		hreq_fail(r, &e);
		return;
	}
	hreq_call(r);
}

/* ---- the routes of one sandbox ---- */

static enum hreq_op id_op(struct http_request *req)
{
	const char *method = http_request_method(req);
	if (strcmp(method, "GET") == 0)
		return OP_GET;
	if (strcmp(method, "DELETE") == 0)
		return OP_DELETE;
	if (strcmp(method, "PATCH") == 0)
		return OP_UPDATE;
	static const struct {
		const char *verb;
		enum hreq_op op;
	} verbs[] = { { "stop", OP_STOP },
		      { "start", OP_START },
		      { "restart", OP_RESTART },
		      { "extend", OP_EXTEND },
		      { "configure", OP_CONFIGURE } };
	const char *verb = strrchr(http_request_path(req), '/') + 1;
	for (size_t i = 0; i < ARRAY_LEN(verbs); i++)
		if (strcmp(verb, verbs[i].verb) == 0)
			return verbs[i].op;
	CHECK(!"a route without an op");
	return OP_MAX;
}

static void route_id(struct http_request *req, void *arg)
{
	enum hreq_op op = id_op(req);
	if (op == OP_EXTEND || op == OP_UPDATE || op == OP_CONFIGURE) {
		http_request_read_json(req, 0, id_body, arg);
		return;
	}
	struct hreq *r = hreq_new(arg, req, op);
	if (r)
		hreq_find(r);
}

static void id_body(struct http_request *req, struct json_object *body, void *arg)
{
	struct hreq *r = hreq_new(arg, req, id_op(req));
	if (!r)
		return;
	struct core_error e;
	int rc = r->op == OP_EXTEND   ? hermes_seconds_parse(body, &r->seconds, &e)
		 : r->op == OP_UPDATE ? hermes_patch_parse(body, &r->spec, &e)
				      : hermes_configure_parse(body, &r->env, &e);
	if (rc != 0) {
		hreq_fail(r, &e);
		return;
	}
	hreq_find(r);
}

static void hreq_find(struct hreq *r)
{
	hreq_set_state(r, HREQ_FIND);
	r->call = sandbox_get(r->h->core->svc, r->id, found, r);
}

static void found(const struct sandbox_result *res, void *arg)
{
	struct hreq *r = arg;
	r->call = NULL;
	if (res->err.kind != CORE_OK) {
		hreq_fail(r, &res->err);
		return;
	}
	const struct sandbox *sb = res->sb;
	struct core_error e;
	if (!hermes_sandbox_visible(sb, r->project, r->id, &e)) {
		hreq_fail(r, &e);
		return;
	}
	if (r->op == OP_GET) {
		hreq_reply(r, hermes_info_json(r->h, sb));
		return;
	}
	hreq_call(r);
}

/* ---- the core's call ---- */

static void hreq_call(struct hreq *r)
{
	hreq_set_state(r, HREQ_CALL);
	struct sandbox_service *svc = r->h->core->svc;
	const struct config *cfg = r->h->cfg;
	const char *actor = http_request_id(r->req);
	switch (r->op) {
	case OP_CREATE:
	case OP_BOTH: {
		const struct hermes_create *c = &r->create;
		struct sandbox_create_params p = {
			.template_name = cfg->hermes_template,
			.env_vars = c->env,
			.env_configured = c->env != NULL,
			.labels = c->labels,
			.cpus = c->spec.cpus,
			.memory = c->spec.memory,
			.image = c->spec.image,
			.spec = c->spec.kept,
			.user_id = c->user_id,
			.project = r->project,
			/* the lifetime is expire_at; idle, it stops (and wakes when asked) */
			.ttl_ms = c->ttl_hours > 0 ? c->ttl_hours * 3600 * 1000 : cfg->default_ttl_ms,
			.idle_action = SANDBOX_IDLE_STOP,
			.wait = false,
			.actor = actor,
		};
		r->call = sandbox_create(svc, &p, called, r);
		return;
	}
	case OP_LIST:
		hreq_list(r);
		return;
	case OP_DELETE:
		r->call = sandbox_delete(svc, r->id, actor, called, r);
		return;
	case OP_STOP:
	case OP_START:
	case OP_RESTART: {
		enum sandbox_power kind = r->op == OP_STOP    ? SANDBOX_POWER_STOP
					  : r->op == OP_START ? SANDBOX_POWER_START
							      : SANDBOX_POWER_RESTART;
		r->call = sandbox_power_accepted(svc, kind, r->id, actor, called, r);
		return;
	}
	case OP_EXTEND:
		r->call = sandbox_extend(svc, r->id, r->seconds * 1000, actor, called, r);
		return;
	case OP_UPDATE: {
		struct sandbox_changes c = {
			.cpus = r->spec.cpus,
			.memory = r->spec.memory,
			.spec = r->spec.kept,
			.image = r->spec.image,
			.running_only = true,
		};
		r->call = sandbox_update(svc, r->id, &c, actor, called, r);
		return;
	}
	case OP_CONFIGURE:
		r->call = sandbox_configure(svc, r->id, r->env, actor, called, r);
		return;
	case OP_GET:
	case OP_MAX:
		break;
	}
	CHECK(!"no call for this op");
}

static void called(const struct sandbox_result *res, void *arg)
{
	struct hreq *r = arg;
	r->call = NULL;
	if (res->err.kind != CORE_OK) {
		hreq_fail(r, &res->err);
		return;
	}
	switch (r->op) {
	case OP_CREATE: {
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "sandbox", hermes_info_json(r->h, res->sb));
		hreq_reply(r, o);
		return;
	}
	case OP_BOTH:
		r->created = hermes_info_json(r->h, res->sb);
		r->list.user_id = r->create.user_id;
		hreq_list(r);
		return;
	case OP_LIST: {
		struct json_object *o = hermes_list_json(r->h, res, &r->list);
		if (r->created)
			json_object_object_add(o, "sandbox", json_object_get(r->created));
		hreq_reply(r, o);
		return;
	}
	default:
		hreq_reply(r, res->sb ? hermes_info_json(r->h, res->sb) : NULL);
		return;
	}
}

/* The project's sandboxes by the list's filters, oldest first; OP_BOTH's
 * answer carries the new sandbox beside them. */
static void hreq_list(struct hreq *r)
{
	if (r->op == OP_BOTH) {
		hreq_set_state(r, HREQ_LIST);
		r->op = OP_LIST;
	}
	if (r->list.none) {
		struct sandbox_result empty = { .list = NULL, .n = 0, .total = 0 };
		called(&empty, r);
		return;
	}
	struct sandbox_filter f = {
		.statuses = r->list.statuses,
		.limit = r->list.limit,
		.offset = r->list.offset,
		.project = r->project,
		.user_id = r->list.user_id,
		.oldest_first = true,
	};
	r->call = sandbox_list(r->h->core->svc, &f, called, r);
}
