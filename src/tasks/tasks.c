/* The task service: a task's one transition, its events (numbered, the latest
 * kept in memory while it runs, written to PostgreSQL in batches with the row), the
 * resumption of this instance's tasks at start and the drain at shutdown. */
#include "core/strv.h"
#include "tasks/tasks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <uuid/uuid.h>

#include "core/clock.h"
#include "core/log.h"
#include "internal.h"
#include "ops.h"
#include "sandbox/registry.h"

/* events wait this long for company before a write; one write at a time per task */
#define FLUSH_DELAY_MS	20
#define FLUSH_RETRY_MS	1000
#define FLUSH_BATCH_MAX 500
#define RESUME_RETRY_MS 2000
/* written events kept in memory for watchers to replay (older ones are read
 * from PostgreSQL): a long task's events are not all held */
#define EVENTS_KEPT	  256
#define EVENTS_KEPT_BYTES (1u << 20)

static void flush_fire(evutil_socket_t fd, short what, void *arg);
static void flush_written(enum pg_error err, PGresult *res, const char *message, void *arg);
static void flush_schedule(struct task *t, int64_t ms);
static void task_free(struct task *t);
static void resume_read(struct tasks *ts);
static void resume_rows(enum pg_error err, PGresult *res, const char *message, void *arg);
static void resume_retry(evutil_socket_t fd, short what, void *arg);
static struct json_object *done_data(struct task *t);
static char *redact(const struct task *t, const char *json);

/* ---- the service ---- */

struct tasks *tasks_new(struct event_base *base, const struct tasks_config *cfg, struct registry *reg,
			struct commands *cmds)
{
	struct tasks *ts = calloc(1, sizeof(*ts));
	CHECK(ts != NULL);
	ts->base = base;
	ts->cfg = *cfg;
	ts->instance = strdup(cfg->instance ? cfg->instance : "");
	CHECK(ts->instance != NULL);
	ts->cfg.instance = ts->instance;
	ts->reg = reg;
	ts->cmds = cmds;
	ts->pg = registry_pg(reg);
	ts->resume_retry = evtimer_new(base, resume_retry, ts);
	CHECK(ts->resume_retry != NULL);
	return ts;
}

static bool task_unwritten(const struct task *t)
{
	return t->write || t->row_dirty || t->sent_seq < t->seq;
}

static void drain_check(struct tasks *ts)
{
	if (!ts->drained)
		return;
	for (struct task *t = ts->live; t; t = t->next)
		if (task_unwritten(t))
			return;
	void (*done)(void *) = ts->drained;
	ts->drained = NULL;
	evtimer_del(ts->drain_ev);
	done(ts->drained_arg);
}

static void drain_fire(evutil_socket_t fd, short what, void *arg)
{
	struct tasks *ts = arg;
	if (!ts->drained)
		return;
	log_warn("tasks: some events not written before the shutdown (their runs resume from the last "
		 "written)");
	void (*done)(void *) = ts->drained;
	ts->drained = NULL;
	done(ts->drained_arg);
}

void tasks_drain(struct tasks *ts, int64_t max_ms, void (*done)(void *arg), void *arg)
{
	ts->drained = done;
	ts->drained_arg = arg;
	ts->drain_ev = evtimer_new(ts->base, drain_fire, ts);
	CHECK(ts->drain_ev != NULL);
	struct timeval tv = { (time_t)(max_ms / 1000), (suseconds_t)(max_ms % 1000) * 1000 };
	evtimer_add(ts->drain_ev, &tv);
	for (struct task *t = ts->live; t; t = t->next) {
		if (!t->write && task_unwritten(t)) {
			evtimer_del(t->flush_ev);
			flush_fire(-1, EV_TIMEOUT, t);
		}
	}
	drain_check(ts);
}

void tasks_free(struct tasks *ts)
{
	if (!ts)
		return;
	if (ts->drain_ev)
		event_free(ts->drain_ev);
	ops_free_all(ts);
	if (ts->resume)
		pg_query_cancel(ts->resume);
	event_free(ts->resume_retry);
	while (ts->live) {
		struct task *t = ts->live;
		ts->live = t->next;
		task_free(t);
	}
	free(ts->instance);
	free(ts);
}

struct task *task_find(struct tasks *ts, const char *id)
{
	for (struct task *t = ts->live; t; t = t->next)
		if (strcmp(t->id, id) == 0)
			return t;
	return NULL;
}

struct task *task_new(struct tasks *ts, const char *id, const char *sandbox_id)
{
	struct task *t = calloc(1, sizeof(*t));
	CHECK(t != NULL);
	t->ts = ts;
	snprintf(t->id, sizeof(t->id), "%s", id);
	snprintf(t->sandbox_id, sizeof(t->sandbox_id), "%s", sandbox_id);
	t->line = evbuffer_new();
	t->flush_ev = evtimer_new(ts->base, flush_fire, t);
	CHECK(t->line && t->flush_ev);
	t->created_ms = clock_real_ms();
	t->next = ts->live;
	ts->live = t;
	return t;
}

static void task_free(struct task *t)
{
	runner_free(t);
	watchers_detach(t);
	if (t->write)
		pg_query_cancel(t->write);
	event_free(t->flush_ev);
	evbuffer_free(t->line);
	task_translator_free(&t->tr);
	json_object_put(t->files);
	for (size_t i = 0; i < t->nev; i++)
		task_event_free(&t->evs[i]);
	free(t->evs);
	free(t->prompt);
	free(t->model);
	free(t->cwd);
	free(t->command_json);
	free(t->reason);
	strv_free(t->command);
	strv_free(t->env);
	strv_free(t->secrets);
	free(t);
}

/* Off the live list once ended and written; watchers already had done. */
void task_release(struct task *t)
{
	if (!task_state_final(t->state) || task_unwritten(t))
		return;
	for (struct task **pp = &t->ts->live; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	task_free(t);
}

/* ---- the one transition ---- */

void task_set_state(struct task *t, enum task_state next, const char *reason)
{
	CHECK(task_state_can(t->state, next));
	if (reason)
		task_set_reason(t, reason);
	log_info("task %s (sandbox=%s): %s -> %s%s%s", t->id, t->sandbox_id, task_state_name(t->state),
		 task_state_name(next), reason ? ": " : "", reason ? t->reason : "");
	t->state = next;
	task_row_dirty(t);
	if (!task_state_final(next)) {
		struct json_object *d = json_object_new_object();
		json_object_object_add(d, "phase", json_object_new_string(task_state_name(next)));
		if (next == TASK_CHECKPOINTING) /* kept for a runner resumed mid-checkpoint */
			json_object_object_add(d, "outcome",
					       json_object_new_string(task_state_name(t->outcome)));
		task_emit(t, "status", d);
		return;
	}
	t->ended_ms = clock_real_ms();
	struct json_object *d = json_object_new_object();
	json_object_object_add(d, "phase", json_object_new_string("done"));
	task_emit(t, "status", d);
	task_emit(t, "done", done_data(t));
}

void task_set_reason(struct task *t, const char *reason)
{
	free(t->reason);
	t->reason = reason ? redact(t, reason) : NULL;
}

/* The result: what the done event says and GET .../tasks/{tid} shows. */
static struct json_object *done_data(struct task *t)
{
	struct json_object *d = json_object_new_object();
	json_object_object_add(d, "status", json_object_new_string(task_state_name(t->state)));
	json_object_object_add(d, "reason", t->reason ? json_object_new_string(t->reason) : NULL);
	json_object_object_add(d, "files_changed",
			       t->files ? json_object_get(t->files) : json_object_new_array());
	json_object_object_add(d, "message",
			       t->tr.final_message ? json_object_new_string(t->tr.final_message) : NULL);
	json_object_object_add(d, "duration_ms", json_object_new_int64(clock_real_ms() - t->created_ms));
	struct json_object *tok = NULL;
	if (t->tr.have_tokens) {
		tok = json_object_new_object();
		json_object_object_add(tok, "input", json_object_new_int64(t->tr.input_tokens));
		json_object_object_add(tok, "output", json_object_new_int64(t->tr.output_tokens));
	}
	json_object_object_add(d, "tokens", tok);
	json_object_object_add(d, "exit_code", t->exited ? json_object_new_int(t->exit.exit_code) : NULL);
	json_object_object_add(d, "before", t->before[0] ? json_object_new_string(t->before) : NULL);
	json_object_object_add(d, "after", t->after[0] ? json_object_new_string(t->after) : NULL);
	return d;
}

/* ---- events ---- */

/* Every secret's value in the JSON text replaced: a CLI may print what it
 * was given (a key in an error message), and events are stored and shown. */
static char *redact(const struct task *t, const char *json)
{
	char *out = strdup(json);
	CHECK(out != NULL);
	for (size_t i = 0; t->secrets && t->secrets[i]; i++) {
		const char *s = t->secrets[i];
		size_t n = strlen(s);
		for (char *p; (p = strstr(out, s)) != NULL;) {
			static const char mask[] = "[redacted]";
			size_t tail = strlen(p + n);
			char *o = malloc((size_t)(p - out) + sizeof(mask) + tail);
			CHECK(o != NULL);
			memcpy(o, out, (size_t)(p - out));
			memcpy(o + (p - out), mask, sizeof(mask) - 1);
			memcpy(o + (p - out) + sizeof(mask) - 1, p + n, tail + 1);
			free(out);
			out = o;
		}
	}
	return out;
}

const struct task_event *task_event_at(const struct task *t, int64_t seq)
{
	int64_t first = t->seq - (int64_t)t->nev + 1;
	return seq >= first && seq <= t->seq ? &t->evs[seq - first] : NULL;
}

/* Written events past the bounds go (the latest always stays: a done
 * event's result is read from it). */
static void events_trim(struct task *t)
{
	size_t drop = 0;
	int64_t first = t->seq - (int64_t)t->nev + 1;
	while (drop + 1 < t->nev && first + (int64_t)drop <= t->sent_seq &&
	       (t->nev - drop > EVENTS_KEPT || t->ev_bytes > EVENTS_KEPT_BYTES)) {
		t->ev_bytes -= strlen(t->evs[drop].data);
		task_event_free(&t->evs[drop]);
		drop++;
	}
	if (drop == 0)
		return;
	memmove(t->evs, t->evs + drop, (t->nev - drop) * sizeof(*t->evs));
	t->nev -= drop;
}

void task_emit(struct task *t, const char *type, struct json_object *data)
{
	if (t->nev == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 32;
		t->evs = realloc(t->evs, t->cap * sizeof(*t->evs));
		CHECK(t->evs != NULL);
	}
	struct task_event *e = &t->evs[t->nev++];
	e->seq = ++t->seq;
	e->type = strdup(type);
	CHECK(e->type != NULL);
	e->data = redact(t, json_object_to_json_string_ext(data, JSON_C_TO_STRING_PLAIN |
									 JSON_C_TO_STRING_NOSLASHESCAPE));
	t->ev_bytes += strlen(e->data);
	json_object_put(data);
	flush_schedule(t, FLUSH_DELAY_MS);
	watchers_deliver(t, e);
}

void task_row_dirty(struct task *t)
{
	t->row_dirty = true;
	flush_schedule(t, FLUSH_DELAY_MS);
}

static void flush_schedule(struct task *t, int64_t ms)
{
	if (t->write || evtimer_pending(t->flush_ev, NULL))
		return;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(t->flush_ev, &tv);
}

/* The events not yet sent and the row's fields, in one statement: a resumed
 * runner reads the output from output_offset, which never runs ahead of
 * the events stored with it. */
static const char sql_flush[] =
	"WITH ev AS (INSERT INTO task_events (task_id, seq, type, data) "
	"  SELECT $1, e.seq, e.type, e.data FROM jsonb_to_recordset($2::jsonb) AS e(seq integer, type text, "
	"  data jsonb) ON CONFLICT DO NOTHING) "
	"UPDATE tasks SET state = $3, reason = $4, command_id = $5, before_commit = $6, after_commit = $7, "
	"  output_offset = $8, last_seq = greatest(last_seq, $9::integer), "
	"  result = coalesce($10::jsonb, result), "
	"  ended_at = CASE WHEN $11::boolean THEN coalesce(ended_at, now()) ELSE ended_at END "
	"WHERE id = $1";

static void flush_fire(evutil_socket_t fd, short what, void *arg)
{
	struct task *t = arg;
	if (t->write)
		return;
	struct evbuffer *b = evbuffer_new();
	CHECK(b != NULL);
	evbuffer_add(b, "[", 1);
	int64_t upto = t->sent_seq;
	for (const struct task_event *e;
	     upto - t->sent_seq < FLUSH_BATCH_MAX && (e = task_event_at(t, upto + 1));) {
		evbuffer_add_printf(b, "%s{\"seq\":%lld,\"type\":\"%s\",\"data\":%s}",
				    upto > t->sent_seq ? "," : "", (long long)e->seq, e->type, e->data);
		upto = e->seq;
	}
	evbuffer_add(b, "]", 2); /* and its NUL */
	char offset[24], seq[24];
	snprintf(offset, sizeof(offset), "%llu", (unsigned long long)t->safe_offset);
	snprintf(seq, sizeof(seq), "%lld", (long long)upto);
	bool final = task_state_final(t->state);
	/* the result once the done event is among those sent */
	const char *result = NULL;
	if (final && upto == t->seq && t->nev > 0 && strcmp(t->evs[t->nev - 1].type, "done") == 0)
		result = t->evs[t->nev - 1].data;
	const char *params[11] = {
		t->id,
		(const char *)evbuffer_pullup(b, -1),
		task_state_name(t->state),
		t->reason,
		t->command_id[0] ? t->command_id : NULL,
		t->before[0] ? t->before : NULL,
		t->after[0] ? t->after : NULL,
		offset,
		seq,
		result,
		result ? "true" : "false",
	};
	/* the params are copied by libpq when sent: the buffer may go after */
	t->write = pg_query_send(t->ts->pg, sql_flush, 11, params, flush_written, t);
	evbuffer_free(b);
	t->row_dirty = false;
	t->inflight_from = t->sent_seq;
	t->sent_seq = upto; /* undone on failure */
}

static void flush_written(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct task *t = arg;
	t->write = NULL;
	if (err != PG_OK) {
		log_warn("task %s: events not written (retrying): %s", t->id, message ? message : "?");
		t->sent_seq = t->inflight_from;
		t->row_dirty = true;
		flush_schedule(t, FLUSH_RETRY_MS);
		return;
	}
	struct tasks *ts = t->ts;
	events_trim(t);
	if (t->row_dirty || t->sent_seq < t->seq)
		flush_schedule(t, ts->drained ? 0 : FLUSH_DELAY_MS);
	else
		task_release(t);
	drain_check(ts);
}

/* ---- resumption: the tasks this instance ran ---- */

void tasks_start(struct tasks *ts)
{
	resume_read(ts);
}

static void resume_read(struct tasks *ts)
{
	const char *params[] = { ts->instance };
	ts->resume = pg_query_send(
		ts->pg,
		"SELECT t.id, t.sandbox_id, t.state, t.agent, t.prompt, t.model, t.cwd, t.timeout_ms, "
		"  t.command_id, t.output_offset, t.before_commit, t.last_seq, "
		"  (extract(epoch FROM t.created_at) * 1000)::bigint, "
		"  (SELECT e.data->>'text' FROM task_events e "
		"    WHERE e.task_id = t.id AND e.type = 'message' ORDER BY e.seq DESC LIMIT 1), "
		"  (SELECT e.data->>'outcome' FROM task_events e "
		"    WHERE e.task_id = t.id AND e.type = 'status' ORDER BY e.seq DESC LIMIT 1) "
		"FROM tasks t WHERE t.owner_instance = $1 "
		"  AND t.state IN ('preparing', 'running', 'checkpointing')",
		1, params, resume_rows, ts);
}

static void resume_retry(evutil_socket_t fd, short what, void *arg)
{
	resume_read(arg);
}

static void resume_rows(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct tasks *ts = arg;
	ts->resume = NULL;
	if (err != PG_OK) {
		log_warn("tasks: cannot read the tasks to resume (retrying): %s", message ? message : "?");
		struct timeval tv = { RESUME_RETRY_MS / 1000, 0 };
		evtimer_add(ts->resume_retry, &tv);
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		if (task_find(ts, PQgetvalue(res, i, 0)))
			continue;
		struct task *t = task_new(ts, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
		if (task_state_parse(PQgetvalue(res, i, 2), &t->state) != 0 ||
		    task_agent_parse(PQgetvalue(res, i, 3), &t->agent) != 0)
			t->state = TASK_PREPARING;
		t->prompt = strdup(PQgetvalue(res, i, 4));
		t->model = PQgetisnull(res, i, 5) ? NULL : strdup(PQgetvalue(res, i, 5));
		t->cwd = PQgetisnull(res, i, 6) ? NULL : strdup(PQgetvalue(res, i, 6));
		t->timeout_ms = strtoll(PQgetvalue(res, i, 7), NULL, 10);
		snprintf(t->command_id, sizeof(t->command_id), "%s", PQgetvalue(res, i, 8));
		t->safe_offset = strtoull(PQgetvalue(res, i, 9), NULL, 10);
		snprintf(t->before, sizeof(t->before), "%s", PQgetvalue(res, i, 10));
		/* the events so far stay in PostgreSQL (watchers read them there):
		 * numbered on from the last stored */
		t->seq = t->sent_seq = strtoll(PQgetvalue(res, i, 11), NULL, 10);
		t->created_ms = strtoll(PQgetvalue(res, i, 12), NULL, 10);
		task_translator_init(&t->tr, t->agent);
		if (!PQgetisnull(res, i, 13)) {
			t->tr.final_message = strdup(PQgetvalue(res, i, 13));
			CHECK(t->tr.final_message != NULL);
		}
		/* checkpointing: the outcome its last status event kept */
		if (PQgetisnull(res, i, 14) || task_state_parse(PQgetvalue(res, i, 14), &t->outcome) != 0)
			t->outcome = TASK_FAILED;
		log_info("task %s (sandbox=%s): resumed in %s at output offset %llu, %lld events", t->id,
			 t->sandbox_id, task_state_name(t->state), (unsigned long long)t->safe_offset,
			 (long long)t->seq);
		runner_resume(t);
	}
}
