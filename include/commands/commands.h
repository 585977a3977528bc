/* The command service every API dialect adapts: run commands in a sandbox
 * through its agent (attached with typed output events, or detached), their
 * records in PostgreSQL, logs, stdin, signals, limits and activity. No HTTP
 * here: results are structs or events, errors a core_error. */
#ifndef SANDBAR_COMMANDS_COMMANDS_H
#define SANDBAR_COMMANDS_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "agent/protocol.h"
#include "core/check.h"
#include "core/error.h"

struct channels;
struct commands;
struct json_object;
struct pg_pool;
struct registry;

struct commands_config {
	const char *instance;	 /* SANDBAR_INSTANCE_ID: records say who watched them */
	int max_per_sandbox;	 /* running commands per sandbox */
	uint64_t ring_bytes;	 /* output kept per command by the agent */
	uint64_t max_output_cap; /* largest max_output_bytes a request may ask for */
	uint32_t window;	 /* unacknowledged output bytes per subscription */
	int64_t grace_ms;	 /* SIGTERM -> SIGKILL after a timeout */
};

/* ---- what to run (each dialect fills it from its own request) ---- */
struct command_spec {
	char **argv; /* NULL terminated; NULL when shell is set */
	/* A shell string, run as a fresh `/bin/sh -c <shell>` would run it: the
	 * agent execs its words directly when they are only plain and single-
	 * quoted words (no expansion, no operator, no builtin), else through
	 * /bin/sh -c. login: in the user's login environment (what /etc/profile
	 * and its scripts export, which the agent works out once per user and
	 * keeps: src/agent/login.c), as `sh -lc` has it, except that a variable
	 * env sets to another value than the default wins over the profile's.
	 * An agent that predates this runs /bin/sh -c (-lc). */
	char *shell;
	bool login;
	char *command_json; /* the command as given, JSON text (for the record) */
	char **env;	    /* "K=V", NULL terminated, may be NULL: overlays the sandbox env */
	char *cwd, *user;   /* NULL: workspace folder, template remoteUser */
	int64_t timeout_ms; /* 0: none */
	char *stdin_data;   /* given up front, then closed; NULL: no stdin (unless stdin_open) */
	size_t stdin_len;
	bool stdin_open;	   /* detached: stdin stays open for .../stdin */
	uint64_t max_output_bytes; /* kept per stream by a collect */
	int pty_rows, pty_cols;	   /* > 0: on a PTY (the terminal) */
	bool service;		   /* detached only: the agent keeps it and starts it again at every
				    * start of the sandbox, under the same record (AGENT_T_SERVICE) */
	int port;		   /* a service's TCP port (1..65535; 0: none): its readiness */
};
void command_spec_free(struct command_spec *spec);

/* A signal by name ("SIGTERM", "term", "KILL") or number ("9", 1..31) among
 * those we allow; -1 when unknown. */
int command_signal_parse(const char *s);

/* ---- a command as the API sees it ---- */
enum command_status { COMMAND_RUNNING, COMMAND_EXITED, COMMAND_FAILED, COMMAND_LOST, COMMAND_STATUS_MAX };
const char *command_status_name(enum command_status s);
/* A recorded status; an unknown one reads as lost. */
enum command_status command_status_parse(const char *name);

struct command_info {
	char id[37];
	char sandbox_id[37];
	uint32_t agent_id;
	int pid;
	enum command_status status;
	int exit_code; /* shell style: 128 + signal when killed; known once exited */
	int signal;    /* 0 when it exited */
	bool timed_out;
	int64_t started_at, ended_at; /* Unix ms, ended_at 0 while running */
	uint64_t offset;	      /* output bytes (at exit) */
	bool service;		      /* started again with its sandbox (until removed) */
	int port;		      /* 0: none */
	bool ready;		      /* records read: the port accepts connections now */
};

/* Events of a run or a log stream, all from the loop, never on the caller's
 * stack. After exited or failed nothing more is called and the op is freed. */
struct command_events {
	void (*started)(void *arg, const struct command_info *info);
	void (*output)(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data, size_t len,
		       bool gap);
	/* logs without follow: everything buffered so far was delivered; ends the op */
	void (*caught_up)(void *arg, uint64_t offset);
	void (*exited)(void *arg, const struct command_info *info);
	void (*failed)(void *arg, const struct core_error *fail);
};

struct command_op;

/* Sandboxes come from the registry (their handles, activity, channels). */
struct commands *commands_new(struct event_base *base, const struct commands_config *cfg,
			      struct registry *reg);
void commands_free(struct commands *c);
/* The largest max_output_bytes a request may ask for. */
uint64_t commands_max_output_cap(const struct commands *c);

/* Runs spec in the sandbox. Attached: started, output..., exited (the op acks
 * only what the caller acks). Detached: started once the record is written,
 * then the op ends (no more events); the command runs on. */
struct command_op *commands_run(struct commands *c, const char *sandbox_id, const struct command_spec *spec,
				bool detached, const struct command_events *ev, void *arg);
/* Output before offset is consumed: let the agent send more. */
void command_op_ack(struct command_op *op, uint64_t offset);

/* A run collected whole (monza's /execute): each of stdout, stderr and the
 * interleaved output keeps up to spec->max_output_bytes; the rest is counted
 * and drained. */
struct command_result {
	const struct command_info *info;
	const uint8_t *out, *err, *all; /* stdout, stderr, both in order */
	size_t out_len, err_len, all_len;
	uint64_t out_total, err_total, all_total;
	bool truncated;
	int64_t duration_ms;
};
typedef void (*command_result_fn)(const struct core_error *fail, const struct command_result *res, void *arg);
struct command_op *commands_execute(struct commands *c, const char *sandbox_id,
				    const struct command_spec *spec, command_result_fn cb, void *arg);
/* The caller of commands_execute goes away: no callback follows. */
void commands_collect_cancel(struct command_op *op);

/* An attached run started with stdin_open (the terminal): bytes to its
 * stdin, its PTY size, and the bytes queued toward the agent (pause the source
 * above a mark). Ignored before the command started and after it ended. */
void command_op_input(struct command_op *op, const void *data, size_t len);
void command_op_resize(struct command_op *op, int rows, int cols);
void command_op_signal(struct command_op *op, int signo);

/* Output of a command from offset: output..., then exited (or, without
 * follow, caught_up at the end of what is kept now). */
struct command_op *commands_logs(struct commands *c, const char *sandbox_id, const char *cmd_id,
				 uint64_t offset, bool follow, const struct command_events *ev, void *arg);

/* A command's record: its info and the command as given (JSON text). */
struct command_record {
	struct command_info info;
	const char *command;
};
/* Records: one command (n = 1), or a sandbox's commands newest first. A
 * service with a port says whether it is ready (one LIST of the sandbox's
 * agent, when it runs). */
typedef void (*command_records_fn)(const struct core_error *fail, const struct command_record *recs, size_t n,
				   void *arg);
struct command_op *commands_get(struct commands *c, const char *sandbox_id, const char *cmd_id,
				command_records_fn cb, void *arg);
struct command_op *commands_list(struct commands *c, const char *sandbox_id, command_records_fn cb,
				 void *arg);
/* Signal to the command's process group; cb(NULL, ...) once sent. */
typedef void (*command_ready_fn)(const struct core_error *fail, void *arg);
struct command_op *commands_signal(struct commands *c, const char *sandbox_id, const char *cmd_id, int signo,
				   command_ready_fn cb, void *arg);
/* A service removed for good: its agent keeps it no more (not started again),
 * its process group gets SIGTERM (SIGKILL after the grace), its record is an
 * ordinary command's from then on (service false). cb(NULL, ...) once done;
 * CONFLICT not_a_service for another command, UNSUPPORTED agent_outdated
 * when the sandbox's agent predates services. */
struct command_op *commands_remove_service(struct commands *c, const char *sandbox_id, const char *cmd_id,
					   command_ready_fn cb, void *arg);

/* Streamed stdin: open (cb once the command is found), write as data comes,
 * then end (eof closes the command's stdin). write returns the bytes queued
 * toward the agent: pause the source above commands_stdin_high_water and
 * retry on the ready callback. */
struct command_op *commands_stdin_open(struct commands *c, const char *sandbox_id, const char *cmd_id,
				       command_ready_fn cb, void *arg);
/* 0, or -1 (nothing taken) while the channel is above its high-water mark:
 * ready(NULL, arg) is called once it has drained. */
MUST_USE int command_stdin_write(struct command_op *op, const void *data, size_t len);
void command_stdin_end(struct command_op *op, bool eof);

/* Cancels a get/list/signal/stdin op or closes a run/logs op: no callback
 * follows. A run's command runs on (its output then drained and dropped so it
 * never blocks). Safe from inside an event. */
void command_op_cancel(struct command_op *op);

#endif
