/* What the task service's files share: the service, a task this instance
 * runs (its state, its command in flight, its events), and the ops callers
 * hold (reads, cancel, diff, revert, watches). */
#ifndef SANDBAR_TASKS_INTERNAL_H
#define SANDBAR_TASKS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <libpq-fe.h>

#include "commands/commands.h"
#include "pg/pool.h"
#include "tasks/tasks.h"

struct sandbox;

struct tasks {
	struct event_base *base;
	struct tasks_config cfg;
	char *instance;
	struct registry *reg;
	struct commands *cmds;
	struct pg_pool *pg;
	struct task *live;   /* tasks this instance runs */
	struct task_op *ops; /* every op in flight, freed at shutdown */
	struct pg_query *resume;
	struct event *resume_retry;
	void (*drained)(void *arg); /* draining: called once every write is answered */
	void *drained_arg;
	struct event *drain_ev;
};

/* One stored event (data: JSON text). */
struct task_event {
	int64_t seq;
	char *type, *data;
};

struct task {
	struct task *next; /* in ts->live */
	struct tasks *ts;
	char id[37], sandbox_id[37];
	enum task_state state;
	enum task_agent agent;
	char *prompt, *model, *cwd, *command_json, *reason;
	char **command; /* custom's argv */
	char **env;	/* the task's own "K=V": in memory only */
	char **secrets; /* values never to show in an event */
	int64_t timeout_ms, created_ms, ended_ms;
	char command_id[37];
	char before[48], after[48];

	struct command_op *op; /* the step's command */
	struct task_translator tr;
	struct evbuffer *line; /* stdout since the last newline */
	uint64_t safe_offset;  /* output offset just past the last whole stdout line */
	uint64_t acked;
	char errtail[600]; /* the end of stderr, for a failure's reason */
	size_t errlen;
	struct command_info exit; /* the CLI's end */
	bool exited;
	bool cancel;		  /* cancel asked */
	struct event *kill_timer; /* cancel: SIGKILL after the grace */
	struct command_op *sig;	  /* a signal on its way */
	struct event *activity;	  /* running: the sandbox's activity now and then */
	enum task_state outcome;  /* checkpointing: the state it ends in */
	char *openai_base;	  /* OPENAI_BASE_URL of the task or the sandbox */
	struct json_object *files;

	/* the last events: every one not yet written, and the latest written
	 * ones up to EVENTS_KEPT (older ones: PostgreSQL has them) */
	struct task_event *evs;
	size_t nev, cap;
	size_t ev_bytes;	/* of the events' data in evs */
	int64_t seq;		/* the last event's number (evs[nev - 1]'s) */
	int64_t sent_seq;	/* events handed to PostgreSQL */
	int64_t inflight_from;	/* sent_seq before the batch in flight */
	bool row_dirty;		/* the row's fields changed since the last write */
	struct pg_query *write; /* the batch in flight */
	struct event *flush_ev;
	struct task_op *watchers;
};

/* tasks.c */
struct task *task_find(struct tasks *ts, const char *id);
void task_set_state(struct task *t, enum task_state next, const char *reason);
/* t->reason, with every secret's value masked. */
void task_set_reason(struct task *t, const char *reason);
/* An event of t: numbered, stored (batched) and sent to its watchers; data taken. */
void task_emit(struct task *t, const char *type, struct json_object *data);
void task_row_dirty(struct task *t);
/* The event numbered seq when it is still in memory, else NULL. */
const struct task_event *task_event_at(const struct task *t, int64_t seq);
/* The task ended (done emitted): freed once its last write is answered. */
void task_release(struct task *t);
struct task *task_new(struct tasks *ts, const char *id, const char *sandbox_id);

/* runner.c: the steps, each a command through the command service. */
void runner_prepare(struct task *t, const struct sandbox *sb);
void runner_resume(struct task *t);
void runner_cancel(struct task *t);
void runner_free(struct task *t);

/* ops.c: rows. */
extern const char task_columns[];
/* Fills info from row i of res (its strings point into res). */
void task_info_from_row(struct task_info *info, PGresult *res, int i);
void task_event_free(struct task_event *e);

/* git as tasks run it: any owner of the folder, no hooks' identity questions */
#define TASK_GIT "git -c safe.directory=* -c commit.gpgsign=false"
struct env_list;
/* The checkpoints' author and committer: the sandbox. */
void task_git_env(struct env_list *env, const char *sandbox_id);

#endif
