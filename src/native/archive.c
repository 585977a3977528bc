/* The native download and archive routes on the transfer engine
 * (include/files/transfer.h): query parameters in, the file's or the tar's
 * bytes piped into the response (Content-Disposition, Content-Type and
 * Content-Length from the engine's head), or a tar body piped into the engine. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/config.h"
#include "core/log.h"
#include "files/path.h"
#include "files/sniff.h"
#include "files/transfer.h"
#include "http/server.h"
#include "internal.h"

/* One transfer's request: NULL members once over. */
struct xcall {
	struct http_request *req;
	struct files_xfer *x;
	bool started;	/* out: the response has begun, too late for a status */
	bool streaming; /* in: the body is read */
	bool tar;	/* out: a tar (archive, or download with format=tar) */
};

static void download_route(struct http_request *req, void *arg);
static void archive_get_route(struct http_request *req, void *arg);
static void archive_put_route(struct http_request *req, void *arg);
static bool xfer_params(struct http_request *req, char *path);
static struct xcall *xcall_start(struct http_request *req);
static void xcall_cancel(void *arg);
static void xcall_refused(struct xcall *xc, const struct core_error *fail);
static void out_get(struct http_request *req, struct native *nat, bool tar);
static void out_head(void *arg, const struct files_head *h);
static int out_data(void *arg, struct evbuffer *data);
static void out_drain(void *arg);
static void out_done(void *arg, const struct core_error *fail);
static void in_ready(void *arg);
static void in_done(void *arg, const struct core_error *fail, const char *path);
static void in_failed(struct xcall *xc, const struct core_error *fail);
static void in_body_data(struct http_request *req, struct evbuffer *chunk, void *arg);
static void in_body_end(struct http_request *req, void *arg);

static const struct files_out_events out_events = { out_head, out_data, out_done };
static const struct files_in_events in_events = { in_ready, in_done };

int native_archive_routes(struct native *nat)
{
	struct router *r = nat->router;
	if (router_add(r, "GET", "/api/sandboxes/{id}/files/download", download_route, nat) != 0 ||
	    router_add(r, "GET", "/api/sandboxes/{id}/files/archive", archive_get_route, nat) != 0 ||
	    router_add(r, "PUT", "/api/sandboxes/{id}/files/archive", archive_put_route, nat) != 0)
		return -1;
	return 0;
}

/* A transfer's failure, rendered. The transfer routes have never named the
 * sandbox's status in a conflict: kept so, their answers are as they were. */
void native_transfer_error(struct http_request *req, const struct core_error *fail)
{
	struct core_error e = *fail;
	e.status = NULL;
	native_respond_error(req, &e);
}

/* Bytes in place at path: {"status":"ok","path"}. */
void native_transfer_ok(struct http_request *req, const char *path)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "status", json_object_new_string("ok"));
	json_object_object_add(o, "path", json_object_new_string(path));
	http_respond_json(req, 200, o);
}

/* The id and the path query parameter (normalised into path), or an answer. */
static bool xfer_params(struct http_request *req, char *path)
{
	if (!sandbox_id_valid(http_request_param(req, "id"))) {
		http_respond_error(req, 400, "invalid_id", "sandbox id must be a UUID");
		return false;
	}
	const char *p = http_request_query(req, "path");
	const char *why = "query parameter 'path' is required";
	if (!p || files_path_normalize(p, strlen(p), path, &why) < 0) {
		http_respond_error(req, 400, "invalid_path", "%s", why);
		return false;
	}
	return true;
}

static struct xcall *xcall_start(struct http_request *req)
{
	struct xcall *xc = http_request_alloc(req, sizeof(*xc));
	xc->req = req;
	http_request_set_cancel(req, xcall_cancel, xc);
	return xc;
}

static void xcall_cancel(void *arg)
{
	struct xcall *xc = arg;
	xc->req = NULL;
	files_xfer_cancel(xc->x);
	xc->x = NULL;
}

/* The transfer could not start: answered now. */
static void xcall_refused(struct xcall *xc, const struct core_error *fail)
{
	http_request_set_cancel(xc->req, NULL, NULL);
	native_transfer_error(xc->req, fail);
}

/* ---- out: download, archive GET ---- */

static void download_route(struct http_request *req, void *arg)
{
	const char *format = http_request_query(req, "format");
	if (format && strcmp(format, "tar") != 0) {
		http_respond_error(req, 400, "invalid_format", "format must be 'tar' or absent");
		return;
	}
	out_get(req, arg, format != NULL);
}

static void archive_get_route(struct http_request *req, void *arg)
{
	out_get(req, arg, true);
}

static void out_get(struct http_request *req, struct native *nat, bool tar)
{
	char path[FILES_PATH_MAX + 1];
	struct core_error fail;
	if (!xfer_params(req, path))
		return;
	struct xcall *xc = xcall_start(req);
	xc->tar = tar;
	const char *id = http_request_param(req, "id");
	xc->x = tar ? files_archive_get(nat->xfer, id, path, &out_events, xc, &fail)
		    : files_download(nat->xfer, id, path, &out_events, xc, &fail);
	if (!xc->x)
		xcall_refused(xc, &fail);
}

static void out_head(void *arg, const struct files_head *h)
{
	struct xcall *xc = arg;
	if (xc->tar) {
		char cd[4 * FILES_PATH_MAX + 80], name[FILES_NAME_MAX + 8];
		snprintf(name, sizeof(name), "%s.tar",
			 strcmp(h->path, "/") == 0 ? "root" : files_path_base(h->path));
		files_content_disposition(name, cd, sizeof(cd));
		http_response_header(xc->req, "Content-Disposition", cd);
		http_response_start(xc->req, 200, h->content_type, -1);
	} else {
		char cd[4 * FILES_NAME_MAX + 80];
		files_content_disposition(files_path_base(h->path), cd, sizeof(cd));
		http_response_header(xc->req, "Content-Disposition", cd);
		http_response_start(xc->req, 200, h->content_type, (int64_t)h->size);
	}
	xc->started = true;
	http_response_on_drain(xc->req, out_drain, xc);
}

/* Moved on as it came (a chunk of the response per piece of a tar). */
static int out_data(void *arg, struct evbuffer *data)
{
	struct xcall *xc = arg;
	http_response_write(xc->req, data);
	return http_response_pending(xc->req) > FILES_HIGH_WATERMARK ? 1 : 0;
}

static void out_drain(void *arg)
{
	struct xcall *xc = arg;
	if (xc->x)
		files_xfer_resume(xc->x);
}

static void out_done(void *arg, const struct core_error *fail)
{
	struct xcall *xc = arg;
	struct http_request *req = xc->req;
	xc->x = NULL;
	xc->req = NULL;
	http_request_set_cancel(req, NULL, NULL);
	if (!fail) {
		http_response_end(req);
	} else if (xc->started) {
		/* too late for a status: cut the response short so the client sees it */
		log_warn("files %s: failed mid-response (%s)", http_request_query(req, "path"), fail->code);
		http_response_abort(req);
	} else {
		native_transfer_error(req, fail);
	}
}

/* ---- in: archive PUT ---- */

static void archive_put_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	char path[FILES_PATH_MAX + 1];
	struct core_error fail;
	if (!xfer_params(req, path))
		return;
	if (http_request_content_length(req) > 0 &&
	    (uint64_t)http_request_content_length(req) > nat->cfg->upload_limit) {
		http_respond_error(req, 413, "too_large",
				   "the archive is larger than the limit of %" PRIu64 " bytes",
				   nat->cfg->upload_limit);
		return;
	}
	struct xcall *xc = xcall_start(req);
	xc->x = files_archive_put(nat->xfer, http_request_param(req, "id"), path, &in_events, xc, &fail);
	if (!xc->x)
		xcall_refused(xc, &fail);
}

/* First: the body streams in; then: it is read on. */
static void in_ready(void *arg)
{
	struct xcall *xc = arg;
	static const struct http_body_stream bcbs = { in_body_data, in_body_end };
	if (!xc->streaming) {
		xc->streaming = true;
		http_request_stream_body(xc->req, &bcbs, xc);
	} else {
		http_request_body_resume(xc->req);
	}
}

static void in_done(void *arg, const struct core_error *fail, const char *path)
{
	struct xcall *xc = arg;
	struct http_request *req = xc->req;
	if (fail) {
		in_failed(xc, fail);
		return;
	}
	xc->x = NULL;
	xc->req = NULL;
	http_request_set_cancel(req, NULL, NULL);
	native_transfer_ok(req, path);
}

static void in_failed(struct xcall *xc, const struct core_error *fail)
{
	struct http_request *req = xc->req;
	xc->x = NULL;
	xc->req = NULL;
	http_request_set_cancel(req, NULL, NULL);
	native_transfer_error(req, fail);
}

static void in_body_data(struct http_request *req, struct evbuffer *chunk, void *arg)
{
	struct xcall *xc = arg;
	struct core_error fail;
	if (!xc->x) {
		evbuffer_drain(chunk, evbuffer_get_length(chunk));
		return;
	}
	int rc = files_xfer_write(xc->x, chunk, &fail);
	if (rc < 0)
		in_failed(xc, &fail);
	else if (rc > 0)
		http_request_body_pause(req);
}

static void in_body_end(struct http_request *req, void *arg)
{
	struct xcall *xc = arg;
	struct core_error fail;
	if (xc->x && files_xfer_finish(xc->x, &fail) < 0)
		in_failed(xc, &fail);
}
