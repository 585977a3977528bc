/* Commands: each is the leader of its own session and process group; its
 * output goes to the ring whoever listens, and it is finished when both its
 * pipes hit EOF and its status is known (or shortly after the leader exited,
 * when a background grandchild keeps a pipe open). */
#include "cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "agent/protocol.h"
#include "core/check.h"
#include "core/log.h"
#include "login.h"
#include "ring.h"
#include "service.h"
#include "shellwords.h"
#include "users.h"

enum child_stage { STAGE_SETUP = 1, STAGE_USER, STAGE_CWD, STAGE_EXEC };

struct child_setup {
	char **argv, **env;
	const char *shell; /* argv are a shell string's words: if they cannot be exec'd, sh -c it */
	const char *cwd;
	const struct user_info *user; /* NULL: stay root */
	int in, out, err;	      /* the child's ends; -1 for the PTY */
	int pty_slave;		      /* -1 unless on a PTY */
	int fd3;		      /* -1, or what the child gets as fd 3 (a helper's pipe) */
	volatile int *failed;	      /* [stage, errno], set by a child that could not exec */
};

static void cmd_set_state(struct cmd *c, enum cmd_state to);
static _Noreturn void child_exec(const struct child_setup *s);
static _Noreturn void child_fail(volatile int *failed, int stage, int err);
static void exec_search(char **argv, char **env);
static pid_t spawn_child(const struct child_setup *s);
static pid_t spawn_exec(const struct child_setup *s);
static int open_pty(int *master, int *slave, int rows, int cols);
static void read_output(struct agent *a, struct cmd *c, int fd, size_t budget);
static void close_fd(int *fd);
static void close_output(struct cmd *c, int fd);
static void write_stdin(struct cmd *c);
static void maybe_finish(struct agent *a, struct cmd *c);
static char *cstr(const uint8_t *p, uint32_t n, char *buf, size_t cap);
static void cmd_evict(struct agent *a);
static char **env_with_pwd(char **env, const char *dir);

static const char *const state_names[CMD_STATE_MAX] = { "running", "draining", "exited" };

static void cmd_set_state(struct cmd *c, enum cmd_state to)
{
	static const bool legal[CMD_STATE_MAX][CMD_STATE_MAX] = {
		[CMD_RUNNING][CMD_DRAINING] = true,
		[CMD_DRAINING][CMD_EXITED] = true,
	};
	CHECK(legal[c->state][to]);
	log_debug("cmd %u: %s -> %s", c->id, state_names[c->state], state_names[to]);
	c->state = to;
}

static char *cstr(const uint8_t *p, uint32_t n, char *buf, size_t cap)
{
	if (n >= cap)
		n = (uint32_t)cap - 1;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return buf;
}

/* ---- the child, between fork and exec: only async-signal-safe calls ---- */

/* The agent's memory is the child's until it execs or exits: the reason is
 * left there, where the agent reads it when vfork returns. */
static _Noreturn void child_fail(volatile int *failed, int stage, int err)
{
	failed[0] = stage;
	failed[1] = err;
	_exit(127);
}

static void exec_search(char **argv, char **env)
{
	if (strchr(argv[0], '/')) {
		execve(argv[0], argv, env);
		return;
	}
	const char *path = AGENT_DEFAULT_PATH;
	for (char **e = env; e && *e; e++) {
		if (strncmp(*e, "PATH=", 5) == 0)
			path = *e + 5;
	}
	size_t alen = strlen(argv[0]);
	int seen_eacces = 0, last = ENOENT;
	for (const char *p = path;; p++) {
		const char *colon = strchr(p, ':');
		size_t dlen = colon ? (size_t)(colon - p) : strlen(p);
		char buf[4096];
		if (dlen + alen + 2 <= sizeof(buf)) {
			memcpy(buf, dlen ? p : ".", dlen ? dlen : 1);
			size_t off = dlen ? dlen : 1;
			buf[off] = '/';
			memcpy(buf + off + 1, argv[0], alen + 1);
			execve(buf, argv, env);
			if (errno == EACCES)
				seen_eacces = 1;
			else if (errno != ENOENT && errno != ENOTDIR)
				last = errno;
		}
		if (!colon)
			break;
		p = colon;
	}
	errno = seen_eacces ? EACCES : last;
}

/* Runs in a vfork child: it shares the agent's memory until execve, so it
 * touches nothing but its own stack, the setup and system calls. */
static _Noreturn void child_exec(const struct child_setup *s)
{
	sigset_t none;
	sigemptyset(&none);
	/* the agent ignores SIGPIPE only (an ignored signal survives exec); the
	 * others it takes through a signalfd, blocked, so unblocking them is all */
	signal(SIGPIPE, SIG_DFL);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (setsid() < 0)
		child_fail(s->failed, STAGE_SETUP, errno);
	if (s->pty_slave >= 0) {
		if (ioctl(s->pty_slave, TIOCSCTTY, 0) < 0)
			child_fail(s->failed, STAGE_SETUP, errno);
		for (int fd = 0; fd < 3; fd++) {
			if (dup2(s->pty_slave, fd) < 0)
				child_fail(s->failed, STAGE_SETUP, errno);
		}
	} else if (dup2(s->in, 0) < 0 || dup2(s->out, 1) < 0 || dup2(s->err, 2) < 0) {
		child_fail(s->failed, STAGE_SETUP, errno);
	}
	/* dup2 onto itself would leave close-on-exec set */
	if (s->fd3 >= 0 && (s->fd3 == 3 ? fcntl(3, F_SETFD, 0) : dup2(s->fd3, 3)) < 0)
		child_fail(s->failed, STAGE_SETUP, errno);
	if (s->user) {
		if (setgroups(s->user->ngroups, s->user->groups) < 0 || setgid(s->user->gid) < 0 ||
		    setuid(s->user->uid) < 0)
			child_fail(s->failed, STAGE_USER, errno);
	}
	if (s->cwd && chdir(s->cwd) < 0)
		child_fail(s->failed, STAGE_CWD, errno);
	exec_search(s->argv, s->env);
	if (s->shell) {
		/* not found, not executable, not a binary: the shell says so as it
		 * would have (sh: 1: x: not found, exit 127), or runs the script */
		char *sh_argv[] = { "/bin/sh", "-c", (char *)s->shell, NULL };
		execve("/bin/sh", sh_argv, s->env);
	}
	child_fail(s->failed, STAGE_EXEC, errno);
}

/* ---- spawning ---- */

/* env with PWD as dash exports it for a command run in dir (NULL: the
 * agent's own folder): kept when it names that folder, else its physical
 * path. NULL when env needs no change. One allocation (env's strings shared). */
static char **env_with_pwd(char **env, const char *dir)
{
	char here[PATH_MAX], real[PATH_MAX];
	struct stat want, st;
	if (!dir) {
		if (!getcwd(here, sizeof(here)))
			return NULL;
		dir = here;
	}
	if (stat(dir, &want) != 0)
		return NULL; /* the chdir fails anyway */
	size_t n = 0, at = SIZE_MAX;
	for (; env[n]; n++) {
		if (strncmp(env[n], "PWD=", 4) == 0)
			at = n;
	}
	if (at != SIZE_MAX && env[at][4] == '/' && stat(env[at] + 4, &st) == 0 && st.st_dev == want.st_dev &&
	    st.st_ino == want.st_ino)
		return NULL;
	if (!realpath(dir, real))
		return NULL;
	size_t rl = strlen(real);
	char **v = malloc((n + 2) * sizeof(char *) + rl + 5);
	CHECK(v != NULL);
	char *pwd = (char *)(v + n + 2);
	memcpy(pwd, "PWD=", 4);
	memcpy(pwd + 4, real, rl + 1);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (i != at)
			v[k++] = env[i];
	}
	v[k++] = pwd;
	v[k] = NULL;
	return v;
}

/* vfork: no copy of the agent's page tables, and the agent waits for the
 * exec anyway (0.17 ms less per command on a 2-core VM). Alone in its own
 * frame, so that nothing of the caller's lives in registers the child reuses. */
static __attribute__((noinline)) pid_t spawn_child(const struct child_setup *s)
{
	pid_t pid = vfork();
	if (pid == 0)
		child_exec(s);
	return pid;
}

/* spawn_child, and a child that could not exec reaped at once: vfork came
 * back only once it had exited 127, so the wait does not block. -1 then,
 * with errno its errno and s->failed saying at which stage. */
static pid_t spawn_exec(const struct child_setup *s)
{
	pid_t pid = spawn_child(s);
	if (pid > 0 && s->failed[0] != 0) {
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		errno = s->failed[1];
		return -1;
	}
	return pid;
}

static int open_pty(int *master, int *slave, int rows, int cols)
{
	/* by hand: openpty()/grantpt() may look up the tty group through NSS */
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0)
		return -1;
	int unlock = 0;
	unsigned int n;
	char name[64];
	struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
	if (ioctl(m, TIOCSPTLCK, &unlock) < 0 || ioctl(m, TIOCGPTN, &n) < 0)
		goto fail;
	snprintf(name, sizeof(name), "/dev/pts/%u", n);
	int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (s < 0)
		goto fail;
	ioctl(m, TIOCSWINSZ, &ws);
	*master = m;
	*slave = s;
	return 0;
fail:;
	int e = errno;
	close(m);
	errno = e;
	return -1;
}

pid_t cmd_spawn_helper(char **argv, char **env, const char *cwd, const struct user_info *user, int fd3)
{
	volatile int failed[2] = { 0, 0 };
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0)
		return -1;
	struct child_setup s = {
		.argv = argv,
		.env = env,
		.cwd = cwd,
		.user = user,
		.in = null,
		.out = null,
		.err = null,
		.pty_slave = -1,
		.fd3 = fd3,
		.failed = failed,
	};
	pid_t pid = spawn_exec(&s);
	int err = errno;
	close(null);
	errno = err;
	return pid;
}

int cmd_spawn(struct agent *a, const struct agent_req *req, char **argv, char **env, struct cmd **out,
	      int *code, char *msg, size_t msglen)
{
	char cwd[4097], uname[4097];
	struct user_info user;
	char *empty_env[] = { NULL };
	char **envp = env ? env : empty_env, **env2 = NULL;
	int p_in[2] = { -1, -1 }, p_out[2] = { -1, -1 }, p_err[2] = { -1, -1 };
	volatile int failed[2] = { 0, 0 };
	int master = -1, slave = -1;
	bool pty = req->rows > 0 && req->cols > 0;
	const char *stage = "setup";
	char *shell = NULL, **words = NULL, **env3 = NULL, **env_login = NULL;
	char *sh_argv[4] = { "/bin/sh", "-c", NULL, NULL };

	cmd_evict(a);
	if (req->user) {
		stage = "user";
		if (users_resolve(NULL, cstr(req->user, req->user_len, uname, sizeof(uname)), &user) != 0) {
			errno = ENOENT;
			snprintf(msg, msglen, "unknown user %s", uname);
			*code = ENOENT;
			return -1;
		}
		bool has_home = false;
		size_t n = 0;
		for (char **e = envp; *e; e++, n++)
			has_home |= strncmp(*e, "HOME=", 5) == 0;
		if (!has_home) { /* HOME from passwd */
			env2 = malloc((n + 2) * sizeof(char *) + sizeof(user.home) + 5);
			CHECK(env2 != NULL);
			char *home = (char *)(env2 + n + 2);
			snprintf(home, sizeof(user.home) + 5, "HOME=%s", user.home);
			memcpy(env2, envp, n * sizeof(char *));
			env2[n] = home;
			env2[n + 1] = NULL;
			envp = env2;
		}
	}
	if (req->shell) {
		shell = strndup((const char *)req->shell, req->shell_len);
		CHECK(shell != NULL);
		bool plain = !req->login;
		if (req->login) { /* the login environment, laid over envp when the agent knows it */
			env_login = login_env_for(a, req->user ? &user : NULL, envp, &plain);
			if (env_login)
				envp = env_login;
		}
		/* not known (yet): the login shell works it out itself */
		words = plain ? shellwords_split(shell, req->shell_len) : NULL;
		sh_argv[1] = plain ? "-c" : "-lc";
		sh_argv[2] = shell;
		argv = words ? words : sh_argv;
	}
	stage = "pipes";
	if (pty) {
		if (open_pty(&master, &slave, req->rows, req->cols) < 0)
			goto fail;
	} else {
		if (req->stdin_open) {
			if (pipe2(p_in, O_CLOEXEC) < 0)
				goto fail;
		} else if ((p_in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
			goto fail;
		}
		if (pipe2(p_out, O_CLOEXEC) < 0 || pipe2(p_err, O_CLOEXEC) < 0)
			goto fail;
	}
	if (words) { /* sh exports PWD: so does the direct exec */
		env3 = env_with_pwd(envp, req->cwd ? cstr(req->cwd, req->cwd_len, cwd, sizeof(cwd)) : NULL);
		if (env3)
			envp = env3;
	}
	struct child_setup s = {
		.argv = argv,
		.shell = words ? shell : NULL,
		.env = envp,
		.cwd = req->cwd ? cstr(req->cwd, req->cwd_len, cwd, sizeof(cwd)) : NULL,
		.user = req->user ? &user : NULL,
		.in = p_in[0],
		.out = p_out[1],
		.err = p_err[1],
		.pty_slave = slave,
		.fd3 = -1,
		.failed = failed,
	};
	stage = "fork";
	pid_t pid = spawn_exec(&s);
	if (pid < 0 && failed[0] == 0)
		goto fail; /* no child */
	close_fd(&p_in[0]);
	close_fd(&p_out[1]);
	close_fd(&p_err[1]);
	close_fd(&slave);
	if (pid < 0) { /* the child could not exec: it exited 127 */
		static const char *const stages[] = { "", "setup", "user", "cwd", "exec" };
		int st = failed[0], err = failed[1];
		const char *what = st == STAGE_CWD ? s.cwd : st == STAGE_EXEC ? argv[0] : "";
		snprintf(msg, msglen, "%s %s: %s", st >= 1 && st <= 4 ? stages[st] : "?", what,
			 strerror(err));
		*code = err;
		errno = err;
		stage = NULL;
		goto fail;
	}

	struct cmd *c = calloc(1, sizeof(*c));
	CHECK(c != NULL);
	c->id = a->next_id++;
	c->pid = pid;
	c->state = CMD_RUNNING;
	c->pty = pty;
	c->in_fd = pty ? master : p_in[1];
	c->out_fd = pty ? master : p_out[0];
	c->err_fd = pty ? -1 : p_err[0];
	int fds[3] = { c->in_fd, c->out_fd, c->err_fd };
	for (int i = 0; i < 3; i++) {
		if (fds[i] >= 0)
			fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
	}
	c->ring = ring_new(req->ring_bytes);
	if (req->service)
		memcpy(c->service, req->service, req->service_len);
	c->port = req->port;
	c->probe_fd = -1;
	c->probe_at = a->now; /* the first probe at the next loop pass */
	c->started_at = agent_wall_ms();
	c->grace_ms = (int64_t)req->grace_ms;
	if (req->timeout_ms > 0)
		c->term_at = a->now + (int64_t)req->timeout_ms;
	struct cmd **tail = &a->cmds;
	while (*tail)
		tail = &(*tail)->next;
	*tail = c;
	log_debug("cmd %u: pid %d %s%s", c->id, (int)pid, argv[0],
		  req->shell && !words ? " (through sh)" : "");
	free(env2);
	free(env3);
	free(env_login);
	free(words);
	free(shell);
	*out = c;
	return 0;
fail:
	if (stage) {
		*code = errno;
		snprintf(msg, msglen, "%s: %s", stage, strerror(errno));
	}
	int *fds_all[] = { &p_in[0], &p_in[1], &p_out[0], &p_out[1], &p_err[0], &p_err[1], &master, &slave };
	for (size_t i = 0; i < ARRAY_LEN(fds_all); i++)
		close_fd(fds_all[i]);
	free(env2);
	free(env3);
	free(env_login);
	free(words);
	free(shell);
	return -1;
}

/* ---- running ---- */

struct cmd *cmd_find(struct agent *a, uint32_t id)
{
	for (struct cmd *c = a->cmds; c; c = c->next) {
		if (c->id == id)
			return c;
	}
	return NULL;
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

/* An output fd hit EOF. A PTY's master is also its stdin: both go. */
static void close_output(struct cmd *c, int fd)
{
	if (c->pty && fd == c->out_fd) {
		c->in_fd = -1;
		c->in_len = c->in_off = 0;
	}
	if (fd == c->out_fd)
		close_fd(&c->out_fd);
	else if (fd == c->err_fd)
		close_fd(&c->err_fd);
}

/* Reads what is there now, up to budget bytes, so one chatty command cannot
 * starve the others in a loop pass. */
static void read_output(struct agent *a, struct cmd *c, int fd, size_t budget)
{
	static uint8_t buf[CMD_READ_CHUNK];
	uint8_t stream = c->pty		   ? AGENT_STREAM_PTY
			 : fd == c->out_fd ? AGENT_STREAM_STDOUT
					   : AGENT_STREAM_STDERR;
	(void)a;
	while (budget > 0) {
		size_t want = sizeof(buf);
		if (c->keepers > 0) { /* never past a lossless reader's unacknowledged bytes */
			size_t room = ring_room(c->ring, c->keep_from);
			if (room == 0)
				return;
			if (room < want)
				want = room;
		}
		ssize_t n = read(fd, buf, want);
		if (n > 0) {
			ring_write(c->ring, stream, buf, (size_t)n);
			budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		close_output(c, fd); /* EOF, or EIO from a PTY whose slave is gone */
		return;
	}
}

static void write_stdin(struct cmd *c)
{
	while (c->in_fd >= 0 && c->in_off < c->in_len) {
		ssize_t n = write(c->in_fd, c->in_buf + c->in_off, c->in_len - c->in_off);
		if (n > 0) {
			c->in_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		/* the reader is gone: drop what is queued */
		c->in_off = c->in_len = 0;
		if (!c->pty)
			close_fd(&c->in_fd);
		return;
	}
	c->in_off = c->in_len = 0;
	if (c->in_close && !c->pty)
		close_fd(&c->in_fd);
}

static void maybe_finish(struct agent *a, struct cmd *c)
{
	if (c->state != CMD_DRAINING || c->out_fd >= 0 || c->err_fd >= 0)
		return;
	cmd_set_state(c, CMD_EXITED);
	if (!c->pty)
		close_fd(&c->in_fd);
	c->in_fd = -1;
	free(c->in_buf);
	c->in_buf = NULL;
	c->in_len = c->in_off = c->in_cap = 0;
	c->drain_until = 0;
	ring_trim(c->ring); /* written no more: ring_bytes stays what is counted here */
	a->exited++;
	a->exited_bytes += ring_bytes(c->ring);
}

/* Before a new command starts: the oldest exited commands nobody reads go
 * while more are kept than the bounds allow (ids count up, so the list's
 * order is the age). */
static void cmd_evict(struct agent *a)
{
	struct cmd **pp = &a->cmds;
	while (*pp && (a->exited >= CMD_KEEP_EXITED || a->exited_bytes > CMD_KEEP_EXITED_BYTES)) {
		struct cmd *c = *pp;
		if (c->state != CMD_EXITED || c->readers > 0) {
			pp = &c->next;
			continue;
		}
		log_debug("cmd %u: forgotten (%zu exited kept, %zu bytes)", c->id, a->exited,
			  a->exited_bytes);
		cmd_forget(a, c); /* unlinks c: *pp is its successor */
	}
}

bool cmd_paused(const struct cmd *c)
{
	return c->keepers > 0 && ring_room(c->ring, c->keep_from) == 0;
}

void cmd_io(struct agent *a, struct cmd *c, int fd, short revents)
{
	if (c->pty && fd == c->out_fd && cmd_paused(c) && (revents & (POLLHUP | POLLERR))) {
		/* polled for stdin only, and the terminal hung up: nobody will read it */
		c->in_len = c->in_off = 0;
		return;
	}
	if (fd == c->out_fd || fd == c->err_fd) {
		if (revents & (POLLIN | POLLHUP | POLLERR))
			read_output(a, c, fd, 4 * CMD_READ_CHUNK);
		if (c->pty && fd == c->in_fd && (revents & POLLOUT))
			write_stdin(c);
	} else if (fd == c->in_fd) {
		if (revents & (POLLOUT | POLLERR | POLLHUP))
			write_stdin(c);
	}
	maybe_finish(a, c);
}

bool cmd_reaped(struct agent *a, pid_t pid, int status)
{
	for (struct cmd *c = a->cmds; c; c = c->next) {
		if (c->pid != pid || c->state != CMD_RUNNING)
			continue;
		if (WIFSIGNALED(status)) {
			c->exit_code = -1;
			c->signo = WTERMSIG(status);
		} else {
			c->exit_code = WEXITSTATUS(status);
			c->signo = 0;
		}
		c->ended_at = agent_wall_ms();
		c->term_at = 0;
		service_probe_stop(c);
		cmd_set_state(c, CMD_DRAINING);
		c->drain_until = a->now + CMD_DRAIN_MS;
		maybe_finish(a, c);
		return true;
	}
	return false;
}

int64_t cmd_timers(struct agent *a)
{
	int64_t next = 0;
	for (struct cmd *c = a->cmds; c; c = c->next) {
		if (c->term_at && a->now >= c->term_at) {
			log_info("cmd %u: timed out, SIGTERM to group %d", c->id, (int)c->pid);
			c->timed_out = true;
			c->term_at = 0;
			kill(-c->pid, SIGTERM);
			c->kill_at = a->now + (c->grace_ms > 0 ? c->grace_ms : 0);
		}
		if (c->kill_at && a->now >= c->kill_at) {
			kill(-c->pid, SIGKILL);
			c->kill_at = 0;
		}
		bool held = c->state == CMD_DRAINING && cmd_paused(c);
		if (held) {
			/* output waits for a lossless reader: the drain grace starts
			 * when it reads on, so no byte is cut off before EOF */
			c->drain_until = a->now + CMD_DRAIN_MS;
		} else if (c->state == CMD_DRAINING && a->now >= c->drain_until) {
			/* a background process holds the pipes: take what is there, finish */
			if (c->out_fd >= 0)
				read_output(a, c, c->out_fd, 16 * CMD_READ_CHUNK);
			if (c->err_fd >= 0)
				read_output(a, c, c->err_fd, 16 * CMD_READ_CHUNK);
			int fd = c->out_fd;
			close_output(c, fd);
			fd = c->err_fd;
			close_output(c, fd);
			maybe_finish(a, c);
		}
		int64_t d[] = { c->term_at, c->kill_at,
				c->state == CMD_DRAINING && !held ? c->drain_until : 0 };
		for (size_t i = 0; i < ARRAY_LEN(d); i++) {
			if (d[i] && (!next || d[i] < next))
				next = d[i];
		}
	}
	return next;
}

int cmd_signal(struct cmd *c, int signo)
{
	return kill(-c->pid, signo);
}

int cmd_stdin(struct cmd *c, const uint8_t *data, size_t len)
{
	if (c->in_fd < 0 || (c->in_close && !c->pty)) {
		errno = EPIPE;
		return -1;
	}
	if (c->in_len - c->in_off + len > CMD_STDIN_MAX) {
		errno = ENOBUFS;
		return -1;
	}
	if (c->in_off > 0 && c->in_off == c->in_len)
		c->in_off = c->in_len = 0;
	if (c->in_len + len > c->in_cap) {
		memmove(c->in_buf, c->in_buf + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
		size_t cap = c->in_cap ? c->in_cap : 4096;
		while (cap < c->in_len + len)
			cap *= 2;
		uint8_t *nb = realloc(c->in_buf, cap);
		CHECK(nb != NULL);
		c->in_buf = nb;
		c->in_cap = cap;
	}
	memcpy(c->in_buf + c->in_len, data, len);
	c->in_len += len;
	write_stdin(c); /* most writes fit in the pipe at once */
	return 0;
}

void cmd_stdin_close(struct cmd *c)
{
	if (c->pty) { /* a terminal has no EOF of its own: send its EOF character */
		static const uint8_t eof = 4;
		if (c->in_fd >= 0)
			(void)cmd_stdin(c, &eof, 1);
		return;
	}
	c->in_close = true;
	write_stdin(c);
}

int cmd_resize(struct cmd *c, int rows, int cols)
{
	struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };
	if (!c->pty || c->out_fd < 0) {
		errno = ENOTTY;
		return -1;
	}
	return ioctl(c->out_fd, TIOCSWINSZ, &ws);
}

void cmd_forget(struct agent *a, struct cmd *c)
{
	CHECK(c->state == CMD_EXITED);
	a->exited--;
	a->exited_bytes -= ring_bytes(c->ring);
	for (struct cmd **pp = &a->cmds; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	service_probe_stop(c);
	ring_free(c->ring);
	free(c->in_buf);
	free(c);
}

size_t cmd_running(const struct agent *a)
{
	size_t n = 0;
	for (const struct cmd *c = a->cmds; c; c = c->next)
		n += c->state == CMD_RUNNING;
	return n;
}

void cmd_signal_all(struct agent *a, int signo)
{
	for (struct cmd *c = a->cmds; c; c = c->next)
		kill(-c->pid, signo);
}

void cmd_free_all(struct agent *a)
{
	while (a->cmds) {
		struct cmd *c = a->cmds;
		a->cmds = c->next;
		if (c->out_fd >= 0 && c->out_fd != c->in_fd)
			close(c->out_fd);
		if (c->err_fd >= 0)
			close(c->err_fd);
		if (c->in_fd >= 0)
			close(c->in_fd);
		service_probe_stop(c);
		ring_free(c->ring);
		free(c->in_buf);
		free(c);
	}
}
