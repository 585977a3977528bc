/* The sandbox service object, the pending-call plumbing every operation
 * shares, and the operations that are a single query: get, list, heartbeat. */
#include "sandbox/service.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "internal.h"
#include "sandbox/template.h"

static void deferred_fire(evutil_socket_t fd, short what, void *arg);
static void doc_done(enum pg_error err, PGresult *res, const char *message, void *arg);
static void list_done(enum pg_error err, PGresult *res, const char *message, void *arg);
static void heartbeat_done(enum pg_error err, PGresult *res, const char *message, void *arg);
static void start_reconciled(int rc, void *arg);

struct start_ctx {
	struct sandbox_service *svc;
	void (*done)(int rc, void *arg);
	void *arg;
};

struct sandbox_service *sandbox_service_new(struct event_base *base, const struct config *cfg,
					    struct pg_pool *pg, struct docker *docker,
					    struct template_set *templates, struct channels *channels,
					    const void *agent_bin, size_t agent_len)
{
	struct sandbox_service *svc = calloc(1, sizeof(*svc));
	CHECK(svc != NULL);
	svc->base = base;
	svc->cfg = cfg;
	svc->pg = pg;
	svc->docker = docker;
	svc->templates = templates;
	svc->channels = channels;
	svc->agent_bin = agent_bin;
	svc->agent_len = agent_len;
	snprintf(svc->cluster, sizeof(svc->cluster), "%s", cfg->cluster);
	snprintf(svc->instance, sizeof(svc->instance), "%s", cfg->instance_id);
	snprintf(svc->idle_ms, sizeof(svc->idle_ms), "%lld", (long long)cfg->sandbox_idle_timeout_ms);
	svc->reaper = reaper_new(svc);
	svc->builds = image_builds_new(svc);
	return svc;
}

void sandbox_service_on_gone(struct sandbox_service *svc, void (*gone)(const char *id, void *arg), void *arg)
{
	svc->gone = gone;
	svc->gone_arg = arg;
}

void sandbox_service_free(struct sandbox_service *svc)
{
	if (!svc)
		return;
	reaper_free(svc->reaper);
	image_builds_free(svc->builds);
	free(svc);
}

struct docker *sandbox_service_docker(const struct sandbox_service *svc)
{
	return svc->docker;
}

struct pg_pool *sandbox_service_pg(const struct sandbox_service *svc)
{
	return svc->pg;
}

struct channels *sandbox_service_channels(const struct sandbox_service *svc)
{
	return svc->channels;
}

void sandbox_service_start(struct sandbox_service *svc, void (*done)(int rc, void *arg), void *arg)
{
	struct start_ctx *ctx = calloc(1, sizeof(*ctx));
	CHECK(ctx != NULL);
	ctx->svc = svc;
	ctx->done = done;
	ctx->arg = arg;
	reconcile_run(svc, start_reconciled, ctx);
}

static void prebuilt(const char *err, void *arg)
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
	if (ctx->svc->cfg->prebuild_templates) {
		/* the first create of each template then finds its image ready */
		const struct template *t;
		for (size_t i = 0; (t = template_set_at(ctx->svc->templates, i)) != NULL; i++)
			image_ensure(ctx->svc, t, prebuilt, (void *)t);
	}
	if (ctx->done)
		ctx->done(rc, ctx->arg);
	free(ctx);
}

bool sandbox_id_valid(const char *id)
{
	static const int dash[] = { 8, 13, 18, 23 };
	if (!id || strlen(id) != 36)
		return false;
	for (int i = 0, d = 0; i < 36; i++) {
		if (d < 4 && i == dash[d]) {
			if (id[i] != '-')
				return false;
			d++;
		} else if (!isxdigit((unsigned char)id[i])) {
			return false;
		}
	}
	return true;
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
	if (call->query)
		pg_query_cancel(call->query);
	if (call->owner)
		*call->owner = NULL;
	if (call->deferred)
		event_free(call->deferred);
	free(call);
}

void call_fail(struct sandbox_call *call, enum core_err err, const char *code, const char *message)
{
	struct sandbox_result res = { 0 };
	core_error_set(&res.err, err, code, "%s", message);
	call_finish(call, &res);
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
	struct sandbox_result res = { .err = call->deferred_err };
	call_finish(call, &res);
}

/* ---- get ---- */

static const char sql_doc[] = "SELECT doc FROM sandbox_docs WHERE id = $1 AND cluster = $2";

void call_reply_doc(struct sandbox_call *call, const char *id, bool pending)
{
	const char *params[] = { id, call->svc->cluster };
	call->pending = pending;
	call->query = pg_query_send(call->svc->pg, sql_doc, 2, params, doc_done, call);
}

static void doc_done(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct sandbox_call *call = arg;
	call->query = NULL;
	struct sandbox_result r = { .pending = call->pending };
	if (err != PG_OK) {
		pg_core_error(&r.err, err, message);
	} else if (PQntuples(res) == 0) {
		core_error_set(&r.err, CORE_NOT_FOUND, "not_found", "no sandbox with this id");
	} else {
		r.doc = PQgetvalue(res, 0, 0);
		r.doc_len = (size_t)PQgetlength(res, 0, 0);
	}
	call_finish(call, &r);
}

struct sandbox_call *sandbox_get(struct sandbox_service *svc, const char *id, sandbox_result_fn cb, void *arg)
{
	struct sandbox_call *call = call_new(svc, cb, arg);
	if (!sandbox_id_valid(id)) {
		call_fail_later(call, CORE_INVALID, "invalid_id", "sandbox id must be a UUID");
		return call;
	}
	call_reply_doc(call, id, false);
	return call;
}

/* ---- list ---- */

static const char sql_list[] =
	"SELECT coalesce(json_agg(doc ORDER BY created_at DESC, id), '[]'::json) FROM sandbox_docs "
	"WHERE cluster = $1 AND deleted_at IS NULL";

struct sandbox_call *sandbox_list(struct sandbox_service *svc, sandbox_result_fn cb, void *arg)
{
	struct sandbox_call *call = call_new(svc, cb, arg);
	const char *params[] = { svc->cluster };
	call->query = pg_query_send(svc->pg, sql_list, 1, params, list_done, call);
	return call;
}

static void list_done(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct sandbox_call *call = arg;
	call->query = NULL;
	struct sandbox_result r = { 0 };
	if (err != PG_OK) {
		pg_core_error(&r.err, err, message);
	} else {
		r.doc = PQgetvalue(res, 0, 0);
		r.doc_len = (size_t)PQgetlength(res, 0, 0);
	}
	call_finish(call, &r);
}

/* ---- heartbeat ---- */

/* Pushes the expiry of a live sandbox out; tells apart unknown from not live. */
static const char sql_heartbeat[] =
	"WITH u AS (UPDATE sandboxes SET last_activity = now(), "
	"  expires_at = now() + $3::bigint * interval '1 millisecond' "
	"  WHERE id = $1 AND cluster = $2 AND status IN ('creating', 'running', 'stopped') RETURNING status) "
	"SELECT (SELECT status FROM u), (SELECT status FROM sandboxes WHERE id = $1 AND cluster = $2)";

struct sandbox_call *sandbox_heartbeat(struct sandbox_service *svc, const char *id, sandbox_result_fn cb,
				       void *arg)
{
	struct sandbox_call *call = call_new(svc, cb, arg);
	if (!sandbox_id_valid(id)) {
		call_fail_later(call, CORE_INVALID, "invalid_id", "sandbox id must be a UUID");
		return call;
	}
	const char *params[] = { id, svc->cluster, svc->idle_ms };
	call->query = pg_query_send(svc->pg, sql_heartbeat, 3, params, heartbeat_done, call);
	return call;
}

static void heartbeat_done(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct sandbox_call *call = arg;
	call->query = NULL;
	struct sandbox_result r = { 0 };
	if (err != PG_OK) {
		pg_core_error(&r.err, err, message);
	} else if (PQgetisnull(res, 0, 1)) {
		core_error_set(&r.err, CORE_NOT_FOUND, "not_found", "no sandbox with this id");
	} else if (PQgetisnull(res, 0, 0)) {
		core_error_set(&r.err, CORE_CONFLICT, "sandbox_not_live", "sandbox is %s",
			       PQgetvalue(res, 0, 1));
	} else {
		reaper_note_deadline(call->svc->reaper, call->svc->cfg->sandbox_idle_timeout_ms);
	}
	call_finish(call, &r);
}
