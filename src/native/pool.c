/* The native API's warm pool routes: GET /api/pool (each pooled template's
 * counts, image and rollout), POST /api/pool/rollout {"template", "image"?}
 * (start one) and DELETE /api/pool/rollout[?template=] (cancel). Thin: parse,
 * call the core, answer with the pool's status. */
#include <string.h>

#include <json-c/json.h>

#include "http/server.h"
#include "internal.h"

static void pool_get(struct http_request *req, void *arg);
static void pool_rollout(struct http_request *req, void *arg);
static void pool_rollout_body(struct http_request *req, struct json_object *body, void *arg);
static void pool_cancel(struct http_request *req, void *arg);

int native_pool_routes(struct native *nat)
{
	struct router *r = nat->router;
	if (router_add(r, "GET", "/api/pool", pool_get, nat) != 0 ||
	    router_add(r, "POST", "/api/pool/rollout", pool_rollout, nat) != 0 ||
	    router_add(r, "DELETE", "/api/pool/rollout", pool_cancel, nat) != 0)
		return -1;
	return 0;
}

static void pool_get(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	struct native_pending *p = native_pending_new(nat, req, 200);
	p->call = sandbox_pool_status(nat->svc, native_pending_reply, p);
}

static void pool_rollout(struct http_request *req, void *arg)
{
	http_request_read_json(req, 0, pool_rollout_body, arg);
}

/* A string member, or NULL when absent; -1 when it is there and no string. */
static int string_member(struct json_object *body, const char *key, const char **out)
{
	struct json_object *v;
	*out = NULL;
	if (!json_object_object_get_ex(body, key, &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0)
		return -1;
	*out = json_object_get_string(v);
	return 0;
}

static void pool_rollout_body(struct http_request *req, struct json_object *body, void *arg)
{
	struct native *nat = arg;
	const char *tpl, *image;
	if (!json_object_is_type(body, json_type_object) || string_member(body, "template", &tpl) != 0 ||
	    !tpl) {
		http_respond_error(req, 400, "invalid_template", "'template' must name a pooled template");
		return;
	}
	if (string_member(body, "image", &image) != 0) {
		http_respond_error(req, 400, "invalid_image", "'image' must be an image name, or absent");
		return;
	}
	struct native_pending *p = native_pending_new(nat, req, 202);
	p->call = sandbox_pool_rollout(nat->svc, tpl, image, http_request_id(req), native_pending_reply, p);
}

static void pool_cancel(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	const char *tpl = http_request_query(req, "template");
	struct native_pending *p = native_pending_new(nat, req, 200);
	p->call = sandbox_pool_cancel(nat->svc, tpl && *tpl ? tpl : NULL, native_pending_reply, p);
}
