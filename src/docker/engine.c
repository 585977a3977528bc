/* Single-request Docker Engine operations (version, info, containers, volumes,
 * images): each is one docker_call_json whose answer is translated into the
 * operation's own callback; the context rides on the call and dies with it. */
#include "docker/engine.h"
#include "client_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

union engine_cb {
	docker_done_fn done;
	docker_version_fn version;
	docker_info_fn info;
	docker_created_fn created;
	docker_inspect_fn inspect;
	docker_list_fn list;
	docker_volume_list_fn volume_list;
	docker_exists_fn exists;
};

struct engine_ctx {
	union engine_cb cb;
	void *arg;
	int ok_status[3]; /* statuses that count as success besides 2xx */
};

static struct docker_call *engine_call(struct docker *d, const char *method, struct evbuffer *path,
				       struct json_object *body, docker_json_fn fn, union engine_cb cb,
				       void *arg, int ok1, int ok2);
static bool engine_ok(const struct engine_ctx *ctx, int status);
static void done_cb(int status, struct json_object *body, const char *err, void *arg);
static void version_cb(int status, struct json_object *body, const char *err, void *arg);
static void info_cb(int status, struct json_object *body, const char *err, void *arg);
static void created_cb(int status, struct json_object *body, const char *err, void *arg);
static void inspect_cb(int status, struct json_object *body, const char *err, void *arg);
static void list_cb(int status, struct json_object *body, const char *err, void *arg);
static void volume_list_cb(int status, struct json_object *body, const char *err, void *arg);
static void exists_cb(int status, struct json_object *body, const char *err, void *arg);
static struct evbuffer *label_filter_path(const char *base, const char *label);

/* path is consumed. Statuses ok1/ok2 (0: none) also count as success. */
static struct docker_call *engine_call(struct docker *d, const char *method, struct evbuffer *path,
				       struct json_object *body, docker_json_fn fn, union engine_cb cb,
				       void *arg, int ok1, int ok2)
{
	struct engine_ctx *ctx = calloc(1, sizeof(*ctx));
	struct docker_call *c = NULL;
	if (!ctx || !path)
		goto fail;
	ctx->cb = cb;
	ctx->arg = arg;
	ctx->ok_status[0] = ok1;
	ctx->ok_status[1] = ok2;
	evbuffer_add(path, "", 1);
	c = docker_call_json(d, method, (const char *)evbuffer_pullup(path, -1), body, fn, ctx);
	body = NULL;
	if (!c)
		goto fail;
	docker_call_set_ctx(c, ctx, free);
	evbuffer_free(path);
	return c;
fail:
	free(ctx);
	json_object_put(body);
	if (path)
		evbuffer_free(path);
	return NULL;
}

static bool engine_ok(const struct engine_ctx *ctx, int status)
{
	if (status >= 200 && status < 300)
		return true;
	for (size_t i = 0; i < ARRAY_LEN(ctx->ok_status); i++)
		if (ctx->ok_status[i] && ctx->ok_status[i] == status)
			return true;
	return false;
}

static struct evbuffer *label_filter_path(const char *base, const char *label)
{
	struct evbuffer *p = evbuffer_new();
	if (!p)
		return NULL;
	evbuffer_add_printf(p, "%s", base);
	if (label) {
		struct json_object *f = json_object_new_object();
		struct json_object *arr = json_object_new_array();
		json_object_array_add(arr, json_object_new_string(label));
		json_object_object_add(f, "label", arr);
		evbuffer_add_printf(p, "%sfilters=", strchr(base, '?') ? "&" : "?");
		docker_url_encode(p, json_object_to_json_string_ext(f, JSON_C_TO_STRING_PLAIN));
		json_object_put(f);
	}
	return p;
}

static void done_cb(int status, struct json_object *body, const char *err, void *arg)
{
	struct engine_ctx *ctx = arg;
	ctx->cb.done(engine_ok(ctx, status) ? NULL : (err ? err : "unexpected status"), ctx->arg);
}

struct docker_call *docker_version_check(struct docker *d, docker_version_fn cb, void *arg)
{
	struct evbuffer *p = evbuffer_new();
	if (p)
		evbuffer_add_printf(p, "/version");
	return engine_call(d, "GET", p, NULL, version_cb, (union engine_cb){ .version = cb }, arg, 0, 0);
}

static void version_cb(int status, struct json_object *body, const char *err, void *arg)
{
	struct engine_ctx *ctx = arg;
	struct json_object *v;
	if (!engine_ok(ctx, status)) {
		ctx->cb.version(NULL, err ? err : "unexpected status", ctx->arg);
		return;
	}
	if (!json_object_object_get_ex(body, "ApiVersion", &v) || !json_object_is_type(v, json_type_string)) {
		ctx->cb.version(NULL, "no ApiVersion in /version", ctx->arg);
		return;
	}
	const char *s = json_object_get_string(v);
	unsigned major = 0, minor = 0;
	if (sscanf(s, "%u.%u", &major, &minor) != 2 || major < 1 || (major == 1 && minor < 41)) {
		char msg[96];
		snprintf(msg, sizeof(msg), "Docker API %s is older than %s", s, DOCKER_API_VERSION);
		ctx->cb.version(s, msg, ctx->arg);
		return;
	}
	ctx->cb.version(s, NULL, ctx->arg);
}

struct docker_call *docker_info(struct docker *d, docker_info_fn cb, void *arg)
{
	struct evbuffer *p = evbuffer_new();
	if (p)
		evbuffer_add_printf(p, "/info");
	return engine_call(d, "GET", p, NULL, info_cb, (union engine_cb){ .info = cb }, arg, 0, 0);
}

static void info_cb(int status, struct json_object *body, const char *err, void *arg)
{
	struct engine_ctx *ctx = arg;
	struct json_object *mem;
	if (!engine_ok(ctx, status)) {
		ctx->cb.info(NULL, err ? err : "unexpected status", ctx->arg);
		return;
	}
	if (!json_object_object_get_ex(body, "MemTotal", &mem) || !json_object_is_type(mem, json_type_int) ||
	    json_object_get_int64(mem) <= 0) {
		ctx->cb.info(NULL, "no MemTotal in /info", ctx->arg);
		return;
	}
	struct docker_info info = { .mem_total = (uint64_t)json_object_get_int64(mem),
				    .default_runtime = "" };
	struct json_object *v;
	if (json_object_object_get_ex(body, "Runtimes", &v) && json_object_is_type(v, json_type_object))
		info.runtimes = v;
	if (json_object_object_get_ex(body, "DefaultRuntime", &v) && json_object_is_type(v, json_type_string))
		info.default_runtime = json_object_get_string(v);
	ctx->cb.info(&info, NULL, ctx->arg);
}

struct docker_call *docker_container_create(struct docker *d, const char *name, struct json_object *spec,
					    docker_created_fn cb, void *arg)
{
	struct evbuffer *p = evbuffer_new();
	if (p) {
		evbuffer_add_printf(p, "/containers/create");
		if (name && name[0]) {
			evbuffer_add_printf(p, "?name=");
			docker_url_encode(p, name);
		}
	}
	return engine_call(d, "POST", p, spec, created_cb, (union engine_cb){ .created = cb }, arg, 0, 0);
}

static void created_cb(int status, struct json_object *body, const char *err, void *arg)
{
	struct engine_ctx *ctx = arg;
	struct json_object *id;
	if (!engine_ok(ctx, status)) {
		ctx->cb.created(NULL, err ? err : "unexpected status", ctx->arg);
		return;
	}
	if (!json_object_object_get_ex(body, "Id", &id) || !json_object_is_type(id, json_type_string)) {
		ctx->cb.created(NULL, "no Id in the create response", ctx->arg);
		return;
	}
	ctx->cb.created(json_object_get_string(id), NULL, ctx->arg);
}

struct docker_call *docker_container_start(struct docker *d, const char *id, docker_done_fn cb, void *arg)
{
	struct evbuffer *p = evbuffer_new();
	if (p)
		evbuffer_add_printf(p, "/containers/%s/start", id);
	return engine_call(d, "POST", p, NULL, done_cb, (union engine_cb){ .done = cb }, arg, 304, 0);
}

struct docker_call *docker_container_stop(struct docker *d, const char *id, int timeout_s, docker_done_fn cb,
					  void *arg)
{
	struct evbuffer *p = evbuffer_new();
	if (p)
		evbuffer_add_printf(p, "/containers/%s/stop?t=%d", id, timeout_s);
	return engine_call(d, "POST", p, NULL, done_cb, (union engine_cb){ .done = cb }, arg, 304, 0);
}

struct docker_call *docker_container_update(struct docker *d, const char *id, uint64_t memory,
					    int64_t nano_cpus, docker_done_fn cb, void *arg)
{
	struct evbuffer *p = evbuffer_new();
	if (p)
		evbuffer_add_printf(p, "/containers/%s/update", id);
	struct json_object *body = json_object_new_object();
	if (memory) {
		json_object_object_add(body, "Memory", json_object_new_int64((int64_t)memory));
		json_object_object_add(body, "MemorySwap", json_object_new_int64((int64_t)memory));
	}
	if (nano_cpus > 0)
		json_object_object_add(body, "NanoCpus", json_object_new_int64(nano_cpus));
	return engine_call(d, "POST", p, body, done_cb, (union engine_cb){ .done = cb }, arg, 0, 0);
}

struct docker_call *docker_container_remove(struct docker *d, const char *id, docker_done_fn cb, void *arg)
{
	struct evbuffer *p = evbuffer_new();
	if (p)
		evbuffer_add_printf(p, "/containers/%s?force=1&v=1", id);
	return engine_call(d, "DELETE", p, NULL, done_cb, (union engine_cb){ .done = cb }, arg, 404, 0);
}

struct docker_call *docker_container_inspect(struct docker *d, const char *id, docker_inspect_fn cb,
					     void *arg)
{
	struct evbuffer *p = evbuffer_new();
	if (p)
		evbuffer_add_printf(p, "/containers/%s/json", id);
	return engine_call(d, "GET", p, NULL, inspect_cb, (union engine_cb){ .inspect = cb }, arg, 0, 0);
}

static void inspect_cb(int status, struct json_object *body, const char *err, void *arg)
{
	struct engine_ctx *ctx = arg;
	if (status == 404)
		ctx->cb.inspect(NULL, true, NULL, ctx->arg);
	else if (!engine_ok(ctx, status) || !json_object_is_type(body, json_type_object))
		ctx->cb.inspect(NULL, false, err ? err : "bad inspect response", ctx->arg);
	else
		ctx->cb.inspect(body, false, NULL, ctx->arg);
}

struct docker_call *docker_container_list(struct docker *d, const char *label, docker_list_fn cb, void *arg)
{
	return engine_call(d, "GET", label_filter_path("/containers/json?all=1", label), NULL, list_cb,
			   (union engine_cb){ .list = cb }, arg, 0, 0);
}

static void list_cb(int status, struct json_object *body, const char *err, void *arg)
{
	struct engine_ctx *ctx = arg;
	if (!engine_ok(ctx, status) || !json_object_is_type(body, json_type_array))
		ctx->cb.list(NULL, err ? err : "bad list response", ctx->arg);
	else
		ctx->cb.list(body, NULL, ctx->arg);
}

struct docker_call *docker_volume_remove(struct docker *d, const char *name, docker_done_fn cb, void *arg)
{
	struct evbuffer *p = evbuffer_new();
	if (p) {
		evbuffer_add_printf(p, "/volumes/");
		docker_url_encode(p, name);
	}
	return engine_call(d, "DELETE", p, NULL, done_cb, (union engine_cb){ .done = cb }, arg, 404, 0);
}

struct docker_call *docker_volume_list(struct docker *d, const char *label, docker_volume_list_fn cb,
				       void *arg)
{
	return engine_call(d, "GET", label_filter_path("/volumes", label), NULL, volume_list_cb,
			   (union engine_cb){ .volume_list = cb }, arg, 0, 0);
}

static void volume_list_cb(int status, struct json_object *body, const char *err, void *arg)
{
	struct engine_ctx *ctx = arg;
	struct json_object *vols = NULL;
	if (!engine_ok(ctx, status) || !json_object_is_type(body, json_type_object)) {
		ctx->cb.volume_list(NULL, err ? err : "bad volume list response", ctx->arg);
		return;
	}
	/* Docker sends "Volumes": null when there are none */
	json_object_object_get_ex(body, "Volumes", &vols);
	struct json_object *empty = NULL;
	if (!json_object_is_type(vols, json_type_array))
		vols = empty = json_object_new_array();
	ctx->cb.volume_list(vols, NULL, ctx->arg);
	json_object_put(empty);
}

struct docker_call *docker_image_exists(struct docker *d, const char *name, docker_exists_fn cb, void *arg)
{
	struct evbuffer *p = evbuffer_new();
	if (p)
		evbuffer_add_printf(p, "/images/%s/json", name);
	return engine_call(d, "GET", p, NULL, exists_cb, (union engine_cb){ .exists = cb }, arg, 0, 0);
}

static void exists_cb(int status, struct json_object *body, const char *err, void *arg)
{
	struct engine_ctx *ctx = arg;
	if (status == 404)
		ctx->cb.exists(false, NULL, ctx->arg);
	else if (engine_ok(ctx, status))
		ctx->cb.exists(true, NULL, ctx->arg);
	else
		ctx->cb.exists(false, err ? err : "unexpected status", ctx->arg);
}

/* ---- image inspect, archive upload (for installing the agent) ---- */

struct docker_call *docker_image_inspect(struct docker *d, const char *name, docker_inspect_fn cb, void *arg)
{
	struct evbuffer *p = evbuffer_new();
	if (p)
		evbuffer_add_printf(p, "/images/%s/json", name);
	return engine_call(d, "GET", p, NULL, inspect_cb, (union engine_cb){ .inspect = cb }, arg, 0, 0);
}

struct docker_call *docker_image_list(struct docker *d, const char *label, docker_list_fn cb, void *arg)
{
	return engine_call(d, "GET", label_filter_path("/images/json", label), NULL, list_cb,
			   (union engine_cb){ .list = cb }, arg, 0, 0);
}

struct docker_call *docker_image_remove(struct docker *d, const char *name, docker_done_fn cb, void *arg)
{
	struct evbuffer *p = evbuffer_new();
	if (p) {
		evbuffer_add_printf(p, "/images/");
		docker_url_encode(p, name);
	}
	return engine_call(d, "DELETE", p, NULL, done_cb, (union engine_cb){ .done = cb }, arg, 404, 0);
}

struct docker_call *docker_network_create(struct docker *d, const char *name, struct json_object *labels,
					  docker_done_fn cb, void *arg)
{
	struct json_object *body = json_object_new_object();
	json_object_object_add(body, "Name", json_object_new_string(name));
	json_object_object_add(body, "Driver", json_object_new_string("bridge"));
	json_object_object_add(body, "CheckDuplicate", json_object_new_boolean(true));
	json_object_object_add(body, "Labels", labels);
	struct json_object *opts = json_object_new_object();
	json_object_object_add(opts, "com.docker.network.bridge.enable_icc", json_object_new_string("false"));
	json_object_object_add(body, "Options", opts);
	struct evbuffer *p = evbuffer_new();
	if (p)
		evbuffer_add_printf(p, "/networks/create");
	return engine_call(d, "POST", p, body, done_cb, (union engine_cb){ .done = cb }, arg, 409, 0);
}
