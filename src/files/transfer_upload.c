/* The upload of one file: tar-framed on the fly into Docker's archive API
 * (see README "Files" for the size a tar header needs first), spooled on the
 * host first when its size cannot be known or nothing could move a temporary
 * into place, then put in place by the agent. */
#include "transfer_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/iojob.h"
#include "core/log.h"
#include "docker/client.h"
#include "docker/tar.h"
#include "files/agentfs.h"
#include "files/fsops.h"
#include "files/path.h"

#define SANDBOX_UID 1000	 /* the `sandbox` user of the shipped images */
#define SPOOL_READ  (256u << 10) /* one read of the spool by the worker */
#define SPOOL_READS 2		 /* reads in flight: the next is ready when Docker drains */

enum up_state {
	UP_LOOKUP,  /* sandbox and container */
	UP_BODY,    /* bytes streaming in, tar streaming out (or to the spool) */
	UP_COMMIT,  /* temporary renamed into place */
	UP_DISCARD, /* temporary removed after a failure */
	UP_DONE,    /* over; freed from the loop */
	UP_STATE_MAX
};

struct files_upload {
	enum up_state state;
	struct files_transfer *t;
	const struct files_in_events *ev;
	void *arg;
	bool cancelled; /* no callback any more */
	bool told;	/* done was called (or a failure returned) */
	int calling;	/* inside a call of the caller's: a failure is returned, not called back */
	struct xfer_lookup *lookup;
	struct docker_call *put;
	char id[40];
	struct evbuffer *out;
	char container[80];
	bool running;
	bool begun, file_ended, tail_written, committing, put_done, put_ok, fs_pending, freeing;
	bool spool;			 /* the file waits in an unlinked host file */
	struct iojob_file *spool_file;	 /* NULL when none, or once sent whole */
	uint64_t spool_asked, spool_got; /* bytes of it asked of the worker, and sent on */
	unsigned spool_reads;		 /* reads in flight */
	char tmpname[112];
	char name[FILES_NAME_MAX + 1];
	char dir[FILES_PATH_MAX + 1];
	char dst[FILES_PATH_MAX + 1];
	char tmp[FILES_PATH_MAX + 1];
	uint64_t size, written, pad_left;
	int put_status;
	bool failed; /* the first failure, told once */
	struct core_error err;
};

static void up_set_state(struct files_upload *up, enum up_state to);
static void up_found(const char *container, bool running, const struct core_error *fail, void *arg);
static void up_fail(struct files_upload *up, enum core_err kind, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void up_fail_with(struct files_upload *up, const struct core_error *e);
static int up_returned(struct files_upload *up, struct core_error *fail);
static void up_release(struct files_upload *up);
static void up_free_cb(evutil_socket_t fd, short what, void *arg);
static int up_dir(struct files_upload *up, const char *dir);
static void up_pump(struct files_upload *up);
static int up_put_start(struct files_upload *up);
static int up_spool_open(struct files_upload *up);
static void up_spool_written(int err, struct evbuffer *data, void *arg);
static void up_spool_send(struct files_upload *up);
static bool up_spool_sent(struct files_upload *up);
static void up_spool_read(int err, struct evbuffer *data, void *arg);
static void up_maybe_commit(struct files_upload *up);
static void up_agent_committed(const struct core_error *fail, const struct agentfs_result *res, void *arg);
static void up_agent_discarded(const struct core_error *fail, const struct agentfs_result *res, void *arg);
static bool up_agent_missing(const struct core_error *fail);
static void up_committed(const char *err, void *arg);
static void up_discarded(const char *err, void *arg);
static void up_discard(struct files_upload *up);
static int put_head(struct docker_call *call, int status, void *arg);
static void put_data(struct docker_call *call, struct evbuffer *body, void *arg);
static void put_drain(struct docker_call *call, void *arg);
static void put_done(struct docker_call *call, const char *err, void *arg);

static const char *up_state_names[UP_STATE_MAX] = { "lookup", "body", "commit", "discard", "done" };

static void up_set_state(struct files_upload *up, enum up_state to)
{
	static const unsigned legal[UP_STATE_MAX] = {
		[UP_LOOKUP] = 1u << UP_BODY | 1u << UP_DONE,
		[UP_BODY] = 1u << UP_COMMIT | 1u << UP_DISCARD | 1u << UP_DONE,
		[UP_COMMIT] = 1u << UP_DISCARD | 1u << UP_DONE,
		[UP_DISCARD] = 1u << UP_DONE,
		[UP_DONE] = 0,
	};
	CHECK(to < UP_STATE_MAX && (legal[up->state] & (1u << to)));
	log_debug("upload %s: %s -> %s", up->tmp, up_state_names[up->state], up_state_names[to]);
	up->state = to;
}

struct files_upload *files_upload_new(struct files_transfer *t, const char *sandbox_id, bool sized,
				      const char *tag, const struct files_in_events *ev, void *arg)
{
	struct files_upload *up = calloc(1, sizeof(*up));
	CHECK(up != NULL);
	up->t = t;
	up->ev = ev;
	up->arg = arg;
	snprintf(up->id, sizeof(up->id), "%s", sandbox_id);
	/* the tar header needs the file's size before its first byte: without a
	 * bound, the file is spooled first (see README) */
	up->spool = !sized;
	/* the tag says whose it is; the random part keeps two uploads with one
	 * tag (a client's X-Request-Id, reused) from sharing a temporary */
	snprintf(up->tmpname, sizeof(up->tmpname), ".sandbar-upload-%s-%016" PRIx64, tag,
		 (uint64_t)arc4random() << 32 | arc4random());
	up->out = evbuffer_new();
	CHECK(up->out != NULL);
	up->lookup = xfer_lookup_start(t, sandbox_id, up_found, up);
	return up;
}

static void up_found(const char *container, bool running, const struct core_error *fail, void *arg)
{
	struct files_upload *up = arg;
	up->lookup = NULL;
	if (!container) {
		up_fail_with(up, fail);
		return;
	}
	snprintf(up->container, sizeof(up->container), "%s", container);
	up->running = running;
	/* On a stopped sandbox nothing can move a temporary into place, so the
	 * file is written under its final name: spool it first, so that Docker
	 * gets it only once it is whole and a source that stops half way leaves
	 * nothing behind. */
	if (!running)
		up->spool = true;
	up_set_state(up, UP_BODY);
	up->ev->ready(up->arg);
}

bool files_upload_spooled(const struct files_upload *up)
{
	return up->spool;
}

/* The source went away: stop everything, remove what was half written. */
void files_upload_cancel(struct files_upload *up)
{
	if (!up)
		return;
	up->cancelled = true;
	if (up->spool && up->committing)
		return; /* the whole file is here: it is written, there is just nobody to tell */
	up_fail(up, CORE_INTERNAL, "cancelled", "the upload was cancelled");
}

static void up_fail(struct files_upload *up, enum core_err kind, const char *code, const char *fmt, ...)
{
	struct core_error e;
	va_list ap;
	va_start(ap, fmt);
	core_error_vset(&e, kind, code, fmt, ap);
	va_end(ap);
	up_fail_with(up, &e);
}

/* The first failure: everything stops, the caller is told (returned by the
 * call it happened in, else called back), and what was half written goes. */
static void up_fail_with(struct files_upload *up, const struct core_error *e)
{
	if (up->failed || up->state == UP_DONE)
		return;
	up->failed = true;
	up->err = *e;
	xfer_lookup_cancel(up->lookup);
	up->lookup = NULL;
	iojob_file_close(up->spool_file); /* its writes and reads will not call back */
	up->spool_file = NULL;
	bool started = up->put != NULL || up->put_done;
	if (up->put) {
		docker_call_cancel(up->put);
		up->put = NULL;
	}
	if (!up->told && !up->cancelled && !up->calling) {
		up->told = true;
		up->ev->done(up->arg, &up->err, NULL);
	}
	up->told = true;
	if (started && up->running && up->state == UP_BODY) {
		/* Docker extracts as it reads: the temporary may hold a prefix */
		up_discard(up);
		return;
	}
	if (started && !up->running)
		log_warn("upload to stopped container %.12s failed in Docker: %s may hold a partial file",
			 up->container, up->dst);
	if (up->state != UP_COMMIT)
		up_release(up);
}

static int up_returned(struct files_upload *up, struct core_error *fail)
{
	if (!up->failed)
		return 0;
	*fail = up->err;
	return -1;
}

static void up_discard(struct files_upload *up)
{
	up_set_state(up, UP_DISCARD);
	up->fs_pending = true;
	agentfs_upload_discard(up->t->fs, up->id, up->container, up->tmp, up_agent_discarded, up);
}

/* An agent that predates the upload commit, or none reachable: the same
 * through a Docker exec (tens of milliseconds instead of one). */
static bool up_agent_missing(const struct core_error *fail)
{
	return fail && (fail->kind == CORE_UNSUPPORTED || fail->kind == CORE_UNAVAILABLE);
}

static void up_agent_discarded(const struct core_error *fail, const struct agentfs_result *res, void *arg)
{
	struct files_upload *up = arg;
	if (up_agent_missing(fail)) {
		files_fs_discard(up->t->docker, up->container, up->tmp, up_discarded, up);
		return;
	}
	if (fail && strcmp(fail->code, "not_found") != 0)
		log_warn("upload: cannot remove %s: %s", up->tmp, fail->message);
	up_discarded(NULL, up);
}

static void up_discarded(const char *err, void *arg)
{
	struct files_upload *up = arg;
	up->fs_pending = false;
	up_release(up);
}

/* Frees from the loop: callers may be inside a Docker, worker or agent callback, or ours. */
static void up_release(struct files_upload *up)
{
	if (up->freeing || up->fs_pending)
		return;
	if (up->state != UP_DONE)
		up_set_state(up, UP_DONE);
	up->freeing = true;
	static const struct timeval now = { 0, 0 };
	CHECK(event_base_once(up->t->base, -1, EV_TIMEOUT, up_free_cb, up, &now) == 0);
}

static void up_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct files_upload *up = arg;
	iojob_file_close(up->spool_file);
	evbuffer_free(up->out);
	free(up);
}

/* ---- the file in ---- */

static int up_dir(struct files_upload *up, const char *dir)
{
	const char *why;
	if (!dir || files_path_normalize(dir, strlen(dir), up->dir, &why) < 0) {
		up_fail(up, CORE_INVALID, "invalid_path", "%s", dir ? why : "a directory is required");
		return -1;
	}
	return 0;
}

int files_upload_begin(struct files_upload *up, const char *dir, const char *name, size_t name_len,
		       uint64_t size, struct core_error *fail)
{
	CHECK(up->state == UP_BODY && !up->begun && !up->failed);
	up->calling++;
	const char *why = files_name_check(name, name_len);
	if (why) {
		up_fail(up, CORE_INVALID, "invalid_name", "%s", why);
	} else if (up_dir(up, dir) == 0) {
		memcpy(up->name, name, name_len);
		up->name[name_len] = '\0';
		up->begun = true;
		if (up->spool) {
			up_spool_open(up);
		} else {
			up->size = size;
			up_put_start(up);
		}
	}
	up->calling--;
	return up_returned(up, fail);
}

int files_upload_set_dir(struct files_upload *up, const char *dir, struct core_error *fail)
{
	CHECK(up->spool && !up->committing && !up->failed);
	up->calling++;
	up_dir(up, dir);
	up->calling--;
	return up_returned(up, fail);
}

/* Names the entry (the final name on a stopped sandbox, else a temporary
 * beside it), writes its tar header and opens the archive PUT. */
static int up_put_start(struct files_upload *up)
{
	if (files_path_join(up->dir, up->name, up->dst) < 0) {
		up_fail(up, CORE_INVALID, "invalid_path", "destination path is longer than 4096 bytes");
		return -1;
	}
	if (!up->running) {
		snprintf(up->tmp, sizeof(up->tmp), "%s", up->dst);
	} else {
		if (files_path_join(up->dir, up->tmpname, up->tmp) < 0) {
			up_fail(up, CORE_INVALID, "invalid_path", "destination path is too long");
			return -1;
		}
	}
	/* Extracted at "/" with the whole path as the entry name: Docker makes
	 * missing parent directories and leaves existing ones untouched. */
	struct tar_entry e = {
		.name = up->tmp + 1,
		.type = TAR_FILE,
		.size = up->size,
		.mode = 0644,
		.mtime = time(NULL),
		.uid = SANDBOX_UID,
		.gid = SANDBOX_UID,
	};
	if (tar_write_header(up->out, &e) < 0) {
		up_fail(up, CORE_INVALID, "invalid_path",
			"destination path cannot be written to a tar header");
		return -1;
	}
	/* The whole archive's length is known now: a plain body, no chunk framing. */
	uint64_t tar_len = evbuffer_get_length(up->out) + (up->size + 511) / 512 * 512 + 1024;
	static const struct docker_stream_cbs pcbs = { put_head, put_data, put_drain, put_done };
	char path[200];
	snprintf(path, sizeof(path), "/containers/%s/archive?path=%%2F", up->container);
	up->put = docker_call_stream(up->t->docker, "PUT", path, "application/x-tar", (int64_t)tar_len, &pcbs,
				     up);
	if (!up->put) {
		up_fail(up, CORE_UNAVAILABLE, "docker_unavailable", "cannot reach Docker");
		return -1;
	}
	docker_call_write(up->put, up->out);
	return 0;
}

/* The bytes are moved, not copied: chains go from the source to Docker's
 * output (or the worker's queue) as they are (evbuffer_remove_buffer). */
int files_upload_write(struct files_upload *up, struct evbuffer *in, size_t len, struct core_error *fail)
{
	CHECK(up->begun && !up->file_ended && !up->failed);
	uint64_t limit = up->t->upload_limit;
	int rc = -1;
	up->calling++;
	if (up->written + len > limit) {
		up_fail(up, CORE_LIMIT, "too_large", "the file is larger than the limit of %" PRIu64 " bytes",
			limit);
	} else if (up->spool) {
		/* read on only while at most FILES_HIGH_WATERMARK waits for the disk */
		iojob_write(up->spool_file, in, len, up_spool_written, up);
		up->written += len;
		rc = iojob_file_pending(up->spool_file) > FILES_HIGH_WATERMARK ? 1 : 0;
	} else if (up->written + len > up->size) {
		up_fail(up, CORE_INVALID, "size_exceeded",
			"the file is longer than the %" PRIu64 " bytes announced", up->size);
	} else {
		up->written += len;
		CHECK(evbuffer_remove_buffer(in, up->out, len) == (int)len);
		docker_call_write(up->put, up->out);
		rc = docker_call_pending(up->put) > FILES_HIGH_WATERMARK ? 1 : 0;
	}
	up->calling--;
	return up->failed ? up_returned(up, fail) : rc;
}

void files_upload_end(struct files_upload *up)
{
	CHECK(up->begun && !up->file_ended && !up->failed);
	up->file_ended = true;
	if (up->spool)
		return; /* sent once the source is whole (up_spool_send) */
	up->pad_left = up->size - up->written;
	up_pump(up);
}

int files_upload_commit(struct files_upload *up, struct core_error *fail)
{
	CHECK(up->file_ended && !up->committing && !up->failed);
	up->committing = true;
	up->calling++;
	if (!up->spool)
		up_maybe_commit(up);
	else if (iojob_file_pending(up->spool_file) == 0)
		up_spool_send(up); /* else once the last write is done (up_spool_written) */
	up->calling--;
	return up_returned(up, fail);
}

/* What Docker gets next: the spool's bytes, or zeros up to the announced size
 * (cut off by the commit); then the tar's end. */
static void up_pump(struct files_upload *up)
{
	static const char zeros[64 << 10];
	if (!up->put || (up->spool && !up_spool_sent(up)))
		return;
	while (up->pad_left && docker_call_pending(up->put) < FILES_HIGH_WATERMARK) {
		size_t n = up->pad_left < sizeof(zeros) ? (size_t)up->pad_left : sizeof(zeros);
		evbuffer_add(up->out, zeros, n);
		docker_call_write(up->put, up->out);
		up->pad_left -= n;
	}
	if (up->file_ended && !up->pad_left && !up->tail_written) {
		up->tail_written = true;
		tar_write_padding(up->out, up->size);
		tar_write_end(up->out);
		docker_call_write(up->put, up->out);
		docker_call_finish(up->put);
	}
}

/* ---- the spool: the file on the host first ---- */

/* An unlinked file in the spool directory: gone with its descriptor,
 * whatever happens. Its writes and reads run in the iojob worker: a disk that
 * lags (or the kernel throttling a writer of many dirty pages) must not stall
 * the loop. */
static int up_spool_open(struct files_upload *up)
{
	const char *dir = up->t->spool_dir;
	/* a file without a name from the start; where the file system cannot,
	 * one named for the moment between its creation and its unlink */
	int fd = open(dir, O_TMPFILE | O_RDWR | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		char path[FILES_PATH_MAX + 64];
		snprintf(path, sizeof(path), "%s/sandbar-upload-XXXXXX", dir);
		fd = mkostemp(path, O_APPEND | O_CLOEXEC);
		if (fd >= 0)
			unlink(path);
	}
	if (fd < 0) {
		log_warn("upload: cannot spool in %s: %s", dir, strerror(errno));
		up_fail(up, CORE_UNAVAILABLE, "spool_unavailable", "cannot hold the upload: %s",
			strerror(errno));
		return -1;
	}
	up->spool_file = iojob_file_new(up->t->io, fd);
	return 0;
}

static void up_spool_written(int err, struct evbuffer *data, void *arg)
{
	struct files_upload *up = arg;
	if (err) {
		log_warn("upload: spool write failed: %s", strerror(err));
		if (err == ENOSPC || err == EDQUOT)
			up_fail(up, CORE_LIMIT, "insufficient_storage",
				"no space left on the server to hold the upload");
		else
			up_fail(up, CORE_UNAVAILABLE, "spool_unavailable", "cannot hold the upload: %s",
				strerror(err));
		return;
	}
	size_t pending = iojob_file_pending(up->spool_file);
	if (up->committing) {
		if (pending == 0)
			up_spool_send(up);
		return;
	}
	if (!up->cancelled && pending <= FILES_HIGH_WATERMARK / 2)
		up->ev->ready(up->arg);
}

/* The source is whole and on disk, the size exact: the archive goes out with
 * the spool read back a chunk at a time as Docker takes it (up_pump). */
static void up_spool_send(struct files_upload *up)
{
	up->size = up->written;
	if (up_put_start(up) < 0)
		return;
	up_pump(up);
}

/* Asks the worker for the next chunks while Docker keeps up; true once every
 * byte has gone on to Docker (the spool is closed then). */
static bool up_spool_sent(struct files_upload *up)
{
	while (up->spool_reads < SPOOL_READS && up->spool_asked < up->size &&
	       docker_call_pending(up->put) < FILES_HIGH_WATERMARK) {
		uint64_t left = up->size - up->spool_asked;
		size_t n = left < SPOOL_READ ? (size_t)left : SPOOL_READ;
		iojob_read(up->spool_file, up->spool_asked, n, up_spool_read, up);
		up->spool_asked += n;
		up->spool_reads++;
	}
	if (up->spool_got < up->size)
		return false;
	iojob_file_close(up->spool_file);
	up->spool_file = NULL;
	return true;
}

/* Reads come back in the order asked: each is the next piece of the file. */
static void up_spool_read(int err, struct evbuffer *data, void *arg)
{
	struct files_upload *up = arg;
	uint64_t left = up->size - up->spool_got;
	size_t want = left < SPOOL_READ ? (size_t)left : SPOOL_READ;
	size_t n = evbuffer_get_length(data);
	up->spool_reads--;
	if (err || n != want) {
		log_warn("upload: spool read failed: %s", err ? strerror(err) : "the file is shorter");
		up_fail(up, CORE_INTERNAL, "spool_failed", "cannot send the spooled upload");
		return;
	}
	up->spool_got += n;
	docker_call_write(up->put, data);
	up_pump(up);
}

/* ---- the Docker side: tar out ---- */

static int put_head(struct docker_call *call, int status, void *arg)
{
	struct files_upload *up = arg;
	up->put_status = status;
	return 0;
}

static void put_data(struct docker_call *call, struct evbuffer *body, void *arg)
{
	struct files_upload *up = arg;
	char msg[200];
	size_t n = evbuffer_copyout(body, msg, sizeof(msg) - 1);
	msg[n] = '\0';
	if (up->put_status >= 400)
		log_warn("upload: Docker answered %d: %s", up->put_status, msg);
	evbuffer_drain(body, evbuffer_get_length(body));
}

static void put_drain(struct docker_call *call, void *arg)
{
	struct files_upload *up = arg;
	if (up->failed)
		return;
	up_pump(up);
	if (!up->cancelled && !up->file_ended && docker_call_pending(call) < FILES_HIGH_WATERMARK)
		up->ev->ready(up->arg);
}

static void put_done(struct docker_call *call, const char *err, void *arg)
{
	struct files_upload *up = arg;
	up->put = NULL;
	up->put_done = true;
	if (err || up->put_status != 200) {
		if (up->put_status == 404)
			up_fail(up, CORE_NOT_FOUND, "not_found", "the sandbox's container is gone");
		else
			up_fail(up, CORE_INTERNAL, "docker_error", "Docker refused the archive: %s",
				err ? err : "unexpected status");
		return;
	}
	if (!up->tail_written) {
		up_fail(up, CORE_INTERNAL, "docker_error", "Docker ended the archive call early");
		return;
	}
	up->put_ok = true;
	up_maybe_commit(up);
}

/* ---- in place ---- */

/* Both the source and Docker's answer are in, whichever came second. */
static void up_maybe_commit(struct files_upload *up)
{
	if (!up->committing || !up->put_ok || up->state != UP_BODY)
		return;
	up_set_state(up, UP_COMMIT);
	if (!up->running) {
		up_committed(NULL, up);
		return;
	}
	up->fs_pending = true;
	agentfs_upload_commit(up->t->fs, up->id, up->container, up->tmp, up->dst, up->written,
			      up_agent_committed, up);
}

static void up_agent_committed(const struct core_error *fail, const struct agentfs_result *res, void *arg)
{
	struct files_upload *up = arg;
	if (up_agent_missing(fail)) {
		files_fs_commit(up->t->docker, up->container, up->tmp, up->dst, up->written, up_committed,
				up);
		return;
	}
	if (fail)
		log_warn("upload: cannot put %s in place: %s", up->dst, fail->message);
	up_committed(fail ? fail->message : NULL, up);
}

static void up_committed(const char *err, void *arg)
{
	struct files_upload *up = arg;
	up->fs_pending = false;
	if (!up->told && !up->cancelled) {
		up->told = true;
		if (err) {
			struct core_error e;
			core_error_set(&e, CORE_INTERNAL, "commit_failed", "cannot put the file in place: %s",
				       err);
			up->ev->done(up->arg, &e, NULL);
		} else {
			up->ev->done(up->arg, NULL, up->dst);
		}
	}
	up->told = true;
	if (err && up->running) {
		/* the temporary is still there (a directory in the way, say) */
		up_discard(up);
		return;
	}
	up_release(up);
}
