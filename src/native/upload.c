/* The monza upload on the transfer engine (include/files/transfer.h): a
 * multipart body parsed as it streams, its `path` field and its `file` part
 * handed to the engine with a bound on the file's size taken from
 * Content-Length (see README "Files"), or none for a chunked body. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "files/multipart.h"
#include "files/path.h"
#include "files/transfer.h"
#include "http/server.h"
#include "internal.h"

enum up_part { PART_OTHER, PART_PATH, PART_FILE };

/* One upload's request; freed from the loop once answered (or gone): by
 * then the engine has called its last or been cancelled. */
struct upcall {
	struct native *nat;
	struct event_base *base;
	struct http_request *req; /* NULL once answered or gone */
	struct files_upload *up;  /* NULL once over */
	struct multipart *mp;
	int64_t content_length;
	uint64_t limit;
	bool streaming; /* the body is read */
	bool failed;	/* answered with an error */
	bool have_file;
	enum up_part part;
	char field[FILES_PATH_MAX + 1];
	size_t field_len;
	char dir[FILES_PATH_MAX + 1];
};

static void upload_route(struct http_request *req, void *arg);
static void upc_cancel(void *arg);
static void upc_fail(struct upcall *uc, const struct core_error *e);
static void upc_refuse(struct upcall *uc, enum core_err kind, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void upc_release(struct upcall *uc);
static void upc_free_cb(evutil_socket_t fd, short what, void *arg);
static void up_ready(void *arg);
static void up_done(void *arg, const struct core_error *fail, const char *path);
static void up_body_data(struct http_request *req, struct evbuffer *chunk, void *arg);
static void up_body_end(struct http_request *req, void *arg);
static int up_part_begin(const struct multipart_part *p, void *arg);
static int up_part_move(struct evbuffer *in, size_t len, void *arg);
static int up_part_end(void *arg);

static const struct files_in_events up_events = { up_ready, up_done };

int native_upload_routes(struct native *nat)
{
	return router_add(nat->router, "POST", "/api/sandboxes/{id}/files/upload", upload_route, nat);
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
	struct upcall *uc = calloc(1, sizeof(*uc));
	CHECK(uc != NULL);
	uc->nat = nat;
	uc->base = http_request_base(req);
	uc->req = req;
	uc->content_length = cl;
	uc->limit = limit;
	snprintf(uc->dir, sizeof(uc->dir), "/workspace");
	static const struct multipart_cbs cbs = { .part_begin = up_part_begin,
						  .part_end = up_part_end,
						  .part_move = up_part_move };
	uc->mp = multipart_new(boundary, &cbs, uc);
	http_request_set_cancel(req, upc_cancel, uc);
	/* the tar header needs the file's size before its first byte: without a
	 * Content-Length to bound it, the engine spools the file first */
	uc->up = files_upload_new(nat->xfer, id, cl >= 0, http_request_id(req), &up_events, uc);
}

/* The client went away: the engine removes what was half written (a
 * chunked body that was whole is still written, with nobody to tell). */
static void upc_cancel(void *arg)
{
	struct upcall *uc = arg;
	uc->req = NULL;
	files_upload_cancel(uc->up);
	uc->up = NULL;
	upc_release(uc);
}

/* Frees from the loop: callers may be inside the multipart parser. */
static void upc_release(struct upcall *uc)
{
	static const struct timeval now = { 0, 0 };
	CHECK(event_base_once(uc->base, -1, EV_TIMEOUT, upc_free_cb, uc, &now) == 0);
}

static void upc_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upcall *uc = arg;
	multipart_free(uc->mp);
	free(uc);
}

/* The first failure is answered; the engine has stopped, or is told to. */
static void upc_fail(struct upcall *uc, const struct core_error *e)
{
	if (uc->failed)
		return;
	uc->failed = true;
	files_upload_cancel(uc->up);
	uc->up = NULL;
	struct http_request *req = uc->req;
	uc->req = NULL;
	http_request_set_cancel(req, NULL, NULL);
	native_transfer_error(req, e);
	upc_release(uc);
}

/* A fault of the request itself: its multipart body, its fields. */
static void upc_refuse(struct upcall *uc, enum core_err kind, const char *code, const char *fmt, ...)
{
	struct core_error e;
	va_list ap;
	va_start(ap, fmt);
	core_error_vset(&e, kind, code, fmt, ap);
	va_end(ap);
	upc_fail(uc, &e);
}

/* ---- the engine's side ---- */

/* First: the sandbox is there, the body is read; then: it is read on. */
static void up_ready(void *arg)
{
	struct upcall *uc = arg;
	static const struct http_body_stream bcbs = { up_body_data, up_body_end };
	if (!uc->streaming) {
		uc->streaming = true;
		http_request_stream_body(uc->req, &bcbs, uc);
	} else if (uc->req) {
		http_request_body_resume(uc->req);
	}
}

static void up_done(void *arg, const struct core_error *fail, const char *path)
{
	struct upcall *uc = arg;
	uc->up = NULL;
	if (fail) {
		upc_fail(uc, fail);
		return;
	}
	struct http_request *req = uc->req;
	uc->req = NULL;
	http_request_set_cancel(req, NULL, NULL);
	native_transfer_ok(req, path);
	upc_release(uc);
}

/* ---- the body: multipart in ---- */

static void up_body_data(struct http_request *req, struct evbuffer *chunk, void *arg)
{
	struct upcall *uc = arg;
	if (uc->failed) {
		evbuffer_drain(chunk, evbuffer_get_length(chunk));
		return;
	}
	enum multipart_status st = multipart_feed(uc->mp, chunk);
	if (st == MULTIPART_PAUSED)
		http_request_body_pause(req);
	else if (st == MULTIPART_ERROR)
		upc_refuse(uc, CORE_INVALID, "invalid_multipart", "malformed multipart body: %s",
			   multipart_error(uc->mp));
}

static void up_body_end(struct http_request *req, void *arg)
{
	struct upcall *uc = arg;
	struct core_error fail;
	if (uc->failed)
		return;
	if (multipart_finish(uc->mp) != MULTIPART_DONE) {
		upc_refuse(uc, CORE_INVALID, "invalid_multipart", "malformed multipart body: %s",
			   multipart_error(uc->mp));
	} else if (!uc->have_file) {
		upc_refuse(uc, CORE_INVALID, "no_file", "the multipart field 'file' is required");
	} else if (files_upload_commit(uc->up, &fail) < 0) {
		uc->up = NULL;
		upc_fail(uc, &fail);
	}
}

static int up_part_begin(const struct multipart_part *p, void *arg)
{
	struct upcall *uc = arg;
	struct core_error fail;
	uc->part = PART_OTHER;
	if (strcmp(p->name, "path") == 0 && !p->filename) {
		if (uc->have_file && !files_upload_spooled(uc->up)) {
			upc_refuse(uc, CORE_INVALID, "invalid_multipart",
				   "the 'path' field must come before the file part");
			return -1;
		}
		uc->part = PART_PATH;
		uc->field_len = 0;
		return 0;
	}
	if (strcmp(p->name, "file") != 0)
		return 0; /* other fields are ignored, as monza did */
	if (uc->have_file) {
		upc_refuse(uc, CORE_INVALID, "invalid_multipart", "only one 'file' part is taken");
		return -1;
	}
	const char *why =
		p->filename ? files_name_check(p->filename, p->filename_len) : "file part has no filename";
	if (why) {
		upc_refuse(uc, CORE_INVALID, "invalid_name", "%s", why);
		return -1;
	}
	uc->have_file = true;
	uc->part = PART_FILE;
	uint64_t size = 0;
	if (!files_upload_spooled(uc->up)) {
		/* Every byte left in the body after this one is file data except the
		 * closing delimiter: the size is at most that, exact for a standard ending. */
		uint64_t rest = (uint64_t)uc->content_length - p->offset;
		size_t trailer = multipart_trailer_min(uc->mp);
		if (rest < trailer) {
			upc_refuse(uc, CORE_INVALID, "invalid_multipart",
				   "Content-Length is too small for the body");
			return -1;
		}
		size = rest - trailer;
		/* the usual ending carries a CRLF after the last delimiter: judge by that */
		uint64_t judged = size >= 2 ? size - 2 : size;
		if (judged > uc->limit) {
			upc_refuse(uc, CORE_LIMIT, "too_large",
				   "the file is larger than the limit of %" PRIu64 " bytes", uc->limit);
			return -1;
		}
	}
	if (files_upload_begin(uc->up, uc->dir, p->filename, p->filename_len, size, &fail) < 0) {
		uc->up = NULL;
		upc_fail(uc, &fail);
		return -1;
	}
	return 0;
}

static int up_part_move(struct evbuffer *in, size_t len, void *arg)
{
	struct upcall *uc = arg;
	struct core_error fail;
	switch (uc->part) {
	case PART_PATH:
		if (uc->field_len + len > FILES_PATH_MAX) {
			upc_refuse(uc, CORE_INVALID, "invalid_path", "path is longer than 4096 bytes");
			return -1;
		}
		CHECK(evbuffer_remove(in, uc->field + uc->field_len, len) == (int)len);
		uc->field_len += len;
		return 0;
	case PART_FILE: {
		int rc = files_upload_write(uc->up, in, len, &fail);
		if (rc < 0) {
			uc->up = NULL;
			/* past the bound Content-Length gave: the body's fault */
			if (strcmp(fail.code, "size_exceeded") == 0)
				core_error_set(&fail, CORE_INVALID, "invalid_multipart",
					       "the file part is longer than the body's length allows");
			upc_fail(uc, &fail);
		}
		return rc;
	}
	case PART_OTHER:
	default:
		evbuffer_drain(in, len);
		return 0;
	}
}

static int up_part_end(void *arg)
{
	struct upcall *uc = arg;
	struct core_error fail;
	if (uc->part == PART_PATH) {
		const char *why;
		if (files_path_normalize(uc->field, uc->field_len, uc->dir, &why) < 0) {
			upc_refuse(uc, CORE_INVALID, "invalid_path", "%s", why);
			return -1;
		}
		/* after the file: only where it waits in the spool (checked at the part's start) */
		if (uc->have_file && files_upload_set_dir(uc->up, uc->dir, &fail) < 0) {
			uc->up = NULL;
			upc_fail(uc, &fail);
			return -1;
		}
	} else if (uc->part == PART_FILE) {
		files_upload_end(uc->up);
	}
	uc->part = PART_OTHER;
	return 0;
}
