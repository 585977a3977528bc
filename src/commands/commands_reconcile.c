/* The reconcile pass: a sandbox's command records settled against what its
 * agent says it runs (LIST), before the first request about its commands
 * after sandbard started, after a stop or start, or after its agent started
 * again behind our back. Exited meanwhile: the exit is written; unknown to
 * the agent: lost; still running: watched again. A service the agent started
 * again reports its record id: the same command, its record following the
 * new run (agent id, pid, start). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "commands_internal.h"
#include "core/clock.h"
#include "core/log.h"

/* A record's start and the agent's are the same command's within this
 * (the record keeps microseconds of a millisecond time: they agree, but a
 * rounding must not make a command lost). */
#define SAME_START_MS 1
/* A service the agent keeps with no record (its record failed, or the
 * channel broke after its SPAWN went out) is forgotten once it ran this
 * long: a younger one's record may be on its way. */
#define ORPHAN_AGE_MS 60000

/* A record as the pass reads it (strings point into r->records). */
struct rec_view {
	const char *id, *status, *command;
	uint32_t agent_id;
	int pid, port;
	int64_t started_at;
	bool service;
};

/* A service the agent started again: watched once its record says so. */
struct resume {
	struct command_info info;
	char *command_json;
};

struct reconcile {
	struct commands *c;
	struct sbx *s;
	struct sandbox_ref *ref;     /* the sandbox as the first op waiting found it */
	struct pg_query *query;	     /* the records' read or the settling write */
	struct json_object *records; /* see sql_reconcile */
	struct resume *resume;
	size_t nresume;
	bool settled; /* the records agree with a live agent: RECONCILED after this pass */
};

static void reconcile_start(struct commands *c, struct sbx *s, struct sandbox_ref *ref);
static void reconcile_looked_up(enum pg_error err, PGresult *res, const char *message, void *arg);
static void reconcile_listed(const struct agent_status *list, size_t n, const char *err, void *arg);
static void reconcile_settle(struct reconcile *r, struct json_object *updates);
static void reconcile_written(enum pg_error err, PGresult *res, const char *message, void *arg);
static void reconcile_done(struct reconcile *r);
static void rec_view(struct json_object *rec, struct rec_view *v);
static const struct agent_status *rec_in_agent(const struct rec_view *v, const struct agent_status *list,
					       size_t n);
static struct json_object *run_update(const struct rec_view *v, const struct agent_status *st);
static bool watched(struct sbx *s, const char *id);
static void reconcile_orphans(struct reconcile *r, const struct agent_status *list, size_t n);

void sbx_after_reconcile(struct commands *c, struct command_op *op, void (*go)(struct command_op *op))
{
	struct sbx *s = sbx_get(c, op->sandbox_id);
	if (s->reconcile == SBX_RECONCILED) {
		go(op);
		return;
	}
	op_set_state(op, OP_RECONCILE);
	op->reconcile_go = go;
	op->wait_next = s->waiters;
	s->waiters = op;
	if (s->reconcile == SBX_UNRECONCILED)
		reconcile_start(c, s, op->ref);
}

/* The running records and every service's (a service that exited, or was
 * lost with a stop, may run again). */
static const char sql_reconcile[] =
	"SELECT coalesce(json_agg(json_build_object('id', c.id, 'agent_id', c.agent_id, "
	"  'command', c.command, 'pid', c.pid, 'status', c.status, 'service', c.service, 'port', c.port, "
	"  'started_at', (extract(epoch FROM c.started_at) * 1000)::bigint)), '[]')::text "
	"FROM commands c WHERE c.sandbox_id = $1 AND (c.status = 'running' OR c.service)";

static void reconcile_start(struct commands *c, struct sbx *s, struct sandbox_ref *ref)
{
	s->reconcile = SBX_RECONCILING;
	s->again = false;
	struct reconcile *r = calloc(1, sizeof(*r));
	CHECK(r != NULL);
	r->c = c;
	r->s = s;
	r->ref = sandbox_ref_hold(ref);
	s->pass = r;
	const char *params[] = { s->id };
	r->query = pg_query_send(c->pg, sql_reconcile, 1, params, reconcile_looked_up, r);
}

static void rec_view(struct json_object *rec, struct rec_view *v)
{
	struct json_object *x;
	memset(v, 0, sizeof(*v));
	if (json_object_object_get_ex(rec, "id", &x))
		v->id = json_object_get_string(x);
	if (json_object_object_get_ex(rec, "status", &x))
		v->status = json_object_get_string(x);
	if (json_object_object_get_ex(rec, "command", &x))
		v->command = json_object_to_json_string_ext(x, JSON_C_TO_STRING_PLAIN);
	if (json_object_object_get_ex(rec, "agent_id", &x))
		v->agent_id = (uint32_t)json_object_get_int64(x);
	if (json_object_object_get_ex(rec, "pid", &x))
		v->pid = json_object_get_int(x);
	if (json_object_object_get_ex(rec, "port", &x))
		v->port = json_object_get_int(x);
	if (json_object_object_get_ex(rec, "started_at", &x))
		v->started_at = json_object_get_int64(x);
	if (json_object_object_get_ex(rec, "service", &x))
		v->service = json_object_get_boolean(x);
	if (!v->id)
		v->id = "";
	if (!v->status)
		v->status = "";
	if (!v->command)
		v->command = "null";
}

static bool same_start(int64_t a, int64_t b)
{
	return a - b <= SAME_START_MS && b - a <= SAME_START_MS;
}

/* The agent's command a record stands for: a service by its id, whatever
 * run of it the agent has; another command by its agent id and start (after
 * a restart of the agent, ids start over: the same id is another command). */
static const struct agent_status *rec_in_agent(const struct rec_view *v, const struct agent_status *list,
					       size_t n)
{
	for (size_t k = 0; k < n; k++) {
		if (v->service
			    ? strcmp(list[k].service, v->id) == 0
			    : list[k].id == v->agent_id && same_start(list[k].exit.started_at, v->started_at))
			return &list[k];
	}
	return NULL;
}

/* A record's update to the agent's run st of it (its exit, when it exited). */
static struct json_object *run_update(const struct rec_view *v, const struct agent_status *st)
{
	struct json_object *u = json_object_new_object();
	json_object_object_add(u, "id", json_object_new_string(v->id));
	json_object_object_add(u, "agent_id", json_object_new_int64(st->id));
	json_object_object_add(u, "pid", json_object_new_int(st->pid));
	json_object_object_add(u, "started_at", json_object_new_int64(st->exit.started_at));
	if (st->running) {
		json_object_object_add(u, "status", json_object_new_string("running"));
		json_object_object_add(u, "output_bytes", json_object_new_int64(0));
		return u;
	}
	struct command_info info = { 0 };
	info_from_exit(&info, &st->exit);
	json_object_object_add(u, "status", json_object_new_string("exited"));
	json_object_object_add(u, "exit_code", json_object_new_int(info.exit_code));
	if (info.signal)
		json_object_object_add(u, "signal", json_object_new_int(info.signal));
	json_object_object_add(u, "timed_out", json_object_new_boolean(info.timed_out));
	json_object_object_add(u, "output_bytes", json_object_new_int64((int64_t)info.offset));
	json_object_object_add(u, "ended_at", json_object_new_int64(info.ended_at));
	return u;
}

static bool watched(struct sbx *s, const char *id)
{
	for (struct command *cmd = s->cmds; cmd; cmd = cmd->next)
		if (strcmp(cmd->info.id, id) == 0)
			return true;
	return false;
}

static void reconcile_looked_up(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct reconcile *r = arg;
	r->query = NULL;
	if (err != PG_OK) {
		log_warn("sandbox %s: reconcile commands: %s", r->s->id, message ? message : "?");
		reconcile_done(r);
		return;
	}
	r->records = json_tokener_parse(PQgetvalue(res, 0, 0));
	const struct sandbox *sb = sandbox_ref_get(r->ref);
	size_t n = r->records ? json_object_array_length(r->records) : 0;
	if (sb->status == SANDBOX_RUNNING && *sb->container_id && n > 0) {
		agent_list(sandbox_ref_channel(r->ref), reconcile_listed, r);
		return;
	}
	/* no agent to ask: whatever ran is gone (a service comes back with
	 * its sandbox's next start, and the pass after it says so) */
	struct json_object *updates = json_object_new_array();
	for (size_t i = 0; i < n; i++) {
		struct rec_view v;
		rec_view(json_object_array_get_idx(r->records, i), &v);
		if (strcmp(v.status, "running") != 0)
			continue;
		struct json_object *u = json_object_new_object();
		json_object_object_add(u, "id", json_object_new_string(v.id));
		json_object_object_add(u, "status", json_object_new_string("lost"));
		json_object_array_add(updates, u);
	}
	r->settled = n == 0; /* nothing to settle, whoever asks */
	reconcile_settle(r, updates);
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
	r->resume = calloc(nrec, sizeof(*r->resume));
	CHECK(r->resume != NULL);
	for (size_t i = 0; i < nrec; i++) {
		struct rec_view v;
		rec_view(json_object_array_get_idx(r->records, i), &v);
		if (watched(r->s, v.id))
			continue;
		const struct agent_status *st = rec_in_agent(&v, list, n);
		bool running = strcmp(v.status, "running") == 0;
		bool current = st && st->id == v.agent_id && same_start(st->exit.started_at, v.started_at);
		if (!st) {
			if (running) { /* unknown to the agent */
				struct json_object *u = json_object_new_object();
				json_object_object_add(u, "id", json_object_new_string(v.id));
				json_object_object_add(u, "status", json_object_new_string("lost"));
				json_object_array_add(updates, u);
			}
			continue;
		}
		if (st->running) {
			struct command_info info = { .agent_id = st->id,
						     .pid = st->pid,
						     .started_at = st->exit.started_at,
						     .service = v.service,
						     .port = v.port,
						     .status = COMMAND_RUNNING };
			snprintf(info.id, sizeof(info.id), "%s", v.id);
			snprintf(info.sandbox_id, sizeof(info.sandbox_id), "%s", r->s->id);
			if (current && running) { /* as recorded: watched at once */
				commands_watch_resume(r->c, r->s, sandbox_ref_channel(r->ref), &info,
						      v.command);
				continue;
			}
			/* a service's new run: its record first, then the watch */
			r->resume[r->nresume].info = info;
			r->resume[r->nresume++].command_json = strdup(v.command);
			json_object_array_add(updates, run_update(&v, st));
			continue;
		}
		if (!(current && !running)) /* an exit not recorded yet */
			json_object_array_add(updates, run_update(&v, st));
	}
	reconcile_orphans(r, list, n);
	r->settled = true;
	reconcile_settle(r, updates);
}

/* A service of the agent's no record names (every service's record is read). */
static void reconcile_orphans(struct reconcile *r, const struct agent_status *list, size_t n)
{
	size_t nrec = json_object_array_length(r->records);
	int64_t now = clock_real_ms();
	for (size_t k = 0; k < n; k++) {
		if (!list[k].service[0] || now - list[k].exit.started_at < ORPHAN_AGE_MS ||
		    watched(r->s, list[k].service))
			continue;
		bool known = false;
		for (size_t i = 0; i < nrec && !known; i++) {
			struct rec_view v;
			rec_view(json_object_array_get_idx(r->records, i), &v);
			known = strcmp(v.id, list[k].service) == 0;
		}
		if (!known)
			commands_unservice_orphan(sandbox_ref_channel(r->ref), r->s->id, list[k].service,
						  "no record names it");
	}
}

/* One statement for every record the pass changes. A service's record may
 * have ended (exited, lost) and run again: it is changed whatever its status. */
static const char sql_settle[] =
	"UPDATE commands c SET status = r.status, exit_code = r.exit_code, signal = r.signal, "
	"  timed_out = coalesce(r.timed_out, false), output_bytes = coalesce(r.output_bytes, "
	"c.output_bytes), "
	"  agent_id = coalesce(r.agent_id, c.agent_id), pid = coalesce(r.pid, c.pid), "
	"  started_at = coalesce(to_timestamp(r.started_at / 1000.0), c.started_at), "
	"  ended_at = CASE WHEN r.status = 'running' THEN NULL "
	"    ELSE coalesce(to_timestamp(r.ended_at / 1000.0), now()) END "
	"FROM json_to_recordset($1::json) AS r(id uuid, status text, exit_code int, signal int, "
	"  timed_out bool, output_bytes bigint, ended_at bigint, agent_id int, pid int, started_at bigint) "
	"WHERE c.id = r.id AND (c.status = 'running' OR c.service)";

static void reconcile_settle(struct reconcile *r, struct json_object *updates)
{
	if (json_object_array_length(updates) == 0) {
		json_object_put(updates);
		reconcile_written(PG_OK, NULL, NULL, r);
		return;
	}
	const char *params[] = { json_object_to_json_string_ext(updates, JSON_C_TO_STRING_PLAIN) };
	r->query = pg_query_send(r->c->pg, sql_settle, 1, params, reconcile_written, r);
	json_object_put(updates);
}

static void reconcile_written(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct reconcile *r = arg;
	r->query = NULL;
	if (err != PG_OK) {
		log_warn("sandbox %s: settling command records: %s", r->s->id, message ? message : "?");
		r->settled = false;
	}
	/* a stop meanwhile (again) dropped the channel the runs were in */
	for (size_t i = 0; i < r->nresume && r->settled && !r->s->again; i++) {
		struct resume *x = &r->resume[i];
		log_info("sandbox=%s: service %s runs again (agent command %u, pid %d)", r->s->id, x->info.id,
			 x->info.agent_id, x->info.pid);
		commands_watch_resume(r->c, r->s, sandbox_ref_channel(r->ref), &x->info, x->command_json);
	}
	reconcile_done(r);
}

void reconcile_free(struct reconcile *r)
{
	pg_query_cancel(r->query);
	r->s->pass = NULL;
	for (size_t i = 0; i < r->nresume; i++)
		free(r->resume[i].command_json);
	free(r->resume);
	json_object_put(r->records);
	sandbox_ref_put(r->ref);
	free(r);
}

static void reconcile_done(struct reconcile *r)
{
	struct sbx *s = r->s;
	s->reconcile = r->settled && !s->again ? SBX_RECONCILED : SBX_UNRECONCILED;
	s->again = false;
	reconcile_free(r);
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
		op->reconcile_go(op);
	}
}
