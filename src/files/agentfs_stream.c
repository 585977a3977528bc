/* Bytes through the agent: the document read (text, image or binary, by
 * content, bounded), streamed reads acked as the consumer takes them, and
 * streamed writes into a temporary renamed into place at the end. Memory is
 * bounded by the window, never by the file. */
#include "agentfs_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/utf8.h"
#include "files/sniff.h"

static void rd_entry(void *arg, const struct agent_fs_entry *e);
static void rd_data(void *arg, uint64_t offset, const uint8_t *data, size_t len);
static void rd_done(void *arg, const struct agent_fs_done *d);
static void rd_error(void *arg, int code, const char *message);
static void doc_answer(struct agentfs_op *op);
static void read_ack(struct agentfs_op *op, uint64_t offset);
static void wr_done(void *arg, const struct agent_fs_done *d);
static void wr_error(void *arg, int code, const char *message);

static const struct agent_fs_ops read_ops = { rd_entry, rd_data, rd_done, rd_error };
static const struct agent_fs_ops write_ops = { NULL, NULL, wr_done, wr_error };

bool afs_cb_leave(struct agentfs_op *op)
{
	op->in_cb--;
	if (op->in_cb == 0 && op->cancelled) {
		op->cancelled = true;
		agentfs_op_cancel(op); /* frees */
		return false;
	}
	return true;
}

void afs_stream_start(struct agentfs_op *op)
{
	switch (op->kind) {
	case AFS_READ_DOC:
		op->buf = evbuffer_new();
		CHECK(op->buf != NULL);
		/* images are taken whole up to their cap; text stops early (rd_data) */
		op->afs = agent_fs_read(op->ch, op->path, op->user, 0, AGENTFS_IMAGE_MAX, 0, AGENTFS_WINDOW,
					&read_ops, op);
		break;
	case AFS_READ:
		op->afs = agent_fs_read(op->ch, op->path, op->user, op->offset, op->length,
					op->suffix ? AGENT_FS_F_SUFFIX : 0, AGENTFS_WINDOW, &read_ops, op);
		break;
	case AFS_WRITE:
		op->afs = agent_fs_write(op->ch, op->path, op->user, op->mode, AGENT_FS_F_PARENTS, &write_ops,
					 op);
		/* the agent takes data before it answered: the body may flow now */
		event_active(op->later, EV_TIMEOUT, 0);
		break;
	default:
		CHECK(!"not a stream");
	}
}

/* ---- reads ---- */

static void rd_entry(void *arg, const struct agent_fs_entry *e)
{
	struct agentfs_op *op = arg;
	if (op->headed)
		return;
	op->headed = true;
	op->size = e->size;
	op->start = e->offset;
	op->expect = e->length;
	op->mime = files_content_type(files_path_base(op->path), (const char *)e->head, e->head_len);
	op->image = strncmp(op->mime, "image/", 6) == 0 && strcmp(op->mime, "image/svg+xml") != 0;
	if (op->kind == AFS_READ_DOC) {
		if (op->image && e->size > AGENTFS_IMAGE_MAX) {
			afs_fail(op, CORE_LIMIT, "too_large",
				 "%s: the image is %" PRIu64 " bytes, more than the %u bytes read returns",
				 op->path, e->size, AGENTFS_IMAGE_MAX);
		}
		return;
	}
	if (e->length == 0 && e->size > 0 && !(op->offset == 0 && op->length == UINT64_MAX && !op->suffix)) {
		struct core_error f;
		core_error_set(&f, CORE_LIMIT, "range_not_satisfiable", "the range is outside the file");
		f.size = e->size;
		afs_finish(op, &f, NULL);
		return;
	}
	struct agentfs_head h = {
		.size = e->size,
		.offset = e->offset,
		.length = e->length,
		.content_type = op->mime,
		.mtime_ms = e->mtime_ms,
	};
	op->in_cb++;
	if (!op->cancelled)
		op->rev->head(op->arg, &h);
	afs_cb_leave(op);
}

static void rd_data(void *arg, uint64_t offset, const uint8_t *data, size_t len)
{
	struct agentfs_op *op = arg;
	if (offset != op->start + op->got) {
		afs_fail(op, CORE_INTERNAL, "fs_error", "the agent sent bytes out of order");
		return;
	}
	op->got += len;
	if (op->kind == AFS_READ_DOC) {
		evbuffer_add(op->buf, data, len);
		if (!op->image && !op->binary && op->got > AGENTFS_TEXT_MAX + 4) {
			size_t n = evbuffer_get_length(op->buf);
			const char *b = (const char *)evbuffer_pullup(op->buf, -1);
			op->binary = op->whole_binary && utf8_valid_prefix(b, n) + 4 <= n;
			if (!op->binary) {
				doc_answer(op); /* enough to answer: the rest is not read */
				return;
			}
			if (op->size > AGENTFS_IMAGE_MAX) {
				afs_fail(op, CORE_LIMIT, "too_large",
					 "%s: the file is %" PRIu64
					 " bytes of binary, more than the %u bytes read "
					 "returns",
					 op->path, op->size, AGENTFS_IMAGE_MAX);
				return;
			}
		}
		read_ack(op, op->got);
		return;
	}
	op->in_cb++;
	if (!op->cancelled)
		op->rev->data(op->arg, data, len);
	afs_cb_leave(op);
}

void agentfs_read_ack(struct agentfs_op *op, uint64_t consumed)
{
	if (op->afs && op->state == AFS_AGENT)
		read_ack(op, op->start + consumed);
}

/* Once every byte of the range is in, the agent sends nothing more whatever
 * the window: an ACK then would only be one more frame through dockerd, the
 * shim and the relay (a small file's whole read fits in the first window). */
static void read_ack(struct agentfs_op *op, uint64_t offset)
{
	if (op->got < op->expect)
		agent_fs_ack(op->afs, offset);
}

static void rd_done(void *arg, const struct agent_fs_done *d)
{
	struct agentfs_op *op = arg;
	op->afs = NULL;
	if (op->kind == AFS_READ_DOC) {
		doc_answer(op);
		return;
	}
	if (op->got != op->expect) {
		afs_fail(op, CORE_INTERNAL, "file_changed",
			 "%s changed during the read: %" PRIu64 " of %" PRIu64 " bytes", op->path, op->got,
			 op->expect);
		return;
	}
	afs_finish(op, NULL, NULL);
}

static void rd_error(void *arg, int code, const char *message)
{
	struct agentfs_op *op = arg;
	op->afs = NULL;
	afs_fail_errno(op, code, message);
}

/* Text (valid UTF-8, no NUL) in full or cut at a character boundary; an image
 * whole; anything else its first bytes. */
static void doc_answer(struct agentfs_op *op)
{
	size_t n = evbuffer_get_length(op->buf);
	const uint8_t *b = evbuffer_pullup(op->buf, -1);
	struct agentfs_result r = { .path = op->path, .size = op->size, .mime = op->mime, .data = b };
	if (op->image) {
		r.doc = AGENTFS_DOC_IMAGE;
		r.data_len = n;
		afs_done(op, &r);
		return;
	}
	r.truncated = op->size > AGENTFS_TEXT_MAX || n > AGENTFS_TEXT_MAX;
	size_t keep = n > AGENTFS_TEXT_MAX ? AGENTFS_TEXT_MAX : n;
	size_t valid = utf8_valid_prefix((const char *)b, n);
	/* text when every byte read is valid, but for a character cut by the read */
	bool text = valid == n || (n > AGENTFS_TEXT_MAX && valid + 4 > n) || (op->size > n && valid + 4 > n);
	if (text) {
		r.doc = AGENTFS_DOC_TEXT;
		r.data_len = utf8_valid_prefix((const char *)b, keep); /* never splits a character */
	} else {
		r.doc = AGENTFS_DOC_BINARY;
		r.data_len = op->whole_binary ? n : keep;
		r.truncated = !op->whole_binary && r.truncated;
		if (strncmp(op->mime, "text/", 5) == 0)
			r.mime = "application/octet-stream";
	}
	afs_done(op, &r);
}

struct agentfs_op *agentfs_read_doc(struct agentfs *fs, const char *sandbox_id, const char *path,
				    agentfs_done_fn cb, void *arg)
{
	struct agentfs_op *op = afs_op_new(fs, AFS_READ_DOC, sandbox_id, arg);
	op->cb = cb;
	if (afs_path(op, path, op->path) == 0)
		afs_start(op);
	return op;
}

struct agentfs_op *agentfs_read_doc_whole(struct agentfs *fs, const char *sandbox_id, const char *path,
					  agentfs_done_fn cb, void *arg)
{
	struct agentfs_op *op = afs_op_new(fs, AFS_READ_DOC, sandbox_id, arg);
	op->cb = cb;
	op->whole_binary = true;
	if (afs_path(op, path, op->path) == 0)
		afs_start(op);
	return op;
}

struct agentfs_op *agentfs_read(struct agentfs *fs, const char *sandbox_id, const char *path, uint64_t offset,
				uint64_t length, bool suffix, const struct agentfs_read_events *ev, void *arg)
{
	struct agentfs_op *op = afs_op_new(fs, AFS_READ, sandbox_id, arg);
	op->rev = ev;
	op->offset = offset;
	op->length = length;
	op->suffix = suffix;
	if (afs_path(op, path, op->path) == 0)
		afs_start(op);
	return op;
}

/* ---- writes ---- */

struct agentfs_op *agentfs_write(struct agentfs *fs, const char *sandbox_id, const char *path, uint32_t mode,
				 const struct agentfs_write_events *ev, void *arg)
{
	struct agentfs_op *op = afs_op_new(fs, AFS_WRITE, sandbox_id, arg);
	op->wev = ev;
	op->mode = mode & 07777;
	if (afs_path(op, path, op->path) != 0)
		return op;
	if (strcmp(op->path, "/") == 0) {
		afs_fail_later(op, CORE_INVALID, "is_a_directory", "/: is a directory");
		return op;
	}
	afs_start(op);
	return op;
}

/* From the loop: the first ready, and after a pause once the channel drained. */
void afs_write_poll(struct agentfs_op *op)
{
	if (op->state != AFS_AGENT || !op->afs || op->ended)
		return;
	if (op->paused && agent_fs_pending(op->afs) > AGENTFS_LOW_WATERMARK) {
		/* the channel has no drain callback: look again shortly */
		struct timeval tv = { 0, 2000 };
		event_add(op->later, &tv);
		return;
	}
	op->paused = false;
	op->in_cb++;
	if (!op->cancelled)
		op->wev->ready(op->arg);
	afs_cb_leave(op);
}

int agentfs_write_data(struct agentfs_op *op, const void *data, size_t len)
{
	if (op->state != AFS_AGENT || !op->afs || op->ended)
		return -1;
	if (op->written + len > op->fs->upload_limit) {
		char msg[120];
		snprintf(msg, sizeof(msg), "the file is larger than the limit of %" PRIu64 " bytes",
			 op->fs->upload_limit);
		op->ended = true;
		agent_fs_close(op->afs); /* the temporary goes now, the destination stays */
		op->afs = NULL;
		afs_fail_later(op, CORE_LIMIT, "too_large", msg);
		return -1;
	}
	agent_fs_write_data(op->afs, data, len);
	op->written += len;
	if (agent_fs_pending(op->afs) > AGENTFS_HIGH_WATERMARK) {
		op->paused = true;
		struct timeval tv = { 0, 2000 };
		event_add(op->later, &tv);
		return 1;
	}
	return 0;
}

void agentfs_write_end(struct agentfs_op *op)
{
	if (op->state != AFS_AGENT || !op->afs || op->ended)
		return;
	op->ended = true;
	agent_fs_commit(op->afs);
}

static void wr_done(void *arg, const struct agent_fs_done *d)
{
	struct agentfs_op *op = arg;
	op->afs = NULL;
	struct agentfs_result r = { .path = op->path, .size = d->size, .created = d->created };
	afs_done(op, &r);
}

static void wr_error(void *arg, int code, const char *message)
{
	struct agentfs_op *op = arg;
	op->afs = NULL;
	afs_fail_errno(op, code, message);
}
