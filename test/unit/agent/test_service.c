/* Services in the agent (src/agent/service.c), driven in-process like
 * test_hold.c: the commands, connections and services modules, a poll loop
 * like main.c's (probes included), real children, the client on the other
 * end of a socketpair. A service is kept in its folder, spawned again by the
 * next "start" under a new command id, reported with its SERVICE, PORT and
 * READY, and forgotten by UNSERVICE; the limits and refusals hold. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent.h"
#include "cmd.h"
#include "conn.h"
#include "ring.h"
#include "service.h"
#include "world.h"

#define SVC "0b6f1c1e-4d0a-4a8e-9c43-2f7c3b1a9d10"

/* The last frame of each kind the client got, as far as the tests look. */
struct got {
	uint32_t started_id, failed_code;
	bool started, failed, unserviced, list_end;
	uint64_t count, pid, features;
	size_t nstatus;
	struct {
		uint32_t id;
		uint64_t state, port, ready;
		char service[AGENT_SERVICE_ID_MAX + 1];
	} status[8];
};

struct world {
	struct agent_world aw;
	struct got got;
};

static char dir[] = "/tmp/sbsvcXXXXXX";

static void world_init(struct world *w);
static void on_frame(struct agent_world *aw, const struct agent_frame *f);
static void spawn_service(struct world *w, const char *id, uint16_t port, const char *cwd);
static void list(struct world *w);
static int listener(uint16_t *port);
static size_t kept(void);

static void world_init(struct world *w)
{
	memset(w, 0, sizeof(*w));
	world_open(&w->aw, on_frame);
	w->aw.a.services_dir = dir;
}

/* What the tests look at of a frame from the agent. */
static void on_frame(struct agent_world *aw, const struct agent_frame *f)
{
	struct world *w = (struct world *)aw;
	struct got *g = &w->got;
	uint64_t v = 0;
	const uint8_t *d;
	uint32_t len;
	switch (f->type) {
	case AGENT_STARTED:
		g->started = true;
		g->started_id = f->id;
		break;
	case AGENT_SPAWN_FAILED:
		g->failed = true;
		assert_int_equal(agent_frame_u64(f, AGENT_T_CODE, &v), 0);
		g->failed_code = (uint32_t)v;
		break;
	case AGENT_STATUS:
		assert_true(g->nstatus < 8);
		g->status[g->nstatus].id = f->id;
		agent_frame_u64(f, AGENT_T_STATE, &g->status[g->nstatus].state);
		agent_frame_u64(f, AGENT_T_PORT, &g->status[g->nstatus].port);
		agent_frame_u64(f, AGENT_T_READY, &g->status[g->nstatus].ready);
		if (agent_frame_bytes(f, AGENT_T_SERVICE, &d, &len) == 0) {
			assert_true(len <= AGENT_SERVICE_ID_MAX);
			memcpy(g->status[g->nstatus].service, d, len);
		}
		g->nstatus++;
		break;
	case AGENT_WELCOME:
		assert_int_equal(agent_frame_u64(f, AGENT_T_FEATURES, &g->features), 0);
		break;
	case AGENT_LIST_END:
		g->list_end = true;
		break;
	case AGENT_UNSERVICED:
		g->unserviced = true;
		assert_int_equal(agent_frame_u64(f, AGENT_T_COUNT, &g->count), 0);
		assert_int_equal(agent_frame_u64(f, AGENT_T_PID, &g->pid), 0);
		break;
	default:
		break; /* output of the subscription */
	}
}

static void spawn_service(struct world *w, const char *id, uint16_t port, const char *cwd)
{
	struct agent_msg m;
	world_spawn_sh(&m, "t", "echo \"$WHO $PWD\"; exec sleep 100");
	agent_msg_str(&m, AGENT_T_ENV, "WHO=service");
	agent_msg_str(&m, AGENT_T_CWD, cwd);
	agent_msg_u64(&m, AGENT_T_WINDOW, 65536);
	agent_msg_str(&m, AGENT_T_SERVICE, id);
	if (port)
		agent_msg_u64(&m, AGENT_T_PORT, port);
	w->got.started = w->got.failed = false;
	world_send(&w->aw, &m);
	for (int i = 0; i < 100 && !w->got.started && !w->got.failed; i++)
		world_pass(&w->aw, 10);
	assert_true(w->got.started || w->got.failed);
}

static void list(struct world *w)
{
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_LIST, 0, 0);
	agent_msg_str(&m, AGENT_T_TAG, "l");
	w->got.nstatus = 0;
	w->got.list_end = false;
	memset(w->got.status, 0, sizeof(w->got.status));
	world_send(&w->aw, &m);
	for (int i = 0; i < 100 && !w->got.list_end; i++)
		world_pass(&w->aw, 10);
	assert_true(w->got.list_end);
}

/* A TCP listener on every address, on a port of the kernel's choosing. */
static int listener(uint16_t *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr = { htonl(INADDR_ANY) } };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* Services in the folder. */
static size_t kept(void)
{
	size_t n = 0;
	DIR *d = opendir(dir);
	assert_non_null(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Kept, reported, ready once its port listens, back after a "restart" under
 * a new command id with the same env and cwd, gone after UNSERVICE. */
static void test_kept_ready_back_and_forgotten(void **state)
{
	(void)state;
	uint16_t port;
	int lfd = listener(&port); /* bound, not yet listening: connects are refused */
	struct world w;
	world_init(&w);
	spawn_service(&w, SVC, port, "/tmp");
	assert_true(w.got.started);
	uint32_t first = w.got.started_id;
	assert_int_equal(kept(), 1);
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, SVC);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600); /* the env may hold secrets */

	for (int i = 0; i < 60; i++) /* several probes, all refused */
		world_pass(&w.aw, 10);
	list(&w);
	assert_int_equal(w.got.nstatus, 1);
	assert_string_equal(w.got.status[0].service, SVC);
	assert_int_equal(w.got.status[0].port, port);
	assert_int_equal(w.got.status[0].ready, 0);
	/* the address was looked up once and kept across the refused tries (and
	 * forgotten every SERVICE_PROBE_REFRESH of them: a loaded machine may
	 * stop right there, so on to the next refused try) */
	for (int i = 0; i < 100 && cmd_find(&w.aw.a, first)->probe_fails == 0; i++)
		world_pass(&w.aw, 10);
	assert_true(cmd_find(&w.aw.a, first)->probe_addr != 0);
	assert_true(cmd_find(&w.aw.a, first)->probe_fails > 0);

	assert_int_equal(listen(lfd, 8), 0);
	for (int i = 0; i < 200 && !cmd_find(&w.aw.a, first)->ready; i++)
		world_pass(&w.aw, 10);
	list(&w);
	assert_int_equal(w.got.status[0].ready, 1);
	assert_int_equal(cmd_find(&w.aw.a, first)->probe_fd, -1); /* no probing once ready */

	/* a second one of the same id is refused, and nothing more is kept */
	spawn_service(&w, SVC, 0, "/tmp");
	assert_true(w.got.failed);
	assert_int_equal(w.got.failed_code, EEXIST);
	assert_int_equal(kept(), 1);
	world_close(&w.aw); /* as a container stop does: what is kept stays */

	/* the next start: the same command under a new id, the same env and cwd */
	world_init(&w);
	w.aw.a.next_id = 5;
	assert_int_equal(services_start(&w.aw.a), 1);
	struct cmd *c = cmd_find(&w.aw.a, 5);
	assert_non_null(c);
	assert_string_equal(c->service, SVC);
	assert_int_equal(c->port, port);
	for (int i = 0; i < 300 && (!c->ready || ring_end(c->ring) < 13); i++)
		world_pass(&w.aw, 10);
	assert_true(c->ready);
	uint8_t out[32], stream = 0;
	assert_int_equal(ring_copy(c->ring, 0, sizeof(out), &stream, out), 13);
	assert_memory_equal(out, "service /tmp\n", 13);
	list(&w);
	assert_int_equal(w.got.nstatus, 1);
	assert_int_equal(w.got.status[0].id, 5);
	assert_int_equal(w.got.status[0].state, AGENT_CMD_RUNNING);
	assert_int_equal(w.got.status[0].ready, 1);

	/* forgotten: the file goes, the group gets SIGTERM, STATUS says no SERVICE */
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_UNSERVICE, 0, 0);
	agent_msg_str(&m, AGENT_T_TAG, "u");
	agent_msg_str(&m, AGENT_T_SERVICE, SVC);
	pid_t pid = c->pid;
	world_send(&w.aw, &m);
	for (int i = 0; i < 100 && !w.got.unserviced; i++)
		world_pass(&w.aw, 10);
	assert_true(w.got.unserviced);
	assert_int_equal(w.got.count, 1);
	assert_int_equal(w.got.pid, pid);
	assert_int_equal(kept(), 0);
	for (int i = 0; i < 300 && c->state != CMD_EXITED; i++)
		world_pass(&w.aw, 10);
	assert_int_equal(c->state, CMD_EXITED);
	assert_int_equal(c->signo, SIGTERM);
	assert_false(c->ready);
	list(&w);
	assert_string_equal(w.got.status[0].service, "");
	/* again: nothing kept, nothing signalled */
	w.got.unserviced = false;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_UNSERVICE, 0, 0);
	agent_msg_str(&m, AGENT_T_TAG, "u");
	agent_msg_str(&m, AGENT_T_SERVICE, SVC);
	world_send(&w.aw, &m);
	for (int i = 0; i < 100 && !w.got.unserviced; i++)
		world_pass(&w.aw, 10);
	assert_int_equal(w.got.count, 0);
	assert_int_equal(w.got.pid, 0);
	world_close(&w.aw);

	world_init(&w);
	assert_int_equal(services_start(&w.aw.a), 0);
	assert_null(w.aw.a.cmds);
	world_close(&w.aw);
	close(lfd);
}

/* The bound on kept services; a service whose spawn fails is not kept; a
 * kept file that is no SPAWN is left alone at start; no folder, no services. */
static void test_limits_and_refusals(void **state)
{
	(void)state;
	struct world w;
	world_init(&w);
	char path[256], id[16];
	for (int i = 0; i < AGENT_SERVICES_MAX; i++) {
		snprintf(path, sizeof(path), "%s/s%02d", dir, i);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, "junk", 4), 4);
		close(fd);
	}
	spawn_service(&w, "one-more", 0, "/tmp");
	assert_true(w.got.failed);
	assert_int_equal(w.got.failed_code, EDQUOT);
	assert_int_equal(kept(), AGENT_SERVICES_MAX);
	/* none of them is a SPAWN: nothing starts, and they stay */
	assert_int_equal(services_start(&w.aw.a), 0);
	assert_int_equal(kept(), AGENT_SERVICES_MAX);
	for (int i = 0; i < AGENT_SERVICES_MAX; i++) {
		snprintf(path, sizeof(path), "%s/s%02d", dir, i);
		unlink(path);
	}
	/* a spawn that fails (no such cwd) keeps nothing */
	spawn_service(&w, "bad-cwd", 0, "/no/such/dir");
	assert_true(w.got.failed);
	assert_int_equal(w.got.failed_code, ENOENT);
	assert_int_equal(kept(), 0);
	struct agent_msg m;
	/* services off: refused, and WELCOME does not offer them */
	w.aw.a.services_dir = NULL;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_HELLO, 0, 0);
	agent_msg_u64(&m, AGENT_T_VERSION, AGENT_PROTOCOL_VERSION);
	world_send(&w.aw, &m);
	world_pass(&w.aw, 10);
	assert_int_equal(w.got.features & AGENT_FEATURE_SERVICES, 0);
	assert_int_not_equal(w.got.features & AGENT_FEATURE_FS, 0);
	snprintf(id, sizeof(id), "off");
	spawn_service(&w, id, 0, "/tmp");
	assert_true(w.got.failed);
	assert_int_equal(w.got.failed_code, ENOTSUP);
	assert_int_equal(services_start(&w.aw.a), 0);
	world_close(&w.aw);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	assert_non_null(mkdtemp(dir));
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kept_ready_back_and_forgotten),
		cmocka_unit_test(test_limits_and_refusals),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	/* whatever a failed test left */
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL)
		unlinkat(dirfd(d), de->d_name, 0);
	if (d)
		closedir(d);
	rmdir(dir);
	return failed;
}
