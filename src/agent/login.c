/* The login environment, kept per user and HOME: worked out by a capture (the
 * user's `/bin/sh -l` running a printer of its environment: the agent's
 * own `env0` mode), read from the poll loop, checked against the profile
 * files before each use and worked out again when one of them changed. */
#include "login.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmd.h"
#include "core/check.h"
#include "core/log.h"
#include "envdelta.h"
#include "users.h"

/* IDLE: none known yet. CAPTURING: the login shell runs. READY: base and
 * delta known. FAILED: the capture failed; tried again when a profile file
 * changes. */
enum login_state { LOGIN_IDLE, LOGIN_CAPTURING, LOGIN_READY, LOGIN_FAILED, LOGIN_STATE_MAX };

#define LOGIN_HOME_MAX 512

struct login_env {
	struct login_env *next;
	enum login_state state;
	uid_t uid;
	bool has_user, has_home;
	struct user_info user;	   /* whom the capture runs as (has_user) */
	char home[LOGIN_HOME_MAX]; /* the HOME the profile sees (has_home) */
	uint64_t print;		   /* the profile files' fingerprint when the capture started */
	pid_t pid;		   /* CAPTURING: the shell, 0 once reaped */
	int fd;			   /* CAPTURING: the pipe's read end, -1 at EOF */
	char *buf;
	size_t len, cap;
	int64_t deadline;     /* monotonic ms */
	char **base, **delta; /* what the profile started with; what it exported beyond */
};

static void login_set_state(struct login_env *l, enum login_state to);
static uint64_t fnv(uint64_t h, const void *p, size_t n);
static uint64_t stat_print(int dirfd, const char *path);
static uint64_t profile_print(const char *home);
static void capture_start(struct agent *a, struct login_env *l, uint64_t print);
static void capture_read(struct login_env *l);
static void capture_fail(struct login_env *l, const char *why);
static void capture_end(struct login_env *l, int status);

static const char *const state_names[LOGIN_STATE_MAX] = { "idle", "capturing", "ready", "failed" };

static void login_set_state(struct login_env *l, enum login_state to)
{
	static const bool legal[LOGIN_STATE_MAX][LOGIN_STATE_MAX] = {
		[LOGIN_IDLE][LOGIN_CAPTURING] = true,	[LOGIN_CAPTURING][LOGIN_READY] = true,
		[LOGIN_CAPTURING][LOGIN_FAILED] = true, [LOGIN_READY][LOGIN_CAPTURING] = true,
		[LOGIN_FAILED][LOGIN_CAPTURING] = true,
	};
	CHECK(legal[l->state][to]);
	log_debug("login uid %u home %s: %s -> %s", (unsigned)l->uid, l->has_home ? l->home : "(none)",
		  state_names[l->state], state_names[to]);
	l->state = to;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

/* What would tell a changed file: identity, size, modification and change
 * times (a chmod or an edit in place moves ctime); a constant when absent. */
static uint64_t stat_print(int dirfd, const char *path)
{
	struct stat st;
	uint64_t h = fnv(14695981039346656037ull, path, strlen(path));
	if (fstatat(dirfd, path, &st, 0) != 0)
		return fnv(h, "-", 1);
	int64_t f[] = { (int64_t)st.st_dev,	    (int64_t)st.st_ino,		(int64_t)st.st_size,
			(int64_t)st.st_mode,	    (int64_t)st.st_mtim.tv_sec, (int64_t)st.st_mtim.tv_nsec,
			(int64_t)st.st_ctim.tv_sec, (int64_t)st.st_ctim.tv_nsec };
	return fnv(h, f, sizeof(f));
}

/* The files a login `sh -l` reads (dash, bash as sh and busybox ash alike):
 * /etc/profile, the scripts of /etc/profile.d (added, removed or changed),
 * ~/.profile. */
static uint64_t profile_print(const char *home)
{
	uint64_t h = stat_print(AT_FDCWD, "/etc/profile") ^ stat_print(AT_FDCWD, "/etc/profile.d");
	DIR *d = opendir("/etc/profile.d");
	if (d) {
		struct dirent *e;
		uint64_t sum = 0; /* whatever order readdir gives */
		while ((e = readdir(d)) != NULL) {
			if (e->d_name[0] != '.')
				sum += stat_print(dirfd(d), e->d_name);
		}
		closedir(d);
		h ^= sum * 31;
	}
	if (home) {
		char path[600];
		snprintf(path, sizeof(path), "%s/.profile", home);
		h = h * 131 + stat_print(AT_FDCWD, path);
	}
	return h;
}

static void capture_start(struct agent *a, struct login_env *l, uint64_t print)
{
	char homekv[520];
	char *base[] = { "PATH=" AGENT_DEFAULT_PATH, homekv, NULL };
	snprintf(homekv, sizeof(homekv), "HOME=%s", l->home);
	if (!l->has_home)
		base[1] = NULL;
	free(l->base);
	free(l->delta);
	l->base = envdelta_diff(NULL, base); /* a copy: nothing is a shell's own */
	l->delta = NULL;
	l->print = print;
	l->len = 0;
	l->pid = 0;
	l->deadline = a->now + LOGIN_CAPTURE_MS;
	login_set_state(l, LOGIN_CAPTURING);

	/* the profile's own output goes to /dev/null; the printer's to fd 3 */
	char *argv[16] = { "/bin/sh", "-lc", "exec \"$@\" >&3 3>&-", "sh" };
	size_t n = 4;
	for (size_t i = 0; a->login_printer[i] && n + 1 < ARRAY_LEN(argv); i++)
		argv[n++] = (char *)a->login_printer[i];
	argv[n] = NULL;
	struct stat st;
	const char *cwd = l->has_home && stat(l->home, &st) == 0 && S_ISDIR(st.st_mode) ? l->home : "/";
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		capture_fail(l, strerror(errno));
		return;
	}
	fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
	pid_t pid = cmd_spawn_helper(argv, l->base, cwd, l->has_user ? &l->user : NULL, p[1]);
	int err = errno;
	close(p[1]);
	l->fd = p[0];
	if (pid < 0) {
		capture_fail(l, strerror(err));
		return;
	}
	l->pid = pid;
	log_debug("login uid %u: capture pid %d", (unsigned)l->uid, (int)pid);
}

static void capture_read(struct login_env *l)
{
	while (l->fd >= 0) {
		if (l->cap - l->len < 4096) {
			l->cap = l->cap ? l->cap * 2 : 8192;
			l->buf = realloc(l->buf, l->cap);
			CHECK(l->buf != NULL);
		}
		ssize_t n = read(l->fd, l->buf + l->len, l->cap - l->len);
		if (n > 0) {
			l->len += (size_t)n;
			if (l->len > LOGIN_CAPTURE_BYTES) {
				capture_fail(l, "environment too large");
				return;
			}
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		close(l->fd); /* EOF */
		l->fd = -1;
	}
}

/* No login environment for now: its commands take the login shell. */
static void capture_fail(struct login_env *l, const char *why)
{
	log_warn("login environment of uid %u not kept: %s (login shell strings run /bin/sh -lc)",
		 (unsigned)l->uid, why);
	if (l->pid > 0)
		kill(-l->pid, SIGKILL); /* its session's group: the profile's children too */
	l->pid = 0;
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	free(l->buf);
	l->buf = NULL;
	l->len = l->cap = 0;
	login_set_state(l, LOGIN_FAILED);
}

/* The shell was reaped: the printer wrote everything before it exited, so
 * what the pipe holds now is all (a background child of the profile may
 * still hold the pipe open: not waited for). */
static void capture_end(struct login_env *l, int status)
{
	capture_read(l);
	if (l->state != LOGIN_CAPTURING)
		return;
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char why[64];
		snprintf(why, sizeof(why), "the login shell ended with status %#x", (unsigned)status);
		capture_fail(l, why);
		return;
	}
	char **after = envdelta_parse(l->buf, l->len);
	if (!after) {
		capture_fail(l, "its environment came out unreadable");
		return;
	}
	l->delta = envdelta_diff(l->base, after);
	free(after);
	free(l->buf);
	l->buf = NULL;
	l->len = l->cap = 0;
	size_t n = 0;
	while (l->delta[n])
		n++;
	log_info("login environment of uid %u: %zu variables", (unsigned)l->uid, n);
	login_set_state(l, LOGIN_READY);
}

char **login_env_for(struct agent *a, const struct user_info *user, char **env, bool *ready)
{
	*ready = false;
	if (!a->login_printer)
		return NULL;
	uid_t uid = user ? user->uid : geteuid();
	const char *home = envdelta_get(env, "HOME", 4);
	if (home && strlen(home) >= LOGIN_HOME_MAX)
		return NULL;
	struct login_env *l = a->logins;
	size_t entries = 0;
	for (; l; l = l->next, entries++) {
		if (l->uid == uid && l->has_home == (home != NULL) && (!home || strcmp(l->home, home) == 0))
			break;
	}
	if (!l && entries >= LOGIN_ENTRIES_MAX)
		return NULL; /* a HOME per request would start a capture per command */
	uint64_t print = profile_print(home);
	if (!l) {
		l = calloc(1, sizeof(*l));
		CHECK(l != NULL);
		l->uid = uid;
		l->fd = -1;
		l->has_user = user != NULL;
		if (user)
			l->user = *user;
		l->has_home = home != NULL;
		if (home)
			snprintf(l->home, sizeof(l->home), "%s", home);
		l->next = a->logins;
		a->logins = l;
	}
	if (l->state == LOGIN_IDLE || (l->state != LOGIN_CAPTURING && l->print != print)) {
		capture_start(a, l, print);
		return NULL;
	}
	if (l->state != LOGIN_READY)
		return NULL;
	*ready = true;
	return envdelta_apply(env, l->base, l->delta);
}

void login_warm(struct agent *a, const char *user_name)
{
	struct user_info user;
	char homekv[LOGIN_HOME_MAX + 8];
	char *env[] = { homekv, NULL };
	bool ready;
	if (user_name && users_resolve(NULL, user_name, &user) != 0) {
		log_warn("login environment of '%s' not worked out: no such user", user_name);
		return;
	}
	snprintf(homekv, sizeof(homekv), "HOME=%s", user_name ? user.home : "");
	if (!user_name)
		env[0] = NULL;
	free(login_env_for(a, user_name ? &user : NULL, env, &ready));
}

bool login_reaped(struct agent *a, pid_t pid, int status)
{
	for (struct login_env *l = a->logins; l; l = l->next) {
		if (l->state == LOGIN_CAPTURING && l->pid == pid) {
			l->pid = 0;
			capture_end(l, status);
			return true;
		}
	}
	return false;
}

void login_io(struct agent *a, struct login_env *l, short revents)
{
	(void)a;
	(void)revents;
	if (l->state == LOGIN_CAPTURING)
		capture_read(l);
}

int64_t login_timers(struct agent *a)
{
	int64_t next = 0;
	for (struct login_env *l = a->logins; l; l = l->next) {
		if (l->state != LOGIN_CAPTURING)
			continue;
		if (a->now >= l->deadline) {
			capture_fail(l, "the login shell took too long");
			continue;
		}
		if (!next || l->deadline < next)
			next = l->deadline;
	}
	return next;
}

int login_fd(const struct login_env *l)
{
	return l->state == LOGIN_CAPTURING ? l->fd : -1;
}

struct login_env *login_next(const struct login_env *l)
{
	return l->next;
}

bool login_capturing(const struct login_env *l)
{
	return l->state == LOGIN_CAPTURING;
}

void login_free_all(struct agent *a)
{
	while (a->logins) {
		struct login_env *l = a->logins;
		a->logins = l->next;
		if (l->pid > 0)
			kill(-l->pid, SIGKILL);
		if (l->fd >= 0)
			close(l->fd);
		free(l->buf);
		free(l->base);
		free(l->delta);
		free(l);
	}
}
