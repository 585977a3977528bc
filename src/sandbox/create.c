/* Creating a sandbox: a small state machine. A create a warm pool member can
 * serve claims one (and sets its cpu and memory through Docker's update when
 * asked); otherwise, or when the pool is empty, it walks from the database row
 * through image, container (with its volume), start, ports and setup commands
 * to `running` (`warm` for a pool member, whose agent channel is then open
 * for the first command), and on any failure removes what it made and
 * records `error`. It outlives the request that started it: a client that
 * goes away (or asked not to wait) does not stop a create half way. */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>

#include "core/config.h"
#include "core/log.h"
#include "docker/engine.h"
#include "channel/channel.h"
#include "internal.h"
#include "sandbox/container_spec.h"
#include "sandbox/template.h"
#include "setup.h"

enum create_state {
	CREATE_CLAIM,	   /* a warm pool member claimed for it */
	CREATE_RESIZE,	   /* ... given the cpu and memory asked */
	CREATE_INSERT,	   /* room on the Docker host (admission.c), then the `creating` row */
	CREATE_IMAGE,	   /* image present, or built */
	CREATE_CONTAINER,  /* container created (not started), with its workspace volume */
	CREATE_START,	   /* container started */
	CREATE_INSPECT,	   /* published ports read back */
	CREATE_SETUP,	   /* workspace ownership, postCreateCommand, postStartCommand */
	CREATE_PROBE,	   /* a pool member: its agent answers, the channel stays open */
	CREATE_MARK_READY, /* row -> running (warm), port mappings */
	CREATE_CLEANUP,	   /* after a failure: container and volume removed */
	CREATE_MARK_ERROR, /* row -> error with the reason */
	CREATE_DONE,
	CREATE_STATE_MAX
};

static const char *const create_state_names[CREATE_STATE_MAX] = {
	"claim", "resize", "insert",	 "image",   "container",  "start", "inspect",
	"setup", "probe",  "mark_ready", "cleanup", "mark_error", "done",
};

struct create_op {
	struct sandbox_service *svc;
	enum create_state state;
	struct sandbox_call *call; /* the waiting caller, NULL once answered or gone */
	const struct template *tpl;
	bool for_pool;	 /* a warm pool member: `warm` when ready, never listed until claimed */
	char image[256]; /* what it is made from: the template's image, or a pool rollout's */
	char id[37];
	char claimed[37]; /* the pool member it got */
	bool resize;	  /* cpu or memory asked: a claimed member gets them through Docker */
	char log_prefix[48];
	char name[SANDBOX_NAME_MAX + 1];
	char container_id[80];
	char volume[64];
	struct json_object *env_vars;  /* owned */
	struct setup_run *setup;       /* the setup commands running through the agent */
	char run_image[96];	       /* the template's image with the agent baked in */
	struct json_object *image_cmd; /* the image's Entrypoint + Cmd, for the agent to start */
	char image_user[128];	       /* the image's USER, "" when none */
	struct json_object *base_env;  /* the container's Env (image + template + env_vars) */
	int *ports, *host_ports;       /* published: the template's, then the create's */
	size_t nports;
	struct json_object *labels; /* owned, may be NULL */
	char *project, *user_id;    /* owned, may be NULL */
	struct json_object *spec;   /* owned, may be NULL */
	bool env_configured;
	double cpus; /* as the container gets them */
	uint64_t memory;
	int64_t idle_timeout_ms, ttl_ms;
	enum sandbox_idle_action idle_action;
	int auto_wake;
	bool is_private;
	struct sandbox_port_set private_ports;
	enum sandbox_network network;
	enum sandbox_runtime runtime;

	struct docker_call *dcall;
	struct registry_wait *wait;
	struct image_wait *iwait;
	struct admission_wait *admit; /* room held until the row is written */
	struct event *timeout;
	struct move_retry mark_again; /* the database was away when the error was to be recorded */
	bool db_fault;		      /* it failed because the database was away: 503, not 500 */
	bool timed_out;
	bool row_gone; /* deleted while we were creating */
	char reason[512];
	char actor[64];
};

static void create_set_state(struct create_op *op, enum create_state next);
static void create_fail(struct create_op *op, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void create_end_failed(struct create_op *op, enum core_err kind, const char *code, const char *fmt,
			      ...) __attribute__((format(printf, 4, 5)));
static void create_free(struct create_op *op);
static void step_inserted(const struct core_error *err, const struct sandbox *after, void *arg);
static void step_image(const char *err, const struct run_image *img, void *arg);
static void create_container(struct create_op *op);
static void step_container(const char *id, const char *err, void *arg);
static void step_started(const char *err, void *arg);
static void step_inspected(struct json_object *info, bool missing, const char *err, void *arg);
static void step_setup_done(const char *failure, void *arg);
static void mark_ready(struct create_op *op);
static void step_marked_ready(const struct core_error *err, const struct sandbox *after, void *arg);
static void step_cleaned(const char *err, void *arg);
static void mark_error(evutil_socket_t fd, short what, void *arg);
static void step_marked_error(const struct core_error *err, const struct sandbox *after, void *arg);
static void create_timed_out(evutil_socket_t fd, short what, void *arg);
static void create_insert(struct create_op *op);
static void create_admitted(const struct core_error *err, void *arg);
static void step_claimed(const struct core_error *err, const struct sandbox *after, void *arg);
static void step_resized(const char *err, void *arg);
static void step_probed(const struct agent_status *list, size_t n, const char *err, void *arg);
static char *setup_output_text(struct create_op *op);
static void create_answer(struct create_op *op, const struct sandbox *sb);

/* Legal moves: forward one step, or to cleanup from anything that may have
 * made Docker objects; a claim ends, or falls back to a create of its own. */
static bool create_transition_legal(enum create_state from, enum create_state to)
{
	if (to == CREATE_CLEANUP)
		return from >= CREATE_IMAGE && from <= CREATE_MARK_READY;
	if (from == CREATE_CLAIM || from == CREATE_RESIZE)
		return to == CREATE_RESIZE || to == CREATE_INSERT || to == CREATE_DONE;
	if (from == CREATE_INSERT)
		return to == CREATE_IMAGE || to == CREATE_DONE;
	if (from == CREATE_SETUP)
		return to == CREATE_PROBE || to == CREATE_MARK_READY;
	if (from == CREATE_MARK_READY)
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

/* for_pool: a warm pool member of image (NULL: the template's). */
static struct sandbox_call *create_begin(struct sandbox_service *svc, const struct sandbox_create_params *p,
					 bool for_pool, const char *image, sandbox_result_fn cb, void *arg)
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
	const struct config *cfg = svc->cfg;
	if (!for_pool && p->image && !sandbox_image_allowed(svc, p->image)) {
		call_fail_later(call, CORE_INVALID, "image_not_allowed",
				"image '%s' is not allowed here (SANDBAR_ALLOWED_IMAGES, else the templates' "
				"images)",
				p->image);
		return call;
	}
	if (!for_pool && p->image)
		image = p->image;
	struct core_error asks;
	if (sandbox_check_asks(cfg, p->name, p->cpus, p->memory, &asks) != 0) {
		call_fail_later_with(call, &asks);
		return call;
	}
	enum sandbox_runtime runtime = tpl->runtime;
	if (p->runtime && sandbox_runtime_parse(p->runtime, &runtime) != 0) {
		call_fail_later(call, CORE_INVALID, "invalid_runtime",
				"'runtime' must be \"runc\" or \"gvisor\"");
		return call;
	}
	if (!svc->runtimes.enabled[runtime]) {
		call_fail_later(call, CORE_INVALID, "runtime_not_enabled",
				"runtime %s is not enabled on this server (SANDBAR_RUNTIMES)",
				sandbox_runtime_name(runtime));
		return call;
	}
	if (tpl->nports + p->nports > (size_t)cfg->max_ports) {
		call_fail_later(call, CORE_INVALID, "invalid_ports", "at most %lld ports per sandbox",
				(long long)cfg->max_ports);
		return call;
	}
	for (size_t i = 0; i < p->nports; i++) {
		if (p->ports[i] < 1 || p->ports[i] > 65535) {
			call_fail_later(call, CORE_INVALID, "invalid_ports", "a port must be 1 to 65535");
			return call;
		}
	}

	struct create_op *op = calloc(1, sizeof(*op));
	CHECK(op != NULL);
	op->svc = svc;
	op->tpl = tpl;
	op->for_pool = for_pool;
	snprintf(op->image, sizeof(op->image), "%s", image ? image : template_image(tpl));
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
	/* the template's ports, then the create's, each once */
	op->ports = calloc(tpl->nports + p->nports + 1, sizeof(int));
	op->host_ports = calloc(tpl->nports + p->nports + 1, sizeof(int));
	CHECK(op->ports != NULL && op->host_ports != NULL);
	/* a `none` sandbox publishes nothing: its ports are reached through the agent */
	for (size_t i = 0; p->network == SANDBOX_NETWORK_FULL && i < tpl->nports + p->nports; i++) {
		int port = i < tpl->nports ? tpl->ports[i] : p->ports[i - tpl->nports];
		bool seen = false;
		for (size_t k = 0; k < op->nports; k++)
			seen |= op->ports[k] == port;
		if (!seen)
			op->ports[op->nports++] = port;
	}
	op->labels = p->labels ? json_object_get(p->labels) : NULL;
	op->spec = p->spec ? json_object_get(p->spec) : NULL;
	op->project = p->project ? strdup(p->project) : NULL;
	op->user_id = p->user_id ? strdup(p->user_id) : NULL;
	op->env_configured = p->env_configured;
	op->idle_timeout_ms = p->idle_timeout_ms;
	op->idle_action = p->idle_action;
	op->auto_wake = p->auto_wake;
	op->is_private = p->is_private;
	op->private_ports = p->private_ports;
	op->network = p->network;
	op->runtime = runtime;
	op->ttl_ms = p->ttl_ms;
	/* the limits it gets, recorded as they are (a PATCH changes them later) */
	struct container_spec_input limits = { .tpl = tpl, .cfg = cfg, .memory = p->memory, .cpus = p->cpus };
	op->memory = container_spec_memory(&limits);
	op->cpus = container_spec_cpus(&limits);

	op->call = call;
	call->owner = &op->call;
	call->pending = !p->wait; /* answered as soon as the row exists (step_inserted) */
	op->timeout = evtimer_new(svc->base, create_timed_out, op);
	struct timeval tv = { .tv_sec = (time_t)(svc->cfg->create_timeout_ms / 1000),
			      .tv_usec = (suseconds_t)(svc->cfg->create_timeout_ms % 1000) * 1000 };
	evtimer_add(op->timeout, &tv);
	if (!for_pool)
		svc->creates++;

	/* a member runs the template's image (or a rollout's): a create asking for another makes its own */
	if (!for_pool && p->nports == 0 && p->network == SANDBOX_NETWORK_FULL && runtime == tpl->runtime &&
	    pool_serves(svc->pool, tpl) && (!p->image || strcmp(p->image, template_image(tpl)) == 0)) {
		/* a warm member, if there is one: what the create asks for is written as it is claimed */
		op->state = CREATE_CLAIM;
		op->resize = p->cpus > 0 || p->memory > 0;
		struct sandbox_claim c = {
			.template_name = tpl->name,
			.prefer_image = pool_run_image(svc->pool, tpl),
			.name = op->name,
			.env_vars = op->env_vars,
			.labels = op->labels,
			.cpu_millis = op->resize ? (int64_t)(op->cpus * 1000 + 0.5) : 0,
			.memory_bytes = op->resize ? (int64_t)op->memory : 0,
			.idle_timeout_ms = op->idle_timeout_ms,
			.idle_action = op->idle_action,
			.ttl_ms = op->ttl_ms,
			.auto_wake = op->auto_wake,
			.is_private = op->is_private,
			.private_ports = op->private_ports,
			.project = op->project,
			.user_id = op->user_id,
			.spec = op->spec,
			.configured_env = op->env_configured ? op->env_vars : NULL,
			.actor = op->actor,
		};
		op->wait = registry_claim(svc->reg, &c, step_claimed, op);
		return call;
	}
	op->state = CREATE_INSERT;
	create_insert(op);
	return call;
}

struct sandbox_call *sandbox_create(struct sandbox_service *svc, const struct sandbox_create_params *p,
				    sandbox_result_fn cb, void *arg)
{
	return create_begin(svc, p, false, NULL, cb, arg);
}

struct sandbox_call *pool_member_create(struct sandbox_service *svc, const char *template_name,
					const char *image, sandbox_result_fn cb, void *arg)
{
	struct sandbox_create_params p = { .template_name = template_name, .wait = true, .actor = "pool" };
	return create_begin(svc, &p, true, image, cb, arg);
}

static void step_claimed(const struct core_error *err, const struct sandbox *after, void *arg)
{
	struct create_op *op = arg;
	op->wait = NULL;
	if (err && err->kind == CORE_NOT_FOUND && strcmp(err->code, "pool_empty") == 0) {
		pool_note_claim(op->svc->pool, op->tpl, false);
		log_msg(LOG_LEVEL_DEBUG, op->log_prefix, "create: no warm %s sandbox, creating one",
			op->tpl->name);
		create_set_state(op, CREATE_INSERT);
		create_insert(op);
		return;
	}
	if (err) {
		if (op->call)
			call_fail(op->call, err);
		create_set_state(op, CREATE_DONE);
		create_free(op);
		return;
	}
	pool_note_claim(op->svc->pool, op->tpl, true);
	snprintf(op->claimed, sizeof(op->claimed), "%s", after->id);
	reaper_note_sandbox(op->svc->reaper, after);
	if (op->resize) {
		create_set_state(op, CREATE_RESIZE);
		if (op->timed_out) { /* the time ran out during the claim: no update without a timer */
			step_resized("timed out", op);
			return;
		}
		op->dcall =
			docker_container_update(op->svc->docker, after->container_id, op->memory,
						(int64_t)(op->cpus * 1000 + 0.5) * 1000000, step_resized, op);
		return;
	}
	create_set_state(op, CREATE_DONE);
	create_answer(op, after);
}

static void step_resized(const char *err, void *arg)
{
	struct create_op *op = arg;
	op->dcall = NULL;
	if (err) {
		/* the member cannot take these limits: it goes, and the create makes its own */
		log_msg(LOG_LEVEL_WARN, op->log_prefix,
			"create: the claimed sandbox=%s refused cpu/memory (%s)", op->claimed, err);
		sandbox_call_cancel(sandbox_delete(op->svc, op->claimed, "pool: resize failed", NULL, NULL));
		if (op->timed_out) { /* no time left for a create of its own */
			create_end_failed(op, CORE_INTERNAL, "sandbox_create_failed",
					  "sandbox create failed: timed out in resize");
			return;
		}
		create_set_state(op, CREATE_INSERT);
		create_insert(op);
		return;
	}
	create_set_state(op, CREATE_DONE);
	if (op->call) {
		struct sandbox_call *call = op->call;
		op->call = NULL;
		call->owner = NULL;
		call_reply_sandbox(call, op->claimed, false);
	}
	create_free(op);
}

/* Room on the Docker host first (a pool member never stops a sandbox for
 * it), then the row. */
static void create_insert(struct create_op *op)
{
	struct core_error e;
	if (sandbox_docker_down(op->svc, &e)) {
		create_admitted(&e, op); /* no row made */
		return;
	}
	op->admit = admission_ask(op->svc, op->memory, op->actor, !op->for_pool, create_admitted, op);
}

/* Room, or the answer is no (and nothing was made). */
static void create_admitted(const struct core_error *err, void *arg)
{
	struct create_op *op = arg;
	if (err) {
		op->admit = NULL;
		if (op->call)
			call_fail(op->call, err);
		create_set_state(op, CREATE_DONE);
		create_free(op);
		return;
	}
	struct sandbox_insert ins = {
		.id = op->id,
		.name = op->name,
		.template_name = op->tpl->name,
		.image = op->image,
		.workspace_mount = op->tpl->workspace_folder,
		.config = op->tpl->config,
		.env_vars = op->env_vars,
		.labels = op->labels,
		.cpu_millis = (int64_t)(op->cpus * 1000 + 0.5),
		.memory_bytes = (int64_t)op->memory,
		.idle_timeout_ms = op->idle_timeout_ms,
		.idle_action = op->idle_action,
		.ttl_ms = op->ttl_ms,
		.auto_wake = op->auto_wake,
		.is_private = op->is_private,
		.private_ports = op->private_ports,
		.network = op->network,
		.runtime = op->runtime,
		.actor = op->actor,
		.in_pool = op->for_pool,
		.project = op->project,
		.user_id = op->user_id,
		.spec = op->spec,
		.configured_env = op->env_configured ? op->env_vars : NULL,
	};
	log_msg(LOG_LEVEL_INFO, op->log_prefix, "create name=%s template=%s%s", op->name, op->tpl->name,
		op->for_pool ? " (warm pool)" : "");
	op->wait = registry_insert(op->svc->reg, &ins, step_inserted, op);
}

static void step_inserted(const struct core_error *err, const struct sandbox *after, void *arg)
{
	struct create_op *op = arg;
	op->wait = NULL;
	admission_release(op->admit); /* the row holds the memory now */
	op->admit = NULL;
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
	op->iwait = image_ensure(op->svc, op->tpl, op->image, step_image, op);
}

static void step_image(const char *err, const struct run_image *img, void *arg)
{
	struct create_op *op = arg;
	op->iwait = NULL;
	if (err) {
		create_fail(op, "image: %s", err);
		return;
	}
	snprintf(op->run_image, sizeof(op->run_image), "%s", img->tag);
	snprintf(op->image_user, sizeof(op->image_user), "%s", img->user);
	/* the agent becomes the entrypoint and starts the image's own command */
	op->image_cmd = op->tpl->override_command ? NULL : json_object_get(img->cmd);
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
		.image = op->run_image,
		.volume = op->volume,
		.env_vars = op->env_vars,
		.image_cmd = op->image_cmd,
		.image_user = op->image_user,
		.memory = op->memory,
		.cpus = op->cpus,
		.ports = op->ports,
		.nports = op->nports,
		.network = op->network,
		.runtime = sandbox_runtimes_docker(&op->svc->runtimes, op->runtime),
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
	for (size_t i = 0; i < op->nports; i++) {
		char key[16];
		struct json_object *list, *first, *hp;
		snprintf(key, sizeof(key), "%d/tcp", op->ports[i]);
		if (!json_object_object_get_ex(ports, key, &list) ||
		    !json_object_is_type(list, json_type_array) || json_object_array_length(list) == 0 ||
		    !(first = json_object_array_get_idx(list, 0)) ||
		    !json_object_object_get_ex(first, "HostPort", &hp)) {
			create_fail(op, "inspect: port %d was not published", op->ports[i]);
			return;
		}
		op->host_ports[i] = atoi(json_object_get_string(hp));
	}
	create_set_state(op, CREATE_SETUP);
	struct agent_channel *ch = channels_get(op->svc->channels, op->id, op->container_id);
	op->setup =
		setup_run_start(ch, setup_commands(op->tpl->config, op->tpl->workspace_folder, SETUP_CREATE),
				setup_env(op->base_env, op->tpl->config, op->env_vars),
				op->tpl->workspace_folder, step_setup_done, op);
	if (!op->setup)
		step_setup_done(NULL, op);
}

static void step_setup_done(const char *failure, void *arg)
{
	struct create_op *op = arg;
	if (failure) {
		create_fail(op, "%s", failure);
		return;
	}
	if (op->timed_out) {
		create_fail(op, "timed out");
		return;
	}
	if (op->for_pool) {
		/* the first command of whoever claims it then finds the channel open */
		create_set_state(op, CREATE_PROBE);
		agent_list(channels_get(op->svc->channels, op->id, op->container_id), step_probed, op);
		return;
	}
	mark_ready(op);
}

static void step_probed(const struct agent_status *list, size_t n, const char *err, void *arg)
{
	struct create_op *op = arg;
	(void)list;
	(void)n;
	if (op->timed_out) {
		create_fail(op, "timed out in %s", create_state_names[op->state]);
		return;
	}
	if (err) {
		create_fail(op, "the agent does not answer: %s", err);
		return;
	}
	mark_ready(op);
}

static void mark_ready(struct create_op *op)
{
	create_set_state(op, CREATE_MARK_READY);
	char *out = setup_output_text(op);
	struct sandbox_transition t = {
		.id = op->id,
		.from = SANDBOX_CREATING,
		.to = op->for_pool ? SANDBOX_WARM : SANDBOX_RUNNING,
		.actor = op->actor,
		.container_id = op->container_id,
		.setup_output = out,
		.host_ports = op->host_ports,
		.container_ports = op->ports,
		.nports = op->nports,
		.touch = !op->for_pool,
		.run_image = op->run_image,
	};
	op->wait = registry_transition(op->svc->reg, &t, step_marked_ready, op);
	free(out);
}

static void step_marked_ready(const struct core_error *err, const struct sandbox *after, void *arg)
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
		op->db_fault = err->kind == CORE_UNAVAILABLE;
		create_fail(op, "recording the running sandbox: %s", err->message);
		return;
	}
	create_set_state(op, CREATE_DONE);
	log_msg(LOG_LEVEL_INFO, op->log_prefix, "%s container=%.12s", sandbox_status_name(after->status),
		op->container_id);
	if (!op->for_pool)
		reaper_note_sandbox(op->svc->reaper, after);
	create_answer(op, after);
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
		create_end_failed(op, CORE_CONFLICT, "sandbox_deleted",
				  "the sandbox was deleted while being created");
		return;
	}
	create_set_state(op, CREATE_MARK_ERROR);
	mark_error(-1, 0, op);
}

/* The row -> error (again while the database is away: move_retry.c). */
static void mark_error(evutil_socket_t fd, short what, void *arg)
{
	struct create_op *op = arg;
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
	if (move_retry_later(&op->mark_again, op->svc->base, err, mark_error, op, op->id,
			     "recording the failed create")) {
		if (op->call) /* the caller hears now; the row follows once the database is back */
			call_fail(op->call, err);
		return;
	}
	if (err)
		log_msg(LOG_LEVEL_ERROR, op->log_prefix, "could not record the failed create: %s",
			err->message);
	struct core_error e;
	if (sandbox_docker_down(op->svc, &e)) /* it went away under the create: the row says why */
		create_end_failed(op, CORE_UNAVAILABLE, "docker_unavailable", "sandbox %s failed: %s", op->id,
				  op->reason);
	else if (op->db_fault)
		create_end_failed(op, CORE_UNAVAILABLE, "database_unavailable", "sandbox %s failed: %s",
				  op->id, op->reason);
	else
		create_end_failed(op, CORE_INTERNAL, "sandbox_create_failed", "sandbox %s failed: %s", op->id,
				  op->reason);
}

/* Done, failed: the caller (if still there) hears why, and the op goes. */
static void create_end_failed(struct create_op *op, enum core_err kind, const char *code, const char *fmt,
			      ...)
{
	create_set_state(op, CREATE_DONE);
	if (op->call) {
		struct core_error e;
		va_list ap;
		va_start(ap, fmt);
		core_error_vset(&e, kind, code, fmt, ap);
		va_end(ap);
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
		if (op->state == CREATE_RESIZE) /* a claimed member: no cleanup of ours, it is deleted */
			step_resized("timed out", op);
		else
			create_fail(op, "timed out in %s", create_state_names[op->state]);
	} else if (op->state == CREATE_PROBE) {
		/* the agent's list has no cancel: closing the channel answers it (step_probed) */
		channels_drop(op->svc->channels, op->id);
	} else if (op->state == CREATE_SETUP && op->setup) {
		setup_run_stop(op->setup); /* its output stays, for the error's record */
		create_fail(op, "timed out in %s", create_state_names[op->state]);
	}
}

/* Done: the caller (if still there) gets the sandbox, and the op goes. */
static void create_answer(struct create_op *op, const struct sandbox *sb)
{
	if (op->call) {
		struct sandbox_call *call = op->call;
		op->call = NULL;
		call->owner = NULL;
		struct sandbox_result r = { .sb = sb };
		call_finish(call, &r);
	}
	create_free(op);
}

static void create_free(struct create_op *op)
{
	CHECK(op->state == CREATE_DONE);
	CHECK(!op->dcall && !op->wait && !op->iwait && !op->admit);
	if (op->call) {
		op->call->owner = NULL;
		struct core_error e;
		core_error_set(&e, CORE_INTERNAL, "internal", "create ended without an answer");
		call_fail(op->call, &e);
	}
	event_free(op->timeout);
	move_retry_clear(&op->mark_again);
	if (!op->for_pool && --op->svc->creates == 0)
		pool_kick(op->svc->pool); /* members wait while creates run */
	service_drain_check(op->svc);
	json_object_put(op->env_vars);
	setup_run_free(op->setup);
	json_object_put(op->image_cmd);
	json_object_put(op->base_env);
	free(op->host_ports);
	free(op->ports);
	json_object_put(op->labels);
	json_object_put(op->spec);
	free(op->project);
	free(op->user_id);
	free(op);
}

/* NUL-terminated copy of the setup output as valid UTF-8 (it goes into a text column). */
/* What the setup commands printed (valid UTF-8), or "" when none ran. */
static char *setup_output_text(struct create_op *op)
{
	char *out = op->setup ? setup_run_output(op->setup) : strdup("");
	CHECK(out != NULL);
	return out;
}
