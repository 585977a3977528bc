/* Command records, written in batches: every write queued while one batch is
 * in flight goes in the next, as one INSERT of a JSON array, so a thousand
 * execs cost a handful of statements instead of a thousand. Reads of records
 * wait for the writes queued before them, so an answer never misses a
 * command this instance already reported. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "commands_internal.h"
#include "core/log.h"

/* rows per statement: bounds the statement's size (a command's JSON is
 * bounded by the agent's frame size) and the time one batch holds a connection */
#define RECORDS_BATCH_MAX 256
/* writes wait this long for company: at hundreds of execs a second a batch
 * then holds several rows, and PostgreSQL parses and commits once for them */
#define RECORDS_DELAY_MS 5

struct rec {
	struct rec *next;
	struct command_info info;
	char *command_json;
	bool detached;
	bool superseded; /* a later write of the same id is queued: not sent */
	uint64_t seq;
	pg_result_fn cb;
	void *arg;
};

struct records {
	struct commands *c;
	struct rec *queued, **tail; /* not sent yet, oldest first */
	struct rec *sent;	    /* the batch in flight */
	struct pg_query *query;
	struct event *flush_ev;
	uint64_t seq_queued, seq_done;
	int singles; /* after a failed batch: send this many one by one */
	struct command_op *waiters, **waiters_tail;
};

static void records_flush(evutil_socket_t fd, short what, void *arg);
static void records_written(enum pg_error err, PGresult *res, const char *message, void *arg);
static void records_release(struct records *r);
static void rec_json(struct evbuffer *out, const struct rec *x);
static void rec_free(struct rec *x);
static void records_schedule(struct records *r);

/* One statement for every write: the start insert never undoes an exit that
 * got there first. */
static const char sql_records[] =
	"INSERT INTO commands (id, sandbox_id, agent_id, command, detached, status, exit_code, signal, "
	"  timed_out, pid, output_bytes, owner_instance, started_at, ended_at, service, port) "
	"SELECT r.id, r.sandbox_id, r.agent_id, coalesce(r.command, 'null'::jsonb), r.detached, r.status, "
	"  r.exit_code, r.signal, r.timed_out, r.pid, r.output_bytes, $2, "
	"  to_timestamp(r.started_at / 1000.0), to_timestamp(r.ended_at / 1000.0), r.service, r.port "
	"FROM jsonb_to_recordset($1::jsonb) AS r(id uuid, sandbox_id uuid, agent_id integer, command jsonb, "
	"  detached boolean, status text, exit_code integer, signal integer, timed_out boolean, pid integer, "
	"  output_bytes bigint, started_at bigint, ended_at bigint, service boolean, port integer) "
	"ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, exit_code = EXCLUDED.exit_code, "
	"  signal = EXCLUDED.signal, timed_out = EXCLUDED.timed_out, output_bytes = EXCLUDED.output_bytes, "
	"  ended_at = EXCLUDED.ended_at WHERE commands.status = 'running'";

struct records *records_new(struct commands *c)
{
	struct records *r = calloc(1, sizeof(*r));
	CHECK(r != NULL);
	r->c = c;
	r->tail = &r->queued;
	r->waiters_tail = &r->waiters;
	r->flush_ev = evtimer_new(c->base, records_flush, r);
	CHECK(r->flush_ev != NULL);
	return r;
}

/* At shutdown: what was not written is settled by the next reconcile. */
void records_free(struct records *r)
{
	if (!r)
		return;
	if (r->query)
		pg_query_cancel(r->query);
	event_free(r->flush_ev);
	/* reads still waiting were closed by their callers (the API goes first) */
	while (r->waiters) {
		struct command_op *op = r->waiters;
		r->waiters = op->wait_next;
		op->state = OP_DONE;
		op_finish(op);
	}
	for (struct rec *lists[] = { r->sent, r->queued }, **l = lists; l < lists + 2; l++) {
		while (*l) {
			struct rec *x = *l;
			*l = x->next;
			rec_free(x);
		}
	}
	free(r);
}

void command_record_write(struct commands *c, const struct command_info *info, const char *command_json,
			  bool detached, pg_result_fn cb, void *arg)
{
	struct records *r = c->records;
	struct rec *x = calloc(1, sizeof(*x));
	CHECK(x != NULL);
	x->info = *info;
	x->command_json = strdup(command_json ? command_json : "null");
	CHECK(x->command_json != NULL);
	x->detached = detached;
	x->cb = cb;
	x->arg = arg;
	x->seq = ++r->seq_queued;
	/* the same command twice in one statement is an error: the later write wins */
	for (struct rec *y = r->queued; y; y = y->next)
		if (!y->superseded && strcmp(y->info.id, info->id) == 0)
			y->superseded = true;
	*r->tail = x;
	r->tail = &x->next;
	if (!r->sent)
		records_schedule(r);
}

static void records_schedule(struct records *r)
{
	if (evtimer_pending(r->flush_ev, NULL))
		return;
	struct timeval tv = { 0, RECORDS_DELAY_MS * 1000 };
	evtimer_add(r->flush_ev, &tv);
}

static void records_flush(evutil_socket_t fd, short what, void *arg)
{
	struct records *r = arg;
	if (r->sent || !r->queued)
		return;
	int max = r->singles > 0 ? 1 : RECORDS_BATCH_MAX;
	if (r->singles > 0)
		r->singles--;
	struct evbuffer *json = evbuffer_new();
	CHECK(json != NULL);
	struct rec **end = &r->sent;
	int n = 0, rows = 0;
	evbuffer_add(json, "[", 1);
	while (r->queued && n < max) {
		struct rec *x = r->queued;
		r->queued = x->next;
		x->next = NULL;
		*end = x;
		end = &x->next;
		n++;
		if (!x->superseded) {
			if (rows++)
				evbuffer_add(json, ",", 1);
			rec_json(json, x);
		}
	}
	if (!r->queued)
		r->tail = &r->queued;
	evbuffer_add(json, "]", 2); /* with the NUL */
	const char *params[] = { (const char *)evbuffer_pullup(json, -1), r->c->cfg.instance };
	r->query = pg_query_send(r->c->pg, sql_records, 2, params, records_written, r);
	evbuffer_free(json);
}

static void rec_json(struct evbuffer *out, const struct rec *x)
{
	const struct command_info *i = &x->info;
	bool done = i->status != COMMAND_RUNNING;
	evbuffer_add_printf(out,
			    "{\"id\":\"%s\",\"sandbox_id\":\"%s\",\"agent_id\":%u,\"command\":%s,"
			    "\"detached\":%s,\"status\":\"%s\",\"timed_out\":%s,\"pid\":%d,"
			    "\"output_bytes\":%llu,\"started_at\":%lld,\"service\":%s",
			    i->id, i->sandbox_id, i->agent_id, x->command_json,
			    x->detached ? "true" : "false", command_status_name(i->status),
			    i->timed_out ? "true" : "false", i->pid, (unsigned long long)i->offset,
			    (long long)i->started_at, i->service ? "true" : "false");
	if (i->port > 0)
		evbuffer_add_printf(out, ",\"port\":%d", i->port);
	if (done && i->status == COMMAND_EXITED)
		evbuffer_add_printf(out, ",\"exit_code\":%d", i->exit_code);
	if (done && i->signal > 0)
		evbuffer_add_printf(out, ",\"signal\":%d", i->signal);
	if (done)
		evbuffer_add_printf(out, ",\"ended_at\":%lld", (long long)i->ended_at);
	evbuffer_add(out, "}", 1);
}

static void records_written(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct records *r = arg;
	r->query = NULL;
	struct rec *batch = r->sent;
	r->sent = NULL;
	int n = 0;
	for (struct rec *x = batch; x; x = x->next)
		n++;
	if (err == PG_ERR_QUERY && n > 1) {
		/* one bad row (its sandbox row gone) must not lose the others:
		 * send them again one by one, ahead of what came since */
		log_warn("command records: a batch of %d failed (%s); writing them one by one", n,
			 message ? message : "?");
		struct rec *last = batch;
		while (last->next)
			last = last->next;
		last->next = r->queued;
		if (!r->queued)
			r->tail = &last->next;
		r->queued = batch;
		r->singles = n;
		event_active(r->flush_ev, EV_TIMEOUT, 0);
		return;
	}
	while (batch) {
		struct rec *x = batch;
		batch = x->next;
		if (x->seq > r->seq_done)
			r->seq_done = x->seq;
		if (x->cb)
			x->cb(err, res, message, x->arg);
		rec_free(x);
	}
	records_release(r);
	if (r->queued && !r->sent)
		records_schedule(r);
}

static void rec_free(struct rec *x)
{
	free(x->command_json);
	free(x);
}

/* ---- reads after writes ---- */

void records_after_flush(struct commands *c, struct command_op *op, void (*go)(struct command_op *op))
{
	struct records *r = c->records;
	if (r->seq_done >= r->seq_queued) {
		go(op);
		return;
	}
	op_set_state(op, OP_FLUSH);
	op->flush_seq = r->seq_queued;
	op->flush_go = go;
	op->wait_next = NULL;
	*r->waiters_tail = op;
	r->waiters_tail = &op->wait_next;
}

static void records_release(struct records *r)
{
	while (r->waiters && r->waiters->flush_seq <= r->seq_done) {
		struct command_op *op = r->waiters;
		r->waiters = op->wait_next;
		if (!r->waiters)
			r->waiters_tail = &r->waiters;
		op->wait_next = NULL;
		if (op->closed) {
			op->state = OP_DONE;
			op_finish(op);
			continue;
		}
		op_set_state(op, OP_LOOKUP);
		op->flush_go(op);
	}
}
