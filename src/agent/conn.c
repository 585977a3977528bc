/* Connections: requests in, answers and subscribed output out. Output is
 * pulled from the rings by cursors with a window (see protocol.h); a
 * connection's own buffer above its high watermark stops production for it
 * alone, so a stuck reader never holds up the agent. A lossless sub holds
 * up its own command only (cmd->keep_list). */
#include "conn.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cmd.h"
#include "core/check.h"
#include "core/log.h"
#include "fs.h"
#include "request.h"
#include "ring.h"
#include "service.h"
#include "tcp.h"

struct sub {
	struct sub *next;
	struct cmd *cmd;
	uint8_t tag[AGENT_TAG_MAX];
	uint32_t tag_len;
	uint64_t cursor, acked; /* next byte to send; bytes before acked are consumed */
	uint32_t window;
	bool lossless;	       /* holds the producer rather than lose a byte */
	bool quiet;	       /* sends no OUTPUT, only EXITED: nobody reads the output */
	struct sub *keep_next; /* in cmd->keep_list while lossless */
};

static void conn_set_state(struct conn *c, enum conn_state to, const char *why);
static void conn_read(struct agent *a, struct conn *c);
static void conn_write(struct conn *c);
static size_t conn_pending(const struct conn *c);
static void send_error(struct conn *c, const struct agent_req *r, int code, const char *msg);
static void msg_tag(struct conn *c, const uint8_t *tag, uint32_t len);
static void send_exited(struct conn *c, const struct sub *s);
static struct sub *sub_add(struct conn *c, struct cmd *cmd, const uint8_t *tag, uint32_t tag_len,
			   uint64_t offset, uint32_t window, bool lossless);
static void sub_quiet(struct sub *s);
static struct sub *sub_find(struct conn *c, uint32_t id, const uint8_t *tag, uint32_t tag_len);
static void sub_remove(struct conn *c, struct sub *s);
static bool sub_pump(struct conn *c, struct sub *s);
static void keep_set(struct sub *s, bool lossless);
static void keep_update(struct cmd *cmd);
static void do_spawn(struct agent *a, struct conn *c, const struct agent_frame *f, const struct agent_req *r);
static void do_list(struct agent *a, struct conn *c, const struct agent_req *r);
static void do_forget(struct agent *a, struct conn *c, struct cmd *cmd, const struct agent_req *r);
static void do_unservice(struct agent *a, struct conn *c, const struct agent_req *r);

static const char *const state_names[CONN_STATE_MAX] = { "open", "closing" };

static void conn_set_state(struct conn *c, enum conn_state to, const char *why)
{
	static const bool legal[CONN_STATE_MAX][CONN_STATE_MAX] = {
		[CONN_OPEN][CONN_CLOSING] = true,
	};
	CHECK(legal[c->state][to]);
	log_debug("conn %d: %s -> %s (%s)", c->fd, state_names[c->state], state_names[to], why);
	c->state = to;
}

struct conn *conn_new(struct agent *a, int fd)
{
	struct conn *c = calloc(1, sizeof(*c));
	CHECK(c != NULL);
	c->fd = fd;
	c->state = CONN_OPEN;
	agent_msg_init(&c->out);
	c->next = a->conns;
	a->conns = c;
	return c;
}

static size_t conn_pending(const struct conn *c)
{
	return c->out.len - c->out_off;
}

bool conn_wants_read(const struct conn *c)
{
	return c->state == CONN_OPEN && conn_pending(c) < CONN_OUT_STOP_IN;
}

bool conn_wants_write(const struct conn *c)
{
	return c->state == CONN_OPEN && conn_pending(c) > 0;
}

void conn_io(struct agent *a, struct conn *c, short revents)
{
	if (c->state != CONN_OPEN)
		return;
	if (revents & POLLOUT)
		conn_write(c);
	if (c->state == CONN_OPEN && (revents & (POLLIN | POLLHUP | POLLERR)))
		conn_read(a, c);
}

static void conn_read(struct agent *a, struct conn *c)
{
	if (c->in_cap - c->in_len < 64 * 1024) {
		size_t cap = c->in_cap ? c->in_cap * 2 : 128 * 1024;
		uint8_t *nb = realloc(c->in, cap);
		CHECK(nb != NULL);
		c->in = nb;
		c->in_cap = cap;
	}
	ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_set_state(c, CONN_CLOSING, n == 0 ? "eof" : strerror(errno));
		return;
	}
	c->in_len += (size_t)n;
	size_t pos = 0;
	while (c->state == CONN_OPEN) {
		struct agent_frame f;
		long used = agent_frame_parse(c->in + pos, c->in_len - pos, &f);
		if (used < 0) {
			log_warn("conn %d: malformed frame header, closing", c->fd);
			conn_set_state(c, CONN_CLOSING, "malformed frame");
			return;
		}
		if (used == 0)
			break;
		conn_handle_frame(a, c, &f);
		pos += (size_t)used;
	}
	memmove(c->in, c->in + pos, c->in_len - pos);
	c->in_len -= pos;
	/* a large frame must fit whole: grow to it, up to AGENT_FRAME_MAX */
	if (c->in_len >= AGENT_FRAME_HEADER) {
		size_t need = AGENT_FRAME_HEADER + ((size_t)c->in[0] << 24 | (size_t)c->in[1] << 16 |
						    (size_t)c->in[2] << 8 | c->in[3]);
		if (need > c->in_cap) {
			uint8_t *nb = realloc(c->in, need + 64 * 1024);
			CHECK(nb != NULL);
			c->in = nb;
			c->in_cap = need + 64 * 1024;
		}
	}
}

static void conn_write(struct conn *c)
{
	while (conn_pending(c) > 0) {
		ssize_t n =
			send(c->fd, c->out.buf + c->out_off, conn_pending(c), MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		conn_set_state(c, CONN_CLOSING, strerror(errno));
		return;
	}
	if (c->out_off == c->out.len) {
		c->out_off = c->out.len = 0;
	} else if (c->out_off > (1u << 20)) {
		memmove(c->out.buf, c->out.buf + c->out_off, conn_pending(c));
		c->out.len -= c->out_off;
		c->out_off = 0;
	}
}

/* ---- answers ---- */

static void msg_tag(struct conn *c, const uint8_t *tag, uint32_t len)
{
	if (tag)
		agent_msg_bytes(&c->out, AGENT_T_TAG, tag, len);
}

static void send_error(struct conn *c, const struct agent_req *r, int code, const char *msg)
{
	agent_msg_begin(&c->out, AGENT_ERROR, 0, r->id);
	msg_tag(c, r->tag, r->tag_len);
	agent_msg_u64(&c->out, AGENT_T_CODE, (uint64_t)code);
	agent_msg_str(&c->out, AGENT_T_MESSAGE, msg);
	CHECK(agent_msg_end(&c->out) == 0);
}

static void send_exited(struct conn *c, const struct sub *s)
{
	const struct cmd *cmd = s->cmd;
	agent_msg_begin(&c->out, AGENT_EXITED, 0, cmd->id);
	msg_tag(c, s->tag, s->tag_len);
	agent_msg_u64(&c->out, AGENT_T_EXIT_CODE, (uint64_t)(int64_t)cmd->exit_code);
	agent_msg_u64(&c->out, AGENT_T_SIGNAL, (uint64_t)cmd->signo);
	agent_msg_u64(&c->out, AGENT_T_TIMED_OUT, cmd->timed_out);
	agent_msg_u64(&c->out, AGENT_T_STARTED_AT, (uint64_t)cmd->started_at);
	agent_msg_u64(&c->out, AGENT_T_ENDED_AT, (uint64_t)cmd->ended_at);
	agent_msg_u64(&c->out, AGENT_T_OFFSET, ring_end(cmd->ring));
	CHECK(agent_msg_end(&c->out) == 0);
}

/* ---- subscriptions ---- */

static struct sub *sub_find(struct conn *c, uint32_t id, const uint8_t *tag, uint32_t tag_len)
{
	for (struct sub *s = c->subs; s; s = s->next) {
		if ((id == 0 || s->cmd->id == id) && s->tag_len == tag_len &&
		    (tag_len == 0 || memcmp(s->tag, tag, tag_len) == 0))
			return s;
	}
	return NULL;
}

/* Links or unlinks a sub in its command's keepers, then recomputes the hold. */
static void keep_set(struct sub *s, bool lossless)
{
	struct cmd *cmd = s->cmd;
	if (lossless && !s->lossless) {
		s->keep_next = cmd->keep_list;
		cmd->keep_list = s;
	} else if (!lossless && s->lossless) {
		for (struct sub **pp = &cmd->keep_list; *pp; pp = &(*pp)->keep_next) {
			if (*pp == s) {
				*pp = s->keep_next;
				break;
			}
		}
		s->keep_next = NULL;
	}
	s->lossless = lossless;
	keep_update(cmd);
}

/* The command's hold: its oldest byte a lossless sub has not acknowledged. */
static void keep_update(struct cmd *cmd)
{
	bool was = cmd_paused(cmd);
	cmd->keepers = 0;
	cmd->keep_from = UINT64_MAX;
	for (struct sub *k = cmd->keep_list; k; k = k->keep_next) {
		cmd->keepers++;
		if (k->acked < cmd->keep_from)
			cmd->keep_from = k->acked;
	}
	if (cmd->keepers == 0)
		cmd->keep_from = 0;
	bool now = cmd_paused(cmd);
	if (was != now)
		log_debug("cmd %u: output %s at %llu", cmd->id, now ? "paused" : "resumed",
			  (unsigned long long)cmd->keep_from);
}

static struct sub *sub_add(struct conn *c, struct cmd *cmd, const uint8_t *tag, uint32_t tag_len,
			   uint64_t offset, uint32_t window, bool lossless)
{
	struct sub *s = sub_find(c, cmd->id, tag, tag_len);
	if (!s) {
		s = calloc(1, sizeof(*s));
		CHECK(s != NULL);
		s->next = c->subs;
		c->subs = s;
		cmd->readers++;
	}
	s->cmd = cmd;
	if (tag_len)
		memcpy(s->tag, tag, tag_len);
	s->tag_len = tag_len;
	s->cursor = s->acked = offset;
	s->window = window ? window : AGENT_WINDOW_DEFAULT;
	s->quiet = false;
	keep_set(s, lossless);
	return s;
}

/* Nobody reads the output any more: no hold, and the cursor follows the
 * ring's end (sub_pump), so only EXITED will be sent. */
static void sub_quiet(struct sub *s)
{
	s->quiet = true;
	keep_set(s, false);
}

static void sub_remove(struct conn *c, struct sub *s)
{
	for (struct sub **pp = &c->subs; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			keep_set(s, false); /* a vanished reader holds nothing up */
			s->cmd->readers--;
			free(s);
			return;
		}
	}
}

/* Sends what the window and the watermark allow; true when the sub is done
 * (EXITED sent). */
static bool sub_pump(struct conn *c, struct sub *s)
{
	static uint8_t buf[CONN_OUTPUT_MAX];
	struct cmd *cmd = s->cmd;
	if (s->quiet)
		s->cursor = s->acked = ring_end(cmd->ring);
	while (!s->quiet && conn_pending(c) < CONN_OUT_HIGH) {
		uint64_t start = ring_start(cmd->ring), end = ring_end(cmd->ring);
		if (s->cursor < start) {
			agent_msg_begin(&c->out, AGENT_OUTPUT, AGENT_FLAG_GAP, cmd->id);
			msg_tag(c, s->tag, s->tag_len);
			agent_msg_u64(&c->out, AGENT_T_OFFSET, start);
			CHECK(agent_msg_end(&c->out) == 0);
			s->cursor = start;
			if (s->acked < start) { /* lost bytes are not in flight */
				s->acked = start;
				if (s->lossless)
					keep_update(cmd);
			}
		}
		if (s->cursor >= end)
			break;
		uint64_t inflight = s->cursor - s->acked;
		if (inflight >= s->window)
			return false;
		uint64_t room = s->window - inflight;
		size_t max = room < CONN_OUTPUT_MAX ? (size_t)room : CONN_OUTPUT_MAX;
		uint8_t stream = 0;
		size_t n = ring_copy(cmd->ring, s->cursor, max, &stream, buf);
		CHECK(n > 0);
		agent_msg_begin(&c->out, AGENT_OUTPUT, 0, cmd->id);
		msg_tag(c, s->tag, s->tag_len);
		agent_msg_u64(&c->out, AGENT_T_STREAM, stream);
		agent_msg_u64(&c->out, AGENT_T_OFFSET, s->cursor);
		agent_msg_bytes(&c->out, AGENT_T_DATA, buf, n);
		CHECK(agent_msg_end(&c->out) == 0);
		s->cursor += n;
	}
	if (cmd->state == CMD_EXITED && s->cursor >= ring_end(cmd->ring) && conn_pending(c) < CONN_OUT_HIGH) {
		send_exited(c, s);
		return true;
	}
	return false;
}

void conn_pump_all(struct agent *a)
{
	for (struct conn *c = a->conns; c; c = c->next) {
		if (c->state != CONN_OPEN)
			continue;
		for (struct sub *s = c->subs, *next; s; s = next) {
			next = s->next;
			if (sub_pump(c, s))
				sub_remove(c, s);
		}
		fs_pump(a, c);
		if (conn_pending(c) > 0)
			conn_write(c);
	}
}

/* ---- requests ---- */

static void do_spawn(struct agent *a, struct conn *c, const struct agent_frame *f, const struct agent_req *r)
{
	char **argv = agent_req_strings(f, AGENT_T_ARGV, r->argc);
	char **env = agent_req_strings(f, AGENT_T_ENV, r->envc);
	struct cmd *cmd = NULL;
	int code = 0;
	char msg[512];
	/* a service is kept first: it never runs without coming back */
	int rc = r->service ? service_keep(a, f, r, &code, msg, sizeof(msg)) : 0;
	if (rc == 0 && (rc = cmd_spawn(a, r, argv, env, &cmd, &code, msg, sizeof(msg))) != 0 && r->service)
		service_unkeep(a, r);
	if (rc != 0) {
		agent_msg_begin(&c->out, AGENT_SPAWN_FAILED, 0, 0);
		msg_tag(c, r->tag, r->tag_len);
		agent_msg_u64(&c->out, AGENT_T_CODE, (uint64_t)code);
		agent_msg_str(&c->out, AGENT_T_MESSAGE, msg);
		CHECK(agent_msg_end(&c->out) == 0);
	} else {
		agent_msg_begin(&c->out, AGENT_STARTED, 0, cmd->id);
		msg_tag(c, r->tag, r->tag_len);
		agent_msg_u64(&c->out, AGENT_T_PID, (uint64_t)cmd->pid);
		agent_msg_u64(&c->out, AGENT_T_STARTED_AT, (uint64_t)cmd->started_at);
		CHECK(agent_msg_end(&c->out) == 0);
		if (r->window > 0)
			sub_add(c, cmd, r->tag, r->tag_len, 0, r->window, r->lossless);
	}
	free(argv);
	free(env);
}

static void do_list(struct agent *a, struct conn *c, const struct agent_req *r)
{
	for (struct cmd *cmd = a->cmds; cmd; cmd = cmd->next) {
		bool exited = cmd->state == CMD_EXITED;
		agent_msg_begin(&c->out, AGENT_STATUS, 0, cmd->id);
		msg_tag(c, r->tag, r->tag_len);
		agent_msg_u64(&c->out, AGENT_T_PID, (uint64_t)cmd->pid);
		agent_msg_u64(&c->out, AGENT_T_STATE, exited ? AGENT_CMD_EXITED : AGENT_CMD_RUNNING);
		agent_msg_u64(&c->out, AGENT_T_EXIT_CODE, exited ? (uint64_t)(int64_t)cmd->exit_code : 0);
		agent_msg_u64(&c->out, AGENT_T_SIGNAL, exited ? (uint64_t)cmd->signo : 0);
		agent_msg_u64(&c->out, AGENT_T_TIMED_OUT, cmd->timed_out);
		agent_msg_u64(&c->out, AGENT_T_STARTED_AT, (uint64_t)cmd->started_at);
		agent_msg_u64(&c->out, AGENT_T_ENDED_AT, exited ? (uint64_t)cmd->ended_at : 0);
		agent_msg_u64(&c->out, AGENT_T_OFFSET, ring_end(cmd->ring));
		if (cmd->service[0])
			agent_msg_str(&c->out, AGENT_T_SERVICE, cmd->service);
		if (cmd->port) {
			agent_msg_u64(&c->out, AGENT_T_PORT, cmd->port);
			agent_msg_u64(&c->out, AGENT_T_READY, cmd->ready);
		}
		CHECK(agent_msg_end(&c->out) == 0);
	}
	agent_msg_begin(&c->out, AGENT_LIST_END, 0, 0);
	msg_tag(c, r->tag, r->tag_len);
	CHECK(agent_msg_end(&c->out) == 0);
}

static void do_forget(struct agent *a, struct conn *c, struct cmd *cmd, const struct agent_req *r)
{
	if (cmd->state != CMD_EXITED) {
		send_error(c, r, EBUSY, "command still running");
		return;
	}
	for (struct conn *o = a->conns; o; o = o->next) {
		for (struct sub *s = o->subs, *next; s; s = next) {
			next = s->next;
			if (s->cmd == cmd)
				sub_remove(o, s);
		}
	}
	cmd_forget(a, cmd);
}

static void do_unservice(struct agent *a, struct conn *c, const struct agent_req *r)
{
	bool kept;
	pid_t pid;
	service_forget(a, r->service, r->service_len, &kept, &pid);
	agent_msg_begin(&c->out, AGENT_UNSERVICED, 0, 0);
	msg_tag(c, r->tag, r->tag_len);
	agent_msg_u64(&c->out, AGENT_T_COUNT, kept);
	agent_msg_u64(&c->out, AGENT_T_PID, (uint64_t)pid);
	CHECK(agent_msg_end(&c->out) == 0);
}

void conn_handle_frame(struct agent *a, struct conn *c, const struct agent_frame *f)
{
	struct agent_req r;
	const char *why = NULL;
	if (agent_req_decode(f, &r, &why) != 0) {
		if (!agent_frame_valid(f)) /* no trustworthy TAG to echo */
			r.tag = NULL;
		r.id = f->id;
		send_error(c, &r, EINVAL, why);
		return;
	}
	struct cmd *cmd = NULL;
	switch (r.type) {
	case AGENT_STDIN:
	case AGENT_STDIN_CLOSE:
	case AGENT_SIGNAL:
	case AGENT_RESIZE:
	case AGENT_SUBSCRIBE:
	case AGENT_FORGET:
		cmd = cmd_find(a, r.id);
		if (!cmd) {
			send_error(c, &r, ENOENT, "no such command");
			return;
		}
		break;
	default:
		break;
	}
	switch (r.type) {
	case AGENT_HELLO:
		agent_msg_begin(&c->out, AGENT_WELCOME, 0, 0);
		msg_tag(c, r.tag, r.tag_len);
		agent_msg_u64(&c->out, AGENT_T_VERSION, AGENT_PROTOCOL_VERSION);
		agent_msg_u64(&c->out, AGENT_T_PID, (uint64_t)getpid());
		agent_msg_u64(&c->out, AGENT_T_STARTED_AT, (uint64_t)a->started_at);
		agent_msg_u64(&c->out, AGENT_T_FEATURES,
			      AGENT_FEATURE_FS | AGENT_FEATURE_FS_MOVE_SIZE | AGENT_FEATURE_TCP |
				      (a->services_dir ? AGENT_FEATURE_SERVICES : 0));
		CHECK(agent_msg_end(&c->out) == 0);
		break;
	case AGENT_SPAWN:
		do_spawn(a, c, f, &r);
		break;
	case AGENT_SUBSCRIBE: {
		if (r.offset > ring_end(cmd->ring)) {
			send_error(c, &r, ERANGE, "OFFSET beyond the command's output");
			return;
		}
		struct sub *s = sub_add(c, cmd, r.tag, r.tag_len, r.offset, r.window, r.lossless);
		if (r.quiet)
			sub_quiet(s);
		break;
	}
	case AGENT_ACK: {
		struct sub *s = sub_find(c, r.id, r.tag, r.tag_len);
		if (s && r.quiet)
			sub_quiet(s);
		else if (s && r.offset > s->acked) { /* late ACKs for a finished sub are fine */
			s->acked = r.offset < s->cursor ? r.offset : s->cursor;
			if (s->lossless)
				keep_update(s->cmd);
		}
		break;
	}
	case AGENT_UNSUBSCRIBE: {
		struct sub *s = sub_find(c, r.id, r.tag, r.tag_len);
		if (s)
			sub_remove(c, s);
		break;
	}
	case AGENT_STDIN:
		if (cmd_stdin(cmd, r.data, r.data_len) != 0)
			send_error(c, &r, errno, errno == EPIPE ? "stdin is closed" : "stdin queue full");
		break;
	case AGENT_STDIN_CLOSE:
		cmd_stdin_close(cmd);
		break;
	case AGENT_SIGNAL:
		if (cmd_signal(cmd, r.signo) != 0)
			send_error(c, &r, errno, strerror(errno));
		break;
	case AGENT_RESIZE:
		if (cmd_resize(cmd, r.rows, r.cols) != 0)
			send_error(c, &r, errno, strerror(errno));
		break;
	case AGENT_FORGET:
		do_forget(a, c, cmd, &r);
		break;
	case AGENT_LIST:
		do_list(a, c, &r);
		break;
	case AGENT_UNSERVICE:
		do_unservice(a, c, &r);
		break;
	case AGENT_FS:
	case AGENT_FS_READ:
	case AGENT_FS_WRITE:
	case AGENT_FS_DATA:
	case AGENT_FS_ACK:
	case AGENT_FS_COMMIT:
	case AGENT_FS_CLOSE:
		fs_handle(a, c, &r);
		break;
	case AGENT_TCP_OPEN:
	case AGENT_TCP_DATA:
	case AGENT_TCP_ACK:
	case AGENT_TCP_SHUT:
	case AGENT_TCP_CLOSE:
		tcp_handle(a, c, &r);
		break;
	case AGENT_PING:
		agent_msg_begin(&c->out, AGENT_PONG, 0, r.id);
		msg_tag(c, r.tag, r.tag_len);
		CHECK(agent_msg_end(&c->out) == 0);
		break;
	default:
		send_error(c, &r, EINVAL, "not a request");
		break;
	}
}

void conn_reap_closed(struct agent *a)
{
	for (struct conn **pp = &a->conns; *pp;) {
		struct conn *c = *pp;
		tcp_reap(a, c); /* the closed streams of every connection, all of a closing one's */
		if (c->state != CONN_CLOSING) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		while (c->subs)
			sub_remove(c, c->subs);
		fs_conn_closed(a, c);
		close(c->fd);
		free(c->in);
		agent_msg_free(&c->out);
		free(c);
	}
}

void conn_free_all(struct agent *a)
{
	for (struct conn *c = a->conns; c; c = c->next) {
		if (c->state == CONN_OPEN)
			conn_set_state(c, CONN_CLOSING, "exit");
	}
	conn_reap_closed(a);
}
