/* The agent's file operations (fs.c) through a connection (conn.c) on a
 * socketpair, in a temporary directory: writes (commit, close, ownership),
 * reads with a window and ranges, stat, list, mkdir, move (cut to a size, and
 * across file systems as a copy in a child), edit, remove (the recursive one
 * in a child), and the permission checks as uid 1000. The user switches need
 * root (need.h: a failure when tools/test runs as root, else a skip). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent.h"
#include "cmd.h"
#include "conn.h"
#include "fs.h"
#include "fs_internal.h"
#include "need.h"
#include "world.h"

#define MAX_FRAMES 4096

struct got {
	uint8_t type;
	uint64_t tag, code, size, count, offset, length, mode, uid, created, truncated;
	char path[4200];
	uint8_t *data;
	uint32_t data_len;
};

struct world {
	struct agent_world aw;
	struct got frames[MAX_FRAMES];
	size_t nframes;
	char dir[256];
	char other[64]; /* a folder on another file system than dir, removed at teardown */
	bool other_mounted;
	uint64_t next_tag;
};

static struct world W;

/* A frame from the agent, kept for the test to look at. */
static void take_frame(struct agent_world *aw, const struct agent_frame *f)
{
	(void)aw;
	assert_true(W.nframes < MAX_FRAMES);
	struct got *g = &W.frames[W.nframes++];
	memset(g, 0, sizeof(*g));
	g->type = f->type;
	agent_frame_u64(f, AGENT_T_TAG, &g->tag);
	agent_frame_u64(f, AGENT_T_CODE, &g->code);
	agent_frame_u64(f, AGENT_T_SIZE, &g->size);
	agent_frame_u64(f, AGENT_T_COUNT, &g->count);
	agent_frame_u64(f, AGENT_T_OFFSET, &g->offset);
	agent_frame_u64(f, AGENT_T_LENGTH, &g->length);
	agent_frame_u64(f, AGENT_T_MODE, &g->mode);
	agent_frame_u64(f, AGENT_T_UID, &g->uid);
	agent_frame_u64(f, AGENT_T_CREATED, &g->created);
	agent_frame_u64(f, AGENT_T_TRUNCATED, &g->truncated);
	const uint8_t *p;
	uint32_t len;
	if (agent_frame_bytes(f, AGENT_T_PATH, &p, &len) == 0 && len < sizeof(g->path))
		memcpy(g->path, p, len);
	if (agent_frame_bytes(f, AGENT_T_DATA, &p, &len) == 0) {
		g->data = malloc(len + 1);
		memcpy(g->data, p, len);
		g->data_len = len;
	}
}

/* Pumps and reads until nothing more moves. */
static void settle(void)
{
	for (int i = 0; i < 1000; i++) {
		size_t before = W.nframes;
		conn_pump_all(&W.aw.a);
		world_take(&W.aw);
		if (W.nframes == before && W.aw.conn->out.len == W.aw.conn->out_off)
			return;
	}
}

static void clear_frames(void)
{
	for (size_t i = 0; i < W.nframes; i++)
		free(W.frames[i].data);
	W.nframes = 0;
}

static uint64_t begin(struct agent_msg *m, uint8_t type)
{
	agent_msg_init(m);
	agent_msg_begin(m, type, 0, 0);
	uint64_t tag = ++W.next_tag;
	agent_msg_u64(m, AGENT_T_TAG, tag);
	return tag;
}

static void send_msg(struct agent_msg *m)
{
	world_send(&W.aw, m);
	settle();
}

/* A one-shot FS op; returns the tag. user NULL: root. */
static uint64_t fs_op(uint8_t op, const char *path, const char *user, uint32_t flags, const char *path2,
		      const char *old_text, const char *new_text)
{
	struct agent_msg m;
	uint64_t tag = begin(&m, AGENT_FS);
	agent_msg_u64(&m, AGENT_T_OP, op);
	agent_msg_str(&m, AGENT_T_PATH, path);
	if (user)
		agent_msg_str(&m, AGENT_T_USER, user);
	if (flags)
		agent_msg_u64(&m, AGENT_T_FLAGS, flags);
	if (path2)
		agent_msg_str(&m, AGENT_T_PATH2, path2);
	if (old_text)
		agent_msg_str(&m, AGENT_T_DATA, old_text);
	if (new_text)
		agent_msg_str(&m, AGENT_T_DATA2, new_text);
	send_msg(&m);
	return tag;
}

/* The last frame with tag. */
static struct got *last(uint64_t tag)
{
	for (size_t i = W.nframes; i > 0; i--) {
		if (W.frames[i - 1].tag == tag)
			return &W.frames[i - 1];
	}
	fail_msg("no frame for tag %llu", (unsigned long long)tag);
	return NULL;
}

static char *p(const char *name)
{
	static char buf[8][512];
	static int k;
	char *b = buf[k++ % 8];
	snprintf(b, 512, "%s/%s", W.dir, name);
	return b;
}

static void put_file(const char *path, const char *content, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	fchmod(fd, mode);
	close(fd);
}

static char *slurp(const char *path)
{
	static char buf[1 << 16];
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static int count_tmp(const char *dir)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "ls -a '%s' | grep -c '^\\.sandbar-' > /dev/null", dir);
	return system(cmd) == 0 ? 1 : 0;
}

static int setup(void **state)
{
	(void)state;
	memset(&W, 0, sizeof(W));
	snprintf(W.dir, sizeof(W.dir), "/tmp/sandbar-test-fs-XXXXXX");
	assert_non_null(mkdtemp(W.dir));
	chmod(W.dir, 0755);
	world_open(&W.aw, take_frame);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	world_close(&W.aw);
	clear_frames();
	char cmd[400];
	if (W.other_mounted)
		assert_int_equal(umount2(W.other, MNT_DETACH), 0);
	if (W.other[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", W.other);
		assert_int_equal(system(cmd), 0);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", W.dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

/* A folder on another file system than W.dir: in /dev/shm when that is one,
 * else a tmpfs mounted for the test (root, and mounts allowed). */
static const char *other_fs(char *why, size_t cap)
{
	struct stat a, b;
	assert_int_equal(stat(W.dir, &a), 0);
	if (stat("/dev/shm", &b) == 0 && a.st_dev != b.st_dev) {
		snprintf(W.other, sizeof(W.other), "/dev/shm/sandbar-test-fs-XXXXXX");
		assert_non_null(mkdtemp(W.other));
		return W.other;
	}
	snprintf(W.other, sizeof(W.other), "/tmp/sandbar-test-fs-mnt-XXXXXX");
	assert_non_null(mkdtemp(W.other));
	if (mount("sandbar-test-fs", W.other, "tmpfs", 0, "size=1m") != 0) {
		snprintf(why, cap,
			 "no /dev/shm on another file system than /tmp, and mounting a tmpfs failed: %s",
			 strerror(errno));
		return NULL;
	}
	W.other_mounted = true;
	return W.other;
}

static uint64_t write_open(const char *path, const char *user, uint32_t mode)
{
	struct agent_msg m;
	uint64_t tag = begin(&m, AGENT_FS_WRITE);
	agent_msg_str(&m, AGENT_T_PATH, path);
	if (user)
		agent_msg_str(&m, AGENT_T_USER, user);
	agent_msg_u64(&m, AGENT_T_MODE, mode);
	agent_msg_u64(&m, AGENT_T_FLAGS, AGENT_FS_F_PARENTS);
	send_msg(&m);
	return tag;
}

static void stream_msg(uint8_t type, uint64_t tag, const void *data, size_t len)
{
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, type, 0, 0);
	agent_msg_u64(&m, AGENT_T_TAG, tag);
	if (data)
		agent_msg_bytes(&m, AGENT_T_DATA, data, len);
	send_msg(&m);
}

static void test_write_commit_and_replace(void **state)
{
	(void)state;
	uint64_t t = write_open(p("a/b/new.txt"), NULL, 0640);
	stream_msg(AGENT_FS_DATA, t, "hello ", 6);
	stream_msg(AGENT_FS_DATA, t, "world", 5);
	assert_int_equal(count_tmp(p("a/b")), 1); /* written beside it, not in place */
	assert_null(slurp(p("a/b/new.txt")));
	stream_msg(AGENT_FS_COMMIT, t, NULL, 0);
	struct got *g = last(t);
	assert_int_equal(g->type, AGENT_FS_DONE);
	assert_int_equal(g->size, 11);
	assert_int_equal(g->created, 1);
	assert_string_equal(slurp(p("a/b/new.txt")), "hello world");
	struct stat st;
	assert_int_equal(stat(p("a/b/new.txt"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(count_tmp(p("a/b")), 0);
	t = write_open(p("a/b/new.txt"), NULL, 0644);
	stream_msg(AGENT_FS_DATA, t, "x", 1);
	stream_msg(AGENT_FS_COMMIT, t, NULL, 0);
	assert_int_equal(last(t)->created, 0);
	assert_string_equal(slurp(p("a/b/new.txt")), "x");
}

static void test_write_close_leaves_nothing(void **state)
{
	(void)state;
	put_file(p("keep.txt"), "original", 0644);
	uint64_t t = write_open(p("keep.txt"), NULL, 0644);
	stream_msg(AGENT_FS_DATA, t, "partial", 7);
	stream_msg(AGENT_FS_CLOSE, t, NULL, 0);
	assert_int_equal(count_tmp(W.dir), 0);
	assert_string_equal(slurp(p("keep.txt")), "original");
	/* a connection that goes away takes its temporaries with it */
	t = write_open(p("keep.txt"), NULL, 0644);
	stream_msg(AGENT_FS_DATA, t, "partial", 7);
	assert_int_equal(count_tmp(W.dir), 1);
	fs_conn_closed(&W.aw.a, W.aw.conn);
	assert_int_equal(count_tmp(W.dir), 0);
	assert_string_equal(slurp(p("keep.txt")), "original");
}

static uint64_t read_open(const char *path, const char *user, uint64_t offset, int64_t length, bool suffix,
			  uint32_t window)
{
	struct agent_msg m;
	uint64_t tag = begin(&m, AGENT_FS_READ);
	agent_msg_str(&m, AGENT_T_PATH, path);
	if (user)
		agent_msg_str(&m, AGENT_T_USER, user);
	agent_msg_u64(&m, AGENT_T_OFFSET, offset);
	if (length >= 0)
		agent_msg_u64(&m, AGENT_T_LENGTH, (uint64_t)length);
	if (suffix)
		agent_msg_u64(&m, AGENT_T_FLAGS, AGENT_FS_F_SUFFIX);
	agent_msg_u64(&m, AGENT_T_WINDOW, window);
	send_msg(&m);
	return tag;
}

static uint64_t bytes_for(uint64_t tag)
{
	uint64_t n = 0;
	for (size_t i = 0; i < W.nframes; i++) {
		if (W.frames[i].tag == tag && W.frames[i].type == AGENT_FS_DATA)
			n += W.frames[i].data_len;
	}
	return n;
}

static void test_read_window_and_ranges(void **state)
{
	(void)state;
	size_t size = 300 * 1024;
	char *big = malloc(size + 1);
	for (size_t i = 0; i < size; i++)
		big[i] = (char)('a' + i % 26);
	big[size] = '\0';
	put_file(p("big.txt"), big, 0644);
	uint64_t t = read_open(p("big.txt"), NULL, 0, -1, false, 64 * 1024);
	assert_int_equal(W.frames[0].type, AGENT_FS_ENTRY);
	assert_int_equal(W.frames[0].size, size);
	assert_int_equal(W.frames[0].length, size);
	assert_int_equal(W.frames[0].data_len, FS_HEAD_BYTES);
	assert_int_equal(bytes_for(t), 64 * 1024); /* the window, no more */
	struct agent_msg m;
	for (int i = 0; i < 10 && last(t)->type != AGENT_FS_DONE; i++) {
		agent_msg_init(&m);
		agent_msg_begin(&m, AGENT_FS_ACK, 0, 0);
		agent_msg_u64(&m, AGENT_T_TAG, t);
		agent_msg_u64(&m, AGENT_T_OFFSET, bytes_for(t));
		send_msg(&m);
	}
	assert_int_equal(last(t)->type, AGENT_FS_DONE);
	assert_int_equal(last(t)->size, size);
	assert_int_equal(bytes_for(t), size);
	clear_frames();
	t = read_open(p("big.txt"), NULL, 10, 5, false, 0);
	assert_int_equal(W.frames[0].offset, 10);
	assert_int_equal(W.frames[0].length, 5);
	assert_memory_equal(W.frames[1].data, big + 10, 5);
	assert_int_equal(last(t)->type, AGENT_FS_DONE);
	t = read_open(p("big.txt"), NULL, 0, 3, true, 0);
	assert_memory_equal(last(t)->type == AGENT_FS_DONE ? W.frames[W.nframes - 2].data : NULL,
			    big + size - 3, 3);
	t = read_open(p("big.txt"), NULL, size + 1, -1, false, 0); /* unsatisfiable: LENGTH 0 */
	assert_int_equal(W.frames[W.nframes - 2].length, 0);
	assert_int_equal(last(t)->type, AGENT_FS_DONE);
	t = read_open(W.dir, NULL, 0, -1, false, 0);
	assert_int_equal(last(t)->type, AGENT_ERROR);
	assert_int_equal(last(t)->code, EISDIR);
	t = read_open(p("missing"), NULL, 0, -1, false, 0);
	assert_int_equal(last(t)->code, ENOENT);
	free(big);
}

static void test_stat_list_mkdir_move(void **state)
{
	(void)state;
	uint64_t t = fs_op(AGENT_FS_MKDIR, p("d/e/f"), NULL, AGENT_FS_F_PARENTS, NULL, NULL, NULL);
	assert_int_equal(last(t)->type, AGENT_FS_DONE);
	assert_int_equal(last(t)->created, 1);
	t = fs_op(AGENT_FS_MKDIR, p("d/e/f"), NULL, AGENT_FS_F_PARENTS, NULL, NULL, NULL);
	assert_int_equal(last(t)->created, 0);
	t = fs_op(AGENT_FS_MKDIR, p("d/e/f"), NULL, 0, NULL, NULL, NULL);
	assert_int_equal(last(t)->code, EEXIST);
	put_file(p("d/z.txt"), "zz", 0600);
	put_file(p("d/a.txt"), "a", 0644);
	assert_int_equal(symlink("a.txt", p("d/link")), 0);
	clear_frames();
	t = fs_op(AGENT_FS_LIST, p("d"), NULL, 0, NULL, NULL, NULL);
	assert_int_equal(W.nframes, 5);
	assert_string_equal(W.frames[0].path, p("d/a.txt"));
	assert_string_equal(W.frames[1].path, p("d/e"));
	assert_string_equal(W.frames[2].path, p("d/link"));
	assert_string_equal(W.frames[3].path, p("d/z.txt"));
	assert_int_equal(W.frames[3].size, 2);
	assert_int_equal(W.frames[3].mode & 07777, 0600);
	assert_int_equal(last(t)->count, 4);
	clear_frames();
	t = fs_op(AGENT_FS_LIST, p("d"), NULL, 0, NULL, NULL, NULL);
	{
		struct agent_msg m;
		t = begin(&m, AGENT_FS);
		agent_msg_u64(&m, AGENT_T_OP, AGENT_FS_LIST);
		agent_msg_str(&m, AGENT_T_PATH, p("d"));
		agent_msg_u64(&m, AGENT_T_DEPTH, 3);
		agent_msg_u64(&m, AGENT_T_LIMIT, 4); /* of 5 */
		send_msg(&m);
	}
	assert_int_equal(last(t)->count, 4);
	assert_int_equal(last(t)->truncated, 1);
	t = fs_op(AGENT_FS_LIST, p("d/a.txt"), NULL, 0, NULL, NULL, NULL);
	assert_int_equal(last(t)->code, ENOTDIR);
	t = fs_op(AGENT_FS_STAT, p("d/link"), NULL, 0, NULL, NULL, NULL);
	assert_int_equal(W.frames[W.nframes - 2].type, AGENT_FS_ENTRY);
	assert_true(S_ISREG(W.frames[W.nframes - 2].mode));
	t = fs_op(AGENT_FS_STAT, p("d/none"), NULL, 0, NULL, NULL, NULL);
	assert_int_equal(last(t)->code, ENOENT);
	t = fs_op(AGENT_FS_MOVE, p("d/a.txt"), NULL, 0, p("d/z.txt"), NULL, NULL);
	assert_int_equal(last(t)->code, EEXIST);
	t = fs_op(AGENT_FS_MOVE, p("d/a.txt"), NULL, AGENT_FS_F_OVERWRITE, p("d/z.txt"), NULL, NULL);
	assert_int_equal(last(t)->type, AGENT_FS_DONE);
	assert_string_equal(slurp(p("d/z.txt")), "a");
	t = fs_op(AGENT_FS_MOVE, p("d/z.txt"), NULL, AGENT_FS_F_PARENTS, p("d/new/dir/z.txt"), NULL, NULL);
	assert_int_equal(last(t)->type, AGENT_FS_DONE);
}

/* MOVE with SIZE: an upload's temporary cut to its real length, renamed over
 * the file it replaces; a link in its place is not followed. */
static void test_move_cut(void **state)
{
	(void)state;
	put_file(p("dst.txt"), "old content", 0644);
	int fd = open(p(".up"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "hello\0\0", 7), 7);
	close(fd);
	struct agent_msg m;
	uint64_t t = begin(&m, AGENT_FS);
	agent_msg_u64(&m, AGENT_T_OP, AGENT_FS_MOVE);
	agent_msg_str(&m, AGENT_T_PATH, p(".up"));
	agent_msg_str(&m, AGENT_T_PATH2, p("dst.txt"));
	agent_msg_u64(&m, AGENT_T_FLAGS, AGENT_FS_F_OVERWRITE);
	agent_msg_u64(&m, AGENT_T_SIZE, 5);
	send_msg(&m);
	assert_int_equal(last(t)->type, AGENT_FS_DONE);
	struct stat st;
	assert_int_equal(stat(p("dst.txt"), &st), 0);
	assert_int_equal(st.st_size, 5);
	assert_string_equal(slurp(p("dst.txt")), "hello");
	assert_int_equal(access(p(".up"), F_OK), -1);
	assert_int_equal(symlink(p("dst.txt"), p(".up")), 0);
	t = begin(&m, AGENT_FS);
	agent_msg_u64(&m, AGENT_T_OP, AGENT_FS_MOVE);
	agent_msg_str(&m, AGENT_T_PATH, p(".up"));
	agent_msg_str(&m, AGENT_T_PATH2, p("other.txt"));
	agent_msg_u64(&m, AGENT_T_SIZE, 1);
	send_msg(&m);
	assert_int_equal(last(t)->code, ELOOP);
	assert_string_equal(slurp(p("dst.txt")), "hello");
}

static void make_tree(const char *root)
{
	char path[600];
	assert_int_equal(mkdir(root, 0750), 0);
	snprintf(path, sizeof(path), "%s/sub", root);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/sub/run.sh", root);
	put_file(path, "#!/bin/sh\necho hi\n", 0751);
	struct timespec times[2] = { { 1600000000, 0 }, { 1600000000, 0 } };
	assert_int_equal(utimensat(AT_FDCWD, path, times, 0), 0);
	snprintf(path, sizeof(path), "%s/link", root);
	assert_int_equal(symlink("sub/run.sh", path), 0);
}

static void check_tree(const char *root)
{
	char path[600], target[64];
	struct stat st;
	assert_int_equal(stat(root, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0750);
	snprintf(path, sizeof(path), "%s/sub", root);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	snprintf(path, sizeof(path), "%s/sub/run.sh", root);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0751);
	assert_int_equal(st.st_mtim.tv_sec, 1600000000);
	assert_string_equal(slurp(path), "#!/bin/sh\necho hi\n");
	snprintf(path, sizeof(path), "%s/link", root);
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	assert_int_equal(n, 10);
	target[n] = '\0';
	assert_string_equal(target, "sub/run.sh");
}

/* The copy behind a move across file systems, called directly (any file
 * system), then through MOVE to another file system (other_fs). */
static void test_move_across(void **state)
{
	(void)state;
	make_tree(p("src"));
	assert_int_equal(fs_move_across(p("src"), p("dst"), false), 0);
	assert_int_equal(access(p("src"), F_OK), -1);
	check_tree(p("dst"));
	put_file(p("f.txt"), "f", 0600);
	assert_int_equal(fs_move_across(p("f.txt"), p("dst"), false), EEXIST);
	assert_int_equal(fs_move_across(p("f.txt"), p("dst"), true), EISDIR);
	assert_string_equal(slurp(p("f.txt")), "f"); /* a failed move keeps the source */
	assert_int_equal(count_tmp(W.dir), 0);	     /* and leaves no copy behind */
	assert_int_equal(fs_move_across(p("nothing"), p("x"), false), ENOENT);

	char why[256], to[80];
	const char *other = other_fs(why, sizeof(why));
	need("mount", other != NULL, "%s", why);
	snprintf(to, sizeof(to), "%s/moved", other);
	size_t before = W.nframes;
	uint64_t t = fs_op(AGENT_FS_MOVE, p("dst"), NULL, AGENT_FS_F_PARENTS, to, NULL, NULL);
	assert_int_equal(W.nframes, before); /* in a child: answered when reaped */
	int wst;
	pid_t pid = waitpid(-1, &wst, 0);
	assert_true(fs_reaped(&W.aw.a, pid, wst));
	settle();
	assert_int_equal(last(t)->type, AGENT_FS_DONE);
	check_tree(to);
	assert_int_equal(access(p("dst"), F_OK), -1);
	t = fs_op(AGENT_FS_MOVE, p("f.txt"), NULL, 0, to, NULL, NULL);
	assert_int_equal(last(t)->code, EEXIST); /* found before any copy */
}

static void test_edit_counts(void **state)
{
	(void)state;
	put_file(p("e.txt"), "one two two three", 0640);
	uint64_t t = fs_op(AGENT_FS_EDIT, p("e.txt"), NULL, 0, NULL, "four", "x");
	assert_int_equal(last(t)->count, 0);
	t = fs_op(AGENT_FS_EDIT, p("e.txt"), NULL, 0, NULL, "two", "x");
	assert_int_equal(last(t)->count, 2);
	t = fs_op(AGENT_FS_EDIT, p("e.txt"), NULL, 0, NULL, "aa", "x"); /* none */
	assert_string_equal(slurp(p("e.txt")), "one two two three");
	t = fs_op(AGENT_FS_EDIT, p("e.txt"), NULL, 0, NULL, "three", "3!");
	assert_int_equal(last(t)->count, 1);
	assert_int_equal(last(t)->size, 14);
	assert_string_equal(slurp(p("e.txt")), "one two two 3!");
	struct stat st;
	assert_int_equal(stat(p("e.txt"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(count_tmp(W.dir), 0);
	put_file(p("aaa.txt"), "aaa", 0644);
	t = fs_op(AGENT_FS_EDIT, p("aaa.txt"), NULL, 0, NULL, "aa", "b"); /* overlapping: 2 */
	assert_int_equal(last(t)->count, 2);
}

static void test_remove(void **state)
{
	(void)state;
	put_file(p("f.txt"), "f", 0644);
	uint64_t t = fs_op(AGENT_FS_REMOVE, p("f.txt"), NULL, 0, NULL, NULL, NULL);
	assert_int_equal(last(t)->type, AGENT_FS_DONE);
	assert_int_equal(access(p("f.txt"), F_OK), -1);
	mkdir(p("tree"), 0755);
	mkdir(p("tree/sub"), 0755);
	put_file(p("tree/sub/x"), "x", 0644);
	t = fs_op(AGENT_FS_REMOVE, p("tree"), NULL, 0, NULL, NULL, NULL);
	assert_int_equal(last(t)->code, ENOTEMPTY);
	size_t before = W.nframes;
	t = fs_op(AGENT_FS_REMOVE, p("tree"), NULL, AGENT_FS_F_RECURSIVE, NULL, NULL, NULL);
	assert_int_equal(W.nframes, before); /* in a child: answered when reaped */
	assert_int_equal(fs_jobs_running(&W.aw.a), 1);
	int st;
	pid_t pid = waitpid(-1, &st, 0);
	assert_true(fs_reaped(&W.aw.a, pid, st));
	settle();
	assert_int_equal(last(t)->type, AGENT_FS_DONE);
	assert_int_equal(access(p("tree"), F_OK), -1);
	t = fs_op(AGENT_FS_REMOVE, "/", NULL, AGENT_FS_F_RECURSIVE, NULL, NULL, NULL);
	assert_int_equal(last(t)->code, EPERM);
}

/* As uid 1000: the kernel checks that user, and what is made is theirs. */
static void test_as_user(void **state)
{
	(void)state;
	need("root", geteuid() == 0, "setfsuid to uid 1000 needs root (euid %d)", (int)geteuid());
	mkdir(p("open"), 0777);
	chmod(p("open"), 0777);
	put_file(p("secret"), "root only", 0600);
	uint64_t t = write_open(p("denied.txt"), "1000", 0644); /* W.dir is root's, 0755 */
	assert_int_equal(last(t)->type, AGENT_ERROR);
	assert_int_equal(last(t)->code, EACCES);
	stream_msg(AGENT_FS_COMMIT, t, NULL, 0); /* the failed stream goes quietly */
	assert_int_equal(access(p("denied.txt"), F_OK), -1);
	t = read_open(p("secret"), "1000", 0, -1, false, 0);
	assert_int_equal(last(t)->code, EACCES);
	t = read_open(p("secret"), NULL, 0, -1, false, 0);
	assert_int_equal(last(t)->type, AGENT_FS_DONE);
	t = fs_op(AGENT_FS_EDIT, p("secret"), "1000", 0, NULL, "root", "user");
	assert_int_equal(last(t)->code, EACCES);
	t = fs_op(AGENT_FS_REMOVE, p("secret"), "1000", 0, NULL, NULL, NULL);
	assert_int_equal(last(t)->code, EACCES);
	t = write_open(p("open/deep/mine.txt"), "1000", 0644);
	stream_msg(AGENT_FS_DATA, t, "mine", 4);
	stream_msg(AGENT_FS_COMMIT, t, NULL, 0);
	assert_int_equal(last(t)->type, AGENT_FS_DONE);
	struct stat st;
	assert_int_equal(stat(p("open/deep/mine.txt"), &st), 0);
	assert_int_equal(st.st_uid, 1000);
	assert_int_equal(stat(p("open/deep"), &st), 0);
	assert_int_equal(st.st_uid, 1000);
	t = fs_op(AGENT_FS_MKDIR, p("open/d2"), "1000", AGENT_FS_F_PARENTS, NULL, NULL, NULL);
	assert_int_equal(stat(p("open/d2"), &st), 0);
	assert_int_equal(st.st_uid, 1000);
	/* the agent is root again afterwards */
	assert_int_equal(setfsuid((uid_t)-1), 0);
	t = fs_op(AGENT_FS_STAT, p("secret"), NULL, 0, NULL, NULL, NULL);
	assert_int_equal(last(t)->type, AGENT_FS_DONE);
	/* a recursive remove as the user stops at what the user may not remove */
	mkdir(p("open/rootdir"), 0755);
	put_file(p("open/rootdir/f"), "f", 0644);
	t = fs_op(AGENT_FS_REMOVE, p("open/rootdir"), "1000", AGENT_FS_F_RECURSIVE, NULL, NULL, NULL);
	int wst;
	pid_t pid = waitpid(-1, &wst, 0);
	assert_true(fs_reaped(&W.aw.a, pid, wst));
	settle();
	assert_int_equal(last(t)->type, AGENT_ERROR);
	assert_int_equal(access(p("open/rootdir/f"), F_OK), 0);
}

static void test_bad_requests(void **state)
{
	(void)state;
	struct agent_msg m;
	uint64_t t = begin(&m, AGENT_FS);
	agent_msg_u64(&m, AGENT_T_OP, AGENT_FS_STAT);
	agent_msg_str(&m, AGENT_T_PATH, "relative");
	send_msg(&m);
	assert_int_equal(last(t)->code, EINVAL);
	t = fs_op(AGENT_FS_STAT, p("x"), "nosuchuser", 0, NULL, NULL, NULL);
	assert_int_equal(last(t)->code, ESRCH);
	stream_msg(AGENT_FS_DATA, 999, "x", 1); /* unknown stream: ignored */
	stream_msg(AGENT_FS_COMMIT, 998, NULL, 0);
	assert_int_equal(last(998)->code, ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_write_commit_and_replace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_close_leaves_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_window_and_ranges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stat_list_mkdir_move, setup, teardown),
		cmocka_unit_test_setup_teardown(test_move_cut, setup, teardown),
		cmocka_unit_test_setup_teardown(test_move_across, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edit_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(test_as_user, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
	};
	return need_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
