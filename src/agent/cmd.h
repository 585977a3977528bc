/* Commands: fork + exec in their own session and process group, their pipes
 * or PTY read into the output ring, stdin fed from STDIN frames, timeouts,
 * signals to the group, and the exit status. A command belongs to the agent,
 * never to a connection. */
#ifndef SANDBAR_AGENT_CMD_H
#define SANDBAR_AGENT_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent.h"
#include "agent/protocol.h"
#include "request.h"

/* RUNNING: the leader lives. DRAINING: the leader was reaped, its pipes are
 * still open (a background grandchild may hold them). EXITED: finished,
 * EXITED can be reported. */
enum cmd_state { CMD_RUNNING, CMD_DRAINING, CMD_EXITED, CMD_STATE_MAX };

#define CMD_DRAIN_MS   100	  /* after the leader exited, wait this long for EOF */
#define CMD_STDIN_MAX  (8u << 20) /* bytes of STDIN queued per command */
#define CMD_READ_CHUNK (64u * 1024)
/* Exited commands whose output stays for replay: the newest this many, in at
 * most this much memory; older ones are forgotten as new ones start (their
 * records stay in sandbard's database; their logs are gone). */
#define CMD_KEEP_EXITED	      1024
#define CMD_KEEP_EXITED_BYTES (32u << 20)

struct ring;
struct sub;
struct user_info;

struct cmd {
	struct cmd *next;
	uint32_t id;
	pid_t pid; /* also the process group id */
	enum cmd_state state;
	bool pty;
	int in_fd;	    /* stdin pipe or PTY master (shared with out_fd), -1 */
	int out_fd, err_fd; /* -1 once at EOF */
	uint8_t *in_buf;    /* STDIN bytes not yet written */
	size_t in_len, in_off, in_cap;
	bool in_close; /* STDIN_CLOSE once the queue is written */
	struct ring *ring;
	int exit_code, signo;
	bool timed_out;
	int64_t started_at, ended_at; /* wall ms */
	int64_t term_at, kill_at;     /* monotonic ms, 0: none */
	int64_t drain_until;
	int64_t grace_ms;
	/* Lossless subscriptions (kept by conn.c): how many, and the oldest byte
	 * one of them has not acknowledged. While the ring has no room past it the
	 * output is not read: the producer blocks instead of losing bytes. */
	unsigned keepers;
	uint64_t keep_from;
	struct sub *keep_list; /* conn.c's, linked through the subs */
	unsigned readers;      /* subscriptions of any kind (conn.c): never forgotten while read */
	/* Services and ports (service.c): the service it is ("" when none), the
	 * port it serves (0: none), whether that port accepted a connection, and
	 * the probe's connect in flight (-1) or the time of the next one. */
	char service[AGENT_SERVICE_ID_MAX + 1];
	uint16_t port;
	bool ready;
	int probe_fd;
	int64_t probe_at;     /* monotonic ms: the next probe, or the deadline of the one in flight */
	uint32_t probe_addr;  /* where probes connect (network order; 0: look it up) */
	unsigned probe_fails; /* failed probes since the address was looked up */
	unsigned probe_tries; /* probes so far: the first ones come quickly (service.c) */
};

/* Starts a command from a decoded SPAWN. On failure -1 with *code (errno) and
 * a message in msg. */
int cmd_spawn(struct agent *a, const struct agent_req *req, char **argv, char **env, struct cmd **out,
	      int *code, char *msg, size_t msglen);
/* A helper process of the agent's own (no command, no record): argv with
 * env, as user (NULL: the agent's own), in cwd (NULL: the agent's), in its
 * own session, stdin, stdout and stderr on /dev/null and fd3 (-1: none) as
 * its fd 3. Its pid (reaping it is the caller's), or -1 with errno. */
pid_t cmd_spawn_helper(char **argv, char **env, const char *cwd, const struct user_info *user, int fd3);
struct cmd *cmd_find(struct agent *a, uint32_t id);
/* Whether its output fds are left out of the poll set: a lossless reader is
 * a whole ring behind. */
bool cmd_paused(const struct cmd *c);
/* Poll events on one of its fds. */
void cmd_io(struct agent *a, struct cmd *c, int fd, short revents);
/* A reaped pid: true when it was a command leader. */
bool cmd_reaped(struct agent *a, pid_t pid, int status);
/* Timeouts and drain deadlines due at a->now; the next deadline (0: none). */
int64_t cmd_timers(struct agent *a);
int cmd_signal(struct cmd *c, int signo);
/* Queues STDIN bytes: 0, or -1 with errno (EPIPE closed, ENOBUFS full). */
int cmd_stdin(struct cmd *c, const uint8_t *data, size_t len);
void cmd_stdin_close(struct cmd *c);
int cmd_resize(struct cmd *c, int rows, int cols);
/* Unlinks and frees an EXITED command. */
void cmd_forget(struct agent *a, struct cmd *c);
/* Running commands (leader alive). */
size_t cmd_running(const struct agent *a);
/* kill(-pgid, signo) for every command whose group may still have members. */
void cmd_signal_all(struct agent *a, int signo);
void cmd_free_all(struct agent *a);

#endif
