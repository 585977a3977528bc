/* The native API's sandbox routes, starting from monza's (list, create, get,
 * delete, heartbeat) and ours (stop, start, restart, keepalive, extend,
 * PATCH). Thin: parse the request, call the core, answer. */
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "http/server.h"
#include "internal.h"

static void sandboxes_list(struct http_request *req, void *arg);
static void sandboxes_create(struct http_request *req, void *arg);
static void sandboxes_create_body(struct http_request *req, struct json_object *body, void *arg);
static void sandbox_get_route(struct http_request *req, void *arg);
static void sandbox_delete_route(struct http_request *req, void *arg);
static void sandbox_heartbeat_route(struct http_request *req, void *arg);
static void sandbox_power_route(struct http_request *req, void *arg);
static void sandbox_json_route(struct http_request *req, void *arg);
static void sandbox_json_body(struct http_request *req, struct json_object *body, void *arg);

int native_sandbox_routes(struct native *nat)
{
	struct router *r = nat->router;
	if (router_add(r, "GET", "/api/sandboxes", sandboxes_list, nat) != 0 ||
	    router_add(r, "POST", "/api/sandboxes", sandboxes_create, nat) != 0 ||
	    router_add(r, "GET", "/api/sandboxes/{id}", sandbox_get_route, nat) != 0 ||
	    router_add(r, "DELETE", "/api/sandboxes/{id}", sandbox_delete_route, nat) != 0 ||
	    router_add(r, "POST", "/api/sandboxes/{id}/heartbeat", sandbox_heartbeat_route, nat) != 0 ||
	    router_add(r, "POST", "/api/sandboxes/{id}/stop", sandbox_power_route, nat) != 0 ||
	    router_add(r, "POST", "/api/sandboxes/{id}/start", sandbox_power_route, nat) != 0 ||
	    router_add(r, "POST", "/api/sandboxes/{id}/restart", sandbox_power_route, nat) != 0 ||
	    router_add(r, "POST", "/api/sandboxes/{id}/keepalive", sandbox_json_route, nat) != 0 ||
	    router_add(r, "POST", "/api/sandboxes/{id}/extend", sandbox_json_route, nat) != 0 ||
	    router_add(r, "PATCH", "/api/sandboxes/{id}", sandbox_json_route, nat) != 0)
		return -1;
	return 0;
}

/* GET /api/sandboxes?status=a,b&label=k:v,k2:v2&limit=&offset=: without any,
 * monza's list (every sandbox not deleted or expired); the total matching is
 * in X-Total-Count. */
static void sandboxes_list(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	struct sandbox_filter f = { 0 };
	const char *v;
	char *buf; /* a copy to cut into tokens, as long as the query's value */
	if ((v = http_request_query(req, "status")) && *v) {
		buf = http_request_strdup(req, v);
		for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			enum sandbox_status st;
			if (sandbox_status_parse(t, &st) != 0 || st == SANDBOX_WARM) {
				http_respond_error(req, 400, "invalid_status", "'%s' is no sandbox status",
						   t);
				return;
			}
			f.statuses |= 1u << st;
		}
	}
	if ((v = http_request_query(req, "label")) && *v) {
		buf = http_request_strdup(req, v);
		f.labels = json_object_new_object();
		for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			char *colon = strchr(t, ':');
			if (!colon || colon == t) {
				json_object_put(f.labels);
				http_respond_error(req, 400, "invalid_label",
						   "'label' takes key:value pairs, comma separated");
				return;
			}
			*colon = '\0';
			json_object_object_add(f.labels, t, json_object_new_string(colon + 1));
		}
	}
	static const struct {
		const char *name;
		size_t max;
	} pages[] = { { "limit", 1000 }, { "offset", 1000000 } };
	for (size_t i = 0; i < ARRAY_LEN(pages); i++) {
		if (!(v = http_request_query(req, pages[i].name)))
			continue;
		char *end;
		unsigned long long n = strtoull(v, &end, 10);
		if (!*v || *end || *v == '-' || n > pages[i].max || (i == 0 && n == 0)) {
			json_object_put(f.labels);
			http_respond_error(req, 400, i == 0 ? "invalid_limit" : "invalid_offset",
					   "'%s' must be a whole number up to %zu%s", pages[i].name,
					   pages[i].max, i == 0 ? ", above 0" : "");
			return;
		}
		*(i == 0 ? &f.limit : &f.offset) = (size_t)n;
	}
	struct native_pending *p = native_pending_new(nat, req, 200);
	p->call = sandbox_list(nat->svc, &f, native_pending_reply, p);
	json_object_put(f.labels);
}

static void sandboxes_create(struct http_request *req, void *arg)
{
	http_request_read_json(req, 0, sandboxes_create_body, arg);
}

static void sandboxes_create_body(struct http_request *req, struct json_object *body, void *arg)
{
	struct native *nat = arg;
	struct sandbox_create_params params = { .wait = true, .actor = http_request_id(req) };
	struct core_error err;
	int *ports;
	if (native_create_params(body, &params, &ports, &err) != 0) {
		native_respond_error(req, &err);
		return;
	}
	struct native_pending *p = native_pending_new(nat, req, 201);
	p->call = sandbox_create(nat->svc, &params, native_pending_reply, p);
	free(ports);
}

static void sandbox_get_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	struct native_pending *p = native_pending_new(nat, req, 200);
	p->call = sandbox_get(nat->svc, http_request_param(req, "id"), native_pending_reply, p);
}

static void sandbox_delete_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	struct native_pending *p = native_pending_new(nat, req, 204);
	p->call = sandbox_delete(nat->svc, http_request_param(req, "id"), http_request_id(req),
				 native_pending_reply, p);
}

static void sandbox_heartbeat_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	struct native_pending *p = native_pending_new(nat, req, 204);
	p->call = sandbox_heartbeat(nat->svc, http_request_param(req, "id"), native_pending_reply, p);
}

/* POST .../stop, .../start, .../restart: the sandbox as it is after. */
static void sandbox_power_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	const char *path = http_request_path(req);
	const char *verb = strrchr(path, '/') + 1;
	const char *id = http_request_param(req, "id");
	struct native_pending *p = native_pending_new(nat, req, 200);
	if (strcmp(verb, "stop") == 0)
		p->call = sandbox_stop(nat->svc, id, http_request_id(req), native_pending_reply, p);
	else if (strcmp(verb, "start") == 0)
		p->call = sandbox_start(nat->svc, id, http_request_id(req), native_pending_reply, p);
	else
		p->call = sandbox_restart(nat->svc, id, http_request_id(req), native_pending_reply, p);
}

/* POST .../keepalive and .../extend ({"seconds"}), PATCH .../{id}: the
 * sandbox as it is after. */
static void sandbox_json_route(struct http_request *req, void *arg)
{
	http_request_read_json(req, 0, sandbox_json_body, arg);
}

static void sandbox_json_body(struct http_request *req, struct json_object *body, void *arg)
{
	struct native *nat = arg;
	const char *id = http_request_param(req, "id");
	const char *verb = strrchr(http_request_path(req), '/') + 1;
	struct core_error err;
	int64_t ms = 0;
	if (strcmp(http_request_method(req), "PATCH") == 0) {
		struct sandbox_changes c = { 0 };
		if (native_update_params(body, &c, &err) != 0) {
			native_respond_error(req, &err);
			return;
		}
		struct native_pending *p = native_pending_new(nat, req, 200);
		p->call = sandbox_update(nat->svc, id, &c, http_request_id(req), native_pending_reply, p);
		return;
	}
	if (native_seconds(body, &ms, &err) != 0) {
		native_respond_error(req, &err);
		return;
	}
	struct native_pending *p = native_pending_new(nat, req, 200);
	if (strcmp(verb, "keepalive") == 0)
		p->call = sandbox_keepalive(nat->svc, id, ms, http_request_id(req), native_pending_reply, p);
	else
		p->call = sandbox_extend(nat->svc, id, ms, http_request_id(req), native_pending_reply, p);
}
