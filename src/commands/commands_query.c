/* Commands by id: get, list, logs, signal, stdin, and the reconcile pass that
 * first settles a sandbox's `running` records against its agent (after a
 * sandbard restart some exited meanwhile, some are unknown: lost). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "commands_internal.h"
#include "core/log.h"

#define STDIN_HIGH_WATER (1u << 20)
#define STDIN_LOW_WATER	 (256u << 10)

struct reconcile;
static void reconcile_start(struct commands *c, struct sbx *s, struct sandbox_ref *ref);
static void reconcile_looked_up(enum pg_error err, PGresult *res, const char *message, void *arg);
static void reconcile_listed(const struct agent_status *list, size_t n, const char *err, void *arg);
static void reconcile_written(enum pg_error err, PGresult *res, const char *message, void *arg);
static void reconcile_done(struct reconcile *r);
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

struct reconcile {
	struct commands *c;
	struct sbx *s;
	struct sandbox_ref *ref; /* the sandbox as the first op waiting found it */
	struct agent_channel *ch;
	struct json_object *records; /* [{id, agent_id, command, pid, started_at}] */
};

static const struct agent_sub_ops logs_ops = {
	.output = logs_output,
	.exited = logs_exited,
	.error = logs_error,
};

/* ---- reconcile ---- */

void sbx_after_reconcile(struct commands *c, struct command_op *op, void (*go)(struct command_op *op))
{
	struct sbx *s = sbx_get(c, op->sandbox_id);
	if (s->reconcile == SBX_RECONCILED) {
		go(op);
		return;
	}
	op_set_state(op, OP_RECONCILE);
	op->wait_next = s->waiters;
	s->waiters = op;
	if (s->reconcile == SBX_UNRECONCILED)
		reconcile_start(c, s, op->ref);
}

static const char sql_reconcile[] =
	"SELECT coalesce(json_agg(json_build_object('id', c.id, "
	"  'agent_id', c.agent_id, 'command', c.command, 'pid', c.pid, "
	"  'started_at', (extract(epoch FROM c.started_at) * 1000)::bigint)), '[]')::text "
	"FROM commands c WHERE c.sandbox_id = $1 AND c.status = 'running'";

static void reconcile_start(struct commands *c, struct sbx *s, struct sandbox_ref *ref)
{
	s->reconcile = SBX_RECONCILING;
	struct reconcile *r = calloc(1, sizeof(*r));
	CHECK(r != NULL);
	r->c = c;
	r->s = s;
	r->ref = sandbox_ref_hold(ref);
	const char *params[] = { s->id };
	pg_query_send(c->pg, sql_reconcile, 1, params, reconcile_looked_up, r);
}

static bool watched(struct sbx *s, const char *id)
{
	for (struct command *cmd = s->cmds; cmd; cmd = cmd->next)
		if (strcmp(cmd->info.id, id) == 0)
			return true;
	return false;
}

static const char sql_settle[] =
	"UPDATE commands c SET status = r.status, exit_code = r.exit_code, signal = r.signal, "
	"  timed_out = coalesce(r.timed_out, false), output_bytes = coalesce(r.output_bytes, "
	"c.output_bytes), "
	"  ended_at = coalesce(to_timestamp(r.ended_at / 1000.0), now()) "
	"FROM json_to_recordset($1::json) AS r(id uuid, status text, exit_code int, signal int, "
	"  timed_out bool, output_bytes bigint, ended_at bigint) "
	"WHERE c.id = r.id AND c.status = 'running'";

static void reconcile_settle(struct reconcile *r, struct json_object *updates)
{
	if (json_object_array_length(updates) == 0) {
		json_object_put(updates);
		reconcile_done(r);
		return;
	}
	const char *params[] = { json_object_to_json_string_ext(updates, JSON_C_TO_STRING_PLAIN) };
	pg_query_send(r->c->pg, sql_settle, 1, params, reconcile_written, r);
	json_object_put(updates);
}

static void reconcile_looked_up(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct reconcile *r = arg;
	if (err != PG_OK) {
		if (err != PG_OK)
			log_warn("sandbox %s: reconcile commands: %s", r->s->id, message ? message : "?");
		reconcile_done(r);
		return;
	}
	r->records = json_tokener_parse(PQgetvalue(res, 0, 0));
	struct json_object *updates = json_object_new_array();
	const struct sandbox *sb = sandbox_ref_get(r->ref);
	bool live = sb->status == SANDBOX_RUNNING && *sb->container_id;
	size_t n = r->records ? json_object_array_length(r->records) : 0;
	if (n == 0) {
		reconcile_settle(r, updates);
		return;
	}
	if (!live) {
		/* no agent left to ask: whatever was running is gone */
		for (size_t i = 0; i < n; i++) {
			struct json_object *u = json_object_new_object(), *v;
			json_object_object_get_ex(json_object_array_get_idx(r->records, i), "id", &v);
			json_object_object_add(u, "id", json_object_get(v));
			json_object_object_add(u, "status", json_object_new_string("lost"));
			json_object_array_add(updates, u);
		}
		reconcile_settle(r, updates);
		return;
	}
	json_object_put(updates);
	r->ch = sandbox_ref_channel(r->ref);
	agent_list(r->ch, reconcile_listed, r);
}

static void reconcile_listed(const struct agent_status *list, size_t n, const char *err, void *arg)
{
	struct reconcile *r = arg;
	if (err) {
		log_warn("sandbox %s: agent list: %s (records left as they are)", r->s->id, err);
		reconcile_done(r);
		return;
	}
	struct json_object *updates = json_object_new_array();
	size_t nrec = json_object_array_length(r->records);
	for (size_t i = 0; i < nrec; i++) {
		struct json_object *rec = json_object_array_get_idx(r->records, i), *v;
		json_object_object_get_ex(rec, "id", &v);
		const char *id = json_object_get_string(v);
		json_object_object_get_ex(rec, "agent_id", &v);
		uint32_t agent_id = (uint32_t)json_object_get_int64(v);
		if (watched(r->s, id))
			continue;
		const struct agent_status *st = NULL;
		for (size_t k = 0; k < n; k++)
			if (list[k].id == agent_id)
				st = &list[k];
		if (st && st->running) {
			struct json_object *cmdv, *pidv, *atv;
			json_object_object_get_ex(rec, "command", &cmdv);
			json_object_object_get_ex(rec, "pid", &pidv);
			json_object_object_get_ex(rec, "started_at", &atv);
			commands_watch_resume(r->c, r->s, r->ch, id, agent_id,
					      json_object_to_json_string_ext(cmdv, JSON_C_TO_STRING_PLAIN),
					      json_object_get_int(pidv), json_object_get_int64(atv));
			continue;
		}
		struct json_object *u = json_object_new_object();
		json_object_object_add(u, "id", json_object_new_string(id));
		if (!st) {
			json_object_object_add(u, "status", json_object_new_string("lost"));
		} else {
			struct command_info info = { 0 };
			info_from_exit(&info, &st->exit);
			json_object_object_add(u, "status", json_object_new_string("exited"));
			json_object_object_add(u, "exit_code", json_object_new_int(info.exit_code));
			if (info.signal)
				json_object_object_add(u, "signal", json_object_new_int(info.signal));
			json_object_object_add(u, "timed_out", json_object_new_boolean(info.timed_out));
			json_object_object_add(u, "output_bytes",
					       json_object_new_int64((int64_t)info.offset));
			json_object_object_add(u, "ended_at", json_object_new_int64(info.ended_at));
		}
		json_object_array_add(updates, u);
	}
	reconcile_settle(r, updates);
}

static void reconcile_written(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct reconcile *r = arg;
	if (err != PG_OK)
		log_warn("sandbox %s: settling command records: %s", r->s->id, message ? message : "?");
	reconcile_done(r);
}

static void reconcile_done(struct reconcile *r)
{
	struct sbx *s = r->s;
	s->reconcile = SBX_RECONCILED;
	json_object_put(r->records);
	sandbox_ref_put(r->ref);
	free(r);
	/* the waiters, oldest first */
	struct command_op *list = NULL;
	while (s->waiters) {
		struct command_op *op = s->waiters;
		s->waiters = op->wait_next;
		op->wait_next = list;
		list = op;
	}
	while (list) {
		struct command_op *op = list;
		list = op->wait_next;
		if (op->closed) {
			op->state = OP_DONE;
			op_finish(op);
			continue;
		}
		op_set_state(op, OP_LOOKUP);
		query_after_records(op);
	}
}

/* ---- get, list ---- */

/* A record's columns, in the order records_read reads them. */
#define RECORD_COLUMNS                                                                                       \
	"c.id, c.sandbox_id, c.agent_id, c.command::text, c.status, c.exit_code, c.signal, c.timed_out, "    \
	"c.pid, (extract(epoch FROM c.started_at) * 1000)::bigint, "                                         \
	"(extract(epoch FROM c.ended_at) * 1000)::bigint, c.output_bytes"
static const char sql_get[] =
	"SELECT " RECORD_COLUMNS " FROM commands c WHERE c.id = $1 AND c.sandbox_id = $2";
static const char sql_list[] = "SELECT " RECORD_COLUMNS " FROM commands c WHERE c.sandbox_id = $1 "
			       "ORDER BY c.started_at DESC, c.id";
static const char sql_record[] =
	"SELECT c.agent_id, c.status FROM commands c WHERE c.id = $1 AND c.sandbox_id = $2";

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
		op->query = pg_query_send(c->pg, sql_record, 2, p2, record_found, op);
		break;
	default:
		CHECK(!"query_go: not a query op");
	}
}

static struct command_op *query_new(struct commands *c, enum op_kind kind, const char *sandbox_id,
				    const char *cmd_id, void *arg)
{
	struct command_op *op = op_new(c, kind, sandbox_id, arg);
	snprintf(op->cmd_id, sizeof(op->cmd_id), "%s", cmd_id ? cmd_id : "");
	return op;
}

static void query_start(struct command_op *op, bool needs_cmd)
{
	if (needs_cmd && commands_uuid_valid(op->sandbox_id) && !commands_uuid_valid(op->cmd_id)) {
		op_fail(op, false, CORE_NOT_FOUND, "not_found", "no command with this id");
		return;
	}
	/* logs, signals and stdin go to the sandbox's agent: it must run */
	unsigned flags = REGISTRY_TOUCH | (needs_cmd && op->kind != OP_GET ? REGISTRY_RUNNING : 0);
	op->rwait = registry_acquire(op->c->reg, op->sandbox_id, flags, query_acquired, op);
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
	snprintf(op->container, sizeof(op->container), "%s", sandbox_ref_get(ref)->container_id);
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
	for (int i = 0; i < n; i++) {
		struct command_info *info = &recs[i].info;
		snprintf(info->id, sizeof(info->id), "%s", PQgetvalue(res, i, 0));
		snprintf(info->sandbox_id, sizeof(info->sandbox_id), "%s", PQgetvalue(res, i, 1));
		info->agent_id = (uint32_t)strtoul(PQgetvalue(res, i, 2), NULL, 10);
		recs[i].command = PQgetvalue(res, i, 3);
		info->status = command_status_parse(PQgetvalue(res, i, 4));
		info->exit_code = PQgetisnull(res, i, 5) ? 0 : atoi(PQgetvalue(res, i, 5));
		info->signal = PQgetisnull(res, i, 6) ? 0 : atoi(PQgetvalue(res, i, 6));
		info->timed_out = PQgetvalue(res, i, 7)[0] == 't';
		info->pid = PQgetisnull(res, i, 8) ? 0 : atoi(PQgetvalue(res, i, 8));
		info->started_at = strtoll(PQgetvalue(res, i, 9), NULL, 10);
		info->ended_at = PQgetisnull(res, i, 10) ? 0 : strtoll(PQgetvalue(res, i, 10), NULL, 10);
		info->offset = strtoull(PQgetvalue(res, i, 11), NULL, 10);
	}
	if (!op->closed) {
		op->in_cb++;
		op->records_cb(NULL, recs, (size_t)n, op->arg);
		op->in_cb--;
	}
	free(recs);
	op_finish(op);
}

struct command_op *commands_get(struct commands *c, const char *sandbox_id, const char *cmd_id,
				command_records_fn cb, void *arg)
{
	struct command_op *op = query_new(c, OP_GET, sandbox_id, cmd_id, arg);
	op->records_cb = cb;
	query_start(op, true);
	return op;
}

struct command_op *commands_list(struct commands *c, const char *sandbox_id, command_records_fn cb, void *arg)
{
	struct command_op *op = query_new(c, OP_LIST, sandbox_id, NULL, arg);
	op->records_cb = cb;
	query_start(op, false);
	return op;
}

struct command_op *commands_signal(struct commands *c, const char *sandbox_id, const char *cmd_id, int signo,
				   command_ready_fn cb, void *arg)
{
	struct command_op *op = query_new(c, OP_SIGNAL, sandbox_id, cmd_id, arg);
	op->ready_cb = cb;
	op->signo = signo;
	query_start(op, true);
	return op;
}

struct command_op *commands_logs(struct commands *c, const char *sandbox_id, const char *cmd_id,
				 uint64_t offset, bool follow, const struct command_events *ev, void *arg)
{
	struct command_op *op = query_new(c, OP_LOGS, sandbox_id, cmd_id, arg);
	op->ev = ev;
	op->offset = offset;
	op->follow = follow;
	query_start(op, true);
	return op;
}

struct command_op *commands_stdin_open(struct commands *c, const char *sandbox_id, const char *cmd_id,
				       command_ready_fn cb, void *arg)
{
	struct command_op *op = query_new(c, OP_STDIN, sandbox_id, cmd_id, arg);
	op->ready_cb = cb;
	query_start(op, true);
	return op;
}

/* The record of a command (logs, signal, stdin): then on to its agent. */
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
	if (op->kind != OP_LOGS && strcmp(cstatus, "running") != 0) {
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
		if (!op->closed) {
			op->in_cb++;
			op->ready_cb(NULL, op->arg);
			op->in_cb--;
		}
		op_finish(op);
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
	default:
		CHECK(!"record_found: unexpected op");
	}
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

/* A channel pointer lives until its sandbox is dropped: look it up each time. */
static struct agent_channel *stdin_channel(struct command_op *op)
{
	return channels_get(op->c->chs, op->sandbox_id, op->container);
}

int command_stdin_write(struct command_op *op, const void *data, size_t len)
{
	CHECK(op->kind == OP_STDIN && op->container[0]);
	op->ch = stdin_channel(op);
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
	if (agent_channel_pending(op->ch) > STDIN_LOW_WATER) {
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
	if (eof && op->container[0])
		agent_stdin_close(stdin_channel(op), op->agent_id);
	op->closed = true;
	op_finish(op);
}
