/* A LISTEN connection: one pg_conn outside the pool, which sends LISTEN each
 * time it (re)connects (again with back-off while it fails) and then only
 * hears notifications. */
#include "pg/listen.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "core/check.h"
#include "core/log.h"

#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 5000

struct pg_listener {
	struct pg_conn *conn;
	struct event *later; /* LISTEN, sent from the loop after connecting or after a failed one */
	int64_t retry_ms;    /* the back-off of a failed LISTEN, 0 after one that worked */
	const struct pg_listener_ops *ops;
	void *arg;
	char sql[96];
	bool listening;
};

static void on_changed(struct pg_conn *c, enum pg_conn_state from, enum pg_conn_state to, void *arg);
static void on_done(struct pg_conn *c, enum pg_error err, PGresult *res, const char *message, void *arg);
static void on_notified(struct pg_conn *c, const char *channel, const char *payload, void *arg);
static void listen_later(evutil_socket_t fd, short what, void *arg);

static const struct pg_conn_hooks hooks = { on_changed, on_done, on_notified };

struct pg_listener *pg_listener_new(struct event_base *base, const char *conninfo, const char *channel,
				    const struct pg_listener_ops *ops, void *arg)
{
	struct pg_listener *l = calloc(1, sizeof(*l));
	CHECK(l != NULL);
	CHECK(strspn(channel, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(channel) && *channel);
	snprintf(l->sql, sizeof(l->sql), "LISTEN %s", channel);
	l->ops = ops;
	l->arg = arg;
	struct pg_conn_config cfg = {
		.conninfo = conninfo,
		.retry_min_ms = RETRY_MIN_MS,
		.retry_max_ms = RETRY_MAX_MS,
		.connect_timeout_ms = 10000,
	};
	l->conn = pg_conn_new(base, -1, &cfg, &hooks, l);
	l->later = evtimer_new(base, listen_later, l);
	CHECK(l->conn != NULL && l->later != NULL);
	return l;
}

void pg_listener_start(struct pg_listener *l)
{
	pg_conn_start(l->conn);
}

bool pg_listener_listening(const struct pg_listener *l)
{
	return l->listening;
}

void pg_listener_free(struct pg_listener *l)
{
	if (!l)
		return;
	pg_conn_close(l->conn);
	pg_conn_free(l->conn);
	event_free(l->later);
	free(l);
}

static void on_changed(struct pg_conn *c, enum pg_conn_state from, enum pg_conn_state to, void *arg)
{
	struct pg_listener *l = arg;
	if (from == PG_CONN_CONNECTING && to == PG_CONN_IDLE) {
		/* the hook must not call back into the connection: LISTEN from the loop */
		event_active(l->later, EV_TIMEOUT, 0);
	} else if (to == PG_CONN_BROKEN || to == PG_CONN_CLOSED) {
		bool was = l->listening;
		l->listening = false;
		if (was && to == PG_CONN_BROKEN) {
			log_warn("pg listen: connection lost; caches fall back to their validity");
			if (l->ops->lost)
				l->ops->lost(l->arg);
		}
	}
}

static void listen_later(evutil_socket_t fd, short what, void *arg)
{
	struct pg_listener *l = arg;
	if (l->listening || pg_conn_state(l->conn) != PG_CONN_IDLE)
		return; /* broke again meanwhile: the next connect sends LISTEN */
	struct pg_conn_job job = { .sql = l->sql };
	pg_conn_run(l->conn, &job);
}

static void on_done(struct pg_conn *c, enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct pg_listener *l = arg;
	PQclear(res);
	if (err != PG_OK) {
		/* a connection that broke sends LISTEN again when it is back; one
		 * that stays up but refused it would otherwise never listen */
		l->retry_ms = l->retry_ms ? l->retry_ms * 2 : RETRY_MIN_MS;
		if (l->retry_ms > RETRY_MAX_MS)
			l->retry_ms = RETRY_MAX_MS;
		log_warn("pg listen: %s: %s; again in %" PRId64 " ms", l->sql, message ? message : "failed",
			 l->retry_ms);
		struct timeval tv = { .tv_sec = l->retry_ms / 1000, .tv_usec = (l->retry_ms % 1000) * 1000 };
		evtimer_add(l->later, &tv);
		return;
	}
	l->retry_ms = 0;
	l->listening = true;
	if (l->ops->reset)
		l->ops->reset(l->arg);
}

static void on_notified(struct pg_conn *c, const char *channel, const char *payload, void *arg)
{
	struct pg_listener *l = arg;
	if (l->listening && l->ops->notified)
		l->ops->notified(payload, l->arg);
}
