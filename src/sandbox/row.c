/* A sandbox's row as the core reads it: the one column list every query of
 * the registry selects, parsed into struct sandbox (with what a command in it
 * starts with, derived once here), and freed. */
#include "agent/protocol.h"
#include "core/strv.h"
#include "row.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/check.h"
#include "core/env.h"

enum {
	COL_ID,
	COL_NAME,
	COL_TEMPLATE,
	COL_STATUS,
	COL_REASON,
	COL_CONTAINER,
	COL_IMAGE,
	COL_WORKSPACE,
	COL_CONFIG,
	COL_ENV,
	COL_SETUP,
	COL_ACTIVITY,
	COL_CREATED,
	COL_EXPIRES,
	COL_DELETED,
	COL_PORTS,
	COL_LABELS,
	COL_CPU,
	COL_MEMORY,
	COL_IDLE_TIMEOUT,
	COL_IDLE_ACTION,
	COL_ENDS,
	COL_KEEPALIVE,
	COL_AUTO_WAKE,
	COL_PRIVATE,
	COL_PRIVATE_PORTS,
	COL_PROJECT,
	COL_USER_ID,
	COL_SPEC,
	COL_CONFIGURED_ENV,
	COL_NETWORK,
	COL_RUNTIME,
	COL_COUNT
};

static char *text_of(PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return NULL;
	char *s = strdup(PQgetvalue(res, row, col));
	CHECK(s != NULL);
	return s;
}

/* An integer column (microseconds, or any count); 0 for NULL. */
static int64_t int_of(PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* A JSON object column; {} for anything else. */
static struct json_object *json_of(PGresult *res, int row, int col)
{
	struct json_object *o =
		PQgetisnull(res, row, col) ? NULL : json_tokener_parse(PQgetvalue(res, row, col));
	if (o && json_object_is_type(o, json_type_object))
		return o;
	json_object_put(o);
	return json_object_new_object();
}

static void env_put_object(struct env_list *l, struct json_object *o)
{
	if (!o || !json_object_is_type(o, json_type_object))
		return;
	json_object_object_foreach(o, key, val)
	{
		if (*key && !strchr(key, '=') && json_object_is_type(val, json_type_string))
			env_list_set(l, key, strlen(key), json_object_get_string(val));
	}
}

static char *config_string(struct json_object *config, const char *key)
{
	struct json_object *v;
	if (!json_object_object_get_ex(config, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	char *s = strdup(json_object_get_string(v));
	CHECK(s != NULL);
	return s;
}

/* The agent starts commands with exactly this environment: containerEnv,
 * remoteEnv, then the sandbox's env_vars, over a default PATH. */
static void derive_run(struct sandbox *sb)
{
	struct env_list env = { 0 };
	env_list_put(&env, "PATH", AGENT_DEFAULT_PATH);
	struct json_object *v;
	if (json_object_object_get_ex(sb->config, "containerEnv", &v))
		env_put_object(&env, v);
	if (json_object_object_get_ex(sb->config, "remoteEnv", &v))
		env_put_object(&env, v);
	env_put_object(&env, sb->env_vars);
	sb->run_env = env.v;
	sb->run_user = config_string(sb->config, "remoteUser");
	if (!sb->run_user)
		sb->run_user = config_string(sb->config, "containerUser");
	sb->run_cwd = config_string(sb->config, "workspaceFolder");
	if (!sb->run_cwd && sb->workspace_mount && *sb->workspace_mount)
		sb->run_cwd = strdup(sb->workspace_mount);
}

int sandbox_from_row(struct sandbox *sb, PGresult *res, int row)
{
	memset(sb, 0, sizeof(*sb));
	CHECK(PQnfields(res) >= COL_COUNT);
	if (sandbox_status_parse(PQgetvalue(res, row, COL_STATUS), &sb->status) != 0)
		return -1;
	snprintf(sb->id, sizeof(sb->id), "%s", PQgetvalue(res, row, COL_ID));
	sb->name = text_of(res, row, COL_NAME);
	sb->template_name = text_of(res, row, COL_TEMPLATE);
	sb->status_reason = text_of(res, row, COL_REASON);
	sb->container_id = text_of(res, row, COL_CONTAINER);
	sb->image = text_of(res, row, COL_IMAGE);
	sb->workspace_mount = text_of(res, row, COL_WORKSPACE);
	sb->config = json_of(res, row, COL_CONFIG);
	sb->env_vars = json_of(res, row, COL_ENV);
	sb->setup_output = text_of(res, row, COL_SETUP);
	sb->last_activity_us = int_of(res, row, COL_ACTIVITY);
	sb->created_at_us = int_of(res, row, COL_CREATED);
	sb->expires_at_us = int_of(res, row, COL_EXPIRES);
	sb->deleted_at_us = int_of(res, row, COL_DELETED);
	struct json_object *ports = json_tokener_parse(PQgetvalue(res, row, COL_PORTS));
	size_t n = ports && json_object_is_type(ports, json_type_array) ? json_object_array_length(ports) : 0;
	sb->ports = calloc(n ? n : 1, sizeof(*sb->ports));
	CHECK(sb->ports != NULL);
	for (size_t i = 0; i < n; i++) {
		struct json_object *p = json_object_array_get_idx(ports, i), *v;
		struct sandbox_port *sp = &sb->ports[sb->nports];
		if (!json_object_object_get_ex(p, "id", &v))
			continue;
		snprintf(sp->id, sizeof(sp->id), "%s", json_object_get_string(v));
		sp->container_port = json_object_object_get_ex(p, "c", &v) ? json_object_get_int(v) : 0;
		sp->host_port = json_object_object_get_ex(p, "h", &v) ? json_object_get_int(v) : 0;
		sb->nports++;
	}
	json_object_put(ports);
	sb->labels = json_of(res, row, COL_LABELS);
	sb->cpu_millis = int_of(res, row, COL_CPU);
	sb->memory_bytes = int_of(res, row, COL_MEMORY);
	sb->idle_timeout_ms = int_of(res, row, COL_IDLE_TIMEOUT);
	if (sandbox_idle_action_parse(PQgetvalue(res, row, COL_IDLE_ACTION), &sb->idle_action) != 0)
		sb->idle_action = SANDBOX_IDLE_EXPIRE;
	sb->ends_at_us = int_of(res, row, COL_ENDS);
	sb->keepalive_until_us = int_of(res, row, COL_KEEPALIVE);
	sb->auto_wake = strcmp(PQgetvalue(res, row, COL_AUTO_WAKE), "t") == 0;
	sb->is_private = strcmp(PQgetvalue(res, row, COL_PRIVATE), "t") == 0;
	sb->private_ports.n = 0;
	for (const char *p = PQgetvalue(res, row, COL_PRIVATE_PORTS);
	     *p && sb->private_ports.n < SANDBOX_PRIVATE_PORTS_MAX;) {
		char *end;
		long port = strtol(p, &end, 10);
		if (end == p)
			break;
		sb->private_ports.port[sb->private_ports.n++] = (uint16_t)port;
		p = *end == ',' ? end + 1 : end;
	}
	sb->project = text_of(res, row, COL_PROJECT);
	sb->user_id = text_of(res, row, COL_USER_ID);
	sb->spec = json_of(res, row, COL_SPEC);
	sb->configured_env = json_of(res, row, COL_CONFIGURED_ENV);
	if (sandbox_network_parse(PQgetvalue(res, row, COL_NETWORK), &sb->network) != 0)
		sb->network = SANDBOX_NETWORK_FULL;
	if (sandbox_runtime_parse(PQgetvalue(res, row, COL_RUNTIME), &sb->runtime) != 0)
		sb->runtime = SANDBOX_RUNTIME_RUNC;
	derive_run(sb);
	return 0;
}

void sandbox_clear(struct sandbox *sb)
{
	free(sb->name);
	free(sb->template_name);
	free(sb->status_reason);
	free(sb->container_id);
	free(sb->image);
	free(sb->workspace_mount);
	json_object_put(sb->config);
	json_object_put(sb->env_vars);
	json_object_put(sb->labels);
	free(sb->ports);
	free(sb->setup_output);
	strv_free(sb->run_env);
	free(sb->run_user);
	free(sb->run_cwd);
	free(sb->project);
	free(sb->user_id);
	json_object_put(sb->spec);
	json_object_put(sb->configured_env);
	memset(sb, 0, sizeof(*sb));
}
