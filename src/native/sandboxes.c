/* The native API's sandbox routes, starting from monza's: list, create, get,
 * delete, heartbeat. Thin: validate the request, call the core, answer. */
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
	    router_add(r, "POST", "/api/sandboxes/{id}/restart", sandbox_power_route, nat) != 0)
		return -1;
	return 0;
}

static void sandboxes_list(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	struct native_pending *p = native_pending_new(req, 200);
	p->call = sandbox_list(nat->svc, native_pending_reply, p);
}

static void sandboxes_create(struct http_request *req, void *arg)
{
	http_request_read_json(req, 0, sandboxes_create_body, arg);
}

/* A string member, or an error answered: returns false when the request is done. */
static bool optional_string(struct http_request *req, struct json_object *body, const char *key,
			    const char **out)
{
	struct json_object *v;
	*out = NULL;
	if (!body || !json_object_object_get_ex(body, key, &v) || json_object_is_type(v, json_type_null))
		return true;
	if (!json_object_is_type(v, json_type_string)) {
		http_respond_error(req, 400, "invalid_body", "'%s' must be a string", key);
		return false;
	}
	*out = json_object_get_string(v);
	return true;
}

/* env_vars: an object of string values with keys that a shell accepts in `K=V`. */
static bool valid_env_vars(struct http_request *req, struct json_object *env)
{
	if (!json_object_is_type(env, json_type_object)) {
		http_respond_error(req, 400, "invalid_env", "'env_vars' must be an object of strings");
		return false;
	}
	json_object_object_foreach(env, key, val)
	{
		if (!*key || strchr(key, '=') || strlen(key) > 256) {
			http_respond_error(req, 400, "invalid_env",
					   "env var name '%s' is empty, too long or has '='", key);
			return false;
		}
		if (!json_object_is_type(val, json_type_string)) {
			http_respond_error(req, 400, "invalid_env", "env var '%s' must be a string", key);
			return false;
		}
	}
	return true;
}

static void sandboxes_create_body(struct http_request *req, struct json_object *body, void *arg)
{
	struct native *nat = arg;
	struct sandbox_create_params params = { .wait = true };
	struct json_object *v;
	if (body && !json_object_is_type(body, json_type_object)) {
		http_respond_error(req, 400, "invalid_body", "the body must be a JSON object");
		return;
	}
	if (!optional_string(req, body, "name", &params.name) ||
	    !optional_string(req, body, "template", &params.template_name))
		return;
	/* monza clients send "" for "not given" */
	if (params.name && !*params.name)
		params.name = NULL;
	if (params.template_name && !*params.template_name)
		params.template_name = NULL;
	if (body && json_object_object_get_ex(body, "env_vars", &v) &&
	    !json_object_is_type(v, json_type_null)) {
		if (!valid_env_vars(req, v))
			return;
		params.env_vars = v;
	}
	if (body && json_object_object_get_ex(body, "wait", &v)) {
		if (!json_object_is_type(v, json_type_boolean)) {
			http_respond_error(req, 400, "invalid_body", "'wait' must be a boolean");
			return;
		}
		params.wait = json_object_get_boolean(v);
	}
	params.actor = http_request_id(req);
	struct native_pending *p = native_pending_new(req, 201);
	p->call = sandbox_create(nat->svc, &params, native_pending_reply, p);
}

static void sandbox_get_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	struct native_pending *p = native_pending_new(req, 200);
	p->call = sandbox_get(nat->svc, http_request_param(req, "id"), native_pending_reply, p);
}

static void sandbox_delete_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	struct native_pending *p = native_pending_new(req, 204);
	p->call = sandbox_delete(nat->svc, http_request_param(req, "id"), http_request_id(req),
				 native_pending_reply, p);
}

static void sandbox_heartbeat_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	struct native_pending *p = native_pending_new(req, 204);
	p->call = sandbox_heartbeat(nat->svc, http_request_param(req, "id"), native_pending_reply, p);
}

/* POST .../stop, .../start, .../restart: the sandbox as it is after. */
static void sandbox_power_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	const char *path = http_request_path(req);
	const char *verb = strrchr(path, '/') + 1;
	const char *id = http_request_param(req, "id");
	struct native_pending *p = native_pending_new(req, 200);
	if (strcmp(verb, "stop") == 0)
		p->call = sandbox_stop(nat->svc, id, http_request_id(req), native_pending_reply, p);
	else if (strcmp(verb, "start") == 0)
		p->call = sandbox_start(nat->svc, id, http_request_id(req), native_pending_reply, p);
	else
		p->call = sandbox_restart(nat->svc, id, http_request_id(req), native_pending_reply, p);
}
