/* Truth from Docker, live: one event stream (docker/events.h) of this
 * cluster's containers (die, oom, destroy), each event mapped to a registry
 * transition by actor "docker-events". A container that died behind our back
 * stops its running sandbox (the exit code, or the OOM killer, in
 * status_reason); one removed behind our back fails a running or stopped
 * sandbox. Any other status means the sandbox's own operation (a stop, a
 * create, a delete, an expiry) made the event: it is left alone. One event
 * is handled at a time, the stream paused meanwhile; instances sharing the
 * database all watch, and the registry's compare-and-set lets one move.
 *
 * When the stream flows again after a break (dockerd restarted, or was
 * unreachable), running rows are checked against their containers, then the
 * sandboxes with idle_action `none` that the break stopped (moved to stopped
 * by Docker's events or that check since it began) are started again. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "docker/client.h"
#include "docker/engine.h"
#include "docker/events.h"
#include "internal.h"

#define ACTOR "docker-events"
/* Containers an oom was seen for, until their die (an oom that killed only
 * a command, not the container, leaves its id here until pushed out). */
#define OOM_REMEMBERED 64
/* The database did not answer: the same event again, this often, this many
 * times (the stream stays paused; dockerd holds what comes meanwhile). */
#define RETRY_MS  1000
#define RETRY_MAX 30
/* The first stream replays from this long before the service started (our
 * clock against dockerd's; a replayed event finds its sandbox moved already). */
#define CLOCK_SLACK_NS (1000LL * 1000 * 1000)
/* A move that lost its compare-and-set (a claim moved a warm member to
 * running meanwhile): the row is read again and the event applied to what
 * it is now, this many times. */
#define REREAD_MAX 3
/* A dockerd on its way out stops its containers (up to their stop timeout)
 * before the stream breaks: stops this long before the break count as its. */
#define RESTORE_LOOKBACK_MS (30 * 1000)

enum watch_state {
	WATCH_IDLE,	  /* no event in hand (the stream flows) */
	WATCH_READING,	  /* the sandbox's row, fresh */
	WATCH_INSPECTING, /* a die: does the container still not run, and was it the OOM killer? */
	WATCH_MOVING,	  /* the transition */
	WATCH_RETRY,	  /* the database did not answer: again after RETRY_MS */
	WATCH_STATE_MAX
};

static const char *const state_names[WATCH_STATE_MAX] = {
	"idle", "reading", "inspecting", "moving", "retry",
};

enum watch_kind { WATCH_DIE, WATCH_DESTROY };

struct events_watcher {
	struct sandbox_service *svc;
	struct docker_events *stream;
	enum watch_state state;
	struct registry_wait *wait;
	struct docker_call *dcall;
	struct event *retry;
	int tries;
	int rereads;
	/* the stream broke: once it flows again, the running rows are checked
	 * against their containers (dockerd may not replay what it missed) */
	bool broke;
	int64_t broke_at_ms;	  /* wall clock, when the first break since the last check came */
	struct reconcile *check;  /* that check, under way */
	struct pg_query *restore; /* the idle_action none sandboxes it stopped, being read */
	bool check_again;	  /* ... and another break since it began */
	/* the event in hand */
	enum watch_kind kind;
	char id[37];
	char container[80];
	int exit_code; /* -1: Docker did not say */
	bool oom;
	char reason[64];
	/* containers an oom event was seen for, a ring */
	char oom_ids[OOM_REMEMBERED][80];
	size_t oom_next;
};

static void watch_set_state(struct events_watcher *w, enum watch_state next);
static void watch_event(const struct docker_event *ev, void *arg);
static void watch_read(struct events_watcher *w);
static void watch_read_done(struct sandbox_ref *ref, const struct core_error *err, void *arg);
static void watch_inspected(struct json_object *info, bool missing, const char *err, void *arg);
static void watch_move(struct events_watcher *w, enum sandbox_status from, enum sandbox_status to);
static void watch_moved(const struct core_error *err, const struct sandbox *after, void *arg);
static void watch_retry(struct events_watcher *w, const char *why);
static void watch_retry_fire(evutil_socket_t fd, short what, void *arg);
static void watch_done(struct events_watcher *w);
static void watch_stream_state(enum docker_events_state st, const char *why, void *arg);
static void watch_check(struct events_watcher *w);
static void watch_checked(int rc, void *arg);
static void watch_restore(struct events_watcher *w);
static void watch_docker_health(enum docker_health health, void *arg);

static void watch_set_state(struct events_watcher *w, enum watch_state next)
{
	static const unsigned legal[WATCH_STATE_MAX] = {
		[WATCH_IDLE] = 1u << WATCH_READING,
		[WATCH_READING] =
			1u << WATCH_INSPECTING | 1u << WATCH_MOVING | 1u << WATCH_RETRY | 1u << WATCH_IDLE,
		[WATCH_INSPECTING] = 1u << WATCH_MOVING | 1u << WATCH_IDLE,
		[WATCH_MOVING] = 1u << WATCH_RETRY | 1u << WATCH_IDLE | 1u << WATCH_READING,
		[WATCH_RETRY] = 1u << WATCH_READING,
	};
	CHECK(next < WATCH_STATE_MAX && (legal[w->state] & (1u << next)));
	log_debug("sandbox=%s docker events: %s -> %s", w->id, state_names[w->state], state_names[next]);
	w->state = next;
}

struct events_watcher *events_watcher_new(struct sandbox_service *svc)
{
	struct events_watcher *w = calloc(1, sizeof(*w));
	CHECK(w != NULL);
	w->svc = svc;
	w->retry = evtimer_new(svc->base, watch_retry_fire, w);
	CHECK(w->retry != NULL);
	return w;
}

void events_watcher_start(struct events_watcher *w, int64_t since_ns)
{
	static const char *const actions[] = { "die", "oom", "destroy", NULL };
	char label[128];
	snprintf(label, sizeof(label), "sandbar.cluster=%s", w->svc->cluster);
	struct docker_events_opts opts = {
		.type = "container",
		.label = label,
		.actions = actions,
		.since_nano = since_ns > CLOCK_SLACK_NS ? since_ns - CLOCK_SLACK_NS : 0,
	};
	static const struct docker_events_cbs cbs = { .event = watch_event, .state = watch_stream_state };
	CHECK(w->stream == NULL);
	w->stream = docker_events_new(w->svc->docker, &opts, &cbs, w);
	docker_watch_health(w->svc->docker, watch_docker_health, w);
	docker_events_start(w->stream);
}

void events_watcher_free(struct events_watcher *w)
{
	if (!w)
		return;
	registry_wait_cancel(w->wait);
	docker_call_cancel(w->dcall);
	reconcile_free_at_exit(w->check);
	pg_query_cancel(w->restore);
	event_free(w->retry);
	if (w->stream)
		docker_unwatch_health(w->svc->docker, watch_docker_health, w);
	docker_events_free(w->stream);
	free(w);
}

/* ---- the oom ring ---- */

static bool oom_seen(const struct events_watcher *w, const char *container)
{
	for (size_t i = 0; i < OOM_REMEMBERED; i++)
		if (strcmp(w->oom_ids[i], container) == 0)
			return true;
	return false;
}

static void oom_note(struct events_watcher *w, const char *container)
{
	if (oom_seen(w, container))
		return;
	snprintf(w->oom_ids[w->oom_next], sizeof(w->oom_ids[0]), "%s", container);
	w->oom_next = (w->oom_next + 1) % OOM_REMEMBERED;
}

static void oom_forget(struct events_watcher *w, const char *container)
{
	for (size_t i = 0; i < OOM_REMEMBERED; i++)
		if (strcmp(w->oom_ids[i], container) == 0)
			w->oom_ids[i][0] = '\0';
}

/* ---- one event ---- */

static void watch_event(const struct docker_event *ev, void *arg)
{
	struct events_watcher *w = arg;
	CHECK(w->state == WATCH_IDLE);
	if (!ev->id[0] || strlen(ev->id) >= sizeof(w->container))
		return;
	if (strcmp(ev->action, "oom") == 0) {
		oom_note(w, ev->id);
		return;
	}
	const char *id = docker_event_attr(ev, "sandbar.sandbox");
	if (!sandbox_id_valid(id)) {
		log_debug("docker events: %s of container %.12s, no sandbox label", ev->action, ev->id);
		return;
	}
	w->kind = strcmp(ev->action, "die") == 0 ? WATCH_DIE : WATCH_DESTROY;
	snprintf(w->id, sizeof(w->id), "%s", id);
	snprintf(w->container, sizeof(w->container), "%s", ev->id);
	const char *code = docker_event_attr(ev, "exitCode");
	char *end = NULL;
	long n = code ? strtol(code, &end, 10) : -1;
	w->exit_code = code && *code && !*end && n >= 0 && n <= 255 ? (int)n : -1;
	w->oom = w->kind == WATCH_DIE && oom_seen(w, ev->id);
	w->tries = 0;
	w->rereads = 0;
	docker_events_pause(w->stream);
	watch_read(w);
}

static void watch_read(struct events_watcher *w)
{
	watch_set_state(w, WATCH_READING);
	w->wait = registry_acquire(w->svc->reg, w->id, REGISTRY_FRESH, watch_read_done, w);
}

static void watch_read_done(struct sandbox_ref *ref, const struct core_error *err, void *arg)
{
	struct events_watcher *w = arg;
	w->wait = NULL;
	if (err) {
		if (err->kind == CORE_UNAVAILABLE) {
			watch_retry(w, err->message);
			return;
		}
		log_debug("sandbox=%s docker events: not ours to move: %s", w->id, err->message);
		watch_done(w);
		return;
	}
	const struct sandbox *sb = sandbox_ref_get(ref);
	enum sandbox_status status = sb->status;
	bool its_container = strcmp(sb->container_id, w->container) == 0;
	sandbox_ref_put(ref);
	if (!its_container) {
		log_debug("sandbox=%s docker events: container %.12s is not its own", w->id, w->container);
		watch_done(w);
		return;
	}
	if (status == SANDBOX_WARM) {
		/* a pool member nobody claimed: it fails, and the pool removes and replaces it */
		snprintf(w->reason, sizeof(w->reason), "%s",
			 w->kind == WATCH_DIE ? "the pool member's container stopped"
					      : "the pool member's container was removed");
		watch_move(w, status, SANDBOX_ERROR);
		return;
	}
	if (w->kind == WATCH_DIE && status == SANDBOX_RUNNING) {
		watch_set_state(w, WATCH_INSPECTING);
		w->dcall = docker_container_inspect(w->svc->docker, w->container, watch_inspected, w);
		return;
	}
	if (w->kind == WATCH_DESTROY && (status == SANDBOX_RUNNING || status == SANDBOX_STOPPED)) {
		snprintf(w->reason, sizeof(w->reason), "the container was removed");
		watch_move(w, status, SANDBOX_ERROR);
		return;
	}
	/* a stop, start, create, delete or expiry of our own (or done already) */
	log_debug("sandbox=%s docker events: %s left alone: the sandbox is %s", w->id,
		  w->kind == WATCH_DIE ? "die" : "destroy", sandbox_status_name(status));
	watch_done(w);
}

/* A die is believed once Docker says the container does not run now: a
 * replayed or late die of a container started again since moves nothing. */
static void watch_inspected(struct json_object *info, bool missing, const char *err, void *arg)
{
	struct events_watcher *w = arg;
	w->dcall = NULL;
	struct json_object *state = NULL, *v;
	if (missing) {
		log_debug("sandbox=%s docker events: container gone already; its destroy follows", w->id);
		watch_done(w);
		return;
	}
	if (!err && json_object_object_get_ex(info, "State", &state)) {
		if (json_object_object_get_ex(state, "Running", &v) && json_object_get_boolean(v)) {
			log_debug("sandbox=%s docker events: the container runs again", w->id);
			watch_done(w);
			return;
		}
		if (json_object_object_get_ex(state, "OOMKilled", &v) && json_object_get_boolean(v))
			w->oom = true;
		if (w->exit_code < 0 && json_object_object_get_ex(state, "ExitCode", &v))
			w->exit_code = json_object_get_int(v);
	} else if (err) {
		/* Docker cannot say now: the event is its word */
		log_warn("sandbox=%s docker events: inspect: %s", w->id, err);
	}
	if (w->oom)
		snprintf(w->reason, sizeof(w->reason), "oom");
	else if (w->exit_code >= 0)
		snprintf(w->reason, sizeof(w->reason), "exited with code %d", w->exit_code);
	else
		snprintf(w->reason, sizeof(w->reason), "the container stopped");
	watch_move(w, SANDBOX_RUNNING, SANDBOX_STOPPED);
}

static void watch_move(struct events_watcher *w, enum sandbox_status from, enum sandbox_status to)
{
	watch_set_state(w, WATCH_MOVING);
	struct sandbox_transition t = {
		.id = w->id, .from = from, .to = to, .reason = w->reason, .actor = ACTOR
	};
	w->wait = registry_transition(w->svc->reg, &t, watch_moved, w);
}

static void watch_moved(const struct core_error *err, const struct sandbox *after, void *arg)
{
	struct events_watcher *w = arg;
	w->wait = NULL;
	if (err && err->kind == CORE_UNAVAILABLE) {
		watch_retry(w, err->message);
		return;
	}
	if (err && err->kind == CORE_CONFLICT && ++w->rereads <= REREAD_MAX) {
		/* another instance, an operation of ours, or a claim (warm -> running)
		 * moved it first: the event applies to what it is now, or is left alone */
		log_debug("sandbox=%s docker events: %s; read again", w->id, err->message);
		watch_read(w);
		return;
	}
	if (err && err->kind == CORE_CONFLICT)
		log_debug("sandbox=%s docker events: %s", w->id, err->message);
	else if (err)
		log_warn("sandbox=%s docker events: %s", w->id, err->message);
	else if (after && after->status == SANDBOX_ERROR)
		pool_kick(w->svc->pool); /* a failed member is replaced now */
	watch_done(w);
}

static void watch_retry(struct events_watcher *w, const char *why)
{
	if (++w->tries > RETRY_MAX) {
		log_error("sandbox=%s docker events: %s of container %.12s dropped after %d tries: %s", w->id,
			  w->kind == WATCH_DIE ? "die" : "destroy", w->container, RETRY_MAX, why);
		watch_done(w);
		return;
	}
	log_warn("sandbox=%s docker events: %s; again in %d ms", w->id, why, RETRY_MS);
	watch_set_state(w, WATCH_RETRY);
	struct timeval tv = { .tv_sec = RETRY_MS / 1000, .tv_usec = (RETRY_MS % 1000) * 1000 };
	evtimer_add(w->retry, &tv);
}

static void watch_retry_fire(evutil_socket_t fd, short what, void *arg)
{
	watch_read(arg);
}

/* The event is handled: the next one. */
static void watch_done(struct events_watcher *w)
{
	oom_forget(w, w->container);
	watch_set_state(w, WATCH_IDLE);
	docker_events_resume(w->stream);
}

/* ---- the stream broke ---- */

/* A stream opened again replays from the last event's time, but dockerd
 * keeps only its last 256 events (none across its own restart): once it
 * flows again, running and warm rows are checked against their containers. */
static void watch_stream_state(enum docker_events_state st, const char *why, void *arg)
{
	struct events_watcher *w = arg;
	if (st == DOCKER_EVENTS_BACKOFF) {
		if (!w->broke)
			w->broke_at_ms = clock_real_ms();
		w->broke = true;
		log_warn("docker events: the stream broke: %s", why ? why : "?");
		return;
	}
	if (st != DOCKER_EVENTS_STREAMING || !w->broke)
		return;
	w->broke = false;
	if (w->check)
		w->check_again = true; /* the check under way may have missed this break's losses */
	else
		watch_check(w);
}

static void watch_check(struct events_watcher *w)
{
	log_info("docker events: the stream flows again; checking running sandboxes' containers");
	w->check = reconcile_lost_rows(w->svc, watch_checked, w);
}

static void watch_checked(int rc, void *arg)
{
	struct events_watcher *w = arg;
	w->check = NULL;
	if (rc != 0)
		log_warn("docker events: the check after the stream's break was incomplete");
	if (w->check_again) {
		w->check_again = false;
		watch_check(w);
		return;
	}
	pool_kick(w->svc->pool); /* failed members are replaced now */
	watch_restore(w);
}

/* Docker answers again: the stream need not wait out its back-off. */
static void watch_docker_health(enum docker_health health, void *arg)
{
	struct events_watcher *w = arg;
	if (health != DOCKER_REACHABLE)
		return;
	docker_events_kick(w->stream);
	sandbox_leftovers_retry(w->svc);
}

static void restore_started(const struct sandbox_result *res, void *arg)
{
	if (res->err.kind != CORE_OK)
		log_warn("docker events: starting again a sandbox the break stopped: %s", res->err.message);
}

static void watch_restored(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct events_watcher *w = arg;
	w->restore = NULL;
	if (err != PG_OK) {
		log_warn("docker events: cannot read the sandboxes to start again: %s",
			 message ? message : "?");
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		log_info("sandbox=%s idle_action none, stopped by Docker's break: starting it again",
			 PQgetvalue(res, i, 0));
		sandbox_start(w->svc, PQgetvalue(res, i, 0), "docker-restore", restore_started, NULL);
	}
}

/* idle_action none means kept running: those whose last move was to stopped,
 * by Docker's events or the reconciler, since the break began. */
static void watch_restore(struct events_watcher *w)
{
	static const char sql[] =
		"SELECT s.id FROM sandboxes s WHERE s.cluster = $1 AND s.status = 'stopped' "
		"AND s.idle_action = 'none' AND coalesce("
		"  (SELECT e.to_status = 'stopped' AND e.actor IN ('" ACTOR "', 'reconciler')"
		"     AND e.at >= to_timestamp($2::double precision / 1000)"
		"   FROM sandbox_events e WHERE e.sandbox_id = s.id ORDER BY e.id DESC LIMIT 1), false)";
	char since[24];
	snprintf(since, sizeof(since), "%" PRId64, w->broke_at_ms - RESTORE_LOOKBACK_MS);
	const char *params[] = { w->svc->cluster, since };
	if (!w->restore)
		w->restore = pg_query_send(w->svc->pg, sql, 2, params, watch_restored, w);
}
