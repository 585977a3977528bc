/* What a run needs to know of its sandbox (container, env, user, workspace),
 * read from PostgreSQL and kept per sandbox for a short while, so that a burst
 * of execs costs one lookup, not one each: concurrent runs share the lookup
 * under way, and a used entry is read again before it runs out. Forgotten
 * when the sandbox goes away on this instance; other instances' changes show
 * within the validity. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "commands_internal.h"

static void env_put(char ***list, size_t *n, size_t *cap, const char *key, size_t klen, const char *val);
static void env_put_json(char ***list, size_t *n, size_t *cap, const char *text);
static char *dup_or_null(const char *s);
static void sbx_looked_up(enum pg_error err, PGresult *res, const char *message, void *arg);

/* Touches activity too when due ($4), in the same statement. */
static const char sql_lookup[] =
	"WITH t AS (UPDATE sandboxes SET last_activity = now(), "
	"  expires_at = now() + $3::bigint * interval '1 millisecond' "
	"  WHERE id = $1 AND cluster = $2 AND status = 'running' AND $4::bool RETURNING id) "
	"SELECT s.status, s.container_id, s.env_vars::text, "
	"  coalesce(s.devcontainer_config->'containerEnv', '{}')::text, "
	"  coalesce(s.devcontainer_config->'remoteEnv', '{}')::text, "
	"  coalesce(s.devcontainer_config->>'remoteUser', s.devcontainer_config->>'containerUser'), "
	"  coalesce(s.devcontainer_config->>'workspaceFolder', s.workspace_mount), "
	"  (SELECT count(*) FROM t) "
	"FROM sandboxes s WHERE s.id = $1 AND s.cluster = $2";

int64_t commands_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* KEY=V strings; a later KEY replaces an earlier one in place. */
static void env_put(char ***list, size_t *n, size_t *cap, const char *key, size_t klen, const char *val)
{
	char *kv;
	CHECK(asprintf(&kv, "%.*s=%s", (int)klen, key, val) >= 0);
	for (size_t i = 0; i < *n; i++) {
		if (strncmp((*list)[i], key, klen) == 0 && (*list)[i][klen] == '=') {
			free((*list)[i]);
			(*list)[i] = kv;
			return;
		}
	}
	if (*n + 2 > *cap) {
		*cap = *cap ? *cap * 2 : 16;
		*list = realloc(*list, *cap * sizeof(char *));
		CHECK(*list != NULL);
	}
	(*list)[(*n)++] = kv;
	(*list)[*n] = NULL;
}

static void env_put_json(char ***list, size_t *n, size_t *cap, const char *text)
{
	struct json_object *o = json_tokener_parse(text);
	if (o && json_object_is_type(o, json_type_object)) {
		json_object_object_foreach(o, key, val)
		{
			if (*key && !strchr(key, '=') && json_object_is_type(val, json_type_string))
				env_put(list, n, cap, key, strlen(key), json_object_get_string(val));
		}
	}
	json_object_put(o);
}

static char *dup_or_null(const char *s)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	CHECK(d != NULL);
	return d;
}

/* Columns of the lookup: 0 status, 1 container, 2 env_vars, 3 containerEnv,
 * 4 remoteEnv, 5 user (may be NULL), 6 workspace folder. */
void sbx_facts_from_pg(struct sbx_facts *f, PGresult *res)
{
	sbx_facts_clear(f);
	f->container = dup_or_null(PQgetvalue(res, 0, 1));
	/* the agent starts commands with exactly this environment: containerEnv,
	 * remoteEnv, then the create-time env_vars */
	size_t n = 0, cap = 0;
	static const char path[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	env_put(&f->env, &n, &cap, "PATH", 4, path);
	env_put_json(&f->env, &n, &cap, PQgetvalue(res, 0, 3));
	env_put_json(&f->env, &n, &cap, PQgetvalue(res, 0, 4));
	env_put_json(&f->env, &n, &cap, PQgetvalue(res, 0, 2));
	f->n_env = n;
	f->user = PQgetisnull(res, 0, 5) ? NULL : dup_or_null(PQgetvalue(res, 0, 5));
	const char *cwd = PQgetvalue(res, 0, 6);
	f->cwd = cwd && *cwd ? dup_or_null(cwd) : NULL;
}

void sbx_facts_clear(struct sbx_facts *f)
{
	free(f->container);
	for (size_t i = 0; f->env && f->env[i]; i++)
		free(f->env[i]);
	free(f->env);
	free(f->user);
	free(f->cwd);
	memset(f, 0, sizeof(*f));
}

/* The sandbox env overlaid by the command's own; NULL when there is no
 * overlay (use f->env as it is). Free with commands_env_free. */
char **sbx_facts_env(const struct sbx_facts *f, char *const *overlay)
{
	if (!overlay || !overlay[0])
		return NULL;
	char **list = NULL;
	size_t n = 0, cap = 0;
	for (size_t i = 0; f->env && f->env[i]; i++) {
		const char *eq = strchr(f->env[i], '=');
		env_put(&list, &n, &cap, f->env[i], (size_t)(eq - f->env[i]), eq + 1);
	}
	for (size_t i = 0; overlay[i]; i++) {
		const char *eq = strchr(overlay[i], '=');
		env_put(&list, &n, &cap, overlay[i], (size_t)(eq - overlay[i]), eq + 1);
	}
	return list;
}

void commands_env_free(char **env)
{
	for (size_t i = 0; env && env[i]; i++)
		free(env[i]);
	free(env);
}

/* ---- the per-sandbox cache ---- */

const struct sbx_facts *sbx_cached(struct commands *c, struct sbx *s)
{
	if (!s->cached.container || commands_mono_ms() >= s->cached.until_ms)
		return NULL;
	return &s->cached;
}

void sbx_cache_store(struct commands *c, struct sbx *s, uint64_t gen, struct sbx_facts *f)
{
	/* a lookup that was under way when the sandbox went away says nothing now */
	if (c->cfg.lookup_cache_ms <= 0 || gen != s->gen)
		return;
	sbx_facts_clear(&s->cached);
	s->cached = *f;
	s->cached.until_ms = commands_mono_ms() + c->cfg.lookup_cache_ms;
	memset(f, 0, sizeof(*f));
}

bool sbx_refresh_due(struct commands *c, struct sbx *s)
{
	return !s->lookup && s->cached.container &&
	       commands_mono_ms() >= s->cached.until_ms - c->cfg.lookup_cache_ms / 2;
}

void sbx_lookup(struct commands *c, struct sbx *s, struct command_op *op)
{
	if (op) {
		CHECK(!op->lookup_wait);
		op->lookup_wait = true;
		op->wait_next = s->lookup_waiters;
		s->lookup_waiters = op;
	}
	if (s->lookup)
		return;
	s->lookup_gen = s->gen;
	const char *params[] = { s->id, c->cfg.cluster, c->idle_ms, sbx_touch_due(c, s) ? "t" : "f" };
	s->lookup = pg_query_send(c->pg, sql_lookup, 4, params, sbx_looked_up, s);
}

void sbx_lookup_leave(struct command_op *op)
{
	struct sbx *s = sbx_find(op->c, op->sandbox_id);
	for (struct command_op **pp = s ? &s->lookup_waiters : NULL; pp && *pp; pp = &(*pp)->wait_next) {
		if (*pp == op) {
			*pp = op->wait_next;
			break;
		}
	}
	op->lookup_wait = false;
}

void sbx_lookup_cancel(struct sbx *s)
{
	if (s->lookup)
		pg_query_cancel(s->lookup);
	s->lookup = NULL;
}

/* Every waiter spawns or fails with the one answer. A waiter is taken off
 * the list before it goes on (its failure may free it); a run that joins
 * meanwhile starts a lookup of its own and is served from this one. */
static void sbx_looked_up(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct sbx *s = arg;
	struct commands *c = s->c;
	uint64_t gen = s->lookup_gen;
	s->lookup = NULL;
	bool found = err == PG_OK && PQntuples(res) > 0;
	const char *status = found ? PQgetvalue(res, 0, 0) : NULL;
	bool running = found && strcmp(status, "running") == 0 && !PQgetisnull(res, 0, 1);
	struct sbx_facts f = { 0 };
	if (running)
		sbx_facts_from_pg(&f, res);
	else if (err == PG_OK)
		sbx_cache_drop(s);
	struct command_op *op;
	while ((op = s->lookup_waiters) != NULL) {
		s->lookup_waiters = op->wait_next;
		op->lookup_wait = false;
		if (err != PG_OK)
			op_fail_pg(op, err, message);
		else if (!found)
			op_fail(op, true, CORE_NOT_FOUND, "not_found", "no sandbox with this id");
		else if (!running)
			op_fail(op, true, CORE_CONFLICT, "sandbox_not_running", "sandbox is %s", status);
		else
			run_with_facts(op, &f); /* op may be gone after it */
	}
	if (running)
		sbx_cache_store(c, s, gen, &f);
	sbx_facts_clear(&f);
}

void sbx_cache_drop(struct sbx *s)
{
	s->gen++;
	sbx_facts_clear(&s->cached);
}

void commands_forget(struct commands *c, const char *sandbox_id)
{
	struct sbx *s = sbx_find(c, sandbox_id);
	if (s)
		sbx_cache_drop(s);
}
