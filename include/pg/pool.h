/* A pool of non-blocking libpq connections driven by the event loop.
 *
 * Queries wait in a bounded FIFO for a free connection. A query's callback is
 * always called from the loop, never from inside pg_query_send, exactly once,
 * unless the query was cancelled first. When PostgreSQL goes away the pool
 * reconnects with back-off; queries sent meanwhile fail at once with
 * PG_ERR_UNAVAILABLE so the API can answer 503. */
#ifndef SANDBAR_PG_POOL_H
#define SANDBAR_PG_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "core/check.h"
#include "core/error.h"

struct pg_pool;
struct pg_query;

enum pg_error {
	PG_OK = 0,
	PG_ERR_UNAVAILABLE, /* no connection to PostgreSQL right now */
	PG_ERR_BUSY,	    /* the wait queue is full */
	PG_ERR_QUERY,	    /* the server answered with an error (see res / message) */
	PG_ERR_CONNECTION,  /* the connection broke while the query was in flight */
	PG_ERR_RESOURCES,   /* the server is out of disk, memory or connections (SQLSTATE
			     * class 53): the query did nothing, a later one may work */
};

/* res: the last result of the query (PGRES_TUPLES_OK / PGRES_COMMAND_OK on
 * success, or the error result for PG_ERR_QUERY and PG_ERR_RESOURCES), NULL for the other errors.
 * The pool frees res after the callback returns. message: a one-line reason
 * when err != PG_OK. */
typedef void (*pg_result_fn)(enum pg_error err, PGresult *res, const char *message, void *arg);

struct pg_pool_config {
	const char *conninfo; /* a libpq connection string or URI */
	const char
		*application_name; /* shown in pg_stat_activity, read by column defaults; NULL: conninfo's */
	int size;		   /* connections, >= 1 */
	int max_waiters;	   /* queued queries beyond which sends fail with PG_ERR_BUSY */
	int64_t retry_min_ms;	   /* reconnect back-off: first delay ... */
	int64_t retry_max_ms;	   /* ... doubling up to this */
};

struct pg_pool *pg_pool_new(struct event_base *base, const struct pg_pool_config *cfg);
/* Starts connecting; on_state(up, arg) is called each time the pool goes from
 * no usable connection to one (up=true) and back (up=false). */
void pg_pool_start(struct pg_pool *pool, void (*on_state)(bool up, void *arg), void *arg);
bool pg_pool_up(const struct pg_pool *pool);
/* Cancels every query (no callback runs) and closes the connections. Safe to
 * call from one of the pool's callbacks: the pool then goes after it returns. */
void pg_pool_free(struct pg_pool *pool);
/* The loop the pool runs on (for modules built on top, e.g. migrations). */
struct event_base *pg_pool_event_base(const struct pg_pool *pool);

/* PQsendQueryParams with text params (NULL entries are SQL NULL) and text
 * results. Returns a handle usable with pg_query_cancel until the callback ran. */
struct pg_query *pg_query_send(struct pg_pool *pool, const char *sql, int nparams, const char *const *params,
			       pg_result_fn cb, void *arg);
/* PQsendQuery: several statements in one string (migrations); res is the last result. */
struct pg_query *pg_query_send_script(struct pg_pool *pool, const char *sql, pg_result_fn cb, void *arg);
/* The callback will not be called. The query may still run on the server. */
void pg_query_cancel(struct pg_query *q);
/* A failed query as a core error: unavailable (503) when PostgreSQL cannot be
 * reached or is saturated, else internal with the server's message. */
void pg_core_error(struct core_error *e, enum pg_error err, const char *message);

#endif
