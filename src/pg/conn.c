/* One non-blocking libpq connection, driven by its socket events and one timer.
 * Every state change goes through conn_set_state, which asserts it is legal,
 * logs it and tells the pool; nothing here ever waits on the network. */
#include "conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/log.h"

struct pg_conn {
	struct event_base *base;
	int id;
	enum pg_conn_state state;
	struct pg_conn_config cfg;
	const struct pg_conn_hooks *hooks;
	void *arg;

	PGconn *pg;
	struct event *io; /* on PQsocket(), recreated whenever the socket or interest changes */
	evutil_socket_t io_fd;
	short io_what;
	struct event *timer; /* back-off before reconnecting, or the connect timeout */
	int64_t delay_ms;    /* the last back-off delay, 0 after a successful connect */

	bool waiting;	/* someone waits for done() of the query in flight */
	bool flushing;	/* PQflush returned 1: wait for write too */
	PGresult *last; /* the result to deliver: the last one, or the error */
	bool last_is_error;
};

static void conn_set_state(struct pg_conn *c, enum pg_conn_state to, const char *reason);
static void conn_connect(struct pg_conn *c);
static void conn_connect_poll(struct pg_conn *c);
static void conn_break(struct pg_conn *c, const char *reason);
static void conn_drop_pg(struct pg_conn *c);
static int conn_watch(struct pg_conn *c, short what, bool fresh);
static void conn_io_cb(evutil_socket_t fd, short what, void *arg);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static void conn_idle_read(struct pg_conn *c);
static void conn_pump(struct pg_conn *c, short what);
static void conn_keep_result(struct pg_conn *c, PGresult *r);
static void conn_finish(struct pg_conn *c);
static void conn_after_query(struct pg_conn *c);
static void conn_arm_timer(struct pg_conn *c, int64_t ms);
static void one_line(char *dst, size_t cap, const char *src);
static bool admin_shutdown(const PGresult *r);
static bool out_of_resources(const PGresult *r);
static void conn_notice(void *arg, const char *message);
static void conn_notifies(struct pg_conn *c);

static const char *const state_names[PG_CONN_STATE_MAX] = {
	[PG_CONN_NEW] = "new",	     [PG_CONN_CONNECTING] = "connecting", [PG_CONN_IDLE] = "idle",
	[PG_CONN_BUSY] = "busy",     [PG_CONN_RESETTING] = "resetting",	  [PG_CONN_BROKEN] = "broken",
	[PG_CONN_CLOSED] = "closed",
};

/* legal[from] is a bit set of the states reachable from it. */
#define S(x) (1u << (x))
static const unsigned legal[PG_CONN_STATE_MAX] = {
	[PG_CONN_NEW] = S(PG_CONN_CONNECTING) | S(PG_CONN_CLOSED),
	[PG_CONN_CONNECTING] = S(PG_CONN_IDLE) | S(PG_CONN_BROKEN) | S(PG_CONN_CLOSED),
	[PG_CONN_IDLE] = S(PG_CONN_BUSY) | S(PG_CONN_BROKEN) | S(PG_CONN_CLOSED),
	[PG_CONN_BUSY] = S(PG_CONN_IDLE) | S(PG_CONN_RESETTING) | S(PG_CONN_BROKEN) | S(PG_CONN_CLOSED),
	[PG_CONN_RESETTING] = S(PG_CONN_IDLE) | S(PG_CONN_BROKEN) | S(PG_CONN_CLOSED),
	[PG_CONN_BROKEN] = S(PG_CONN_CONNECTING) | S(PG_CONN_CLOSED),
	[PG_CONN_CLOSED] = 0,
};
#undef S

struct pg_conn *pg_conn_new(struct event_base *base, int id, const struct pg_conn_config *cfg,
			    const struct pg_conn_hooks *hooks, void *arg)
{
	struct pg_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->base = base;
	c->id = id;
	c->state = PG_CONN_NEW;
	c->cfg = *cfg;
	c->hooks = hooks;
	c->arg = arg;
	c->io_fd = -1;
	c->timer = evtimer_new(base, conn_timer_cb, c);
	if (!c->timer) {
		free(c);
		return NULL;
	}
	return c;
}

void pg_conn_start(struct pg_conn *c)
{
	CHECK(c->state == PG_CONN_NEW);
	conn_connect(c);
}

void pg_conn_run(struct pg_conn *c, const struct pg_conn_job *job)
{
	CHECK(c->state == PG_CONN_IDLE);
	c->waiting = true;
	c->flushing = false;
	conn_set_state(c, PG_CONN_BUSY, NULL);
	int ok = job->script
			 ? PQsendQuery(c->pg, job->sql)
			 : PQsendQueryParams(c->pg, job->sql, job->nparams, NULL, job->params, NULL, NULL, 0);
	if (!ok) {
		char msg[256];
		one_line(msg, sizeof(msg), PQerrorMessage(c->pg));
		if (PQstatus(c->pg) == CONNECTION_BAD) {
			conn_break(c, msg);
			return;
		}
		/* Refused before anything was sent (e.g. too many parameters). */
		c->waiting = false;
		c->hooks->done(c, PG_ERR_QUERY, NULL, msg, c->arg);
		conn_set_state(c, PG_CONN_IDLE, NULL);
		return;
	}
	conn_pump(c, EV_WRITE);
}

void pg_conn_abandon(struct pg_conn *c)
{
	c->waiting = false;
}

void pg_conn_close(struct pg_conn *c)
{
	if (c->state == PG_CONN_CLOSED)
		return;
	c->waiting = false;
	event_del(c->timer);
	conn_drop_pg(c);
	conn_set_state(c, PG_CONN_CLOSED, NULL);
}

void pg_conn_free(struct pg_conn *c)
{
	if (!c)
		return;
	pg_conn_close(c);
	event_free(c->timer);
	free(c);
}

enum pg_conn_state pg_conn_state(const struct pg_conn *c)
{
	return c->state;
}

int pg_conn_id(const struct pg_conn *c)
{
	return c->id;
}

bool pg_conn_state_usable(enum pg_conn_state s)
{
	return s == PG_CONN_IDLE || s == PG_CONN_BUSY || s == PG_CONN_RESETTING;
}

const char *pg_conn_state_name(enum pg_conn_state s)
{
	return s < PG_CONN_STATE_MAX ? state_names[s] : "?";
}

int64_t pg_conn_retry_delay_ms(const struct pg_conn *c)
{
	return c->delay_ms;
}

static void conn_set_state(struct pg_conn *c, enum pg_conn_state to, const char *reason)
{
	enum pg_conn_state from = c->state;
	CHECK(to < PG_CONN_STATE_MAX);
	CHECK(legal[from] & (1u << to));
	c->state = to;

	if (to == PG_CONN_IDLE && from == PG_CONN_CONNECTING) {
		log_info("pg conn %d: connected to %s:%s db %s (server %d)", c->id, PQhost(c->pg),
			 PQport(c->pg), PQdb(c->pg), PQserverVersion(c->pg));
	} else if (to == PG_CONN_BROKEN) {
		/* Keep a long outage from filling the log: quiet once at the longest delay. */
		bool loud = from != PG_CONN_CONNECTING || c->delay_ms < c->cfg.retry_max_ms;
		log_msg(loud ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG, NULL,
			"pg conn %d: %s -> broken: %s; retry in %lld ms", c->id, state_names[from],
			reason ? reason : "?", (long long)c->delay_ms);
	} else if (to == PG_CONN_CLOSED || to == PG_CONN_CONNECTING) {
		log_msg(to == PG_CONN_CLOSED && from != PG_CONN_NEW ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG, NULL,
			"pg conn %d: %s -> %s", c->id, state_names[from], state_names[to]);
	} else {
		log_debug("pg conn %d: %s -> %s%s%s", c->id, state_names[from], state_names[to],
			  reason ? ": " : "", reason ? reason : "");
	}
	c->hooks->changed(c, from, to, c->arg);
}

static void conn_connect(struct pg_conn *c)
{
	conn_set_state(c, PG_CONN_CONNECTING, NULL);
	/* keywords after the expanded conninfo override what it says */
	const char *const keywords[] = { "dbname", "application_name", NULL };
	const char *const values[] = { c->cfg.conninfo, c->cfg.application_name, NULL };
	c->pg = PQconnectStartParams(keywords, values, 1);
	if (!c->pg) {
		conn_break(c, "out of memory");
		return;
	}
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		char msg[256];
		one_line(msg, sizeof(msg), PQerrorMessage(c->pg));
		conn_break(c, msg);
		return;
	}
	/* Notices go to our log, not to stderr. */
	PQsetNoticeProcessor(c->pg, conn_notice, c);
	if (PQsetnonblocking(c->pg, 1) != 0) {
		conn_break(c, "PQsetnonblocking failed");
		return;
	}
	/* PQconnectPoll does not enforce connect_timeout for us. */
	conn_arm_timer(c, c->cfg.connect_timeout_ms);
	/* Right after PQconnectStart libpq behaves as if polling said WRITING. */
	if (conn_watch(c, EV_WRITE, true) < 0)
		conn_break(c, "cannot watch the socket");
}

static void conn_connect_poll(struct pg_conn *c)
{
	int rc = 0;
	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_READING:
		rc = conn_watch(c, EV_READ, true);
		break;
	case PGRES_POLLING_WRITING:
		rc = conn_watch(c, EV_WRITE, true);
		break;
	case PGRES_POLLING_OK:
		event_del(c->timer);
		c->delay_ms = 0;
		rc = conn_watch(c, EV_READ, true);
		if (rc == 0)
			conn_set_state(c, PG_CONN_IDLE, NULL);
		break;
	case PGRES_POLLING_FAILED:
	default: {
		char msg[256];
		one_line(msg, sizeof(msg), PQerrorMessage(c->pg));
		conn_break(c, msg);
		return;
	}
	}
	if (rc < 0)
		conn_break(c, "cannot watch the socket");
}

/* Leaves the connection BROKEN with the reconnect timer armed; the query in
 * flight, if anyone waits for it, fails with PG_ERR_CONNECTION. */
static void conn_break(struct pg_conn *c, const char *reason)
{
	char msg[256];
	one_line(msg, sizeof(msg), reason);
	bool waiting = c->waiting;
	c->waiting = false;
	conn_drop_pg(c);
	if (c->delay_ms <= 0)
		c->delay_ms = c->cfg.retry_min_ms;
	else
		c->delay_ms = c->delay_ms * 2 > c->cfg.retry_max_ms ? c->cfg.retry_max_ms : c->delay_ms * 2;
	conn_arm_timer(c, c->delay_ms);
	if (waiting)
		c->hooks->done(c, PG_ERR_CONNECTION, NULL, msg, c->arg);
	conn_set_state(c, PG_CONN_BROKEN, msg);
}

static void conn_drop_pg(struct pg_conn *c)
{
	if (c->io) {
		event_free(c->io);
		c->io = NULL;
	}
	c->io_fd = -1;
	c->io_what = 0;
	if (c->last) {
		PQclear(c->last);
		c->last = NULL;
	}
	c->last_is_error = false;
	c->flushing = false;
	if (c->pg) {
		PQfinish(c->pg);
		c->pg = NULL;
	}
}

/* Re-arms the socket event; fresh forces a new event because during connect
 * libpq may close the socket and get the same number back for a new one. */
static int conn_watch(struct pg_conn *c, short what, bool fresh)
{
	evutil_socket_t fd = PQsocket(c->pg);
	if (fd < 0)
		return -1;
	if (c->io && !fresh && c->io_fd == fd && c->io_what == what)
		return 0;
	if (c->io)
		event_free(c->io);
	c->io = event_new(c->base, fd, what | EV_PERSIST, conn_io_cb, c);
	if (!c->io)
		return -1;
	c->io_fd = fd;
	c->io_what = what;
	return event_add(c->io, NULL);
}

static void conn_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pg_conn *c = arg;
	switch (c->state) {
	case PG_CONN_CONNECTING:
		conn_connect_poll(c);
		break;
	case PG_CONN_IDLE:
		conn_idle_read(c);
		break;
	case PG_CONN_BUSY:
	case PG_CONN_RESETTING:
		conn_pump(c, what);
		break;
	default:
		CHECK(!"socket event in a state without a socket");
	}
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pg_conn *c = arg;
	if (c->state == PG_CONN_BROKEN)
		conn_connect(c);
	else if (c->state == PG_CONN_CONNECTING)
		conn_break(c, "connect timed out");
}

/* An idle connection only hears notices, notifications, or the server going
 * away (restart, pg_terminate_backend). */
static void conn_idle_read(struct pg_conn *c)
{
	if (!PQconsumeInput(c->pg) || PQstatus(c->pg) == CONNECTION_BAD) {
		char msg[256];
		one_line(msg, sizeof(msg), PQerrorMessage(c->pg));
		conn_break(c, msg[0] ? msg : "server closed the connection");
		return;
	}
	conn_notifies(c);
}

/* Notifications arrive with any input, idle or not. */
static void conn_notifies(struct pg_conn *c)
{
	PGnotify *n;
	while ((n = PQnotifies(c->pg)) != NULL) {
		if (c->hooks->notified)
			c->hooks->notified(c, n->relname, n->extra, c->arg);
		PQfreemem(n);
	}
}

/* Writes what is left, reads what arrived, and finishes the query once libpq
 * has handed over every result. */
static void conn_pump(struct pg_conn *c, short what)
{
	if (what & EV_READ) {
		if (!PQconsumeInput(c->pg)) {
			conn_break(c, PQerrorMessage(c->pg));
			return;
		}
		conn_notifies(c);
	}
	if (c->flushing || (what & EV_WRITE)) {
		int r = PQflush(c->pg);
		if (r < 0) {
			conn_break(c, PQerrorMessage(c->pg));
			return;
		}
		c->flushing = r == 1;
	}
	while (!PQisBusy(c->pg)) {
		PGresult *r = PQgetResult(c->pg);
		if (!r) {
			conn_finish(c);
			return;
		}
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
			PQclear(r);
			conn_break(c, "COPY is not supported by the pool");
			return;
		}
		conn_keep_result(c, r);
	}
	if (PQstatus(c->pg) == CONNECTION_BAD) {
		conn_break(c, PQerrorMessage(c->pg));
		return;
	}
	if (conn_watch(c, c->flushing ? EV_READ | EV_WRITE : EV_READ, false) < 0)
		conn_break(c, "cannot watch the socket");
}

/* The last result wins, except that an error wins over everything. */
static void conn_keep_result(struct pg_conn *c, PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);
	bool is_error = st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE;
	if (c->last_is_error && !is_error) {
		PQclear(r);
		return;
	}
	if (c->last)
		PQclear(c->last);
	c->last = r;
	c->last_is_error = is_error;
}

static void conn_finish(struct pg_conn *c)
{
	PGresult *res = c->last;
	bool is_error = c->last_is_error;
	c->last = NULL;
	c->last_is_error = false;

	char msg[256] = "";
	if (is_error)
		one_line(msg, sizeof(msg), PQresultErrorMessage(res));
	if (PQstatus(c->pg) == CONNECTION_BAD || (is_error && admin_shutdown(res))) {
		if (!msg[0])
			one_line(msg, sizeof(msg), PQerrorMessage(c->pg));
		PQclear(res);
		conn_break(c, msg[0] ? msg : "connection lost");
		return;
	}
	if (c->state == PG_CONN_BUSY && c->waiting) {
		c->waiting = false;
		enum pg_error err = !is_error		    ? PG_OK
				    : out_of_resources(res) ? PG_ERR_RESOURCES
							    : PG_ERR_QUERY;
		c->hooks->done(c, err, res, is_error ? msg : NULL, c->arg);
	} else {
		/* Abandoned query, or our own ROLLBACK. */
		PQclear(res);
	}
	conn_after_query(c);
}

/* Hands the connection back only outside a transaction: a query that left
 * one open (or failed inside one) must not leak it to the next user. */
static void conn_after_query(struct pg_conn *c)
{
	PGTransactionStatusType tx = PQtransactionStatus(c->pg);
	if (tx == PQTRANS_IDLE) {
		if (conn_watch(c, EV_READ, false) < 0) {
			conn_break(c, "cannot watch the socket");
			return;
		}
		conn_set_state(c, PG_CONN_IDLE, NULL);
		return;
	}
	if ((tx == PQTRANS_INTRANS || tx == PQTRANS_INERROR) && c->state == PG_CONN_BUSY) {
		if (!PQsendQuery(c->pg, "ROLLBACK")) {
			conn_break(c, PQerrorMessage(c->pg));
			return;
		}
		conn_set_state(c, PG_CONN_RESETTING, "rolling back a transaction left open");
		conn_pump(c, EV_WRITE);
		return;
	}
	conn_break(c, "unexpected transaction status after a query");
}

static void conn_arm_timer(struct pg_conn *c, int64_t ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(c->timer, &tv);
}

/* First line of a libpq message, without the trailing newline. */
static void one_line(char *dst, size_t cap, const char *src)
{
	if (!src)
		src = "";
	size_t n = strcspn(src, "\r\n");
	while (n > 0 && (src[n - 1] == ' ' || src[n - 1] == '\t'))
		n--;
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now: the
 * server is closing this session; the socket EOF may not have been read yet. */
static bool admin_shutdown(const PGresult *r)
{
	const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	return code &&
	       (strcmp(code, "57P01") == 0 || strcmp(code, "57P02") == 0 || strcmp(code, "57P03") == 0);
}

/* SQLSTATE class 53, insufficient resources: 53100 disk_full, 53200
 * out_of_memory, 53300 too_many_connections. The statement failed whole
 * (its transaction is rolled back) and the server stays up. */
static bool out_of_resources(const PGresult *r)
{
	const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	return code && code[0] == '5' && code[1] == '3';
}

static void conn_notice(void *arg, const char *message)
{
	struct pg_conn *c = arg;
	char msg[256];
	one_line(msg, sizeof(msg), message);
	log_debug("pg conn %d: %s", c->id, msg);
}
