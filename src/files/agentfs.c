/* The file service through the agent: each op takes its sandbox's handle
 * from the registry (running, container, default user; activity), then sends
 * one agent request and turns the answer into JSON, a stream, or a typed
 * failure. The document read and the streams are in agentfs_stream.c. */
#include "agentfs_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/log.h"
#include "files/path.h"

static void op_set_state(struct agentfs_op *op, enum afs_state to);
static void op_free(struct agentfs_op *op);
static void op_later_cb(evutil_socket_t fd, short what, void *arg);
static void acquired(struct sandbox_ref *ref, const struct core_error *err, void *arg);
static bool protected_path(const char *path);
static void one_entry(void *arg, const struct agent_fs_entry *e);
static void one_done(void *arg, const struct agent_fs_done *d);
static void one_error(void *arg, int code, const char *message);
static void send_request(struct agentfs_op *op);
static void proceed(struct agentfs_op *op);
static struct agentfs_op *upload_op(struct agentfs *fs, enum afs_kind kind, const char *sandbox_id,
				    const char *container, agentfs_done_fn cb, void *arg);

static const char *const state_names[AFS_STATE_MAX] = { "lookup", "agent", "done" };

struct agentfs *agentfs_new(struct event_base *base, struct registry *reg, uint64_t upload_limit)
{
	struct agentfs *fs = calloc(1, sizeof(*fs));
	CHECK(fs != NULL);
	fs->base = base;
	fs->reg = reg;
	fs->upload_limit = upload_limit;
	return fs;
}

void agentfs_free(struct agentfs *fs)
{
	if (!fs)
		return;
	free(fs);
}

/* ---- ops ---- */

static void op_set_state(struct agentfs_op *op, enum afs_state to)
{
	static const unsigned legal[AFS_STATE_MAX] = {
		[AFS_LOOKUP] = 1u << AFS_AGENT | 1u << AFS_DONE,
		[AFS_AGENT] = 1u << AFS_DONE,
		[AFS_DONE] = 0,
	};
	CHECK(to < AFS_STATE_MAX && (legal[op->state] & (1u << to)));
	log_debug("file op %p (%d) %s: %s -> %s", (void *)op, (int)op->kind, op->path, state_names[op->state],
		  state_names[to]);
	op->state = to;
}

struct agentfs_op *afs_op_new(struct agentfs *fs, enum afs_kind kind, const char *sandbox_id, void *arg)
{
	struct agentfs_op *op = calloc(1, sizeof(*op));
	CHECK(op != NULL);
	op->fs = fs;
	op->kind = kind;
	op->arg = arg;
	op->state = AFS_LOOKUP;
	snprintf(op->sandbox_id, sizeof(op->sandbox_id), "%s", sandbox_id ? sandbox_id : "");
	op->later = event_new(fs->base, -1, 0, op_later_cb, op);
	CHECK(op->later != NULL);
	return op;
}

static void op_free(struct agentfs_op *op)
{
	registry_wait_cancel(op->rwait);
	if (op->afs)
		agent_fs_close(op->afs);
	event_free(op->later);
	free(op->user);
	free(op->old_text);
	free(op->new_text);
	if (op->buf)
		evbuffer_free(op->buf);
	for (size_t i = 0; i < op->nentries; i++)
		free((char *)op->entries[i].path);
	free(op->entries);
	free(op);
}

void agentfs_op_cancel(struct agentfs_op *op)
{
	if (!op)
		return;
	op->cancelled = true;
	if (op->in_cb == 0)
		op_free(op);
}

/* The op's end: the callback (unless cancelled), then it is freed. */
void afs_finish(struct agentfs_op *op, const struct core_error *fail, const struct agentfs_result *res)
{
	if (op->state == AFS_DONE)
		return;
	op_set_state(op, AFS_DONE);
	if (op->afs) {
		agent_fs_close(op->afs); /* a no-op once done or failed */
		op->afs = NULL;
	}
	if (op->rwait) {
		registry_wait_cancel(op->rwait);
		op->rwait = NULL;
	}
	if (!op->cancelled) {
		op->in_cb++;
		if (op->kind == AFS_READ) {
			if (fail && op->rev->failed)
				op->rev->failed(op->arg, fail);
			else if (!fail && op->rev->end)
				op->rev->end(op->arg);
		} else if (op->kind == AFS_WRITE) {
			op->wev->done(fail, res, op->arg);
		} else {
			op->cb(fail, res, op->arg);
		}
		op->in_cb--;
	}
	if (op->in_cb == 0)
		op_free(op);
	else
		op->cancelled = true; /* freed by the callback frame that holds it */
}

void afs_fail(struct agentfs_op *op, enum core_err err, const char *code, const char *fmt, ...)
{
	struct core_error f;
	va_list ap;
	va_start(ap, fmt);
	core_error_vset(&f, err, code, fmt, ap);
	va_end(ap);
	afs_finish(op, &f, NULL);
}

void afs_done(struct agentfs_op *op, struct agentfs_result *r)
{
	static const enum agentfs_call calls[] = {
		[AFS_STAT] = AGENTFS_STAT,	   [AFS_LIST] = AGENTFS_LIST,	[AFS_MKDIR] = AGENTFS_MKDIR,
		[AFS_REMOVE] = AGENTFS_REMOVE,	   [AFS_MOVE] = AGENTFS_MOVE,	[AFS_EDIT] = AGENTFS_EDIT,
		[AFS_READ_DOC] = AGENTFS_READ_DOC, [AFS_WRITE] = AGENTFS_WRITE, [AFS_READ] = AGENTFS_READ_DOC,
	};
	r->call = calls[op->kind];
	afs_finish(op, NULL, r);
}

/* An early failure (bad input) goes out from the loop, never on the caller's stack. */
void afs_fail_later(struct agentfs_op *op, enum core_err err, const char *code, const char *msg)
{
	op->later_err = err;
	op->later_code = code;
	snprintf(op->later_msg, sizeof(op->later_msg), "%s", msg);
	event_active(op->later, EV_TIMEOUT, 0);
}

static void op_later_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agentfs_op *op = arg;
	if (op->later_code) {
		afs_fail(op, op->later_err, op->later_code, "%s", op->later_msg);
		return;
	}
	if (op->kind == AFS_WRITE)
		afs_write_poll(op);
}

/* The agent's errno as a failure of the API. */
void afs_fail_errno(struct agentfs_op *op, int code, const char *message)
{
	const char *p = op->path;
	switch (code) {
	case ENOENT:
		afs_fail(op, CORE_NOT_FOUND, "not_found", "%s: no such file or directory", p);
		return;
	case EACCES:
	case EPERM:
		afs_fail(op, CORE_FORBIDDEN, "permission_denied", "%s: permission denied", p);
		return;
	case ENOTDIR:
		afs_fail(op, CORE_INVALID, "not_a_directory", "%s: not a directory", p);
		return;
	case EISDIR:
		afs_fail(op, CORE_INVALID, "is_a_directory", "%s: is a directory", p);
		return;
	case EEXIST:
		afs_fail(op, CORE_CONFLICT, "already_exists", "%s: already exists",
			 op->kind == AFS_MOVE ? op->path2 : p);
		return;
	case ENOTEMPTY:
		afs_fail(op, CORE_CONFLICT, "directory_not_empty",
			 "%s: directory not empty (set recursive=true to remove it and its contents)", p);
		return;
	case EXDEV:
		afs_fail(op, CORE_CONFLICT, "cross_device", "cannot move across file systems");
		return;
	case EFBIG:
		afs_fail(op, CORE_LIMIT, "too_large", "%s: file too large for this operation", p);
		return;
	case ENOSPC:
	case EDQUOT:
		afs_fail(op, CORE_LIMIT, "insufficient_storage", "no space left in the sandbox");
		return;
	case ENAMETOOLONG:
	case ELOOP:
		afs_fail(op, CORE_INVALID, "invalid_path", "%s: %s", p, message);
		return;
	case EINVAL:
		afs_fail(op, CORE_INVALID, "invalid_request", "%s: %s", p, message);
		return;
	case ENOTSUP:
		afs_fail(op, CORE_UNSUPPORTED, "agent_outdated", "%s", message);
		return;
	case AGENT_DOCKER_DOWN:
		afs_fail(op, CORE_UNAVAILABLE, "docker_unavailable", "%s", message);
		return;
	case ESRCH:
	case ECONNREFUSED:
	case EPIPE: {
		if (strstr(message, "container unavailable")) {
			afs_fail(op, CORE_CONFLICT, "sandbox_not_running", "the sandbox is not running");
			return;
		}
		afs_fail(op, CORE_UNAVAILABLE, "agent_unavailable", "the sandbox agent: %s", message);
		return;
	}
	default:
		afs_fail(op, CORE_INTERNAL, "fs_error", "%s: %s", p, message);
		return;
	}
}

/* Normalises in into out; a failure is queued on op. */
int afs_path(struct agentfs_op *op, const char *in, char *out)
{
	const char *why = NULL;
	if (!in || files_path_normalize(in, strlen(in), out, &why) != 0) {
		char msg[200];
		snprintf(msg, sizeof(msg), "path: %s", in ? why : "required");
		afs_fail_later(op, CORE_INVALID, "invalid_path", msg);
		return -1;
	}
	return 0;
}

/* "/" and the top-level directories a system needs. */
static bool protected_path(const char *path)
{
	static const char *const top[] = { "bin",   "boot",   "dev", "etc",  "home", "lib",	 "lib32",
					   "lib64", "libx32", "opt", "proc", "root", "run",	 "sbin",
					   "srv",   "sys",    "tmp", "usr",  "var",  ".sandbar", NULL };
	if (strcmp(path, "/") == 0)
		return true;
	if (strchr(path + 1, '/'))
		return false;
	for (size_t i = 0; top[i]; i++) {
		if (strcmp(path + 1, top[i]) == 0)
			return true;
	}
	return false;
}

/* Validated input in op: look the sandbox up. */
void afs_start(struct agentfs_op *op)
{
	if (op->later_code)
		return;
	op->rwait = registry_acquire(op->fs->reg, op->sandbox_id,
				     REGISTRY_RUNNING | REGISTRY_WAKE | REGISTRY_TOUCH, acquired, op);
}

static void acquired(struct sandbox_ref *ref, const struct core_error *err, void *arg)
{
	struct agentfs_op *op = arg;
	op->rwait = NULL;
	if (err) {
		afs_finish(op, err, NULL);
		return;
	}
	const struct sandbox *sb = sandbox_ref_get(ref);
	snprintf(op->container, sizeof(op->container), "%s", sb->container_id);
	if (sb->run_user) {
		op->user = strdup(sb->run_user);
		CHECK(op->user != NULL);
	}
	sandbox_ref_put(ref);
	proceed(op);
}

/* The sandbox is known: the agent request. */
static void proceed(struct agentfs_op *op)
{
	op_set_state(op, AFS_AGENT);
	op->ch = channels_get(registry_channels(op->fs->reg), op->sandbox_id, op->container);
	switch (op->kind) {
	case AFS_READ:
	case AFS_READ_DOC:
	case AFS_WRITE:
		afs_stream_start(op);
		break;
	default:
		send_request(op);
		break;
	}
}

static const struct agent_fs_ops one_ops = { one_entry, NULL, one_done, one_error };

static void send_request(struct agentfs_op *op)
{
	struct agent_fs_req r = { .path = op->path, .user = op->user, .flags = op->flags };
	switch (op->kind) {
	case AFS_STAT:
		r.op = AGENT_FS_STAT;
		break;
	case AFS_LIST:
		r.op = AGENT_FS_LIST;
		r.depth = (uint64_t)op->depth;
		r.limit = AGENTFS_LIST_LIMIT;
		break;
	case AFS_MKDIR:
		r.op = AGENT_FS_MKDIR;
		break;
	case AFS_REMOVE:
		r.op = AGENT_FS_REMOVE;
		break;
	case AFS_MOVE:
		r.op = AGENT_FS_MOVE;
		r.path2 = op->path2;
		r.size = op->size;
		r.has_size = op->cut;
		break;
	case AFS_EDIT:
		r.op = AGENT_FS_EDIT;
		r.old_text = op->old_text;
		r.old_len = op->old_len;
		r.new_text = op->new_text;
		r.new_len = op->new_len;
		break;
	default:
		CHECK(!"not a one-shot op");
	}
	op->afs = agent_fs_op(op->ch, &r, &one_ops, op);
}

/* ---- answers ---- */

static void entry_from(struct agentfs_entry *out, const struct agent_fs_entry *e, const char *path)
{
	*out = (struct agentfs_entry){
		.path = path,
		.size = e->size,
		.mode = e->mode,
		.mtime_ms = e->mtime_ms,
		.uid = e->uid,
		.gid = e->gid,
		.link = e->link,
	};
}

static void one_entry(void *arg, const struct agent_fs_entry *e)
{
	struct agentfs_op *op = arg;
	if (op->kind == AFS_LIST) {
		if (op->nentries == op->cap_entries) {
			op->cap_entries = op->cap_entries ? op->cap_entries * 2 : 64;
			op->entries = realloc(op->entries, op->cap_entries * sizeof(*op->entries));
			CHECK(op->entries != NULL);
		}
		char *path = strdup(e->path ? e->path : "");
		CHECK(path != NULL);
		entry_from(&op->entries[op->nentries++], e, path);
		return;
	}
	if (op->kind != AFS_STAT || op->have_stat)
		return;
	entry_from(&op->stat, e, op->path);
	op->have_stat = true;
}

static void one_done(void *arg, const struct agent_fs_done *d)
{
	struct agentfs_op *op = arg;
	op->afs = NULL;
	struct agentfs_result r = { .path = op->path };
	switch (op->kind) {
	case AFS_STAT:
		if (!op->have_stat) {
			afs_fail(op, CORE_INTERNAL, "fs_error", "the agent sent no entry");
			return;
		}
		r.exists = true;
		r.entry = op->stat;
		break;
	case AFS_LIST:
		r.entries = op->entries;
		r.nentries = op->nentries;
		r.truncated = d->truncated;
		break;
	case AFS_MKDIR:
		r.created = d->created;
		break;
	case AFS_REMOVE:
		break;
	case AFS_MOVE:
		r.path2 = op->path2;
		break;
	case AFS_EDIT:
		if (d->count == 0) {
			afs_fail(op, CORE_INVALID, "edit_no_match",
				 "old_text occurs 0 times in %s; it must occur exactly once", op->path);
			return;
		}
		if (d->count > 1) {
			afs_fail(op, CORE_INVALID, "edit_ambiguous",
				 "old_text occurs %" PRIu64 " times in %s; it must occur exactly once "
				 "(add surrounding text to make it unique)",
				 d->count, op->path);
			return;
		}
		r.size = d->size;
		break;
	default:
		CHECK(!"not a one-shot op");
	}
	afs_done(op, &r);
}

static void one_error(void *arg, int code, const char *message)
{
	struct agentfs_op *op = arg;
	op->afs = NULL;
	if (op->kind == AFS_STAT && (code == ENOENT || code == ENOTDIR)) {
		struct agentfs_result r = { .path = op->path, .exists = false };
		afs_done(op, &r);
		return;
	}
	afs_fail_errno(op, code, message);
}

/* ---- the one-shot entry points ---- */

struct agentfs_op *agentfs_stat(struct agentfs *fs, const char *sandbox_id, const char *path,
				agentfs_done_fn cb, void *arg)
{
	struct agentfs_op *op = afs_op_new(fs, AFS_STAT, sandbox_id, arg);
	op->cb = cb;
	if (afs_path(op, path, op->path) == 0)
		afs_start(op);
	return op;
}

struct agentfs_op *agentfs_list(struct agentfs *fs, const char *sandbox_id, const char *path, int depth,
				agentfs_done_fn cb, void *arg)
{
	struct agentfs_op *op = afs_op_new(fs, AFS_LIST, sandbox_id, arg);
	op->cb = cb;
	op->depth = depth;
	if (afs_path(op, path, op->path) != 0)
		return op;
	if (depth < 1 || depth > AGENTFS_LIST_DEPTH) {
		afs_fail_later(op, CORE_INVALID, "invalid_depth", "depth must be 1 to 10");
		return op;
	}
	afs_start(op);
	return op;
}

struct agentfs_op *agentfs_mkdir(struct agentfs *fs, const char *sandbox_id, const char *path, bool parents,
				 agentfs_done_fn cb, void *arg)
{
	struct agentfs_op *op = afs_op_new(fs, AFS_MKDIR, sandbox_id, arg);
	op->cb = cb;
	op->flags = parents ? AGENT_FS_F_PARENTS : 0;
	if (afs_path(op, path, op->path) == 0)
		afs_start(op);
	return op;
}

struct agentfs_op *agentfs_remove(struct agentfs *fs, const char *sandbox_id, const char *path,
				  bool recursive, agentfs_done_fn cb, void *arg)
{
	struct agentfs_op *op = afs_op_new(fs, AFS_REMOVE, sandbox_id, arg);
	op->cb = cb;
	op->flags = recursive ? AGENT_FS_F_RECURSIVE : 0;
	if (afs_path(op, path, op->path) != 0)
		return op;
	if (protected_path(op->path)) {
		afs_fail_later(op, CORE_FORBIDDEN, "protected_path",
			       "refusing to remove / or a top-level system directory");
		return op;
	}
	afs_start(op);
	return op;
}

struct agentfs_op *agentfs_move(struct agentfs *fs, const char *sandbox_id, const char *from, const char *to,
				bool overwrite, agentfs_done_fn cb, void *arg)
{
	struct agentfs_op *op = afs_op_new(fs, AFS_MOVE, sandbox_id, arg);
	op->cb = cb;
	op->flags = AGENT_FS_F_PARENTS | (overwrite ? AGENT_FS_F_OVERWRITE : 0);
	if (afs_path(op, from, op->path) != 0 || afs_path(op, to, op->path2) != 0)
		return op;
	if (protected_path(op->path) || protected_path(op->path2)) {
		afs_fail_later(op, CORE_FORBIDDEN, "protected_path",
			       "refusing to move / or a top-level system directory");
		return op;
	}
	afs_start(op);
	return op;
}

struct agentfs_op *agentfs_edit(struct agentfs *fs, const char *sandbox_id, const char *path,
				const char *old_text, size_t old_len, const char *new_text, size_t new_len,
				agentfs_done_fn cb, void *arg)
{
	struct agentfs_op *op = afs_op_new(fs, AFS_EDIT, sandbox_id, arg);
	op->cb = cb;
	if (afs_path(op, path, op->path) != 0)
		return op;
	if (!old_text || old_len == 0 || !new_text) {
		afs_fail_later(op, CORE_INVALID, "invalid_request",
			       "old_text (non-empty) and new_text are required");
		return op;
	}
	if (old_len + new_len > AGENT_FRAME_MAX - FILES_PATH_MAX - 1024) {
		afs_fail_later(op, CORE_LIMIT, "too_large",
			       "old_text and new_text together must stay under 1 MiB");
		return op;
	}
	op->old_text = malloc(old_len);
	op->new_text = malloc(new_len + 1);
	CHECK(op->old_text && op->new_text);
	memcpy(op->old_text, old_text, old_len);
	memcpy(op->new_text, new_text, new_len);
	op->old_len = old_len;
	op->new_len = new_len;
	afs_start(op);
	return op;
}

/* ---- upload temporaries (transfer_upload.c), as root ---- */

/* The caller has just seen the container running: no lookup, no activity. */
static struct agentfs_op *upload_op(struct agentfs *fs, enum afs_kind kind, const char *sandbox_id,
				    const char *container, agentfs_done_fn cb, void *arg)
{
	struct agentfs_op *op = afs_op_new(fs, kind, sandbox_id, arg);
	op->cb = cb;
	snprintf(op->container, sizeof(op->container), "%s", container);
	return op;
}

struct agentfs_op *agentfs_upload_commit(struct agentfs *fs, const char *sandbox_id, const char *container,
					 const char *tmp, const char *dst, uint64_t size, agentfs_done_fn cb,
					 void *arg)
{
	struct agentfs_op *op = upload_op(fs, AFS_MOVE, sandbox_id, container, cb, arg);
	op->flags = AGENT_FS_F_OVERWRITE;
	op->size = size;
	op->cut = true;
	if (afs_path(op, tmp, op->path) == 0 && afs_path(op, dst, op->path2) == 0)
		proceed(op);
	return op;
}

struct agentfs_op *agentfs_upload_discard(struct agentfs *fs, const char *sandbox_id, const char *container,
					  const char *tmp, agentfs_done_fn cb, void *arg)
{
	struct agentfs_op *op = upload_op(fs, AFS_REMOVE, sandbox_id, container, cb, arg);
	if (afs_path(op, tmp, op->path) == 0)
		proceed(op);
	return op;
}
