/* What the command service's files share: the service, the per-sandbox
 * entries (running count, activity throttle, reconcile), running commands
 * and the ops callers hold. */
#ifndef SANDBAR_COMMANDS_INTERNAL_H
#define SANDBAR_COMMANDS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "channel/channel.h"
#include "commands/commands.h"
#include "pg/pool.h"
#include "sandbox/registry.h"

#define SBX_BUCKETS 256

struct records;
struct reconcile;

struct commands {
	struct event_base *base;
	struct commands_config cfg;
	struct pg_pool *pg;
	struct registry *reg;
	struct channels *chs;
	struct sbx *buckets[SBX_BUCKETS];
	struct records *records; /* batched record writes (commands_records.c) */
};

/* What the service keeps per sandbox: the commands it watches and whether
 * their records were settled against the agent since sandbard started. */
struct sbx {
	struct sbx *next;
	struct commands *c;
	char id[37];
	int running; /* commands of this sandbox this instance watches */
	/* RECONCILED: its records agree with the agent we last asked. Back to
	 * UNRECONCILED when the agent may run what we did not see (its channel
	 * dropped by a stop, a restarted agent, a watch lost); again: that
	 * happened during the pass, which then leaves it UNRECONCILED. */
	enum { SBX_UNRECONCILED, SBX_RECONCILING, SBX_RECONCILED } reconcile;
	bool again;
	struct command_op *waiters; /* ops waiting for the reconcile pass */
	struct reconcile *pass;	    /* RECONCILING: the pass */
	struct command *cmds;	    /* watched commands */
};

/* A command this instance watches until it exits: it owns the agent
 * subscription, forwards output to the attached op (if any) and writes the
 * record. */
struct command {
	struct command *next; /* in sbx->cmds */
	struct commands *c;
	struct sbx *sbx;
	struct agent_channel *ch;
	struct agent_sub *sub;
	struct command_op *op; /* attached consumer, NULL when none */
	struct command_info info;
	struct record_ticket *ticket;
	char *command_json;
	bool detached;
	bool recorded; /* a record was (or is being) written */
	char *stdin_data;
	size_t stdin_len;
	bool stdin_close;
};

/* A detached command's record on its way: the op answers once it is written
 * (NULL when the caller left); a service's record that could not be written
 * makes its agent forget it. */
struct record_ticket {
	struct command_op *op;
	struct commands *c;
	char sandbox_id[37], id[37];
	bool service;
};

enum op_kind { OP_RUN, OP_LOGS, OP_GET, OP_LIST, OP_SIGNAL, OP_STDIN, OP_UNSERVICE };

enum op_state {
	OP_LOOKUP,    /* waiting on PostgreSQL (sandbox or command record) */
	OP_RECONCILE, /* waiting for the sandbox's reconcile pass */
	OP_FLUSH,     /* waiting for record writes queued before it */
	OP_AGENT,     /* waiting on the agent (spawn, list, subscription) */
	OP_RECORD,    /* detached: writing the record */
	OP_STREAM,    /* events flowing */
	OP_DONE,
	OP_STATE_MAX
};

struct command_op {
	struct commands *c;
	enum op_kind kind;
	enum op_state state;
	const struct command_events *ev;
	command_records_fn records_cb;
	command_ready_fn ready_cb;
	void *arg;
	char sandbox_id[37];
	char cmd_id[37];
	struct pg_query *query;
	struct event *later;	      /* deferred failure / ready */
	struct command_op *wait_next; /* among reconcile or flush waiters */
	uint64_t flush_seq;	      /* OP_FLUSH: the last write it waits for */
	void (*flush_go)(struct command_op *op);
	void (*reconcile_go)(struct command_op *op); /* OP_RECONCILE: on after the pass */
	struct registry_wait *rwait;		     /* OP_LOOKUP: the sandbox's handle on its way */
	struct sandbox_ref *ref;		     /* the sandbox, once looked up */
	struct command *cmd;			     /* OP_RUN */
	struct command_spec spec;		     /* OP_RUN: owned copy of what matters */
	bool detached;
	struct agent_channel *ch; /* valid during the pass that set it only */
	struct agent_sub *sub;	  /* OP_LOGS */
	uint32_t agent_id;
	uint64_t offset, target;
	uint64_t acked; /* the last offset acked to the agent */
	bool follow;
	bool agent_holds; /* an agent list or unservice (then its record write) will call back: it finishes op
			   */
	int signo;
	int in_cb;   /* events on the stack */
	bool closed; /* the caller is gone */
	struct core_error fail;
	struct command_info info;
	struct record_ticket *ticket;
	void *priv;		     /* an /execute's run: the collector */
	struct command_record *recs; /* OP_GET, OP_LIST: read, owned (their commands too) */
	size_t nrecs;
};

void op_set_state(struct command_op *op, enum op_state next);
struct command_op *op_new(struct commands *c, enum op_kind kind, const char *sandbox_id, void *arg);
/* Fails op on the next loop pass (or now, from a callback: now=true). */
void op_fail(struct command_op *op, bool now, enum core_err err, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
void op_fail_pg(struct command_op *op, enum pg_error err, const char *message);
/* Fails op now (from a callback) with err as it is. */
void op_fail_with(struct command_op *op, const struct core_error *err);
/* Ends op (state DONE) and frees it unless an event of it is on the stack. */
void op_finish(struct command_op *op);
/* false when op is gone (closed from inside the event) */
bool op_emit_output(struct command_op *op, enum agent_stream stream, uint64_t offset, const uint8_t *data,
		    size_t len, bool gap);
void op_emit_exited(struct command_op *op, const struct command_info *info);

struct sbx *sbx_get(struct commands *c, const char *id);
/* Runs op once the sandbox's running records agree with its agent. */
void sbx_after_reconcile(struct commands *c, struct command_op *op, void (*go)(struct command_op *op));
/* The agent may run what the records do not say: reconcile again. */
void sbx_stale(struct sbx *s);
/* Forgets s when it holds nothing: no command watched, no op waiting, no
 * pass, and nothing reconciled to remember. */
void sbx_release(struct sbx *s);
/* At shutdown: a pass in flight dropped (its query cancelled, no callback). */
void reconcile_free(struct reconcile *r);
/* A command found running at reconcile (info: its record as it is now):
 * watched again until it exits. */
void commands_watch_resume(struct commands *c, struct sbx *s, struct agent_channel *ch,
			   const struct command_info *info, const char *command_json);
/* commands_records.c: writes the command's record (insert or final update;
 * idempotent) in the next batch; cb gets the batch's outcome. */
void command_record_write(struct commands *c, const struct command_info *info, const char *command_json,
			  bool detached, pg_result_fn cb, void *arg);
struct records *records_new(struct commands *c);
void records_free(struct records *r);
/* Runs go(op) once every record write queued before now was answered. */
void records_after_flush(struct commands *c, struct command_op *op, void (*go)(struct command_op *op));

struct sbx *sbx_find(struct commands *c, const char *id);

/* A service the agent keeps with no record to say so: forgotten (logged). */
void commands_unservice_orphan(struct agent_channel *ch, const char *sandbox_id, const char *service,
			       const char *why);
void info_from_exit(struct command_info *info, const struct agent_exit *x);
bool commands_uuid_valid(const char *id);

/* commands_query.c: entry of reconcile ops waiting */
void query_go(struct command_op *op);

#endif
