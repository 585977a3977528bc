/* The sandbox registry: the one owner of a sandbox's row. One enum of
 * statuses and one transition function (a legality table, a compare-and-set
 * on the old status in PostgreSQL, every move recorded in sandbox_events),
 * the only writer of status; the one writer of activity (at most one write a
 * second per sandbox); and the one lookup and cache of sandboxes for the whole
 * server, handing out reference-counted handles. The cache is kept true
 * across instances sharing the database by LISTEN/NOTIFY on every write but
 * batched activity (another instance's last_activity and expires_at may lag
 * by up to 30 s); while not listening, an entry is trusted for
 * SANDBAR_EXEC_LOOKUP_CACHE only. */
#ifndef SANDBAR_SANDBOX_REGISTRY_H
#define SANDBAR_SANDBOX_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "core/check.h"
#include "core/error.h"
#include "sandbox/runtime.h"

struct agent_channel;
struct channels;
struct json_object;
struct pg_pool;
struct registry;

enum sandbox_status {
	SANDBOX_CREATING,
	SANDBOX_STARTING,
	SANDBOX_RUNNING,
	SANDBOX_STOPPING,
	SANDBOX_STOPPED,
	SANDBOX_EXPIRED, /* removed for idleness or its lifetime: final */
	SANDBOX_DELETED, /* removed on request: final */
	SANDBOX_ERROR,
	SANDBOX_WARM, /* a started pool member nobody claimed yet: never listed, never reaped for idleness */
	SANDBOX_STATUS_MAX
};

const char *sandbox_status_name(enum sandbox_status s);
/* 0, or -1 for a name that is no status. */
MUST_USE int sandbox_status_parse(const char *name, enum sandbox_status *out);
/* The legality table: may a sandbox go from `from` to `to`? */
bool sandbox_status_can(enum sandbox_status from, enum sandbox_status to);
/* Expired and deleted: nothing of it is left but the row. */
bool sandbox_status_final(enum sandbox_status s);

/* What the reaper does to a sandbox idle past its timeout. */
enum sandbox_idle_action {
	SANDBOX_IDLE_EXPIRE, /* removed, container and workspace: monza's behaviour, the default */
	SANDBOX_IDLE_STOP,   /* stopped, the workspace kept, to be started (woken) again */
	SANDBOX_IDLE_NONE,   /* always on */
	SANDBOX_IDLE_ACTION_MAX
};
const char *sandbox_idle_action_name(enum sandbox_idle_action a);
MUST_USE int sandbox_idle_action_parse(const char *name, enum sandbox_idle_action *out);

/* A sandbox's network policy, chosen at create (see README, "Security"). */
enum sandbox_network {
	SANDBOX_NETWORK_FULL, /* SANDBAR_NETWORK (inter-container traffic off), ports published */
	SANDBOX_NETWORK_NONE, /* Docker's `none`: loopback only, nothing published */
	SANDBOX_NETWORK_MAX
};
const char *sandbox_network_name(enum sandbox_network n);
MUST_USE int sandbox_network_parse(const char *name, enum sandbox_network *out);

struct sandbox_port {
	char id[37];
	int container_port, host_port;
};

/* One sandbox as the core knows it. Times are Unix microseconds, 0 for none. */
/* Ports whose previews need a token though their sandbox is not private. */
#define SANDBOX_PRIVATE_PORTS_MAX 32
struct sandbox_port_set {
	int n;
	uint16_t port[SANDBOX_PRIVATE_PORTS_MAX];
};

struct sandbox {
	char id[37];
	char *name;
	char *template_name;
	enum sandbox_status status;
	char *status_reason; /* NULL when none */
	char *container_id;  /* "" until it has one */
	char *image;
	char *workspace_mount;
	struct json_object *config;   /* the template's devcontainer.json */
	struct json_object *env_vars; /* object of strings */
	struct sandbox_port *ports;
	size_t nports;
	char *setup_output; /* NULL when none */
	int64_t last_activity_us, created_at_us, expires_at_us, deleted_at_us;
	struct json_object *labels; /* object of strings */
	/* resources and policies, as asked at create (or PATCH since); 0 for a
	 * sandbox made before they were recorded */
	int64_t cpu_millis, memory_bytes, idle_timeout_ms;
	enum sandbox_idle_action idle_action;
	int64_t ends_at_us;	    /* hard lifetime end, 0: none */
	int64_t keepalive_until_us; /* no idle action before, 0: none */
	bool auto_wake;		    /* a request for it stopped starts it (set, else idle_action stop) */
	bool is_private;	    /* its previews need a preview token (`private`) */
	struct sandbox_port_set private_ports; /* ... these ports' only (`private_ports`) */
	enum sandbox_network network;	       /* as made; `full` for one made before it was recorded */
	enum sandbox_runtime runtime;	       /* as made; runc for one made before it was recorded */
	/* what a command in it starts with (derived): PATH, containerEnv,
	 * remoteEnv, env_vars as "K=V" (NULL terminated); the user (remoteUser,
	 * else containerUser; NULL: the agent's root) and folder to run in */
	char **run_env;
	char *run_user, *run_cwd;
	/* whose it is: the project it belongs to (requests scoped to a project
	 * see only its sandboxes; "default" for the native API's) and its owner
	 * ("" when none) */
	char *project, *user_id;
	struct json_object *spec; /* resources as the client wrote them (strings), echoed verbatim */
	struct json_object *configured_env; /* env configured from outside, merged into env_vars */
};

/* ---- the registry ---- */

struct registry_config {
	const char *cluster;	 /* SANDBAR_CLUSTER: only its rows are seen */
	const char *instance;	 /* SANDBAR_INSTANCE_ID: our own notifications are ours */
	const char *conninfo;	 /* for the LISTEN connection (NULL: no LISTEN, validity only) */
	int64_t idle_timeout_ms; /* SANDBOX_IDLE_TIMEOUT: activity pushes expiry this far */
	int64_t cache_ms;	 /* SANDBAR_EXEC_LOOKUP_CACHE: trust without LISTEN (0: never) */
};

struct registry *registry_new(struct event_base *base, const struct registry_config *cfg, struct pg_pool *pg,
			      struct channels *chs);
/* Starts listening for other instances' changes (after migrations). */
void registry_start(struct registry *reg);
void registry_free(struct registry *reg);
struct channels *registry_channels(const struct registry *reg);
struct pg_pool *registry_pg(const struct registry *reg);

/* ---- handles ---- */

struct sandbox_ref; /* a counted hold on a cached sandbox */

enum {
	REGISTRY_RUNNING = 1 << 0, /* fail CONFLICT (code sandbox_not_running) unless running */
	REGISTRY_LIVE = 1 << 1,	   /* fail CONFLICT (code sandbox_not_live) once expired or deleted */
	REGISTRY_TOUCH = 1 << 2,   /* counts as activity (a running sandbox's expiry moves) */
	REGISTRY_FRESH = 1 << 3,   /* read from PostgreSQL, whatever is cached */
	/* with RUNNING: a sandbox stopped (or stopping, starting) whose auto_wake
	 * is on is started first, once however many wait, through the waker; it
	 * fails UNAVAILABLE wake_timeout after SANDBAR_WAKE_TIMEOUT */
	REGISTRY_WAKE = 1 << 4,
};

struct registry_wait;
/* ref: held for the callee (put it when done), NULL on failure. */
typedef void (*registry_ref_fn)(struct sandbox_ref *ref, const struct core_error *err, void *arg);
/* Looks a sandbox up (cached, or one query however many wait for it) and
 * calls back from the loop, never on the caller's stack. An id that is no
 * UUID fails INVALID (invalid_id); an unknown one NOT_FOUND. */
struct registry_wait *registry_acquire(struct registry *reg, const char *id, unsigned flags,
				       registry_ref_fn cb, void *arg);
/* No callback follows. */
void registry_wait_cancel(struct registry_wait *w);

/* How a REGISTRY_WAKE acquire has its sandbox started: the sandbox service's
 * wake (sandbox/wake.c), which sits above the registry. wake() answers done
 * once, from the loop (err NULL: the sandbox ran when it answered), unless
 * cancel(its handle) came first; the start itself goes on either way. */
typedef void (*registry_woken_fn)(const struct core_error *err, void *arg);
struct registry_waker {
	void *(*wake)(void *ctx, const char *id, registry_woken_fn done, void *arg);
	void (*cancel)(void *handle);
	void *ctx;
};
/* w NULL: none (REGISTRY_WAKE then acts as RUNNING alone). */
void registry_set_waker(struct registry *reg, const struct registry_waker *w);

/* Whether port's previews need a token: the sandbox is private, or the port is one of its private_ports. */
bool sandbox_port_private(const struct sandbox *sb, int port);
const struct sandbox *sandbox_ref_get(const struct sandbox_ref *ref);
/* The sandbox's agent channel (made on first use). Valid while the ref is held
 * and the sandbox runs. */
struct agent_channel *sandbox_ref_channel(struct sandbox_ref *ref);
struct sandbox_ref *sandbox_ref_hold(struct sandbox_ref *ref);
void sandbox_ref_put(struct sandbox_ref *ref);

/* Activity of a running sandbox: last_activity and expires_at move, written
 * at most once a second per sandbox, batched. */
void registry_touch(struct registry *reg, const char *id);

/* ---- transitions: the only writer of status ---- */

struct sandbox_transition {
	const char *id;
	enum sandbox_status from, to;
	const char *reason; /* status_reason; NULL clears it */
	const char *actor;  /* a request id, or "reaper", "reconciler", ... */
	/* written with it when set */
	const char *container_id;
	const char *setup_output;
	const int *host_ports, *container_ports;
	size_t nports;
	bool touch;	       /* last_activity = now, expires_at = now + idle timeout */
	const char *run_image; /* the image its container runs */
};
/* after: the sandbox as it is now (the same on failure when known). A move
 * the table refuses, or one whose old status no longer holds (another
 * instance or operation moved first), fails CONFLICT with code invalid_state
 * and err->status the current one. A write that happened has after set,
 * unless the row could not be read again (it is retried for up to 5 s): then
 * it fails with after NULL and a message saying the write was committed. */
typedef void (*registry_moved_fn)(const struct core_error *err, const struct sandbox *after, void *arg);
struct registry_wait *registry_transition(struct registry *reg, const struct sandbox_transition *t,
					  registry_moved_fn cb, void *arg);
/* The row of a new sandbox, in `creating` (or `warm`), recorded as a first event. */
struct sandbox_insert {
	const char *id, *name, *template_name, *image, *workspace_mount;
	struct json_object *config, *env_vars, *labels;	   /* labels may be NULL */
	int64_t cpu_millis, memory_bytes, idle_timeout_ms; /* idle 0: the registry's default */
	enum sandbox_idle_action idle_action;
	int64_t ttl_ms; /* > 0: ends_at = now + ttl */
	int auto_wake;	/* 0: the default (on for idle_action stop), 1: on, -1: off */
	bool is_private;
	struct sandbox_port_set private_ports;
	enum sandbox_network network;
	enum sandbox_runtime runtime;
	const char *actor;
	bool in_pool;			    /* a warm pool member: never listed until claimed */
	const char *project, *user_id;	    /* NULL: "default", "" */
	struct json_object *spec;	    /* may be NULL */
	struct json_object *configured_env; /* may be NULL */
};
struct registry_wait *registry_insert(struct registry *reg, const struct sandbox_insert *ins,
				      registry_moved_fn cb, void *arg);

/* Settings of a live sandbox (not final) and its deadlines, written as one
 * statement; what is unset stays as it is. */
struct sandbox_settings {
	const char *name;
	struct json_object *labels;			   /* replaces them */
	struct json_object *env_vars;			   /* merged over them */
	int64_t cpu_millis, memory_bytes, idle_timeout_ms; /* 0: unchanged; a new idle timeout
							    * moves expires_at to last activity + it */
	enum sandbox_idle_action idle_action;
	bool set_idle_action;
	int64_t keepalive_ms; /* > 0: no idle action before now + it */
	int64_t extend_ms;    /* > 0: the hard lifetime ends this much later (from now if it has none) */
	int auto_wake;	      /* 0: unchanged, 1: on, -1: off */
	int is_private;	      /* 0: unchanged, 1: on, -1: off */
	bool set_private_ports;
	struct sandbox_port_set private_ports;
	struct json_object *spec;	    /* merged over it */
	const char *image;		    /* the image it is made from (a recreate follows) */
	struct json_object *configured_env; /* merged over env_vars and remembered */
	bool reapply_configured;	    /* configured_env merged over env_vars again */
	const char *actor;
};
struct registry_wait *registry_settle(struct registry *reg, const char *id, const struct sandbox_settings *s,
				      registry_moved_fn cb, void *arg);

/* A heartbeat: activity of a sandbox that is not final, written now (not
 * batched). Fails NOT_FOUND, or CONFLICT sandbox_not_live with its status. */
struct registry_wait *registry_heartbeat(struct registry *reg, const char *id, registry_moved_fn cb,
					 void *arg);

/* ---- the warm pool ---- */

/* A create served by a warm member: what it asked for, written as the member
 * moves warm -> running (created_at and activity now). */
struct sandbox_claim {
	const char *template_name;
	const char *prefer_image; /* a member running this image first (the newest), may be NULL */
	const char *name;
	struct json_object *env_vars, *labels;		   /* may be NULL */
	int64_t cpu_millis, memory_bytes, idle_timeout_ms; /* 0: the member's; idle: the default */
	enum sandbox_idle_action idle_action;
	int64_t ttl_ms; /* > 0: ends_at = now + ttl */
	int auto_wake;	/* 0: the default (on for idle_action stop), 1: on, -1: off */
	bool is_private;
	struct sandbox_port_set private_ports;
	const char *project, *user_id;	    /* NULL: "default", "" */
	struct json_object *spec;	    /* may be NULL */
	struct json_object *configured_env; /* may be NULL */
	const char *actor;
};
/* Claims the oldest warm member of the template (FOR UPDATE SKIP LOCKED: two
 * claims never get one); fails NOT_FOUND with code pool_empty when there is
 * none. after: the claimed sandbox, running. */
struct registry_wait *registry_claim(struct registry *reg, const struct sandbox_claim *c,
				     registry_moved_fn cb, void *arg);

/* ---- lists ---- */

/* total: how many match, whatever the limit and offset. */
typedef void (*registry_list_fn)(const struct core_error *err, const struct sandbox *const *list, size_t n,
				 size_t total, void *arg);
struct sandbox_filter {
	unsigned statuses;	    /* bits (1u << status); 0: every one but expired, deleted and warm */
	struct json_object *labels; /* each of these labels (an object of strings), may be NULL */
	size_t limit, offset;	    /* limit 0: no limit */
	const char *project;	    /* only this project's, NULL: any */
	const char *user_id;	    /* only this owner's, NULL: any */
	bool oldest_first;	    /* by created_at then id, ascending (new ones land on the last page) */
};
/* Sandboxes matching f (NULL: none), newest first (then by id) unless
 * oldest_first. Warm pool members are never listed. */
struct registry_wait *registry_list(struct registry *reg, const struct sandbox_filter *f, registry_list_fn cb,
				    void *arg);

/* A canonical lowercase UUID? */
bool sandbox_id_valid(const char *id);

#endif
