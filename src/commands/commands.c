/* The command service: runs commands through a sandbox's agent, watches each
 * one until it exits (so its record and the per-sandbox count stay right
 * whoever listens), and throttles sandbox activity writes. */
#include "core/clock.h"
#include "commands/commands.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <uuid/uuid.h>

#include "commands_internal.h"
#include "core/env.h"
#include "core/log.h"
#include "core/strv.h"

static void op_later_fire(evutil_socket_t fd, short what, void *arg);
static void run_acquired(struct sandbox_ref *ref, const struct core_error *err, void *arg);
static void run_spawn(struct command_op *op);
static char **command_env_overlay(char *const *base, char *const *overlay);
static void cmd_started(void *arg, uint32_t cmd_id, int pid, int64_t started_at);
static void cmd_output(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data, size_t len,
		       bool gap);
static void cmd_exited(void *arg, const struct agent_exit *exit);
static void cmd_error(void *arg, int code, const char *message);
static void cmd_free(struct command *cmd);
static void spawn_failed(struct command_op *op, int code, const char *message);
static void detached_recorded(enum pg_error err, PGresult *res, const char *message, void *arg);
static void record_logged(enum pg_error err, PGresult *res, const char *message, void *arg);
static void sandbox_reset(const char *sandbox_id, void *arg);
static void service_unrecorded(const struct record_ticket *t);

static const struct agent_sub_ops cmd_sub_ops = {
	.started = cmd_started,
	.output = cmd_output,
	.exited = cmd_exited,
	.error = cmd_error,
};

struct commands *commands_new(struct event_base *base, const struct commands_config *cfg,
			      struct registry *reg)
{
	struct commands *c = calloc(1, sizeof(*c));
	CHECK(c != NULL);
	c->base = base;
	c->cfg = *cfg;
	c->reg = reg;
	c->pg = registry_pg(reg);
	c->chs = registry_channels(reg);
	c->records = records_new(c);
	channels_on_reset(c->chs, sandbox_reset, c);
	return c;
}

/* At shutdown: commands run on in their sandboxes; their records are
 * reconciled at the next start. */
void commands_free(struct commands *c)
{
	if (!c)
		return;
	channels_on_reset(c->chs, NULL, NULL);
	records_free(c->records);
	for (size_t i = 0; i < SBX_BUCKETS; i++) {
		struct sbx *s = c->buckets[i];
		while (s) {
			struct sbx *next = s->next;
			while (s->cmds) {
				struct command *cmd = s->cmds;
				s->cmds = cmd->next;
				if (cmd->sub)
					agent_sub_close(cmd->sub);
				if (cmd->op)
					cmd->op->cmd = NULL;
				free(cmd->stdin_data);
				free(cmd->command_json);
				free(cmd);
			}
			if (s->pass)
				reconcile_free(s->pass);
			free(s);
			s = next;
		}
	}
	free(c);
}

uint64_t commands_max_output_cap(const struct commands *c)
{
	return c->cfg.max_output_cap;
}

bool commands_uuid_valid(const char *id)
{
	uuid_t u;
	return id && strlen(id) == 36 && uuid_parse(id, u) == 0;
}

/* ---- sandboxes ---- */

static unsigned sbx_hash(const char *id)
{
	unsigned h = 2166136261u;
	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 16777619u;
	return h % SBX_BUCKETS;
}

struct sbx *sbx_find(struct commands *c, const char *id)
{
	for (struct sbx *s = c->buckets[sbx_hash(id)]; s; s = s->next)
		if (strcmp(s->id, id) == 0)
			return s;
	return NULL;
}

void sbx_stale(struct sbx *s)
{
	if (s->reconcile == SBX_RECONCILING)
		s->again = true;
	else
		s->reconcile = SBX_UNRECONCILED;
}

/* A stop (its channel dropped), a delete, or an agent that started again:
 * what runs in the sandbox is no longer what was reconciled. */
static void sandbox_reset(const char *sandbox_id, void *arg)
{
	struct sbx *s = sbx_find(arg, sandbox_id);
	if (s) {
		sbx_stale(s);
		sbx_release(s);
	}
}

void sbx_release(struct sbx *s)
{
	if (s->cmds || s->waiters || s->pass || s->reconcile != SBX_UNRECONCILED)
		return;
	CHECK(s->running == 0);
	for (struct sbx **pp = &s->c->buckets[sbx_hash(s->id)]; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	free(s);
}

struct sbx *sbx_get(struct commands *c, const char *id)
{
	struct sbx *found = sbx_find(c, id);
	if (found)
		return found;
	unsigned h = sbx_hash(id);
	struct sbx *s = calloc(1, sizeof(*s));
	CHECK(s != NULL);
	snprintf(s->id, sizeof(s->id), "%s", id);
	s->c = c;
	s->next = c->buckets[h];
	c->buckets[h] = s;
	return s;
}

/* ---- ops ---- */

void op_set_state(struct command_op *op, enum op_state next)
{
	CHECK(next < OP_STATE_MAX);
	CHECK(op->state != OP_DONE);
	log_debug("command op %p (%d): state %d -> %d", (void *)op, (int)op->kind, (int)op->state, (int)next);
	op->state = next;
}

struct command_op *op_new(struct commands *c, enum op_kind kind, const char *sandbox_id, void *arg)
{
	struct command_op *op = calloc(1, sizeof(*op));
	CHECK(op != NULL);
	op->c = c;
	op->kind = kind;
	op->arg = arg;
	snprintf(op->sandbox_id, sizeof(op->sandbox_id), "%s", sandbox_id ? sandbox_id : "");
	return op;
}

static void op_free(struct command_op *op)
{
	registry_wait_cancel(op->rwait);
	sandbox_ref_put(op->ref);
	if (op->ticket)
		op->ticket->op = NULL;
	if (op->query)
		pg_query_cancel(op->query);
	if (op->sub)
		agent_sub_close(op->sub);
	if (op->later)
		event_free(op->later);
	command_spec_free(&op->spec);
	for (size_t i = 0; i < op->nrecs; i++)
		free((char *)op->recs[i].command);
	free(op->recs);
	free(op);
}

void op_finish(struct command_op *op)
{
	if (op->state != OP_DONE)
		op_set_state(op, OP_DONE);
	if (op->in_cb == 0)
		op_free(op);
}

static void op_deliver_failure(struct command_op *op)
{
	if (op->closed) {
		op_finish(op);
		return;
	}
	op->in_cb++;
	if (op->records_cb)
		op->records_cb(&op->fail, NULL, 0, op->arg);
	else if (op->ready_cb)
		op->ready_cb(&op->fail, op->arg);
	else if (op->ev && op->ev->failed)
		op->ev->failed(op->arg, &op->fail);
	op->in_cb--;
	op_finish(op);
}

void op_fail(struct command_op *op, bool now, enum core_err err, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	core_error_vset(&op->fail, err, code, fmt, ap);
	va_end(ap);
	if (op->cmd && op->cmd->op == op)
		op->cmd->op = NULL;
	op->cmd = NULL;
	if (now) {
		op_deliver_failure(op);
		return;
	}
	if (!op->later)
		op->later = evtimer_new(op->c->base, op_later_fire, op);
	CHECK(op->later != NULL);
	event_active(op->later, EV_TIMEOUT, 0);
}

/* Fails op now (from a callback) with err as it is (its status included). */
void op_fail_with(struct command_op *op, const struct core_error *err)
{
	op->fail = *err;
	if (op->cmd && op->cmd->op == op)
		op->cmd->op = NULL;
	op->cmd = NULL;
	op_deliver_failure(op);
}

static void op_later_fire(evutil_socket_t fd, short what, void *arg)
{
	struct command_op *op = arg;
	if (op->fail.kind != CORE_OK) {
		op_deliver_failure(op);
		return;
	}
	/* stdin: the channel drained */
	if (op->ready_cb && !op->closed) {
		op->in_cb++;
		op->ready_cb(NULL, op->arg);
		op->in_cb--;
		if (op->state == OP_DONE && op->in_cb == 0)
			op_free(op);
	}
}

void op_fail_pg(struct command_op *op, enum pg_error err, const char *message)
{
	struct core_error e;
	pg_core_error(&e, err, message);
	op_fail(op, true, e.kind, e.code, "%s", e.message);
}

bool op_emit_output(struct command_op *op, enum agent_stream stream, uint64_t offset, const uint8_t *data,
		    size_t len, bool gap)
{
	if (op->closed || !op->ev->output)
		return !op->closed;
	op->in_cb++;
	op->ev->output(op->arg, stream, offset, data, len, gap);
	op->in_cb--;
	if (op->state == OP_DONE && op->in_cb == 0) {
		op_free(op);
		return false;
	}
	return !op->closed;
}

void op_emit_exited(struct command_op *op, const struct command_info *info)
{
	if (op->cmd && op->cmd->op == op)
		op->cmd->op = NULL;
	op->cmd = NULL;
	if (!op->closed && op->ev->exited) {
		op->in_cb++;
		op->ev->exited(op->arg, info);
		op->in_cb--;
	}
	op_finish(op);
}

void command_op_ack(struct command_op *op, uint64_t offset)
{
	if (op->state == OP_DONE)
		return;
	/* an ACK is a frame through dockerd to the agent: send one per quarter
	 * of what the agent may send unacknowledged, not one per output frame.
	 * That is the window, or the command's ring when smaller: a lossless
	 * sub holds the command once the ring is full of unacknowledged bytes,
	 * so waiting for a quarter of a larger window would never come. */
	uint64_t span = op->c->cfg.window;
	if (op->c->cfg.ring_bytes < span)
		span = op->c->cfg.ring_bytes;
	if (offset < op->acked + span / 4)
		return;
	op->acked = offset;
	if (op->cmd && op->cmd->sub)
		agent_sub_ack(op->cmd->sub, offset);
	else if (op->sub)
		agent_sub_ack(op->sub, offset);
}

void command_op_cancel(struct command_op *op)
{
	if (!op)
		return;
	op->closed = true;
	if (op->cmd) {
		/* the command runs on, watched by the service */
		struct command *cmd = op->cmd;
		cmd->op = NULL;
		op->cmd = NULL;
		if (!cmd->recorded && cmd->info.pid > 0) {
			cmd->recorded = true;
			command_record_write(op->c, &cmd->info, cmd->command_json, cmd->detached,
					     record_logged, NULL);
		}
		if (cmd->sub) /* nobody reads its output now: only its exit comes */
			agent_sub_quiet(cmd->sub);
	}
	if (op->state == OP_RECONCILE || op->state == OP_FLUSH || op->agent_holds ||
	    (op->kind == OP_LOGS && op->state == OP_AGENT && !op->sub)) {
		/* a reconcile pass, the record writer or an agent request still
		 * holds op: it finishes it */
		return;
	}
	if (op->state != OP_DONE)
		op_set_state(op, OP_DONE);
	if (op->in_cb == 0)
		op_free(op);
}

/* ---- run ---- */

/* The sandbox's env overlaid by the command's own; NULL when there is no
 * overlay (use base as it is). Free with env_list_free. */
static char **command_env_overlay(char *const *base, char *const *overlay)
{
	if (!overlay || !overlay[0])
		return NULL;
	struct env_list env = { 0 };
	for (size_t i = 0; base && base[i]; i++)
		env_list_set_kv(&env, base[i]);
	for (size_t i = 0; overlay[i]; i++)
		env_list_set_kv(&env, overlay[i]);
	return env.v;
}

static void spec_copy(struct command_spec *dst, const struct command_spec *src)
{
	memset(dst, 0, sizeof(*dst));
	if (src->shell) {
		/* what an agent that predates SHELL runs instead */
		const char *fallback[] = { "/bin/sh", src->login ? "-lc" : "-c", src->shell, NULL };
		dst->argv = strv_dup(fallback);
		dst->shell = strdup(src->shell);
		dst->login = src->login;
	} else {
		dst->argv = strv_dup((const char *const *)src->argv);
	}
	if (src->env)
		dst->env = strv_dup((const char *const *)src->env);
	dst->command_json = strdup(src->command_json ? src->command_json : "null");
	dst->cwd = src->cwd ? strdup(src->cwd) : NULL;
	dst->user = src->user ? strdup(src->user) : NULL;
	dst->timeout_ms = src->timeout_ms;
	if (src->stdin_data) {
		dst->stdin_data = malloc(src->stdin_len + 1);
		CHECK(dst->stdin_data != NULL);
		memcpy(dst->stdin_data, src->stdin_data, src->stdin_len);
		dst->stdin_len = src->stdin_len;
	}
	dst->stdin_open = src->stdin_open;
	dst->max_output_bytes = src->max_output_bytes;
	dst->pty_rows = src->pty_rows;
	dst->pty_cols = src->pty_cols;
	dst->service = src->service;
	dst->port = src->port;
}

struct command_op *commands_run(struct commands *c, const char *sandbox_id, const struct command_spec *spec,
				bool detached, const struct command_events *ev, void *arg)
{
	struct command_op *op = op_new(c, OP_RUN, sandbox_id, arg);
	op->ev = ev;
	op->detached = detached;
	CHECK((spec->argv && spec->argv[0]) || spec->shell);
	spec_copy(&op->spec, spec);
	/* the registry answers from its cache (or one lookup however many runs
	 * wait), always from the loop: events never come from the caller's stack */
	op->rwait = registry_acquire(c->reg, sandbox_id, REGISTRY_RUNNING | REGISTRY_WAKE | REGISTRY_TOUCH,
				     run_acquired, op);
	return op;
}

static void run_acquired(struct sandbox_ref *ref, const struct core_error *err, void *arg)
{
	struct command_op *op = arg;
	op->rwait = NULL;
	if (err) {
		op_fail_with(op, err);
		return;
	}
	op->ref = ref;
	struct sbx *s = sbx_get(op->c, op->sandbox_id);
	if (s->running >= op->c->cfg.max_per_sandbox) {
		op_fail(op, true, CORE_LIMIT, "too_many_commands",
			"this sandbox already runs %d commands (the limit); wait for some to finish",
			s->running);
		return;
	}
	run_spawn(op);
}

/* The per-sandbox cap, checked when the spawn is due, cached facts or not. */
static void run_spawn(struct command_op *op)
{
	struct commands *c = op->c;
	struct command *cmd = calloc(1, sizeof(*cmd));
	CHECK(cmd != NULL);
	cmd->c = c;
	cmd->sbx = sbx_get(c, op->sandbox_id);
	cmd->sbx->running++;
	cmd->next = cmd->sbx->cmds;
	cmd->sbx->cmds = cmd;
	cmd->op = op;
	cmd->detached = op->detached;
	cmd->command_json = strdup(op->spec.command_json);
	/* the record's id, known before the spawn: a service carries it to the
	 * agent, which reports it back after each start of the sandbox */
	uuid_t u;
	uuid_generate_random(u);
	uuid_unparse_lower(u, cmd->info.id);
	snprintf(cmd->info.sandbox_id, sizeof(cmd->info.sandbox_id), "%s", op->sandbox_id);
	cmd->info.status = COMMAND_RUNNING;
	cmd->info.service = op->detached && op->spec.service;
	cmd->info.port = cmd->info.service ? op->spec.port : 0;
	if (op->spec.stdin_data) {
		cmd->stdin_data = op->spec.stdin_data;
		cmd->stdin_len = op->spec.stdin_len;
		op->spec.stdin_data = NULL;
	}
	cmd->stdin_close = !op->spec.stdin_open;
	op->cmd = cmd;

	const struct sandbox *sb = sandbox_ref_get(op->ref);
	char **env = command_env_overlay(sb->run_env, op->spec.env);
	const char *cwd = op->spec.cwd ? op->spec.cwd : sb->run_cwd;
	struct agent_spawn_req req = {
		.argv = (const char *const *)op->spec.argv,
		.shell = op->spec.shell,
		.login = op->spec.login,
		.env = (const char *const *)(env ? env : sb->run_env),
		.cwd = cwd && *cwd ? cwd : NULL,
		.user = op->spec.user ? op->spec.user : sb->run_user,
		.pty_rows = op->spec.pty_rows,
		.pty_cols = op->spec.pty_cols,
		.stdin_open = cmd->stdin_data != NULL || op->spec.stdin_open,
		.timeout_ms = op->spec.timeout_ms,
		.grace_ms = c->cfg.grace_ms,
		.ring_bytes = c->cfg.ring_bytes,
		.window = c->cfg.window,
		.lossless = !op->detached, /* a client attached wants every byte */
		.service = cmd->info.service ? cmd->info.id : NULL,
		.port = cmd->info.port,
	};
	/* nothing to close when stdin was never opened */
	cmd->stdin_close = cmd->stdin_close && req.stdin_open;
	cmd->ch = sandbox_ref_channel(op->ref);
	op_set_state(op, OP_AGENT);
	cmd->sub = agent_spawn(cmd->ch, &req, &cmd_sub_ops, cmd);
	strv_free(env);
}

static void cmd_started(void *arg, uint32_t cmd_id, int pid, int64_t started_at)
{
	struct command *cmd = arg;
	cmd->info.agent_id = cmd_id;
	cmd->info.pid = pid;
	cmd->info.started_at = started_at;
	if (cmd->stdin_data) {
		agent_stdin(cmd->ch, cmd_id, cmd->stdin_data, cmd->stdin_len);
		free(cmd->stdin_data);
		cmd->stdin_data = NULL;
	}
	if (cmd->stdin_close)
		agent_stdin_close(cmd->ch, cmd_id);
	struct command_op *op = cmd->op;
	if (cmd->detached) {
		/* its output stays in the agent's ring (logs read it from there):
		 * none of it crosses the Docker stream for this watch, only the exit */
		if (cmd->sub)
			agent_sub_quiet(cmd->sub);
		cmd->recorded = true;
		/* the write goes on even if the caller leaves: the ticket forgets the op */
		struct record_ticket *t = calloc(1, sizeof(*t));
		CHECK(t != NULL);
		t->op = op;
		t->c = cmd->c;
		snprintf(t->sandbox_id, sizeof(t->sandbox_id), "%s", cmd->info.sandbox_id);
		snprintf(t->id, sizeof(t->id), "%s", cmd->info.id);
		t->service = cmd->info.service;
		if (op) {
			op_set_state(op, OP_RECORD);
			op->ticket = t;
			cmd->op = NULL;
			op->cmd = NULL;
			op->info = cmd->info;
		}
		command_record_write(cmd->c, &cmd->info, cmd->command_json, true, detached_recorded, t);
		return;
	}
	if (!op) {
		cmd->recorded = true;
		command_record_write(cmd->c, &cmd->info, cmd->command_json, false, record_logged, NULL);
		return;
	}
	op_set_state(op, OP_STREAM);
	if (!op->closed && op->ev->started) {
		op->in_cb++;
		op->ev->started(op->arg, &cmd->info);
		op->in_cb--;
		if (op->closed && op->in_cb == 0 && op->state == OP_DONE)
			op_free(op);
	}
}

static void detached_recorded(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct record_ticket *ticket = arg;
	struct command_op *op = ticket->op;
	if (err != PG_OK) {
		log_warn("command record not written: %s", message ? message : "?");
		if (ticket->service)
			service_unrecorded(ticket);
	}
	free(ticket);
	if (!op)
		return;
	op->ticket = NULL;
	if (err != PG_OK && op->info.service) {
		/* no record, no service: the API could never remove it */
		op_fail_pg(op, err, message);
		return;
	}
	if (!op->closed && op->ev->started) {
		op->in_cb++;
		op->ev->started(op->arg, &op->info);
		op->in_cb--;
	}
	op_finish(op);
}

static void cmd_output(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data, size_t len,
		       bool gap)
{
	struct command *cmd = arg;
	if (cmd->op)
		op_emit_output(cmd->op, stream, offset, data, len, gap);
	else
		agent_sub_ack(cmd->sub, offset + len); /* nobody listens (an agent older than QUIET) */
}

void info_from_exit(struct command_info *info, const struct agent_exit *x)
{
	info->signal = x->signal;
	info->exit_code = x->signal > 0 ? 128 + x->signal : x->exit_code;
	info->timed_out = x->timed_out;
	if (x->started_at)
		info->started_at = x->started_at;
	info->ended_at = x->ended_at ? x->ended_at : clock_real_ms();
	info->offset = x->offset;
	info->status = COMMAND_EXITED;
}

static void cmd_exited(void *arg, const struct agent_exit *exit)
{
	struct command *cmd = arg;
	cmd->sub = NULL; /* freed by the channel after we return */
	info_from_exit(&cmd->info, exit);
	command_record_write(cmd->c, &cmd->info, cmd->command_json, cmd->detached, record_logged, NULL);
	struct command_op *op = cmd->op;
	if (op)
		op_emit_exited(op, &cmd->info);
	cmd_free(cmd);
}

static void cmd_error(void *arg, int code, const char *message)
{
	struct command *cmd = arg;
	cmd->sub = NULL;
	struct command_op *op = cmd->op;
	if (cmd->info.pid <= 0 && cmd->info.service && code == EPIPE) {
		/* the SPAWN went out: the agent may keep it, and no record will say so */
		commands_unservice_orphan(cmd->ch, cmd->info.sandbox_id, cmd->info.id,
					  "the channel broke before it started");
	}
	if (cmd->info.pid <= 0) {
		if (op && code == EDQUOT)
			op_fail(op, true, CORE_LIMIT, "too_many_services",
				"this sandbox keeps %d services already (the most); remove one first",
				AGENT_SERVICES_MAX);
		else if (op && code == ENOTSUP)
			op_fail(op, true, CORE_UNSUPPORTED, "agent_outdated", "%s",
				message ? message : "the sandbox's agent predates this");
		else if (op)
			spawn_failed(op, code, message);
	} else {
		/* the channel broke for good: the record stays running and the
		 * next reconcile pass settles it */
		log_warn("command %s: watch lost: %s", cmd->info.id, message ? message : "?");
		if (!cmd->recorded)
			command_record_write(cmd->c, &cmd->info, cmd->command_json, cmd->detached,
					     record_logged, NULL);
		sbx_stale(cmd->sbx);
		if (op && code == AGENT_DOCKER_DOWN)
			op_fail(op, true, CORE_UNAVAILABLE, "docker_unavailable", "%s", message);
		else if (op)
			op_fail(op, true, CORE_UNAVAILABLE, "agent_unavailable", "%s",
				message ? message : "the agent went away");
	}
	cmd_free(cmd);
}

/* Before STARTED: the agent's SPAWN_FAILED (its errno: the request's fault,
 * 400) or the channel's own failure (the sandbox stopped or went, the agent
 * unreachable). */
static void spawn_failed(struct command_op *op, int code, const char *message)
{
	const char *m = message ? message : "spawn failed";
	switch (code) {
	case AGENT_DOCKER_DOWN:
		op_fail(op, true, CORE_UNAVAILABLE, "docker_unavailable", "%s", m);
		return;
	case ESRCH: /* the sandbox's channel was dropped: stopped or deleted */
		op_fail(op, true, CORE_CONFLICT, "sandbox_not_running", "the sandbox is not running");
		return;
	case ECONNREFUSED: /* gave up: the container is gone or stopped, or the agent unreachable */
		if (strstr(m, "container unavailable")) {
			op_fail(op, true, CORE_CONFLICT, "sandbox_not_running", "the sandbox is not running");
			return;
		}
		/* fall through */
	case EPIPE:
	case ENOBUFS:
		op_fail(op, true, CORE_UNAVAILABLE, "agent_unavailable", "the sandbox agent: %s", m);
		return;
	default:
		op_fail(op, true, code > 0 ? CORE_INVALID : CORE_UNAVAILABLE,
			code > 0 ? "spawn_failed" : "agent_unavailable", "%s", m);
		return;
	}
}

static void cmd_free(struct command *cmd)
{
	cmd->sbx->running--;
	for (struct command **pp = &cmd->sbx->cmds; *pp; pp = &(*pp)->next) {
		if (*pp == cmd) {
			*pp = cmd->next;
			break;
		}
	}
	if (cmd->op)
		cmd->op->cmd = NULL;
	struct sbx *s = cmd->sbx;
	free(cmd->stdin_data);
	free(cmd->command_json);
	free(cmd);
	sbx_release(s); /* a watch lost left it unreconciled: nothing to keep */
}

void commands_watch_resume(struct commands *c, struct sbx *s, struct agent_channel *ch,
			   const struct command_info *info, const char *command_json)
{
	struct command *cmd = calloc(1, sizeof(*cmd));
	CHECK(cmd != NULL);
	cmd->c = c;
	cmd->sbx = s;
	s->running++;
	cmd->next = s->cmds;
	s->cmds = cmd;
	cmd->ch = ch;
	cmd->detached = true;
	cmd->recorded = true;
	cmd->command_json = strdup(command_json);
	cmd->info = *info;
	cmd->info.status = COMMAND_RUNNING;
	/* from the end is unknown: read from 0 and drop what we read */
	cmd->sub = agent_subscribe(ch, info->agent_id, 0, c->cfg.window, &cmd_sub_ops, cmd);
}

/* A service whose record could not be written: the agent would start it at
 * every start of the sandbox and no request could remove it. Still watched:
 * its exit is recorded as an ordinary command's. */
static void service_unrecorded(const struct record_ticket *t)
{
	struct sbx *s = sbx_find(t->c, t->sandbox_id);
	for (struct command *cmd = s ? s->cmds : NULL; cmd; cmd = cmd->next) {
		if (strcmp(cmd->info.id, t->id) != 0)
			continue;
		cmd->info.service = false;
		commands_unservice_orphan(cmd->ch, t->sandbox_id, t->id, "its record could not be written");
		return;
	}
	/* it exited meanwhile: a later reconcile pass finds the agent keeping it */
}

static void orphan_unserviced(int code, const char *err, bool kept, int pid, void *arg)
{
	if (err)
		log_warn("a service with no record still kept by its agent: %s", err);
}

void commands_unservice_orphan(struct agent_channel *ch, const char *sandbox_id, const char *service,
			       const char *why)
{
	log_warn("sandbox=%s: service %s forgotten: %s", sandbox_id, service, why);
	agent_unservice(ch, service, orphan_unserviced, NULL);
}

static void record_logged(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	if (err != PG_OK)
		log_warn("command record: %s", message ? message : "write failed");
}

/* ---- an attached run's own input (the terminal) ---- */

/* The channel of a started command, looked up by sandbox: a pointer kept from
 * before would dangle once the sandbox was dropped. NULL until started, and
 * once the sandbox's channel was dropped (never made again for a late key). */
static struct agent_channel *run_channel(struct command_op *op)
{
	CHECK(op->kind == OP_RUN);
	struct command *cmd = op->cmd;
	if (!cmd || cmd->info.agent_id == 0 || cmd->info.status != COMMAND_RUNNING)
		return NULL;
	return channels_find(op->c->chs, cmd->info.sandbox_id);
}

void command_op_input(struct command_op *op, const void *data, size_t len)
{
	struct agent_channel *ch = run_channel(op);
	size_t chunk = AGENT_FRAME_MAX - 64;
	for (size_t at = 0; ch && at < len; at += chunk)
		agent_stdin(ch, op->cmd->info.agent_id, (const uint8_t *)data + at,
			    len - at < chunk ? len - at : chunk);
}

void command_op_resize(struct command_op *op, int rows, int cols)
{
	struct agent_channel *ch = run_channel(op);
	if (ch)
		agent_resize(ch, op->cmd->info.agent_id, rows, cols);
}

void command_op_signal(struct command_op *op, int signo)
{
	struct agent_channel *ch = run_channel(op);
	if (ch)
		agent_signal(ch, op->cmd->info.agent_id, signo);
}
