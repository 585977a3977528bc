/* sandbar-agent: PID 1 of every sandbox (init mode: main child, zombies,
 * signals, the protocol socket and its poll loop) and the relay that
 * sandbard runs through a Docker exec to reach it. */
#include <errno.h>
#include <grp.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "cmd.h"
#include "conn.h"
#include "fs.h"
#include "login.h"
#include "service.h"
#include "tcp.h"
#include "users.h"
#include "core/check.h"
#include "core/log.h"

#ifndef SANDBAR_VERSION
#define SANDBAR_VERSION "dev"
#endif

#define SHUTDOWN_GRACE_MS 2000
#define RELAY_BUF	  (256u * 1024)

enum pfd_kind { PFD_SIGNAL, PFD_LISTEN, PFD_CONN, PFD_CMD, PFD_PROBE, PFD_TCP, PFD_LOGIN };

struct pfd_ref {
	enum pfd_kind kind;
	void *obj;
	uint32_t id;	   /* PFD_PROBE: the command, found again (a request may forget it meanwhile) */
	struct conn *conn; /* PFD_TCP: the stream's (streams and connections are freed between passes) */
};

struct init_state {
	struct agent a;
	int sfd, lfd;
	pid_t main_pid; /* 0: none or exited */
	int main_status;
	bool main_done;
	int64_t shutdown_at; /* monotonic ms, 0: not shutting down */
	struct pollfd *pfds;
	struct pfd_ref *refs;
	size_t npfd, cap;
};

static const char *socket_name(void);
static socklen_t socket_addr(struct sockaddr_un *sa);
static int listen_socket(void);
static void ensure_stdio(void);
static pid_t start_main(char **argv, const struct user_info *user);
static void on_signals(struct init_state *s);
static void on_accept(struct init_state *s);
static void pfd_add(struct init_state *s, int fd, short events, enum pfd_kind kind, void *obj);
static void build_pollfds(struct init_state *s);
static int64_t earliest(int64_t x, int64_t y);
static int run_init(int argc, char **argv);
static int run_relay(void);
static int run_env0(void);
static int usage(void);

static const char *socket_name(void)
{
	const char *n = getenv("SANDBAR_AGENT_SOCKET");
	return n && *n ? n : "@sandbar-agent";
}

/* A name starting with @ is in the abstract namespace (per network
 * namespace, so `docker exec` reaches it and no path is needed). */
static socklen_t socket_addr(struct sockaddr_un *sa)
{
	const char *name = socket_name();
	size_t len = strlen(name);
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (len >= sizeof(sa->sun_path))
		len = sizeof(sa->sun_path) - 1;
	memcpy(sa->sun_path, name, len);
	if (name[0] == '@') {
		sa->sun_path[0] = '\0';
		return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	}
	return (socklen_t)sizeof(*sa);
}

static int listen_socket(void)
{
	struct sockaddr_un sa;
	socklen_t sl = socket_addr(&sa);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (sa.sun_path[0])
		unlink(sa.sun_path);
	if (bind(fd, (struct sockaddr *)&sa, sl) < 0 || listen(fd, 64) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Pipes must never land on 0-2, or a child's dup2() would clobber them. */
static void ensure_stdio(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
			abort();
	}
}

/* The image's own program, in its own process group, as the template's
 * containerUser when there is one (the agent itself stays root). */
static pid_t start_main(char **argv, const struct user_info *user)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	if (user && (setgroups(user->ngroups, user->groups) != 0 || setgid(user->gid) != 0 ||
		     setuid(user->uid) != 0)) {
		fprintf(stderr, "sandbar-agent: cannot become uid %u: %s\n", (unsigned)user->uid,
			strerror(errno));
		_exit(126);
	}
	sigset_t none;
	sigemptyset(&none);
	setpgid(0, 0);
	if (isatty(0)) { /* the image's program gets the terminal, if there is one */
		signal(SIGTTOU, SIG_IGN);
		tcsetpgrp(0, getpid());
	}
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execvp(argv[0], argv);
	fprintf(stderr, "sandbar-agent: exec %s: %s\n", argv[0], strerror(errno));
	_exit(errno == ENOENT ? 127 : 126);
}

static void on_signals(struct init_state *s)
{
	struct signalfd_siginfo si;
	while (read(s->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		int sig = (int)si.ssi_signo;
		if (sig == SIGCHLD) {
			int st;
			pid_t pid;
			while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
				if (pid == s->main_pid) {
					s->main_status = st;
					s->main_done = true;
					s->main_pid = 0;
				} else if (!fs_reaped(&s->a, pid, st) && !login_reaped(&s->a, pid, st)) {
					cmd_reaped(&s->a, pid, st); /* else an orphan: reaped, gone */
				}
			}
			continue;
		}
		if (s->main_pid > 0) {
			kill(s->main_pid, sig);
		} else if ((sig == SIGTERM || sig == SIGINT) && !s->shutdown_at) {
			log_info("signal %d: stopping %zu commands", sig, cmd_running(&s->a));
			cmd_signal_all(&s->a, SIGTERM);
			s->shutdown_at = s->a.now + SHUTDOWN_GRACE_MS;
		}
	}
}

static void on_accept(struct init_state *s)
{
	for (;;) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		/* the socket is reachable by anything in the sandbox: only root (or
		 * the agent's own user) may drive it */
		struct ucred cr;
		socklen_t cl = sizeof(cr);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 ||
		    (cr.uid != 0 && cr.uid != geteuid())) {
			log_warn("connection from uid %d refused", (int)cr.uid);
			close(fd);
			continue;
		}
		int big = 1 << 20;
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
		conn_new(&s->a, fd);
	}
}

static void pfd_add(struct init_state *s, int fd, short events, enum pfd_kind kind, void *obj)
{
	if (s->npfd == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 64;
		s->pfds = realloc(s->pfds, s->cap * sizeof(*s->pfds));
		s->refs = realloc(s->refs, s->cap * sizeof(*s->refs));
		CHECK(s->pfds && s->refs);
	}
	s->pfds[s->npfd] = (struct pollfd){ .fd = fd, .events = events };
	s->refs[s->npfd] = (struct pfd_ref){ .kind = kind, .obj = obj, .id = 0, .conn = NULL };
	s->npfd++;
}

static void build_pollfds(struct init_state *s)
{
	s->npfd = 0;
	pfd_add(s, s->sfd, POLLIN, PFD_SIGNAL, NULL);
	if (s->lfd >= 0)
		pfd_add(s, s->lfd, POLLIN, PFD_LISTEN, NULL);
	for (struct conn *c = s->a.conns; c; c = c->next) {
		short ev = (short)((conn_wants_read(c) ? POLLIN : 0) | (conn_wants_write(c) ? POLLOUT : 0));
		if (ev)
			pfd_add(s, c->fd, ev, PFD_CONN, c);
		for (struct tcp_stream *t = c->tcp; t; t = tcp_next(t)) {
			short tev = tcp_events(c, t);
			if (tev) {
				pfd_add(s, tcp_fd(t), tev, PFD_TCP, t);
				s->refs[s->npfd - 1].conn = c;
			}
		}
	}
	for (struct cmd *c = s->a.cmds; c; c = c->next) {
		bool in_pending = c->in_fd >= 0 && (c->in_len > c->in_off || c->in_close);
		/* a lossless reader a whole ring behind: leave the output unread,
		 * the command blocks on its full pipe until the reader ACKs */
		bool paused = cmd_paused(c);
		if (c->pty && c->out_fd >= 0) {
			short ev = (short)((paused ? 0 : POLLIN) | (in_pending ? POLLOUT : 0));
			if (ev)
				pfd_add(s, c->out_fd, ev, PFD_CMD, c);
			continue;
		}
		if (c->out_fd >= 0 && !paused)
			pfd_add(s, c->out_fd, POLLIN, PFD_CMD, c);
		if (c->err_fd >= 0 && !paused)
			pfd_add(s, c->err_fd, POLLIN, PFD_CMD, c);
		if (in_pending)
			pfd_add(s, c->in_fd, POLLOUT, PFD_CMD, c);
	}
	for (struct login_env *l = s->a.logins; l; l = login_next(l)) {
		if (login_fd(l) >= 0)
			pfd_add(s, login_fd(l), POLLIN, PFD_LOGIN, l);
	}
	for (struct cmd *c = s->a.cmds; c; c = c->next) {
		if (c->probe_fd >= 0) {
			pfd_add(s, c->probe_fd, POLLOUT, PFD_PROBE, NULL);
			s->refs[s->npfd - 1].id = c->id;
		}
	}
}

/* The earlier of two deadlines, 0 being none. */
static int64_t earliest(int64_t x, int64_t y)
{
	return !x || (y && y < x) ? y : x;
}

static int run_init(int argc, char **argv)
{
	struct init_state s = { .sfd = -1, .lfd = -1 };
	sigset_t mask;
	char **main_argv = NULL;
	const char *user_name = NULL, *login_name = NULL;
	int arg = 2;
	while (arg + 1 < argc) {
		if (strcmp(argv[arg], "--user") == 0)
			user_name = argv[arg + 1];
		else if (strcmp(argv[arg], "--login") == 0)
			login_name = argv[arg + 1];
		else
			break;
		arg += 2;
	}
	if (arg < argc) {
		if (strcmp(argv[arg], "--") != 0 || arg + 1 >= argc)
			return usage();
		main_argv = argv + arg + 1;
	}
	struct user_info user;
	if (user_name && users_resolve(NULL, user_name, &user) != 0) {
		fprintf(stderr, "sandbar-agent: unknown user '%s'\n", user_name);
		return 1;
	}
	ensure_stdio();
	s.a.started_at = agent_wall_ms();
	s.a.now = agent_mono_ms();
	s.a.next_id = 1;
	s.a.services_dir = services_dir();
	/* login environments are printed by this very binary, run as the user */
	static char self[4096];
	static const char *printer[] = { self, "env0", NULL };
	ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (sl > 0 && self[0] == '/') {
		self[sl] = '\0';
		s.a.login_printer = printer;
	}
	/* orphans of commands come back to us on the host too, not only as PID 1 */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	/* an ignored signal survives exec: none inherited from whoever started
	 * us reaches the commands (kill SIGINT must end a background sleep) */
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction sa;
		if (sig != SIGKILL && sig != SIGSTOP && sigaction(sig, NULL, &sa) == 0 &&
		    sa.sa_handler == SIG_IGN)
			signal(sig, SIG_DFL);
	}
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	s.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	CHECK(s.sfd >= 0);
	s.lfd = listen_socket();
	if (s.lfd < 0) {
		log_error("cannot listen on %s: %s", socket_name(), strerror(errno));
		if (!main_argv)
			return 1;
	}
	if (main_argv) {
		s.main_pid = start_main(main_argv, user_name ? &user : NULL);
		if (s.main_pid < 0) {
			log_error("fork: %s", strerror(errno));
			return 1;
		}
	}
	/* the services kept before the sandbox stopped, after the image's own program */
	size_t services = services_start(&s.a);
	if (services)
		log_info("%zu services started again", services);
	/* whom commands will run as: their login environment from the start */
	login_warm(&s.a, login_name);
	for (;;) {
		s.a.now = agent_mono_ms();
		int64_t next = earliest(earliest(cmd_timers(&s.a), service_timers(&s.a)), login_timers(&s.a));
		conn_pump_all(&s.a);
		conn_reap_closed(&s.a);
		if (s.main_done)
			break;
		if (s.shutdown_at && (cmd_running(&s.a) == 0 || s.a.now >= s.shutdown_at))
			break;
		if (s.shutdown_at)
			next = earliest(next, s.shutdown_at);
		build_pollfds(&s);
		int timeout = -1;
		if (next)
			timeout = next <= s.a.now ? 0 : (int)(next - s.a.now);
		int n = poll(s.pfds, s.npfd, timeout);
		if (n < 0 && errno != EINTR) {
			log_error("poll: %s", strerror(errno));
			return 1;
		}
		s.a.now = agent_mono_ms();
		for (size_t i = 0; n > 0 && i < s.npfd; i++) {
			short re = s.pfds[i].revents;
			if (!re)
				continue;
			switch (s.refs[i].kind) {
			case PFD_SIGNAL:
				on_signals(&s);
				break;
			case PFD_LISTEN:
				on_accept(&s);
				break;
			case PFD_CONN:
				conn_io(&s.a, s.refs[i].obj, re);
				break;
			case PFD_CMD:
				cmd_io(&s.a, s.refs[i].obj, s.pfds[i].fd, re);
				break;
			case PFD_TCP:
				tcp_io(&s.a, s.refs[i].conn, s.refs[i].obj, re);
				break;
			case PFD_LOGIN:
				login_io(&s.a, s.refs[i].obj, re);
				break;
			case PFD_PROBE: {
				struct cmd *c = cmd_find(&s.a, s.refs[i].id);
				if (c && c->probe_fd == s.pfds[i].fd)
					service_probe_io(&s.a, c, re);
				break;
			}
			}
		}
	}
	/* leaving: whatever is left of the commands goes with us */
	cmd_signal_all(&s.a, SIGKILL);
	conn_free_all(&s.a);
	cmd_free_all(&s.a);
	login_free_all(&s.a);
	free(s.pfds);
	free(s.refs);
	if (s.lfd >= 0)
		close(s.lfd);
	close(s.sfd);
	if (s.main_done) {
		if (WIFSIGNALED(s.main_status))
			return 128 + WTERMSIG(s.main_status);
		return WEXITSTATUS(s.main_status);
	}
	return 0;
}

/* stdin -> socket and socket -> stdout, big buffers, until the agent closes. */
static int run_relay(void)
{
	struct sockaddr_un sa;
	socklen_t sl = socket_addr(&sa);
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&sa, sl) < 0) {
		fprintf(stderr, "sandbar-agent relay: cannot connect to %s: %s\n", socket_name(),
			strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	int fds[3] = { 0, 1, sock };
	for (int i = 0; i < 3; i++)
		fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
	static uint8_t up[RELAY_BUF], down[RELAY_BUF];
	size_t up_len = 0, up_off = 0, down_len = 0, down_off = 0;
	bool in_eof = false, sock_eof = false, shut = false;
	for (;;) {
		if (in_eof && up_len == 0 && !shut) {
			shutdown(sock, SHUT_WR);
			shut = true;
		}
		if (sock_eof && down_len == 0)
			return 0;
		struct pollfd p[3] = {
			{ .fd = !in_eof && up_len == 0 ? 0 : -1, .events = POLLIN },
			{ .fd = down_len > 0 ? 1 : -1, .events = POLLOUT },
			{ .fd = sock,
			  .events = (short)((!sock_eof && down_len == 0 ? POLLIN : 0) |
					    (up_len > 0 ? POLLOUT : 0)) },
		};
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		ssize_t n;
		if (p[0].revents) {
			n = read(0, up, sizeof(up));
			if (n > 0)
				up_len = (size_t)n, up_off = 0;
			else if (n == 0 || errno != EAGAIN)
				in_eof = true;
		}
		if (p[2].revents & (POLLIN | POLLHUP | POLLERR) && !sock_eof && down_len == 0) {
			n = read(sock, down, sizeof(down));
			if (n > 0)
				down_len = (size_t)n, down_off = 0;
			else if (n == 0 || errno != EAGAIN)
				sock_eof = true;
		}
		if (up_len > 0) {
			n = send(sock, up + up_off, up_len - up_off, MSG_NOSIGNAL);
			if (n > 0) {
				up_off += (size_t)n;
				if (up_off == up_len)
					up_len = up_off = 0;
			} else if (n < 0 && errno != EAGAIN) {
				return 1;
			}
		}
		if (down_len > 0) {
			n = write(1, down + down_off, down_len - down_off);
			if (n > 0) {
				down_off += (size_t)n;
				if (down_off == down_len)
					down_len = down_off = 0;
			} else if (n < 0 && errno != EAGAIN) {
				return 1;
			}
		}
	}
}

/* The environment, NUL-separated as `env -0` prints it: what a user's login
 * shell runs to hand its environment to the agent (login.c). */
static int run_env0(void)
{
	extern char **environ;
	for (char **e = environ; *e; e++) {
		const char *p = *e;
		size_t left = strlen(p) + 1;
		while (left > 0) {
			ssize_t n = write(1, p, left);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return 1;
			p += n;
			left -= (size_t)n;
		}
	}
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: sandbar-agent init [--user NAME] [--login NAME] [-- cmd args...] | relay | "
			"env0 | --version\n"
			"  --user: whom the image's command runs as; --login: whose login environment\n"
			"  to work out at the start (default: the agent's own, without HOME)\n"
			"  env SANDBAR_AGENT_SOCKET: the socket (@name: abstract), default @sandbar-agent\n"
			"  env SANDBAR_AGENT_SERVICES: where services are kept, default " SERVICES_DIR
			" (empty: none)\n"
			"  env SANDBAR_AGENT_LOG: debug, info, warn (default), error\n");
	return 2;
}

int main(int argc, char **argv)
{
	enum log_level lvl = LOG_LEVEL_WARN;
	const char *l = getenv("SANDBAR_AGENT_LOG");
	if (l && log_level_parse(l, &lvl) != 0)
		lvl = LOG_LEVEL_WARN;
	log_set_level(lvl);
	if (argc < 2)
		return usage();
	if (strcmp(argv[1], "--version") == 0) {
		printf("sandbar-agent %s (protocol %d)\n", SANDBAR_VERSION, AGENT_PROTOCOL_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "init") == 0)
		return run_init(argc, argv);
	if (strcmp(argv[1], "relay") == 0)
		return run_relay();
	if (strcmp(argv[1], "env0") == 0)
		return run_env0();
	return usage();
}
