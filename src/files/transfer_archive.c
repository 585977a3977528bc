/* Downloads and archives through Docker's archive API: a file's bytes taken
 * out of Docker's tar on the fly, a directory's tar passed through, and a
 * tar checked entry by entry on its way into Docker. */
#include "transfer_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "docker/client.h"
#include "docker/tar.h"
#include "files/path.h"
#include "files/sniff.h"

#define MAX_LINK_HOPS 8

enum xfer_kind { XFER_FILE, XFER_TAR_OUT, XFER_TAR_IN };

enum xfer_state {
	XF_LOOKUP, /* sandbox and container */
	XF_DOCKER, /* Docker call made, its first entry (or answer) awaited */
	XF_SNIFF,  /* a file's first bytes collected for its Content-Type */
	XF_STREAM, /* bytes flowing */
	XF_DONE,   /* the caller has its answer (or is gone); freed from the loop */
	XF_STATE_MAX
};

struct files_xfer {
	enum xfer_state state;
	enum xfer_kind kind;
	struct files_transfer *t;
	const struct files_out_events *oev; /* out */
	const struct files_in_events *iev;  /* in */
	void *arg;
	bool cancelled; /* no callback any more */
	int calling;	/* inside a call of the caller's: a failure is returned, not called back */
	bool failed;
	struct core_error err;
	struct xfer_lookup *lookup;
	struct docker_call *call;
	struct tar_reader *tr;
	struct evbuffer *out;
	char container[80];
	char path[FILES_PATH_MAX + 1];
	int hops;
	bool follow; /* the entry was a symlink: restart at path */
	bool headed, body_ended, freeing, full;
	int status;
	uint64_t size, sent, received;
	char sniff[FILES_SNIFF_BYTES];
	size_t sniff_len;
};

static struct files_xfer *xf_new(struct files_transfer *t, enum xfer_kind kind, const char *sandbox_id,
				 const char *path, const struct files_out_events *oev,
				 const struct files_in_events *iev, void *arg, struct core_error *fail);
static void xf_set_state(struct files_xfer *x, enum xfer_state to);
static void xf_found(const char *container, bool running, const struct core_error *fail, void *arg);
static void xf_call(struct files_xfer *x);
static void xf_fail(struct files_xfer *x, enum core_err kind, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void xf_fail_with(struct files_xfer *x, const struct core_error *e);
static void xf_done(struct files_xfer *x);
static int xf_returned(struct files_xfer *x, struct core_error *fail);
static void xf_release(struct files_xfer *x);
static void xf_free_cb(evutil_socket_t fd, short what, void *arg);
static void xf_restart_cb(evutil_socket_t fd, short what, void *arg);
static void xf_begin_file(struct files_xfer *x);
static int xf_sink(struct files_xfer *x, struct evbuffer *data);
static int get_head(struct docker_call *call, int status, void *arg);
static void get_data(struct docker_call *call, struct evbuffer *body, void *arg);
static void get_done(struct docker_call *call, const char *err, void *arg);
static int file_entry(const struct tar_reader_entry *e, void *arg);
static int file_move(struct evbuffer *in, size_t len, void *arg);
static int in_entry(const struct tar_reader_entry *e, void *arg);
static void in_drain(struct docker_call *call, void *arg);

static const char *xf_state_names[XF_STATE_MAX] = { "lookup", "docker", "sniff", "stream", "done" };

static void xf_set_state(struct files_xfer *x, enum xfer_state to)
{
	static const unsigned legal[XF_STATE_MAX] = {
		[XF_LOOKUP] = 1u << XF_DOCKER | 1u << XF_DONE,
		[XF_DOCKER] = 1u << XF_DOCKER | 1u << XF_SNIFF | 1u << XF_STREAM | 1u << XF_DONE,
		[XF_SNIFF] = 1u << XF_STREAM | 1u << XF_DONE,
		[XF_STREAM] = 1u << XF_DONE,
		[XF_DONE] = 0,
	};
	CHECK(to < XF_STATE_MAX && (legal[x->state] & (1u << to)));
	log_debug("files %s: %s -> %s", x->path, xf_state_names[x->state], xf_state_names[to]);
	x->state = to;
}

/* ---- starting, ending ---- */

static struct files_xfer *xf_new(struct files_transfer *t, enum xfer_kind kind, const char *sandbox_id,
				 const char *path, const struct files_out_events *oev,
				 const struct files_in_events *iev, void *arg, struct core_error *fail)
{
	const char *why = "a path is required";
	char norm[FILES_PATH_MAX + 1];
	if (!path || files_path_normalize(path, strlen(path), norm, &why) < 0) {
		core_error_set(fail, CORE_INVALID, "invalid_path", "%s", why);
		return NULL;
	}
	struct files_xfer *x = calloc(1, sizeof(*x));
	CHECK(x != NULL);
	x->t = t;
	x->kind = kind;
	x->oev = oev;
	x->iev = iev;
	x->arg = arg;
	memcpy(x->path, norm, sizeof(x->path));
	x->out = evbuffer_new();
	CHECK(x->out != NULL);
	x->lookup = xfer_lookup_start(t, sandbox_id, xf_found, x);
	return x;
}

struct files_xfer *files_download(struct files_transfer *t, const char *sandbox_id, const char *path,
				  const struct files_out_events *ev, void *arg, struct core_error *fail)
{
	return xf_new(t, XFER_FILE, sandbox_id, path, ev, NULL, arg, fail);
}

struct files_xfer *files_archive_get(struct files_transfer *t, const char *sandbox_id, const char *path,
				     const struct files_out_events *ev, void *arg, struct core_error *fail)
{
	return xf_new(t, XFER_TAR_OUT, sandbox_id, path, ev, NULL, arg, fail);
}

struct files_xfer *files_archive_put(struct files_transfer *t, const char *sandbox_id, const char *dir,
				     const struct files_in_events *ev, void *arg, struct core_error *fail)
{
	return xf_new(t, XFER_TAR_IN, sandbox_id, dir, NULL, ev, arg, fail);
}

void files_xfer_cancel(struct files_xfer *x)
{
	if (!x)
		return;
	x->cancelled = true;
	xf_release(x);
}

static void xf_found(const char *container, bool running, const struct core_error *fail, void *arg)
{
	struct files_xfer *x = arg;
	x->lookup = NULL;
	if (!container) {
		xf_fail_with(x, fail);
		return;
	}
	snprintf(x->container, sizeof(x->container), "%s", container);
	xf_call(x);
}

static void xf_call(struct files_xfer *x)
{
	char *url = xfer_archive_url(x->container, x->path);
	tar_reader_free(x->tr);
	x->tr = NULL;
	x->status = 0;
	xf_set_state(x, XF_DOCKER);
	if (x->kind == XFER_TAR_IN) {
		static const struct docker_stream_cbs cbs = { get_head, get_data, in_drain, get_done };
		static const struct tar_reader_cbs tcbs = { in_entry, NULL };
		x->tr = tar_reader_new(&tcbs, x);
		x->call = docker_call_stream(x->t->docker, "PUT", url, "application/x-tar", -1, &cbs, x);
	} else {
		static const struct docker_stream_cbs cbs = { get_head, get_data, NULL, get_done };
		static const struct tar_reader_cbs tcbs = { file_entry, file_move };
		if (x->kind == XFER_FILE)
			x->tr = tar_reader_new(&tcbs, x);
		x->call = docker_call_stream(x->t->docker, "GET", url, NULL, 0, &cbs, x);
	}
	free(url);
	if (!x->call) {
		xf_fail(x, CORE_UNAVAILABLE, "docker_unavailable", "cannot reach Docker");
		return;
	}
	if (x->kind == XFER_TAR_IN && !x->cancelled)
		x->iev->ready(x->arg);
}

static void xf_fail(struct files_xfer *x, enum core_err kind, const char *code, const char *fmt, ...)
{
	struct core_error e;
	va_list ap;
	va_start(ap, fmt);
	core_error_vset(&e, kind, code, fmt, ap);
	va_end(ap);
	xf_fail_with(x, &e);
}

/* The first failure ends the transfer: returned by the caller's call it
 * happened in, else called back. */
static void xf_fail_with(struct files_xfer *x, const struct core_error *e)
{
	if (x->state == XF_DONE)
		return;
	x->failed = true;
	x->err = *e;
	bool tell = !x->cancelled && !x->calling;
	xf_release(x);
	if (!tell)
		return;
	if (x->kind == XFER_TAR_IN)
		x->iev->done(x->arg, &x->err, NULL);
	else
		x->oev->done(x->arg, &x->err);
}

/* Success: the last byte went to the sink, or the tar is in. */
static void xf_done(struct files_xfer *x)
{
	if (x->state == XF_DONE)
		return;
	bool tell = !x->cancelled;
	xf_release(x);
	if (!tell)
		return;
	if (x->kind == XFER_TAR_IN)
		x->iev->done(x->arg, NULL, x->path);
	else
		x->oev->done(x->arg, NULL);
}

/* What a call of the caller's answers: -1 with the failure it ran into. */
static int xf_returned(struct files_xfer *x, struct core_error *fail)
{
	if (!x->failed)
		return 0;
	*fail = x->err;
	return -1;
}

/* Frees from the loop: callers may be inside a Docker callback or ours. */
static void xf_release(struct files_xfer *x)
{
	if (x->freeing)
		return;
	x->freeing = true;
	if (x->state != XF_DONE)
		xf_set_state(x, XF_DONE);
	xfer_lookup_cancel(x->lookup);
	x->lookup = NULL;
	if (x->call) {
		/* safe from inside its own callbacks: the client frees it later */
		docker_call_cancel(x->call);
		x->call = NULL;
	}
	static const struct timeval now = { 0, 0 };
	CHECK(event_base_once(x->t->base, -1, EV_TIMEOUT, xf_free_cb, x, &now) == 0);
}

static void xf_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct files_xfer *x = arg;
	tar_reader_free(x->tr);
	evbuffer_free(x->out);
	free(x);
}

/* ---- out of Docker ---- */

void files_xfer_resume(struct files_xfer *x)
{
	x->full = false;
	if (x->call)
		docker_call_resume(x->call);
}

/* Bytes to the sink, which may ask for a pause. */
static int xf_sink(struct files_xfer *x, struct evbuffer *data)
{
	if (x->cancelled)
		evbuffer_drain(data, evbuffer_get_length(data));
	else if (x->oev->data(x->arg, data) > 0)
		x->full = true;
	return x->full ? 1 : 0;
}

static int get_head(struct docker_call *call, int status, void *arg)
{
	struct files_xfer *x = arg;
	x->status = status;
	if (status == 200 && x->kind == XFER_TAR_OUT) {
		xf_set_state(x, XF_STREAM);
		x->headed = true;
		struct files_head h = { .path = x->path,
					.size = FILES_SIZE_UNKNOWN,
					.content_type = "application/x-tar" };
		if (!x->cancelled)
			x->oev->head(x->arg, &h);
	}
	return 0;
}

static void get_data(struct docker_call *call, struct evbuffer *body, void *arg)
{
	struct files_xfer *x = arg;
	if (x->status != 200) {
		char msg[200];
		size_t n = evbuffer_copyout(body, msg, sizeof(msg) - 1);
		msg[n] = '\0';
		evbuffer_drain(body, evbuffer_get_length(body));
		if (x->status == 404)
			xf_fail(x, CORE_NOT_FOUND, "not_found", "no such file or directory: %s", x->path);
		else if (x->kind == XFER_TAR_IN && x->status == 400)
			xf_fail(x, CORE_INVALID, "invalid_path", "Docker refused the destination: %s", msg);
		else
			xf_fail(x, CORE_INTERNAL, "docker_error", "Docker answered %d: %s", x->status, msg);
		return;
	}
	if (x->kind == XFER_TAR_IN) {
		evbuffer_drain(body, evbuffer_get_length(body));
		return;
	}
	if (x->kind == XFER_TAR_OUT) {
		xf_sink(x, body);
	} else {
		enum tar_reader_status st = tar_reader_feed(x->tr, body, NULL);
		if (st == TAR_READER_ERROR) {
			if (!x->follow)
				xf_fail(x, CORE_INTERNAL, "docker_error",
					"Docker's archive is not a valid tar: %s", tar_reader_error(x->tr));
			return;
		}
		if (x->state == XF_DONE)
			return;
	}
	if (x->state != XF_DONE && x->full)
		docker_call_pause(call);
}

static void get_done(struct docker_call *call, const char *err, void *arg)
{
	struct files_xfer *x = arg;
	x->call = NULL;
	if (x->state == XF_DONE)
		return;
	/* the entry was a link and xf_restart_cb asks again for its target:
	 * whatever became of this call no longer counts */
	if (x->follow)
		return;
	if (err) {
		xf_fail(x, CORE_INTERNAL, "docker_error", "archive call failed: %s", err);
		return;
	}
	if (x->status == 404) {
		xf_fail(x, CORE_NOT_FOUND, "not_found", "no such file or directory: %s", x->path);
		return;
	}
	if (x->status != 200) {
		xf_fail(x, CORE_INTERNAL, "docker_error", "Docker answered %d", x->status);
		return;
	}
	if (x->kind == XFER_TAR_IN) {
		if (!x->body_ended) {
			xf_fail(x, CORE_INTERNAL, "docker_error", "Docker ended the archive call early");
			return;
		}
		xf_done(x);
		return;
	}
	if (x->kind == XFER_TAR_OUT || (x->kind == XFER_FILE && x->headed && x->sent == x->size)) {
		xf_done(x);
		return;
	}
	xf_fail(x, CORE_INTERNAL, "docker_error", "Docker's archive ended before the file did");
}

static int file_entry(const struct tar_reader_entry *e, void *arg)
{
	struct files_xfer *x = arg;
	if (x->state != XF_DOCKER)
		return 0; /* only the first entry is the file */
	switch (e->type) {
	case '0':
		x->size = e->size;
		xf_set_state(x, XF_SNIFF);
		if (x->size == 0)
			xf_begin_file(x);
		return 0;
	case '5':
		xf_fail(x, CORE_INVALID, "is_a_directory",
			"%s is a directory: use format=tar or files/archive", x->path);
		return -1;
	case '2': {
		/* Docker's archive holds the link itself; a download follows it, as cat would */
		char target[FILES_PATH_MAX + 1];
		if (++x->hops > MAX_LINK_HOPS || xfer_link_follow(x->path, e->linkname, target) < 0) {
			xf_fail(x, CORE_INVALID, "too_many_links", "%s: too many levels of symbolic links",
				x->path);
			return -1;
		}
		snprintf(x->path, sizeof(x->path), "%s", target);
		x->follow = true;
		static const struct timeval now = { 0, 0 };
		CHECK(event_base_once(x->t->base, -1, EV_TIMEOUT, xf_restart_cb, x, &now) == 0);
		return -1;
	}
	default:
		xf_fail(x, CORE_INVALID, "not_a_file", "%s is not a regular file", x->path);
		return -1;
	}
}

/* Out of the Docker callback that saw the link: drop that call, ask again. */
static void xf_restart_cb(evutil_socket_t fd, short what, void *arg)
{
	struct files_xfer *x = arg;
	x->follow = false;
	if (x->state == XF_DONE)
		return; /* the free is queued after this */
	if (x->call) {
		docker_call_cancel(x->call);
		x->call = NULL;
	}
	xf_call(x);
}

/* The file's head, then the bytes sniffed for its type. */
static void xf_begin_file(struct files_xfer *x)
{
	const char *base = files_path_base(x->path);
	struct files_head h = { .path = x->path,
				.size = x->size,
				.content_type = files_content_type(base, x->sniff, x->sniff_len) };
	x->headed = true;
	xf_set_state(x, XF_STREAM);
	if (!x->cancelled)
		x->oev->head(x->arg, &h);
	if (x->sniff_len) {
		evbuffer_add(x->out, x->sniff, x->sniff_len);
		xf_sink(x, x->out);
	}
	x->sent = x->sniff_len;
	if (x->sent == x->size)
		xf_done(x); /* all there: the rest of Docker's tar (end blocks) is not needed */
}

/* The entry's bytes move as buffer chains from Docker's response to the
 * sink; only the first ones are copied, to sniff the type. */
static int file_move(struct evbuffer *in, size_t len, void *arg)
{
	struct files_xfer *x = arg;
	if (x->state == XF_SNIFF) {
		size_t n = len < sizeof(x->sniff) - x->sniff_len ? len : sizeof(x->sniff) - x->sniff_len;
		CHECK(evbuffer_remove(in, x->sniff + x->sniff_len, n) == (int)n);
		x->sniff_len += n;
		len -= n;
		if (x->sniff_len < sizeof(x->sniff) && x->sniff_len < x->size)
			return 0;
		xf_begin_file(x);
	}
	if (x->state != XF_STREAM) {
		evbuffer_drain(in, len);
		return x->state == XF_DONE ? -1 : 0;
	}
	if (len == 0)
		return 0;
	CHECK(evbuffer_remove_buffer(in, x->out, len) == (int)len);
	int full = xf_sink(x, x->out);
	x->sent += len;
	if (x->sent == x->size) {
		xf_done(x);
		return -1;
	}
	return full;
}

/* ---- into Docker ---- */

static int in_entry(const struct tar_reader_entry *e, void *arg)
{
	struct files_xfer *x = arg;
	const char *why = xfer_entry_refused(e);
	if (why) {
		xf_fail(x, CORE_INVALID, "invalid_tar", "%s: %s", why, e->name);
		return -1;
	}
	return 0;
}

int files_xfer_write(struct files_xfer *x, struct evbuffer *in, struct core_error *fail)
{
	CHECK(x->kind == XFER_TAR_IN && x->call && x->state != XF_DONE);
	x->calling++;
	x->received += evbuffer_get_length(in);
	if (x->received > x->t->upload_limit) {
		xf_fail(x, CORE_LIMIT, "too_large",
			"the archive is larger than the limit of %" PRIu64 " bytes", x->t->upload_limit);
	} else {
		enum tar_reader_status st = tar_reader_feed(x->tr, in, x->out);
		if (x->call) /* else an entry was refused */
			docker_call_write(x->call, x->out);
		if (x->call && st == TAR_READER_ERROR)
			xf_fail(x, CORE_INVALID, "invalid_tar", "malformed tar stream: %s",
				tar_reader_error(x->tr));
	}
	x->calling--;
	if (x->failed)
		return xf_returned(x, fail);
	return docker_call_pending(x->call) > FILES_HIGH_WATERMARK ? 1 : 0;
}

int files_xfer_finish(struct files_xfer *x, struct core_error *fail)
{
	CHECK(x->kind == XFER_TAR_IN && x->call && x->state != XF_DONE);
	if (tar_reader_finish(x->tr) != TAR_READER_DONE) {
		x->calling++;
		xf_fail(x, CORE_INVALID, "invalid_tar", "malformed tar stream: %s", tar_reader_error(x->tr));
		x->calling--;
		return xf_returned(x, fail);
	}
	x->body_ended = true;
	tar_write_end(x->out); /* extra zero blocks after an end are ignored */
	docker_call_write(x->call, x->out);
	docker_call_finish(x->call);
	return 0;
}

static void in_drain(struct docker_call *call, void *arg)
{
	struct files_xfer *x = arg;
	if (!x->cancelled && x->state != XF_DONE && docker_call_pending(call) < FILES_HIGH_WATERMARK)
		x->iev->ready(x->arg);
}
