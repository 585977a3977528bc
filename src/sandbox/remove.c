/* Making a sandbox go away: its container and workspace volume are removed by
 * name (so a half-made sandbox is cleaned up as well as a whole one), and the
 * delete operation marks the row first so that no other instance or create
 * resurrects it. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/log.h"
#include "docker/client.h"
#include "docker/engine.h"
#include "channel/channel.h"
#include "internal.h"

struct destroy_op {
	struct sandbox_service *svc;
	char id[37];
	char err[256];
	void (*done)(const char *err, void *arg);
	void *arg;
	struct event *again; /* the second try, once */
};

/* A volume still in use after its container was removed: a create that was
 * under way in dockerd when the instance that sent it died (the reconciler's
 * orphans) can make the container just after our removal. The whole removal
 * runs once more, a moment later. */
#define DESTROY_AGAIN_MS 500

static void destroy_container_removed(const char *err, void *arg);
static void destroy_volume_removed(const char *err, void *arg);
static void destroy_start(evutil_socket_t fd, short what, void *arg);

void sandbox_container_name(const char *id, char out[64])
{
	snprintf(out, 64, "sandbar-%s", id);
}

void sandbox_volume_name(const char *id, char out[64])
{
	snprintf(out, 64, "sandbar-ws-%s", id);
}

void sandbox_destroy(struct sandbox_service *svc, const char *id, void (*done)(const char *err, void *arg),
		     void *arg)
{
	struct destroy_op *op = calloc(1, sizeof(*op));
	CHECK(op != NULL);
	op->svc = svc;
	snprintf(op->id, sizeof(op->id), "%s", id);
	op->done = done;
	op->arg = arg;
	/* deleted, expired or failed: its agent channel goes with it */
	channels_drop(svc->channels, id);
	destroy_start(-1, 0, op);
}

static void destroy_start(evutil_socket_t fd, short what, void *arg)
{
	struct destroy_op *op = arg;
	op->err[0] = '\0';
	char name[64];
	sandbox_container_name(op->id, name);
	/* not cancellable: once started, removal runs to the end whoever asked */
	docker_container_remove(op->svc->docker, name, destroy_container_removed, op);
}

static void destroy_container_removed(const char *err, void *arg)
{
	struct destroy_op *op = arg;
	if (err)
		snprintf(op->err, sizeof(op->err), "container: %s", err);
	char name[64];
	sandbox_volume_name(op->id, name);
	docker_volume_remove(op->svc->docker, name, destroy_volume_removed, op);
}

static void destroy_volume_removed(const char *err, void *arg)
{
	struct destroy_op *op = arg;
	if (err && !op->err[0])
		snprintf(op->err, sizeof(op->err), "volume: %s", err);
	if (err && !op->again) {
		op->again = evtimer_new(op->svc->base, destroy_start, op);
		CHECK(op->again != NULL);
		struct timeval tv = { 0, DESTROY_AGAIN_MS * 1000 };
		evtimer_add(op->again, &tv);
		return;
	}
	if (op->again)
		event_free(op->again);
	if (op->err[0] && docker_health(op->svc->docker) == DOCKER_UNREACHABLE) {
		log_warn("sandbox=%s: %s; removed again once Docker answers", op->id, op->err);
		json_object_object_add(op->svc->leftovers, op->id, NULL);
	}
	if (op->done)
		op->done(op->err[0] ? op->err : NULL, op->arg);
	free(op);
}

static void leftover_removed(const char *err, void *arg)
{
	if (!err)
		log_info("a sandbox's leftovers are removed now that Docker answers");
}

void sandbox_leftovers_retry(struct sandbox_service *svc)
{
	struct json_object *ids = svc->leftovers;
	svc->leftovers = json_object_new_object(); /* a failure again notes it again */
	json_object_object_foreach(ids, id, v)
	{
		(void)v;
		sandbox_destroy(svc, id, leftover_removed, NULL);
	}
	json_object_put(ids);
}

/* ---- DELETE ---- */

/* Tries this many moves to `deleted` when another operation moved the
 * sandbox between our read and our write. */
#define DELETE_TRIES 3

struct delete_op {
	struct sandbox_call *call; /* NULL once the caller went away */
	struct sandbox_service *svc;
	struct registry_wait *wait;
	char id[37];
	char actor[64];
	int tries;
};

static void delete_read(struct sandbox_ref *ref, const struct core_error *err, void *arg);
static void delete_marked(const struct core_error *err, const struct sandbox *after, void *arg);
static void delete_destroyed(const char *err, void *arg);
static void delete_end(struct delete_op *op, const struct core_error *err);

struct sandbox_call *sandbox_delete(struct sandbox_service *svc, const char *id, const char *actor,
				    sandbox_result_fn cb, void *arg)
{
	struct sandbox_call *call = call_new(svc, cb, arg);
	struct delete_op *op = calloc(1, sizeof(*op));
	CHECK(op != NULL);
	op->svc = svc;
	op->call = call;
	call->owner = &op->call;
	snprintf(op->id, sizeof(op->id), "%s", id);
	snprintf(op->actor, sizeof(op->actor), "%s", actor ? actor : "delete");
	/* the op's, not the call's: a caller that goes away does not stop the delete */
	op->wait = registry_acquire(svc->reg, id, REGISTRY_FRESH | REGISTRY_LIVE, delete_read, op);
	return call;
}

static void delete_read(struct sandbox_ref *ref, const struct core_error *err, void *arg)
{
	struct delete_op *op = arg;
	op->wait = NULL;
	if (err) {
		struct core_error e = *err;
		if (e.code && strcmp(e.code, "sandbox_not_live") == 0)
			core_error_set(&e, CORE_NOT_FOUND, "not_found", "no live sandbox with this id");
		delete_end(op, &e);
		return;
	}
	struct core_error down;
	if (sandbox_docker_down(op->svc, &down)) { /* the row stays as it is: nothing acknowledged */
		sandbox_ref_put(ref);
		delete_end(op, &down);
		return;
	}
	struct sandbox_transition t = {
		.id = op->id,
		.from = sandbox_ref_get(ref)->status,
		.to = SANDBOX_DELETED,
		.actor = op->actor,
	};
	sandbox_ref_put(ref);
	op->tries++;
	op->wait = registry_transition(op->svc->reg, &t, delete_marked, op);
}

static void delete_marked(const struct core_error *err, const struct sandbox *after, void *arg)
{
	struct delete_op *op = arg;
	op->wait = NULL;
	if (err && err->kind == CORE_CONFLICT && after && !sandbox_status_final(after->status) &&
	    op->tries < DELETE_TRIES) {
		/* it moved between our read and our write: once more from where it is now */
		op->wait = registry_acquire(op->svc->reg, op->id, REGISTRY_FRESH | REGISTRY_LIVE, delete_read,
					    op);
		return;
	}
	if (err) {
		struct core_error e = *err;
		if (after && sandbox_status_final(after->status))
			core_error_set(&e, CORE_NOT_FOUND, "not_found", "no live sandbox with this id");
		delete_end(op, &e);
		return;
	}
	sandbox_destroy(op->svc, op->id, delete_destroyed, op);
}

static void delete_destroyed(const char *err, void *arg)
{
	struct delete_op *op = arg;
	if (err) {
		/* the row says deleted; the reconciler removes what is left at the next start */
		log_msg(LOG_LEVEL_WARN, NULL, "sandbox=%s delete: %s", op->id, err);
	}
	delete_end(op, NULL);
}

static void delete_end(struct delete_op *op, const struct core_error *err)
{
	if (op->call) {
		if (err) {
			call_fail(op->call, err);
		} else {
			struct sandbox_result r = { 0 };
			call_finish(op->call, &r);
		}
	}
	free(op);
}
