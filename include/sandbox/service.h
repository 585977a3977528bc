/* The sandbox lifecycle every API dialect adapts: create, get, list, delete
 * and heartbeat sandboxes, the reaper and the start-up reconciler. Results are
 * the core's structs (struct sandbox, see sandbox/registry.h) or a core
 * error; each dialect renders both in its own wire format. */
#ifndef SANDBAR_SANDBOX_SERVICE_H
#define SANDBAR_SANDBOX_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>

#include "core/check.h"
#include "core/error.h"
#include "sandbox/container_spec.h"
#include "sandbox/registry.h"

struct config;
struct docker;
struct json_object;
struct sandbox_service;
struct template_set;

struct pool_status;

struct sandbox_result {
	struct core_error err;		   /* kind CORE_OK on success */
	const struct pool_status *pool;	   /* the pool's routes */
	const struct sandbox *sb;	   /* the sandbox (create, get), NULL when none (delete, heartbeat) */
	const struct sandbox *const *list; /* list: n sandboxes, newest first */
	size_t n, total;		   /* list: total matching, whatever the page */
	bool pending; /* create: answered before the sandbox was ready (wait=false); a power call accepted */
	const struct sandbox_counts *counts; /* sandbox_count */
	const char *token;		     /* preview token: the token (sb is the sandbox) */
	int64_t token_expires_s;	     /* ... and the Unix second it expires at */
};

/* Called once, from the loop; the result is valid during the call only. */
typedef void (*sandbox_result_fn)(const struct sandbox_result *res, void *arg);

struct sandbox_call; /* a pending call; cancel it when the caller goes away */

/* The agent binary (agent_len bytes, kept by the caller) outlives the service. */
struct sandbox_service *sandbox_service_new(struct event_base *base, const struct config *cfg,
					    struct registry *reg, struct docker *docker,
					    struct template_set *templates, const void *agent_bin,
					    size_t agent_len);
void sandbox_service_free(struct sandbox_service *svc);
/* Starts the reconciler once, then the reaper and the watch on Docker's events
 * (a container that died or was removed behind our back moves its sandbox).
 * done(rc) after the reconcile pass. */
void sandbox_service_start(struct sandbox_service *svc, void (*done)(int rc, void *arg), void *arg);

#define SANDBOX_NAME_MAX 128 /* bytes of a sandbox's name */

struct sandbox_create_params {
	const char *name;	      /* NULL: "sandbox-" + template */
	const char *template_name;    /* NULL: "go" */
	struct json_object *env_vars; /* object of strings, may be NULL (borrowed) */
	struct json_object *labels;   /* object of strings, may be NULL (borrowed) */
	double cpus;		      /* 0: the template's, else SANDBOX_CPU_LIMIT; at most SANDBAR_MAX_CPU */
	uint64_t memory;	      /* bytes; 0: as cpus; at most SANDBAR_MAX_MEMORY */
	int64_t idle_timeout_ms;      /* 0: SANDBOX_IDLE_TIMEOUT */
	enum sandbox_idle_action idle_action;
	int64_t ttl_ms;	 /* > 0: removed this long after the create, whatever its activity */
	int auto_wake;	 /* 0: the default (on for idle_action stop), 1: on, -1: off */
	bool is_private; /* previews need a preview token */
	struct sandbox_port_set private_ports; /* ... only these ports' (n 0: none) */
	const int *ports;		       /* container ports to publish beside the template's */
	size_t nports;
	enum sandbox_network network; /* FULL: SANDBAR_NETWORK; NONE: no network, nothing published */
	/* NULL: the template's (runc when it names none); else "runc" or an
	 * enabled runtime (SANDBAR_RUNTIMES), or INVALID invalid_runtime /
	 * runtime_not_enabled */
	const char *runtime;
	bool wait;		       /* false: answer as soon as the row exists */
	const char *actor;	       /* who asks (a request id), for the sandbox's events */
	const char *project, *user_id; /* whose it is (NULL: "default", "") */
	struct json_object *spec;      /* the resources as written, kept verbatim (borrowed, may be NULL) */
	/* NULL: the template's image; else one of the allowed images (SANDBAR_ALLOWED_IMAGES,
	 * else INVALID image_not_allowed), run as given with the agent baked in */
	const char *image;
	bool env_configured; /* env_vars is configured from outside: remembered for sandbox_configure */
};

struct sandbox_call *sandbox_create(struct sandbox_service *svc, const struct sandbox_create_params *p,
				    sandbox_result_fn cb, void *arg);
struct sandbox_call *sandbox_get(struct sandbox_service *svc, const char *id, sandbox_result_fn cb,
				 void *arg);
/* f NULL: every sandbox not deleted or expired. */
struct sandbox_call *sandbox_list(struct sandbox_service *svc, const struct sandbox_filter *f,
				  sandbox_result_fn cb, void *arg);
struct sandbox_call *sandbox_delete(struct sandbox_service *svc, const char *id, const char *actor,
				    sandbox_result_fn cb, void *arg);
struct sandbox_call *sandbox_heartbeat(struct sandbox_service *svc, const char *id, sandbox_result_fn cb,
				       void *arg);
/* What a PATCH changes; what is unset stays. */
struct sandbox_changes {
	const char *name;
	struct json_object *labels;   /* replace them (borrowed) */
	struct json_object *env_vars; /* merged over them: new commands see them (borrowed) */
	double cpus;		      /* 0: unchanged; applied to the container at once */
	uint64_t memory;	      /* 0: unchanged; idem */
	int64_t idle_timeout_ms;      /* 0: unchanged; expires_at follows (last activity + it) */
	enum sandbox_idle_action idle_action;
	bool set_idle_action;
	int auto_wake;	/* 0: unchanged, 1: on, -1: off */
	int is_private; /* 0: unchanged, 1: on, -1: off */
	bool set_private_ports;
	struct sandbox_port_set private_ports;
	struct json_object *spec; /* merged over the resources as written (borrowed) */
	bool running_only;	  /* fail CONFLICT invalid_state unless the sandbox is running */
	/* another image (allowed ones only): the container is made again from it,
	 * workspace kept; answered once the sandbox is stopping for it */
	const char *image;
};
struct sandbox_call *sandbox_update(struct sandbox_service *svc, const char *id,
				    const struct sandbox_changes *c, const char *actor, sandbox_result_fn cb,
				    void *arg);
/* No idle action before now + ms (at most SANDBAR_MAX_KEEPALIVE). */
struct sandbox_call *sandbox_keepalive(struct sandbox_service *svc, const char *id, int64_t ms,
				       const char *actor, sandbox_result_fn cb, void *arg);
/* The environment configured from outside (env: an object of strings,
 * borrowed) merged into env_vars, so every later command sees it under its
 * own env, and remembered; env NULL merges what was remembered (at create
 * with env_configured, and by earlier calls) again. A sandbox that is not
 * running fails CONFLICT invalid_state. */
struct sandbox_call *sandbox_configure(struct sandbox_service *svc, const char *id, struct json_object *env,
				       const char *actor, sandbox_result_fn cb, void *arg);
/* The hard lifetime ends ms later (from now when it has none). */
struct sandbox_call *sandbox_extend(struct sandbox_service *svc, const char *id, int64_t ms,
				    const char *actor, sandbox_result_fn cb, void *arg);

/* A running sandbox stopped (its container stopped, the workspace kept), a
 * stopped one started (postStartCommand again), or both. Answers the sandbox
 * as it is after; a sandbox in another status fails CONFLICT invalid_state
 * (err.status says which), and of two racing the second fails so too. */
struct sandbox_call *sandbox_stop(struct sandbox_service *svc, const char *id, const char *actor,
				  sandbox_result_fn cb, void *arg);
struct sandbox_call *sandbox_start(struct sandbox_service *svc, const char *id, const char *actor,
				   sandbox_result_fn cb, void *arg);
struct sandbox_call *sandbox_restart(struct sandbox_service *svc, const char *id, const char *actor,
				     sandbox_result_fn cb, void *arg);
/* The same three, answered once accepted (the first move written: the
 * sandbox is stopping, or starting) with res->pending set; the rest goes on
 * without the caller. */
enum sandbox_power { SANDBOX_POWER_STOP, SANDBOX_POWER_START, SANDBOX_POWER_RESTART, SANDBOX_POWER_MAX };
struct sandbox_call *sandbox_power_accepted(struct sandbox_service *svc, enum sandbox_power kind,
					    const char *id, const char *actor, sandbox_result_fn cb,
					    void *arg);
/* Private previews (private.c). The secret (kept by the caller, outliving
 * the service) signs the tokens. */
struct preview_secret;
void sandbox_service_set_preview_secret(struct sandbox_service *svc, const struct preview_secret *secret);
/* A token opening port (1..65535: else INVALID invalid_port) of a live
 * sandbox (NOT_FOUND, CONFLICT sandbox_not_live) for ttl_s seconds (1 up to
 * SANDBAR_PREVIEW_TOKEN_MAX_TTL: else INVALID invalid_ttl): res->token,
 * res->token_expires_s, res->sb. Any sandbox may have one; only a private
 * one's previews ask for it. */
struct sandbox_call *sandbox_preview_token(struct sandbox_service *svc, const char *id, int port,
					   int64_t ttl_s, sandbox_result_fn cb, void *arg);

/* ---- the warm pool (SANDBAR_WARM_POOL) ----
 * Started sandboxes kept ready per template (status `warm`, never listed);
 * a create the pool can serve claims one. A rollout replaces members of an
 * older image, one at a time: it starts by itself when a template's image
 * changes, or when asked (to the template's image or another present one). */

enum pool_rollout_phase {
	POOL_ROLLOUT_IDLE,	/* none yet */
	POOL_ROLLOUT_RUNNING,	/* members being replaced */
	POOL_ROLLOUT_DONE,	/* every member runs the image */
	POOL_ROLLOUT_CANCELLED, /* cancelled, or its image could not be had (error says why) */
	POOL_ROLLOUT_PHASE_MAX
};
const char *pool_rollout_phase_name(enum pool_rollout_phase p);

struct pool_rollout {
	char id[37]; /* "" before the first */
	enum pool_rollout_phase phase;
	const char *image;   /* the image rolled to */
	const char *trigger; /* "image changed" or who asked */
	int total, replaced; /* members of an older image at its start, and replaced so far */
	int64_t started_at_us, completed_at_us;
	const char *error; /* NULL when none */
};

struct pool_template_status {
	const char *template_name;
	int target;
	int warm;		/* ready members (outdated ones included) */
	int outdated;		/* ... of an older image */
	int creating;		/* members being made (the whole cluster's) */
	const char *image;	/* what new members are made from */
	const char *run_image;	/* ... with the agent baked in; NULL until known */
	const char *last_error; /* the last member create that failed, NULL when none since */
	int64_t last_fill_at_us, last_claim_at_us;
	struct pool_rollout rollout;
};

struct pool_status {
	const struct pool_template_status *templates;
	size_t n;
};

/* The cluster's sandboxes by status (pool members apart: in_pool), and the
 * capacity admission allows. */
struct sandbox_counts {
	int64_t by_status[SANDBOX_STATUS_MAX]; /* users' sandboxes, warm members not counted */
	int64_t pool_creating;		       /* pool members being made */
	/* how many sandboxes of the default memory limit fit the Docker host
	 * (SANDBAR_MEMORY_OVERCOMMIT), 0 when unknown or unbounded */
	int64_t max_total;
};
/* res->counts. */
struct sandbox_call *sandbox_count(struct sandbox_service *svc, sandbox_result_fn cb, void *arg);
/* labels as a sandbox keeps them: an object of at most 64 strings (at most
 * 256 bytes, no NUL) named by 1 to 63 of [A-Za-z0-9._/-]; else INVALID
 * invalid_labels and -1. */
MUST_USE int sandbox_labels_check(struct json_object *labels, struct core_error *e);
/* Whether a create or an image change may run image: SANDBAR_ALLOWED_IMAGES,
 * or when unset the templates' images. */
bool sandbox_image_allowed(const struct sandbox_service *svc, const char *image);
/* The image a sandbox of template_name runs by default, NULL for no such template. */
const char *sandbox_template_image(const struct sandbox_service *svc, const char *template_name);

/* SANDBAR_WARM_POOL ("base=4,python=2"): 0, or -1 with the reason in err
 * (syntax, an unknown template, a target out of range). */
MUST_USE int sandbox_pool_check(const char *spec, const struct template_set *templates, char *err,
				size_t errcap);
/* Each pooled template's counts and rollout, from the database now. */
struct sandbox_call *sandbox_pool_status(struct sandbox_service *svc, sandbox_result_fn cb, void *arg);
/* Starts a rollout of template's members to image (NULL: the template's own);
 * answers the status. A template without a pool fails NOT_FOUND; one rollout
 * running fails CONFLICT rollout_running. */
struct sandbox_call *sandbox_pool_rollout(struct sandbox_service *svc, const char *template_name,
					  const char *image, const char *actor, sandbox_result_fn cb,
					  void *arg);
/* Cancels the running rollout of template (NULL: every one); members not
 * replaced yet stay. None running fails CONFLICT no_rollout. */
struct sandbox_call *sandbox_pool_cancel(struct sandbox_service *svc, const char *template_name,
					 sandbox_result_fn cb, void *arg);

/* SIGTERM: no new background work (pool members), and done once the creates
 * and removals in flight ended, or after grace_ms. */
void sandbox_service_drain(struct sandbox_service *svc, int64_t grace_ms, void (*done)(void *arg), void *arg);

/* The callback will not be called. Work already started (a create, a delete) goes on. */
void sandbox_call_cancel(struct sandbox_call *call);

#endif
