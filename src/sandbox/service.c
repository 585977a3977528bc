/* The sandbox service object (its start: the reconciler, then the reaper and
 * Docker's event stream), the pending-call plumbing every operation shares,
 * and the operations the registry answers alone: get, list, heartbeat. */
#include "core/clock.h"
#include "sandbox/service.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "channel/channel.h"
#include "docker/client.h"
#include "core/config.h"
#include "core/log.h"
#include "internal.h"
#include "sandbox/template.h"

static void deferred_fire(evutil_socket_t fd, short what, void *arg);
static void got(struct sandbox_ref *ref, const struct core_error *err, void *arg);
static void listed(const struct core_error *err, const struct sandbox *const *list, size_t n, size_t total,
		   void *arg);
static void beaten(const struct core_error *err, const struct sandbox *after, void *arg);
static void start_reconciled(int rc, void *arg);

/* SIGTERM's wait for background work. */
struct service_drain {
	void (*done)(void *arg);
	void *arg;
	struct event *timer;
};

struct start_ctx {
	struct sandbox_service *svc;
	void (*done)(int rc, void *arg);
	void *arg;
};

struct sandbox_service *sandbox_service_new(struct event_base *base, const struct config *cfg,
					    struct registry *reg, struct docker *docker,
					    struct template_set *templates, const void *agent_bin,
					    size_t agent_len)
{
	struct sandbox_service *svc = calloc(1, sizeof(*svc));
	CHECK(svc != NULL);
	svc->base = base;
	svc->cfg = cfg;
	svc->reg = reg;
	svc->pg = registry_pg(reg);
	svc->docker = docker;
	svc->templates = templates;
	svc->channels = registry_channels(reg);
	svc->agent_bin = agent_bin;
	svc->agent_len = agent_len;
	snprintf(svc->cluster, sizeof(svc->cluster), "%s", cfg->cluster);
	snprintf(svc->instance, sizeof(svc->instance), "%s", cfg->instance_id);
	char err[256];
	if (sandbox_runtimes_parse(cfg->runtimes, &svc->runtimes, err, sizeof(err)) != 0) {
		/* sandbard checked it before: runc alone is what a bad value leaves */
		log_error("%s", err);
		CHECK(sandbox_runtimes_parse(NULL, &svc->runtimes, err, sizeof(err)) == 0);
	}
	svc->reaper = reaper_new(svc);
	svc->admission = admission_new(svc);
	svc->events = events_watcher_new(svc);
	svc->leftovers = json_object_new_object();
	svc->builds = image_builds_new(svc);
	svc->pool = pool_new(svc);
	svc->wakes = wakes_new(svc);
	return svc;
}

void sandbox_service_free(struct sandbox_service *svc)
{
	if (!svc)
		return;
	if (svc->drain) {
		event_free(svc->drain->timer);
		free(svc->drain);
	}
	wakes_free(svc, svc->wakes);
	pool_free(svc->pool);
	reaper_free(svc->reaper);
	admission_free(svc->admission);
	events_watcher_free(svc->events);
	image_builds_free(svc->builds);
	json_object_put(svc->leftovers); /* the next start's reconciler removes them */
	free(svc);
}

void sandbox_service_start(struct sandbox_service *svc, void (*done)(int rc, void *arg), void *arg)
{
	struct start_ctx *ctx = calloc(1, sizeof(*ctx));
	CHECK(ctx != NULL);
	ctx->svc = svc;
	ctx->done = done;
	ctx->arg = arg;
	svc->started_ns = clock_ns(CLOCK_REALTIME);
	reconcile_run(svc, start_reconciled, ctx);
}

static void prebuilt(const char *err, const struct run_image *img, void *arg)
{
	const struct template *t = arg;
	if (err)
		log_warn("template %s: image not ready: %s", t->name, err);
	else
		log_info("template %s: image %s ready", t->name, template_image(t));
}

static void start_reconciled(int rc, void *arg)
{
	struct start_ctx *ctx = arg;
	reaper_start(ctx->svc->reaper);
	image_builds_prune(ctx->svc->builds);
	pool_start(ctx->svc->pool);
	/* from before the reconciler looked: what changed since is replayed */
	events_watcher_start(ctx->svc->events, ctx->svc->started_ns);
	if (ctx->svc->cfg->prebuild_templates) {
		/* the first create of each template then finds its image ready */
		const struct template *t;
		for (size_t i = 0; (t = template_set_at(ctx->svc->templates, i)) != NULL; i++)
			image_ensure(ctx->svc, t, NULL, prebuilt, (void *)t);
	}
	if (ctx->done)
		ctx->done(rc, ctx->arg);
	free(ctx);
}

/* What a create or an update asks for, against the server's maxima. */
int sandbox_check_asks(const struct config *cfg, const char *name, double cpus, uint64_t memory,
		       struct core_error *e)
{
	if (name && (!*name || strlen(name) > SANDBOX_NAME_MAX)) {
		core_error_set(e, CORE_INVALID, "invalid_name", "name must be 1 to %d bytes",
			       SANDBOX_NAME_MAX);
		return -1;
	}
	if (cpus < 0 || cpus > cfg->max_cpu) {
		core_error_set(e, CORE_INVALID, "invalid_cpu",
			       "cpu must be more than 0 and at most %g (SANDBAR_MAX_CPU)", cfg->max_cpu);
		return -1;
	}
	if (memory && (memory < (6u << 20) || memory > cfg->max_memory)) {
		core_error_set(e, CORE_INVALID, "invalid_memory",
			       "memory must be 6 MiB to %" PRIu64 " bytes (SANDBAR_MAX_MEMORY)",
			       cfg->max_memory);
		return -1;
	}
	return 0;
}

/* Labels are names a selector can hold (Kubernetes' characters) and short strings. */
#define LABEL_KEY_MAX	63
#define LABEL_VALUE_MAX 256
#define LABELS_MAX	64

int sandbox_labels_check(struct json_object *v, struct core_error *e)
{
	if (!json_object_is_type(v, json_type_object) || json_object_object_length(v) > LABELS_MAX)
		return core_error_invalid(e, "invalid_labels",
					  "'labels' must be an object of at most %d strings", LABELS_MAX);
	json_object_object_foreach(v, key, val)
	{
		size_t n = strlen(key);
		if (n == 0 || n > LABEL_KEY_MAX ||
		    strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/") != n)
			return core_error_invalid(e, "invalid_labels",
						  "label name '%s' must be 1 to %d of [A-Za-z0-9._/-]", key,
						  LABEL_KEY_MAX);
		if (!json_object_is_type(val, json_type_string) ||
		    json_object_get_string_len(val) > LABEL_VALUE_MAX)
			return core_error_invalid(e, "invalid_labels",
						  "label '%s' must be a string of at most %d bytes", key,
						  LABEL_VALUE_MAX);
		if (strlen(json_object_get_string(val)) != (size_t)json_object_get_string_len(val))
			return core_error_invalid(e, "invalid_labels", "label '%s' contains a NUL byte", key);
	}
	return 0;
}

bool sandbox_image_allowed(const struct sandbox_service *svc, const char *image)
{
	const char *list = svc->cfg->allowed_images;
	size_t len = strlen(image);
	if (len == 0)
		return false;
	if (!list) {
		const struct template *t;
		for (size_t i = 0; (t = template_set_at(svc->templates, i)) != NULL; i++)
			if (strcmp(template_image(t), image) == 0)
				return true;
		return false;
	}
	for (const char *p = list; *p;) {
		p += strspn(p, " ,");
		size_t n = strcspn(p, ",");
		size_t k = n;
		while (k > 0 && p[k - 1] == ' ')
			k--;
		if (k == len && strncmp(p, image, len) == 0)
			return true;
		p += n;
	}
	return false;
}

const char *sandbox_template_image(const struct sandbox_service *svc, const char *template_name)
{
	const struct template *t = template_set_find(svc->templates, template_name);
	return t ? template_image(t) : NULL;
}

/* ---- pending calls ---- */

struct sandbox_call *call_new(struct sandbox_service *svc, sandbox_result_fn cb, void *arg)
{
	struct sandbox_call *call = calloc(1, sizeof(*call));
	CHECK(call != NULL);
	call->svc = svc;
	call->cb = cb;
	call->arg = arg;
	return call;
}

void call_finish(struct sandbox_call *call, const struct sandbox_result *res)
{
	if (call->owner)
		*call->owner = NULL;
	if (call->deferred)
		event_free(call->deferred);
	sandbox_result_fn cb = call->cb;
	void *arg = call->arg;
	free(call);
	if (cb)
		cb(res, arg);
}

void sandbox_call_cancel(struct sandbox_call *call)
{
	if (!call)
		return;
	registry_wait_cancel(call->wait);
	if (call->owner)
		*call->owner = NULL;
	if (call->deferred)
		event_free(call->deferred);
	free(call);
}

void call_fail(struct sandbox_call *call, const struct core_error *err)
{
	struct sandbox_result res = { .err = *err };
	call_finish(call, &res);
}

void call_fail_later_with(struct sandbox_call *call, const struct core_error *err)
{
	call->deferred_err = *err;
	call->deferred = evtimer_new(call->svc->base, deferred_fire, call);
	CHECK(call->deferred != NULL);
	event_active(call->deferred, EV_TIMEOUT, 0);
}

bool sandbox_docker_down(const struct sandbox_service *svc, struct core_error *e)
{
	if (docker_health(svc->docker) != DOCKER_UNREACHABLE)
		return false;
	core_error_set(e, CORE_UNAVAILABLE, "docker_unavailable", "Docker is unreachable; try again later");
	return true;
}

void call_fail_later(struct sandbox_call *call, enum core_err err, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	core_error_vset(&call->deferred_err, err, code, fmt, ap);
	va_end(ap);
	call->deferred = evtimer_new(call->svc->base, deferred_fire, call);
	CHECK(call->deferred != NULL);
	event_active(call->deferred, EV_TIMEOUT, 0);
}

static void deferred_fire(evutil_socket_t fd, short what, void *arg)
{
	struct sandbox_call *call = arg;
	struct core_error err = call->deferred_err;
	call_fail(call, &err);
}

/* ---- get ---- */

void call_reply_sandbox(struct sandbox_call *call, const char *id, bool pending)
{
	call->pending = pending;
	call->wait = registry_acquire(call->svc->reg, id, REGISTRY_FRESH, got, call);
}

struct sandbox_call *sandbox_get(struct sandbox_service *svc, const char *id, sandbox_result_fn cb, void *arg)
{
	struct sandbox_call *call = call_new(svc, cb, arg);
	call->wait = registry_acquire(svc->reg, id, 0, got, call);
	return call;
}

static void got(struct sandbox_ref *ref, const struct core_error *err, void *arg)
{
	struct sandbox_call *call = arg;
	call->wait = NULL;
	if (err) {
		call_fail(call, err);
		return;
	}
	struct sandbox_result r = { .sb = sandbox_ref_get(ref), .pending = call->pending };
	call_finish(call, &r);
	sandbox_ref_put(ref);
}

/* ---- list ---- */

struct sandbox_call *sandbox_list(struct sandbox_service *svc, const struct sandbox_filter *f,
				  sandbox_result_fn cb, void *arg)
{
	struct sandbox_call *call = call_new(svc, cb, arg);
	call->wait = registry_list(svc->reg, f, listed, call);
	return call;
}

static void listed(const struct core_error *err, const struct sandbox *const *list, size_t n, size_t total,
		   void *arg)
{
	struct sandbox_call *call = arg;
	call->wait = NULL;
	if (err) {
		call_fail(call, err);
		return;
	}
	struct sandbox_result r = { .list = list, .n = n, .total = total };
	call_finish(call, &r);
}

/* ---- heartbeat ---- */

struct sandbox_call *sandbox_heartbeat(struct sandbox_service *svc, const char *id, sandbox_result_fn cb,
				       void *arg)
{
	struct sandbox_call *call = call_new(svc, cb, arg);
	call->wait = registry_heartbeat(svc->reg, id, beaten, call);
	return call;
}

static void beaten(const struct core_error *err, const struct sandbox *after, void *arg)
{
	struct sandbox_call *call = arg;
	call->wait = NULL;
	if (err) {
		call_fail(call, err);
		return;
	}
	reaper_note_sandbox(call->svc->reaper, after);
	struct sandbox_result r = { 0 };
	call_finish(call, &r);
}

/* ---- draining (SIGTERM) ---- */

static void drain_finish(struct sandbox_service *svc)
{
	struct service_drain *d = svc->drain;
	svc->drain = NULL;
	event_free(d->timer);
	void (*done)(void *) = d->done;
	void *arg = d->arg;
	free(d);
	done(arg);
}

static void drain_timed_out(evutil_socket_t fd, short what, void *arg)
{
	struct sandbox_service *svc = arg;
	(void)fd;
	(void)what;
	log_warn("shutdown: background work still going (%d create(s)%s)", svc->creates,
		 pool_idle(svc->pool) ? "" : ", the warm pool's");
	drain_finish(svc);
}

void service_drain_check(struct sandbox_service *svc)
{
	if (svc->drain && svc->creates == 0 && pool_idle(svc->pool))
		drain_finish(svc);
}

void sandbox_service_drain(struct sandbox_service *svc, int64_t grace_ms, void (*done)(void *arg), void *arg)
{
	struct service_drain *d = calloc(1, sizeof(*d));
	CHECK(d != NULL);
	d->done = done;
	d->arg = arg;
	d->timer = evtimer_new(svc->base, drain_timed_out, svc);
	CHECK(d->timer != NULL);
	svc->drain = d;
	pool_drain(svc->pool);
	struct timeval tv = { .tv_sec = (time_t)(grace_ms / 1000),
			      .tv_usec = (suseconds_t)(grace_ms % 1000) * 1000 };
	evtimer_add(d->timer, &tv);
	service_drain_check(svc);
}
