/* Start-up reconciliation: converge Docker to the database. Our own rows
 * stuck in `creating` (this instance died mid-create) become `error`;
 * `running` rows take their container's state (stopped, or `error` when it is
 * gone); warm pool members whose container does not run fail (and go); a stop or start that was under way
 * (`stopping`, `starting`) and that nobody has moved for a create timeout (another instance sharing the
 * database may be carrying it out) is settled as stopped, its container stopped (Docker may still be
 * carrying out the request), so nothing stays half-way; labelled containers and volumes with no live row,
 * made before this service started and still without one right before their removal, are removed. Every
 * status moves through the registry. Only this cluster's objects (label sandbar.cluster) are touched. */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
#include "core/log.h"
#include "docker/engine.h"
#include "internal.h"

/* What a pass does: everything (start-up), or the lost rows alone (the event
 * stream broke). */
enum reconcile_scope { RECONCILE_ALL, RECONCILE_LOST_ONLY };

enum reconcile_state {
	RECONCILE_STALE_READ,	 /* our `creating` rows */
	RECONCILE_STALE_CREATES, /* ... -> error */
	RECONCILE_LIVE_ROWS,	 /* which sandboxes should exist */
	RECONCILE_CONTAINERS,	 /* what Docker has */
	RECONCILE_LOST_ROWS,	 /* running, starting, stopping rows -> their container's state */
	RECONCILE_VOLUMES,	 /* volumes without a live row */
	RECONCILE_RECHECK,	 /* ... still without one (another instance may have made it since) */
	RECONCILE_REMOVING,	 /* orphans being removed */
	RECONCILE_DONE,
	RECONCILE_STATE_MAX
};

struct reconcile {
	struct sandbox_service *svc;
	enum reconcile_state state;
	void (*done)(int rc, void *arg);
	void *arg;
	struct json_object *live;    /* id -> status of rows that should have a container */
	struct json_object *settle;  /* ids of half-way rows nobody has moved for a create timeout */
	struct json_object *running; /* ids of live rows whose container runs */
	struct json_object *stopped; /* ids of live rows whose container exists, stopped */
	struct json_object *orphans; /* ids whose Docker objects must go */
	int removing;
	int moving; /* transitions in flight */
	int stale, lost, removed;
	int rc;
	enum reconcile_scope scope;
};

/* A stop or start that was under way, its container now stopped. */
struct half {
	struct reconcile *rc;
	enum sandbox_status from;
	char id[37];
};

static void rc_set_state(struct reconcile *rc, enum reconcile_state next);
static void rc_stale_read(enum pg_error err, PGresult *res, const char *message, void *arg);
static void rc_stale_moved(const struct core_error *err, const struct sandbox *after, void *arg);
static void rc_stale_done(struct reconcile *rc);
static void rc_live_done(enum pg_error err, PGresult *res, const char *message, void *arg);
static void rc_containers_done(struct json_object *list, const char *err, void *arg);
static void rc_lost_moved(const struct core_error *err, const struct sandbox *after, void *arg);
static void rc_half_stopped(const char *err, void *arg);
static void rc_lost_done(struct reconcile *rc);
static void rc_volumes_done(struct json_object *volumes, const char *err, void *arg);
static void rc_rechecked(enum pg_error err, PGresult *res, const char *message, void *arg);
static bool rc_young(const struct reconcile *rc, struct json_object *obj);
static void rc_removed(const char *err, void *arg);
static void rc_finish(struct reconcile *rc);
static void rc_give_up(struct reconcile *rc, const char *why);
static const char *label_of(struct json_object *obj, const char *name);

static void rc_set_state(struct reconcile *rc, enum reconcile_state next)
{
	/* strictly forward; any step may give up and finish */
	CHECK(next < RECONCILE_STATE_MAX && (next == rc->state + 1 || next == RECONCILE_DONE));
	rc->state = next;
}

static struct reconcile *rc_new(struct sandbox_service *svc, void (*done)(int rc, void *arg), void *arg)
{
	struct reconcile *rc = calloc(1, sizeof(*rc));
	CHECK(rc != NULL);
	rc->svc = svc;
	rc->done = done;
	rc->arg = arg;
	rc->live = json_object_new_object();
	rc->settle = json_object_new_object();
	rc->running = json_object_new_object();
	rc->stopped = json_object_new_object();
	rc->orphans = json_object_new_object();
	return rc;
}

void reconcile_run(struct sandbox_service *svc, void (*done)(int rc, void *arg), void *arg)
{
	struct reconcile *rc = rc_new(svc, done, arg);
	rc->state = RECONCILE_STALE_READ;
	static const char sql[] = "SELECT id FROM sandboxes WHERE status = 'creating' AND cluster = $1 "
				  "AND owner_instance = $2";
	const char *params[] = { svc->cluster, svc->instance };
	pg_query_send(svc->pg, sql, 2, params, rc_stale_read, rc);
}

struct reconcile *reconcile_lost_rows(struct sandbox_service *svc, void (*done)(int rc, void *arg), void *arg)
{
	struct reconcile *rc = rc_new(svc, done, arg);
	rc->scope = RECONCILE_LOST_ONLY;
	rc->state = RECONCILE_STALE_CREATES; /* creates under way are no one's stale ones */
	rc_stale_done(rc);
	return rc;
}

void reconcile_free_at_exit(struct reconcile *rc)
{
	if (!rc)
		return;
	rc->done = NULL;
	rc->rc = -1;
	rc_finish(rc);
}

static void rc_stale_read(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct reconcile *rc = arg;
	if (err != PG_OK) {
		rc_give_up(rc, message ? message : "database unavailable");
		return;
	}
	rc_set_state(rc, RECONCILE_STALE_CREATES);
	rc->moving = 1;
	for (int i = 0; i < PQntuples(res); i++) {
		struct sandbox_transition t = {
			.id = PQgetvalue(res, i, 0),
			.from = SANDBOX_CREATING,
			.to = SANDBOX_ERROR,
			.reason = "the control plane restarted while the sandbox was being created",
			.actor = "reconciler",
		};
		rc->moving++;
		registry_transition(rc->svc->reg, &t, rc_stale_moved, rc);
	}
	rc_stale_moved(NULL, NULL, rc);
}

static void rc_stale_moved(const struct core_error *err, const struct sandbox *after, void *arg)
{
	struct reconcile *rc = arg;
	if (after && !err) {
		rc->stale++;
		log_info("reconcile: sandbox=%s was being created when we stopped: now error", after->id);
	}
	if (--rc->moving == 0)
		rc_stale_done(rc);
}

static void rc_stale_done(struct reconcile *rc)
{
	rc_set_state(rc, RECONCILE_LIVE_ROWS);
	/* a start or stop is settled at once when this instance made the move
	 * (it was killed half-way: the instance id is the same after a restart),
	 * else only when nobody moved the sandbox for a create timeout: another
	 * instance sharing the database may be doing it (sandbox_events.instance
	 * is the connection's application_name, at most 63 bytes) */
	static const char sql[] =
		"SELECT s.id, s.status, s.status IN ('starting', 'stopping') AND coalesce("
		"  (SELECT coalesce(e.instance = left($3, 63), false)"
		"     OR e.at < now() - $2::bigint * interval '1 millisecond'"
		"   FROM sandbox_events e WHERE e.sandbox_id = s.id ORDER BY e.id DESC LIMIT 1),"
		"  s.created_at < now() - $2::bigint * interval '1 millisecond') "
		"FROM sandboxes s WHERE s.cluster = $1 "
		"AND s.status IN ('creating', 'starting', 'running', 'stopping', 'stopped', 'warm')";
	char timeout_ms[24];
	snprintf(timeout_ms, sizeof(timeout_ms), "%" PRId64, (int64_t)rc->svc->cfg->create_timeout_ms);
	const char *params[] = { rc->svc->cluster, timeout_ms, rc->svc->cfg->instance_id };
	pg_query_send(rc->svc->pg, sql, 3, params, rc_live_done, rc);
}

static void rc_live_done(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct reconcile *rc = arg;
	if (err != PG_OK) {
		rc_give_up(rc, message ? message : "database unavailable");
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		json_object_object_add(rc->live, PQgetvalue(res, i, 0),
				       json_object_new_string(PQgetvalue(res, i, 1)));
		if (strcmp(PQgetvalue(res, i, 2), "t") == 0)
			json_object_object_add(rc->settle, PQgetvalue(res, i, 0), NULL);
	}
	rc_set_state(rc, RECONCILE_CONTAINERS);
	char label[128];
	snprintf(label, sizeof(label), "sandbar.cluster=%s", rc->svc->cluster);
	docker_container_list(rc->svc->docker, label, rc_containers_done, rc);
}

static void rc_containers_done(struct json_object *list, const char *err, void *arg)
{
	struct reconcile *rc = arg;
	if (err) {
		rc_give_up(rc, err);
		return;
	}
	size_t n = json_object_array_length(list);
	for (size_t i = 0; i < n; i++) {
		struct json_object *c = json_object_array_get_idx(list, i), *state;
		const char *id = label_of(c, "sandbar.sandbox");
		if (!id || !sandbox_id_valid(id))
			continue;
		if (!json_object_object_get_ex(rc->live, id, NULL)) {
			if (rc->scope != RECONCILE_LOST_ONLY && !rc_young(rc, c))
				json_object_object_add(rc->orphans, id, NULL);
			continue;
		}
		const char *st =
			json_object_object_get_ex(c, "State", &state) ? json_object_get_string(state) : "";
		json_object_object_add(strcmp(st, "running") == 0 ? rc->running : rc->stopped, id, NULL);
	}
	rc_set_state(rc, RECONCILE_LOST_ROWS);
	rc->moving = 1;
	json_object_object_foreach(rc->live, id, status)
	{
		enum sandbox_status from;
		if (sandbox_status_parse(json_object_get_string(status), &from) != 0 ||
		    (from != SANDBOX_RUNNING && from != SANDBOX_STARTING && from != SANDBOX_STOPPING &&
		     from != SANDBOX_WARM))
			continue;
		if ((from == SANDBOX_STARTING || from == SANDBOX_STOPPING) &&
		    !json_object_object_get_ex(rc->settle, id, NULL))
			continue; /* a start or stop under way (here or elsewhere) is its operation's to
				     finish */
		bool runs = json_object_object_get_ex(rc->running, id, NULL);
		bool stopped = json_object_object_get_ex(rc->stopped, id, NULL);
		struct sandbox_transition t = { .id = id, .from = from, .actor = "reconciler" };
		if (from == SANDBOX_WARM) {
			if (runs)
				continue;
			/* a pool member that does not run is of no use: it fails, its objects go */
			t.to = SANDBOX_ERROR;
			t.reason = "the pool member's container does not run";
			if (rc->scope != RECONCILE_LOST_ONLY) /* else the pool removes it */
				json_object_object_add(rc->orphans, id, NULL);
			rc->moving++;
			registry_transition(rc->svc->reg, &t, rc_lost_moved, rc);
			continue;
		}
		if (from != SANDBOX_RUNNING && (runs || stopped)) {
			/* half-way: stopped for good, then recorded (rc_half_stopped) */
			struct half *h = calloc(1, sizeof(*h));
			CHECK(h != NULL);
			h->rc = rc;
			h->from = from;
			snprintf(h->id, sizeof(h->id), "%s", id);
			char name[64];
			sandbox_container_name(id, name);
			rc->moving++;
			int grace = (int)((rc->svc->cfg->stop_grace_ms + 999) / 1000);
			docker_container_stop(rc->svc->docker, name, grace, rc_half_stopped, h);
			continue;
		}
		if (runs)
			continue;
		if (stopped) {
			t.to = SANDBOX_STOPPED;
			t.reason = "the container stopped while sandbard was away";
		} else {
			t.to = SANDBOX_ERROR;
			t.reason = "the container disappeared";
			if (rc->scope != RECONCILE_LOST_ONLY) /* else its volume goes with the delete */
				json_object_object_add(rc->orphans, id, NULL);
		}
		rc->moving++;
		registry_transition(rc->svc->reg, &t, rc_lost_moved, rc);
	}
	rc_lost_moved(NULL, NULL, rc);
}

static void rc_half_stopped(const char *err, void *arg)
{
	struct half *h = arg;
	struct reconcile *rc = h->rc;
	if (err) {
		log_warn("reconcile: sandbox=%s: stopping its container: %s", h->id, err);
		rc->rc = -1;
	}
	struct sandbox_transition t = {
		.id = h->id,
		.from = h->from,
		.to = SANDBOX_STOPPED,
		.actor = "reconciler",
		.reason = h->from == SANDBOX_STARTING ? "the control plane restarted during a start"
						      : "the control plane restarted during a stop",
	};
	registry_transition(rc->svc->reg, &t, rc_lost_moved, rc);
	free(h);
}

static void rc_lost_moved(const struct core_error *err, const struct sandbox *after, void *arg)
{
	struct reconcile *rc = arg;
	if (err && err->kind != CORE_CONFLICT) {
		log_error("reconcile: %s", err->message);
		rc->rc = -1;
	} else if (after && !err) {
		rc->lost++;
	}
	if (--rc->moving == 0)
		rc_lost_done(rc);
}

static void rc_lost_done(struct reconcile *rc)
{
	if (rc->lost)
		log_info("reconcile: %d sandbox(es) took their container's state", rc->lost);
	if (rc->scope == RECONCILE_LOST_ONLY) {
		rc_set_state(rc, RECONCILE_DONE);
		rc_finish(rc);
		return;
	}
	rc_set_state(rc, RECONCILE_VOLUMES);
	char label[128];
	snprintf(label, sizeof(label), "sandbar.cluster=%s", rc->svc->cluster);
	docker_volume_list(rc->svc->docker, label, rc_volumes_done, rc);
}

static void rc_volumes_done(struct json_object *volumes, const char *err, void *arg)
{
	struct reconcile *rc = arg;
	if (err) {
		log_error("reconcile: listing volumes: %s", err);
		rc->rc = -1;
	} else {
		/* the list itself (the client unwraps Docker's "Volumes"): until this was
		 * read as the wrapper, a volume whose container was gone stayed for good */
		for (size_t i = 0; i < json_object_array_length(volumes); i++) {
			struct json_object *v = json_object_array_get_idx(volumes, i);
			const char *id = label_of(v, "sandbar.sandbox");
			if (id && sandbox_id_valid(id) && !json_object_object_get_ex(rc->live, id, NULL) &&
			    !rc_young(rc, v))
				json_object_object_add(rc->orphans, id, NULL);
		}
	}
	rc_set_state(rc, RECONCILE_RECHECK);
	/* rows made since the live rows were read (another instance's creates) keep their objects */
	size_t len = 3;
	json_object_object_foreach(rc->orphans, oid, unused_)
	{
		(void)unused_;
		len += strlen(oid) + 1;
	}
	char *ids = malloc(len);
	CHECK(ids != NULL);
	char *p = ids;
	*p++ = '{';
	json_object_object_foreach(rc->orphans, oid2, unused2)
	{
		(void)unused2;
		p += sprintf(p, "%s%s", p > ids + 1 ? "," : "", oid2);
	}
	*p++ = '}';
	*p = '\0';
	static const char sql[] =
		"SELECT id::text FROM sandboxes WHERE cluster = $1 AND id::text = ANY($2::text[]) "
		"AND status IN ('creating', 'starting', 'running', 'stopping', 'stopped', 'warm')";
	const char *params[] = { rc->svc->cluster, ids };
	pg_query_send(rc->svc->pg, sql, 2, params, rc_rechecked, rc);
	free(ids);
}

static void rc_rechecked(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct reconcile *rc = arg;
	if (err != PG_OK) {
		/* nothing is removed that might be someone's */
		log_error("reconcile: checking orphans again: %s",
			  message ? message : "database unavailable");
		rc->rc = -1;
		json_object_put(rc->orphans);
		rc->orphans = json_object_new_object();
	} else {
		for (int i = 0; i < PQntuples(res); i++) {
			log_info("reconcile: sandbox=%s has a row now: its Docker objects stay",
				 PQgetvalue(res, i, 0));
			json_object_object_del(rc->orphans, PQgetvalue(res, i, 0));
		}
	}
	rc_set_state(rc, RECONCILE_REMOVING);
	/* one extra count so that synchronous-looking completions cannot finish early */
	rc->removing = 1;
	json_object_object_foreach(rc->orphans, id, unused)
	{
		(void)unused;
		log_info("reconcile: removing the Docker objects of sandbox=%s (no live row)", id);
		rc->removing++;
		rc->removed++;
		sandbox_destroy(rc->svc, id, rc_removed, rc);
	}
	rc_removed(NULL, rc);
}

static void rc_removed(const char *err, void *arg)
{
	struct reconcile *rc = arg;
	if (err)
		log_warn("reconcile: %s", err);
	if (--rc->removing > 0)
		return;
	rc_set_state(rc, RECONCILE_DONE);
	rc_finish(rc);
}

/* A step that cannot go on ends the pass; the next start tries again. */
static void rc_give_up(struct reconcile *rc, const char *why)
{
	log_error("reconcile: %s", why);
	rc->rc = -1;
	rc_set_state(rc, RECONCILE_DONE);
	rc_finish(rc);
}

static void rc_finish(struct reconcile *rc)
{
	if (rc->scope == RECONCILE_LOST_ONLY)
		log_info("reconcile: lost rows checked, %d lost container(s)%s", rc->lost,
			 rc->rc ? " (incomplete)" : "");
	else
		log_info("reconcile: %d stale create(s), %d lost container(s), %d orphan(s) removed%s",
			 rc->stale, rc->lost, rc->removed, rc->rc ? " (incomplete)" : "");
	json_object_put(rc->live);
	json_object_put(rc->settle);
	json_object_put(rc->running);
	json_object_put(rc->stopped);
	json_object_put(rc->orphans);
	void (*done)(int, void *) = rc->done;
	void *arg = rc->arg;
	int code = rc->rc;
	free(rc);
	if (done)
		done(code, arg);
}

/* A container (Created: Unix seconds) or volume (CreatedAt: RFC 3339) made
 * after the second this service started in: someone else's create under way,
 * not an orphan (one made in that second is judged by its row alone: the
 * check against the database right before a removal). */
static bool rc_young(const struct reconcile *rc, struct json_object *obj)
{
	int64_t started_s = rc->svc->started_ns / 1000000000;
	struct json_object *v;
	if (json_object_object_get_ex(obj, "Created", &v) && json_object_is_type(v, json_type_int))
		return json_object_get_int64(v) > started_s;
	if (!json_object_object_get_ex(obj, "CreatedAt", &v) || !json_object_is_type(v, json_type_string))
		return false;
	struct tm tm = { 0 };
	const char *rest = strptime(json_object_get_string(v), "%Y-%m-%dT%H:%M:%S", &tm);
	if (!rest)
		return false;
	int64_t t = (int64_t)timegm(&tm);
	while (*rest == '.' || (*rest >= '0' && *rest <= '9'))
		rest++;
	int hh, mm;
	if ((*rest == '+' || *rest == '-') && sscanf(rest + 1, "%d:%d", &hh, &mm) == 2)
		t -= (*rest == '+' ? 1 : -1) * (int64_t)(hh * 3600 + mm * 60);
	return t > started_s;
}

static const char *label_of(struct json_object *obj, const char *name)
{
	struct json_object *labels, *v;
	if (!json_object_object_get_ex(obj, "Labels", &labels) ||
	    !json_object_is_type(labels, json_type_object) || !json_object_object_get_ex(labels, name, &v))
		return NULL;
	return json_object_get_string(v);
}
