/* Herding queries onto connections: a free list of idle connections, a bounded
 * FIFO of waiting queries, and a done list whose callbacks run from one
 * deferred event, so no user code ever runs inside pg_query_send or under a
 * connection's own callback. */
#include "pg/pool.h"

#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "conn.h"
#include "core/check.h"
#include "core/log.h"

enum pg_query_state {
	PG_QUERY_WAITING, /* in pool->waiting */
	PG_QUERY_RUNNING, /* on a connection */
	PG_QUERY_DONE,	  /* in pool->done, callback not yet called */
	PG_QUERY_CALLING, /* its callback is on the stack */
	PG_QUERY_STATE_MAX
};

struct pg_query {
	TAILQ_ENTRY(pg_query) link;
	struct pg_pool *pool;
	enum pg_query_state state;
	struct pool_slot *slot; /* while RUNNING */
	pg_result_fn cb;
	void *arg;
	struct pg_conn_job job; /* sql and params point into this allocation */
	enum pg_error err;
	PGresult *res;
	char *message;
};

struct pool_slot {
	struct pg_pool *pool;
	struct pg_conn *conn;
	bool on_free_list;
	struct pg_query *running;
	TAILQ_ENTRY(pool_slot) free_link;
};

TAILQ_HEAD(query_list, pg_query);

struct pg_pool {
	struct event_base *base;
	char *conninfo;
	char *application_name; /* "" for the conninfo's */
	int size;
	int max_waiters;
	int64_t retry_min_ms;
	int64_t retry_max_ms;

	struct pool_slot *slots;
	TAILQ_HEAD(, pool_slot) free_list;
	size_t nfree;
	int nusable;

	struct query_list waiting;
	size_t nwaiting;
	struct query_list done;
	size_t ndone;

	struct event *kick; /* deferred: dispatch, deliver, report state */
	bool started;
	void (*on_state)(bool up, void *arg);
	void *state_arg;
	bool reported_up;

	int in_callback;     /* user callbacks on the stack */
	bool free_requested; /* pg_pool_free called from one of them */
};

static void pool_kick(struct pg_pool *pool);
static void pool_kick_cb(evutil_socket_t fd, short what, void *arg);
static void pool_dispatch(struct pg_pool *pool);
static void pool_deliver(struct pg_pool *pool);
static void pool_destroy(struct pg_pool *pool);
static void pool_fail_waiting(struct pg_pool *pool, enum pg_error err, const char *message);
static void conn_changed(struct pg_conn *c, enum pg_conn_state from, enum pg_conn_state to, void *arg);
static void conn_done(struct pg_conn *c, enum pg_error err, PGresult *res, const char *message, void *arg);
static struct pg_query *query_new(struct pg_pool *pool, const char *sql, int nparams,
				  const char *const *params, bool script, pg_result_fn cb, void *arg);
static void query_finish(struct pg_query *q, enum pg_error err, PGresult *res, const char *message);
static void query_free(struct pg_query *q);

static const struct pg_conn_hooks conn_hooks = {
	.changed = conn_changed,
	.done = conn_done,
};

struct pg_pool *pg_pool_new(struct event_base *base, const struct pg_pool_config *cfg)
{
	CHECK(cfg->size >= 1);
	struct pg_pool *pool = calloc(1, sizeof(*pool));
	if (!pool)
		return NULL;
	pool->base = base;
	pool->size = cfg->size;
	pool->max_waiters = cfg->max_waiters < 0 ? 0 : cfg->max_waiters;
	pool->retry_min_ms = cfg->retry_min_ms > 0 ? cfg->retry_min_ms : 100;
	pool->retry_max_ms = cfg->retry_max_ms >= pool->retry_min_ms ? cfg->retry_max_ms : pool->retry_min_ms;
	TAILQ_INIT(&pool->free_list);
	TAILQ_INIT(&pool->waiting);
	TAILQ_INIT(&pool->done);
	pool->conninfo = strdup(cfg->conninfo ? cfg->conninfo : "");
	pool->application_name = strdup(cfg->application_name ? cfg->application_name : "");
	pool->slots = calloc((size_t)cfg->size, sizeof(*pool->slots));
	pool->kick = event_new(base, -1, 0, pool_kick_cb, pool);
	if (!pool->conninfo || !pool->application_name || !pool->slots || !pool->kick)
		goto fail;
	struct pg_conn_config ccfg = {
		.conninfo = pool->conninfo,
		.application_name = pool->application_name,
		.retry_min_ms = pool->retry_min_ms,
		.retry_max_ms = pool->retry_max_ms,
		.connect_timeout_ms = 10000,
	};
	for (int i = 0; i < pool->size; i++) {
		pool->slots[i].pool = pool;
		pool->slots[i].conn = pg_conn_new(base, i, &ccfg, &conn_hooks, &pool->slots[i]);
		if (!pool->slots[i].conn)
			goto fail;
	}
	return pool;
fail:
	pool_destroy(pool);
	return NULL;
}

void pg_pool_start(struct pg_pool *pool, void (*on_state)(bool up, void *arg), void *arg)
{
	CHECK(!pool->started);
	pool->started = true;
	pool->on_state = on_state;
	pool->state_arg = arg;
	log_info("pg pool: starting %d connections", pool->size);
	for (int i = 0; i < pool->size; i++)
		pg_conn_start(pool->slots[i].conn);
}

bool pg_pool_up(const struct pg_pool *pool)
{
	return pool->nusable > 0;
}

struct event_base *pg_pool_event_base(const struct pg_pool *pool)
{
	return pool->base;
}

void pg_pool_free(struct pg_pool *pool)
{
	if (!pool)
		return;
	if (pool->in_callback > 0) {
		/* A callback of ours is on the stack: finish after it returns. */
		pool->free_requested = true;
		return;
	}
	pool_destroy(pool);
}

struct pg_query *pg_query_send(struct pg_pool *pool, const char *sql, int nparams, const char *const *params,
			       pg_result_fn cb, void *arg)
{
	return query_new(pool, sql, nparams, params, false, cb, arg);
}

struct pg_query *pg_query_send_script(struct pg_pool *pool, const char *sql, pg_result_fn cb, void *arg)
{
	return query_new(pool, sql, 0, NULL, true, cb, arg);
}

void pg_query_cancel(struct pg_query *q)
{
	if (!q)
		return;
	struct pg_pool *pool = q->pool;
	switch (q->state) {
	case PG_QUERY_WAITING:
		TAILQ_REMOVE(&pool->waiting, q, link);
		pool->nwaiting--;
		query_free(q);
		break;
	case PG_QUERY_RUNNING:
		/* The connection finishes it and drops the result. */
		pg_conn_abandon(q->slot->conn);
		q->slot->running = NULL;
		query_free(q);
		break;
	case PG_QUERY_DONE:
		TAILQ_REMOVE(&pool->done, q, link);
		pool->ndone--;
		query_free(q);
		break;
	case PG_QUERY_CALLING:
		/* Too late, and pool_deliver frees it when the callback returns. */
		break;
	default:
		CHECK(!"bad query state");
	}
}

static struct pg_query *query_new(struct pg_pool *pool, const char *sql, int nparams,
				  const char *const *params, bool script, pg_result_fn cb, void *arg)
{
	CHECK(nparams >= 0);
	/* One allocation: the query, the param pointers, then the strings. */
	size_t size = sizeof(struct pg_query) + (size_t)nparams * sizeof(char *) + strlen(sql) + 1;
	for (int i = 0; i < nparams; i++)
		if (params[i])
			size += strlen(params[i]) + 1;
	struct pg_query *q = calloc(1, size);
	CHECK(q);
	char **pv = (char **)(q + 1);
	char *p = (char *)(pv + nparams);
	for (int i = 0; i < nparams; i++) {
		if (!params[i]) {
			pv[i] = NULL;
			continue;
		}
		size_t n = strlen(params[i]) + 1;
		memcpy(p, params[i], n);
		pv[i] = p;
		p += n;
	}
	memcpy(p, sql, strlen(sql) + 1);
	q->pool = pool;
	q->cb = cb;
	q->arg = arg;
	q->job.sql = p;
	q->job.nparams = nparams;
	q->job.params = (const char *const *)pv;
	q->job.script = script;

	q->state = PG_QUERY_WAITING;
	TAILQ_INSERT_TAIL(&pool->waiting, q, link);
	pool->nwaiting++;
	if (!pg_pool_up(pool)) {
		/* Fail fast so the API can answer 503 instead of hanging. */
		query_finish(q, PG_ERR_UNAVAILABLE, NULL, "no connection to PostgreSQL");
	} else if (pool->nwaiting > pool->nfree + (size_t)pool->max_waiters) {
		query_finish(q, PG_ERR_BUSY, NULL, "too many queries waiting for a PostgreSQL connection");
	}
	pool_kick(pool);
	return q;
}

/* Moves the query (waiting or running) to the done list. */
static void query_finish(struct pg_query *q, enum pg_error err, PGresult *res, const char *message)
{
	struct pg_pool *pool = q->pool;
	if (q->state == PG_QUERY_WAITING) {
		TAILQ_REMOVE(&pool->waiting, q, link);
		pool->nwaiting--;
	}
	CHECK(q->state != PG_QUERY_DONE);
	q->state = PG_QUERY_DONE;
	q->slot = NULL;
	q->err = err;
	q->res = res;
	if (message) {
		q->message = strdup(message);
		CHECK(q->message);
	}
	TAILQ_INSERT_TAIL(&pool->done, q, link);
	pool->ndone++;
	pool_kick(pool);
}

static void query_free(struct pg_query *q)
{
	if (q->res)
		PQclear(q->res);
	free(q->message);
	free(q);
}

static void pool_kick(struct pg_pool *pool)
{
	if (pool->in_callback > 0) {
		/* From a user callback: libevent would run an activated event again
		 * in this same pass, so a callback that resends on failure while the
		 * pool is down could spin without ever polling. A zero timer polls first. */
		static const struct timeval now = { 0, 0 };
		evtimer_add(pool->kick, &now);
		return;
	}
	event_active(pool->kick, EV_TIMEOUT, 0);
}

static void pool_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pg_pool *pool = arg;
	pool_dispatch(pool);
	pool_deliver(pool);
}

static void pool_dispatch(struct pg_pool *pool)
{
	while (!TAILQ_EMPTY(&pool->waiting) && !TAILQ_EMPTY(&pool->free_list)) {
		struct pg_query *q = TAILQ_FIRST(&pool->waiting);
		struct pool_slot *slot = TAILQ_FIRST(&pool->free_list);
		TAILQ_REMOVE(&pool->waiting, q, link);
		pool->nwaiting--;
		TAILQ_REMOVE(&pool->free_list, slot, free_link);
		slot->on_free_list = false;
		pool->nfree--;
		q->state = PG_QUERY_RUNNING;
		q->slot = slot;
		slot->running = q;
		/* May finish at once (conn_done) if the connection turns out broken. */
		pg_conn_run(slot->conn, &q->job);
	}
}

/* Runs user callbacks: the state report first, then finished queries. A
 * callback may send, cancel, or free the pool. */
static void pool_deliver(struct pg_pool *pool)
{
	pool->in_callback++;
	bool up = pg_pool_up(pool);
	if (pool->started && up != pool->reported_up) {
		pool->reported_up = up;
		log_info("pg pool: %s", up ? "up" : "down: no usable connection");
		if (pool->on_state)
			pool->on_state(up, pool->state_arg);
	}
	/* Only as many as are done now, so that a callback that keeps sending
	 * (and failing at once) cannot keep this pass going forever. Callbacks
	 * may cancel queries still on the list, so pop one at a time. */
	for (size_t n = pool->ndone; n > 0 && !pool->free_requested && !TAILQ_EMPTY(&pool->done); n--) {
		struct pg_query *q = TAILQ_FIRST(&pool->done);
		TAILQ_REMOVE(&pool->done, q, link);
		pool->ndone--;
		q->state = PG_QUERY_CALLING;
		if (q->cb)
			q->cb(q->err, q->res, q->message ? q->message : (q->err ? "error" : NULL), q->arg);
		query_free(q);
	}
	if (!TAILQ_EMPTY(&pool->done) && !pool->free_requested)
		pool_kick(pool);
	pool->in_callback--;
	if (pool->free_requested && pool->in_callback == 0)
		pool_destroy(pool);
}

static void pool_fail_waiting(struct pg_pool *pool, enum pg_error err, const char *message)
{
	while (!TAILQ_EMPTY(&pool->waiting))
		query_finish(TAILQ_FIRST(&pool->waiting), err, NULL, message);
}

static void pool_destroy(struct pg_pool *pool)
{
	if (pool->slots) {
		/* Close first so no hook can add to the lists we are emptying. */
		for (int i = 0; i < pool->size; i++) {
			if (pool->slots[i].conn)
				pg_conn_close(pool->slots[i].conn);
		}
	}
	struct pg_query *q;
	while ((q = TAILQ_FIRST(&pool->waiting)) != NULL) {
		TAILQ_REMOVE(&pool->waiting, q, link);
		query_free(q);
	}
	while ((q = TAILQ_FIRST(&pool->done)) != NULL) {
		TAILQ_REMOVE(&pool->done, q, link);
		pool->ndone--;
		query_free(q);
	}
	if (pool->slots) {
		for (int i = 0; i < pool->size; i++) {
			if (pool->slots[i].running)
				query_free(pool->slots[i].running);
			pg_conn_free(pool->slots[i].conn);
		}
	}
	if (pool->kick)
		event_free(pool->kick);
	free(pool->slots);
	free(pool->conninfo);
	free(pool->application_name);
	free(pool);
}

static void conn_changed(struct pg_conn *c, enum pg_conn_state from, enum pg_conn_state to, void *arg)
{
	struct pool_slot *slot = arg;
	struct pg_pool *pool = slot->pool;
	if (slot->on_free_list) {
		TAILQ_REMOVE(&pool->free_list, slot, free_link);
		slot->on_free_list = false;
		pool->nfree--;
	}
	if (to == PG_CONN_IDLE) {
		TAILQ_INSERT_TAIL(&pool->free_list, slot, free_link);
		slot->on_free_list = true;
		pool->nfree++;
	}
	bool was = pg_conn_state_usable(from), is = pg_conn_state_usable(to);
	if (was != is) {
		pool->nusable += is ? 1 : -1;
		CHECK(pool->nusable >= 0 && pool->nusable <= pool->size);
		if (pool->nusable == 0 && to != PG_CONN_CLOSED)
			pool_fail_waiting(pool, PG_ERR_UNAVAILABLE, "lost every connection to PostgreSQL");
	}
	if (to != PG_CONN_CLOSED)
		pool_kick(pool);
}

static void conn_done(struct pg_conn *c, enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct pool_slot *slot = arg;
	struct pg_query *q = slot->running;
	slot->running = NULL;
	if (!q) {
		/* Cancelled meanwhile: the connection should not have asked. */
		if (res)
			PQclear(res);
		return;
	}
	query_finish(q, err, res, message);
}

void pg_core_error(struct core_error *e, enum pg_error err, const char *message)
{
	if (err == PG_ERR_UNAVAILABLE || err == PG_ERR_BUSY || err == PG_ERR_CONNECTION)
		core_error_set(e, CORE_UNAVAILABLE, "database_unavailable",
			       "the database is not reachable right now; retry shortly");
	else if (err == PG_ERR_RESOURCES)
		core_error_set(e, CORE_UNAVAILABLE, "database_unavailable",
			       "the database cannot write right now (%s); retry later",
			       message ? message : "out of resources");
	else
		core_error_set(e, CORE_INTERNAL, "database_error", "%s",
			       message ? message : "database error");
}
