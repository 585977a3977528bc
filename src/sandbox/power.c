/* Stopping, starting and restarting a sandbox: a small state machine per
 * request that moves the sandbox through the registry (running -> stopping ->
 * stopped, stopped -> starting -> running) around Docker's stop and start.
 * The container and its workspace volume stay; a start publishes its ports
 * again (Docker may give new host ports) and runs postStartCommand. A
 * recreate is a restart whose stopped container is made again from the
 * sandbox's image (changed by an update), the workspace volume kept. Like a
 * create, it outlives the request that asked for it. */
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "channel/channel.h"
#include "core/config.h"
#include "core/log.h"
#include "docker/engine.h"
#include "internal.h"
#include "sandbox/container_spec.h"
#include "sandbox/template.h"
#include "setup.h"

enum power_kind { POWER_STOP, POWER_START, POWER_RESTART, POWER_RECREATE };

enum power_state {
	POWER_READ,	     /* the sandbox as it is now */
	POWER_MARK_STOPPING, /* running -> stopping */
	POWER_STOPPING,	     /* Docker stops the container (the agent ends every command first) */
	POWER_MARK_STOPPED,  /* stopping -> stopped */
	POWER_MARK_STARTING, /* stopped -> starting (Docker's events leave a starting sandbox alone) */
	POWER_IMAGE,	     /* a recreate: the image present, with the agent baked in */
	POWER_REMOVE,	     /* ... the old container removed (the volume stays) */
	POWER_CREATE,	     /* ... the new one created */
	POWER_STARTING,	     /* Docker starts it */
	POWER_INSPECT,	     /* published ports and env read back */
	POWER_SETUP,	     /* postStartCommand */
	POWER_MARK_RUNNING,  /* starting -> running */
	POWER_UNDO,	     /* after a failure: the status Docker's state says */
	POWER_MARK_ERROR,    /* a recreate failed: stopped -> error */
	POWER_DONE,
	POWER_STATE_MAX
};

static const char *const state_names[POWER_STATE_MAX] = {
	"read",	 "mark_stopping", "stopping", "mark_stopped", "mark_starting",
	"image", "remove",	  "create",   "starting",     "inspect",
	"setup", "mark_running",  "undo",     "mark_error",   "done",
};

struct power_op {
	struct sandbox_service *svc;
	struct sandbox_call *call; /* NULL once the caller went away */
	enum power_kind kind;
	enum power_state state;
	char id[37];
	char actor[64];
	char container[80];
	struct sandbox_ref *ref; /* the sandbox as read at the start */
	struct registry_wait *wait;
	struct admission_wait *admit; /* a start's room, held until it is `starting` */
	struct docker_call *dcall;
	struct setup_run *setup;
	struct image_wait *iwait; /* a recreate's image */
	char run_image[96];	  /* ... its tag */
	bool recreated;		  /* op->container is the new container */
	int *host_ports, *container_ports;
	size_t nports;
	struct json_object *container_env;
	char reason[320];      /* a postStartCommand that failed: the sandbox runs, and says so */
	struct core_error err; /* the answer, when it failed */
	bool failed;
	bool accepted;		       /* the caller hears once the first move is written */
	enum sandbox_status undo_from; /* where the failed Docker step left the sandbox */
	/* the move in flight, sent again while the database is away after Docker acted */
	struct {
		enum sandbox_status from, to;
		char reason[320];
		bool has_reason;
		registry_moved_fn cb;
		struct move_retry again;
	} mark;
};

static void power_set_state(struct power_op *op, enum power_state next);
static void power_read(struct sandbox_ref *ref, const struct core_error *err, void *arg);
static void power_stop(struct power_op *op);
static void power_marked_stopping(const struct core_error *err, const struct sandbox *after, void *arg);
static void power_docker_stopped(const char *err, void *arg);
static void power_marked_stopped(const struct core_error *err, const struct sandbox *after, void *arg);
static void power_start(struct power_op *op);
static void power_admitted(const struct core_error *err, void *arg);
static void power_marked_starting(const struct core_error *err, const struct sandbox *after, void *arg);
static void power_docker_started(const char *err, void *arg);
static void power_inspected(struct json_object *info, bool missing, const char *err, void *arg);
static void power_setup_done(const char *failure, void *arg);
static void power_mark_running(struct power_op *op);
static void power_marked_running(const struct core_error *err, const struct sandbox *after, void *arg);
static void power_undo(struct power_op *op, const char *docker_err);
static void power_undo_inspected(struct json_object *info, bool missing, const char *err, void *arg);
static void power_undone(const struct core_error *err, const struct sandbox *after, void *arg);
static void power_finish(struct power_op *op, const struct sandbox *after);
static void power_mark_send(evutil_socket_t fd, short what, void *arg);
static void power_recreate(struct power_op *op);

/* Forward one step, or to undo from a Docker step, or done from anywhere. */
static bool power_transition_legal(enum power_state from, enum power_state to)
{
	if (to == POWER_DONE)
		return true;
	if (to == POWER_UNDO)
		return from == POWER_STOPPING || from == POWER_STARTING || from == POWER_INSPECT;
	if (from == POWER_READ)
		return to == POWER_MARK_STOPPING || to == POWER_MARK_STARTING;
	if (to == POWER_MARK_ERROR)
		return from == POWER_IMAGE || from == POWER_REMOVE || from == POWER_CREATE;
	if (from == POWER_MARK_STOPPED)
		return to == POWER_MARK_STARTING; /* a restart goes on */
	if (from == POWER_MARK_STARTING)
		return to == POWER_STARTING || to == POWER_IMAGE; /* a recreate makes its container first */
	return to == from + 1;
}

static void power_set_state(struct power_op *op, enum power_state next)
{
	CHECK(next < POWER_STATE_MAX && power_transition_legal(op->state, next));
	log_debug("sandbox=%s power %s -> %s", op->id, state_names[op->state], state_names[next]);
	op->state = next;
}

static struct sandbox_call *power_begin(struct sandbox_service *svc, enum power_kind kind, const char *id,
					const char *actor, const char *reason, bool accepted,
					sandbox_result_fn cb, void *arg)
{
	struct sandbox_call *call = call_new(svc, cb, arg);
	struct power_op *op = calloc(1, sizeof(*op));
	CHECK(op != NULL);
	op->svc = svc;
	op->kind = kind;
	op->call = call;
	op->accepted = accepted;
	call->owner = &op->call;
	snprintf(op->id, sizeof(op->id), "%s", id);
	snprintf(op->actor, sizeof(op->actor), "%s", actor ? actor : "power");
	if (reason)
		snprintf(op->reason, sizeof(op->reason), "%s", reason);
	op->wait = registry_acquire(svc->reg, id, REGISTRY_FRESH | REGISTRY_LIVE, power_read, op);
	return call;
}

struct sandbox_call *sandbox_stop(struct sandbox_service *svc, const char *id, const char *actor,
				  sandbox_result_fn cb, void *arg)
{
	return power_begin(svc, POWER_STOP, id, actor, NULL, false, cb, arg);
}

struct sandbox_call *sandbox_stop_for(struct sandbox_service *svc, const char *id, const char *actor,
				      const char *reason, sandbox_result_fn cb, void *arg)
{
	return power_begin(svc, POWER_STOP, id, actor, reason, false, cb, arg);
}

struct sandbox_call *sandbox_start(struct sandbox_service *svc, const char *id, const char *actor,
				   sandbox_result_fn cb, void *arg)
{
	return power_begin(svc, POWER_START, id, actor, NULL, false, cb, arg);
}

struct sandbox_call *sandbox_restart(struct sandbox_service *svc, const char *id, const char *actor,
				     sandbox_result_fn cb, void *arg)
{
	return power_begin(svc, POWER_RESTART, id, actor, NULL, false, cb, arg);
}

struct sandbox_call *sandbox_power_accepted(struct sandbox_service *svc, enum sandbox_power kind,
					    const char *id, const char *actor, sandbox_result_fn cb,
					    void *arg)
{
	static const enum power_kind kinds[SANDBOX_POWER_MAX] = {
		[SANDBOX_POWER_STOP] = POWER_STOP,
		[SANDBOX_POWER_START] = POWER_START,
		[SANDBOX_POWER_RESTART] = POWER_RESTART,
	};
	CHECK((unsigned)kind < SANDBOX_POWER_MAX);
	return power_begin(svc, kinds[kind], id, actor, NULL, true, cb, arg);
}

/* The first move is written: an accepted call hears now, the op goes on. */
static void power_accept(struct power_op *op, const struct sandbox *after)
{
	if (!op->accepted || !op->call)
		return;
	struct sandbox_result r = { .sb = after, .pending = true };
	call_finish(op->call, &r); /* clears op->call */
}

static void fail_state(struct power_op *op, const struct sandbox *sb, const char *want)
{
	op->failed = true;
	core_error_set(&op->err, CORE_CONFLICT, "invalid_state", "sandbox is %s, not %s",
		       sandbox_status_name(sb->status), want);
	op->err.status = sandbox_status_name(sb->status);
}

static void power_read(struct sandbox_ref *ref, const struct core_error *err, void *arg)
{
	struct power_op *op = arg;
	op->wait = NULL;
	if (err) {
		op->failed = true;
		op->err = *err;
		power_finish(op, NULL);
		return;
	}
	op->ref = ref;
	const struct sandbox *sb = sandbox_ref_get(ref);
	snprintf(op->container, sizeof(op->container), "%s", sb->container_id);
	enum sandbox_status need = op->kind == POWER_START ? SANDBOX_STOPPED : SANDBOX_RUNNING;
	if (sb->status != need || !*sb->container_id) {
		fail_state(op, sb, sandbox_status_name(need));
		power_finish(op, sb);
		return;
	}
	if (sandbox_docker_down(op->svc, &op->err)) {
		op->failed = true;
		power_finish(op, sb);
		return;
	}
	/* room on the Docker host first (a restart gives back the room it takes) */
	uint64_t memory =
		sb->memory_bytes > 0 ? (uint64_t)sb->memory_bytes : op->svc->cfg->sandbox_memory_limit;
	if (op->kind == POWER_START)
		op->admit = admission_ask(op->svc, memory, op->actor, true, power_admitted, op);
	else
		power_stop(op);
}

/* Enters state and sends the registry's move from -> to; cb follows. */
static void power_mark(struct power_op *op, enum power_state state, enum sandbox_status from,
		       enum sandbox_status to, const char *reason, registry_moved_fn cb)
{
	power_set_state(op, state);
	op->mark.from = from;
	op->mark.to = to;
	op->mark.has_reason = reason != NULL;
	if (reason && reason != op->mark.reason)
		snprintf(op->mark.reason, sizeof(op->mark.reason), "%s", reason);
	op->mark.cb = cb;
	op->mark.again.tries = 0;
	power_mark_send(-1, 0, op);
}

static void power_mark_send(evutil_socket_t fd, short what, void *arg)
{
	struct power_op *op = arg;
	struct sandbox_transition t = { .id = op->id,
					.from = op->mark.from,
					.to = op->mark.to,
					.actor = op->actor,
					.reason = op->mark.has_reason ? op->mark.reason : NULL };
	op->wait = registry_transition(op->svc->reg, &t, op->mark.cb, op);
}

/* A move that failed (another request or instance moved first: one wins, the
 * other hears 409) ends the op with that answer. */
static bool power_move_failed(struct power_op *op, const struct core_error *err, const struct sandbox *after)
{
	op->wait = NULL;
	if (!err)
		return false;
	/* after Docker stopped or started the container the row must follow it */
	bool docker_acted = op->state == POWER_MARK_STOPPED || op->state == POWER_MARK_RUNNING;
	if (docker_acted && move_retry_later(&op->mark.again, op->svc->base, err, power_mark_send, op, op->id,
					     state_names[op->state])) {
		if (op->call)
			call_fail(op->call, err); /* clears op->call */
		return true;
	}
	op->failed = true;
	op->err = *err;
	power_finish(op, after);
	return true;
}

/* ---- stop ---- */

static void power_stop(struct power_op *op)
{
	power_mark(op, POWER_MARK_STOPPING, SANDBOX_RUNNING, SANDBOX_STOPPING, NULL, power_marked_stopping);
}

static void power_marked_stopping(const struct core_error *err, const struct sandbox *after, void *arg)
{
	struct power_op *op = arg;
	if (power_move_failed(op, err, after))
		return;
	power_accept(op, after);
	power_set_state(op, POWER_STOPPING);
	/* the agent, PID 1, hears SIGTERM and ends every command group */
	int grace = (int)((op->svc->cfg->stop_grace_ms + 999) / 1000);
	op->dcall = docker_container_stop(op->svc->docker, op->container, grace, power_docker_stopped, op);
}

static void power_docker_stopped(const char *err, void *arg)
{
	struct power_op *op = arg;
	op->dcall = NULL;
	if (err) {
		power_undo(op, err);
		return;
	}
	const char *why = op->kind == POWER_RESTART || op->kind == POWER_RECREATE ? "restarting"
			  : op->reason[0]					  ? op->reason
										  : NULL;
	power_mark(op, POWER_MARK_STOPPED, SANDBOX_STOPPING, SANDBOX_STOPPED, why, power_marked_stopped);
}

static void power_marked_stopped(const struct core_error *err, const struct sandbox *after, void *arg)
{
	struct power_op *op = arg;
	if (power_move_failed(op, err, after))
		return;
	if (op->kind == POWER_STOP)
		power_finish(op, after);
	else
		power_start(op);
}

/* ---- recreate: the stopped container made again from the sandbox's image ---- */

static void recreate_image(const char *err, const struct run_image *img, void *arg);
static void recreate_removed(const char *err, void *arg);
static void recreate_created(const char *id, const char *err, void *arg);
static void recreate_failed(struct power_op *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void recreate_marked_error(const struct core_error *err, const struct sandbox *after, void *arg);

struct sandbox_call *sandbox_recreate(struct sandbox_service *svc, const char *id, const char *actor,
				      sandbox_result_fn cb, void *arg)
{
	return power_begin(svc, POWER_RECREATE, id, actor, NULL, true, cb, arg);
}

/* From `starting`: a destroy of the old container is then ours, not news. */
static void power_recreate(struct power_op *op)
{
	const struct sandbox *sb = sandbox_ref_get(op->ref);
	const struct template *tpl = template_set_find(op->svc->templates, sb->template_name);
	power_set_state(op, POWER_IMAGE);
	if (!tpl) {
		recreate_failed(op, "its template '%s' is gone", sb->template_name);
		return;
	}
	/* the image the row names now (the update wrote it before asking) */
	op->iwait = image_ensure(op->svc, tpl, sb->image, recreate_image, op);
}

static void recreate_image(const char *err, const struct run_image *img, void *arg)
{
	struct power_op *op = arg;
	op->iwait = NULL;
	if (err) {
		recreate_failed(op, "image: %s", err);
		return;
	}
	const struct sandbox *sb = sandbox_ref_get(op->ref);
	const struct template *tpl = template_set_find(op->svc->templates, sb->template_name);
	/* never made again under a weaker runtime than it was made with */
	if (!op->svc->runtimes.enabled[sb->runtime]) {
		recreate_failed(op, "runtime %s is not enabled on this server (SANDBAR_RUNTIMES)",
				sandbox_runtime_name(sb->runtime));
		return;
	}
	snprintf(op->run_image, sizeof(op->run_image), "%s", img->tag);
	int *ports = calloc(sb->nports + 1, sizeof(int));
	CHECK(ports != NULL);
	for (size_t i = 0; i < sb->nports; i++)
		ports[i] = sb->ports[i].container_port;
	char volume[64];
	sandbox_volume_name(op->id, volume);
	struct container_spec_input in = {
		.tpl = tpl,
		.cfg = op->svc->cfg,
		.sandbox_id = op->id,
		.cluster = op->svc->cluster,
		.image = op->run_image,
		.volume = volume,
		.env_vars = sb->env_vars,
		.image_cmd = tpl->override_command ? NULL : img->cmd,
		.image_user = img->user,
		.memory = (uint64_t)sb->memory_bytes,
		.cpus = (double)sb->cpu_millis / 1000.0,
		.ports = ports,
		.nports = sb->nports,
		.network = sb->network,
		.runtime = sandbox_runtimes_docker(&op->svc->runtimes, sb->runtime),
	};
	/* built now: img->cmd is valid during this callback only */
	op->container_env = container_spec_build(&in);
	free(ports);
	power_set_state(op, POWER_REMOVE);
	channels_drop(op->svc->channels, op->id); /* the old container's agent */
	op->dcall = docker_container_remove(op->svc->docker, op->container, recreate_removed, op);
}

static void recreate_removed(const char *err, void *arg)
{
	struct power_op *op = arg;
	op->dcall = NULL;
	if (err) {
		recreate_failed(op, "removing the old container: %s", err);
		return;
	}
	power_set_state(op, POWER_CREATE);
	char name[64];
	sandbox_container_name(op->id, name);
	struct json_object *spec = op->container_env;
	op->container_env = NULL;
	op->dcall = docker_container_create(op->svc->docker, name, spec, recreate_created, op);
}

static void recreate_created(const char *id, const char *err, void *arg)
{
	struct power_op *op = arg;
	op->dcall = NULL;
	if (err) {
		recreate_failed(op, "container: %s", err);
		return;
	}
	snprintf(op->container, sizeof(op->container), "%s", id);
	op->recreated = true;
	power_set_state(op, POWER_STARTING);
	op->dcall = docker_container_start(op->svc->docker, op->container, power_docker_started, op);
}

static void recreate_failed(struct power_op *op, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(op->reason, sizeof(op->reason), fmt, ap);
	va_end(ap);
	log_warn("sandbox=%s recreate: %s", op->id, op->reason);
	op->failed = true;
	core_error_set(&op->err, CORE_INTERNAL, "recreate_failed", "recreate failed: %s", op->reason);
	power_mark(op, POWER_MARK_ERROR, SANDBOX_STARTING, SANDBOX_ERROR, op->reason, recreate_marked_error);
}

static void recreate_marked_error(const struct core_error *err, const struct sandbox *after, void *arg)
{
	struct power_op *op = arg;
	op->wait = NULL;
	if (err)
		log_error("sandbox=%s: recording the failed recreate: %s", op->id, err->message);
	power_finish(op, after);
}

/* ---- start ---- */

static void power_start(struct power_op *op)
{
	op->reason[0] = '\0'; /* a start's reason is its postStartCommand's only */
	power_mark(op, POWER_MARK_STARTING, SANDBOX_STOPPED, SANDBOX_STARTING,
		   op->kind == POWER_RECREATE ? "recreating" : NULL, power_marked_starting);
}

static void power_admitted(const struct core_error *err, void *arg)
{
	struct power_op *op = arg;
	if (err) {
		op->admit = NULL;
		op->failed = true;
		op->err = *err;
		power_finish(op, NULL);
		return;
	}
	power_start(op);
}

static void power_marked_starting(const struct core_error *err, const struct sandbox *after, void *arg)
{
	struct power_op *op = arg;
	admission_release(op->admit); /* `starting` holds the memory now */
	op->admit = NULL;
	if (power_move_failed(op, err, after))
		return;
	power_accept(op, after);
	if (op->kind == POWER_RECREATE) {
		power_recreate(op);
		return;
	}
	power_set_state(op, POWER_STARTING);
	op->dcall = docker_container_start(op->svc->docker, op->container, power_docker_started, op);
}

static void power_docker_started(const char *err, void *arg)
{
	struct power_op *op = arg;
	op->dcall = NULL;
	if (err) {
		power_undo(op, err);
		return;
	}
	power_set_state(op, POWER_INSPECT);
	op->dcall = docker_container_inspect(op->svc->docker, op->container, power_inspected, op);
}

/* The published ports (Docker may have picked new host ports) and the env the
 * setup commands start with. */
static void power_inspected(struct json_object *info, bool missing, const char *err, void *arg)
{
	struct power_op *op = arg;
	op->dcall = NULL;
	if (err || missing) {
		power_undo(op, err ? err : "the container disappeared");
		return;
	}
	const struct sandbox *sb = sandbox_ref_get(op->ref);
	struct json_object *config, *env, *ns, *ports, *state, *running;
	if (json_object_object_get_ex(info, "State", &state) &&
	    json_object_object_get_ex(state, "Running", &running) && !json_object_get_boolean(running)) {
		/* it died at once (its image's command, or the OOM killer): Docker's
		 * event of it came while we were starting, and was ours to settle */
		power_undo(op, "the container stopped right after its start");
		core_error_set(&op->err, CORE_INTERNAL, "start_failed",
			       "the container stopped right after its start");
		return;
	}
	if (json_object_object_get_ex(info, "Config", &config) &&
	    json_object_object_get_ex(config, "Env", &env))
		op->container_env = json_object_get(env);
	op->host_ports = calloc(sb->nports + 1, sizeof(int));
	op->container_ports = calloc(sb->nports + 1, sizeof(int));
	CHECK(op->host_ports != NULL && op->container_ports != NULL);
	if (json_object_object_get_ex(info, "NetworkSettings", &ns) &&
	    json_object_object_get_ex(ns, "Ports", &ports)) {
		for (size_t i = 0; i < sb->nports; i++) {
			char key[16];
			struct json_object *list, *hp;
			snprintf(key, sizeof(key), "%d/tcp", sb->ports[i].container_port);
			if (!json_object_object_get_ex(ports, key, &list) ||
			    !json_object_is_type(list, json_type_array) ||
			    json_object_array_length(list) == 0 ||
			    !json_object_object_get_ex(json_object_array_get_idx(list, 0), "HostPort", &hp))
				continue;
			op->container_ports[op->nports] = sb->ports[i].container_port;
			op->host_ports[op->nports++] = atoi(json_object_get_string(hp));
		}
	}
	power_set_state(op, POWER_SETUP);
	struct agent_channel *ch = op->recreated ? channels_get(op->svc->channels, op->id, op->container)
						 : sandbox_ref_channel(op->ref);
	op->setup = setup_run_start(ch, setup_commands(sb->config, sb->workspace_mount, SETUP_START),
				    setup_env(op->container_env, sb->config, sb->env_vars),
				    sb->workspace_mount, power_setup_done, op);
	if (!op->setup)
		power_mark_running(op);
}

/* A postStartCommand that fails leaves the sandbox running (its workspace is
 * what matters), with the reason in status_reason and the output kept. */
static void power_setup_done(const char *failure, void *arg)
{
	struct power_op *op = arg;
	if (failure) {
		log_warn("sandbox=%s start: %s", op->id, failure);
		snprintf(op->reason, sizeof(op->reason), "%s", failure);
	}
	power_mark_running(op);
}

static void power_mark_running(struct power_op *op)
{
	power_set_state(op, POWER_MARK_RUNNING);
	char *out = op->setup ? setup_run_output(op->setup) : NULL;
	struct sandbox_transition t = {
		.id = op->id,
		.from = SANDBOX_STARTING,
		.to = SANDBOX_RUNNING,
		.actor = op->actor,
		.reason = op->reason[0] ? op->reason : NULL,
		.setup_output = out,
		.host_ports = op->host_ports,
		.container_ports = op->container_ports,
		.nports = op->nports,
		.touch = true,
		/* a recreate's new container, recorded once it runs */
		.container_id = op->recreated ? op->container : NULL,
		.run_image = op->recreated ? op->run_image : NULL,
	};
	op->wait = registry_transition(op->svc->reg, &t, power_marked_running, op);
	free(out);
}

static void power_marked_running(const struct core_error *err, const struct sandbox *after, void *arg)
{
	struct power_op *op = arg;
	if (power_move_failed(op, err, after))
		return;
	reaper_note_sandbox(op->svc->reaper, after);
	power_finish(op, after);
}

/* ---- a Docker step failed: the status follows what Docker says now ---- */

static void power_undo(struct power_op *op, const char *docker_err)
{
	log_warn("sandbox=%s %s failed: %s", op->id, state_names[op->state], docker_err);
	op->undo_from = op->state == POWER_STOPPING ? SANDBOX_STOPPING : SANDBOX_STARTING;
	power_set_state(op, POWER_UNDO);
	op->failed = true;
	core_error_set(&op->err, CORE_UNAVAILABLE, "docker_unavailable", "Docker: %s", docker_err);
	op->dcall = docker_container_inspect(op->svc->docker, op->container, power_undo_inspected, op);
}

static void power_undo_inspected(struct json_object *info, bool missing, const char *err, void *arg)
{
	struct power_op *op = arg;
	op->dcall = NULL;
	struct json_object *state, *running;
	bool runs = !err && !missing && json_object_object_get_ex(info, "State", &state) &&
		    json_object_object_get_ex(state, "Running", &running) && json_object_get_boolean(running);
	enum sandbox_status from = op->undo_from;
	struct sandbox_transition t = { .id = op->id,
					.from = from,
					.actor = op->actor,
					.container_id = op->recreated ? op->container : NULL,
					.run_image = op->recreated ? op->run_image : NULL };
	if (missing) {
		t.to = SANDBOX_ERROR;
		t.reason = "the container disappeared";
		core_error_set(&op->err, CORE_CONFLICT, "container_gone", "the sandbox's container is gone");
	} else if (err) {
		/* Docker cannot say: leave the sandbox as it was asked to be, the
		 * events stream or the reconciler settles it */
		t.to = from == SANDBOX_STARTING ? SANDBOX_STOPPED : SANDBOX_RUNNING;
		t.reason = "Docker did not answer";
	} else {
		t.to = runs ? SANDBOX_RUNNING : SANDBOX_STOPPED;
		t.reason = runs ? "the stop failed" : "the start failed";
	}
	op->wait = registry_transition(op->svc->reg, &t, power_undone, op);
}

static void power_undone(const struct core_error *err, const struct sandbox *after, void *arg)
{
	struct power_op *op = arg;
	op->wait = NULL;
	const char *what = op->kind == POWER_STOP ? "stop" : "start";
	if (err && err->kind == CORE_CONFLICT && after && sandbox_status_final(after->status)) {
		/* a delete (or an expiry) won the race: that, not Docker, is the answer */
		core_error_set(&op->err, CORE_CONFLICT, "sandbox_not_live",
			       "the sandbox was %s during the %s", sandbox_status_name(after->status), what);
		op->err.status = sandbox_status_name(after->status);
	} else if (err) {
		log_error("sandbox=%s: recording the failed %s: %s", op->id, what, err->message);
	}
	power_finish(op, after);
}

static void power_finish(struct power_op *op, const struct sandbox *after)
{
	if (op->state != POWER_DONE)
		power_set_state(op, POWER_DONE);
	if (op->call) {
		if (op->failed) {
			call_fail(op->call, &op->err);
		} else {
			struct sandbox_result r = { .sb = after };
			call_finish(op->call, &r);
		}
	}
	sandbox_ref_put(op->ref);
	move_retry_clear(&op->mark.again);
	if (op->iwait)
		image_wait_cancel(op->iwait);
	setup_run_free(op->setup);
	json_object_put(op->container_env);
	free(op->host_ports);
	free(op->container_ports);
	free(op);
}
