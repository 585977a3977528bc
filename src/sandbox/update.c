/* Changing a live sandbox: its settings (name, labels, env_vars merged, the
 * idle policy, the environment configured from outside) and its resources, which Docker applies to the
 * container at once and keeps across stop and start; a keepalive that holds its idle action off; an extension
 * of its hard lifetime. The row is written by the registry (one statement, the change told to the other
 * instances). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/config.h"
#include "core/log.h"
#include "docker/engine.h"
#include "internal.h"

struct update_op {
	struct sandbox_service *svc;
	struct sandbox_call *call; /* NULL once the caller went away */
	struct sandbox_settings set;
	struct json_object *labels, *env_vars, *spec, *configured; /* held for set */
	bool running_only;					   /* fail unless running */
	char *image;						   /* asked for */
	bool recreate;			 /* ... and not the one it runs: the container is made again */
	struct sandbox_call *recreating; /* until it is accepted */
	char *name;
	char id[37];
	char actor[64];
	struct registry_wait *wait;
	struct docker_call *dcall;
};

static void update_read(struct sandbox_ref *ref, const struct core_error *err, void *arg);
static void update_start(struct update_op *op);
static void update_recreating(const struct sandbox_result *res, void *arg);
static void update_docker_done(const char *err, void *arg);
static void update_write(struct update_op *op);
static void update_written(const struct core_error *err, const struct sandbox *after, void *arg);
static void update_end(struct update_op *op, const struct core_error *err, const struct sandbox *after);

static struct update_op *update_op_new(struct sandbox_service *svc, struct sandbox_call *call, const char *id,
				       const char *actor)
{
	struct update_op *op = calloc(1, sizeof(*op));
	CHECK(op != NULL);
	op->svc = svc;
	op->call = call;
	call->owner = &op->call;
	snprintf(op->id, sizeof(op->id), "%s", id);
	snprintf(op->actor, sizeof(op->actor), "%s", actor ? actor : "update");
	op->set.actor = op->actor;
	return op;
}

struct sandbox_call *sandbox_update(struct sandbox_service *svc, const char *id,
				    const struct sandbox_changes *c, const char *actor, sandbox_result_fn cb,
				    void *arg)
{
	struct sandbox_call *call = call_new(svc, cb, arg);
	struct core_error asks;
	if (sandbox_check_asks(svc->cfg, c->name, c->cpus, c->memory, &asks) != 0) {
		call_fail_later_with(call, &asks);
		return call;
	}
	if (c->image && !sandbox_image_allowed(svc, c->image)) {
		call_fail_later(call, CORE_INVALID, "image_not_allowed",
				"image '%s' is not allowed here (SANDBAR_ALLOWED_IMAGES, else the templates' "
				"images)",
				c->image);
		return call;
	}
	struct update_op *op = update_op_new(svc, call, id, actor);
	if (c->name) {
		op->name = strdup(c->name);
		CHECK(op->name != NULL);
	}
	op->labels = c->labels ? json_object_get(c->labels) : NULL;
	op->env_vars = c->env_vars ? json_object_get(c->env_vars) : NULL;
	op->set.name = op->name;
	op->set.labels = op->labels;
	op->set.env_vars = op->env_vars;
	op->set.cpu_millis = (int64_t)(c->cpus * 1000 + 0.5);
	op->set.memory_bytes = (int64_t)c->memory;
	op->set.idle_timeout_ms = c->idle_timeout_ms;
	op->set.idle_action = c->idle_action;
	op->set.set_idle_action = c->set_idle_action;
	op->set.auto_wake = c->auto_wake;
	op->set.is_private = c->is_private;
	op->set.set_private_ports = c->set_private_ports;
	op->set.private_ports = c->private_ports;
	op->spec = c->spec ? json_object_get(c->spec) : NULL;
	op->set.spec = op->spec;
	op->running_only = c->running_only;
	if (c->image) {
		op->image = strdup(c->image);
		CHECK(op->image != NULL);
		op->set.image = op->image;
		op->running_only = true; /* a recreate starts from a running sandbox */
	}
	update_start(op);
	return call;
}

struct sandbox_call *sandbox_configure(struct sandbox_service *svc, const char *id, struct json_object *env,
				       const char *actor, sandbox_result_fn cb, void *arg)
{
	struct sandbox_call *call = call_new(svc, cb, arg);
	struct update_op *op = update_op_new(svc, call, id, actor);
	op->configured = env ? json_object_get(env) : NULL;
	op->set.configured_env = op->configured;
	op->set.reapply_configured = !env;
	op->running_only = true;
	update_start(op);
	return call;
}

/* A check of the sandbox (its status, its container for new limits) first when needed. */
static void update_start(struct update_op *op)
{
	if (op->set.cpu_millis || op->set.memory_bytes || op->running_only)
		op->wait = registry_acquire(op->svc->reg, op->id, REGISTRY_FRESH | REGISTRY_LIVE, update_read,
					    op);
	else
		update_write(op);
}

struct sandbox_call *sandbox_keepalive(struct sandbox_service *svc, const char *id, int64_t ms,
				       const char *actor, sandbox_result_fn cb, void *arg)
{
	struct sandbox_call *call = call_new(svc, cb, arg);
	if (ms <= 0 || ms > svc->cfg->max_keepalive_ms) {
		call_fail_later(call, CORE_INVALID, "invalid_seconds",
				"a keepalive is 1 to %" PRId64 " seconds", svc->cfg->max_keepalive_ms / 1000);
		return call;
	}
	struct update_op *op = update_op_new(svc, call, id, actor);
	op->set.keepalive_ms = ms;
	update_write(op);
	return call;
}

struct sandbox_call *sandbox_extend(struct sandbox_service *svc, const char *id, int64_t ms,
				    const char *actor, sandbox_result_fn cb, void *arg)
{
	struct sandbox_call *call = call_new(svc, cb, arg);
	struct update_op *op = update_op_new(svc, call, id, actor);
	op->set.extend_ms = ms;
	update_write(op);
	return call;
}

static void update_read(struct sandbox_ref *ref, const struct core_error *err, void *arg)
{
	struct update_op *op = arg;
	op->wait = NULL;
	if (err) {
		update_end(op, err, NULL);
		return;
	}
	const struct sandbox *sb = sandbox_ref_get(ref);
	if (op->running_only && sb->status != SANDBOX_RUNNING) {
		struct core_error e;
		core_error_set(&e, CORE_CONFLICT, "invalid_state", "sandbox is %s, not running",
			       sandbox_status_name(sb->status));
		e.status = sandbox_status_name(sb->status);
		update_end(op, &e, sb);
		sandbox_ref_put(ref);
		return;
	}
	op->recreate = op->image && strcmp(op->image, sb->image) != 0;
	if (!op->set.cpu_millis && !op->set.memory_bytes) {
		sandbox_ref_put(ref);
		update_write(op);
		return;
	}
	if ((sb->status != SANDBOX_RUNNING && sb->status != SANDBOX_STOPPED) || !*sb->container_id) {
		struct core_error e;
		core_error_set(&e, CORE_CONFLICT, "invalid_state",
			       "sandbox is %s: cpu and memory change on a "
			       "running or stopped sandbox",
			       sandbox_status_name(sb->status));
		e.status = sandbox_status_name(sb->status);
		update_end(op, &e, sb);
		sandbox_ref_put(ref);
		return;
	}
	op->dcall = docker_container_update(op->svc->docker, sb->container_id, (uint64_t)op->set.memory_bytes,
					    op->set.cpu_millis * 1000000, update_docker_done, op);
	sandbox_ref_put(ref);
}

static void update_docker_done(const char *err, void *arg)
{
	struct update_op *op = arg;
	op->dcall = NULL;
	if (err) {
		struct core_error e;
		core_error_set(&e, CORE_UNAVAILABLE, "docker_unavailable", "Docker: %s", err);
		update_end(op, &e, NULL);
		return;
	}
	update_write(op);
}

static void update_write(struct update_op *op)
{
	op->wait = registry_settle(op->svc->reg, op->id, &op->set, update_written, op);
}

static void update_written(const struct core_error *err, const struct sandbox *after, void *arg)
{
	struct update_op *op = arg;
	op->wait = NULL;
	if (!err)
		reaper_note_sandbox(op->svc->reaper, after); /* its deadlines may have moved */
	if (!err && op->recreate) {
		/* the caller hears once the recreate is under way (the sandbox stopping) */
		op->recreating = sandbox_recreate(op->svc, op->id, op->actor, update_recreating, op);
		return;
	}
	update_end(op, err, after);
}

static void update_recreating(const struct sandbox_result *res, void *arg)
{
	struct update_op *op = arg;
	op->recreating = NULL;
	update_end(op, res->err.kind != CORE_OK ? &res->err : NULL, res->sb);
}

static void update_end(struct update_op *op, const struct core_error *err, const struct sandbox *after)
{
	if (op->call) {
		if (err) {
			call_fail(op->call, err);
		} else {
			struct sandbox_result r = { .sb = after };
			call_finish(op->call, &r);
		}
	}
	json_object_put(op->labels);
	json_object_put(op->env_vars);
	json_object_put(op->spec);
	json_object_put(op->configured);
	free(op->image);
	free(op->name);
	free(op);
}
