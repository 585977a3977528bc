/* File operations as the requesting user. Identity: setfsuid/setfsgid and the
 * user's groups around the syscalls (the kernel drops root's file capabilities
 * while fsuid is not 0), so a sandbox user cannot make the agent reach what
 * they could not reach themselves, and what is created is theirs. Work is
 * bounded per request (reads and writes are chunked by frames, a LIST and an
 * EDIT by their caps); a recursive remove and a move across file systems are
 * not, so they run in a child process (a job). */
#include "fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conn.h"
#include "fs_internal.h"
#include "core/check.h"
#include "core/log.h"
#include "users.h"

struct fs_job {
	struct fs_job *next;
	pid_t pid;
	struct conn *conn; /* NULL once the connection went */
	uint8_t tag[AGENT_TAG_MAX];
	uint32_t tag_len;
};

static void send_entry(struct conn *c, const struct agent_req *r, const char *path, const struct stat *st,
		       bool link);
static void send_done(struct conn *c, const struct agent_req *r);
static int mkdirs(char *path, bool last, bool *created);
static int op_stat(struct conn *c, const struct agent_req *r, const char *path);
static int op_list(struct conn *c, const struct agent_req *r, const char *path);
static int list_dir(struct conn *c, const struct agent_req *r, char *path, uint64_t depth, uint64_t *count,
		    uint64_t limit);
static int op_mkdir(struct conn *c, const struct agent_req *r, char *path);
static int op_remove(struct agent *a, struct conn *c, const struct agent_req *r, const char *path,
		     const struct user_info *u, bool as_user);
static int op_move(struct agent *a, struct conn *c, const struct agent_req *r, const char *from,
		   const struct user_info *u, bool as_user);
static int cut_to(const char *path, uint64_t size);
static int job_start(struct agent *a, struct conn *c, const struct agent_req *r, const struct user_info *u,
		     bool as_user, int (*fn)(void *ctx), void *ctx);
static int remove_job(void *ctx);
static int move_job(void *ctx);
static int op_edit(struct conn *c, const struct agent_req *r, const char *path);
static void do_op(struct agent *a, struct conn *c, const struct agent_req *r);
static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw);

/* ---- identity ---- */

int fs_ident_resolve(struct conn *c, const struct agent_req *r, struct user_info *u, bool *as_user)
{
	*as_user = false;
	memset(u, 0, sizeof(*u));
	if (!r->user)
		return 0;
	char name[256];
	if (r->user_len < sizeof(name)) {
		memcpy(name, r->user, r->user_len);
		name[r->user_len] = '\0';
		if (users_resolve(NULL, name, u) == 0) {
			*as_user = u->uid != 0;
			return 0;
		}
	}
	fs_send_error(c, r->tag, r->tag_len, ESRCH, "unknown USER");
	return -1;
}

int fs_become(struct ident *id, const struct user_info *u, bool as_user)
{
	id->switched = false;
	if (!as_user)
		return 0;
	id->nsaved = getgroups(USERS_GROUPS_MAX, id->saved);
	if (id->nsaved < 0)
		id->nsaved = 0;
	if (setgroups(u->ngroups, u->groups) != 0)
		return -1;
	setfsgid(u->gid);
	setfsuid(u->uid);
	if ((uid_t)setfsuid((uid_t)-1) != u->uid || (gid_t)setfsgid((gid_t)-1) != u->gid) {
		setfsuid(0);
		setfsgid(0);
		setgroups((size_t)id->nsaved, id->saved);
		errno = EPERM;
		return -1;
	}
	id->switched = true;
	return 0;
}

void fs_restore(struct ident *id)
{
	if (!id->switched)
		return;
	int e = errno;
	setfsuid(0);
	setfsgid(0);
	CHECK(setgroups((size_t)id->nsaved, id->saved) == 0);
	id->switched = false;
	errno = e;
}

/* ---- answers ---- */

char *fs_req_str(const uint8_t *p, uint32_t len)
{
	char *s = malloc((size_t)len + 1);
	CHECK(s != NULL);
	memcpy(s, p, len);
	s[len] = '\0';
	return s;
}

size_t fs_out_pending(const struct conn *c)
{
	return c->out.len - c->out_off;
}

void fs_msg_tag(struct conn *c, const uint8_t *tag, uint32_t len)
{
	agent_msg_bytes(&c->out, AGENT_T_TAG, tag, len);
}

void fs_send_error(struct conn *c, const uint8_t *tag, uint32_t tag_len, int code, const char *msg)
{
	agent_msg_begin(&c->out, AGENT_ERROR, 0, 0);
	fs_msg_tag(c, tag, tag_len);
	agent_msg_u64(&c->out, AGENT_T_CODE, (uint64_t)code);
	agent_msg_str(&c->out, AGENT_T_MESSAGE, msg);
	CHECK(agent_msg_end(&c->out) == 0);
}

static void send_entry(struct conn *c, const struct agent_req *r, const char *path, const struct stat *st,
		       bool link)
{
	agent_msg_begin(&c->out, AGENT_FS_ENTRY, 0, 0);
	fs_msg_tag(c, r->tag, r->tag_len);
	if (path)
		agent_msg_str(&c->out, AGENT_T_PATH, path);
	agent_msg_u64(&c->out, AGENT_T_SIZE, (uint64_t)st->st_size);
	agent_msg_u64(&c->out, AGENT_T_MODE, (uint64_t)st->st_mode);
	agent_msg_u64(&c->out, AGENT_T_MTIME,
		      (uint64_t)((int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000));
	agent_msg_u64(&c->out, AGENT_T_UID, (uint64_t)st->st_uid);
	agent_msg_u64(&c->out, AGENT_T_GID, (uint64_t)st->st_gid);
	if (link)
		agent_msg_u64(&c->out, AGENT_T_LINK, 1);
	CHECK(agent_msg_end(&c->out) == 0);
}

static void send_done(struct conn *c, const struct agent_req *r)
{
	agent_msg_begin(&c->out, AGENT_FS_DONE, 0, 0);
	fs_msg_tag(c, r->tag, r->tag_len);
	CHECK(agent_msg_end(&c->out) == 0);
}

/* ---- one-shot operations ---- */

/* mkdir -p on a copy of path; the last name too when last. */
static int mkdirs(char *path, bool last, bool *created)
{
	size_t len = strlen(path);
	if (created)
		*created = false;
	for (size_t i = 1; i <= len; i++) {
		if (i < len && path[i] != '/')
			continue;
		if (i == len && !last)
			break;
		char save = path[i];
		path[i] = '\0';
		int rc = mkdir(path, 0755);
		int e = errno;
		path[i] = save;
		if (rc == 0) {
			if (i == len && created)
				*created = true;
			continue;
		}
		if (e != EEXIST) {
			errno = e;
			return -1;
		}
	}
	return 0;
}

int fs_parent_dirs(const char *path)
{
	char *copy = strdup(path);
	CHECK(copy != NULL);
	char *slash = strrchr(copy, '/');
	int rc = 0;
	if (slash && slash != copy) {
		*slash = '\0';
		rc = mkdirs(copy, true, NULL);
	}
	free(copy);
	return rc;
}

static int op_stat(struct conn *c, const struct agent_req *r, const char *path)
{
	struct stat st, target;
	if (lstat(path, &st) != 0)
		return -1;
	bool link = S_ISLNK(st.st_mode);
	if (link && stat(path, &target) == 0)
		st = target; /* a dangling link describes itself */
	send_entry(c, r, path, &st, link);
	send_done(c, r);
	return 0;
}

static int cmp_names(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Entries of path (a buffer of PATH_MAX bytes, restored on return), sorted,
 * each followed by its own entries while depth lasts. */
static int list_dir(struct conn *c, const struct agent_req *r, char *path, uint64_t depth, uint64_t *count,
		    uint64_t limit)
{
	int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return -1;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof(*names));
			CHECK(names != NULL);
		}
		names[n] = strdup(de->d_name);
		CHECK(names[n] != NULL);
		n++;
	}
	if (n > 1)
		qsort(names, n, sizeof(*names), cmp_names);
	size_t base = strlen(path);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		if (*count >= limit) {
			rc = 1;
			break;
		}
		size_t nl = strlen(names[i]);
		size_t sep = base > 1 ? 1 : 0;
		if (base + sep + nl >= PATH_MAX)
			continue;
		struct stat st, target;
		if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue; /* gone meanwhile */
		bool link = S_ISLNK(st.st_mode), dir = S_ISDIR(st.st_mode);
		if (link && fstatat(dirfd(d), names[i], &target, 0) == 0)
			st = target;
		if (sep)
			path[base] = '/';
		memcpy(path + base + sep, names[i], nl + 1);
		send_entry(c, r, path, &st, link);
		(*count)++;
		if (dir && depth > 1) {
			int sub = list_dir(c, r, path, depth - 1, count, limit);
			if (sub == 1)
				rc = 1; /* unreadable subdirectories are left out */
		}
		path[base] = '\0';
		if (rc == 1)
			break;
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return rc;
}

static int op_list(struct conn *c, const struct agent_req *r, const char *path)
{
	char buf[PATH_MAX];
	struct stat st;
	if (stat(path, &st) != 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	snprintf(buf, sizeof(buf), "%s", path);
	uint64_t depth = r->depth ? r->depth : 1, count = 0;
	uint64_t limit = r->limit && r->limit < FS_LIST_LIMIT ? r->limit : FS_LIST_LIMIT;
	if (depth > FS_LIST_DEPTH)
		depth = FS_LIST_DEPTH;
	int rc = list_dir(c, r, buf, depth, &count, limit);
	if (rc < 0)
		return -1;
	agent_msg_begin(&c->out, AGENT_FS_DONE, 0, 0);
	fs_msg_tag(c, r->tag, r->tag_len);
	agent_msg_u64(&c->out, AGENT_T_COUNT, count);
	agent_msg_u64(&c->out, AGENT_T_TRUNCATED, rc == 1);
	CHECK(agent_msg_end(&c->out) == 0);
	return 0;
}

static int op_mkdir(struct conn *c, const struct agent_req *r, char *path)
{
	bool created = false;
	if (r->flags & AGENT_FS_F_PARENTS) {
		if (mkdirs(path, true, &created) != 0)
			return -1;
		struct stat st;
		if (!created && (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))) {
			errno = EEXIST;
			return -1;
		}
	} else {
		if (mkdir(path, r->has_mode ? r->mode : 0755) != 0)
			return -1;
		created = true;
	}
	agent_msg_begin(&c->out, AGENT_FS_DONE, 0, 0);
	fs_msg_tag(c, r->tag, r->tag_len);
	agent_msg_u64(&c->out, AGENT_T_CREATED, created);
	CHECK(agent_msg_end(&c->out) == 0);
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP || flag == FTW_D)
		return rmdir(path) == 0 || errno == ENOENT ? 0 : errno;
	return unlink(path) == 0 || errno == ENOENT ? 0 : errno;
}

int fs_remove_tree(const char *path)
{
	int rc = nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
	return rc == 0 ? 0 : rc > 0 ? rc : errno;
}

/* Work of any size: in a child, as the user for good, off the loop; the
 * answer goes when it is reaped (fs_reaped), its exit status an errno. */
static int job_start(struct agent *a, struct conn *c, const struct agent_req *r, const struct user_info *u,
		     bool as_user, int (*fn)(void *ctx), void *ctx)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (as_user &&
		    (setgroups(u->ngroups, u->groups) != 0 || setgid(u->gid) != 0 || setuid(u->uid) != 0))
			_exit(EPERM);
		_exit(fn(ctx) & 0xff);
	}
	struct fs_job *j = calloc(1, sizeof(*j));
	CHECK(j != NULL);
	j->pid = pid;
	j->conn = c;
	memcpy(j->tag, r->tag, r->tag_len);
	j->tag_len = r->tag_len;
	j->next = a->fs_jobs;
	a->fs_jobs = j;
	return 0;
}

static int remove_job(void *ctx)
{
	return fs_remove_tree(ctx);
}

static int op_remove(struct agent *a, struct conn *c, const struct agent_req *r, const char *path,
		     const struct user_info *u, bool as_user)
{
	struct stat st;
	if (strcmp(path, "/") == 0) {
		errno = EPERM;
		return -1;
	}
	if (lstat(path, &st) != 0)
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) != 0)
			return -1;
		send_done(c, r);
		return 0;
	}
	if (rmdir(path) == 0) {
		send_done(c, r);
		return 0;
	}
	if ((errno != ENOTEMPTY && errno != EEXIST) || !(r->flags & AGENT_FS_F_RECURSIVE))
		return -1;
	return job_start(a, c, r, u, as_user, remove_job, (void *)path);
}

/* An upload's temporary holds zeros past its real end (README "Files"):
 * cut it, never through a link someone put in its place. */
static int cut_to(const char *path, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	int rc = fstat(fd, &st);
	if (rc == 0 && !S_ISREG(st.st_mode)) {
		errno = EINVAL;
		rc = -1;
	}
	if (rc == 0 && size > (uint64_t)INT64_MAX) {
		errno = EFBIG;
		rc = -1;
	}
	if (rc == 0)
		rc = ftruncate(fd, (off_t)size);
	int e = errno;
	close(fd);
	errno = e;
	return rc;
}

struct move_ctx {
	const char *from, *to;
	bool overwrite;
};

static int move_job(void *ctx)
{
	const struct move_ctx *m = ctx;
	return fs_move_across(m->from, m->to, m->overwrite);
}

static int op_move(struct agent *a, struct conn *c, const struct agent_req *r, const char *from,
		   const struct user_info *u, bool as_user)
{
	char *to = fs_req_str(r->path2, r->path2_len);
	bool overwrite = (r->flags & AGENT_FS_F_OVERWRITE) != 0;
	struct stat st;
	int rc = -1;
	if ((r->flags & AGENT_FS_F_PARENTS) && fs_parent_dirs(to) != 0)
		goto out;
	if (r->has_size && cut_to(from, r->size) != 0)
		goto out;
	if (overwrite) {
		rc = rename(from, to);
	} else {
		rc = renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE);
		if (rc != 0 && errno == EINVAL) { /* a file system without it */
			if (lstat(to, &st) == 0) {
				errno = EEXIST;
				goto out;
			}
			rc = rename(from, to);
		}
	}
	if (rc == 0) {
		send_done(c, r);
	} else if (errno == EXDEV) {
		/* the kernel says EXDEV before it looks at the destination */
		if (!overwrite && lstat(to, &st) == 0) {
			errno = EEXIST;
			goto out;
		}
		struct move_ctx m = { from, to, overwrite };
		rc = job_start(a, c, r, u, as_user, move_job, &m);
	}
out:
	free(to);
	return rc;
}

/* Counts the old text (overlapping matches count) and rewrites the file only
 * when it occurs exactly once. */
static int op_edit(struct conn *c, const struct agent_req *r, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	char *buf = NULL, *tmp = NULL;
	int tfd = -1, rc = -1;
	struct stat st;
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0)
		goto out;
	if (!S_ISREG(st.st_mode)) {
		errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
		goto out;
	}
	if ((uint64_t)st.st_size > FS_EDIT_MAX) {
		errno = EFBIG;
		goto out;
	}
	size_t size = (size_t)st.st_size, got = 0;
	buf = malloc(size + 1);
	CHECK(buf != NULL);
	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto out;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	size = got;
	uint64_t count = 0;
	const char *at = NULL;
	for (const char *p = buf; (size_t)(p - buf) < size;) {
		const char *m = memmem(p, size - (size_t)(p - buf), r->data, r->data_len);
		if (!m)
			break;
		if (count++ == 0)
			at = m;
		p = m + 1;
	}
	uint64_t new_size = size;
	if (count == 1) {
		size_t pre = (size_t)(at - buf), post = size - pre - r->data_len;
		new_size = pre + r->data2_len + post;
		tfd = fs_tmp_open(path, &tmp);
		if (tfd < 0)
			goto out;
		if (fs_write_all(tfd, buf, pre) != 0 || fs_write_all(tfd, r->data2, r->data2_len) != 0 ||
		    fs_write_all(tfd, at + r->data_len, post) != 0 || fchmod(tfd, st.st_mode & 07777) != 0)
			goto out;
		if (geteuid() == 0 && setfsuid((uid_t)-1) == 0 && fchown(tfd, st.st_uid, st.st_gid) != 0)
			goto out;
		if (rename(tmp, path) != 0)
			goto out;
		free(tmp);
		tmp = NULL;
	}
	agent_msg_begin(&c->out, AGENT_FS_DONE, 0, 0);
	fs_msg_tag(c, r->tag, r->tag_len);
	agent_msg_u64(&c->out, AGENT_T_COUNT, count);
	agent_msg_u64(&c->out, AGENT_T_SIZE, new_size);
	CHECK(agent_msg_end(&c->out) == 0);
	rc = 0;
out:;
	int e = errno;
	if (tmp)
		unlink(tmp);
	free(tmp);
	if (tfd >= 0)
		close(tfd);
	free(buf);
	close(fd);
	errno = e;
	return rc;
}

/* A new temporary beside dst, only ours (0600 until the commit sets the mode). */
int fs_tmp_open(const char *dst, char **tmp_out)
{
	static unsigned counter;
	const char *slash = strrchr(dst, '/');
	size_t dlen = (size_t)(slash - dst);
	for (int attempt = 0; attempt < 16; attempt++) {
		char *tmp = NULL;
		if (asprintf(&tmp, "%.*s/.sandbar-%d-%u.tmp", (int)dlen, dst, (int)getpid(), ++counter) < 0)
			return -1;
		int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd >= 0) {
			*tmp_out = tmp;
			return fd;
		}
		int e = errno;
		free(tmp);
		if (e != EEXIST) {
			errno = e;
			return -1;
		}
	}
	errno = EEXIST;
	return -1;
}

int fs_write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n > 0) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static void do_op(struct agent *a, struct conn *c, const struct agent_req *r)
{
	struct user_info u;
	struct ident id;
	bool as_user;
	if (fs_ident_resolve(c, r, &u, &as_user) != 0)
		return;
	char *path = fs_req_str(r->path, r->path_len);
	if (fs_become(&id, &u, as_user) != 0) {
		fs_send_error(c, r->tag, r->tag_len, errno, "cannot act as USER");
		free(path);
		return;
	}
	int rc = -1;
	switch (r->fs_op) {
	case AGENT_FS_STAT:
		rc = op_stat(c, r, path);
		break;
	case AGENT_FS_LIST:
		rc = op_list(c, r, path);
		break;
	case AGENT_FS_MKDIR:
		rc = op_mkdir(c, r, path);
		break;
	case AGENT_FS_REMOVE:
		rc = op_remove(a, c, r, path, &u, as_user);
		break;
	case AGENT_FS_MOVE:
		rc = op_move(a, c, r, path, &u, as_user);
		break;
	case AGENT_FS_EDIT:
		rc = op_edit(c, r, path);
		break;
	default:
		errno = EINVAL;
		break;
	}
	int e = errno;
	fs_restore(&id);
	if (rc != 0)
		fs_send_error(c, r->tag, r->tag_len, e, strerror(e));
	free(path);
}

/* ---- entry points ---- */

void fs_handle(struct agent *a, struct conn *c, const struct agent_req *r)
{
	if (r->type == AGENT_FS)
		do_op(a, c, r);
	else
		fs_stream_request(c, r);
}

void fs_conn_closed(struct agent *a, struct conn *c)
{
	fs_streams_drop_all(c);
	for (struct fs_job *j = a->fs_jobs; j; j = j->next) {
		if (j->conn == c)
			j->conn = NULL;
	}
}

bool fs_reaped(struct agent *a, pid_t pid, int status)
{
	for (struct fs_job **pp = &a->fs_jobs; *pp; pp = &(*pp)->next) {
		struct fs_job *j = *pp;
		if (j->pid != pid)
			continue;
		*pp = j->next;
		if (j->conn) {
			int code = WIFEXITED(status) ? WEXITSTATUS(status) : EINTR;
			if (code == 0) {
				agent_msg_begin(&j->conn->out, AGENT_FS_DONE, 0, 0);
				agent_msg_bytes(&j->conn->out, AGENT_T_TAG, j->tag, j->tag_len);
				CHECK(agent_msg_end(&j->conn->out) == 0);
			} else {
				fs_send_error(j->conn, j->tag, j->tag_len, code, strerror(code));
			}
		}
		free(j);
		return true;
	}
	return false;
}

size_t fs_jobs_running(const struct agent *a)
{
	size_t n = 0;
	for (const struct fs_job *j = a->fs_jobs; j; j = j->next)
		n++;
	return n;
}
