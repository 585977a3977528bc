/* Creating a sandbox: a small state machine that walks from the database row
 * through image, container (with its volume), start, ports and setup commands to
 * `running`, and on any failure removes what it made and records `error`.
 * It outlives the request that started it: a client that goes away (or asked
 * not to wait) does not stop a create half way. */
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>

#include "core/config.h"
#include "core/log.h"
#include "core/utf8.h"
#include "docker/engine.h"
#include "docker/tar.h"
#include "channel/channel.h"
#include "internal.h"
#include "sandbox/container_spec.h"
#include "sandbox/template.h"

/* Output kept from setup commands (postCreateCommand, postStartCommand). */
#define SETUP_OUTPUT_CAP (64 * 1024)
#define SETUP_WINDOW	 (64 * 1024) /* output in flight from the agent per setup command */
#define NAME_MAX_LEN	 128

enum create_state {
	CREATE_INSERT,	     /* writing the `creating` row */
	CREATE_IMAGE,	     /* image present, or built */
	CREATE_CONTAINER,    /* container created (not started), with its workspace volume */
	CREATE_AGENT,	     /* the agent copied in (archive PUT) before the first start */
	CREATE_START,	     /* container started */
	CREATE_INSPECT,	     /* published ports read back */
	CREATE_SETUP,	     /* workspace ownership, postCreateCommand, postStartCommand */
	CREATE_MARK_RUNNING, /* row -> running, port mappings */
	CREATE_CLEANUP,	     /* after a failure: container and volume removed */
	CREATE_MARK_ERROR,   /* row -> error with the reason */
	CREATE_DONE,
	CREATE_STATE_MAX
};

static const char *const create_state_names[CREATE_STATE_MAX] = {
	"insert", "image",	  "container", "agent",	     "start", "inspect",
	"setup",  "mark_running", "cleanup",   "mark_error", "done",
};

struct create_op {
	struct sandbox_service *svc;
	enum create_state state;
	struct sandbox_call *call; /* the waiting caller, NULL once answered or gone */
	const struct template *tpl;
	char id[37];
	char log_prefix[48];
	char name[NAME_MAX_LEN + 1];
	char container_id[80];
	char volume[64];
	struct json_object *env_vars; /* owned */
	struct json_object *setup;    /* array of {"argv":[...], "user":...} still to run */
	size_t setup_next;
	struct evbuffer *setup_out;
	bool setup_truncated;
	struct json_object *image_cmd; /* the image's Entrypoint + Cmd, for the agent to start */
	char image_user[128];	       /* the image's USER, "" when none */
	struct json_object *base_env;  /* the container's Env (image + template + env_vars) */
	struct agent_sub *sub;	       /* the setup command running through the agent */
	int *host_ports;	       /* parallel to tpl->ports */

	struct docker_call *dcall;
	struct registry_wait *wait;
	struct image_wait *iwait;
	struct event *timeout;
	bool timed_out;
	bool row_gone; /* deleted while we were creating */
	char reason[512];
	char actor[64];
};

static void create_set_state(struct create_op *op, enum create_state next);
static void create_fail(struct create_op *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void create_free(struct create_op *op);
static void step_inserted(const struct core_error *err, const struct sandbox *after, void *arg);
static void step_image(const char *err, void *arg);
static void step_image_inspected(struct json_object *info, bool missing, const char *err, void *arg);
static void create_container(struct create_op *op);
static void step_container(const char *id, const char *err, void *arg);
static void step_agent_installed(const char *err, void *arg);
static void step_started(const char *err, void *arg);
static void step_inspected(struct json_object *info, bool missing, const char *err, void *arg);
static void setup_next(struct create_op *op);
static void setup_output(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data,
			 size_t len, bool gap);
static void setup_exited(void *arg, const struct agent_exit *e);
static void setup_error(void *arg, int code, const char *message);
static void step_marked_running(const struct core_error *err, const struct sandbox *after, void *arg);
static void step_cleaned(const char *err, void *arg);
static void step_marked_error(const struct core_error *err, const struct sandbox *after, void *arg);
static void create_timed_out(evutil_socket_t fd, short what, void *arg);
static struct json_object *setup_commands(const struct template *t);
static struct json_object *setup_env(const struct create_op *op);
static char *setup_output_text(struct create_op *op);

/* Legal moves: forward one step, or to cleanup from anything that may have made Docker objects. */
static bool create_transition_legal(enum create_state from, enum create_state to)
{
	if (to == CREATE_CLEANUP)
		return from >= CREATE_IMAGE && from <= CREATE_MARK_RUNNING;
	if (from == CREATE_INSERT)
		return to == CREATE_IMAGE || to == CREATE_DONE;
	if (from == CREATE_MARK_RUNNING)
		return to == CREATE_DONE;
	if (from == CREATE_CLEANUP)
		return to == CREATE_MARK_ERROR || to == CREATE_DONE;
	return to == from + 1;
}

static void create_set_state(struct create_op *op, enum create_state next)
{
	CHECK(next < CREATE_STATE_MAX);
	CHECK(create_transition_legal(op->state, next));
	log_msg(LOG_LEVEL_DEBUG, op->log_prefix, "create %s -> %s", create_state_names[op->state],
		create_state_names[next]);
	op->state = next;
}

struct sandbox_call *sandbox_create(struct sandbox_service *svc, const struct sandbox_create_params *p,
				    sandbox_result_fn cb, void *arg)
{
	struct sandbox_call *call = call_new(svc, cb, arg);
	const char *tname = p->template_name ? p->template_name : "go";
	if (!template_name_valid(tname)) {
		call_fail_later(call, CORE_INVALID, "invalid_template",
				"template must be a plain name ([A-Za-z0-9._-], no '/' or '..')");
		return call;
	}
	const struct template *tpl = template_set_find(svc->templates, tname);
	if (!tpl) {
		call_fail_later(call, CORE_INVALID, "unknown_template", "no template named '%s'", tname);
		return call;
	}
	if (p->name && (strlen(p->name) == 0 || strlen(p->name) > NAME_MAX_LEN)) {
		call_fail_later(call, CORE_INVALID, "invalid_name", "name must be 1 to %d bytes",
				NAME_MAX_LEN);
		return call;
	}

	struct create_op *op = calloc(1, sizeof(*op));
	CHECK(op != NULL);
	op->svc = svc;
	op->state = CREATE_INSERT;
	op->tpl = tpl;
	uuid_t u;
	uuid_generate_random(u);
	uuid_unparse_lower(u, op->id);
	snprintf(op->log_prefix, sizeof(op->log_prefix), "sandbox=%s", op->id);
	snprintf(op->actor, sizeof(op->actor), "%s", p->actor ? p->actor : "create");
	if (p->name)
		snprintf(op->name, sizeof(op->name), "%s", p->name);
	else
		snprintf(op->name, sizeof(op->name), "sandbox-%s", tname);
	sandbox_volume_name(op->id, op->volume);
	op->env_vars = p->env_vars ? json_object_get(p->env_vars) : json_object_new_object();
	op->setup = setup_commands(tpl);
	op->setup_out = evbuffer_new();
	op->host_ports = calloc(tpl->nports ? tpl->nports : 1, sizeof(int));
	CHECK(op->setup_out != NULL && op->host_ports != NULL);

	op->call = call;
	call->owner = &op->call;
	call->pending = !p->wait; /* answered as soon as the row exists (step_inserted) */
	op->timeout = evtimer_new(svc->base, create_timed_out, op);
	struct timeval tv = { .tv_sec = (time_t)(svc->cfg->create_timeout_ms / 1000),
			      .tv_usec = (suseconds_t)(svc->cfg->create_timeout_ms % 1000) * 1000 };
	evtimer_add(op->timeout, &tv);

	struct sandbox_insert ins = {
		.id = op->id,
		.name = op->name,
		.template_name = tpl->name,
		.image = template_image(tpl),
		.workspace_mount = tpl->workspace_folder,
		.config = tpl->config,
		.env_vars = op->env_vars,
		.actor = op->actor,
	};
	log_msg(LOG_LEVEL_INFO, op->log_prefix, "create name=%s template=%s", op->name, tpl->name);
	op->wait = registry_insert(svc->reg, &ins, step_inserted, op);
	return call;
}

static void step_inserted(const struct core_error *err, const struct sandbox *after, void *arg)
{
	struct create_op *op = arg;
	op->wait = NULL;
	if (err) {
		log_msg(LOG_LEVEL_WARN, op->log_prefix, "create: insert failed: %s", err->message);
		if (op->call)
			call_fail(op->call, err);
		create_set_state(op, CREATE_DONE);
		create_free(op);
		return;
	}
	if (op->call && op->call->pending) {
		/* wait=false: answer with the `creating` row and go on without the caller */
		struct sandbox_call *call = op->call;
		op->call = NULL;
		call->owner = NULL;
		struct sandbox_result r = { .sb = after, .pending = true };
		call_finish(call, &r);
	}
	create_set_state(op, CREATE_IMAGE);
	if (op->timed_out) {
		create_fail(op, "timed out");
		return;
	}
	op->iwait = image_ensure(op->svc, op->tpl, step_image, op);
}

static void step_image(const char *err, void *arg)
{
	struct create_op *op = arg;
	op->iwait = NULL;
	if (err) {
		create_fail(op, "image: %s", err);
		return;
	}
	if (op->tpl->override_command) {
		create_container(op);
		return;
	}
	/* the agent becomes the entrypoint and starts the image's own command */
	op->dcall = docker_image_inspect(op->svc->docker, template_image(op->tpl), step_image_inspected, op);
}

static void step_image_inspected(struct json_object *info, bool missing, const char *err, void *arg)
{
	struct create_op *op = arg;
	op->dcall = NULL;
	if (err || missing) {
		create_fail(op, "image inspect: %s", err ? err : "image vanished");
		return;
	}
	struct json_object *config, *part;
	op->image_cmd = json_object_new_array();
	if (json_object_object_get_ex(info, "Config", &config)) {
		if (json_object_object_get_ex(config, "User", &part) &&
		    json_object_is_type(part, json_type_string))
			snprintf(op->image_user, sizeof(op->image_user), "%s", json_object_get_string(part));
		const char *keys[] = { "Entrypoint", "Cmd" };
		for (size_t k = 0; k < ARRAY_LEN(keys); k++) {
			if (!json_object_object_get_ex(config, keys[k], &part) ||
			    !json_object_is_type(part, json_type_array))
				continue;
			for (size_t i = 0; i < json_object_array_length(part); i++)
				json_object_array_add(op->image_cmd,
						      json_object_get(json_object_array_get_idx(part, i)));
		}
	}
	create_container(op);
}

static void create_container(struct create_op *op)
{
	/* Docker makes the workspace volume (labelled) along with the container */
	create_set_state(op, CREATE_CONTAINER);
	struct container_spec_input in = {
		.tpl = op->tpl,
		.cfg = op->svc->cfg,
		.sandbox_id = op->id,
		.cluster = op->svc->cluster,
		.image = template_image(op->tpl),
		.volume = op->volume,
		.env_vars = op->env_vars,
		.image_cmd = op->image_cmd,
		.image_user = op->image_user,
	};
	char cname[64];
	sandbox_container_name(op->id, cname);
	op->dcall = docker_container_create(op->svc->docker, cname, container_spec_build(&in), step_container,
					    op);
}

static void step_container(const char *id, const char *err, void *arg)
{
	struct create_op *op = arg;
	op->dcall = NULL;
	if (err) {
		create_fail(op, "container: %s", err);
		return;
	}
	snprintf(op->container_id, sizeof(op->container_id), "%s", id);
	/* the agent is the container's init: it must be in place before the first start */
	create_set_state(op, CREATE_AGENT);
	struct evbuffer *tar = evbuffer_new();
	CHECK(tar != NULL);
	struct tar_entry dir = { .name = ".sandbar/", .type = TAR_DIR, .mode = 0755, .mtime = time(NULL) };
	struct tar_entry bin = { .name = ".sandbar/agent",
				 .type = TAR_FILE,
				 .size = op->svc->agent_len,
				 .mode = 0755,
				 .mtime = dir.mtime };
	CHECK(tar_write_header(tar, &dir) == 0 && tar_write_header(tar, &bin) == 0);
	evbuffer_add(tar, op->svc->agent_bin, op->svc->agent_len);
	tar_write_padding(tar, op->svc->agent_len);
	tar_write_end(tar);
	op->dcall = docker_container_put_archive(op->svc->docker, op->container_id, "/", tar,
						 step_agent_installed, op);
	evbuffer_free(tar);
	if (!op->dcall)
		create_fail(op, "agent: cannot upload");
}

static void step_agent_installed(const char *err, void *arg)
{
	struct create_op *op = arg;
	op->dcall = NULL;
	if (err) {
		create_fail(op, "installing the agent: %s", err);
		return;
	}
	create_set_state(op, CREATE_START);
	op->dcall = docker_container_start(op->svc->docker, op->container_id, step_started, op);
}

static void step_started(const char *err, void *arg)
{
	struct create_op *op = arg;
	op->dcall = NULL;
	if (err) {
		create_fail(op, "start: %s", err);
		return;
	}
	create_set_state(op, CREATE_INSPECT);
	op->dcall = docker_container_inspect(op->svc->docker, op->container_id, step_inspected, op);
}

static void step_inspected(struct json_object *info, bool missing, const char *err, void *arg)
{
	struct create_op *op = arg;
	op->dcall = NULL;
	if (err || missing) {
		create_fail(op, "inspect: %s", err ? err : "container vanished");
		return;
	}
	struct json_object *ns, *ports, *config, *env;
	/* commands through the agent get exactly the env they are given: start from the container's */
	if (json_object_object_get_ex(info, "Config", &config) &&
	    json_object_object_get_ex(config, "Env", &env) && json_object_is_type(env, json_type_array))
		op->base_env = json_object_get(env);
	if (!json_object_object_get_ex(info, "NetworkSettings", &ns) ||
	    !json_object_object_get_ex(ns, "Ports", &ports)) {
		create_fail(op, "inspect: no NetworkSettings.Ports");
		return;
	}
	for (size_t i = 0; i < op->tpl->nports; i++) {
		char key[16];
		struct json_object *list, *first, *hp;
		snprintf(key, sizeof(key), "%d/tcp", op->tpl->ports[i]);
		if (!json_object_object_get_ex(ports, key, &list) ||
		    !json_object_is_type(list, json_type_array) || json_object_array_length(list) == 0 ||
		    !(first = json_object_array_get_idx(list, 0)) ||
		    !json_object_object_get_ex(first, "HostPort", &hp)) {
			create_fail(op, "inspect: port %d was not published", op->tpl->ports[i]);
			return;
		}
		op->host_ports[i] = atoi(json_object_get_string(hp));
	}
	create_set_state(op, CREATE_SETUP);
	setup_next(op);
}

static void setup_next(struct create_op *op)
{
	if (op->timed_out) {
		create_fail(op, "timed out");
		return;
	}
	if (op->setup_next >= json_object_array_length(op->setup)) {
		create_set_state(op, CREATE_MARK_RUNNING);
		char *out = setup_output_text(op);
		struct sandbox_transition t = {
			.id = op->id,
			.from = SANDBOX_CREATING,
			.to = SANDBOX_RUNNING,
			.actor = op->actor,
			.container_id = op->container_id,
			.setup_output = out,
			.host_ports = op->host_ports,
			.container_ports = op->tpl->ports,
			.nports = op->tpl->nports,
			.touch = true,
		};
		op->wait = registry_transition(op->svc->reg, &t, step_marked_running, op);
		free(out);
		return;
	}
	struct json_object *cmd = json_object_array_get_idx(op->setup, op->setup_next++);
	struct json_object *argv_j, *user;
	json_object_object_get_ex(cmd, "argv", &argv_j);
	json_object_object_get_ex(cmd, "user", &user);
	struct json_object *env_j = setup_env(op);
	size_t argc = json_object_array_length(argv_j), envc = json_object_array_length(env_j);
	const char **argv = calloc(argc + 1, sizeof(*argv));
	const char **env = calloc(envc + 1, sizeof(*env));
	CHECK(argv != NULL && env != NULL);
	for (size_t i = 0; i < argc; i++)
		argv[i] = json_object_get_string(json_object_array_get_idx(argv_j, i));
	for (size_t i = 0; i < envc; i++)
		env[i] = json_object_get_string(json_object_array_get_idx(env_j, i));
	struct agent_spawn_req req = {
		.argv = argv,
		.env = env,
		.cwd = op->tpl->workspace_folder,
		.user = user ? json_object_get_string(user) : NULL,
		.window = SETUP_WINDOW,
	};
	static const struct agent_sub_ops ops = {
		.output = setup_output,
		.exited = setup_exited,
		.error = setup_error,
	};
	op->setup_truncated = false;
	struct agent_channel *ch = channels_get(op->svc->channels, op->id, op->container_id);
	op->sub = agent_spawn(ch, &req, &ops, op);
	free(argv);
	free(env);
	json_object_put(env_j);
}

static void setup_output(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data,
			 size_t len, bool gap)
{
	struct create_op *op = arg;
	size_t room = SETUP_OUTPUT_CAP - evbuffer_get_length(op->setup_out);
	evbuffer_add(op->setup_out, data, len < room ? len : room);
	if (len > room || gap)
		op->setup_truncated = true;
	agent_sub_ack(op->sub, offset + len);
}

static void setup_error(void *arg, int code, const char *message)
{
	struct create_op *op = arg;
	op->sub = NULL;
	create_fail(op, "setup command: %s", message);
}

static void setup_exited(void *arg, const struct agent_exit *e)
{
	struct create_op *op = arg;
	op->sub = NULL;
	if (e->exit_code != 0 || e->signal != 0) {
		struct json_object *cmd = json_object_array_get_idx(op->setup, op->setup_next - 1);
		struct json_object *label;
		json_object_object_get_ex(cmd, "label", &label);
		if (e->signal)
			create_fail(op, "%s was killed by signal %d%s", json_object_get_string(label),
				    e->signal, op->setup_truncated ? " (output truncated)" : "");
		else
			create_fail(op, "%s exited with code %d%s", json_object_get_string(label),
				    e->exit_code, op->setup_truncated ? " (output truncated)" : "");
		return;
	}
	setup_next(op);
}

static void step_marked_running(const struct core_error *err, const struct sandbox *after, void *arg)
{
	struct create_op *op = arg;
	op->wait = NULL;
	if (err && err->kind == CORE_CONFLICT) {
		op->row_gone = true; /* deleted (or failed by another instance) meanwhile */
		create_fail(op, "the sandbox went %s while being created",
			    err->status ? err->status : "away");
		return;
	}
	if (err) {
		create_fail(op, "recording the running sandbox: %s", err->message);
		return;
	}
	create_set_state(op, CREATE_DONE);
	log_msg(LOG_LEVEL_INFO, op->log_prefix, "running container=%.12s", op->container_id);
	reaper_note_deadline(op->svc->reaper, op->svc->cfg->sandbox_idle_timeout_ms);
	if (op->call) {
		struct sandbox_call *call = op->call;
		op->call = NULL;
		call->owner = NULL;
		struct sandbox_result r = { .sb = after };
		call_finish(call, &r);
	}
	create_free(op);
}

static void create_fail(struct create_op *op, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(op->reason, sizeof(op->reason), fmt, ap);
	va_end(ap);
	log_msg(LOG_LEVEL_WARN, op->log_prefix, "create failed in %s: %s", create_state_names[op->state],
		op->reason);
	create_set_state(op, CREATE_CLEANUP);
	sandbox_destroy(op->svc, op->id, step_cleaned, op);
}

static void step_cleaned(const char *err, void *arg)
{
	struct create_op *op = arg;
	if (err)
		log_msg(LOG_LEVEL_WARN, op->log_prefix, "cleanup after failed create: %s", err);
	if (op->row_gone) {
		create_set_state(op, CREATE_DONE);
		if (op->call) {
			struct core_error e;
			core_error_set(&e, CORE_CONFLICT, "sandbox_deleted",
				       "the sandbox was deleted while being created");
			call_fail(op->call, &e);
		}
		create_free(op);
		return;
	}
	create_set_state(op, CREATE_MARK_ERROR);
	char *out = setup_output_text(op);
	struct sandbox_transition t = {
		.id = op->id,
		.from = SANDBOX_CREATING,
		.to = SANDBOX_ERROR,
		.reason = op->reason,
		.actor = op->actor,
		.setup_output = out,
	};
	op->wait = registry_transition(op->svc->reg, &t, step_marked_error, op);
	free(out);
}

static void step_marked_error(const struct core_error *err, const struct sandbox *after, void *arg)
{
	struct create_op *op = arg;
	op->wait = NULL;
	if (err)
		log_msg(LOG_LEVEL_ERROR, op->log_prefix, "could not record the failed create: %s",
			err->message);
	create_set_state(op, CREATE_DONE);
	if (op->call) {
		struct core_error e;
		core_error_set(&e, CORE_INTERNAL, "sandbox_create_failed", "sandbox %s failed: %s", op->id,
			       op->reason);
		call_fail(op->call, &e);
	}
	create_free(op);
}

static void create_timed_out(evutil_socket_t fd, short what, void *arg)
{
	struct create_op *op = arg;
	op->timed_out = true;
	/* a write in flight finishes first (its step checks timed_out); Docker steps stop now */
	if (op->iwait) {
		image_wait_cancel(op->iwait);
		op->iwait = NULL;
		create_fail(op, "timed out waiting for the image");
	} else if (op->dcall) {
		docker_call_cancel(op->dcall);
		op->dcall = NULL;
		create_fail(op, "timed out in %s", create_state_names[op->state]);
	} else if (op->sub) {
		agent_sub_close(op->sub);
		op->sub = NULL;
		create_fail(op, "timed out in %s", create_state_names[op->state]);
	}
}

static void create_free(struct create_op *op)
{
	CHECK(op->state == CREATE_DONE);
	CHECK(!op->dcall && !op->wait && !op->iwait && !op->sub);
	if (op->call) {
		op->call->owner = NULL;
		struct core_error e;
		core_error_set(&e, CORE_INTERNAL, "internal", "create ended without an answer");
		call_fail(op->call, &e);
	}
	event_free(op->timeout);
	json_object_put(op->env_vars);
	json_object_put(op->setup);
	json_object_put(op->image_cmd);
	json_object_put(op->base_env);
	evbuffer_free(op->setup_out);
	free(op->host_ports);
	free(op);
}

/* ---- setup commands ---- */

static void add_setup(struct json_object *list, const char *label, struct json_object *cmd, const char *user)
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
			add_setup(list, sublabel, sub, user);
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

static struct json_object *setup_commands(const struct template *t)
{
	struct json_object *list = json_object_new_array();
	const char *user = t->remote_user ? t->remote_user : t->container_user;
	if (user && strcmp(user, "root") != 0) {
		/* a fresh volume is root's: hand the workspace to the sandbox user */
		char owner[160];
		snprintf(owner, sizeof(owner), "%s:", user);
		struct json_object *argv = json_object_new_array();
		json_object_array_add(argv, json_object_new_string("chown"));
		json_object_array_add(argv, json_object_new_string(owner));
		json_object_array_add(argv, json_object_new_string(t->workspace_folder));
		add_setup(list, "workspace ownership", argv, "root");
		json_object_put(argv);
	}
	if (t->post_create)
		add_setup(list, "postCreateCommand", t->post_create, user);
	if (t->post_start)
		add_setup(list, "postStartCommand", t->post_start, user);
	return list;
}

/* Adds "K=V", replacing an earlier K: the agent passes env as given, and of
 * two equal keys the first would win in the command. */
static void env_set(struct json_object *env, const char *kv)
{
	const char *eq = strchr(kv, '=');
	size_t klen = eq ? (size_t)(eq - kv) + 1 : strlen(kv);
	for (size_t i = 0; i < json_object_array_length(env); i++) {
		const char *old = json_object_get_string(json_object_array_get_idx(env, i));
		if (strncmp(old, kv, klen) == 0) {
			json_object_array_put_idx(env, i, json_object_new_string(kv));
			return;
		}
	}
	json_object_array_add(env, json_object_new_string(kv));
}

/* The container's env (image, containerEnv, env_vars), then remoteEnv, then env_vars on top. */
static struct json_object *setup_env(const struct create_op *op)
{
	struct json_object *env = json_object_new_array();
	for (size_t i = 0; op->base_env && i < json_object_array_length(op->base_env); i++)
		env_set(env, json_object_get_string(json_object_array_get_idx(op->base_env, i)));
	for (size_t i = 0; op->tpl->remote_env && op->tpl->remote_env[i]; i++)
		env_set(env, op->tpl->remote_env[i]);
	json_object_object_foreach(op->env_vars, key, val)
	{
		char kv[8192];
		snprintf(kv, sizeof(kv), "%s=%s", key, json_object_get_string(val));
		env_set(env, kv);
	}
	return env;
}

/* NUL-terminated copy of the setup output as valid UTF-8 (it goes into a text column). */
static char *setup_output_text(struct create_op *op)
{
	size_t len = evbuffer_get_length(op->setup_out);
	char *raw = malloc(len + 1);
	CHECK(raw != NULL);
	evbuffer_copyout(op->setup_out, raw, len);
	char *out = utf8_sanitize(raw, len);
	free(raw);
	return out;
}
