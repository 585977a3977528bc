/* Services: a SPAWN with SERVICE is kept, as the frame that came, in a file of
 * the services folder named after the service, and spawned again from it at
 * every start of the agent (the container's layer outlives a stop). Ports
 * are probed with non-blocking connects whose outcome the poll loop reports. */
#include "service.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cmd.h"
#include "core/check.h"
#include "core/log.h"

struct kept {
	char name[AGENT_SERVICE_ID_MAX + 1];
	struct timespec mtime;
};

static int service_path(const struct agent *a, const uint8_t *id, uint32_t len, bool tmp, char *buf,
			size_t cap);
static size_t kept_list(const struct agent *a, struct kept **out);
static int kept_cmp(const void *x, const void *y);
static bool service_start_one(struct agent *a, const char *name);
static struct in_addr probe_address(void);
static void probe_start(struct agent *a, struct cmd *c);
static int64_t probe_delay(struct cmd *c);

const char *services_dir(void)
{
	const char *d = getenv("SANDBAR_AGENT_SERVICES");
	if (!d)
		return SERVICES_DIR;
	return *d ? d : NULL;
}

/* <dir>/<id>, or <dir>/.<id>.tmp while it is written (a dot first: never a
 * service's name). -1 when it does not fit. */
static int service_path(const struct agent *a, const uint8_t *id, uint32_t len, bool tmp, char *buf,
			size_t cap)
{
	int n = snprintf(buf, cap, "%s/%s%.*s%s", a->services_dir, tmp ? "." : "", (int)len, (const char *)id,
			 tmp ? ".tmp" : "");
	return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* The kept services (their files' names and times), unsorted; free *out. */
static size_t kept_list(const struct agent *a, struct kept **out)
{
	*out = NULL;
	DIR *d = opendir(a->services_dir);
	if (!d)
		return 0;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (de->d_name[0] == '.' || len > AGENT_SERVICE_ID_MAX)
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			*out = realloc(*out, cap * sizeof(**out));
			CHECK(*out != NULL);
		}
		memcpy((*out)[n].name, de->d_name, len + 1);
		(*out)[n++].mtime = st.st_mtim;
	}
	closedir(d);
	return n;
}

static int kept_cmp(const void *x, const void *y)
{
	const struct kept *p = x, *q = y;
	if (p->mtime.tv_sec != q->mtime.tv_sec)
		return p->mtime.tv_sec < q->mtime.tv_sec ? -1 : 1;
	if (p->mtime.tv_nsec != q->mtime.tv_nsec)
		return p->mtime.tv_nsec < q->mtime.tv_nsec ? -1 : 1;
	return strcmp(p->name, q->name);
}

int service_keep(struct agent *a, const struct agent_frame *f, const struct agent_req *r, int *code,
		 char *msg, size_t msglen)
{
	char path[4096], tmp[4096];
	struct kept *list = NULL;
	*code = 0;
	if (!a->services_dir) {
		*code = ENOTSUP;
		snprintf(msg, msglen, "services are turned off in this agent");
		return -1;
	}
	if (service_path(a, r->service, r->service_len, false, path, sizeof(path)) != 0 ||
	    service_path(a, r->service, r->service_len, true, tmp, sizeof(tmp)) != 0) {
		*code = ENAMETOOLONG;
		snprintf(msg, msglen, "the services folder's path is too long");
		return -1;
	}
	if (mkdir(a->services_dir, 0700) != 0 && errno != EEXIST) {
		*code = errno;
		snprintf(msg, msglen, "services folder %s: %s", a->services_dir, strerror(errno));
		return -1;
	}
	size_t n = kept_list(a, &list);
	for (size_t i = 0; i < n && !*code; i++) {
		if (strlen(list[i].name) == r->service_len &&
		    memcmp(list[i].name, r->service, r->service_len) == 0)
			*code = EEXIST;
	}
	free(list);
	if (*code) {
		snprintf(msg, msglen, "service %.*s is kept already", (int)r->service_len,
			 (const char *)r->service);
		return -1;
	}
	if (n >= AGENT_SERVICES_MAX) {
		*code = EDQUOT;
		snprintf(msg, msglen, "this sandbox keeps %d services already (the most)",
			 AGENT_SERVICES_MAX);
		return -1;
	}
	/* the frame as it came: its header rebuilt, then the payload */
	uint8_t h[AGENT_FRAME_HEADER] = { (uint8_t)(f->len >> 24),
					  (uint8_t)(f->len >> 16),
					  (uint8_t)(f->len >> 8),
					  (uint8_t)f->len,
					  f->type,
					  f->flags,
					  0,
					  0,
					  0,
					  0,
					  0,
					  0 };
	struct iovec iov[2] = { { h, sizeof(h) }, { (void *)f->payload, f->len } };
	ssize_t want = (ssize_t)(sizeof(h) + f->len);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	int err = fd < 0 ? errno : 0;
	if (fd >= 0) {
		ssize_t w = writev(fd, iov, 2);
		err = w == want ? 0 : w < 0 ? errno : EIO;
		if (close(fd) != 0 && !err)
			err = errno;
		if (!err && rename(tmp, path) != 0)
			err = errno;
		if (err)
			unlink(tmp);
	}
	if (err) {
		*code = err;
		snprintf(msg, msglen, "keeping service %.*s: %s", (int)r->service_len,
			 (const char *)r->service, strerror(err));
		return -1;
	}
	log_info("service %.*s kept", (int)r->service_len, (const char *)r->service);
	return 0;
}

void service_unkeep(struct agent *a, const struct agent_req *r)
{
	char path[4096];
	if (a->services_dir && service_path(a, r->service, r->service_len, false, path, sizeof(path)) == 0)
		unlink(path);
}

/* One kept service spawned again from its file. */
static bool service_start_one(struct agent *a, const char *name)
{
	char path[4096], msg[512];
	uint8_t *buf = NULL;
	const char *why = NULL;
	char **argv = NULL, **env = NULL;
	struct agent_frame f;
	struct agent_req r;
	struct cmd *cmd;
	int code = 0;
	bool ok = false;
	if (service_path(a, (const uint8_t *)name, (uint32_t)strlen(name), false, path, sizeof(path)) != 0)
		return false;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < AGENT_FRAME_HEADER ||
	    st.st_size > (off_t)(AGENT_FRAME_HEADER + AGENT_FRAME_MAX)) {
		why = fd < 0 ? strerror(errno) : "not a kept SPAWN";
		goto out;
	}
	buf = malloc((size_t)st.st_size);
	CHECK(buf != NULL);
	if (read(fd, buf, (size_t)st.st_size) != st.st_size ||
	    agent_frame_parse(buf, (size_t)st.st_size, &f) != st.st_size || f.type != AGENT_SPAWN) {
		why = "not a kept SPAWN";
		goto out;
	}
	if (agent_req_decode(&f, &r, &why) != 0)
		goto out;
	if (!r.service || r.service_len != strlen(name) || memcmp(r.service, name, r.service_len) != 0) {
		why = "its SERVICE is not its name";
		goto out;
	}
	argv = agent_req_strings(&f, AGENT_T_ARGV, r.argc);
	env = agent_req_strings(&f, AGENT_T_ENV, r.envc);
	if (cmd_spawn(a, &r, argv, env, &cmd, &code, msg, sizeof(msg)) != 0) {
		why = msg;
		goto out;
	}
	log_info("service %s started again: command %u, pid %d", name, cmd->id, (int)cmd->pid);
	ok = true;
out:
	if (!ok)
		log_warn("service %s not started: %s", name, why ? why : "?");
	if (fd >= 0)
		close(fd);
	free(buf);
	free(argv);
	free(env);
	return ok;
}

size_t services_start(struct agent *a)
{
	if (!a->services_dir)
		return 0;
	struct kept *list;
	size_t n = kept_list(a, &list), started = 0;
	if (n > 1)
		qsort(list, n, sizeof(*list), kept_cmp);
	for (size_t i = 0; i < n; i++)
		started += service_start_one(a, list[i].name);
	free(list);
	return started;
}

void service_forget(struct agent *a, const uint8_t *id, uint32_t id_len, bool *kept, pid_t *pid)
{
	char path[4096];
	*kept = false;
	*pid = 0;
	if (a->services_dir && service_path(a, id, id_len, false, path, sizeof(path)) == 0)
		*kept = unlink(path) == 0;
	for (struct cmd *c = a->cmds; c; c = c->next) {
		if (strlen(c->service) != id_len || memcmp(c->service, id, id_len) != 0)
			continue;
		c->service[0] = '\0';
		*kept = true;
		if (c->state != CMD_RUNNING)
			continue;
		log_info("service %.*s forgotten: SIGTERM to group %d", (int)id_len, (const char *)id,
			 (int)c->pid);
		kill(-c->pid, SIGTERM);
		c->kill_at = a->now + (c->grace_ms > 0 ? c->grace_ms : 0);
		*pid = c->pid;
	}
}

/* ---- readiness ---- */

/* What a published port reaches: the sandbox's own address (the first up,
 * non-loopback IPv4 one), else loopback. A server bound to 127.0.0.1 only is
 * not ready: nothing outside could reach it. */
static struct in_addr probe_address(void)
{
	struct in_addr addr = { htonl(INADDR_LOOPBACK) };
	struct ifaddrs *ifs;
	if (getifaddrs(&ifs) != 0)
		return addr;
	for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
		if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && (i->ifa_flags & IFF_UP) &&
		    !(i->ifa_flags & IFF_LOOPBACK)) {
			addr = ((const struct sockaddr_in *)(const void *)i->ifa_addr)->sin_addr;
			break;
		}
	}
	freeifaddrs(ifs);
	return addr;
}

/* A service just started (a woken sandbox's, with a request held for it) is
 * probed every few ms at first, backing off to SERVICE_PROBE_MS: readiness
 * is seen within about twice the app's own start-up time. */
static int64_t probe_delay(struct cmd *c)
{
	unsigned tries = c->probe_tries++;
	int64_t ms = SERVICE_PROBE_FIRST_MS;
	while (tries-- > 0 && ms < SERVICE_PROBE_MS)
		ms *= 2;
	return ms < SERVICE_PROBE_MS ? ms : SERVICE_PROBE_MS;
}

static void probe_ready(struct cmd *c)
{
	c->ready = true;
	log_info("cmd %u: port %u ready", c->id, (unsigned)c->port);
}

/* A probe refused or timed out: the address is looked up again now and then
 * (the network may have changed), not at every try. */
static void probe_failed(struct agent *a, struct cmd *c)
{
	c->probe_at = a->now + probe_delay(c);
	if (++c->probe_fails >= SERVICE_PROBE_REFRESH) {
		c->probe_fails = 0;
		c->probe_addr = 0;
	}
}

static void probe_start(struct agent *a, struct cmd *c)
{
	if (c->probe_addr == 0)
		c->probe_addr = probe_address().s_addr; /* getifaddrs once per command, not per try */
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(c->port),
				  .sin_addr = { c->probe_addr } };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c->probe_at = a->now + SERVICE_PROBE_MS; /* no socket: later */
	if (fd < 0)
		return;
	if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) == 0) {
		probe_ready(c);
	} else if (errno == EINPROGRESS) {
		c->probe_fd = fd;
		c->probe_at = a->now + SERVICE_PROBE_TIMEOUT_MS;
		return;
	} else {
		probe_failed(a, c);
	}
	close(fd);
}

int64_t service_timers(struct agent *a)
{
	int64_t next = 0;
	for (struct cmd *c = a->cmds; c; c = c->next) {
		if (c->state != CMD_RUNNING || c->port == 0 || c->ready)
			continue;
		if (a->now >= c->probe_at) {
			if (c->probe_fd >= 0) { /* no answer in time: another try later */
				service_probe_stop(c);
				probe_failed(a, c);
			} else {
				probe_start(a, c);
			}
		}
		if (!c->ready && (!next || c->probe_at < next))
			next = c->probe_at;
	}
	return next;
}

void service_probe_io(struct agent *a, struct cmd *c, short revents)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (c->probe_fd < 0)
		return;
	if (getsockopt(c->probe_fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	service_probe_stop(c);
	if (err == 0 && (revents & POLLOUT) && !(revents & POLLERR))
		probe_ready(c);
	else
		probe_failed(a, c);
}

void service_probe_stop(struct cmd *c)
{
	if (c->probe_fd >= 0)
		close(c->probe_fd);
	c->probe_fd = -1;
	c->ready = false;
}
