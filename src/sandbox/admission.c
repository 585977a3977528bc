/* Admission control: a create or a start gets room only while the memory
 * limits of the cluster's sandboxes that hold memory, plus its own, stay
 * within SANDBAR_MEMORY_OVERCOMMIT × the Docker host's memory; short of room,
 * running idle-stop sandboxes are stopped first (least recently active, just
 * enough of them), else it is refused (CAPACITY). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "core/config.h"
#include "core/log.h"
#include "docker/engine.h"
#include "internal.h"

/* Candidates read when an ask must make room (the least recently active first). */
#define VICTIMS_MAX 256
#define MIB	    (1024 * 1024)

enum admit_state {
	ADMIT_START,	/* asked: looked at from the loop, never on the asker's stack */
	ADMIT_HOST,	/* the Docker host's memory fetched, once for every ask waiting */
	ADMIT_COUNT,	/* what the cluster's sandboxes hold, summed in PostgreSQL */
	ADMIT_VICTIMS,	/* the running idle-stop sandboxes that would make room */
	ADMIT_STOPPING, /* those stopped (through the ordinary stop) */
	ADMIT_RECOUNT,	/* summed again, once */
	ADMIT_HELD,	/* admitted: the bytes count here until the row that carries them is written */
	ADMIT_DONE,
	ADMIT_STATE_MAX
};

static const char *const admit_state_names[ADMIT_STATE_MAX] = {
	"start", "host", "count", "victims", "stopping", "recount", "held", "done",
};

struct victim {
	struct admission_wait *w;
	char id[37];
	struct sandbox_call *stop; /* NULL once it answered */
};

struct admission_wait {
	struct admission *adm;
	bool may_stop; /* idle-stop sandboxes may be stopped to make room */
	enum admit_state state;
	struct admission_wait *prev, *next; /* adm->asks */
	uint64_t memory;
	char actor[64];
	admission_fn cb;
	void *arg;
	struct event *later;
	struct pg_query *query;
	uint64_t released_at; /* adm->released when the count was sent */
	uint64_t holding;     /* what the cluster holds, as last counted */
	uint64_t need;	      /* bytes to free for this ask to fit */
	uint64_t held;	      /* what this ask adds to adm->held */
	struct victim *victims;
	size_t nvictims, stopping;
};

struct admission {
	struct sandbox_service *svc;
	uint64_t host_mem; /* MemTotal of the Docker host, 0 until known */
	struct docker_call *info;
	struct admission_wait *asks; /* every ask not done */
	uint64_t held;		     /* admitted and not yet in the database */
	uint64_t released;	     /* ever released: a count racing a write sees these as held */
};

static void admit_set_state(struct admission_wait *w, enum admit_state next);
static void admit_fire(evutil_socket_t fd, short what, void *arg);
static void host_fetched(const struct docker_info *info, const char *err, void *arg);
static void admit_count(struct admission_wait *w, enum admit_state state);
static void counted(enum pg_error err, PGresult *res, const char *message, void *arg);
static void find_victims(struct admission_wait *w);
static void victims_found(enum pg_error err, PGresult *res, const char *message, void *arg);
static void victim_stopped(const struct sandbox_result *res, void *arg);
static void admit(struct admission_wait *w);
static void refuse(struct admission_wait *w);
static void admit_fail(struct admission_wait *w, const struct core_error *err);
static bool query_failed(struct admission_wait *w, enum pg_error err, const char *message);
static void admit_free(struct admission_wait *w);

static bool admit_transition_legal(enum admit_state from, enum admit_state to)
{
	static const bool legal[ADMIT_STATE_MAX][ADMIT_STATE_MAX] = {
		[ADMIT_START] = { [ADMIT_HOST] = true, [ADMIT_COUNT] = true, [ADMIT_HELD] = true },
		[ADMIT_HOST] = { [ADMIT_COUNT] = true },
		[ADMIT_COUNT] = { [ADMIT_VICTIMS] = true, [ADMIT_HELD] = true },
		/* or refused at once: stopping them all would not do */
		[ADMIT_VICTIMS] = { [ADMIT_STOPPING] = true },
		[ADMIT_STOPPING] = { [ADMIT_RECOUNT] = true },
		[ADMIT_RECOUNT] = { [ADMIT_HELD] = true },
	};
	return to == ADMIT_DONE || legal[from][to];
}

static void admit_set_state(struct admission_wait *w, enum admit_state next)
{
	CHECK(next < ADMIT_STATE_MAX && admit_transition_legal(w->state, next));
	log_debug("admission %s: %s -> %s", w->actor, admit_state_names[w->state], admit_state_names[next]);
	w->state = next;
}

/* ---- the arithmetic ---- */

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

uint64_t admission_limit(double overcommit, uint64_t host_mem)
{
	double limit = overcommit * (double)host_mem;
	if (!(limit > 0))
		return 0;
	if (limit >= 18446744073709551615.0)
		return UINT64_MAX;
	return (uint64_t)limit;
}

uint64_t admission_shortfall(uint64_t limit, uint64_t holding, uint64_t ask)
{
	uint64_t want = add_sat(holding, ask);
	return want > limit ? want - limit : 0;
}

size_t admission_pick(const uint64_t *memory, size_t n, uint64_t need)
{
	uint64_t freed = 0;
	for (size_t i = 0; need > 0 && i < n; i++) {
		freed = add_sat(freed, memory[i]);
		if (freed >= need)
			return i + 1;
	}
	return 0;
}

/* ---- the object ---- */

struct admission *admission_new(struct sandbox_service *svc)
{
	struct admission *adm = calloc(1, sizeof(*adm));
	CHECK(adm != NULL);
	adm->svc = svc;
	return adm;
}

void admission_free(struct admission *adm)
{
	if (!adm)
		return;
	while (adm->asks)
		admission_cancel(adm->asks);
	if (adm->info)
		docker_call_cancel(adm->info);
	free(adm);
}

struct admission_wait *admission_ask(struct sandbox_service *svc, uint64_t memory, const char *actor,
				     bool may_stop, admission_fn cb, void *arg)
{
	struct admission *adm = svc->admission;
	struct admission_wait *w = calloc(1, sizeof(*w));
	CHECK(w != NULL);
	w->adm = adm;
	w->state = ADMIT_START;
	w->memory = memory;
	w->may_stop = may_stop;
	snprintf(w->actor, sizeof(w->actor), "%s", actor ? actor : "-");
	w->cb = cb;
	w->arg = arg;
	w->next = adm->asks;
	if (adm->asks)
		adm->asks->prev = w;
	adm->asks = w;
	w->later = evtimer_new(svc->base, admit_fire, w);
	CHECK(w->later != NULL);
	event_active(w->later, EV_TIMEOUT, 0);
	return w;
}

static void admit_fire(evutil_socket_t fd, short what, void *arg)
{
	struct admission_wait *w = arg;
	struct admission *adm = w->adm;
	if (adm->svc->cfg->memory_overcommit == 0) {
		admit(w); /* admission is off */
	} else if (adm->host_mem) {
		admit_count(w, ADMIT_COUNT);
	} else {
		admit_set_state(w, ADMIT_HOST);
		if (!adm->info)
			adm->info = docker_info(adm->svc->docker, host_fetched, adm);
	}
}

/* Fetched once; while unknown (Docker did not answer), the next ask asks again. */
static void host_fetched(const struct docker_info *info, const char *err, void *arg)
{
	struct admission *adm = arg;
	adm->info = NULL;
	if (info) {
		adm->host_mem = info->mem_total;
		log_info("admission: the Docker host has %" PRIu64 " MiB; sandboxes' memory limits may "
			 "add up to %g times that",
			 info->mem_total / MIB, adm->svc->cfg->memory_overcommit);
	} else {
		log_warn("admission: the Docker host's memory: %s", err);
	}
	/* each ask leaves ADMIT_HOST here, whatever its callback does to the list */
	for (;;) {
		struct admission_wait *w = adm->asks;
		while (w && w->state != ADMIT_HOST)
			w = w->next;
		if (!w)
			break;
		if (adm->host_mem) {
			admit_count(w, ADMIT_COUNT);
		} else {
			struct core_error e;
			core_error_set(&e, CORE_UNAVAILABLE, "docker_unavailable",
				       "Docker: the host's memory is unknown: %s", err ? err : "?");
			admit_fail(w, &e);
		}
	}
}

/* What the cluster's sandboxes that hold memory hold: a row without a
 * recorded limit has the server's default. */
static void admit_count(struct admission_wait *w, enum admit_state state)
{
	static const char sql[] =
		"SELECT coalesce(sum(coalesce(memory_bytes, $2::bigint)), 0)::bigint FROM sandboxes "
		"WHERE cluster = $1 AND status IN ('creating', 'starting', 'running', 'stopping', 'warm')";
	admit_set_state(w, state);
	struct sandbox_service *svc = w->adm->svc;
	char dflt[24];
	snprintf(dflt, sizeof(dflt), "%" PRIu64, svc->cfg->sandbox_memory_limit);
	const char *params[] = { svc->cluster, dflt };
	w->released_at = w->adm->released;
	w->query = pg_query_send(svc->pg, sql, 2, params, counted, w);
}

/* A query of w answered: true (and w is gone) when it failed. */
static bool query_failed(struct admission_wait *w, enum pg_error err, const char *message)
{
	w->query = NULL;
	if (err == PG_OK)
		return false;
	struct core_error e;
	pg_core_error(&e, err, message);
	admit_fail(w, &e);
	return true;
}

static void counted(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct admission_wait *w = arg;
	struct admission *adm = w->adm;
	if (query_failed(w, err, message))
		return;
	/* bytes released since the count was sent may be in it or not: counted twice rather than never */
	uint64_t holding = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	w->holding = add_sat(holding, add_sat(adm->held, adm->released - w->released_at));
	uint64_t limit = admission_limit(adm->svc->cfg->memory_overcommit, adm->host_mem);
	w->need = admission_shortfall(limit, w->holding, w->memory);
	if (w->need == 0)
		admit(w);
	else if (w->state == ADMIT_RECOUNT || !w->may_stop)
		refuse(w);
	else
		find_victims(w);
}

/* Running idle-stop sandboxes, least recently active first, but for those
 * other asks are stopping already (their room is theirs). */
static void find_victims(struct admission_wait *w)
{
	static const char sql[] =
		"SELECT id, coalesce(memory_bytes, $2::bigint) FROM sandboxes WHERE cluster = $1 "
		"AND status = 'running' AND idle_action = 'stop' AND NOT (id = ANY ($3::uuid[])) "
		"ORDER BY last_activity, id LIMIT $4";
	admit_set_state(w, ADMIT_VICTIMS);
	struct sandbox_service *svc = w->adm->svc;
	struct evbuffer *taken = evbuffer_new();
	CHECK(taken != NULL);
	evbuffer_add(taken, "{", 1);
	bool first = true;
	for (struct admission_wait *o = w->adm->asks; o; o = o->next) {
		for (size_t i = 0; o->state == ADMIT_STOPPING && i < o->nvictims; i++) {
			evbuffer_add_printf(taken, "%s%s", first ? "" : ",", o->victims[i].id);
			first = false;
		}
	}
	evbuffer_add(taken, "}", 2); /* and the NUL */
	char dflt[24], limit[16];
	snprintf(dflt, sizeof(dflt), "%" PRIu64, svc->cfg->sandbox_memory_limit);
	snprintf(limit, sizeof(limit), "%d", VICTIMS_MAX);
	const char *params[] = { svc->cluster, dflt, (const char *)evbuffer_pullup(taken, -1), limit };
	w->query = pg_query_send(svc->pg, sql, 4, params, victims_found, w);
	evbuffer_free(taken);
}

static void victims_found(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct admission_wait *w = arg;
	if (query_failed(w, err, message))
		return;
	size_t n = (size_t)PQntuples(res);
	uint64_t *memory = calloc(n + 1, sizeof(*memory));
	CHECK(memory != NULL);
	for (size_t i = 0; i < n; i++)
		memory[i] = strtoull(PQgetvalue(res, (int)i, 1), NULL, 10);
	size_t k = admission_pick(memory, n, w->need);
	free(memory);
	if (k == 0) {
		refuse(w); /* stopping them all would not make room: none is stopped */
		return;
	}
	admit_set_state(w, ADMIT_STOPPING);
	w->victims = calloc(k, sizeof(*w->victims));
	CHECK(w->victims != NULL);
	w->nvictims = w->stopping = k;
	for (size_t i = 0; i < k; i++) {
		struct victim *v = &w->victims[i];
		v->w = w;
		snprintf(v->id, sizeof(v->id), "%s", PQgetvalue(res, (int)i, 0));
	}
	/* sandbox_stop_for never calls back on this stack */
	for (size_t i = 0; i < k; i++) {
		struct victim *v = &w->victims[i];
		log_info("sandbox=%s stopping to make room for %" PRIu64 " MiB (%s)", v->id,
			 (w->memory + MIB - 1) / MIB, w->actor);
		v->stop = sandbox_stop_for(w->adm->svc, v->id, "admission",
					   "stopped to make room (the least recently active)", victim_stopped,
					   v);
	}
}

/* Stopped, or not (another request or instance moved it first): the recount says. */
static void victim_stopped(const struct sandbox_result *res, void *arg)
{
	struct victim *v = arg;
	struct admission_wait *w = v->w;
	v->stop = NULL;
	if (res->err.kind != CORE_OK)
		log_info("sandbox=%s not stopped to make room: %s", v->id, res->err.message);
	if (--w->stopping == 0)
		admit_count(w, ADMIT_RECOUNT);
}

static void admit(struct admission_wait *w)
{
	struct admission *adm = w->adm;
	admit_set_state(w, ADMIT_HELD);
	if (adm->svc->cfg->memory_overcommit != 0) {
		w->held = w->memory;
		adm->held += w->held;
	}
	w->cb(NULL, w->arg);
}

static void refuse(struct admission_wait *w)
{
	struct admission *adm = w->adm;
	uint64_t holding = w->holding,
		 limit = admission_limit(adm->svc->cfg->memory_overcommit, adm->host_mem);
	log_info("admission: %s refused %" PRIu64 " MiB: sandboxes hold %" PRIu64 " MiB of %" PRIu64 " MiB",
		 w->actor, (w->memory + MIB - 1) / MIB, holding / MIB, limit / MIB);
	struct core_error e;
	core_error_set(&e, CORE_CAPACITY, "capacity",
		       "no room for %" PRIu64 " MiB more: the sandboxes' memory limits add up to %" PRIu64
		       " MiB of at most %" PRIu64
		       " MiB (SANDBAR_MEMORY_OVERCOMMIT %g x the Docker host's %" PRIu64 " MiB)",
		       (w->memory + MIB - 1) / MIB, holding / MIB, limit / MIB,
		       adm->svc->cfg->memory_overcommit, adm->host_mem / MIB);
	admit_fail(w, &e);
}

/* The ask ends with err: w is gone when cb runs. */
static void admit_fail(struct admission_wait *w, const struct core_error *err)
{
	admission_fn cb = w->cb;
	void *arg = w->arg;
	admit_set_state(w, ADMIT_DONE);
	admit_free(w);
	cb(err, arg);
}

void admission_release(struct admission_wait *w)
{
	if (!w)
		return;
	CHECK(w->state == ADMIT_HELD);
	struct admission *adm = w->adm;
	adm->held -= w->held;
	adm->released += w->held;
	admit_set_state(w, ADMIT_DONE);
	admit_free(w);
}

void admission_cancel(struct admission_wait *w)
{
	if (!w)
		return;
	if (w->state == ADMIT_HELD) {
		admission_release(w);
		return;
	}
	if (w->query)
		pg_query_cancel(w->query);
	for (size_t i = 0; i < w->nvictims; i++)
		sandbox_call_cancel(w->victims[i].stop); /* the stop itself goes on */
	admit_set_state(w, ADMIT_DONE);
	admit_free(w);
}

static void admit_free(struct admission_wait *w)
{
	CHECK(w->state == ADMIT_DONE);
	struct admission *adm = w->adm;
	if (w->prev)
		w->prev->next = w->next;
	else
		adm->asks = w->next;
	if (w->next)
		w->next->prev = w->prev;
	event_free(w->later);
	free(w->victims);
	free(w);
}

uint64_t admission_capacity(const struct admission *adm)
{
	return adm && adm->host_mem ? admission_limit(adm->svc->cfg->memory_overcommit, adm->host_mem) : 0;
}
