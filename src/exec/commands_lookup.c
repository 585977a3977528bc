/* What a run needs to know of its sandbox (container, env, user, workspace),
 * read from PostgreSQL and kept per sandbox for a short while, so that a burst
 * of execs costs one lookup, not one each. Forgotten when the sandbox goes
 * away on this instance; other instances' changes show within the validity. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "commands_internal.h"

static void env_put(char ***list, size_t *n, size_t *cap, const char *key, size_t klen, const char *val);
static void env_put_json(char ***list, size_t *n, size_t *cap, const char *text);
static char *dup_or_null(const char *s);

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

/* Columns of the lookup: 1 container, 2 env_vars, 3 containerEnv,
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
