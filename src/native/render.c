/* The native dialect's JSON of the core's structs: a sandbox as monza's
 * object (plus status_reason, template and setup_output), times as RFC 3339
 * in UTC with microseconds, as Go's time.Time marshals them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "core/clock.h"
#include "native/stream.h"
#include "files/agentfs.h"
#include "files/path.h"
#include "internal.h"
#include "preview/host.h"

struct json_object *native_time_json(int64_t us)
{
	if (us <= 0)
		return NULL;
	char buf[CLOCK_RFC3339_LEN];
	clock_rfc3339(us, buf);
	return json_object_new_string(buf);
}

static struct json_object *str_or_null(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

struct json_object *native_sandbox_json(const struct preview_public *pub, const struct sandbox *sb)
{
	bool previews = pub && pub->domain[0];
	char url[512];
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
		if (previews && preview_url(url, sizeof(url), pub, sb->id, sb->ports[i].container_port) > 0)
			json_object_object_add(p, "preview_url", json_object_new_string(url));
		json_object_array_add(ports, p);
	}
	json_object_object_add(o, "port_mappings", ports);
	/* ours: every port at <port>-<preview_host> (published or not) */
	if (previews && preview_host_of(url, sizeof(url), pub, sb->id) > 0)
		json_object_object_add(o, "preview_host", json_object_new_string(url));
	else
		json_object_object_add(o, "preview_host", NULL);
	json_object_object_add(o, "setup_output", str_or_null(sb->setup_output));
	json_object_object_add(o, "last_activity", native_time_json(sb->last_activity_us));
	json_object_object_add(o, "created_at", native_time_json(sb->created_at_us));
	json_object_object_add(o, "expires_at", native_time_json(sb->expires_at_us));
	json_object_object_add(o, "deleted_at", native_time_json(sb->deleted_at_us));
	/* ours: what it asked for at create or PATCH, and its policies */
	json_object_object_add(o, "labels", json_object_get(sb->labels));
	json_object_object_add(o, "cpu",
			       sb->cpu_millis ? json_object_new_double(sb->cpu_millis / 1000.0) : NULL);
	json_object_object_add(o, "memory",
			       sb->memory_bytes ? json_object_new_int64(sb->memory_bytes) : NULL);
	json_object_object_add(o, "idle_timeout",
			       sb->idle_timeout_ms ? json_object_new_int64(sb->idle_timeout_ms / 1000)
						   : NULL);
	json_object_object_add(o, "idle_action",
			       json_object_new_string(sandbox_idle_action_name(sb->idle_action)));
	json_object_object_add(o, "auto_wake", json_object_new_boolean(sb->auto_wake));
	json_object_object_add(o, "private", json_object_new_boolean(sb->is_private));
	struct json_object *pp = json_object_new_array_ext(sb->private_ports.n);
	for (int i = 0; i < sb->private_ports.n; i++)
		json_object_array_add(pp, json_object_new_int(sb->private_ports.port[i]));
	json_object_object_add(o, "private_ports", pp);
	json_object_object_add(o, "network", json_object_new_string(sandbox_network_name(sb->network)));
	json_object_object_add(o, "runtime", json_object_new_string(sandbox_runtime_name(sb->runtime)));
	json_object_object_add(o, "ends_at", native_time_json(sb->ends_at_us));
	json_object_object_add(o, "keepalive_until", native_time_json(sb->keepalive_until_us));
	return o;
}

/* A pool rollout; progress is exactly 1.0 once done. */
static struct json_object *rollout_json(const struct pool_rollout *ro)
{
	struct json_object *o = json_object_new_object();
	double progress = ro->phase == POOL_ROLLOUT_DONE ? 1.0
			  : ro->total > 0		 ? (double)ro->replaced / ro->total
							 : 0.0;
	json_object_object_add(o, "id", str_or_null(ro->id[0] ? ro->id : NULL));
	json_object_object_add(o, "phase", json_object_new_string(pool_rollout_phase_name(ro->phase)));
	json_object_object_add(o, "image", str_or_null(ro->image));
	json_object_object_add(o, "trigger", str_or_null(ro->trigger));
	json_object_object_add(o, "total", json_object_new_int(ro->total));
	json_object_object_add(o, "replaced", json_object_new_int(ro->replaced));
	json_object_object_add(o, "progress", json_object_new_double(progress));
	json_object_object_add(o, "started_at", native_time_json(ro->started_at_us));
	json_object_object_add(o, "completed_at", native_time_json(ro->completed_at_us));
	json_object_object_add(o, "error", str_or_null(ro->error));
	return o;
}

struct json_object *native_pool_json(const struct pool_status *st)
{
	struct json_object *list = json_object_new_array_ext((int)st->n);
	for (size_t i = 0; i < st->n; i++) {
		const struct pool_template_status *t = &st->templates[i];
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "template", json_object_new_string(t->template_name));
		json_object_object_add(o, "target", json_object_new_int(t->target));
		json_object_object_add(o, "warm", json_object_new_int(t->warm));
		json_object_object_add(o, "outdated", json_object_new_int(t->outdated));
		json_object_object_add(o, "creating", json_object_new_int(t->creating));
		json_object_object_add(o, "image", json_object_new_string(t->image));
		json_object_object_add(o, "run_image", str_or_null(t->run_image));
		json_object_object_add(o, "last_error", str_or_null(t->last_error));
		json_object_object_add(o, "last_fill_at", native_time_json(t->last_fill_at_us));
		json_object_object_add(o, "last_claim_at", native_time_json(t->last_claim_at_us));
		json_object_object_add(o, "rollout", rollout_json(&t->rollout));
		json_object_array_add(list, o);
	}
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "templates", list);
	return o;
}

/* A command record: its status, how it ended, the command as given, and
 * whether it is a service (with its port's readiness). */
struct json_object *native_command_json(const struct command_record *rec)
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
	json_object_object_add(o, "started_at", native_time_json(1000 * i->started_at));
	json_object_object_add(o, "ended_at", ended ? native_time_json(1000 * i->ended_at) : NULL);
	/* ours: a service comes back with its sandbox; ready: its port answers now */
	json_object_object_add(o, "service", json_object_new_boolean(i->service));
	json_object_object_add(o, "port", i->port > 0 ? json_object_new_int(i->port) : NULL);
	if (i->service)
		json_object_object_add(o, "ready", i->port > 0 ? json_object_new_boolean(i->ready) : NULL);
	return o;
}

/* ---- the file API ---- */

/* A file's time: RFC 3339 in UTC, whole seconds. */
static struct json_object *file_time_json(int64_t ms)
{
	char buf[CLOCK_RFC3339_LEN];
	clock_rfc3339_seconds(ms * 1000, buf);
	return json_object_new_string(buf);
}

static void add_file(struct json_object *o, const struct agentfs_entry *e)
{
	char mode[8];
	snprintf(mode, sizeof(mode), "%04o", e->mode & 07777);
	json_object_object_add(o, "size", json_object_new_int64((int64_t)e->size));
	json_object_object_add(o, "is_dir", json_object_new_boolean(S_ISDIR(e->mode)));
	json_object_object_add(o, "mode", json_object_new_string(mode));
	json_object_object_add(o, "modified_at", file_time_json(e->mtime_ms));
}

static struct json_object *stat_json(const struct agentfs_result *r)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "exists", json_object_new_boolean(r->exists));
	json_object_object_add(o, "path", json_object_new_string(r->path));
	if (!r->exists) {
		json_object_object_add(o, "size", json_object_new_int(0));
		json_object_object_add(o, "is_dir", json_object_new_boolean(0));
		json_object_object_add(o, "is_file", json_object_new_boolean(0));
		json_object_object_add(o, "is_symlink", json_object_new_boolean(0));
		json_object_object_add(o, "mode", NULL);
		json_object_object_add(o, "modified_at", NULL);
		return o;
	}
	add_file(o, &r->entry);
	json_object_object_add(o, "is_file", json_object_new_boolean(S_ISREG(r->entry.mode)));
	json_object_object_add(o, "is_symlink", json_object_new_boolean(r->entry.link));
	json_object_object_add(o, "uid", json_object_new_int64(r->entry.uid));
	json_object_object_add(o, "gid", json_object_new_int64(r->entry.gid));
	return o;
}

static struct json_object *doc_json(const struct agentfs_result *r)
{
	static const char *const types[] = {
		[AGENTFS_DOC_TEXT] = "text", [AGENTFS_DOC_IMAGE] = "image", [AGENTFS_DOC_BINARY] = "binary"
	};
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "type", json_object_new_string(types[r->doc]));
	if (r->doc == AGENTFS_DOC_TEXT) {
		json_object_object_add(o, "content",
				       json_object_new_string_len((const char *)r->data, (int)r->data_len));
		json_object_object_add(o, "truncated", json_object_new_boolean(r->truncated));
		json_object_object_add(o, "mime_type", json_object_new_string(r->mime));
	} else {
		json_object_object_add(o, "mime_type", json_object_new_string(r->mime));
		json_object_object_add(o, "data", stream_base64_string(r->data, r->data_len));
		if (r->doc == AGENTFS_DOC_BINARY)
			json_object_object_add(o, "truncated", json_object_new_boolean(r->truncated));
	}
	json_object_object_add(o, "size", json_object_new_int64((int64_t)r->size));
	return o;
}

struct json_object *native_file_json(const struct agentfs_result *r)
{
	struct json_object *o;
	switch (r->call) {
	case AGENTFS_STAT:
		return stat_json(r);
	case AGENTFS_LIST:
		o = json_object_new_array_ext((int)r->nentries);
		for (size_t i = 0; i < r->nentries; i++) {
			struct json_object *e = json_object_new_object();
			json_object_object_add(e, "name",
					       json_object_new_string(files_path_base(r->entries[i].path)));
			json_object_object_add(e, "path", json_object_new_string(r->entries[i].path));
			add_file(e, &r->entries[i]);
			json_object_array_add(o, e);
		}
		return o;
	case AGENTFS_READ_DOC:
		return doc_json(r);
	default:
		break;
	}
	o = json_object_new_object();
	switch (r->call) {
	case AGENTFS_MKDIR:
		json_object_object_add(o, "path", json_object_new_string(r->path));
		json_object_object_add(o, "created", json_object_new_boolean(r->created));
		break;
	case AGENTFS_REMOVE:
		json_object_object_add(o, "path", json_object_new_string(r->path));
		json_object_object_add(o, "removed", json_object_new_boolean(1));
		break;
	case AGENTFS_MOVE:
		json_object_object_add(o, "from", json_object_new_string(r->path));
		json_object_object_add(o, "to", json_object_new_string(r->path2));
		break;
	case AGENTFS_EDIT: {
		char msg[FILES_PATH_MAX + 64];
		snprintf(msg, sizeof(msg), "replaced 1 occurrence in %s", r->path);
		json_object_object_add(o, "path", json_object_new_string(r->path));
		json_object_object_add(o, "replacements", json_object_new_int(1));
		json_object_object_add(o, "size", json_object_new_int64((int64_t)r->size));
		json_object_object_add(o, "message", json_object_new_string(msg));
		break;
	}
	case AGENTFS_WRITE:
		json_object_object_add(o, "path", json_object_new_string(r->path));
		json_object_object_add(o, "size", json_object_new_int64((int64_t)r->size));
		break;
	default:
		break;
	}
	return o;
}

struct json_object *native_preview_token_json(const struct preview_public *pub,
					      const struct sandbox_result *res, int port)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "token", json_object_new_string(res->token));
	json_object_object_add(o, "expires_at", native_time_json(res->token_expires_s * 1000000));
	char url[512];
	int n = pub && pub->domain[0] ? preview_url(url, sizeof(url), pub, res->sb->id, port) : -1;
	if (n > 0 && (size_t)n + sizeof("?sandbar_token=") + strlen(res->token) <= sizeof(url)) {
		snprintf(url + n, sizeof(url) - (size_t)n, "?sandbar_token=%s", res->token);
		json_object_object_add(o, "url", json_object_new_string(url));
	} else {
		json_object_object_add(o, "url", NULL);
	}
	return o;
}
