/* File streams of the agent: reads sent in window-bounded frames from the
 * poll loop, writes into a temporary file renamed into place at commit. Each
 * belongs to one connection and dies with it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conn.h"
#include "core/check.h"
#include "core/log.h"
#include "fs.h"
#include "fs_internal.h"

enum fs_kind { FS_K_READ, FS_K_WRITE };

struct fs_stream {
	struct fs_stream *next;
	enum fs_kind kind;
	uint8_t tag[AGENT_TAG_MAX];
	uint32_t tag_len;
	int fd; /* -1 once failed (a write that sent its ERROR) */
	/* read */
	uint64_t start, pos, end, acked;
	uint32_t window;
	/* write */
	struct user_info user;
	bool as_user;
	uint32_t mode;
	uint64_t written;
	char *tmp, *dst;
};

static void read_open(struct conn *c, const struct agent_req *r);
static void write_open(struct conn *c, const struct agent_req *r);
static struct fs_stream *stream_find(struct conn *c, const struct agent_req *r);
static struct fs_stream *stream_new(struct conn *c, const struct agent_req *r, enum fs_kind kind);
static void stream_drop(struct conn *c, struct fs_stream *s, bool discard);
static void write_data(struct conn *c, struct fs_stream *s, const struct agent_req *r);
static void write_commit(struct conn *c, struct fs_stream *s, const struct agent_req *r);
static bool read_pump(struct conn *c, struct fs_stream *s);

/* ---- streams ---- */

static struct fs_stream *stream_find(struct conn *c, const struct agent_req *r)
{
	for (struct fs_stream *s = c->fs_streams; s; s = s->next) {
		if (s->tag_len == r->tag_len && memcmp(s->tag, r->tag, r->tag_len) == 0)
			return s;
	}
	return NULL;
}

static struct fs_stream *stream_new(struct conn *c, const struct agent_req *r, enum fs_kind kind)
{
	size_t n = 0;
	for (struct fs_stream *s = c->fs_streams; s; s = s->next)
		n++;
	if (n >= FS_STREAMS_MAX || stream_find(c, r)) {
		fs_send_error(c, r->tag, r->tag_len, n >= FS_STREAMS_MAX ? EMFILE : EEXIST,
			      n >= FS_STREAMS_MAX ? "too many file streams" : "TAG already in use");
		return NULL;
	}
	struct fs_stream *s = calloc(1, sizeof(*s));
	CHECK(s != NULL);
	s->kind = kind;
	s->fd = -1;
	memcpy(s->tag, r->tag, r->tag_len);
	s->tag_len = r->tag_len;
	s->next = c->fs_streams;
	c->fs_streams = s;
	return s;
}

/* Unlinks and frees s; a write's temporary goes when discard. */
static void stream_drop(struct conn *c, struct fs_stream *s, bool discard)
{
	for (struct fs_stream **pp = &c->fs_streams; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	if (s->fd >= 0)
		close(s->fd);
	if (discard && s->tmp) {
		struct ident id;
		if (fs_become(&id, &s->user, s->as_user) == 0) {
			if (unlink(s->tmp) != 0 && errno != ENOENT)
				log_warn("cannot remove %s: %s", s->tmp, strerror(errno));
			fs_restore(&id);
		}
	}
	free(s->tmp);
	free(s->dst);
	free(s);
}

static void read_open(struct conn *c, const struct agent_req *r)
{
	struct user_info u;
	struct ident id;
	bool as_user;
	if (fs_ident_resolve(c, r, &u, &as_user) != 0)
		return;
	struct fs_stream *s = stream_new(c, r, FS_K_READ);
	if (!s)
		return;
	char *path = fs_req_str(r->path, r->path_len);
	struct stat st;
	int fd = -1, e = 0;
	if (fs_become(&id, &u, as_user) != 0) {
		e = errno;
	} else {
		/* O_NONBLOCK: a FIFO must not hang the agent in open */
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		e = errno;
		fs_restore(&id);
	}
	free(path);
	if (fd >= 0 && fstat(fd, &st) != 0) {
		e = errno;
		close(fd);
		fd = -1;
	} else if (fd >= 0 && !S_ISREG(st.st_mode)) {
		e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
		close(fd);
		fd = -1;
	}
	if (fd < 0) {
		fs_send_error(c, r->tag, r->tag_len, e, e == EINVAL ? "not a regular file" : strerror(e));
		stream_drop(c, s, false);
		return;
	}
	s->fd = fd;
	uint64_t size = (uint64_t)st.st_size, start, len;
	if (r->flags & AGENT_FS_F_SUFFIX) {
		len = r->length < size ? r->length : size;
		start = size - len;
	} else {
		start = r->offset;
		len = start >= size ? 0 : size - start;
		if (r->has_length && r->length < len)
			len = r->length;
	}
	s->start = s->pos = s->acked = start;
	s->end = start + len;
	s->window = r->has_window && r->window ? r->window : AGENT_WINDOW_DEFAULT;
	uint8_t head[FS_HEAD_BYTES];
	ssize_t hn = pread(fd, head, sizeof(head), 0);
	agent_msg_begin(&c->out, AGENT_FS_ENTRY, 0, 0);
	fs_msg_tag(c, r->tag, r->tag_len);
	agent_msg_u64(&c->out, AGENT_T_SIZE, size);
	agent_msg_u64(&c->out, AGENT_T_MODE, (uint64_t)st.st_mode);
	agent_msg_u64(&c->out, AGENT_T_MTIME,
		      (uint64_t)((int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000));
	agent_msg_u64(&c->out, AGENT_T_OFFSET, start);
	agent_msg_u64(&c->out, AGENT_T_LENGTH, len);
	agent_msg_bytes(&c->out, AGENT_T_DATA, head, hn > 0 ? (size_t)hn : 0);
	CHECK(agent_msg_end(&c->out) == 0);
	read_pump(c, s);
}

/* true when the stream is finished (FS_DONE or ERROR sent, s freed). */
static bool read_pump(struct conn *c, struct fs_stream *s)
{
	static uint8_t buf[FS_READ_CHUNK];
	while (s->pos < s->end && fs_out_pending(c) < CONN_OUT_HIGH) {
		uint64_t inflight = s->pos - s->acked;
		if (inflight >= s->window)
			return false;
		uint64_t want = s->end - s->pos;
		if (want > s->window - inflight)
			want = s->window - inflight;
		if (want > sizeof(buf))
			want = sizeof(buf);
		ssize_t n = pread(s->fd, buf, (size_t)want, (off_t)s->pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fs_send_error(c, s->tag, s->tag_len, errno, strerror(errno));
			stream_drop(c, s, false);
			return true;
		}
		if (n == 0) {
			s->end = s->pos; /* the file shrank: FS_DONE says how much came */
			break;
		}
		agent_msg_begin(&c->out, AGENT_FS_DATA, 0, 0);
		fs_msg_tag(c, s->tag, s->tag_len);
		agent_msg_u64(&c->out, AGENT_T_OFFSET, s->pos);
		agent_msg_bytes(&c->out, AGENT_T_DATA, buf, (size_t)n);
		CHECK(agent_msg_end(&c->out) == 0);
		s->pos += (uint64_t)n;
	}
	if (s->pos < s->end || fs_out_pending(c) >= CONN_OUT_HIGH)
		return false;
	agent_msg_begin(&c->out, AGENT_FS_DONE, 0, 0);
	fs_msg_tag(c, s->tag, s->tag_len);
	agent_msg_u64(&c->out, AGENT_T_SIZE, s->pos - s->start);
	CHECK(agent_msg_end(&c->out) == 0);
	stream_drop(c, s, false);
	return true;
}

static void write_open(struct conn *c, const struct agent_req *r)
{
	struct user_info u;
	bool as_user;
	if (fs_ident_resolve(c, r, &u, &as_user) != 0)
		return;
	struct fs_stream *s = stream_new(c, r, FS_K_WRITE);
	if (!s)
		return;
	s->user = u;
	s->as_user = as_user;
	s->mode = r->has_mode ? r->mode : 0644;
	s->dst = fs_req_str(r->path, r->path_len);
	struct ident id;
	int e = 0;
	if (fs_become(&id, &u, as_user) != 0) {
		e = errno;
	} else {
		if ((r->flags & AGENT_FS_F_PARENTS) && fs_parent_dirs(s->dst) != 0)
			e = errno;
		else if ((s->fd = fs_tmp_open(s->dst, &s->tmp)) < 0)
			e = errno;
		fs_restore(&id);
	}
	if (e) /* kept (fd -1) until COMMIT or CLOSE, so its FS_DATA is ignored quietly */
		fs_send_error(c, r->tag, r->tag_len, e, strerror(e));
}

static void write_data(struct conn *c, struct fs_stream *s, const struct agent_req *r)
{
	if (s->fd < 0 || r->data_len == 0)
		return;
	if (fs_write_all(s->fd, r->data, r->data_len) != 0) {
		int e = errno;
		fs_send_error(c, s->tag, s->tag_len, e, strerror(e));
		close(s->fd);
		s->fd = -1;
		struct ident id;
		if (fs_become(&id, &s->user, s->as_user) == 0) {
			unlink(s->tmp);
			fs_restore(&id);
		}
		free(s->tmp);
		s->tmp = NULL;
		return;
	}
	s->written += r->data_len;
}

static void write_commit(struct conn *c, struct fs_stream *s, const struct agent_req *r)
{
	if (s->fd < 0) { /* its ERROR went out already */
		stream_drop(c, s, true);
		return;
	}
	struct ident id;
	struct stat st;
	bool created = false;
	int e = 0;
	if (fchmod(s->fd, s->mode) != 0)
		e = errno;
	else if (fs_become(&id, &s->user, s->as_user) != 0)
		e = errno;
	else {
		created = lstat(s->dst, &st) != 0;
		if (rename(s->tmp, s->dst) != 0)
			e = errno;
		fs_restore(&id);
	}
	if (e) {
		fs_send_error(c, s->tag, s->tag_len, e, strerror(e));
		stream_drop(c, s, true);
		return;
	}
	agent_msg_begin(&c->out, AGENT_FS_DONE, 0, 0);
	fs_msg_tag(c, r->tag, r->tag_len);
	agent_msg_u64(&c->out, AGENT_T_SIZE, s->written);
	agent_msg_u64(&c->out, AGENT_T_CREATED, created);
	CHECK(agent_msg_end(&c->out) == 0);
	free(s->tmp);
	s->tmp = NULL; /* renamed: nothing to discard */
	stream_drop(c, s, false);
}

void fs_stream_request(struct conn *c, const struct agent_req *r)
{
	struct fs_stream *s;
	if (r->type == AGENT_FS_READ) {
		read_open(c, r);
		return;
	}
	if (r->type == AGENT_FS_WRITE) {
		write_open(c, r);
		return;
	}
	s = stream_find(c, r);
	if (!s) {
		/* a read may have finished while its ACK or CLOSE was on the way */
		if (r->type == AGENT_FS_COMMIT)
			fs_send_error(c, r->tag, r->tag_len, ENOENT, "no such file stream");
		return;
	}
	switch (r->type) {
	case AGENT_FS_DATA:
		if (s->kind == FS_K_WRITE)
			write_data(c, s, r);
		break;
	case AGENT_FS_ACK:
		if (s->kind == FS_K_READ && r->offset > s->acked)
			s->acked = r->offset < s->pos ? r->offset : s->pos;
		break;
	case AGENT_FS_COMMIT:
		if (s->kind == FS_K_WRITE)
			write_commit(c, s, r);
		else
			fs_send_error(c, r->tag, r->tag_len, EINVAL, "FS_COMMIT on a read");
		break;
	case AGENT_FS_CLOSE:
		stream_drop(c, s, true);
		break;
	default:
		break;
	}
}

void fs_pump(struct agent *a, struct conn *c)
{
	(void)a;
	for (struct fs_stream *s = c->fs_streams, *next; s; s = next) {
		next = s->next;
		if (s->kind == FS_K_READ)
			read_pump(c, s);
	}
}

void fs_streams_drop_all(struct conn *c)
{
	while (c->fs_streams)
		stream_drop(c, c->fs_streams, true);
}
