/* What the sandbox core's files share and nobody else sees: the service
 * object, the pending-call plumbing, and the helpers that destroy a
 * sandbox's Docker objects. */
#ifndef SANDBAR_SANDBOX_INTERNAL_H
#define SANDBAR_SANDBOX_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pg/pool.h"
#include "sandbox/service.h"

struct admission;
struct events_watcher;
struct pool;
struct reaper;

struct sandbox_service {
	struct event_base *base;
	const struct config *cfg;
	struct registry *reg;
	struct pg_pool *pg;
	struct docker *docker;
	struct template_set *templates;
	struct reaper *reaper;
	struct admission *admission;   /* room on the Docker host for creates and starts */
	struct events_watcher *events; /* Docker's event stream, after the reconciler */
	/* ids whose container or volume a destroy could not remove because Docker
	 * was unreachable: removed when it answers again (remove.c) */
	struct json_object *leftovers;
	int64_t started_ns; /* Unix ns when the service started: the stream replays from then */
	struct image_builds *builds;
	struct pool *pool;	     /* the warm pool (SANDBAR_WARM_POOL) */
	int creates;		     /* creates in flight, claims included (pool members wait for none) */
	struct service_drain *drain; /* SIGTERM: waiting for background work to end */
	struct wakes *wakes;	     /* stopped sandboxes being woken for requests (wake.c) */
	struct channels *channels;   /* to each sandbox's agent */
	const struct preview_secret *preview_secret; /* signs preview tokens (private.c) */
	struct sandbox_runtimes runtimes;	     /* SANDBAR_RUNTIMES */
	const void *agent_bin;			     /* the agent binary installed into every sandbox */
	size_t agent_len;
	char cluster[64];
	char instance[128];
};

/* A pending call of the public API: the caller's callback, and whatever async
 * step it is waiting on, so that cancel can stop it. An op that outlives its
 * call (a create, a delete) points back through owner and forgets the call on
 * cancel. */
struct sandbox_call {
	struct sandbox_service *svc;
	sandbox_result_fn cb;
	void *arg;
	struct registry_wait *wait;
	struct event *deferred;
	struct sandbox_call **owner;
	bool pending;	/* the sandbox answers a create that is still going on */
	int token_port; /* sandbox_preview_token's */
	int64_t token_ttl_s;
	struct core_error deferred_err;
};

struct sandbox_call *call_new(struct sandbox_service *svc, sandbox_result_fn cb, void *arg);
/* Delivers res (if anyone still listens) and frees the call. */
void call_finish(struct sandbox_call *call, const struct sandbox_result *res);
/* Delivers an error on the next loop pass (the public functions never call back on the caller's stack). */
void call_fail_later(struct sandbox_call *call, enum core_err err, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void call_fail(struct sandbox_call *call, const struct core_error *err);
void call_fail_later_with(struct sandbox_call *call, const struct core_error *err);
/* A move after a Docker action that the database did not take, sent again
 * (move_retry.c). move_retry_later: err is CORE_UNAVAILABLE and tries are
 * left, so resend(arg) runs in MOVE_RETRY_MS (logged as id's what): true.
 * The caller answers its client now. move_retry_clear frees the timer. */
#define MOVE_RETRY_MS  1000
#define MOVE_RETRY_MAX 120
struct move_retry {
	struct event *timer;
	int tries;
};
bool move_retry_later(struct move_retry *r, struct event_base *base, const struct core_error *err,
		      event_callback_fn resend, void *arg, const char *id, const char *what);
void move_retry_clear(struct move_retry *r);

/* Docker is unreachable (docker/client.h): e is 503 docker_unavailable and
 * the answer true. Checked before an operation that needs Docker changes a
 * row, so that nothing is left half-way for want of it. */
bool sandbox_docker_down(const struct sandbox_service *svc, struct core_error *e);
/* What a create or an update asks for (name, cpus, memory; 0/NULL: not
 * asked) against the server's maxima; fills e and returns -1 when over. */
int sandbox_check_asks(const struct config *cfg, const char *name, double cpus, uint64_t memory,
		       struct core_error *e);
/* Reads the sandbox again and finishes call with it. */
void call_reply_sandbox(struct sandbox_call *call, const char *id, bool pending);

/* Removes the container and the workspace volume of sandbox id (by their
 * names, so it works whatever was recorded); done(err) once both are gone. */
void sandbox_destroy(struct sandbox_service *svc, const char *id, void (*done)(const char *err, void *arg),
		     void *arg);
void sandbox_container_name(const char *id, char out[64]);
void sandbox_volume_name(const char *id, char out[64]);
/* Docker answers again: the leftovers' removal once more. */
void sandbox_leftovers_retry(struct sandbox_service *svc);

/* A running sandbox's container made again from the image its row names
 * (an update changed it), the workspace volume kept: stopped, recreated and
 * started, answered once stopping (res->pending). */
struct sandbox_call *sandbox_recreate(struct sandbox_service *svc, const char *id, const char *actor,
				      sandbox_result_fn cb, void *arg);

/* A stop with its reason (the reaper's, for an idle sandbox). */
struct sandbox_call *sandbox_stop_for(struct sandbox_service *svc, const char *id, const char *actor,
				      const char *reason, sandbox_result_fn cb, void *arg);

/* Admission control (admission.c): room for memory bytes more on the Docker
 * host. cb(NULL) once admitted; from then the bytes count as held in this
 * process until admission_release(w), to be called once the row that carries
 * them is written (or the operation gave them up), so that concurrent asks
 * cannot all pass before any row is. cb(err) when refused (CAPACITY
 * "capacity") or no answer could be had (UNAVAILABLE): w is gone then. Never
 * calls back on the caller's stack. */
typedef void (*admission_fn)(const struct core_error *err, void *arg);
struct admission_wait;
struct admission *admission_new(struct sandbox_service *svc);
void admission_free(struct admission *adm);
/* may_stop false: refused rather than stop anything (a pool member's). */
struct admission_wait *admission_ask(struct sandbox_service *svc, uint64_t memory, const char *actor,
				     bool may_stop, admission_fn cb, void *arg);
void admission_release(struct admission_wait *w); /* w NULL: nothing */
/* The most the sandboxes' memory limits may add up to, 0 while the Docker
 * host's memory is not known yet or when unbounded. */
uint64_t admission_capacity(const struct admission *adm);
/* No callback follows (what is held is released; sandboxes being stopped
 * to make room stay stopped). */
void admission_cancel(struct admission_wait *w);
/* The arithmetic: the most the sandboxes' limits may add up to (0 when
 * off); bytes to free for ask more to fit beside holding (0: it fits); how
 * many of the candidates, in order, free need (0: not even all of them). */
uint64_t admission_limit(double overcommit, uint64_t host_mem);
uint64_t admission_shortfall(uint64_t limit, uint64_t holding, uint64_t ask);
size_t admission_pick(const uint64_t *memory, size_t n, uint64_t need);

/* Wakes (wake.c): the registry's waker, one start per sandbox however many
 * REGISTRY_WAKE acquires wait for it. */
struct wakes;
struct wakes *wakes_new(struct sandbox_service *svc);
void wakes_free(struct sandbox_service *svc, struct wakes *ws);

/* The reaper: one timer armed for the earliest expiry. */
struct reaper *reaper_new(struct sandbox_service *svc);
void reaper_start(struct reaper *r);
/* A deadline delay_ms from now exists: look then at the latest. */
void reaper_note_deadline(struct reaper *r, int64_t delay_ms);
/* The deadlines of sb (idleness, keepalive, lifetime), as it is now. */
void reaper_note_sandbox(struct reaper *r, const struct sandbox *sb);
void reaper_free(struct reaper *r);

/* Docker's events mapped to transitions (events.c): the stream opens at
 * start, replaying from since_ns (Unix ns). */
struct events_watcher *events_watcher_new(struct sandbox_service *svc);
void events_watcher_start(struct events_watcher *w, int64_t since_ns);
void events_watcher_free(struct events_watcher *w);

/* The warm pool (pool.c): members made per template in the background,
 * claimed by creates, replaced by rollouts. */
struct template;
struct pool *pool_new(struct sandbox_service *svc);
void pool_start(struct pool *pool);
void pool_free(struct pool *pool);
/* Might a create of t be served by a member? (It has a pool.) */
bool pool_serves(const struct pool *pool, const struct template *t);
/* The image new members of t run (claims prefer them), NULL until known. */
const char *pool_run_image(const struct pool *pool, const struct template *t);
/* A create claimed a member of t (or found none): the pool refills. */
void pool_note_claim(struct pool *pool, const struct template *t, bool got);
/* Something the pool waits on changed (the last create in flight ended). */
void pool_kick(struct pool *pool);
/* Shutdown: no new work; idle once no pass or job of it goes on. */
void pool_drain(struct pool *pool);
bool pool_idle(const struct pool *pool);
/* Background work ended: a drain waiting for it may finish. */
void service_drain_check(struct sandbox_service *svc);
/* A member's create (create.c): `warm` when ready, never listed until claimed. */
struct sandbox_call *pool_member_create(struct sandbox_service *svc, const char *template_name,
					const char *image, sandbox_result_fn cb, void *arg);

/* Start-up reconciliation of Docker with the database. */
struct reconcile;
void reconcile_run(struct sandbox_service *svc, void (*done)(int rc, void *arg), void *arg);
/* The lost-rows step alone, while serving (Docker's event stream was away and
 * may not replay what it missed): running and warm rows take their
 * container's state; nothing half-way is settled, nothing is removed. */
struct reconcile *reconcile_lost_rows(struct sandbox_service *svc, void (*done)(int rc, void *arg),
				      void *arg);
/* At shutdown only: rc is freed where it stands, done never called. Safe
 * because nothing it waits for calls back after its own free (the registry,
 * the Docker client and the pool free what is in flight without callbacks). */
void reconcile_free_at_exit(struct reconcile *rc);

/* Images for templates (images.c): present, or built once however many
 * creates wait, with the agent baked in. */
struct image_builds;
struct template;
struct image_builds *image_builds_new(struct sandbox_service *svc);
void image_builds_free(struct image_builds *b);
/* Removes derived images of other agents (after the reconciler, at start). */
void image_builds_prune(struct image_builds *b);
struct image_wait;
/* What a sandbox of a template runs: the derived image, and the template
 * image's own command (Entrypoint + Cmd) and USER for the agent to start. */
struct run_image {
	const char *tag;
	struct json_object *cmd; /* valid during the callback: hold it to keep it */
	const char *user;	 /* "" when none */
};
typedef void (*image_ready_fn)(const char *err, const struct run_image *img, void *arg);
/* image: NULL for the template's own (built when it is a `build` template's
 * and missing), or another present image (a pool rollout's). */
struct image_wait *image_ensure(struct sandbox_service *svc, const struct template *t, const char *image,
				image_ready_fn cb, void *arg);
void image_wait_cancel(struct image_wait *w);
/* The image a sandbox of t runs. */
const char *template_image(const struct template *t);

#endif
