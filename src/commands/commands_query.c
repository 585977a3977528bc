/* Commands by id: get, list (with the readiness of services), logs, signal,
 * stdin and a service's removal, each after the sandbox's reconcile pass
 * (commands_reconcile.c) and the record writes queued before it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "commands_internal.h"
#include "core/log.h"

#define STDIN_HIGH_WATER (1u << 20)
#define STDIN_LOW_WATER	 (256u << 10)

static void records_read(enum pg_error err, PGresult *res, const char *message, void *arg);
static void query_acquired(struct sandbox_ref *ref, const struct core_error *err, void *arg);
static void record_found(enum pg_error err, PGresult *res, const char *message, void *arg);
static void logs_listed(const struct agent_status *list, size_t n, const char *err, void *arg);
static void logs_subscribe(struct command_op *op);
static void logs_output(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data, size_t len,
			bool gap);
static void logs_exited(void *arg, const struct agent_exit *exit);
static void logs_error(void *arg, int code, const char *message);
static void stdin_poll(evutil_socket_t fd, short what, void *arg);
static void query_after_records(struct command_op *op);
static void ready_listed(const struct agent_status *list, size_t n, const char *err, void *arg);
static void records_deliver(struct command_op *op);
static void unserviced(int code, const char *err, bool kept, int pid, void *arg);
static void unservice_written(enum pg_error err, PGresult *res, const char *message, void *arg);
static void ready_answer(struct command_op *op);

static const struct agent_sub_ops logs_ops = {
	.output = logs_output,
	.exited = logs_exited,
	.error = logs_error,
};

/* ---- get, list ---- */

/* A record's columns, in the order records_read reads them. */
#define RECORD_COLUMNS                                                                                       \
	"c.id, c.sandbox_id, c.agent_id, c.command::text, c.status, c.exit_code, c.signal, c.timed_out, "    \
	"c.pid, (extract(epoch FROM c.started_at) * 1000)::bigint, "                                         \
	"(extract(epoch FROM c.ended_at) * 1000)::bigint, c.output_bytes, c.service, c.port"
static const char sql_get[] =
	"SELECT " RECORD_COLUMNS " FROM commands c WHERE c.id = $1 AND c.sandbox_id = $2";
static const char sql_list[] = "SELECT " RECORD_COLUMNS " FROM commands c WHERE c.sandbox_id = $1 "
			       "ORDER BY c.started_at DESC, c.id";
static const char sql_record[] =
	"SELECT c.agent_id, c.status, c.service FROM commands c WHERE c.id = $1 AND c.sandbox_id = $2";

void query_go(struct command_op *op)
{
	struct commands *c = op->c;
	const char *p2[] = { op->cmd_id, op->sandbox_id };
	const char *p1[] = { op->sandbox_id };
	switch (op->kind) {
	case OP_GET:
		op->query = pg_query_send(c->pg, sql_get, 2, p2, records_read, op);
		break;
	case OP_LIST:
		op->query = pg_query_send(c->pg, sql_list, 1, p1, records_read, op);
		break;
	case OP_LOGS:
	case OP_SIGNAL:
	case OP_STDIN:
	case OP_UNSERVICE:
		op->query = pg_query_send(c->pg, sql_record, 2, p2, record_found, op);
		break;
	default:
		CHECK(!"query_go: not a query op");
	}
}

/* A query op on its way (the sandbox looked up, its records reconciled and
 * flushed, the record read); cmd_id NULL: about the sandbox's commands. Its
 * events and callbacks come from the loop, so the caller sets them after. */
static struct command_op *query_begin(struct commands *c, enum op_kind kind, const char *sandbox_id,
				      const char *cmd_id, void *arg)
{
	struct command_op *op = op_new(c, kind, sandbox_id, arg);
	snprintf(op->cmd_id, sizeof(op->cmd_id), "%s", cmd_id ? cmd_id : "");
	if (cmd_id && commands_uuid_valid(op->sandbox_id) && !commands_uuid_valid(op->cmd_id)) {
		op_fail(op, false, CORE_NOT_FOUND, "not_found", "no command with this id");
		return op;
	}
	/* logs, signals, stdin and removals go to the sandbox's agent: it must run */
	unsigned flags = REGISTRY_TOUCH | (cmd_id && op->kind != OP_GET ? REGISTRY_RUNNING : 0);
	op->rwait = registry_acquire(op->c->reg, op->sandbox_id, flags, query_acquired, op);
	return op;
}

static void query_acquired(struct sandbox_ref *ref, const struct core_error *err, void *arg)
{
	struct command_op *op = arg;
	op->rwait = NULL;
	if (err) {
		op_fail_with(op, err);
		return;
	}
	op->ref = ref;
	sbx_after_reconcile(op->c, op, query_after_records);
}

/* Records are written in batches: a read waits for those queued before it. */
static void query_after_records(struct command_op *op)
{
	records_after_flush(op->c, op, query_go);
}

static void records_read(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct command_op *op = arg;
	op->query = NULL;
	if (err != PG_OK) {
		op_fail_pg(op, err, message);
		return;
	}
	int n = PQntuples(res);
	if (n == 0 && op->kind == OP_GET) {
		op_fail(op, true, CORE_NOT_FOUND, "not_found", "no command with this id");
		return;
	}
	struct command_record *recs = calloc((size_t)n + 1, sizeof(*recs));
	CHECK(recs != NULL);
	bool ask_ready = false;
	for (int i = 0; i < n; i++) {
		struct command_info *info = &recs[i].info;
		snprintf(info->id, sizeof(info->id), "%s", PQgetvalue(res, i, 0));
		snprintf(info->sandbox_id, sizeof(info->sandbox_id), "%s", PQgetvalue(res, i, 1));
		info->agent_id = (uint32_t)strtoul(PQgetvalue(res, i, 2), NULL, 10);
		recs[i].command = strdup(PQgetvalue(res, i, 3));
		CHECK(recs[i].command != NULL);
		info->status = command_status_parse(PQgetvalue(res, i, 4));
		info->exit_code = PQgetisnull(res, i, 5) ? 0 : atoi(PQgetvalue(res, i, 5));
		info->signal = PQgetisnull(res, i, 6) ? 0 : atoi(PQgetvalue(res, i, 6));
		info->timed_out = PQgetvalue(res, i, 7)[0] == 't';
		info->pid = PQgetisnull(res, i, 8) ? 0 : atoi(PQgetvalue(res, i, 8));
		info->started_at = strtoll(PQgetvalue(res, i, 9), NULL, 10);
		info->ended_at = PQgetisnull(res, i, 10) ? 0 : strtoll(PQgetvalue(res, i, 10), NULL, 10);
		info->offset = strtoull(PQgetvalue(res, i, 11), NULL, 10);
		info->service = PQgetvalue(res, i, 12)[0] == 't';
		info->port = PQgetisnull(res, i, 13) ? 0 : atoi(PQgetvalue(res, i, 13));
		ask_ready |= info->service && info->port > 0 && info->status == COMMAND_RUNNING;
	}
	op->recs = recs;
	op->nrecs = (size_t)n;
	if (ask_ready && !op->closed && sandbox_ref_get(op->ref)->status == SANDBOX_RUNNING) {
		/* whether a port accepts connections is the agent's to say, now */
		op_set_state(op, OP_AGENT);
		op->agent_holds = true;
		agent_list(sandbox_ref_channel(op->ref), ready_listed, op);
		return;
	}
	records_deliver(op);
}

static void ready_listed(const struct agent_status *list, size_t n, const char *err, void *arg)
{
	struct command_op *op = arg;
	op->agent_holds = false;
	if (err)
		log_warn("sandbox=%s: readiness of services unknown: %s", op->sandbox_id, err);
	for (size_t i = 0; i < op->nrecs; i++) {
		struct command_info *info = &op->recs[i].info;
		for (size_t k = 0; k < n && info->service; k++) {
			if (list[k].id == info->agent_id && list[k].running &&
			    strcmp(list[k].service, info->id) == 0)
				info->ready = list[k].ready;
		}
	}
	records_deliver(op);
}

static void records_deliver(struct command_op *op)
{
	if (!op->closed) {
		op->in_cb++;
		op->records_cb(NULL, op->recs, op->nrecs, op->arg);
		op->in_cb--;
	}
	op_finish(op);
}

struct command_op *commands_get(struct commands *c, const char *sandbox_id, const char *cmd_id,
				command_records_fn cb, void *arg)
{
	struct command_op *op = query_begin(c, OP_GET, sandbox_id, cmd_id, arg);
	op->records_cb = cb;
	return op;
}

struct command_op *commands_list(struct commands *c, const char *sandbox_id, command_records_fn cb, void *arg)
{
	struct command_op *op = query_begin(c, OP_LIST, sandbox_id, NULL, arg);
	op->records_cb = cb;
	return op;
}

struct command_op *commands_signal(struct commands *c, const char *sandbox_id, const char *cmd_id, int signo,
				   command_ready_fn cb, void *arg)
{
	struct command_op *op = query_begin(c, OP_SIGNAL, sandbox_id, cmd_id, arg);
	op->ready_cb = cb;
	op->signo = signo;
	return op;
}

struct command_op *commands_logs(struct commands *c, const char *sandbox_id, const char *cmd_id,
				 uint64_t offset, bool follow, const struct command_events *ev, void *arg)
{
	struct command_op *op = query_begin(c, OP_LOGS, sandbox_id, cmd_id, arg);
	op->ev = ev;
	op->offset = offset;
	op->follow = follow;
	return op;
}

struct command_op *commands_stdin_open(struct commands *c, const char *sandbox_id, const char *cmd_id,
				       command_ready_fn cb, void *arg)
{
	struct command_op *op = query_begin(c, OP_STDIN, sandbox_id, cmd_id, arg);
	op->ready_cb = cb;
	return op;
}

struct command_op *commands_remove_service(struct commands *c, const char *sandbox_id, const char *cmd_id,
					   command_ready_fn cb, void *arg)
{
	struct command_op *op = query_begin(c, OP_UNSERVICE, sandbox_id, cmd_id, arg);
	op->ready_cb = cb;
	return op;
}

/* The record of a command (logs, signal, stdin, removal): then on to its agent. */
static void record_found(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct command_op *op = arg;
	op->query = NULL;
	if (err != PG_OK) {
		op_fail_pg(op, err, message);
		return;
	}
	if (PQntuples(res) == 0) {
		op_fail(op, true, CORE_NOT_FOUND, "not_found", "no command with this id");
		return;
	}
	op->agent_id = (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
	const char *cstatus = PQgetvalue(res, 0, 1);
	if (op->kind == OP_UNSERVICE && PQgetvalue(res, 0, 2)[0] != 't') {
		op_fail(op, true, CORE_CONFLICT, "not_a_service",
			"only a service is removed; stop another command with a signal");
		return;
	}
	if (op->kind != OP_LOGS && op->kind != OP_UNSERVICE && strcmp(cstatus, "running") != 0) {
		op_fail(op, true, CORE_CONFLICT, "command_not_running", "command is %s", cstatus);
		return;
	}
	if (op->kind == OP_LOGS && strcmp(cstatus, "lost") == 0) {
		op_fail(op, true, CORE_GONE, "logs_gone", "the command was lost with its sandbox's agent");
		return;
	}
	op->ch = sandbox_ref_channel(op->ref);
	switch (op->kind) {
	case OP_SIGNAL:
		agent_signal(op->ch, op->agent_id, op->signo);
		ready_answer(op);
		return;
	case OP_STDIN:
		op_set_state(op, OP_STREAM);
		op->in_cb++;
		op->ready_cb(NULL, op->arg);
		op->in_cb--;
		if (op->state == OP_DONE && op->in_cb == 0)
			op_finish(op);
		return;
	case OP_LOGS:
		op_set_state(op, OP_AGENT);
		if (op->follow)
			logs_subscribe(op);
		else
			agent_list(op->ch, logs_listed, op); /* where "now" ends */
		return;
	case OP_UNSERVICE:
		op_set_state(op, OP_AGENT);
		op->agent_holds = true;
		agent_unservice(op->ch, op->cmd_id, unserviced, op);
		return;
	default:
		CHECK(!"record_found: unexpected op");
	}
}

/* ---- removing a service ---- */

/* The agent keeps it no more (and signalled its group): the record says so
 * after it, so that no record claims a service the agent would not start. */
static const char sql_unservice[] = "UPDATE commands SET service = false WHERE id = $1 AND sandbox_id = $2";

static void unserviced(int code, const char *err, bool kept, int pid, void *arg)
{
	struct command_op *op = arg;
	if (err) {
		op->agent_holds = false;
		if (op->closed)
			op_finish(op);
		else if (code == ENOTSUP)
			op_fail(op, true, CORE_UNSUPPORTED, "agent_outdated", "%s", err);
		else if (code == AGENT_DOCKER_DOWN)
			op_fail(op, true, CORE_UNAVAILABLE, "docker_unavailable", "%s", err);
		else
			op_fail(op, true, CORE_UNAVAILABLE, "agent_unavailable", "the sandbox agent: %s",
				err);
		return;
	}
	log_info("sandbox=%s: service %s removed (%s, group %d signalled)", op->sandbox_id, op->cmd_id,
		 kept ? "it was kept" : "it was not kept", pid);
	/* written whether the caller stays or not: the agent forgot it already.
	 * op stays held (agent_holds) until the write is answered */
	const char *params[] = { op->cmd_id, op->sandbox_id };
	op->query = pg_query_send(op->c->pg, sql_unservice, 2, params, unservice_written, op);
}

static void unservice_written(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct command_op *op = arg;
	op->query = NULL;
	op->agent_holds = false;
	if (err != PG_OK)
		log_warn("sandbox=%s: service %s removed, its record not: %s", op->sandbox_id, op->cmd_id,
			 message ? message : "?");
	if (op->closed) {
		op_finish(op);
		return;
	}
	if (err != PG_OK) {
		op_fail_pg(op, err, message);
		return;
	}
	ready_answer(op);
}

/* A signal sent, a service removed: the caller hears it once. */
static void ready_answer(struct command_op *op)
{
	if (!op->closed) {
		op->in_cb++;
		op->ready_cb(NULL, op->arg);
		op->in_cb--;
	}
	op_finish(op);
}

/* ---- logs ---- */

static void logs_listed(const struct agent_status *list, size_t n, const char *err, void *arg)
{
	struct command_op *op = arg;
	if (op->closed) {
		op_finish(op);
		return;
	}
	if (err) {
		op_fail(op, true, CORE_UNAVAILABLE, "agent_unavailable", "%s", err);
		return;
	}
	const struct agent_status *st = NULL;
	for (size_t i = 0; i < n; i++)
		if (list[i].id == op->agent_id)
			st = &list[i];
	if (!st) {
		op_fail(op, true, CORE_GONE, "logs_gone", "the agent no longer keeps this command");
		return;
	}
	if (st->running) {
		op->target = st->exit.offset;
		if (op->offset >= op->target) {
			op_set_state(op, OP_STREAM);
			op->in_cb++;
			if (op->ev->caught_up)
				op->ev->caught_up(op->arg, op->offset);
			op->in_cb--;
			op_finish(op);
			return;
		}
	} else {
		op->target = UINT64_MAX; /* replays to EXITED */
	}
	logs_subscribe(op);
}

static void logs_subscribe(struct command_op *op)
{
	op_set_state(op, OP_STREAM);
	if (op->follow) /* the client reads along: hold the command rather than skip bytes */
		op->sub = agent_subscribe_lossless(op->ch, op->agent_id, op->offset, op->c->cfg.window,
						   &logs_ops, op);
	else
		op->sub = agent_subscribe(op->ch, op->agent_id, op->offset, op->c->cfg.window, &logs_ops, op);
}

static void logs_output(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data, size_t len,
			bool gap)
{
	struct command_op *op = arg;
	if (!op_emit_output(op, stream, offset, data, len, gap))
		return;
	if (!op->follow && op->target != UINT64_MAX && offset + len >= op->target) {
		agent_sub_close(op->sub);
		op->sub = NULL;
		op->in_cb++;
		if (op->ev->caught_up)
			op->ev->caught_up(op->arg, offset + len);
		op->in_cb--;
		op_finish(op);
	}
}

static void logs_exited(void *arg, const struct agent_exit *exit)
{
	struct command_op *op = arg;
	op->sub = NULL;
	struct command_info info = { 0 };
	snprintf(info.id, sizeof(info.id), "%s", op->cmd_id);
	snprintf(info.sandbox_id, sizeof(info.sandbox_id), "%s", op->sandbox_id);
	info.agent_id = op->agent_id;
	info_from_exit(&info, exit);
	op_emit_exited(op, &info);
}

static void logs_error(void *arg, int code, const char *message)
{
	struct command_op *op = arg;
	op->sub = NULL;
	op_fail(op, true, CORE_GONE, "logs_gone", "%s", message ? message : "output not available");
}

/* ---- stdin ---- */

/* A channel pointer lives until its sandbox is dropped: look it up each time;
 * NULL once dropped (the sandbox stopped: its command is gone). */
static struct agent_channel *stdin_channel(struct command_op *op)
{
	return channels_find(op->c->chs, op->sandbox_id);
}

int command_stdin_write(struct command_op *op, const void *data, size_t len)
{
	CHECK(op->kind == OP_STDIN && op->state == OP_STREAM);
	op->ch = stdin_channel(op);
	if (!op->ch)
		return 0; /* nobody to give it to */
	if (agent_channel_pending(op->ch) > STDIN_HIGH_WATER) {
		/* the channel has no drain callback: look again shortly */
		if (!op->later)
			op->later = evtimer_new(op->c->base, stdin_poll, op);
		struct timeval tv = { 0, 5000 };
		evtimer_add(op->later, &tv);
		return -1;
	}
	size_t chunk = AGENT_FRAME_MAX - 64;
	for (size_t at = 0; at < len; at += chunk)
		agent_stdin(op->ch, op->agent_id, (const uint8_t *)data + at,
			    len - at < chunk ? len - at : chunk);
	return 0;
}

static void stdin_poll(evutil_socket_t fd, short what, void *arg)
{
	struct command_op *op = arg;
	op->ch = stdin_channel(op);
	if (op->ch && agent_channel_pending(op->ch) > STDIN_LOW_WATER) {
		struct timeval tv = { 0, 5000 };
		evtimer_add(op->later, &tv);
		return;
	}
	if (op->closed)
		return;
	op->in_cb++;
	op->ready_cb(NULL, op->arg);
	op->in_cb--;
	if (op->state == OP_DONE && op->in_cb == 0)
		op_finish(op);
}

void command_stdin_end(struct command_op *op, bool eof)
{
	struct agent_channel *ch = eof && op->state == OP_STREAM ? stdin_channel(op) : NULL;
	if (ch)
		agent_stdin_close(ch, op->agent_id);
	op->closed = true;
	op_finish(op);
}
