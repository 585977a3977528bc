/* sandbard's side of the agent: one channel per sandbox, a Docker exec of
 * `/.sandbar/agent relay` hijacked into a byte stream that carries the agent
 * protocol (include/agent/protocol.h). The channel connects on first use,
 * handshakes, queues requests until it is ready, and reconnects with back-off
 * when the stream breaks; subscriptions then resume from the last acknowledged
 * offset, so a stream of output survives a broken channel (and a sandbard
 * restart, through the command records). */
#ifndef SANDBAR_CHANNEL_CHANNEL_H
#define SANDBAR_CHANNEL_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "agent/protocol.h"
#include "core/check.h"

struct docker;
struct channels;
struct agent_channel;
struct agent_sub;

/* The installed agent's path inside every sandbox. */
#define AGENT_PATH "/.sandbar/agent"

/* The error code every request on a channel gets when Docker is unreachable
 * (docker/client.h): no retries then, and every channel is given up at once
 * when the client finds Docker gone, since its stream runs through dockerd.
 * Callers answer it with 503 docker_unavailable. */
#define AGENT_DOCKER_DOWN EHOSTDOWN

struct channels *channels_new(struct event_base *base, struct docker *docker);
void channels_free(struct channels *chs);
/* The channel of a sandbox (made on first use, connected lazily). container is
 * the container id or name. Never NULL; valid until channels_drop of that
 * sandbox (hold the sandbox id, not the pointer, across loop passes). */
struct agent_channel *channels_get(struct channels *chs, const char *sandbox_id, const char *container);
/* The sandbox's channel if it has one, NULL when none was made or it was
 * dropped: for a late request that must not connect again (stdin, resize). */
struct agent_channel *channels_find(struct channels *chs, const char *sandbox_id);
/* Closes and forgets a sandbox's channel (sandbox deleted or stopped): every
 * subscription gets error("sandbox gone"). */
void channels_drop(struct channels *chs, const char *sandbox_id);
/* One listener (the command service) hears, from the loop, of each sandbox
 * whose agent may run other commands than before, none of them seen by a
 * channel: its channel was dropped (a stop, a delete), or a reconnect met an
 * agent that started again (another instance stopped and started it). */
typedef void (*channels_reset_fn)(const char *sandbox_id, void *arg);
void channels_on_reset(struct channels *chs, channels_reset_fn fn, void *arg);

struct agent_exit {
	int exit_code; /* -1 when killed by a signal */
	int signal;    /* 0 when it exited */
	bool timed_out;
	int64_t started_at, ended_at; /* Unix ms */
	uint64_t offset;	      /* total output bytes */
};

/* Callbacks of one subscription (or spawn). All from the loop; after
 * error or exited nothing more is called, and the sub is freed by the channel
 * after that callback returns. */
struct agent_sub_ops {
	void (*started)(void *arg, uint32_t cmd_id, int pid, int64_t started_at); /* spawns only */
	void (*output)(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data, size_t len,
		       bool gap);
	void (*exited)(void *arg, const struct agent_exit *exit);
	/* spawn failed, unknown command, channel lost for good, sandbox gone */
	void (*error)(void *arg, int code, const char *message);
};

struct agent_spawn_req {
	const char *const *argv; /* NULL terminated, argv[0] non-empty */
	const char *shell;	 /* may be NULL: a shell string the agent runs (AGENT_T_SHELL); argv is
				  * then what an agent that predates it runs */
	bool login;		 /* with shell: in the user's login environment (AGENT_T_LOGIN) */
	const char *const *env;	 /* NULL terminated "K=V", may be NULL */
	const char *cwd;	 /* may be NULL */
	const char *user;	 /* may be NULL: the agent's own (root) */
	int pty_rows, pty_cols;	 /* both > 0: on a PTY */
	bool stdin_open;
	int64_t timeout_ms, grace_ms;
	uint64_t ring_bytes;
	uint32_t window;     /* 0: do not subscribe (detached); the sub still gets started/error,
			      * and is freed after started returns */
	bool lossless;	     /* with a window: the agent holds the command rather than
			      * drop output this sub has not acked (AGENT_T_LOSSLESS) */
	const char *service; /* a service (AGENT_T_SERVICE): the agent keeps it and starts
			      * it again at every start. Sent only to an agent with
			      * AGENT_FEATURE_SERVICES: else error(ENOTSUP) */
	int port;	     /* > 0: the port it serves, probed by the agent (READY) */
};

struct agent_sub *agent_spawn(struct agent_channel *ch, const struct agent_spawn_req *req,
			      const struct agent_sub_ops *ops, void *arg);
struct agent_sub *agent_subscribe(struct agent_channel *ch, uint32_t cmd_id, uint64_t offset, uint32_t window,
				  const struct agent_sub_ops *ops, void *arg);
/* The same, lossless: the agent pauses the command while this sub is a whole
 * ring behind rather than drop bytes it has not acked, so it sees no gap
 * after offset (one at once if offset already left the ring). For a reader
 * that wants every byte; an agent older than AGENT_T_LOSSLESS ignores it. */
struct agent_sub *agent_subscribe_lossless(struct agent_channel *ch, uint32_t cmd_id, uint64_t offset,
					   uint32_t window, const struct agent_sub_ops *ops, void *arg);
/* The consumer has taken everything before offset: the agent may send more. */
void agent_sub_ack(struct agent_sub *sub, uint64_t offset);
/* Nobody will read this sub's output again, only its exit matters: the agent
 * stops sending OUTPUT (AGENT_T_QUIET; kept across a new stream) and drops a
 * lossless hold, and exited still comes. An agent older than QUIET goes on
 * sending output: the consumer must still ack what comes. */
void agent_sub_quiet(struct agent_sub *sub);
/* No more callbacks; unsubscribes at the agent. Safe from inside a callback. */
void agent_sub_close(struct agent_sub *sub);

/* Fire-and-forget requests about a command (an ERROR from the agent is logged). */
void agent_stdin(struct agent_channel *ch, uint32_t cmd_id, const void *data, size_t len);
void agent_stdin_close(struct agent_channel *ch, uint32_t cmd_id);
void agent_signal(struct agent_channel *ch, uint32_t cmd_id, int signo);
void agent_resize(struct agent_channel *ch, uint32_t cmd_id, int rows, int cols);

/* Status of every command the agent knows. list is valid during the call;
 * err non-NULL when the channel could not be used. */
struct agent_status {
	uint32_t id;
	int pid;
	bool running;
	struct agent_exit exit;			/* when !running; started_at always */
	char service[AGENT_SERVICE_ID_MAX + 1]; /* "" when not a service */
	int port;				/* 0: none */
	bool ready;				/* port accepted a connection */
};
typedef void (*agent_list_fn)(const struct agent_status *list, size_t n, const char *err, void *arg);
void agent_list(struct agent_channel *ch, agent_list_fn cb, void *arg);

/* A service kept no more (AGENT_UNSERVICE): cb(0, NULL, kept, pid) once the
 * agent did it (kept: it was a service; pid: its running group got SIGTERM,
 * 0 when none ran), or cb(code, message, false, 0) with err set: code ENOTSUP
 * from an agent without AGENT_FEATURE_SERVICES, the agent's errno for an
 * ERROR, 0 when the channel could not be used. Sent again after a broken
 * stream (it is idempotent). */
typedef void (*agent_unservice_fn)(int code, const char *err, bool kept, int pid, void *arg);
void agent_unservice(struct agent_channel *ch, const char *service, agent_unservice_fn cb, void *arg);

/* Bytes queued toward the agent (callers streaming stdin pause above a mark). */
size_t agent_channel_pending(const struct agent_channel *ch);

/* ---- files (AGENT_FS*, see include/agent/protocol.h) ----
 * Sent only once the agent's WELCOME announced AGENT_FEATURE_FS: an older
 * agent gets nothing and the request fails with ENOTSUP. Not resumed across a
 * broken channel: what was sent fails with EPIPE. Callbacks from the loop;
 * after done or error nothing more, and the handle is freed by the channel. */
struct agent_fs;

struct agent_fs_entry {
	const char *path; /* NUL-terminated copy; NULL when the frame had none (reads) */
	uint64_t size;
	uint32_t mode; /* st_mode */
	int64_t mtime_ms;
	uint32_t uid, gid;
	bool link;
	/* reads: the range that follows, and the file's first bytes */
	uint64_t offset, length;
	const uint8_t *head;
	size_t head_len;
};

struct agent_fs_done {
	uint64_t size;	/* reads: bytes sent; writes: bytes written; EDIT: new size */
	uint64_t count; /* LIST: entries; EDIT: occurrences */
	bool truncated; /* LIST: the entry cap was hit */
	bool created;	/* MKDIR, writes: PATH did not exist before */
};

struct agent_fs_ops {
	void (*entry)(void *arg, const struct agent_fs_entry *e);
	void (*data)(void *arg, uint64_t offset, const uint8_t *data, size_t len);
	void (*done)(void *arg, const struct agent_fs_done *d);
	void (*error)(void *arg, int code, const char *message); /* code: an errno */
};

struct agent_fs_req {
	enum agent_fs_op op;
	const char *path, *path2;	 /* path2: MOVE's destination */
	const char *user;		 /* NULL: root */
	uint32_t mode;			 /* 0: the agent's default */
	uint32_t flags;			 /* AGENT_FS_F_* */
	uint64_t depth, limit;		 /* LIST */
	const void *old_text, *new_text; /* EDIT; together under AGENT_FRAME_MAX */
	size_t old_len, new_len;
	uint64_t size; /* MOVE: cut PATH to this first (an agent with
			  AGENT_FEATURE_FS_MOVE_SIZE; an older one: ENOTSUP) */
	bool has_size;
};

struct agent_fs *agent_fs_op(struct agent_channel *ch, const struct agent_fs_req *req,
			     const struct agent_fs_ops *ops, void *arg);
/* A read stream: entry (the file and the range), data..., done. length
 * UINT64_MAX: to the end; flags AGENT_FS_F_SUFFIX: the last length bytes. */
struct agent_fs *agent_fs_read(struct agent_channel *ch, const char *path, const char *user, uint64_t offset,
			       uint64_t length, uint32_t flags, uint32_t window,
			       const struct agent_fs_ops *ops, void *arg);
/* The consumer has taken the bytes before offset (absolute). */
void agent_fs_ack(struct agent_fs *fs, uint64_t offset);
/* A write stream: agent_fs_write_data..., agent_fs_commit, then done or error. */
struct agent_fs *agent_fs_write(struct agent_channel *ch, const char *path, const char *user, uint32_t mode,
				uint32_t flags, const struct agent_fs_ops *ops, void *arg);
void agent_fs_write_data(struct agent_fs *fs, const void *data, size_t len);
void agent_fs_commit(struct agent_fs *fs);
/* Bytes of this request (and the channel) not yet handed to the socket:
 * pause the source above a mark. */
size_t agent_fs_pending(const struct agent_fs *fs);
/* No more callbacks; a stream is dropped at the agent (a write's temporary
 * removed). Safe from inside a callback. */
void agent_fs_close(struct agent_fs *fs);

/* ---- TCP streams (AGENT_TCP_*, see include/agent/protocol.h) ----
 * A TCP connection the agent opens to 127.0.0.1:port inside the sandbox,
 * carried on the channel. Sent only to an agent whose WELCOME announced
 * AGENT_FEATURE_TCP (an older one: closed ENOTSUP). Not resumed across a
 * broken channel: an open stream is closed ECONNRESET. Callbacks from the
 * loop; after closed nothing more, and the handle is freed by the channel. */
struct agent_tcp;

struct agent_tcp_ops {
	void (*opened)(void *arg);
	/* bytes from the port: the consumer calls agent_tcp_consumed as it takes
	 * them, which is what lets the agent send more */
	void (*data)(void *arg, const uint8_t *data, size_t len);
	void (*end)(void *arg);	     /* the app shut its side: no more data */
	void (*writable)(void *arg); /* after a write that answered 1: room again */
	/* the end: code 0 when both sides shut, else an errno (ECONNREFUSED,
	 * ECONNRESET, EMFILE past AGENT_TCP_STREAMS_MAX, ENOTSUP, ESRCH) */
	void (*closed)(void *arg, int code, const char *message);
};

/* window: bytes the agent may send past what was consumed (0: AGENT_TCP_WINDOW). */
struct agent_tcp *agent_tcp_open(struct agent_channel *ch, int port, uint32_t window,
				 const struct agent_tcp_ops *ops, void *arg);
/* Queues bytes for the app (sent as the agent's window allows): 0, 1 when
 * the queue is over AGENT_TCP_WINDOW (stop; writable follows), -1 when the
 * stream is shut or ended. */
int agent_tcp_write(struct agent_tcp *t, const void *data, size_t len);
/* Our EOF, after the queued bytes. */
void agent_tcp_shut(struct agent_tcp *t);
/* The consumer has taken len more bytes of data. */
void agent_tcp_consumed(struct agent_tcp *t, size_t len);
/* No more callbacks; the stream is aborted at the agent unless it ended.
 * Safe from inside a callback. */
void agent_tcp_close(struct agent_tcp *t);

#endif
