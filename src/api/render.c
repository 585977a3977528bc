/* The native dialect's JSON of the core's structs: a sandbox as monza's
 * object (plus status_reason, template and setup_output), times as RFC 3339
 * in UTC with microseconds, as Go's time.Time marshals them. */
#include <stdio.h>
#include <time.h>

#include <json-c/json.h>

#include "internal.h"

struct json_object *api_time_json(int64_t us)
{
	if (us <= 0)
		return NULL;
	time_t t = (time_t)(us / 1000000);
	struct tm tm;
	char buf[40];
	gmtime_r(&t, &tm);
	size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, sizeof(buf) - n, ".%06dZ", (int)(us % 1000000));
	return json_object_new_string(buf);
}

static struct json_object *str_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

struct json_object *api_sandbox_json(const struct sandbox *sb)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(sb->id));
	json_object_object_add(o, "name", json_object_new_string(sb->name));
	json_object_object_add(o, "template", json_object_new_string(sb->template_name));
	json_object_object_add(o, "status", json_object_new_string(sandbox_status_name(sb->status)));
	json_object_object_add(o, "status_reason", str_or_null(sb->status_reason));
	json_object_object_add(o, "container_id", json_object_new_string(sb->container_id));
	json_object_object_add(o, "image", json_object_new_string(sb->image));
	json_object_object_add(o, "workspace_mount", json_object_new_string(sb->workspace_mount));
	json_object_object_add(o, "devcontainer_config", json_object_get(sb->config));
	json_object_object_add(o, "env_vars", json_object_get(sb->env_vars));
	struct json_object *ports = json_object_new_array();
	for (size_t i = 0; i < sb->nports; i++) {
		struct json_object *p = json_object_new_object();
		json_object_object_add(p, "id", json_object_new_string(sb->ports[i].id));
		json_object_object_add(p, "sandbox_id", json_object_new_string(sb->id));
		json_object_object_add(p, "host_port", json_object_new_int(sb->ports[i].host_port));
		json_object_object_add(p, "container_port", json_object_new_int(sb->ports[i].container_port));
		json_object_array_add(ports, p);
	}
	json_object_object_add(o, "port_mappings", ports);
	json_object_object_add(o, "setup_output", str_or_null(sb->setup_output));
	json_object_object_add(o, "last_activity", api_time_json(sb->last_activity_us));
	json_object_object_add(o, "created_at", api_time_json(sb->created_at_us));
	json_object_object_add(o, "expires_at", api_time_json(sb->expires_at_us));
	json_object_object_add(o, "deleted_at", api_time_json(sb->deleted_at_us));
	return o;
}

/* A command record: its status, how it ended, the command as given. */
struct json_object *api_command_json(const struct command_record *rec)
{
	const struct command_info *i = &rec->info;
	bool ended = i->status != COMMAND_RUNNING;
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(i->id));
	json_object_object_add(o, "sandbox_id", json_object_new_string(i->sandbox_id));
	json_object_object_add(o, "command", json_tokener_parse(rec->command));
	json_object_object_add(o, "status", json_object_new_string(command_status_name(i->status)));
	json_object_object_add(o, "exit_code",
			       i->status == COMMAND_EXITED ? json_object_new_int(i->exit_code) : NULL);
	json_object_object_add(o, "signal", ended && i->signal > 0 ? json_object_new_int(i->signal) : NULL);
	json_object_object_add(o, "timed_out", json_object_new_boolean(i->timed_out));
	json_object_object_add(o, "pid", i->pid ? json_object_new_int(i->pid) : NULL);
	json_object_object_add(o, "started_at", api_time_json(1000 * i->started_at));
	json_object_object_add(o, "ended_at", ended ? api_time_json(1000 * i->ended_at) : NULL);
	return o;
}
