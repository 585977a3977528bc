/* One libpq connection of the pool as an explicit state machine: connect,
 * run one query at a time, roll back leftovers, reconnect with back-off.
 * Private to src/pg: the pool owns the connections and reacts to their hooks. */
#ifndef SANDBAR_PG_CONN_H
#define SANDBAR_PG_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "pg/pool.h"

enum pg_conn_state {
	PG_CONN_NEW,	    /* not started yet */
	PG_CONN_CONNECTING, /* PQconnectPoll in progress */
	PG_CONN_IDLE,	    /* usable, on the pool's free list */
	PG_CONN_BUSY,	    /* one query in flight */
	PG_CONN_RESETTING,  /* ROLLBACK in flight: the last query left a transaction open */
	PG_CONN_BROKEN,	    /* PGconn gone, back-off timer armed before reconnecting */
	PG_CONN_CLOSED,	    /* final */
	PG_CONN_STATE_MAX
};

/* What a connection runs; owned by the caller until done() is called. */
struct pg_conn_job {
	const char *sql;
	int nparams;
	const char *const *params;
	bool script; /* simple protocol (PQsendQuery), several statements */
};

struct pg_conn;

struct pg_conn_hooks {
	/* Every state change, after it happened. Must not call back into the connection. */
	void (*changed)(struct pg_conn *c, enum pg_conn_state from, enum pg_conn_state to, void *arg);
	/* The job finished; res (may be NULL) is handed over to the callee. */
	void (*done)(struct pg_conn *c, enum pg_error err, PGresult *res, const char *message, void *arg);
	/* A NOTIFY on a channel this connection LISTENs to (may be NULL: dropped). */
	void (*notified)(struct pg_conn *c, const char *channel, const char *payload, void *arg);
};

struct pg_conn_config {
	const char *conninfo;
	const char *application_name; /* NULL: the conninfo's (or libpq's default) */
	int64_t retry_min_ms;
	int64_t retry_max_ms;
	int64_t connect_timeout_ms;
};

struct pg_conn *pg_conn_new(struct event_base *base, int id, const struct pg_conn_config *cfg,
			    const struct pg_conn_hooks *hooks, void *arg);
/* NEW -> CONNECTING. */
void pg_conn_start(struct pg_conn *c);
/* IDLE -> BUSY. On a synchronous failure the connection breaks and done() is
 * called with PG_ERR_CONNECTION before this returns. */
void pg_conn_run(struct pg_conn *c, const struct pg_conn_job *job);
/* Forget the job: done() will not be called for it. The query may still
 * complete on the server; its result is discarded and the connection stays. */
void pg_conn_abandon(struct pg_conn *c);
/* Any state -> CLOSED, closes the socket; done() is not called. */
void pg_conn_close(struct pg_conn *c);
void pg_conn_free(struct pg_conn *c);

enum pg_conn_state pg_conn_state(const struct pg_conn *c);
int pg_conn_id(const struct pg_conn *c);
bool pg_conn_state_usable(enum pg_conn_state s);
const char *pg_conn_state_name(enum pg_conn_state s);
/* The delay before the next reconnect attempt (tests). */
int64_t pg_conn_retry_delay_ms(const struct pg_conn *c);

#endif
