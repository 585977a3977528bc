/* One agent in-process behind a socketpair, and main.c's loop pass, for the
 * agent's unit tests (test_hold.c, test_service.c, test_fs.c). */
#include "world.h"

#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "cmd.h"
#include "conn.h"
#include "login.h"
#include "service.h"
#include "tcp.h"

#define WORLD_PFDS 256

void world_open(struct agent_world *w, world_frame_fn frame)
{
	int sv[2];
	memset(w, 0, sizeof(*w));
	w->frame = frame;
	w->a.next_id = 1;
	w->a.now = agent_mono_ms();
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	w->conn = conn_new(&w->a, sv[0]);
	w->peer = sv[1];
}

void world_close(struct agent_world *w)
{
	cmd_signal_all(&w->a, SIGKILL);
	while (waitpid(-1, NULL, 0) > 0)
		;
	conn_free_all(&w->a);
	cmd_free_all(&w->a);
	login_free_all(&w->a);
	close(w->peer);
	free(w->in);
	w->in = NULL;
}

void world_send(struct agent_world *w, struct agent_msg *m)
{
	assert_int_equal(agent_msg_end(m), 0);
	struct agent_frame f;
	size_t pos = 0;
	long used;
	while (pos < m->len && (used = agent_frame_parse(m->buf + pos, m->len - pos, &f)) > 0) {
		conn_handle_frame(&w->a, w->conn, &f);
		pos += (size_t)used;
	}
	agent_msg_free(m);
}

void world_spawn_sh(struct agent_msg *m, const char *tag, const char *script)
{
	agent_msg_init(m);
	agent_msg_begin(m, AGENT_SPAWN, 0, 0);
	agent_msg_str(m, AGENT_T_TAG, tag);
	agent_msg_str(m, AGENT_T_ARGV, "/bin/sh");
	agent_msg_str(m, AGENT_T_ARGV, "-c");
	agent_msg_str(m, AGENT_T_ARGV, script);
}

/* What main.c's build_pollfds asks for: a PTY's master for output and input
 * at once, pipes apart, a lossless reader a ring behind leaving the output
 * unread, the probes' connects, the TCP streams. kind: 0 connection, 1
 * command, 2 probe, 3 TCP stream (tcp[n] its), 4 a login capture's pipe
 * (login[n] its). */
static size_t world_pollfds(struct agent_world *w, struct pollfd *p, struct cmd **who, int *kind,
			    struct tcp_stream **tcp, struct login_env **login)
{
	size_t n = 0;
	for (struct conn *c = w->a.conns; c; c = c->next) {
		short ev = (short)((conn_wants_read(c) ? POLLIN : 0) | (conn_wants_write(c) ? POLLOUT : 0));
		if (ev && n < WORLD_PFDS) {
			p[n] = (struct pollfd){ .fd = c->fd, .events = ev };
			who[n] = NULL;
			kind[n++] = 0;
		}
		for (struct tcp_stream *t = c->tcp; t && n < WORLD_PFDS; t = tcp_next(t)) {
			short tev = tcp_events(c, t);
			if (tev) {
				p[n] = (struct pollfd){ .fd = tcp_fd(t), .events = tev };
				who[n] = NULL;
				tcp[n] = t;
				kind[n++] = 3;
			}
		}
	}
	for (struct login_env *l = w->a.logins; l && n < WORLD_PFDS; l = login_next(l)) {
		if (login_fd(l) >= 0) {
			p[n] = (struct pollfd){ .fd = login_fd(l), .events = POLLIN };
			who[n] = NULL;
			login[n] = l;
			kind[n++] = 4;
		}
	}
	for (struct cmd *c = w->a.cmds; c && n + 4 <= WORLD_PFDS; c = c->next) {
		bool paused = cmd_paused(c);
		bool in_pending = c->in_fd >= 0 && (c->in_len > c->in_off || c->in_close);
		struct pollfd want[4];
		int k[4], m = 0;
		if (c->pty && c->out_fd >= 0) {
			short ev = (short)((paused ? 0 : POLLIN) | (in_pending ? POLLOUT : 0));
			if (ev)
				want[m] = (struct pollfd){ .fd = c->out_fd, .events = ev }, k[m++] = 1;
		} else if (!c->pty) {
			if (c->out_fd >= 0 && !paused)
				want[m] = (struct pollfd){ .fd = c->out_fd, .events = POLLIN }, k[m++] = 1;
			if (c->err_fd >= 0 && !paused)
				want[m] = (struct pollfd){ .fd = c->err_fd, .events = POLLIN }, k[m++] = 1;
			if (in_pending)
				want[m] = (struct pollfd){ .fd = c->in_fd, .events = POLLOUT }, k[m++] = 1;
		}
		if (c->probe_fd >= 0)
			want[m] = (struct pollfd){ .fd = c->probe_fd, .events = POLLOUT }, k[m++] = 2;
		for (int i = 0; i < m; i++) {
			p[n] = want[i];
			who[n] = c;
			kind[n++] = k[i];
		}
	}
	return n;
}

void world_pass(struct agent_world *w, int timeout_ms)
{
	struct agent *a = &w->a;
	struct pollfd p[WORLD_PFDS];
	struct cmd *who[WORLD_PFDS];
	int kind[WORLD_PFDS];
	struct tcp_stream *tcp[WORLD_PFDS];
	struct login_env *login[WORLD_PFDS];
	int st;
	pid_t pid;
	a->now = agent_mono_ms();
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		if (!login_reaped(a, pid, st))
			cmd_reaped(a, pid, st);
	}
	cmd_timers(a);
	login_timers(a);
	int64_t next = service_timers(a);
	conn_pump_all(a);
	conn_reap_closed(a);
	size_t n = world_pollfds(w, p, who, kind, tcp, login);
	if (next && next - a->now < timeout_ms)
		timeout_ms = next <= a->now ? 0 : (int)(next - a->now);
	int r = poll(p, n, timeout_ms);
	assert_true(r >= 0 || errno == EINTR);
	a->now = agent_mono_ms();
	for (size_t i = 0; r > 0 && i < n; i++) {
		if (!p[i].revents)
			continue;
		if (kind[i] == 3 && w->conn)
			tcp_io(a, w->conn, tcp[i], p[i].revents);
		else if (kind[i] == 4)
			login_io(a, login[i], p[i].revents);
		else if (kind[i] == 2)
			service_probe_io(a, who[i], p[i].revents);
		else if (kind[i] == 1)
			cmd_io(a, who[i], p[i].fd, p[i].revents);
		else if (w->conn)
			conn_io(a, w->conn, p[i].revents);
	}
	world_take(w);
}

void world_take(struct agent_world *w)
{
	for (;;) {
		if (w->in_cap - w->in_len < 65536) {
			w->in_cap = w->in_cap ? w->in_cap * 2 : 1 << 20;
			w->in = realloc(w->in, w->in_cap);
			assert_non_null(w->in);
		}
		ssize_t got = read(w->peer, w->in + w->in_len, w->in_cap - w->in_len);
		if (got <= 0)
			break;
		w->in_len += (size_t)got;
	}
	size_t pos = 0;
	struct agent_frame f;
	long used;
	while ((used = agent_frame_parse(w->in + pos, w->in_len - pos, &f)) > 0) {
		pos += (size_t)used;
		w->frame(w, &f);
	}
	assert_true(used >= 0);
	memmove(w->in, w->in + pos, w->in_len - pos);
	w->in_len -= pos;
}
