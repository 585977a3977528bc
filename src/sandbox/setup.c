/* Setup commands: the workspace's ownership, postCreateCommand and
 * postStartCommand of a devcontainer.json, run one after the other through
 * the sandbox's agent with the container's environment, their output kept up
 * to SETUP_OUTPUT_CAP. A create runs them all; a start runs postStartCommand
 * again. */
#include "agent/protocol.h"
#include "core/strv.h"
#include "setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#include "channel/channel.h"
#include "core/check.h"
#include "core/env.h"
#include "core/utf8.h"

#define SETUP_WINDOW (64 * 1024) /* output in flight from the agent per setup command */

struct setup_run {
	struct agent_channel *ch;
	struct json_object *cmds; /* [{label, argv, user}] */
	size_t next;
	char **env;
	char *cwd;
	struct agent_sub *sub;
	struct evbuffer *out;
	bool truncated;
	setup_done_fn done;
	void *arg;
	char failure[300];
};

static void run_next(struct setup_run *r);
static void on_output(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data, size_t len,
		      bool gap);
static void on_exited(void *arg, const struct agent_exit *e);
static void on_error(void *arg, int code, const char *message);

static void add_command(struct json_object *list, const char *label, struct json_object *cmd,
			const char *user)
{
	struct json_object *argv;
	if (json_object_is_type(cmd, json_type_string)) {
		argv = json_object_new_array();
		json_object_array_add(argv, json_object_new_string("/bin/sh"));
		json_object_array_add(argv, json_object_new_string("-c"));
		json_object_array_add(argv, json_object_get(cmd));
	} else if (json_object_is_type(cmd, json_type_array)) {
		argv = json_object_get(cmd);
	} else if (json_object_is_type(cmd, json_type_object)) {
		/* named commands, run one after the other in document order */
		json_object_object_foreach(cmd, name, sub)
		{
			char sublabel[160];
			snprintf(sublabel, sizeof(sublabel), "%s '%s'", label, name);
			add_command(list, sublabel, sub, user);
		}
		return;
	} else {
		return;
	}
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "label", json_object_new_string(label));
	json_object_object_add(o, "argv", argv);
	if (user)
		json_object_object_add(o, "user", json_object_new_string(user));
	json_object_array_add(list, o);
}

static const char *config_string(struct json_object *config, const char *key)
{
	struct json_object *v;
	if (!json_object_object_get_ex(config, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

struct json_object *setup_commands(struct json_object *config, const char *workspace, enum setup_when when)
{
	struct json_object *list = json_object_new_array();
	const char *user = config_string(config, "remoteUser");
	if (!user)
		user = config_string(config, "containerUser");
	struct json_object *cmd;
	if (when == SETUP_CREATE) {
		if (user && strcmp(user, "root") != 0) {
			/* a fresh volume is root's: hand the workspace to the sandbox user */
			char owner[160];
			snprintf(owner, sizeof(owner), "%s:", user);
			struct json_object *argv = json_object_new_array();
			json_object_array_add(argv, json_object_new_string("chown"));
			json_object_array_add(argv, json_object_new_string(owner));
			json_object_array_add(argv, json_object_new_string(workspace));
			add_command(list, "workspace ownership", argv, "root");
			json_object_put(argv);
		}
		if (json_object_object_get_ex(config, "postCreateCommand", &cmd))
			add_command(list, "postCreateCommand", cmd, user);
	}
	if (json_object_object_get_ex(config, "postStartCommand", &cmd))
		add_command(list, "postStartCommand", cmd, user);
	return list;
}

char **setup_env(struct json_object *container_env, struct json_object *config, struct json_object *env_vars)
{
	struct env_list env = { 0 };
	for (size_t i = 0; container_env && i < json_object_array_length(container_env); i++) {
		const char *kv = json_object_get_string(json_object_array_get_idx(container_env, i));
		if (kv && strchr(kv, '='))
			env_list_set_kv(&env, kv);
	}
	struct json_object *remote;
	if (json_object_object_get_ex(config, "remoteEnv", &remote) &&
	    json_object_is_type(remote, json_type_object)) {
		json_object_object_foreach(remote, key, val)
		{
			if (*key && !strchr(key, '=') && json_object_is_type(val, json_type_string))
				env_list_set(&env, key, strlen(key), json_object_get_string(val));
		}
	}
	json_object_object_foreach(env_vars, key, val)
	{
		env_list_set(&env, key, strlen(key), json_object_get_string(val));
	}
	if (!env.v)
		env_list_put(&env, "PATH", AGENT_DEFAULT_PATH);
	return env.v;
}

struct setup_run *setup_run_start(struct agent_channel *ch, struct json_object *cmds, char **env,
				  const char *cwd, setup_done_fn done, void *arg)
{
	if (json_object_array_length(cmds) == 0) {
		json_object_put(cmds);
		strv_free(env);
		return NULL;
	}
	struct setup_run *r = calloc(1, sizeof(*r));
	CHECK(r != NULL);
	r->ch = ch;
	r->cmds = cmds;
	r->env = env;
	r->cwd = cwd ? strdup(cwd) : NULL;
	r->out = evbuffer_new();
	r->done = done;
	r->arg = arg;
	CHECK(r->out != NULL);
	run_next(r);
	return r;
}

void setup_run_free(struct setup_run *r)
{
	if (!r)
		return;
	setup_run_stop(r);
	json_object_put(r->cmds);
	strv_free(r->env);
	free(r->cwd);
	evbuffer_free(r->out);
	free(r);
}

void setup_run_stop(struct setup_run *r)
{
	if (r->sub)
		agent_sub_close(r->sub);
	r->sub = NULL;
}

char *setup_run_output(const struct setup_run *r)
{
	size_t len = evbuffer_get_length(r->out);
	char *raw = malloc(len + 1);
	CHECK(raw != NULL);
	evbuffer_copyout(r->out, raw, len);
	char *out = utf8_sanitize(raw, len); /* it goes into a text column */
	free(raw);
	return out;
}

static void run_next(struct setup_run *r)
{
	if (r->next >= json_object_array_length(r->cmds)) {
		r->done(NULL, r->arg);
		return;
	}
	struct json_object *cmd = json_object_array_get_idx(r->cmds, r->next++);
	struct json_object *argv_j, *user;
	json_object_object_get_ex(cmd, "argv", &argv_j);
	json_object_object_get_ex(cmd, "user", &user);
	size_t argc = json_object_array_length(argv_j);
	const char **argv = calloc(argc + 1, sizeof(*argv));
	CHECK(argv != NULL);
	for (size_t i = 0; i < argc; i++)
		argv[i] = json_object_get_string(json_object_array_get_idx(argv_j, i));
	struct agent_spawn_req req = {
		.argv = argv,
		.env = (const char *const *)r->env,
		.cwd = r->cwd,
		.user = user ? json_object_get_string(user) : NULL,
		.window = SETUP_WINDOW,
	};
	static const struct agent_sub_ops ops = {
		.output = on_output,
		.exited = on_exited,
		.error = on_error,
	};
	r->truncated = false;
	r->sub = agent_spawn(r->ch, &req, &ops, r);
	free(argv);
}

static void on_output(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data, size_t len,
		      bool gap)
{
	struct setup_run *r = arg;
	size_t room = SETUP_OUTPUT_CAP - evbuffer_get_length(r->out);
	evbuffer_add(r->out, data, len < room ? len : room);
	if (len > room || gap)
		r->truncated = true;
	agent_sub_ack(r->sub, offset + len);
}

static void on_error(void *arg, int code, const char *message)
{
	struct setup_run *r = arg;
	r->sub = NULL;
	snprintf(r->failure, sizeof(r->failure), "setup command: %s", message);
	r->done(r->failure, r->arg);
}

static void on_exited(void *arg, const struct agent_exit *e)
{
	struct setup_run *r = arg;
	r->sub = NULL;
	if (e->exit_code == 0 && e->signal == 0) {
		run_next(r);
		return;
	}
	struct json_object *label;
	json_object_object_get_ex(json_object_array_get_idx(r->cmds, r->next - 1), "label", &label);
	if (e->signal)
		snprintf(r->failure, sizeof(r->failure), "%s was killed by signal %d%s",
			 json_object_get_string(label), e->signal, r->truncated ? " (output truncated)" : "");
	else
		snprintf(r->failure, sizeof(r->failure), "%s exited with code %d%s",
			 json_object_get_string(label), e->exit_code,
			 r->truncated ? " (output truncated)" : "");
	r->done(r->failure, r->arg);
}
