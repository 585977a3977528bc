/* Coding-agent tasks: a prompt run headless by a CLI in a sandbox between two
 * git checkpoints, its JSON lines turned into our events, stored (batched,
 * numbered per task) and followed live. No HTTP: structs and event JSON text. */
#ifndef SANDBAR_TASKS_TASKS_H
#define SANDBAR_TASKS_TASKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "core/check.h"
#include "core/error.h"
#include "tasks/translate.h"

struct commands;
struct registry;
struct tasks;

/* One state, one transition function (tasks.c task_set_state). The first
 * three are the phases of a running task; the rest are its outcome. */
enum task_state {
	TASK_PREPARING,	    /* the checkpoint before, the CLI's configuration */
	TASK_RUNNING,	    /* the CLI runs */
	TASK_CHECKPOINTING, /* the checkpoint after, the files changed */
	TASK_SUCCEEDED,
	TASK_FAILED,
	TASK_CANCELLED,
	TASK_TIMED_OUT,
	TASK_STATE_MAX
};
const char *task_state_name(enum task_state s);
MUST_USE int task_state_parse(const char *name, enum task_state *out);
bool task_state_final(enum task_state s);
/* The legality table of task_set_state. */
bool task_state_can(enum task_state from, enum task_state to);

struct tasks_config {
	const char *instance; /* SANDBAR_INSTANCE_ID: the runner of a task, resumed by it */
	int64_t default_timeout_ms;
	int64_t max_timeout_ms;
	int64_t cancel_grace_ms; /* SIGTERM -> SIGKILL */
	uint64_t max_output;	 /* a diff's bytes at most */
};

/* What a POST .../tasks asks for (the dialect checked the shapes). */
struct task_spec {
	enum task_agent agent;
	const char *prompt;
	const char *model;	  /* NULL: the CLI's default */
	const char *cwd;	  /* NULL: the workspace folder */
	char **env;		  /* "K=V" NULL terminated, may be NULL: never stored */
	int64_t timeout_ms;	  /* 0: the default */
	char **command;		  /* custom: argv, NULL terminated */
	const char *command_json; /* custom: the command as given */
};

/* A task as the API shows it (from its row). */
struct task_info {
	char id[37], sandbox_id[37];
	enum task_agent agent;
	enum task_state state;
	const char *prompt, *model, *reason; /* NULL when none */
	const char *result;		     /* the done event's data (JSON text), NULL while it runs */
	const char *before_commit, *after_commit;
	int64_t created_at_us, ended_at_us, timeout_ms;
	int64_t last_seq;
};

struct tasks *tasks_new(struct event_base *base, const struct tasks_config *cfg, struct registry *reg,
			struct commands *cmds);
/* After migrations: tasks this instance ran when it stopped are followed
 * again (or settled as failed when their CLI is gone). */
void tasks_start(struct tasks *ts);
/* At shutdown, before the loop ends: what the tasks have not written yet is
 * written now (for up to max_ms), then done(arg), from the loop. */
void tasks_drain(struct tasks *ts, int64_t max_ms, void (*done)(void *arg), void *arg);
/* At shutdown: tasks run on in their sandboxes; resumed at the next start. */
void tasks_free(struct tasks *ts);

struct task_op;
/* No callback follows. */
void task_op_cancel(struct task_op *op);

/* info valid during the call. A second task while one runs fails CONFLICT
 * task_running with info->id the running task's. */
typedef void (*task_info_fn)(const struct core_error *fail, const struct task_info *info, void *arg);
typedef void (*task_list_fn)(const struct core_error *fail, const struct task_info *list, size_t n,
			     void *arg);

/* Starts a task (the sandbox woken when it is stopped and may be): info
 * once its row is written and it runs. */
struct task_op *tasks_create(struct tasks *ts, const char *sandbox_id, const struct task_spec *spec,
			     task_info_fn cb, void *arg);
struct task_op *tasks_get(struct tasks *ts, const char *sandbox_id, const char *task_id, task_info_fn cb,
			  void *arg);
struct task_op *tasks_list(struct tasks *ts, const char *sandbox_id, task_list_fn cb, void *arg);
/* SIGTERM to the CLI's process group, SIGKILL after the grace; the task then
 * ends cancelled. info: the task as it is now. CONFLICT task_not_running once it ended. */
struct task_op *tasks_cancel(struct tasks *ts, const char *sandbox_id, const char *task_id, task_info_fn cb,
			     void *arg);
/* The unified diff between the task's two checkpoints (text, len). */
typedef void (*task_text_fn)(const struct core_error *fail, const char *text, size_t len, void *arg);
struct task_op *tasks_diff(struct tasks *ts, const char *sandbox_id, const char *task_id, task_text_fn cb,
			   void *arg);
/* The working folder back to the checkpoint before the task, as a new
 * commit; text: that commit's id. */
struct task_op *tasks_revert(struct tasks *ts, const char *sandbox_id, const char *task_id, task_text_fn cb,
			     void *arg);

/* Events of a task after seq since, then live until its done event: opened()
 * once the task is found, event() for each (data: JSON text), then end(NULL)
 * after done, or end(fail) (before opened: the task is not there). */
struct task_watch_ops {
	void (*opened)(void *arg);
	void (*event)(void *arg, int64_t seq, const char *type, const char *data);
	void (*end)(void *arg, const struct core_error *fail);
};
struct task_op *tasks_watch(struct tasks *ts, const char *sandbox_id, const char *task_id, int64_t since,
			    const struct task_watch_ops *ops, void *arg);

#endif
