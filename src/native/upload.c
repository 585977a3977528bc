/* The monza upload: multipart in, tar out to Docker's archive API, parsed and
 * framed as the bytes pass (see README "Files" for the size trick), spooled
 * first when its size cannot be known. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "core/config.h"
#include "core/iojob.h"
#include "core/log.h"
#include "docker/engine.h"
#include "docker/tar.h"
#include "files/agentfs.h"
#include "files/fsops.h"
#include "files/multipart.h"
#include "files/path.h"
#include "transfer.h"
#include "http/server.h"

#define SANDBOX_UID 1000	 /* the `sandbox` user of the shipped images */
#define SPOOL_READ  (256u << 10) /* one read of the spool by the worker */
#define SPOOL_READS 2		 /* reads in flight: the next is ready when Docker drains */

/* ---- upload ---- */

enum up_state {
	UP_LOOKUP,  /* sandbox and container */
	UP_BODY,    /* multipart streaming in, tar streaming out */
	UP_COMMIT,  /* temporary renamed into place */
	UP_DISCARD, /* temporary removed after a failure */
	UP_DONE,    /* answered; freed from the loop */
	UP_STATE_MAX
};

enum up_part { PART_OTHER, PART_PATH, PART_FILE };

struct upload {
	enum up_state state;
	struct native *nat;
	struct docker *docker;
	struct event_base *base;
	struct http_request *req; /* NULL once answered or gone */
	struct transfer_lookup *lookup;
	struct docker_call *put;
	struct multipart *mp;
	char id[40];
	struct evbuffer *out;
	int64_t content_length;
	uint64_t limit;
	char container[80];
	bool running;
	enum up_part part;
	bool have_file, file_ended, tail_written, body_ended, put_done, put_ok, fs_pending, freeing;
	bool spool;			 /* chunked body: the file waits in an unlinked host file */
	struct iojob_file *spool_file;	 /* NULL when none, or once sent whole */
	uint64_t spool_asked, spool_got; /* bytes of it asked of the worker, and sent on */
	unsigned spool_reads;		 /* reads in flight */
	char tmpname[96];		 /* from the request id, which the client may take away */
	char name[FILES_NAME_MAX + 1];
	char field[FILES_PATH_MAX + 1];
	size_t field_len;
	char dir[FILES_PATH_MAX + 1];
	char dst[FILES_PATH_MAX + 1];
	char tmp[FILES_PATH_MAX + 1];
	uint64_t size, written, pad_left;
	int put_status;
	/* the first failure, answered once */
	int err_status;
	const char *err_code;
	char err_msg[300];
};

static void upload_route(struct http_request *req, void *arg);
static void up_set_state(struct upload *up, enum up_state to);
static void up_found(const char *container, bool running, int status, const char *code, const char *message,
		     void *arg);
static void up_cancel(void *arg);
static void up_fail(struct upload *up, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void up_release(struct upload *up);
static void up_free_cb(evutil_socket_t fd, short what, void *arg);
static void up_body_data(struct http_request *req, struct evbuffer *chunk, void *arg);
static void up_body_end(struct http_request *req, void *arg);
static int up_part_begin(const struct multipart_part *p, void *arg);
static int up_part_move(struct evbuffer *in, size_t len, void *arg);
static int up_part_end(void *arg);
static void up_pump(struct upload *up);
static int up_put_start(struct upload *up);
static int up_spool_open(struct upload *up);
static int up_spool_write(struct upload *up, struct evbuffer *in, size_t len);
static void up_spool_written(int err, struct evbuffer *data, void *arg);
static void up_spool_send(struct upload *up);
static bool up_spool_sent(struct upload *up);
static void up_spool_read(int err, struct evbuffer *data, void *arg);
static void up_maybe_commit(struct upload *up);
static void up_agent_committed(const struct core_error *fail, const struct agentfs_result *res, void *arg);
static void up_agent_discarded(const struct core_error *fail, const struct agentfs_result *res, void *arg);
static bool up_agent_missing(const struct core_error *fail);
static void up_committed(const char *err, void *arg);
static void up_discarded(const char *err, void *arg);
static int put_head(struct docker_call *call, int status, void *arg);
static void put_data(struct docker_call *call, struct evbuffer *body, void *arg);
static void put_drain(struct docker_call *call, void *arg);
static void put_done(struct docker_call *call, const char *err, void *arg);

static const char *up_state_names[UP_STATE_MAX] = { "lookup", "body", "commit", "discard", "done" };

int native_upload_routes(struct native *nat)
{
	if (router_add(nat->router, "POST", "/api/sandboxes/{id}/files/upload", upload_route, nat) != 0)
		return -1;
	return native_archive_routes(nat);
}

static void up_set_state(struct upload *up, enum up_state to)
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

static void upload_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	const char *id = http_request_param(req, "id");
	char boundary[MULTIPART_BOUNDARY_MAX + 1];
	if (!sandbox_id_valid(id)) {
		http_respond_error(req, 400, "invalid_id", "sandbox id must be a UUID");
		return;
	}
	if (multipart_boundary(http_request_header(req, "Content-Type"), boundary) < 0) {
		http_respond_error(req, 400, "invalid_multipart",
				   "Content-Type must be multipart/form-data with a boundary");
		return;
	}
	int64_t cl = http_request_content_length(req);
	uint64_t limit = nat->cfg->upload_limit;
	if (cl >= 0 && (uint64_t)cl > limit + (1u << 20)) {
		http_respond_error(req, 413, "too_large",
				   "the upload is larger than the limit of %" PRIu64 " bytes", limit);
		return;
	}
	struct upload *up = calloc(1, sizeof(*up));
	CHECK(up != NULL);
	up->nat = nat;
	up->docker = sandbox_service_docker(nat->svc);
	up->req = req;
	up->base = http_request_base(req);
	up->content_length = cl;
	up->limit = limit;
	snprintf(up->id, sizeof(up->id), "%s", id);
	/* the tar header needs the file's size before its first byte: without a
	 * Content-Length to bound it, the file is spooled first (see README) */
	up->spool = cl < 0;
	snprintf(up->tmpname, sizeof(up->tmpname), ".sandbar-upload-%s", http_request_id(req));
	up->out = evbuffer_new();
	CHECK(up->out != NULL);
	snprintf(up->dir, sizeof(up->dir), "/workspace");
	static const struct multipart_cbs cbs = { .part_begin = up_part_begin,
						  .part_end = up_part_end,
						  .part_move = up_part_move };
	up->mp = multipart_new(boundary, &cbs, up);
	http_request_set_cancel(req, up_cancel, up);
	up->lookup = transfer_lookup_start(nat, id, up_found, up);
}

static void up_found(const char *container, bool running, int status, const char *code, const char *message,
		     void *arg)
{
	struct upload *up = arg;
	up->lookup = NULL;
	if (!container) {
		up_fail(up, status, code, "%s", message);
		return;
	}
	snprintf(up->container, sizeof(up->container), "%s", container);
	up->running = running;
	/* On a stopped sandbox nothing can move a temporary into place, so the
	 * file is written under its final name: spool it first, so that Docker
	 * gets it only once it is whole and a client that leaves half way leaves
	 * nothing behind. */
	if (!running)
		up->spool = true;
	up_set_state(up, UP_BODY);
	static const struct http_body_stream bcbs = { up_body_data, up_body_end };
	http_request_stream_body(up->req, &bcbs, up);
}

/* The client went away: stop everything, remove what was half written. */
static void up_cancel(void *arg)
{
	struct upload *up = arg;
	up->req = NULL;
	if (up->spool && up->body_ended)
		return; /* the whole file is here: it is written, there is just nobody to tell */
	up_fail(up, 499, "client_gone", "the client went away");
}

static void up_fail(struct upload *up, int status, const char *code, const char *fmt, ...)
{
	if (up->err_status || up->state == UP_DONE)
		return;
	up->err_status = status;
	up->err_code = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(up->err_msg, sizeof(up->err_msg), fmt, ap);
	va_end(ap);
	transfer_lookup_cancel(up->lookup);
	up->lookup = NULL;
	iojob_file_close(up->spool_file); /* its writes and reads will not call back */
	up->spool_file = NULL;
	bool started = up->put != NULL || up->put_done;
	if (up->put) {
		docker_call_cancel(up->put);
		up->put = NULL;
	}
	if (up->req) {
		struct http_request *req = up->req;
		up->req = NULL;
		http_request_set_cancel(req, NULL, NULL);
		if (status == 503)
			http_response_header(req, "Retry-After", "1");
		http_respond_error(req, status, code, "%s", up->err_msg);
	}
	if (started && up->running && up->state == UP_BODY) {
		/* Docker extracts as it reads: the temporary may hold a prefix */
		up_set_state(up, UP_DISCARD);
		up->fs_pending = true;
		agentfs_upload_discard(up->nat->fs, up->id, up->container, up->tmp, up_agent_discarded, up);
		return;
	}
	if (started && !up->running)
		log_warn("upload to stopped container %.12s failed in Docker: %s may hold a partial file",
			 up->container, up->dst);
	if (up->state != UP_COMMIT)
		up_release(up);
}

/* An agent that predates the upload commit, or none reachable: the same
 * through a Docker exec (tens of milliseconds instead of one). */
static bool up_agent_missing(const struct core_error *fail)
{
	return fail && (fail->kind == CORE_UNSUPPORTED || fail->kind == CORE_UNAVAILABLE);
}

static void up_agent_discarded(const struct core_error *fail, const struct agentfs_result *res, void *arg)
{
	struct upload *up = arg;
	if (up_agent_missing(fail)) {
		files_fs_discard(up->docker, up->container, up->tmp, up_discarded, up);
		return;
	}
	if (fail && strcmp(fail->code, "not_found") != 0)
		log_warn("upload: cannot remove %s: %s", up->tmp, fail->message);
	up_discarded(NULL, up);
}

static void up_discarded(const char *err, void *arg)
{
	struct upload *up = arg;
	up->fs_pending = false;
	up_release(up);
}

/* Frees from the loop: callers may be inside the parser or a Docker callback. */
static void up_release(struct upload *up)
{
	if (up->freeing || up->fs_pending)
		return;
	if (up->state != UP_DONE)
		up_set_state(up, UP_DONE);
	up->freeing = true;
	if (up->req) {
		http_request_set_cancel(up->req, NULL, NULL);
		up->req = NULL;
	}
	static const struct timeval now = { 0, 0 };
	CHECK(event_base_once(up->base, -1, EV_TIMEOUT, up_free_cb, up, &now) == 0);
}

static void up_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upload *up = arg;
	iojob_file_close(up->spool_file);
	multipart_free(up->mp);
	evbuffer_free(up->out);
	free(up);
}

/* ---- the body: multipart in ---- */

static void up_body_data(struct http_request *req, struct evbuffer *chunk, void *arg)
{
	struct upload *up = arg;
	if (up->err_status) {
		evbuffer_drain(chunk, evbuffer_get_length(chunk));
		return;
	}
	enum multipart_status st = multipart_feed(up->mp, chunk);
	if (st == MULTIPART_PAUSED) {
		http_request_body_pause(req);
	} else if (st == MULTIPART_ERROR) {
		up_fail(up, 400, "invalid_multipart", "malformed multipart body: %s",
			multipart_error(up->mp));
	}
}

static void up_body_end(struct http_request *req, void *arg)
{
	struct upload *up = arg;
	if (up->err_status)
		return;
	if (multipart_finish(up->mp) != MULTIPART_DONE) {
		up_fail(up, 400, "invalid_multipart", "malformed multipart body: %s",
			multipart_error(up->mp));
		return;
	}
	if (!up->have_file) {
		up_fail(up, 400, "no_file", "the multipart field 'file' is required");
		return;
	}
	up->body_ended = true;
	if (up->spool) {
		if (iojob_file_pending(up->spool_file) == 0)
			up_spool_send(up); /* else once the last write is done (up_spool_written) */
		return;
	}
	up_maybe_commit(up);
}

static int up_part_begin(const struct multipart_part *p, void *arg)
{
	struct upload *up = arg;
	up->part = PART_OTHER;
	if (strcmp(p->name, "path") == 0 && !p->filename) {
		if (up->have_file && !up->spool) {
			up_fail(up, 400, "invalid_multipart",
				"the 'path' field must come before the file part");
			return -1;
		}
		up->part = PART_PATH;
		up->field_len = 0;
		return 0;
	}
	if (strcmp(p->name, "file") != 0)
		return 0; /* other fields are ignored, as monza did */
	if (up->have_file) {
		up_fail(up, 400, "invalid_multipart", "only one 'file' part is taken");
		return -1;
	}
	const char *why =
		p->filename ? files_name_check(p->filename, p->filename_len) : "file part has no filename";
	if (why) {
		up_fail(up, 400, "invalid_name", "%s", why);
		return -1;
	}
	CHECK(p->filename_len <= FILES_NAME_MAX);
	memcpy(up->name, p->filename, p->filename_len);
	up->name[p->filename_len] = '\0';
	up->have_file = true;
	up->part = PART_FILE;
	if (up->spool)
		return up_spool_open(up);
	/* Every byte left in the body after this one is file data except the
	 * closing delimiter: the size is at most that, exact for a standard ending. */
	uint64_t rest = (uint64_t)up->content_length - p->offset;
	size_t trailer = multipart_trailer_min(up->mp);
	if (rest < trailer) {
		up_fail(up, 400, "invalid_multipart", "Content-Length is too small for the body");
		return -1;
	}
	up->size = rest - trailer;
	/* the usual ending carries a CRLF after the last delimiter: judge by that */
	uint64_t judged = up->size >= 2 ? up->size - 2 : up->size;
	if (!up->running)
		up->size = judged; /* exact: nothing can truncate on a stopped container */
	if (judged > up->limit) {
		up_fail(up, 413, "too_large", "the file is larger than the limit of %" PRIu64 " bytes",
			up->limit);
		return -1;
	}
	return up_put_start(up);
}

/* Names the entry (the final name on a stopped sandbox, else a temporary
 * beside it), writes its tar header and opens the archive PUT. */
static int up_put_start(struct upload *up)
{
	if (files_path_join(up->dir, up->name, up->dst) < 0) {
		up_fail(up, 400, "invalid_path", "destination path is longer than 4096 bytes");
		return -1;
	}
	if (!up->running) {
		snprintf(up->tmp, sizeof(up->tmp), "%s", up->dst);
	} else {
		if (files_path_join(up->dir, up->tmpname, up->tmp) < 0) {
			up_fail(up, 400, "invalid_path", "destination path is too long");
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
		up_fail(up, 400, "invalid_path", "destination path cannot be written to a tar header");
		return -1;
	}
	/* The whole archive's length is known now: a plain body, no chunk framing. */
	uint64_t tar_len = evbuffer_get_length(up->out) + (up->size + 511) / 512 * 512 + 1024;
	static const struct docker_stream_cbs pcbs = { put_head, put_data, put_drain, put_done };
	char path[200];
	snprintf(path, sizeof(path), "/containers/%s/archive?path=%%2F", up->container);
	up->put =
		docker_call_stream(up->docker, "PUT", path, "application/x-tar", (int64_t)tar_len, &pcbs, up);
	if (!up->put) {
		up_fail(up, 503, "docker_unavailable", "cannot reach Docker");
		return -1;
	}
	docker_call_write(up->put, up->out);
	return 0;
}

/* Body bytes are moved, not copied: chains go from the client's input to
 * Docker's output as they are (evbuffer_remove_buffer). */
static int up_part_move(struct evbuffer *in, size_t len, void *arg)
{
	struct upload *up = arg;
	switch (up->part) {
	case PART_PATH:
		if (up->field_len + len > FILES_PATH_MAX) {
			up_fail(up, 400, "invalid_path", "path is longer than 4096 bytes");
			return -1;
		}
		CHECK(evbuffer_remove(in, up->field + up->field_len, len) == (int)len);
		up->field_len += len;
		return 0;
	case PART_FILE:
		if (up->written + len > up->limit) {
			up_fail(up, 413, "too_large",
				"the file is larger than the limit of %" PRIu64 " bytes", up->limit);
			return -1;
		}
		if (up->spool)
			return up_spool_write(up, in, len);
		if (up->written + len > up->size) {
			up_fail(up, 400, "invalid_multipart",
				"the file part is longer than the body's length allows");
			return -1;
		}
		up->written += len;
		CHECK(evbuffer_remove_buffer(in, up->out, len) == (int)len);
		docker_call_write(up->put, up->out);
		return docker_call_pending(up->put) > FILES_HIGH_WATERMARK ? 1 : 0;
	case PART_OTHER:
	default:
		evbuffer_drain(in, len);
		return 0;
	}
}

static int up_part_end(void *arg)
{
	struct upload *up = arg;
	if (up->part == PART_PATH) {
		const char *why;
		if (files_path_normalize(up->field, up->field_len, up->dir, &why) < 0) {
			up_fail(up, 400, "invalid_path", "%s", why);
			return -1;
		}
	} else if (up->part == PART_FILE) {
		up->file_ended = true;
		if (up->spool) {
			up->part = PART_OTHER;
			return 0; /* sent once the whole body is in (up_spool_send) */
		}
		up->pad_left = up->size - up->written;
		if (up->pad_left && !up->running) {
			up_fail(up, 400, "invalid_multipart",
				"on a stopped sandbox the file part must be last, with a standard ending");
			return -1;
		}
		up_pump(up);
	}
	up->part = PART_OTHER;
	return 0;
}

/* What Docker gets next: the spool's bytes, or zeros up to the announced size
 * (cut off by the commit); then the tar's end. */
static void up_pump(struct upload *up)
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

/* ---- chunked bodies: spooled on the host first ---- */

/* An unlinked file in UPLOAD_SPOOL_DIR: gone with its descriptor, whatever
 * happens. Its writes and reads run in the iojob worker: a disk that lags (or
 * the kernel throttling a writer of many dirty pages) must not stall the loop. */
static int up_spool_open(struct upload *up)
{
	const char *dir = up->nat->cfg->upload_spool_dir;
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
		up_fail(up, 503, "spool_unavailable", "cannot hold the upload: %s", strerror(errno));
		return -1;
	}
	up->spool_file = iojob_file_new(up->nat->io, fd);
	return 0;
}

/* Body bytes are moved to the worker; the body is read on only while at most
 * FILES_HIGH_WATERMARK of them wait for the disk. */
static int up_spool_write(struct upload *up, struct evbuffer *in, size_t len)
{
	iojob_write(up->spool_file, in, len, up_spool_written, up);
	up->written += len;
	return iojob_file_pending(up->spool_file) > FILES_HIGH_WATERMARK ? 1 : 0;
}

static void up_spool_written(int err, struct evbuffer *data, void *arg)
{
	struct upload *up = arg;
	if (err) {
		log_warn("upload: spool write failed: %s", strerror(err));
		up_fail(up, 507, "spool_full", "cannot hold the upload on the server");
		return;
	}
	size_t pending = iojob_file_pending(up->spool_file);
	if (up->body_ended) {
		if (pending == 0)
			up_spool_send(up);
		return;
	}
	if (up->req && pending <= FILES_HIGH_WATERMARK / 2)
		http_request_body_resume(up->req);
}

/* The body is in and on disk, the size exact: the archive goes out with the
 * spool read back a chunk at a time as Docker takes it (up_pump). */
static void up_spool_send(struct upload *up)
{
	up->size = up->written;
	if (up_put_start(up) < 0)
		return;
	up_pump(up);
}

/* Asks the worker for the next chunks while Docker keeps up; true once every
 * byte has gone on to Docker (the spool is closed then). */
static bool up_spool_sent(struct upload *up)
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
	struct upload *up = arg;
	uint64_t left = up->size - up->spool_got;
	size_t want = left < SPOOL_READ ? (size_t)left : SPOOL_READ;
	size_t n = evbuffer_get_length(data);
	up->spool_reads--;
	if (err || n != want) {
		log_warn("upload: spool read failed: %s", err ? strerror(err) : "the file is shorter");
		up_fail(up, 500, "spool_failed", "cannot send the spooled upload");
		return;
	}
	up->spool_got += n;
	docker_call_write(up->put, data);
	up_pump(up);
}

/* ---- the Docker side: tar out ---- */

static int put_head(struct docker_call *call, int status, void *arg)
{
	struct upload *up = arg;
	up->put_status = status;
	return 0;
}

static void put_data(struct docker_call *call, struct evbuffer *body, void *arg)
{
	struct upload *up = arg;
	char msg[200];
	size_t n = evbuffer_copyout(body, msg, sizeof(msg) - 1);
	msg[n] = '\0';
	if (up->put_status >= 400)
		log_warn("upload: Docker answered %d: %s", up->put_status, msg);
	evbuffer_drain(body, evbuffer_get_length(body));
}

static void put_drain(struct docker_call *call, void *arg)
{
	struct upload *up = arg;
	if (up->err_status)
		return;
	up_pump(up);
	if (up->req && !up->file_ended && docker_call_pending(call) < FILES_HIGH_WATERMARK)
		http_request_body_resume(up->req);
}

static void put_done(struct docker_call *call, const char *err, void *arg)
{
	struct upload *up = arg;
	up->put = NULL;
	up->put_done = true;
	if (err || up->put_status != 200) {
		if (up->put_status == 404)
			up_fail(up, 404, "not_found", "the sandbox's container is gone");
		else
			up_fail(up, 502, "docker_error", "Docker refused the archive: %s",
				err ? err : "unexpected status");
		return;
	}
	if (!up->tail_written) {
		up_fail(up, 502, "docker_error", "Docker ended the archive call early");
		return;
	}
	up->put_ok = true;
	up_maybe_commit(up);
}

/* Both the body and Docker's answer are in, whichever came second. */
static void up_maybe_commit(struct upload *up)
{
	if (!up->body_ended || !up->put_ok || up->state != UP_BODY)
		return;
	if (!up->running) {
		up_set_state(up, UP_COMMIT);
		up_committed(NULL, up);
		return;
	}
	up_set_state(up, UP_COMMIT);
	up->fs_pending = true;
	agentfs_upload_commit(up->nat->fs, up->id, up->container, up->tmp, up->dst, up->written,
			      up_agent_committed, up);
}

static void up_agent_committed(const struct core_error *fail, const struct agentfs_result *res, void *arg)
{
	struct upload *up = arg;
	if (up_agent_missing(fail)) {
		files_fs_commit(up->docker, up->container, up->tmp, up->dst, up->written, up_committed, up);
		return;
	}
	if (fail)
		log_warn("upload: cannot put %s in place: %s", up->dst, fail->message);
	up_committed(fail ? fail->message : NULL, up);
}

static void up_committed(const char *err, void *arg)
{
	struct upload *up = arg;
	up->fs_pending = false;
	if (up->req) {
		struct http_request *req = up->req;
		up->req = NULL;
		http_request_set_cancel(req, NULL, NULL);
		if (err) {
			http_respond_error(req, 500, "commit_failed", "cannot put the file in place: %s",
					   err);
		} else {
			struct json_object *o = json_object_new_object();
			json_object_object_add(o, "status", json_object_new_string("ok"));
			json_object_object_add(o, "path", json_object_new_string(up->dst));
			http_respond_json(req, 200, o);
		}
	}
	if (err && up->running) {
		/* the temporary is still there (a directory in the way, say) */
		up_set_state(up, UP_DISCARD);
		up->fs_pending = true;
		agentfs_upload_discard(up->nat->fs, up->id, up->container, up->tmp, up_agent_discarded, up);
		return;
	}
	up_release(up);
}
