/* Making a sandbox go away: its container and workspace volume are removed by
 * name (so a half-made sandbox is cleaned up as well as a whole one), and the
 * delete operation marks the row first so that no other instance or create
 * resurrects it. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
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
static void delete_marked(enum pg_error err, PGresult *res, const char *message, void *arg);
static void delete_destroyed(const char *err, void *arg);

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
	if (svc->channels)
		channels_drop(svc->channels, id);
	if (svc->gone)
		svc->gone(id, svc->gone_arg);
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
	if (op->done)
		op->done(op->err[0] ? op->err : NULL, op->arg);
	free(op);
}

/* ---- DELETE ---- */

struct delete_op {
	struct sandbox_call *call; /* NULL once the caller went away */
	struct sandbox_service *svc;
	char id[37];
};

struct sandbox_call *sandbox_delete(struct sandbox_service *svc, const char *id, sandbox_result_fn cb,
				    void *arg)
{
	struct sandbox_call *call = call_new(svc, cb, arg);
	if (!sandbox_id_valid(id)) {
		call_fail_later(call, CORE_INVALID, "invalid_id", "sandbox id must be a UUID");
		return call;
	}
	struct delete_op *op = calloc(1, sizeof(*op));
	CHECK(op != NULL);
	op->svc = svc;
	op->call = call;
	call->owner = &op->call;
	snprintf(op->id, sizeof(op->id), "%s", id);
	static const char sql[] = "UPDATE sandboxes SET status = 'deleted', deleted_at = now() "
				  "WHERE id = $1 AND cluster = $2 AND deleted_at IS NULL RETURNING id";
	const char *params[] = { id, svc->cluster };
	/* the query is the op's, not the call's: a caller that goes away does not stop the delete */
	pg_query_send(svc->pg, sql, 2, params, delete_marked, op);
	return call;
}

static void delete_marked(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct delete_op *op = arg;
	struct sandbox_result r = { 0 };
	if (err != PG_OK || PQntuples(res) == 0) {
		if (err != PG_OK)
			pg_core_error(&r.err, err, message);
		else
			core_error_set(&r.err, CORE_NOT_FOUND, "not_found", "no live sandbox with this id");
		if (op->call)
			call_finish(op->call, &r);
		free(op);
		return;
	}
	log_msg(LOG_LEVEL_INFO, NULL, "sandbox=%s deleted", op->id);
	sandbox_destroy(op->svc, op->id, delete_destroyed, op);
}

static void delete_destroyed(const char *err, void *arg)
{
	struct delete_op *op = arg;
	struct sandbox_result r = { 0 };
	if (err) {
		/* the row says deleted; the reconciler removes what is left at the next start */
		log_msg(LOG_LEVEL_WARN, NULL, "sandbox=%s delete: %s", op->id, err);
	}
	if (op->call)
		call_finish(op->call, &r);
	free(op);
}
