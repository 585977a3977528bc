/* The Hermes admin routes (spec §6): GET /admin/pool/status from the warm
 * pool and the cluster's counts, and /admin/rolling/start|status|cancel
 * driving the rollouts of the Hermes template's pool (SANDBAR_HERMES_TEMPLATE).
 * Times are left out rather than "" (which fails the SDK's decode). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "core/clock.h"
#include "core/config.h"
#include "http/router.h"
#include "http/server.h"
#include "internal.h"

enum admin_route { ADMIN_POOL, ADMIN_ROLL_STATUS, ADMIN_ROLL_START, ADMIN_ROLL_CANCEL, ADMIN_ROUTE_MAX };

/* One admin request, in its memory. */
struct admin_req {
	struct hermes *h;
	struct http_request *req;
	struct sandbox_call *call;
	enum admin_route route;
	/* ADMIN_POOL: the pool's status, kept until the counts come */
	struct json_object *pool;
};

static void route_admin(struct http_request *req, void *arg);
static void start_body(struct http_request *req, struct json_object *body, void *arg);
static void admin_answered(const struct sandbox_result *res, void *arg);
static void admin_counted(const struct sandbox_result *res, void *arg);
static void admin_cancel(void *arg);

static const struct {
	const char *method, *path;
} admin_paths[ADMIN_ROUTE_MAX] = {
	[ADMIN_POOL] = { "GET", "/admin/pool/status" },
	[ADMIN_ROLL_STATUS] = { "GET", "/admin/rolling/status" },
	[ADMIN_ROLL_START] = { "POST", "/admin/rolling/start" },
	[ADMIN_ROLL_CANCEL] = { "POST", "/admin/rolling/cancel" },
};

int hermes_admin_routes(struct hermes *h)
{
	for (size_t i = 0; i < ADMIN_ROUTE_MAX; i++)
		if (router_add(h->router, admin_paths[i].method, admin_paths[i].path, route_admin, h) != 0)
			return -1;
	return 0;
}

static struct admin_req *admin_new(struct hermes *h, struct http_request *req)
{
	struct admin_req *a = http_request_alloc(req, sizeof(*a));
	a->h = h;
	a->req = req;
	const char *path = http_request_path(req);
	for (size_t i = 0; i < ADMIN_ROUTE_MAX; i++)
		if (strcmp(path, admin_paths[i].path) == 0)
			a->route = (enum admin_route)i;
	http_request_set_cancel(req, admin_cancel, a);
	return a;
}

static void admin_cancel(void *arg)
{
	struct admin_req *a = arg;
	sandbox_call_cancel(a->call);
	a->call = NULL;
	json_object_put(a->pool);
	a->pool = NULL;
}

static void admin_fail(struct admin_req *a, const struct core_error *e)
{
	http_request_set_cancel(a->req, NULL, NULL);
	json_object_put(a->pool);
	a->pool = NULL;
	hermes_respond_error(a->req, e);
}

static void route_admin(struct http_request *req, void *arg)
{
	struct hermes *h = arg;
	if (strcmp(http_request_path(req), admin_paths[ADMIN_ROLL_START].path) == 0) {
		http_request_read_json(req, 0, start_body, h);
		return;
	}
	struct admin_req *a = admin_new(h, req);
	struct sandbox_service *svc = h->core->svc;
	if (a->route == ADMIN_ROLL_CANCEL)
		a->call = sandbox_pool_cancel(svc, h->cfg->hermes_template, admin_answered, a);
	else
		a->call = sandbox_pool_status(svc, admin_answered, a);
}

/* {} or {"image": "..."}: a rollout of the Hermes template's pool. */
static void start_body(struct http_request *req, struct json_object *body, void *arg)
{
	struct hermes *h = arg;
	struct admin_req *a = admin_new(h, req);
	struct json_object *v = NULL;
	if ((body && !json_object_is_type(body, json_type_object)) ||
	    (body && json_object_object_get_ex(body, "image", &v) &&
	     !json_object_is_type(v, json_type_null) && !json_object_is_type(v, json_type_string))) {
		struct core_error e;
		core_error_set(&e, CORE_INVALID, "invalid_image",
			       "the body is {} or {\"image\": \"<image>\"}");
		admin_fail(a, &e);
		return;
	}
	const char *image = v && json_object_is_type(v, json_type_string) && json_object_get_string_len(v)
				    ? json_object_get_string(v)
				    : NULL;
	a->call = sandbox_pool_rollout(h->core->svc, h->cfg->hermes_template, image, http_request_id(req),
				       admin_answered, a);
}

/* A time the SDK decodes: added only when there is one. */
static void add_time(struct json_object *o, const char *key, int64_t us)
{
	if (us > 0)
		json_object_object_add(o, key, hermes_time_json(us));
}

static const struct pool_template_status *hermes_slot(const struct admin_req *a, const struct pool_status *st)
{
	for (size_t i = 0; i < st->n; i++)
		if (strcmp(st->templates[i].template_name, a->h->cfg->hermes_template) == 0)
			return &st->templates[i];
	return NULL;
}

static struct json_object *rolling_json(const struct admin_req *a, const struct pool_template_status *t)
{
	static const struct pool_rollout none = { .phase = POOL_ROLLOUT_IDLE };
	const struct pool_rollout *ro = t ? &t->rollout : &none;
	const char *own = sandbox_template_image(a->h->core->svc, a->h->cfg->hermes_template);
	double progress = ro->phase == POOL_ROLLOUT_DONE ? 1.0
			  : ro->total > 0		 ? (double)ro->replaced / ro->total
							 : 0.0;
	int64_t end = ro->completed_at_us ? ro->completed_at_us : clock_real_us();
	char duration[32] = "";
	if (ro->started_at_us)
		snprintf(duration, sizeof(duration), "%.3fs", (double)(end - ro->started_at_us) / 1e6);
	char message[128];
	snprintf(message, sizeof(message), "%s%s%s", pool_rollout_phase_name(ro->phase),
		 ro->trigger ? ": " : "", ro->trigger ? ro->trigger : "");
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(ro->id));
	/* start answers the rollout it accepted as running (spec): one with
	 * nothing to replace may be over before the answer; status says idle */
	bool running = ro->phase == POOL_ROLLOUT_RUNNING ||
		       (a->route == ADMIN_ROLL_START && ro->phase == POOL_ROLLOUT_DONE);
	json_object_object_add(o, "phase", json_object_new_string(running ? "running" : "idle"));
	json_object_object_add(o, "target_image",
			       json_object_new_string(ro->image ? ro->image
						      : own	? own
								: ""));
	json_object_object_add(o, "progress", json_object_new_double(progress));
	json_object_object_add(o, "warm_total", json_object_new_int(ro->total));
	json_object_object_add(o, "warm_updated", json_object_new_int(ro->replaced));
	json_object_object_add(o, "active_total", json_object_new_int(0));
	json_object_object_add(o, "active_updated", json_object_new_int(0));
	add_time(o, "started_at", ro->started_at_us);
	add_time(o, "completed_at", ro->completed_at_us);
	json_object_object_add(o, "duration", json_object_new_string(duration));
	json_object_object_add(o, "message", json_object_new_string(message));
	json_object_object_add(o, "error", json_object_new_string(ro->error ? ro->error : ""));
	return o;
}

/* The pool's side of PoolStatus: every pooled template's members summed. */
static struct json_object *pool_json(const struct pool_status *st)
{
	int64_t warm = 0, target = 0, last_fill = 0, last_claim = 0;
	const char *error = NULL;
	for (size_t i = 0; i < st->n; i++) {
		const struct pool_template_status *t = &st->templates[i];
		warm += t->warm;
		target += t->target;
		if (t->last_fill_at_us > last_fill)
			last_fill = t->last_fill_at_us;
		if (t->last_claim_at_us > last_claim)
			last_claim = t->last_claim_at_us;
		if (t->last_error && !error)
			error = t->last_error;
	}
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "warm", json_object_new_int64(warm));
	json_object_object_add(o, "warm_pool_size", json_object_new_int64(target));
	json_object_object_add(o, "warm_ratio", json_object_new_double(target ? (double)warm / target : 0.0));
	json_object_object_add(o, "healthy", json_object_new_boolean(!error));
	if (error)
		json_object_object_add(o, "health_message", json_object_new_string(error));
	add_time(o, "last_scale_at", last_fill);
	add_time(o, "last_allocate_at", last_claim);
	return o;
}

static void admin_answered(const struct sandbox_result *res, void *arg)
{
	struct admin_req *a = arg;
	a->call = NULL;
	if (res->err.kind != CORE_OK) {
		admin_fail(a, &res->err);
		return;
	}
	if (a->route != ADMIN_POOL) {
		http_request_set_cancel(a->req, NULL, NULL);
		hermes_reply(a->req, rolling_json(a, hermes_slot(a, res->pool)));
		return;
	}
	a->pool = pool_json(res->pool);
	a->call = sandbox_count(a->h->core->svc, admin_counted, a);
}

static void admin_counted(const struct sandbox_result *res, void *arg)
{
	struct admin_req *a = arg;
	a->call = NULL;
	if (res->err.kind != CORE_OK) {
		admin_fail(a, &res->err);
		return;
	}
	const struct sandbox_counts *c = res->counts;
	const int64_t *n = c->by_status;
	struct json_object *o = a->pool, *warm;
	a->pool = NULL;
	json_object_object_get_ex(o, "warm", &warm);
	int64_t creating = n[SANDBOX_CREATING] + n[SANDBOX_STARTING] + c->pool_creating;
	int64_t live = creating + n[SANDBOX_RUNNING] + n[SANDBOX_STOPPING] + n[SANDBOX_STOPPED] +
		       n[SANDBOX_ERROR] + json_object_get_int64(warm);
	double used = c->max_total > 0 ? (double)(n[SANDBOX_RUNNING] + creating) / (double)c->max_total : 0.0;
	json_object_object_add(o, "total", json_object_new_int64(live));
	json_object_object_add(o, "active", json_object_new_int64(n[SANDBOX_RUNNING]));
	json_object_object_add(o, "creating", json_object_new_int64(creating));
	json_object_object_add(o, "deleting", json_object_new_int64(0)); /* a delete is done when answered */
	json_object_object_add(o, "deleted", json_object_new_int64(n[SANDBOX_DELETED] + n[SANDBOX_EXPIRED]));
	json_object_object_add(o, "max_total", json_object_new_int64(c->max_total));
	json_object_object_add(o, "utilization", json_object_new_double(used > 1.0 ? 1.0 : used));
	http_request_set_cancel(a->req, NULL, NULL);
	hermes_reply(a->req, o);
}
