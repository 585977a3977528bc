/* The ops callers hold on tasks (create, reads, cancel, diff, revert) and
 * watches of a task's events: from memory while this instance runs it (once
 * the older ones memory dropped are read), else polled from PostgreSQL until
 * its done event. Callbacks always from the loop. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <uuid/uuid.h>

#include "core/env.h"
#include "core/log.h"
#include "core/strv.h"
#include "internal.h"
#include "ops.h"
#include "sandbox/registry.h"

#define WATCH_POLL_MS  300
#define WATCH_BATCH    500
#define GIT_TIMEOUT_MS 60000

enum op_kind { OPK_CREATE, OPK_GET, OPK_LIST, OPK_CANCEL, OPK_DIFF, OPK_REVERT, OPK_WATCH };

struct task_op {
	struct tasks *ts;
	struct task_op *prev, *next; /* in ts->ops */
	enum op_kind kind;
	void *arg;
	task_info_fn info_cb;
	task_list_fn list_cb;
	task_text_fn text_cb;
	const struct task_watch_ops *wops;
	char sandbox_id[37], task_id[37];
	struct registry_wait *rw;
	struct sandbox_ref *ref;
	struct pg_query *q;
	struct command_op *cop;
	struct event *later;
	struct core_error fail;
	/* create: the spec, owned until the task takes it */
	struct task *made;
	enum task_agent agent;
	char *prompt, *model, *cwd, *command_json;
	char **env, **command;
	int64_t timeout_ms;
	/* watch */
	struct task *live;     /* followed from memory */
	struct task_op *wnext; /* in live->watchers */
	bool replayed;	       /* memory: caught up, now live */
	bool opened;	       /* the task was found */
	int64_t since;	       /* the last seq delivered */
	char before[48];       /* diff, revert */
	char after[48];
};

static struct task_op *op_new(struct tasks *ts, enum op_kind kind, const char *sandbox_id,
			      const char *task_id, void *arg);
static void op_free(struct task_op *op);
static void op_later(struct task_op *op, event_callback_fn fn, int64_t ms);
static void op_fail_now(struct task_op *op);
static void op_fail_later(struct task_op *op, enum core_err kind, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void fail_fire(evutil_socket_t fd, short what, void *arg);
static bool ids_ok(struct task_op *op);
static void row_query(struct task_op *op, pg_result_fn cb);
static void create_acquired(struct sandbox_ref *ref, const struct core_error *err, void *arg);
static void create_inserted(enum pg_error err, PGresult *res, const char *message, void *arg);
static void got_rows(enum pg_error err, PGresult *res, const char *message, void *arg);
static void cancel_fire(evutil_socket_t fd, short what, void *arg);
static void git_done(const struct core_error *fail, const struct command_result *res, void *arg);
static void watch_poll(evutil_socket_t fd, short what, void *arg);
static void watch_rows(enum pg_error err, PGresult *res, const char *message, void *arg);
static void watch_attach(struct task_op *op, struct task *t);
static void watch_detach(struct task_op *op);
static bool caught_up(const struct task_op *op, const struct task *t);
static void watch_replay(evutil_socket_t fd, short what, void *arg);
static void watch_end(struct task_op *op, const struct core_error *fail);
static bool watchers_deliver_one(struct task_op *op, const struct task_event *e);

/* The row as the API shows it (task_info_from_row reads these in order);
 * busy: a task of the same sandbox runs. */
const char task_columns[] =
	"t.id, t.sandbox_id, t.agent, t.state, t.prompt, t.model, t.reason, t.result::text, t.before_commit, "
	"t.after_commit, (extract(epoch FROM t.created_at) * 1000000)::bigint, "
	"coalesce((extract(epoch FROM t.ended_at) * 1000000)::bigint, 0), t.timeout_ms, t.last_seq, t.cwd, "
	"EXISTS (SELECT 1 FROM tasks r WHERE r.sandbox_id = t.sandbox_id "
	"  AND r.state IN ('preparing', 'running', 'checkpointing'))";

static const char *opt(PGresult *res, int i, int col)
{
	return PQgetisnull(res, i, col) ? NULL : PQgetvalue(res, i, col);
}

void task_info_from_row(struct task_info *info, PGresult *res, int i)
{
	memset(info, 0, sizeof(*info));
	snprintf(info->id, sizeof(info->id), "%s", PQgetvalue(res, i, 0));
	snprintf(info->sandbox_id, sizeof(info->sandbox_id), "%s", PQgetvalue(res, i, 1));
	if (task_agent_parse(PQgetvalue(res, i, 2), &info->agent) != 0)
		info->agent = TASK_AGENT_CUSTOM;
	if (task_state_parse(PQgetvalue(res, i, 3), &info->state) != 0)
		info->state = TASK_FAILED;
	info->prompt = PQgetvalue(res, i, 4);
	info->model = opt(res, i, 5);
	info->reason = opt(res, i, 6);
	info->result = opt(res, i, 7);
	info->before_commit = opt(res, i, 8);
	info->after_commit = opt(res, i, 9);
	info->created_at_us = strtoll(PQgetvalue(res, i, 10), NULL, 10);
	info->ended_at_us = strtoll(PQgetvalue(res, i, 11), NULL, 10);
	info->timeout_ms = strtoll(PQgetvalue(res, i, 12), NULL, 10);
	info->last_seq = strtoll(PQgetvalue(res, i, 13), NULL, 10);
}

void task_event_free(struct task_event *e)
{
	free(e->type);
	free(e->data);
}

/* ---- ops ---- */

static struct task_op *op_new(struct tasks *ts, enum op_kind kind, const char *sandbox_id,
			      const char *task_id, void *arg)
{
	struct task_op *op = calloc(1, sizeof(*op));
	CHECK(op != NULL);
	op->ts = ts;
	op->kind = kind;
	op->arg = arg;
	snprintf(op->sandbox_id, sizeof(op->sandbox_id), "%s", sandbox_id ? sandbox_id : "");
	snprintf(op->task_id, sizeof(op->task_id), "%s", task_id ? task_id : "");
	op->next = ts->ops;
	if (ts->ops)
		ts->ops->prev = op;
	ts->ops = op;
	return op;
}

static void op_free(struct task_op *op)
{
	if (op->prev)
		op->prev->next = op->next;
	else
		op->ts->ops = op->next;
	if (op->next)
		op->next->prev = op->prev;
	watch_detach(op);
	registry_wait_cancel(op->rw);
	sandbox_ref_put(op->ref);
	if (op->q)
		pg_query_cancel(op->q);
	if (op->cop)
		commands_collect_cancel(op->cop);
	if (op->later)
		event_free(op->later);
	free(op->prompt);
	free(op->model);
	free(op->cwd);
	free(op->command_json);
	strv_free(op->env);
	strv_free(op->command);
	free(op);
}

void task_op_cancel(struct task_op *op)
{
	if (!op)
		return;
	if (op->kind == OPK_CREATE && op->q) {
		/* the row is on its way: the task starts all the same, unanswered
		 * (else it would sit in preparing with nothing to run it) */
		op->info_cb = NULL;
		return;
	}
	op_free(op);
}

void ops_free_all(struct tasks *ts)
{
	while (ts->ops)
		op_free(ts->ops);
}

static void op_later(struct task_op *op, event_callback_fn fn, int64_t ms)
{
	if (op->later)
		event_free(op->later);
	op->later = evtimer_new(op->ts->base, fn, op);
	CHECK(op->later != NULL);
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(op->later, &tv);
}

/* op->fail to the caller, then op goes. */
static void op_fail_now(struct task_op *op)
{
	switch (op->kind) {
	case OPK_LIST:
		op->list_cb(&op->fail, NULL, 0, op->arg);
		break;
	case OPK_DIFF:
	case OPK_REVERT:
		op->text_cb(&op->fail, NULL, 0, op->arg);
		break;
	case OPK_WATCH:
		op->wops->end(op->arg, &op->fail);
		break;
	default:
		if (op->info_cb)
			op->info_cb(&op->fail, NULL, op->arg);
		break;
	}
	op_free(op);
}

static void op_fail_later(struct task_op *op, enum core_err kind, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	core_error_vset(&op->fail, kind, code, fmt, ap);
	va_end(ap);
	op_later(op, fail_fire, 0);
}

static void fail_fire(evutil_socket_t fd, short what, void *arg)
{
	op_fail_now(arg);
}

static void op_fail_pg(struct task_op *op, enum pg_error err, const char *message)
{
	pg_core_error(&op->fail, err, message);
	op_fail_now(op);
}

/* A query's answer: true when it succeeded, else op failed and went. */
static bool op_answered(struct task_op *op, enum pg_error err, const char *message)
{
	op->q = NULL;
	if (err == PG_OK)
		return true;
	op_fail_pg(op, err, message);
	return false;
}

static bool uuid_ok(const char *s)
{
	uuid_t u;
	return s && strlen(s) == 36 && uuid_parse(s, u) == 0;
}

/* Ids that are no UUIDs: no such sandbox or task (a read never finds them). */
static bool ids_ok(struct task_op *op)
{
	if (!uuid_ok(op->sandbox_id)) {
		op_fail_later(op, CORE_NOT_FOUND, "not_found", "no sandbox '%s'", op->sandbox_id);
		return false;
	}
	if (op->kind != OPK_LIST && op->kind != OPK_CREATE && !uuid_ok(op->task_id)) {
		op_fail_later(op, CORE_NOT_FOUND, "task_not_found", "no task '%s' in this sandbox",
			      op->task_id);
		return false;
	}
	return true;
}

static void row_query(struct task_op *op, pg_result_fn cb)
{
	char sql[1024];
	snprintf(sql, sizeof(sql), "SELECT %s FROM tasks t WHERE t.id = $1 AND t.sandbox_id = $2",
		 task_columns);
	const char *params[] = { op->task_id, op->sandbox_id };
	op->q = pg_query_send(op->ts->pg, sql, 2, params, cb, op);
}

static void info_from_task(struct task_info *info, const struct task *t)
{
	memset(info, 0, sizeof(*info));
	snprintf(info->id, sizeof(info->id), "%s", t->id);
	snprintf(info->sandbox_id, sizeof(info->sandbox_id), "%s", t->sandbox_id);
	info->agent = t->agent;
	info->state = t->state;
	info->prompt = t->prompt ? t->prompt : "";
	info->model = t->model;
	info->reason = t->reason;
	info->before_commit = t->before[0] ? t->before : NULL;
	info->after_commit = t->after[0] ? t->after : NULL;
	info->created_at_us = t->created_ms * 1000;
	info->ended_at_us = t->ended_ms * 1000;
	if (task_state_final(t->state) && t->nev > 0 && strcmp(t->evs[t->nev - 1].type, "done") == 0)
		info->result = t->evs[t->nev - 1].data;
	info->timeout_ms = t->timeout_ms;
	info->last_seq = t->seq;
}

/* ---- create ---- */

struct task_op *tasks_create(struct tasks *ts, const char *sandbox_id, const struct task_spec *spec,
			     task_info_fn cb, void *arg)
{
	struct task_op *op = op_new(ts, OPK_CREATE, sandbox_id, NULL, arg);
	op->info_cb = cb;
	op->agent = spec->agent;
	op->prompt = strdup(spec->prompt);
	op->model = spec->model ? strdup(spec->model) : NULL;
	op->cwd = spec->cwd ? strdup(spec->cwd) : NULL;
	op->command_json = spec->command_json ? strdup(spec->command_json) : NULL;
	op->env = strv_dup((const char *const *)spec->env);
	op->command = strv_dup((const char *const *)spec->command);
	op->timeout_ms = spec->timeout_ms > 0 ? spec->timeout_ms : ts->cfg.default_timeout_ms;
	CHECK(op->prompt != NULL);
	if (!ids_ok(op))
		return op;
	/* a task counts as activity, and wakes a stopped sandbox that may be woken */
	op->rw = registry_acquire(ts->reg, sandbox_id, REGISTRY_RUNNING | REGISTRY_WAKE | REGISTRY_TOUCH,
				  create_acquired, op);
	return op;
}

static void create_acquired(struct sandbox_ref *ref, const struct core_error *err, void *arg)
{
	struct task_op *op = arg;
	op->rw = NULL;
	if (err) {
		op->fail = *err;
		op_fail_now(op);
		return;
	}
	op->ref = ref;
	uuid_t u;
	uuid_generate_random(u);
	uuid_unparse_lower(u, op->task_id);
	char timeout[24];
	snprintf(timeout, sizeof(timeout), "%lld", (long long)op->timeout_ms);
	const char *params[] = { op->task_id,	   op->sandbox_id, task_agent_name(op->agent),
				 op->prompt,	   op->model,	   op->cwd,
				 op->command_json, timeout,	   op->ts->instance };
	op->q = pg_query_send(
		op->ts->pg,
		"WITH ins AS (INSERT INTO tasks (id, sandbox_id, agent, prompt, model, cwd, command, "
		"  timeout_ms, state, owner_instance) "
		"  VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, 'preparing', $9) "
		"  ON CONFLICT DO NOTHING RETURNING id) "
		"SELECT (SELECT id FROM ins), (SELECT id FROM tasks WHERE sandbox_id = $2 "
		"  AND state IN ('preparing', 'running', 'checkpointing') LIMIT 1)",
		9, params, create_inserted, op);
}

static void create_inserted(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct task_op *op = arg;
	if (!op_answered(op, err, message))
		return;
	if (PQgetisnull(res, 0, 0)) {
		struct task_info running = { 0 };
		snprintf(running.id, sizeof(running.id), "%s", PQgetvalue(res, 0, 1));
		snprintf(running.sandbox_id, sizeof(running.sandbox_id), "%s", op->sandbox_id);
		running.state = TASK_RUNNING;
		core_error_set(&op->fail, CORE_CONFLICT, "task_running",
			       "task %s runs in this sandbox: one task at a time (cancel it or wait)",
			       running.id);
		op->info_cb(&op->fail, &running, op->arg);
		op_free(op);
		return;
	}
	struct task *t = task_new(op->ts, op->task_id, op->sandbox_id);
	t->agent = op->agent;
	t->prompt = op->prompt;
	t->model = op->model;
	t->cwd = op->cwd;
	t->command_json = op->command_json;
	t->env = op->env;
	t->command = op->command;
	t->timeout_ms = op->timeout_ms;
	op->prompt = op->model = op->cwd = op->command_json = NULL;
	op->env = op->command = NULL;
	task_translator_init(&t->tr, t->agent);
	runner_prepare(t, sandbox_ref_get(op->ref));
	struct task_info info;
	info_from_task(&info, t);
	info.state = TASK_RUNNING; /* the API's word for all three phases */
	if (op->info_cb)
		op->info_cb(NULL, &info, op->arg);
	op_free(op);
}

/* ---- reads ---- */

struct task_op *tasks_get(struct tasks *ts, const char *sandbox_id, const char *task_id, task_info_fn cb,
			  void *arg)
{
	struct task_op *op = op_new(ts, OPK_GET, sandbox_id, task_id, arg);
	op->info_cb = cb;
	if (ids_ok(op))
		row_query(op, got_rows);
	return op;
}

struct task_op *tasks_list(struct tasks *ts, const char *sandbox_id, task_list_fn cb, void *arg)
{
	struct task_op *op = op_new(ts, OPK_LIST, sandbox_id, NULL, arg);
	op->list_cb = cb;
	if (!ids_ok(op))
		return op;
	char sql[1024];
	snprintf(sql, sizeof(sql),
		 "SELECT %s FROM tasks t WHERE t.sandbox_id = $1 ORDER BY t.created_at DESC "
		 "LIMIT 200",
		 task_columns);
	const char *params[] = { op->sandbox_id };
	op->q = pg_query_send(ts->pg, sql, 1, params, got_rows, op);
	return op;
}

struct task_op *tasks_cancel(struct tasks *ts, const char *sandbox_id, const char *task_id, task_info_fn cb,
			     void *arg)
{
	struct task_op *op = op_new(ts, OPK_CANCEL, sandbox_id, task_id, arg);
	op->info_cb = cb;
	if (!ids_ok(op))
		return op;
	struct task *t = task_find(ts, task_id);
	if (t && strcmp(t->sandbox_id, sandbox_id) == 0 && !task_state_final(t->state)) {
		runner_cancel(t);
		op_later(op, cancel_fire, 0);
		return op;
	}
	row_query(op, got_rows);
	return op;
}

static void cancel_fire(evutil_socket_t fd, short what, void *arg)
{
	struct task_op *op = arg;
	struct task *t = task_find(op->ts, op->task_id);
	if (!t) { /* ended and written meanwhile: the row says how */
		row_query(op, got_rows);
		return;
	}
	struct task_info info;
	info_from_task(&info, t);
	op->info_cb(NULL, &info, op->arg);
	op_free(op);
}

static struct task_op *git_op(struct tasks *ts, enum op_kind kind, const char *sandbox_id,
			      const char *task_id, task_text_fn cb, void *arg)
{
	struct task_op *op = op_new(ts, kind, sandbox_id, task_id, arg);
	op->text_cb = cb;
	if (ids_ok(op))
		row_query(op, got_rows);
	return op;
}

struct task_op *tasks_diff(struct tasks *ts, const char *sandbox_id, const char *task_id, task_text_fn cb,
			   void *arg)
{
	return git_op(ts, OPK_DIFF, sandbox_id, task_id, cb, arg);
}

struct task_op *tasks_revert(struct tasks *ts, const char *sandbox_id, const char *task_id, task_text_fn cb,
			     void *arg)
{
	return git_op(ts, OPK_REVERT, sandbox_id, task_id, cb, arg);
}

/* A diff or a revert of a task that ended with both checkpoints: git in the sandbox. */
static void git_start(struct task_op *op, const struct task_info *info, const char *cwd, bool busy)
{
	if (!task_state_final(info->state)) {
		op_fail_later(op, CORE_CONFLICT, "task_running", "task %s still runs", op->task_id);
		return;
	}
	if (!info->before_commit || !info->after_commit) {
		op_fail_later(op, CORE_CONFLICT, "no_checkpoint", "task %s has no checkpoint to compare (%s)",
			      op->task_id, info->reason ? info->reason : "it ended before its checkpoints");
		return;
	}
	if (op->kind == OPK_REVERT && busy) {
		op_fail_later(op, CORE_CONFLICT, "task_running",
			      "a task runs in this sandbox: cancel it or wait before a revert");
		return;
	}
	snprintf(op->before, sizeof(op->before), "%s", info->before_commit);
	snprintf(op->after, sizeof(op->after), "%s", info->after_commit);
	char *diff_argv[] = { "git",	       "-c",	   "safe.directory=*", "diff", "--no-color",
			      "--no-ext-diff", op->before, op->after,	       NULL };
	static char script[] =
		"set -e; " TASK_GIT " read-tree -u --reset \"$1\"; " TASK_GIT
		" commit -q --allow-empty --no-verify -m \"sandbar: revert task $2\"; " TASK_GIT
		" rev-parse HEAD";
	char *revert_argv[] = { "/bin/sh", "-c", script, "sh", op->before, op->task_id, NULL };
	struct env_list env = { 0 };
	task_git_env(&env, op->sandbox_id);
	struct command_spec spec = {
		.argv = op->kind == OPK_DIFF ? diff_argv : revert_argv,
		.command_json = "null",
		.env = env.v,
		.cwd = (char *)cwd,
		.timeout_ms = GIT_TIMEOUT_MS,
		.max_output_bytes = op->ts->cfg.max_output,
	};
	op->cop = commands_execute(op->ts->cmds, op->sandbox_id, &spec, git_done, op);
	strv_free(env.v);
}

static void git_done(const struct core_error *fail, const struct command_result *res, void *arg)
{
	struct task_op *op = arg;
	op->cop = NULL;
	if (fail) {
		op->fail = *fail;
		op_fail_now(op);
		return;
	}
	if (res->info->exit_code != 0) {
		core_error_set(&op->fail, CORE_CONFLICT, "git_failed",
			       "git in the sandbox failed (exit %d): %.*s", res->info->exit_code,
			       (int)(res->err_len > 200 ? 200 : res->err_len), (const char *)res->err);
		op_fail_now(op);
		return;
	}
	if (res->truncated) {
		core_error_set(&op->fail, CORE_LIMIT, "too_large", "the diff is over %llu bytes",
			       (unsigned long long)op->ts->cfg.max_output);
		op_fail_now(op);
		return;
	}
	size_t n = res->out_len;
	if (op->kind == OPK_REVERT)
		while (n > 0 && (res->out[n - 1] == '\n' || res->out[n - 1] == '\r'))
			n--;
	op->text_cb(NULL, (const char *)res->out, n, op->arg);
	op_free(op);
}

static void got_rows(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct task_op *op = arg;
	if (!op_answered(op, err, message))
		return;
	int n = PQntuples(res);
	if (op->kind == OPK_LIST) {
		struct task_info *list = calloc((size_t)n + 1, sizeof(*list));
		CHECK(list != NULL);
		for (int i = 0; i < n; i++) {
			task_info_from_row(&list[i], res, i);
			struct task *t = task_find(op->ts, list[i].id);
			if (t) /* run here: memory is ahead of its row */
				info_from_task(&list[i], t);
		}
		op->list_cb(NULL, list, (size_t)n, op->arg);
		free(list);
		op_free(op);
		return;
	}
	if (n == 0) {
		core_error_set(&op->fail, CORE_NOT_FOUND, "task_not_found", "no task '%s' in this sandbox",
			       op->task_id);
		op_fail_now(op);
		return;
	}
	struct task_info info;
	task_info_from_row(&info, res, 0);
	const char *cwd = opt(res, 0, 14);
	bool busy = strcmp(PQgetvalue(res, 0, 15), "t") == 0;
	struct task *t = task_find(op->ts, info.id);
	if (t) { /* run here: memory is ahead of its row */
		info_from_task(&info, t);
		cwd = t->cwd;
	}
	if (t) { /* the sandbox's tasks run here: memory says whether one still runs */
		busy = false;
		for (struct task *o = op->ts->live; o; o = o->next)
			busy = busy ||
			       (strcmp(o->sandbox_id, info.sandbox_id) == 0 && !task_state_final(o->state));
	}
	switch (op->kind) {
	case OPK_CANCEL:
		if (task_state_final(info.state))
			core_error_set(&op->fail, CORE_CONFLICT, "task_not_running",
				       "task %s already ended: %s", op->task_id, task_state_name(info.state));
		else
			core_error_set(&op->fail, CORE_UNAVAILABLE, "task_elsewhere",
				       "task %s is run by another instance", op->task_id);
		op_fail_now(op);
		return;
	case OPK_DIFF:
	case OPK_REVERT:
		git_start(op, &info, cwd, busy);
		return;
	default:
		op->info_cb(NULL, &info, op->arg);
		op_free(op);
		return;
	}
}

/* ---- watches ---- */

struct task_op *tasks_watch(struct tasks *ts, const char *sandbox_id, const char *task_id, int64_t since,
			    const struct task_watch_ops *ops, void *arg)
{
	struct task_op *op = op_new(ts, OPK_WATCH, sandbox_id, task_id, arg);
	op->wops = ops;
	op->since = since;
	if (!ids_ok(op))
		return op;
	struct task *t = task_find(ts, task_id);
	if (t && strcmp(t->sandbox_id, sandbox_id) == 0 && caught_up(op, t))
		watch_attach(op, t);
	else
		op_later(op, watch_poll, 0);
	return op;
}

/* The events after op->since are all in t's memory (the older ones it
 * dropped are read from PostgreSQL first). */
static bool caught_up(const struct task_op *op, const struct task *t)
{
	return op->since >= t->seq - (int64_t)t->nev;
}

static void watch_attach(struct task_op *op, struct task *t)
{
	op->live = t;
	op->replayed = false;
	op->wnext = t->watchers;
	t->watchers = op;
	op_later(op, watch_replay, 0);
}

static void watch_detach(struct task_op *op)
{
	if (!op->live)
		return;
	for (struct task_op **pp = &op->live->watchers; *pp; pp = &(*pp)->wnext) {
		if (*pp == op) {
			*pp = op->wnext;
			break;
		}
	}
	op->live = NULL;
	op->replayed = false;
}

/* What happened before: from memory, then live. */
static void watch_replay(evutil_socket_t fd, short what, void *arg)
{
	struct task_op *op = arg;
	struct task *t = op->live;
	if (!t || !caught_up(op, t)) { /* PostgreSQL has what memory no longer does */
		watch_detach(op);
		op_later(op, watch_poll, 0);
		return;
	}
	op->replayed = true;
	if (!op->opened) {
		op->opened = true;
		op->wops->opened(op->arg);
	}
	for (const struct task_event *e; (e = task_event_at(t, op->since + 1)) != NULL;)
		if (!watchers_deliver_one(op, e))
			return; /* ended (freed): nothing more */
}

void watchers_deliver(struct task *t, const struct task_event *e)
{
	for (struct task_op *op = t->watchers, *next; op; op = next) {
		next = op->wnext;
		if (op->replayed)
			watchers_deliver_one(op, e);
	}
}

/* One event to one watcher; after done the watch ends (op freed): false. */
static bool watchers_deliver_one(struct task_op *op, const struct task_event *e)
{
	if (e->seq <= op->since)
		return true;
	op->since = e->seq;
	op->wops->event(op->arg, e->seq, e->type, e->data);
	if (strcmp(e->type, "done") != 0)
		return true;
	watch_end(op, NULL);
	return false;
}

static void watch_end(struct task_op *op, const struct core_error *fail)
{
	op->wops->end(op->arg, fail);
	op_free(op);
}

void watchers_detach(struct task *t)
{
	for (struct task_op *op = t->watchers; op; op = op->wnext) {
		op->live = NULL;
		op_later(op, watch_poll, 0);
	}
	t->watchers = NULL;
}

/* Not run here: PostgreSQL has what its runner stored, polled until done. */
static void watch_poll(evutil_socket_t fd, short what, void *arg)
{
	struct task_op *op = arg;
	struct task *t = task_find(op->ts, op->task_id);
	if (t && strcmp(t->sandbox_id, op->sandbox_id) == 0 && caught_up(op, t)) { /* run here */
		watch_attach(op, t);
		return;
	}
	char since[24], limit[24];
	snprintf(since, sizeof(since), "%lld", (long long)op->since);
	snprintf(limit, sizeof(limit), "%d", WATCH_BATCH);
	const char *params[] = { op->task_id, op->sandbox_id, since, limit };
	op->q = pg_query_send(
		op->ts->pg,
		"SELECT t.state, e.seq, e.type, e.data::text FROM tasks t LEFT JOIN LATERAL "
		"  (SELECT seq, type, data FROM task_events WHERE task_id = t.id AND seq > $3::integer "
		"   ORDER BY seq LIMIT $4::integer) e ON true "
		"WHERE t.id = $1 AND t.sandbox_id = $2 ORDER BY e.seq",
		4, params, watch_rows, op);
}

static void watch_rows(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct task_op *op = arg;
	if (!op_answered(op, err, message))
		return;
	int n = PQntuples(res);
	if (n == 0) {
		core_error_set(&op->fail, CORE_NOT_FOUND, "task_not_found", "no task '%s' in this sandbox",
			       op->task_id);
		op_fail_now(op);
		return;
	}
	if (!op->opened) {
		op->opened = true;
		op->wops->opened(op->arg);
	}
	int got = 0;
	for (int i = 0; i < n; i++) {
		if (PQgetisnull(res, i, 1))
			continue;
		struct task_event e = { .seq = strtoll(PQgetvalue(res, i, 1), NULL, 10),
					.type = PQgetvalue(res, i, 2),
					.data = PQgetvalue(res, i, 3) };
		got++;
		if (!watchers_deliver_one(op, &e))
			return; /* op ended */
	}
	enum task_state st;
	if (got < WATCH_BATCH && task_state_parse(PQgetvalue(res, 0, 0), &st) == 0 && task_state_final(st)) {
		watch_end(op, NULL); /* ended without a done event stored: nothing more will come */
		return;
	}
	/* run here: memory has the rest once PostgreSQL's are read */
	bool here = got > 0 && task_find(op->ts, op->task_id);
	op_later(op, watch_poll, got == WATCH_BATCH || here ? 0 : WATCH_POLL_MS);
}
