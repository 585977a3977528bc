/* The writes of a sandbox's row: insert, the status transition (its legality
 * and compare-and-set), settings, heartbeats and the warm pool's claim. Each
 * notifies the other instances and returns the row, which the cache keeps. */
#include "sandbox/registry.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include <json-c/json.h>

#include "channel/channel.h"
#include "core/log.h"
#include "pg/pool.h"
#include "registry_internal.h"
#include "row.h"

/* A committed write whose row cannot be read again is read again for this
 * long, with back-off, before its caller hears that the read failed. */
#define REREAD_FIRST_MS 100
#define REREAD_MAX_MS	5000
/* A port set as a PostgreSQL array literal, "{8000,8001}". */
#define PORT_SET_LITERAL_MAX (SANDBOX_PRIVATE_PORTS_MAX * 6 + 3)
/* An int64_t in decimal: 19 digits, its sign and the NUL. */
#define INT64_PARAM_MAX 24

static void write_send(struct registry_wait *w, const char *sql, int nparams, const char *const *params);
static void move_reload(struct registry_wait *w);
static void move_retry(evutil_socket_t fd, short what, void *arg);
static void moved_loaded(enum pg_error err, PGresult *res, const char *message, void *arg);
static void move_finish(struct registry_wait *w, struct sandbox_ref *ref);
static void move_answered(struct registry_wait *w, PGresult *res);
static void moved(struct registry_wait *w, PGresult *res);
static const char *port_set_literal(const struct sandbox_port_set *s, char buf[PORT_SET_LITERAL_MAX]);
static const char *tristate(int v);
/* A JSON parameter, NULL for none. */
static const char *json_or_null(struct json_object *o);
static const char *int64_param(int64_t v, char buf[INT64_PARAM_MAX]);
static const char *json_param(struct json_object *o);
static struct registry_wait *write_wait_new(struct registry *reg, const char *id, registry_moved_fn cb,
					    void *arg);
static void claimed(struct registry_wait *w, PGresult *res);

/* Sends the write of w->id's row, noting where the cache stood: its answer
 * (moved) is cached only if nothing invalidated the entry meanwhile. */
static void write_send(struct registry_wait *w, const char *sql, int nparams, const char *const *params)
{
	w->gen = entry_get(w->reg, w->id)->gen;
	w->epoch = w->reg->epoch;
	wait_query(w, sql, nparams, params, moved);
}

/* After a write whose answer cannot say it all (a refused one, one that wrote
 * ports): the row as it is now, cached, and the caller told. */
static void move_reload(struct registry_wait *w)
{
	const char *params[] = { w->id, w->reg->cluster };
	struct entry *e = entry_get(w->reg, w->id);
	/* what was cached is older than this write */
	entry_invalidate(e);
	w->gen = e->gen;
	w->epoch = w->reg->epoch;
	w->query = pg_query_send(w->reg->pg, registry_row_sql, 2, params, moved_loaded, w);
}

static void move_retry(evutil_socket_t fd, short what, void *arg)
{
	struct registry_wait *w = arg;
	event_free(w->retry);
	w->retry = NULL;
	move_reload(w);
}

static void moved_loaded(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct registry_wait *w = arg;
	struct registry *reg = w->reg;
	w->query = NULL;
	struct sandbox_ref *ref = NULL;
	if (err == PG_OK && PQntuples(res) > 0 && (ref = ref_from_row(reg, res, 0)) != NULL)
		entry_store(entry_get(reg, w->id), ref, w->gen, w->epoch);
	if (!ref && err != PG_OK && w->committed && w->retried_ms < REREAD_MAX_MS) {
		/* the write happened: its caller must not act as if it had not */
		w->retry_ms = w->retry_ms ? w->retry_ms * 2 : REREAD_FIRST_MS;
		if (w->retry_ms > REREAD_MAX_MS - w->retried_ms)
			w->retry_ms = REREAD_MAX_MS - w->retried_ms;
		w->retried_ms += w->retry_ms;
		log_warn("sandbox=%s: written, but not read again (%s); again in %" PRId64 " ms", w->id,
			 message ? message : "failed", w->retry_ms);
		struct timeval tv = { .tv_sec = w->retry_ms / 1000, .tv_usec = (w->retry_ms % 1000) * 1000 };
		w->retry = evtimer_new(reg->base, move_retry, w);
		CHECK(w->retry != NULL);
		evtimer_add(w->retry, &tv);
		return;
	}
	if (!ref && err == PG_OK) {
		core_error_set(&w->err, CORE_NOT_FOUND, "not_found", "no sandbox with this id");
	} else if (!ref && !wait_failed(w)) {
		pg_core_error(&w->err, err, message);
	}
	if (!ref && w->committed) {
		char why[sizeof(w->err.message)];
		snprintf(why, sizeof(why), "%s", w->err.message);
		static const char head[] =
			"the write was committed, but the sandbox could not be read again: ";
		snprintf(w->err.message, sizeof(w->err.message), "%s%.*s", head,
			 (int)(sizeof(w->err.message) - sizeof(head)), why);
	}
	move_finish(w, ref);
}

/* The write is over (ref: the row after it, NULL when unknown): its channel
 * dropped if it left running, the caller told; frees w. */
static void move_finish(struct registry_wait *w, struct sandbox_ref *ref)
{
	if (w->drop_channel)
		channels_drop(w->reg->chs, w->id); /* every holder's subscriptions hear of it at once */
	bool failed = wait_failed(w);
	if (failed && ref && !w->committed) {
		/* the write found another status: say which */
		const char *now = sandbox_status_name(ref->sb.status);
		w->err.status = now;
		if (strcmp(w->err.code, "invalid_state") == 0)
			snprintf(w->err.message, sizeof(w->err.message), "sandbox is %s, not %s", now,
				 sandbox_status_name(w->from));
		else
			snprintf(w->err.message, sizeof(w->err.message), "sandbox is %s", now);
	}
	if (w->moved_cb)
		w->moved_cb(failed ? &w->err : NULL, ref ? &ref->sb : NULL, w->arg);
	sandbox_ref_put(ref);
	wait_free(w);
}

/* A committed write's answer: its row as the statement returned it (the row
 * columns first), cached unless the entry was invalidated since it was sent. */
static void move_answered(struct registry_wait *w, PGresult *res)
{
	w->committed = true;
	if (w->kind == WAIT_MOVE && w->from != w->to)
		log_info("sandbox=%s %s -> %s%s", w->id, sandbox_status_name(w->from),
			 sandbox_status_name(w->to), w->note);
	if (w->reread) {
		move_reload(w);
		return;
	}
	struct sandbox_ref *ref = ref_from_row(w->reg, res, 0);
	struct entry *e = entry_get(w->reg, w->id);
	bool fresh = e->gen == w->gen;
	/* what was cached, and any lookup in flight, is older than this write */
	entry_invalidate(e);
	if (!ref)
		core_error_set(&w->err, CORE_INTERNAL, "internal",
			       "the write was committed, but the sandbox's row cannot be read");
	else if (fresh)
		entry_store(e, ref, e->gen, w->epoch);
	move_finish(w, ref);
}

/* The write's answer: the row it changed (none: it found another status, or
 * no live sandbox). */
static void moved(struct registry_wait *w, PGresult *res)
{
	if (PQntuples(res) > 0) {
		move_answered(w, res);
		return;
	}
	if (w->kind == WAIT_MOVE && w->from != w->to)
		core_error_set(&w->err, CORE_CONFLICT, "invalid_state", "the sandbox moved meanwhile");
	else
		core_error_set(&w->err, CORE_CONFLICT, "sandbox_not_live", "the sandbox is not live");
	w->drop_channel = false;
	move_reload(w);
}

struct registry_wait *registry_transition(struct registry *reg, const struct sandbox_transition *t,
					  registry_moved_fn cb, void *arg)
{
	struct registry_wait *w = wait_new(reg, WAIT_MOVE, arg);
	w->moved_cb = cb;
	snprintf(w->id, sizeof(w->id), "%s", t->id);
	w->from = t->from;
	w->to = t->to;
	if (!sandbox_status_can(t->from, t->to)) {
		core_error_set(&w->err, CORE_CONFLICT, "invalid_state", "a sandbox cannot go from %s to %s",
			       sandbox_status_name(t->from), sandbox_status_name(t->to));
		w->err.status = sandbox_status_name(t->from);
		wait_later(w);
		return w;
	}
	w->drop_channel = t->from == SANDBOX_RUNNING;
	snprintf(w->note, sizeof(w->note), "%s%s (%s)", t->reason ? ": " : "", t->reason ? t->reason : "",
		 t->actor ? t->actor : "?");
	char hports[512] = "{", cports[512] = "{";
	size_t hl = 1, cl = 1;
	for (size_t i = 0; i < t->nports && hl < sizeof(hports) - 16 && cl < sizeof(cports) - 16; i++) {
		hl += (size_t)snprintf(hports + hl, sizeof(hports) - hl, "%s%d", i ? "," : "",
				       t->host_ports[i]);
		cl += (size_t)snprintf(cports + cl, sizeof(cports) - cl, "%s%d", i ? "," : "",
				       t->container_ports[i]);
	}
	snprintf(hports + hl, sizeof(hports) - hl, "}");
	snprintf(cports + cl, sizeof(cports) - cl, "}");
	static const char sql[] =
		"WITH u AS (UPDATE sandboxes s SET status = $3, status_reason = $4, "
		"  deleted_at = CASE WHEN $3 IN ('deleted', 'expired') THEN now() ELSE deleted_at END, "
		"  container_id = coalesce($6, container_id), setup_output = coalesce($7, setup_output), "
		"  run_image = coalesce($14, run_image), "
		"  last_activity = CASE WHEN $8::bool THEN now() ELSE last_activity END, "
		"  expires_at = CASE WHEN $8::bool THEN now() + coalesce(idle_timeout_ms, $9::bigint) * "
		"    interval '1 millisecond' ELSE expires_at END "
		"  WHERE id = $1 AND cluster = $10 AND status = $2 RETURNING " SANDBOX_ROW_COLUMNS "), "
		"e AS (INSERT INTO sandbox_events (sandbox_id, from_status, to_status, reason, actor) "
		"  SELECT id, $2, $3, $4, $5 FROM u), "
		"p AS (INSERT INTO port_mappings (id, sandbox_id, host_port, container_port) "
		"  SELECT gen_random_uuid(), u.id, x.h, x.c FROM u, unnest($11::int[], $12::int[]) AS x(h, "
		"c) "
		"  ON CONFLICT (sandbox_id, container_port) DO UPDATE SET host_port = excluded.host_port), "
		"n AS (SELECT pg_notify('" REGISTRY_NOTIFY_CHANNEL "', $13 || ' ' || id) FROM u) "
		"SELECT u.*, (SELECT count(*) FROM n) FROM u";
	const char *params[] = {
		t->id,
		sandbox_status_name(t->from),
		sandbox_status_name(t->to),
		t->reason,
		t->actor,
		t->container_id,
		t->setup_output,
		t->touch ? "t" : "f",
		reg->idle_ms,
		reg->cluster,
		hports,
		cports,
		reg->instance,
		t->run_image,
	};
	/* the row it returns cannot see the ports the same statement wrote */
	w->reread = t->nports > 0;
	write_send(w, sql, 14, params);
	return w;
}

/* s as a PostgreSQL array literal, into buf. */
static const char *port_set_literal(const struct sandbox_port_set *s, char buf[PORT_SET_LITERAL_MAX])
{
	size_t n = 0;
	buf[n++] = '{';
	for (int i = 0; i < s->n && i < SANDBOX_PRIVATE_PORTS_MAX; i++)
		n += (size_t)snprintf(buf + n, PORT_SET_LITERAL_MAX - n, "%s%u", i ? "," : "", s->port[i]);
	snprintf(buf + n, PORT_SET_LITERAL_MAX - n, "}");
	return buf;
}

/* A tri-state setting as a parameter: NULL for 0 (the default, or unchanged). */
static const char *json_or_null(struct json_object *o)
{
	return o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN) : NULL;
}

static const char *tristate(int v)
{
	return v > 0 ? "t" : v < 0 ? "f" : NULL;
}

/* A number as a parameter, into buf: NULL when not positive (not asked, or unchanged). */
static const char *int64_param(int64_t v, char buf[INT64_PARAM_MAX])
{
	if (v <= 0)
		return NULL;
	snprintf(buf, INT64_PARAM_MAX, "%" PRId64, v);
	return buf;
}

/* A JSON value as a parameter: NULL for none. */
static const char *json_param(struct json_object *o)
{
	return o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN) : NULL;
}

struct registry_wait *registry_insert(struct registry *reg, const struct sandbox_insert *ins,
				      registry_moved_fn cb, void *arg)
{
	struct registry_wait *w = wait_new(reg, WAIT_MOVE, arg);
	w->moved_cb = cb;
	snprintf(w->id, sizeof(w->id), "%s", ins->id);
	w->from = w->to = SANDBOX_CREATING;
	static const char sql[] =
		"WITH i AS (INSERT INTO sandboxes AS s (id, name, template, status, image, workspace_mount, "
		"  devcontainer_config, env_vars, cluster, owner_instance, expires_at, labels, cpu_millis, "
		"  memory_bytes, idle_timeout_ms, idle_action, ends_at, in_pool, auto_wake, private, "
		"  private_ports, project, user_id, spec, configured_env, network, runtime) "
		"  VALUES ($1, $2, $3, 'creating', $4, $5, $6::jsonb, $7::jsonb, $8, $9, "
		"  now() + $10::bigint * interval '1 millisecond', coalesce($12::jsonb, '{}'), $13, $14, "
		"$10, $15, "
		"  now() + $16::bigint * interval '1 millisecond', $17, $18::boolean, $19::boolean, "
		"  $20::int[], coalesce($21, 'default'), coalesce($22, ''), coalesce($23::jsonb, '{}'), "
		"  coalesce($24::jsonb, '{}'), $25, $26) "
		"RETURNING " SANDBOX_ROW_COLUMNS "), "
		"e AS (INSERT INTO sandbox_events (sandbox_id, to_status, actor) SELECT id, 'creating', $11 "
		"FROM i) "
		"SELECT i.* FROM i";
	char idle[INT64_PARAM_MAX], cpu[INT64_PARAM_MAX], mem[INT64_PARAM_MAX], ttl[INT64_PARAM_MAX];
	char pports[PORT_SET_LITERAL_MAX];
	snprintf(idle, sizeof(idle), "%" PRId64,
		 ins->idle_timeout_ms > 0 ? ins->idle_timeout_ms : reg->idle_default_ms);
	const char *params[] = {
		ins->id,
		ins->name,
		ins->template_name,
		ins->image,
		ins->workspace_mount,
		json_object_to_json_string_ext(ins->config, JSON_C_TO_STRING_PLAIN),
		json_object_to_json_string_ext(ins->env_vars, JSON_C_TO_STRING_PLAIN),
		reg->cluster,
		reg->instance,
		idle,
		ins->actor,
		json_param(ins->labels),
		int64_param(ins->cpu_millis, cpu),
		int64_param(ins->memory_bytes, mem),
		sandbox_idle_action_name(ins->idle_action),
		int64_param(ins->ttl_ms, ttl),
		ins->in_pool ? "t" : "f",
		tristate(ins->auto_wake),
		ins->is_private ? "t" : "f",
		port_set_literal(&ins->private_ports, pports),
		ins->project,
		ins->user_id,
		json_or_null(ins->spec),
		json_or_null(ins->configured_env),
		sandbox_network_name(ins->network),
		sandbox_runtime_name(ins->runtime),
	};
	write_send(w, sql, 26, params);
	return w;
}

/* A write of sandbox id's row; an id that is no UUID fails it at once (from the loop). */
static struct registry_wait *write_wait_new(struct registry *reg, const char *id, registry_moved_fn cb,
					    void *arg)
{
	struct registry_wait *w = wait_new(reg, WAIT_MOVE, arg);
	w->moved_cb = cb;
	if (!sandbox_id_valid(id))
		wait_fail_later(w, CORE_INVALID, "invalid_id", "sandbox id must be a UUID");
	else
		snprintf(w->id, sizeof(w->id), "%s", id);
	return w;
}

struct registry_wait *registry_heartbeat(struct registry *reg, const char *id, registry_moved_fn cb,
					 void *arg)
{
	struct registry_wait *w = write_wait_new(reg, id, cb, arg);
	if (wait_failed(w))
		return w;
	static const char sql[] =
		"WITH u AS (UPDATE sandboxes s SET last_activity = now(), "
		"  expires_at = now() + coalesce(idle_timeout_ms, $3::bigint) * interval '1 millisecond' "
		"  WHERE id = $1 AND cluster = $2 AND status IN ('creating', 'starting', "
		"'running', 'stopping', "
		"  'stopped') RETURNING " SANDBOX_ROW_COLUMNS "), "
		"n AS (SELECT pg_notify('" REGISTRY_NOTIFY_CHANNEL "', $4 || ' ' || id) FROM u) "
		"SELECT u.*, (SELECT count(*) FROM n) FROM u";
	const char *params[] = { id, reg->cluster, reg->idle_ms, reg->instance };
	write_send(w, sql, 4, params);
	return w;
}

struct registry_wait *registry_settle(struct registry *reg, const char *id, const struct sandbox_settings *st,
				      registry_moved_fn cb, void *arg)
{
	struct registry_wait *w = write_wait_new(reg, id, cb, arg);
	if (wait_failed(w))
		return w;
	static const char sql[] =
		"WITH u AS (UPDATE sandboxes s SET name = coalesce($3, name), "
		"  labels = coalesce($4::jsonb, labels), "
		"  cpu_millis = coalesce($6::int, cpu_millis), memory_bytes = coalesce($7::bigint, "
		"memory_bytes), "
		"  idle_timeout_ms = coalesce($8::bigint, idle_timeout_ms), "
		"  expires_at = CASE WHEN $8::bigint IS NULL THEN expires_at "
		"    ELSE last_activity + $8::bigint * interval '1 millisecond' END, "
		"  idle_action = coalesce($9, idle_action), "
		"  keepalive_until = CASE WHEN $10::bigint IS NULL THEN keepalive_until "
		"    ELSE now() + $10::bigint * interval '1 millisecond' END, "
		"  ends_at = CASE WHEN $11::bigint IS NULL THEN ends_at "
		"    ELSE greatest(coalesce(ends_at, now()), now()) + $11::bigint * interval '1 millisecond' "
		"END, "
		"  auto_wake = coalesce($14::boolean, auto_wake), private = coalesce($15::boolean, private), "
		"  private_ports = coalesce($16::int[], private_ports), "
		"  spec = spec || coalesce($17::jsonb, '{}'), image = coalesce($20, image), "
		"  configured_env = configured_env || coalesce($18::jsonb, '{}'), "
		"  env_vars = env_vars || coalesce($5::jsonb, '{}') || coalesce($18::jsonb, '{}') "
		"    || CASE WHEN $19::boolean THEN configured_env ELSE '{}' END "
		"  WHERE id = $1 AND cluster = $2 AND deleted_at IS NULL RETURNING " SANDBOX_ROW_COLUMNS "), "
		"e AS (INSERT INTO sandbox_events (sandbox_id, from_status, to_status, reason, actor) "
		"  SELECT id, status, status, 'settings', $13 FROM u), "
		"n AS (SELECT pg_notify('" REGISTRY_NOTIFY_CHANNEL "', $12 || ' ' || id) FROM u) "
		"SELECT u.*, (SELECT count(*) FROM n) FROM u";
	char cpu[INT64_PARAM_MAX], mem[INT64_PARAM_MAX], idle[INT64_PARAM_MAX], keep[INT64_PARAM_MAX],
		ext[INT64_PARAM_MAX], pports[PORT_SET_LITERAL_MAX];
	const char *params[] = {
		id,
		reg->cluster,
		st->name,
		json_param(st->labels),
		json_param(st->env_vars),
		int64_param(st->cpu_millis, cpu),
		int64_param(st->memory_bytes, mem),
		int64_param(st->idle_timeout_ms, idle),
		st->set_idle_action ? sandbox_idle_action_name(st->idle_action) : NULL,
		int64_param(st->keepalive_ms, keep),
		int64_param(st->extend_ms, ext),
		reg->instance,
		st->actor,
		tristate(st->auto_wake),
		tristate(st->is_private),
		st->set_private_ports ? port_set_literal(&st->private_ports, pports) : NULL,
		json_or_null(st->spec),
		json_or_null(st->configured_env),
		st->reapply_configured ? "t" : "f",
		st->image,
	};
	write_send(w, sql, 20, params);
	return w;
}

/* ---- the warm pool ---- */

/* The answer of a claim: the member's id, or none. */
static void claimed(struct registry_wait *w, PGresult *res)
{
	if (PQntuples(res) == 0) {
		core_error_set(&w->err, CORE_NOT_FOUND, "pool_empty", "no warm sandbox of this template");
		move_finish(w, NULL);
		return;
	}
	snprintf(w->id, sizeof(w->id), "%s", PQgetvalue(res, 0, 0));
	w->gen = entry_get(w->reg, w->id)->gen; /* the epoch is the claim's, taken when sent */
	move_answered(w, res);
}

struct registry_wait *registry_claim(struct registry *reg, const struct sandbox_claim *c,
				     registry_moved_fn cb, void *arg)
{
	struct registry_wait *w = wait_new(reg, WAIT_MOVE, arg);
	w->moved_cb = cb;
	w->from = SANDBOX_WARM;
	w->to = SANDBOX_RUNNING;
	snprintf(w->note, sizeof(w->note), " (%s)", c->actor ? c->actor : "?");
	/* the oldest member of the newest image; a locked one is someone else's */
	static const char sql[] =
		"WITH c AS (SELECT id FROM sandboxes WHERE cluster = $1 AND template = $2 AND in_pool "
		"  AND status = 'warm' ORDER BY run_image IS NOT DISTINCT FROM $3 DESC, created_at, id "
		"  LIMIT 1 FOR UPDATE SKIP LOCKED), "
		"u AS (UPDATE sandboxes s SET status = 'running', in_pool = false, status_reason = NULL, "
		"  name = $4, env_vars = coalesce($5::jsonb, '{}'), labels = coalesce($6::jsonb, '{}'), "
		"  cpu_millis = coalesce($7::int, s.cpu_millis), "
		"  memory_bytes = coalesce($8::bigint, s.memory_bytes), "
		"  idle_timeout_ms = coalesce($9::bigint, $10::bigint), idle_action = $11, "
		"  ends_at = now() + $12::bigint * interval '1 millisecond', "
		"  created_at = now(), last_activity = now(), "
		"  expires_at = now() + coalesce($9::bigint, $10::bigint) * interval '1 millisecond', "
		"  owner_instance = $13, auto_wake = $15::boolean, private = $16::boolean, "
		"  private_ports = $17::int[], project = coalesce($18, 'default'), user_id = coalesce($19, "
		"''), "
		"  spec = coalesce($20::jsonb, '{}'), configured_env = coalesce($21::jsonb, '{}') "
		"  FROM c WHERE s.id = c.id "
		"RETURNING " SANDBOX_ROW_COLUMNS "), "
		"e AS (INSERT INTO sandbox_events (sandbox_id, from_status, to_status, reason, actor) "
		"  SELECT id, 'warm', 'running', 'claimed', $14 FROM u), "
		"n AS (SELECT pg_notify('" REGISTRY_NOTIFY_CHANNEL "', $13 || ' ' || id) FROM u) "
		"SELECT u.*, (SELECT count(*) FROM n) FROM u";
	char cpu[INT64_PARAM_MAX], mem[INT64_PARAM_MAX], idle[INT64_PARAM_MAX], ttl[INT64_PARAM_MAX];
	char pports[PORT_SET_LITERAL_MAX];
	const char *params[] = {
		reg->cluster,
		c->template_name,
		c->prefer_image,
		c->name,
		json_param(c->env_vars),
		json_param(c->labels),
		int64_param(c->cpu_millis, cpu),
		int64_param(c->memory_bytes, mem),
		int64_param(c->idle_timeout_ms, idle),
		reg->idle_ms,
		sandbox_idle_action_name(c->idle_action),
		int64_param(c->ttl_ms, ttl),
		reg->instance,
		c->actor,
		tristate(c->auto_wake),
		c->is_private ? "t" : "f",
		port_set_literal(&c->private_ports, pports),
		c->project,
		c->user_id,
		json_or_null(c->spec),
		json_or_null(c->configured_env),
	};
	w->epoch = reg->epoch;
	wait_query(w, sql, 21, params, claimed);
	return w;
}
