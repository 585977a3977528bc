/* The reaper: one timer, armed for the earliest deadline among this
 * cluster's sandboxes, and never further out than the reaper interval (so
 * deadlines set by other instances sharing the database are seen within it).
 * Two deadlines: idleness (expires_at, monza's last activity + idle timeout,
 * held off by a keepalive) applies the sandbox's idle action: `expire`
 * removes it, `stop` stops it (the workspace kept), `none` never comes here;
 * the hard lifetime (ends_at) removes it whatever its activity or status.
 * Every status moves through the registry (a compare-and-set: two instances
 * never reap the same sandbox). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "internal.h"

/* Rows claimed per pass; a full batch makes the next pass start at once. */
#define REAP_BATCH 64

enum reaper_state { REAPER_IDLE, REAPER_CLAIMING, REAPER_DESTROYING, REAPER_NEXT_DEADLINE, REAPER_STATE_MAX };

struct reaper {
	struct sandbox_service *svc;
	enum reaper_state state;
	struct event *timer;
	struct timeval armed_at; /* absolute (monotonic-ish, from the loop's cached time) */
	bool armed;
	int destroying;
	bool full_batch;
	int64_t noted_ms; /* a deadline noted while a pass ran (delay), -1 when none */
};

static void reaper_fire(evutil_socket_t fd, short what, void *arg);
static void reaper_found(enum pg_error err, PGresult *res, const char *message, void *arg);
static void reaper_claimed(const struct core_error *err, const struct sandbox *after, void *arg);
static void reaper_stopped(const struct sandbox_result *res, void *arg);
static void reaper_destroyed(const char *err, void *arg);
static void reaper_next(struct reaper *r);
static void reaper_next_done(enum pg_error err, PGresult *res, const char *message, void *arg);
static void reaper_arm(struct reaper *r, int64_t delay_ms);

static void reaper_set_state(struct reaper *r, enum reaper_state next)
{
	static const bool legal[REAPER_STATE_MAX][REAPER_STATE_MAX] = {
		[REAPER_IDLE] = { [REAPER_CLAIMING] = true },
		[REAPER_CLAIMING] = { [REAPER_DESTROYING] = true,
				      [REAPER_NEXT_DEADLINE] = true,
				      [REAPER_IDLE] = true },
		[REAPER_DESTROYING] = { [REAPER_NEXT_DEADLINE] = true },
		[REAPER_NEXT_DEADLINE] = { [REAPER_IDLE] = true },
	};
	CHECK(next < REAPER_STATE_MAX && legal[r->state][next]);
	r->state = next;
}

struct reaper *reaper_new(struct sandbox_service *svc)
{
	struct reaper *r = calloc(1, sizeof(*r));
	CHECK(r != NULL);
	r->svc = svc;
	r->noted_ms = -1;
	r->timer = evtimer_new(svc->base, reaper_fire, r);
	CHECK(r->timer != NULL);
	return r;
}

void reaper_free(struct reaper *r)
{
	if (!r)
		return;
	event_free(r->timer);
	free(r);
}

void reaper_start(struct reaper *r)
{
	reaper_arm(r, 0);
}

static void reaper_arm(struct reaper *r, int64_t delay_ms)
{
	int64_t interval = r->svc->cfg->reaper_interval_ms;
	if (delay_ms > interval)
		delay_ms = interval;
	if (delay_ms < 0)
		delay_ms = 0;
	struct timeval now, tv = { .tv_sec = (time_t)(delay_ms / 1000),
				   .tv_usec = (suseconds_t)(delay_ms % 1000) * 1000 };
	event_base_gettimeofday_cached(r->svc->base, &now);
	timeradd(&now, &tv, &r->armed_at);
	r->armed = true;
	evtimer_add(r->timer, &tv);
}

void reaper_note_sandbox(struct reaper *r, const struct sandbox *sb)
{
	if (!sb)
		return;
	int64_t now_us = clock_real_us();
	int64_t at = INT64_MAX;
	if (sb->status == SANDBOX_RUNNING && sb->idle_action != SANDBOX_IDLE_NONE)
		at = sb->expires_at_us > sb->keepalive_until_us ? sb->expires_at_us : sb->keepalive_until_us;
	if (sb->ends_at_us && sb->ends_at_us < at)
		at = sb->ends_at_us;
	if (at != INT64_MAX)
		reaper_note_deadline(r, at > now_us ? (at - now_us + 999) / 1000 : 0);
}

void reaper_note_deadline(struct reaper *r, int64_t delay_ms)
{
	if (r->state != REAPER_IDLE) {
		if (r->noted_ms < 0 || delay_ms < r->noted_ms)
			r->noted_ms = delay_ms;
		return;
	}
	struct timeval now,
		tv = { .tv_sec = (time_t)(delay_ms / 1000),
		       .tv_usec = (suseconds_t)(delay_ms % 1000) * 1000 },
		at;
	event_base_gettimeofday_cached(r->svc->base, &now);
	timeradd(&now, &tv, &at);
	if (!r->armed || timercmp(&at, &r->armed_at, <))
		reaper_arm(r, delay_ms);
}

static void reaper_fire(evutil_socket_t fd, short what, void *arg)
{
	struct reaper *r = arg;
	r->armed = false;
	reaper_set_state(r, REAPER_CLAIMING);
	static const char sql[] =
		"SELECT id, status, idle_action, coalesce(ends_at <= now(), false), "
		"  coalesce(idle_timeout_ms, $3::bigint) / 1000 FROM sandboxes WHERE cluster = $1 AND ("
		"  (status = 'running' AND idle_action <> 'none' AND expires_at <= now() "
		"   AND (keepalive_until IS NULL OR keepalive_until <= now())) "
		"  OR (ends_at <= now() AND status IN ('running', 'stopped', 'error'))) "
		"ORDER BY least(expires_at, ends_at) LIMIT $2";
	char batch[16], idle[24];
	snprintf(batch, sizeof(batch), "%d", REAP_BATCH);
	snprintf(idle, sizeof(idle), "%lld", (long long)r->svc->cfg->sandbox_idle_timeout_ms);
	const char *params[] = { r->svc->cluster, batch, idle };
	pg_query_send(r->svc->pg, sql, 3, params, reaper_found, r);
}

static void reaper_found(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct reaper *r = arg;
	if (err != PG_OK) {
		log_warn("reaper: %s", message ? message : "database unavailable");
		reaper_set_state(r, REAPER_IDLE);
		reaper_arm(r, r->svc->cfg->reaper_interval_ms);
		return;
	}
	int n = PQntuples(res);
	r->full_batch = n >= REAP_BATCH;
	if (n == 0) {
		reaper_set_state(r, REAPER_NEXT_DEADLINE);
		reaper_next(r);
		return;
	}
	reaper_set_state(r, REAPER_DESTROYING);
	/* one extra count, so that the pass cannot end while claims are still sent */
	r->destroying = n + 1;
	for (int i = 0; i < n; i++) {
		const char *id = PQgetvalue(res, i, 0);
		enum sandbox_status from;
		enum sandbox_idle_action action;
		bool ended = PQgetvalue(res, i, 3)[0] == 't';
		char reason[80];
		if (sandbox_status_parse(PQgetvalue(res, i, 1), &from) != 0 ||
		    sandbox_idle_action_parse(PQgetvalue(res, i, 2), &action) != 0) {
			reaper_destroyed(NULL, r);
			continue;
		}
		if (ended)
			snprintf(reason, sizeof(reason), "its lifetime ended");
		else
			snprintf(reason, sizeof(reason), "idle for longer than %ss", PQgetvalue(res, i, 4));
		if (!ended && action == SANDBOX_IDLE_STOP) {
			log_info("sandbox=%s stopping (idle)", id);
			sandbox_stop_for(r->svc, id, "reaper", reason, reaper_stopped, r);
			continue;
		}
		struct sandbox_transition t = {
			.id = id,
			.from = from,
			.to = SANDBOX_EXPIRED,
			.reason = reason,
			.actor = "reaper",
		};
		registry_transition(r->svc->reg, &t, reaper_claimed, r);
	}
	reaper_destroyed(NULL, r);
}

/* Claimed (or another instance or operation moved it first). */
static void reaper_claimed(const struct core_error *err, const struct sandbox *after, void *arg)
{
	struct reaper *r = arg;
	if (err) {
		reaper_destroyed(NULL, r);
		return;
	}
	log_info("sandbox=%s expired (%s)", after->id, after->status_reason ? after->status_reason : "?");
	sandbox_destroy(r->svc, after->id, reaper_destroyed, r);
}

/* An idle sandbox stopped (or another request moved it first). */
static void reaper_stopped(const struct sandbox_result *res, void *arg)
{
	struct reaper *r = arg;
	if (res->err.kind != CORE_OK && res->err.kind != CORE_CONFLICT)
		log_warn("reaper: stopping an idle sandbox: %s", res->err.message);
	reaper_destroyed(NULL, r);
}

static void reaper_destroyed(const char *err, void *arg)
{
	struct reaper *r = arg;
	if (err)
		log_warn("reaper: %s", err);
	if (--r->destroying > 0)
		return;
	reaper_set_state(r, REAPER_NEXT_DEADLINE);
	reaper_next(r);
}

static void reaper_next(struct reaper *r)
{
	static const char sql[] =
		"SELECT greatest(0, ceil(extract(epoch FROM least("
		"  (SELECT min(greatest(expires_at, coalesce(keepalive_until, expires_at))) FROM sandboxes "
		"   WHERE status = 'running' AND idle_action <> 'none' AND cluster = $1), "
		"  (SELECT min(ends_at) FROM sandboxes WHERE ends_at IS NOT NULL AND cluster = $1 "
		"   AND status IN ('running', 'stopped', 'error'))) - now()) * 1000))::bigint";
	const char *params[] = { r->svc->cluster };
	pg_query_send(r->svc->pg, sql, 1, params, reaper_next_done, r);
}

static void reaper_next_done(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct reaper *r = arg;
	reaper_set_state(r, REAPER_IDLE);
	int64_t delay = r->svc->cfg->reaper_interval_ms;
	if (r->full_batch)
		delay = 0;
	else if (err == PG_OK && !PQgetisnull(res, 0, 0))
		delay = atoll(PQgetvalue(res, 0, 0));
	reaper_arm(r, delay);
	if (r->noted_ms >= 0) {
		int64_t noted = r->noted_ms;
		r->noted_ms = -1;
		reaper_note_deadline(r, noted);
	}
}
