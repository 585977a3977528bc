/* Downloads and archives through Docker's archive API: a file's bytes taken
 * out of Docker's tar on the fly, a directory's tar passed through, and a
 * client's tar checked entry by entry on its way into Docker. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/config.h"
#include "core/log.h"
#include "docker/client.h"
#include "docker/tar.h"
#include "files/path.h"
#include "files/sniff.h"
#include "files/tar_reader.h"
#include "transfer.h"
#include "http/server.h"

#define MAX_LINK_HOPS 8

enum xfer_kind { XFER_FILE, XFER_TAR_OUT, XFER_TAR_IN };

enum xfer_state {
	XF_LOOKUP, /* sandbox and container */
	XF_DOCKER, /* Docker call made, its first entry (or answer) awaited */
	XF_SNIFF,  /* a file's first bytes collected for its Content-Type */
	XF_STREAM, /* bytes flowing */
	XF_DONE,
	XF_STATE_MAX
};

struct xfer {
	enum xfer_state state;
	enum xfer_kind kind;
	struct native *nat;
	struct docker *docker;
	struct event_base *base;
	struct http_request *req;
	struct transfer_lookup *lookup;
	struct docker_call *call;
	struct tar_reader *tr;
	struct evbuffer *out;
	char container[80];
	char path[FILES_PATH_MAX + 1];
	int hops;
	bool follow; /* the entry was a symlink: restart at path */
	bool responded, body_ended, freeing;
	int status;
	uint64_t size, sent, received;
	char sniff[FILES_SNIFF_BYTES];
	size_t sniff_len;
};

static void download_route(struct http_request *req, void *arg);
static void archive_get_route(struct http_request *req, void *arg);
static void archive_put_route(struct http_request *req, void *arg);
static void xf_start(struct http_request *req, struct native *nat, enum xfer_kind kind);
static void xf_set_state(struct xfer *x, enum xfer_state to);
static void xf_found(const char *container, bool running, int status, const char *code, const char *message,
		     void *arg);
static void xf_call(struct xfer *x);
static void xf_cancel(void *arg);
static void xf_fail(struct xfer *x, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void xf_release(struct xfer *x);
static void xf_free_cb(evutil_socket_t fd, short what, void *arg);
static void xf_restart_cb(evutil_socket_t fd, short what, void *arg);
static void xf_begin_file(struct xfer *x);
static void xf_client_drain(void *arg);
static int get_head(struct docker_call *call, int status, void *arg);
static void get_data(struct docker_call *call, struct evbuffer *body, void *arg);
static void get_done(struct docker_call *call, const char *err, void *arg);
static int file_entry(const struct tar_reader_entry *e, void *arg);
static int file_move(struct evbuffer *in, size_t len, void *arg);
static int in_entry(const struct tar_reader_entry *e, void *arg);
static void in_body_data(struct http_request *req, struct evbuffer *chunk, void *arg);
static void in_body_end(struct http_request *req, void *arg);
static void in_drain(struct docker_call *call, void *arg);

static const char *xf_state_names[XF_STATE_MAX] = { "lookup", "docker", "sniff", "stream", "done" };

int native_archive_routes(struct native *nat)
{
	struct router *r = nat->router;
	if (router_add(r, "GET", "/api/sandboxes/{id}/files/download", download_route, nat) != 0 ||
	    router_add(r, "GET", "/api/sandboxes/{id}/files/archive", archive_get_route, nat) != 0 ||
	    router_add(r, "PUT", "/api/sandboxes/{id}/files/archive", archive_put_route, nat) != 0)
		return -1;
	return 0;
}

static void xf_set_state(struct xfer *x, enum xfer_state to)
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

static void download_route(struct http_request *req, void *arg)
{
	const char *format = http_request_query(req, "format");
	if (format && strcmp(format, "tar") != 0) {
		http_respond_error(req, 400, "invalid_format", "format must be 'tar' or absent");
		return;
	}
	xf_start(req, arg, format ? XFER_TAR_OUT : XFER_FILE);
}

static void archive_get_route(struct http_request *req, void *arg)
{
	xf_start(req, arg, XFER_TAR_OUT);
}

static void archive_put_route(struct http_request *req, void *arg)
{
	xf_start(req, arg, XFER_TAR_IN);
}

static void xf_start(struct http_request *req, struct native *nat, enum xfer_kind kind)
{
	const char *id = http_request_param(req, "id");
	if (!sandbox_id_valid(id)) {
		http_respond_error(req, 400, "invalid_id", "sandbox id must be a UUID");
		return;
	}
	const char *p = http_request_query(req, "path");
	struct xfer *x = calloc(1, sizeof(*x));
	CHECK(x != NULL);
	const char *why = "query parameter 'path' is required";
	if (!p || files_path_normalize(p, strlen(p), x->path, &why) < 0) {
		free(x);
		http_respond_error(req, 400, "invalid_path", "%s", why);
		return;
	}
	if (kind == XFER_TAR_IN && http_request_content_length(req) > 0 &&
	    (uint64_t)http_request_content_length(req) > nat->cfg->upload_limit) {
		free(x);
		http_respond_error(req, 413, "too_large",
				   "the archive is larger than the limit of %" PRIu64 " bytes",
				   nat->cfg->upload_limit);
		return;
	}
	x->kind = kind;
	x->nat = nat;
	x->docker = sandbox_service_docker(nat->svc);
	x->base = http_request_base(req);
	x->req = req;
	x->out = evbuffer_new();
	CHECK(x->out != NULL);
	http_request_set_cancel(req, xf_cancel, x);
	x->lookup = transfer_lookup_start(nat, id, xf_found, x);
}

static void xf_found(const char *container, bool running, int status, const char *code, const char *message,
		     void *arg)
{
	struct xfer *x = arg;
	x->lookup = NULL;
	if (!container) {
		xf_fail(x, status, code, "%s", message);
		return;
	}
	snprintf(x->container, sizeof(x->container), "%s", container);
	xf_call(x);
}

/* Docker's query value: the path, percent-encoded. */
static void encode_path(const char *path, char *out, size_t cap)
{
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)path; *p && o + 4 < cap; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~/", *p))
			out[o++] = (char)*p;
		else
			o += (size_t)snprintf(out + o, cap - o, "%%%02X", *p);
	}
	out[o] = '\0';
}

static void xf_call(struct xfer *x)
{
	char enc[3 * FILES_PATH_MAX + 1];
	encode_path(x->path, enc, sizeof(enc));
	size_t plen = strlen(enc) + 128;
	char *path = malloc(plen);
	CHECK(path != NULL);
	snprintf(path, plen, "/containers/%s/archive?path=%s", x->container, enc);
	tar_reader_free(x->tr);
	x->tr = NULL;
	x->status = 0;
	xf_set_state(x, XF_DOCKER);
	if (x->kind == XFER_TAR_IN) {
		static const struct docker_stream_cbs cbs = { get_head, get_data, in_drain, get_done };
		static const struct tar_reader_cbs tcbs = { in_entry, NULL };
		x->tr = tar_reader_new(&tcbs, x);
		x->call = docker_call_stream(x->docker, "PUT", path, "application/x-tar", -1, &cbs, x);
		if (x->call) {
			static const struct http_body_stream bcbs = { in_body_data, in_body_end };
			http_request_stream_body(x->req, &bcbs, x);
		}
	} else {
		static const struct docker_stream_cbs cbs = { get_head, get_data, NULL, get_done };
		static const struct tar_reader_cbs tcbs = { file_entry, file_move };
		if (x->kind == XFER_FILE)
			x->tr = tar_reader_new(&tcbs, x);
		x->call = docker_call_stream(x->docker, "GET", path, NULL, 0, &cbs, x);
	}
	free(path);
	if (!x->call)
		xf_fail(x, 503, "docker_unavailable", "cannot reach Docker");
}

static void xf_cancel(void *arg)
{
	struct xfer *x = arg;
	x->req = NULL;
	xf_fail(x, 499, "client_gone", "the client went away");
}

static void xf_fail(struct xfer *x, int status, const char *code, const char *fmt, ...)
{
	if (x->state == XF_DONE)
		return;
	if (x->req) {
		struct http_request *req = x->req;
		x->req = NULL;
		http_request_set_cancel(req, NULL, NULL);
		if (x->responded) {
			/* too late for a status: cut the response short so the client sees it */
			log_warn("files %s: failed mid-response (%s)", x->path, code);
			http_response_end(req);
		} else {
			char msg[400];
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(msg, sizeof(msg), fmt, ap);
			va_end(ap);
			if (status == 503)
				http_response_header(req, "Retry-After", "1");
			http_respond_error(req, status, code, "%s", msg);
		}
	}
	xf_release(x);
}

static void xf_release(struct xfer *x)
{
	if (x->freeing)
		return;
	x->freeing = true;
	if (x->state != XF_DONE)
		xf_set_state(x, XF_DONE);
	transfer_lookup_cancel(x->lookup);
	x->lookup = NULL;
	if (x->call) {
		/* safe from inside its own callbacks: the client frees it later */
		docker_call_cancel(x->call);
		x->call = NULL;
	}
	if (x->req) {
		http_request_set_cancel(x->req, NULL, NULL);
		x->req = NULL;
	}
	static const struct timeval now = { 0, 0 };
	CHECK(event_base_once(x->base, -1, EV_TIMEOUT, xf_free_cb, x, &now) == 0);
}

static void xf_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct xfer *x = arg;
	tar_reader_free(x->tr);
	evbuffer_free(x->out);
	free(x);
}

/* ---- out of Docker ---- */

static int get_head(struct docker_call *call, int status, void *arg)
{
	struct xfer *x = arg;
	x->status = status;
	if (status == 200 && x->kind == XFER_TAR_OUT) {
		char cd[4 * FILES_PATH_MAX + 80], name[FILES_NAME_MAX + 8];
		snprintf(name, sizeof(name), "%s.tar",
			 strcmp(x->path, "/") == 0 ? "root" : files_path_base(x->path));
		files_content_disposition(name, cd, sizeof(cd));
		http_response_header(x->req, "Content-Disposition", cd);
		http_response_start(x->req, 200, "application/x-tar", -1);
		x->responded = true;
		xf_set_state(x, XF_STREAM);
		http_response_on_drain(x->req, xf_client_drain, x);
	}
	return 0;
}

static void get_data(struct docker_call *call, struct evbuffer *body, void *arg)
{
	struct xfer *x = arg;
	if (x->status != 200) {
		char msg[200];
		size_t n = evbuffer_copyout(body, msg, sizeof(msg) - 1);
		msg[n] = '\0';
		evbuffer_drain(body, evbuffer_get_length(body));
		if (x->status == 404)
			xf_fail(x, 404, "not_found", "no such file or directory: %s", x->path);
		else if (x->kind == XFER_TAR_IN && x->status == 400)
			xf_fail(x, 400, "invalid_path", "Docker refused the destination: %s", msg);
		else
			xf_fail(x, 502, "docker_error", "Docker answered %d: %s", x->status, msg);
		return;
	}
	if (x->kind == XFER_TAR_IN) {
		evbuffer_drain(body, evbuffer_get_length(body));
		return;
	}
	if (x->kind == XFER_TAR_OUT) {
		http_response_write(x->req, body);
	} else {
		enum tar_reader_status st = tar_reader_feed(x->tr, body, NULL);
		if (st == TAR_READER_ERROR) {
			if (!x->follow)
				xf_fail(x, 502, "docker_error", "Docker's archive is not a valid tar: %s",
					tar_reader_error(x->tr));
			return;
		}
		if (x->state == XF_DONE)
			return;
	}
	if (x->req && http_response_pending(x->req) > FILES_HIGH_WATERMARK)
		docker_call_pause(call);
}

static void xf_client_drain(void *arg)
{
	struct xfer *x = arg;
	if (x->call)
		docker_call_resume(x->call);
}

static void get_done(struct docker_call *call, const char *err, void *arg)
{
	struct xfer *x = arg;
	x->call = NULL;
	if (x->state == XF_DONE)
		return;
	if (err) {
		xf_fail(x, 502, "docker_error", "archive call failed: %s", err);
		return;
	}
	if (x->status == 404) {
		xf_fail(x, 404, "not_found", "no such file or directory: %s", x->path);
		return;
	}
	if (x->status != 200) {
		xf_fail(x, 502, "docker_error", "Docker answered %d", x->status);
		return;
	}
	if (x->kind == XFER_TAR_IN) {
		if (!x->body_ended) {
			xf_fail(x, 502, "docker_error", "Docker ended the archive call early");
			return;
		}
		struct http_request *req = x->req;
		x->req = NULL;
		http_request_set_cancel(req, NULL, NULL);
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "status", json_object_new_string("ok"));
		json_object_object_add(o, "path", json_object_new_string(x->path));
		http_respond_json(req, 200, o);
		xf_release(x);
		return;
	}
	if (x->kind == XFER_TAR_OUT || (x->kind == XFER_FILE && x->responded && x->sent == x->size)) {
		http_response_end(x->req);
		xf_release(x);
		return;
	}
	xf_fail(x, 502, "docker_error", "Docker's archive ended before the file did");
}

static int file_entry(const struct tar_reader_entry *e, void *arg)
{
	struct xfer *x = arg;
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
		xf_fail(x, 400, "is_a_directory", "%s is a directory: use format=tar or files/archive",
			x->path);
		return -1;
	case '2': {
		/* Docker's archive holds the link itself; a download follows it, as cat would */
		char dir[FILES_PATH_MAX + 1], target[FILES_PATH_MAX + 1];
		snprintf(dir, sizeof(dir), "%s", x->path);
		char *slash = strrchr(dir, '/');
		if (slash == dir)
			dir[1] = '\0';
		else if (slash)
			*slash = '\0';
		if (++x->hops > MAX_LINK_HOPS || files_path_resolve(dir, e->linkname, target) < 0) {
			xf_fail(x, 400, "too_many_links", "%s: too many levels of symbolic links", x->path);
			return -1;
		}
		snprintf(x->path, sizeof(x->path), "%s", target);
		x->follow = true;
		static const struct timeval now = { 0, 0 };
		CHECK(event_base_once(x->base, -1, EV_TIMEOUT, xf_restart_cb, x, &now) == 0);
		return -1;
	}
	default:
		xf_fail(x, 400, "not_a_file", "%s is not a regular file", x->path);
		return -1;
	}
}

/* Out of the Docker callback that saw the link: drop that call, ask again. */
static void xf_restart_cb(evutil_socket_t fd, short what, void *arg)
{
	struct xfer *x = arg;
	x->follow = false;
	if (x->state == XF_DONE)
		return; /* the free is queued after this */
	if (x->call) {
		docker_call_cancel(x->call);
		x->call = NULL;
	}
	xf_call(x);
}

static void xf_begin_file(struct xfer *x)
{
	char cd[4 * FILES_NAME_MAX + 80];
	const char *base = files_path_base(x->path);
	files_content_disposition(base, cd, sizeof(cd));
	http_response_header(x->req, "Content-Disposition", cd);
	http_response_start(x->req, 200, files_content_type(base, x->sniff, x->sniff_len), (int64_t)x->size);
	http_response_write_bytes(x->req, x->sniff, x->sniff_len);
	x->sent = x->sniff_len;
	x->responded = true;
	xf_set_state(x, XF_STREAM);
	http_response_on_drain(x->req, xf_client_drain, x);
	if (x->sent == x->size) {
		/* all there: the rest of Docker's tar (end blocks) is not needed */
		http_response_end(x->req);
		x->req = NULL;
		xf_release(x);
	}
}

/* The entry's bytes move as buffer chains from Docker's response to the
 * client's output; only the first ones are copied, to sniff the type. */
static int file_move(struct evbuffer *in, size_t len, void *arg)
{
	struct xfer *x = arg;
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
	http_response_write(x->req, x->out);
	x->sent += len;
	if (x->sent == x->size) {
		http_response_end(x->req);
		x->req = NULL;
		if (x->call) {
			docker_call_cancel(x->call);
			x->call = NULL;
		}
		xf_release(x);
		return -1;
	}
	return http_response_pending(x->req) > FILES_HIGH_WATERMARK ? 1 : 0;
}

/* ---- into Docker ---- */

static int in_entry(const struct tar_reader_entry *e, void *arg)
{
	struct xfer *x = arg;
	const char *why = NULL;
	if (files_tar_name_escapes(e->name))
		why = "an entry's name leaves the directory";
	else if (e->type == '1' && files_tar_link_escapes(e->name, e->linkname, false))
		why = "a hard link points outside the directory";
	else if (e->type == '2' && files_tar_link_escapes(e->name, e->linkname, true))
		why = "a symbolic link points outside the directory";
	else if (e->type == '3' || e->type == '4')
		why = "device files are not allowed";
	if (why) {
		xf_fail(x, 400, "invalid_tar", "%s: %s", why, e->name);
		return -1;
	}
	return 0;
}

static void in_body_data(struct http_request *req, struct evbuffer *chunk, void *arg)
{
	struct xfer *x = arg;
	if (x->state == XF_DONE || !x->call) {
		evbuffer_drain(chunk, evbuffer_get_length(chunk));
		return;
	}
	x->received += evbuffer_get_length(chunk);
	if (x->received > x->nat->cfg->upload_limit) {
		xf_fail(x, 413, "too_large", "the archive is larger than the limit of %" PRIu64 " bytes",
			x->nat->cfg->upload_limit);
		return;
	}
	enum tar_reader_status st = tar_reader_feed(x->tr, chunk, x->out);
	if (!x->call) /* an entry was refused: already answered */
		return;
	docker_call_write(x->call, x->out);
	if (st == TAR_READER_ERROR) {
		xf_fail(x, 400, "invalid_tar", "malformed tar stream: %s", tar_reader_error(x->tr));
		return;
	}
	if (docker_call_pending(x->call) > FILES_HIGH_WATERMARK)
		http_request_body_pause(req);
}

static void in_body_end(struct http_request *req, void *arg)
{
	struct xfer *x = arg;
	if (x->state == XF_DONE || !x->call)
		return;
	if (tar_reader_finish(x->tr) != TAR_READER_DONE) {
		xf_fail(x, 400, "invalid_tar", "malformed tar stream: %s", tar_reader_error(x->tr));
		return;
	}
	x->body_ended = true;
	tar_write_end(x->out); /* extra zero blocks after an end are ignored */
	docker_call_write(x->call, x->out);
	docker_call_finish(x->call);
}

static void in_drain(struct docker_call *call, void *arg)
{
	struct xfer *x = arg;
	if (x->req && x->state != XF_DONE && docker_call_pending(call) < FILES_HIGH_WATERMARK)
		http_request_body_resume(x->req);
}
