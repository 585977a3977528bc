/* The native file API through the sandbox agent (include/files/agentfs.h):
 * list, stat, raw content in and out (streamed, Range), read as a document,
 * edit, mkdir, delete, move. This file only maps HTTP onto the core. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/config.h"
#include "core/log.h"
#include "files/agentfs.h"
#include "http/server.h"
#include "internal.h"

#define CONTENT_HIGH_WATERMARK (1u << 20) /* client output above this: stop acking */

/* One request waiting on the core. */
struct fcall {
	struct native *nat;
	struct http_request *req;
	struct agentfs_op *op;
	int ok_status;
	/* content GET */
	bool ranged, started;
	uint64_t consumed, acked;
	/* content PUT */
	bool streaming;
	uint32_t mode;
};

static struct fcall *fcall_new(struct http_request *req, struct native *nat, int ok_status);
static void fcall_cancel(void *arg);
static void doc_done(const struct core_error *fail, const struct agentfs_result *res, void *arg);
static bool id_ok(struct http_request *req);
static bool bool_param(const char *v, bool dflt, bool *out);
static void list_route(struct http_request *req, void *arg);
static void stat_route(struct http_request *req, void *arg);
static void delete_route(struct http_request *req, void *arg);
static void json_route(struct http_request *req, void *arg);
static void json_body(struct http_request *req, struct json_object *body, void *arg);
static void get_content_route(struct http_request *req, void *arg);
static int parse_range(const char *h, uint64_t *offset, uint64_t *length, bool *suffix);
static void rd_head(void *arg, const struct agentfs_head *h);
static void rd_data(void *arg, const uint8_t *data, size_t len);
static void rd_drain(void *arg);
static void rd_end(void *arg);
static void rd_failed(void *arg, const struct core_error *fail);
static void put_content_route(struct http_request *req, void *arg);
static void wr_ready(void *arg);
static void wr_body_data(struct http_request *req, struct evbuffer *chunk, void *arg);
static void wr_body_end(struct http_request *req, void *arg);

int native_file_routes(struct native *nat)
{
	struct router *r = nat->router;
	if (router_add(r, "GET", "/api/sandboxes/{id}/files", list_route, nat) != 0 ||
	    router_add(r, "DELETE", "/api/sandboxes/{id}/files", delete_route, nat) != 0 ||
	    router_add(r, "GET", "/api/sandboxes/{id}/files/stat", stat_route, nat) != 0 ||
	    router_add(r, "GET", "/api/sandboxes/{id}/files/content", get_content_route, nat) != 0 ||
	    router_add(r, "PUT", "/api/sandboxes/{id}/files/content", put_content_route, nat) != 0 ||
	    router_add(r, "POST", "/api/sandboxes/{id}/files/read", json_route, nat) != 0 ||
	    router_add(r, "POST", "/api/sandboxes/{id}/files/edit", json_route, nat) != 0 ||
	    router_add(r, "POST", "/api/sandboxes/{id}/files/mkdir", json_route, nat) != 0 ||
	    router_add(r, "POST", "/api/sandboxes/{id}/files/move", json_route, nat) != 0)
		return -1;
	return 0;
}

/* ---- plumbing ---- */

static struct fcall *fcall_new(struct http_request *req, struct native *nat, int ok_status)
{
	struct fcall *fc = http_request_alloc(req, sizeof(*fc));
	fc->nat = nat;
	fc->req = req;
	fc->ok_status = ok_status;
	http_request_set_cancel(req, fcall_cancel, fc);
	return fc;
}

static void fcall_cancel(void *arg)
{
	struct fcall *fc = arg;
	agentfs_op_cancel(fc->op); /* a write's temporary goes, the destination stays */
	fc->op = NULL;
}

static void doc_done(const struct core_error *fail, const struct agentfs_result *res, void *arg)
{
	struct fcall *fc = arg;
	struct http_request *req = fc->req;
	fc->op = NULL;
	http_request_set_cancel(req, NULL, NULL);
	if (fail) {
		native_respond_error(req, fail);
		return;
	}
	if (res->truncated && res->call == AGENTFS_LIST)
		http_response_header(req, "X-Sandbar-Truncated", "true");
	http_respond_json(req, res->created ? 201 : fc->ok_status, native_file_json(res));
}

static bool id_ok(struct http_request *req)
{
	if (sandbox_id_valid(http_request_param(req, "id")))
		return true;
	http_respond_error(req, 400, "invalid_id", "sandbox id must be a UUID");
	return false;
}

static bool bool_param(const char *v, bool dflt, bool *out)
{
	if (!v) {
		*out = dflt;
		return true;
	}
	if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0) {
		*out = true;
		return true;
	}
	if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0) {
		*out = false;
		return true;
	}
	return false;
}

/* ---- list, stat, delete ---- */

static void list_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	if (!id_ok(req))
		return;
	const char *d = http_request_query(req, "depth");
	long depth = 1;
	if (d) {
		char *end;
		depth = strtol(d, &end, 10);
		if (!*d || *end || depth < 1 || depth > AGENTFS_LIST_DEPTH) {
			http_respond_error(req, 400, "invalid_depth", "depth must be an integer from 1 to %d",
					   AGENTFS_LIST_DEPTH);
			return;
		}
	}
	struct fcall *fc = fcall_new(req, nat, 200);
	fc->op = agentfs_list(nat->fs, http_request_param(req, "id"), http_request_query(req, "path"),
			      (int)depth, doc_done, fc);
}

static void stat_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	if (!id_ok(req))
		return;
	struct fcall *fc = fcall_new(req, nat, 200);
	fc->op = agentfs_stat(nat->fs, http_request_param(req, "id"), http_request_query(req, "path"),
			      doc_done, fc);
}

static void delete_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	bool recursive;
	if (!id_ok(req))
		return;
	if (!bool_param(http_request_query(req, "recursive"), false, &recursive)) {
		http_respond_error(req, 400, "invalid_request", "recursive must be true or false");
		return;
	}
	struct fcall *fc = fcall_new(req, nat, 200);
	fc->op = agentfs_remove(nat->fs, http_request_param(req, "id"), http_request_query(req, "path"),
				recursive, doc_done, fc);
}

/* ---- read, edit, mkdir, move: JSON bodies ---- */

static void json_route(struct http_request *req, void *arg)
{
	if (!id_ok(req))
		return;
	http_request_read_json(req, 0, json_body, arg);
}

/* A string member, or NULL (with *len 0). */
static const char *member(struct json_object *body, const char *name, size_t *len)
{
	struct json_object *v;
	*len = 0;
	if (!body || !json_object_object_get_ex(body, name, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	*len = (size_t)json_object_get_string_len(v);
	return json_object_get_string(v);
}

static int member_bool(struct json_object *body, const char *name, bool dflt, bool *out)
{
	struct json_object *v;
	*out = dflt;
	if (!body || !json_object_object_get_ex(body, name, &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return -1;
	*out = json_object_get_boolean(v);
	return 0;
}

static void json_body(struct http_request *req, struct json_object *body, void *arg)
{
	struct native *nat = arg;
	const char *id = http_request_param(req, "id");
	const char *route = strrchr(http_request_path(req), '/') + 1;
	size_t plen, olen, nlen, tlen;
	const char *path = member(body, "path", &plen);
	if (body && !json_object_is_type(body, json_type_object)) {
		http_respond_error(req, 400, "invalid_request", "the body must be a JSON object");
		return;
	}
	if (path && strlen(path) != plen) {
		http_respond_error(req, 400, "invalid_path", "path: NUL byte");
		return;
	}
	struct fcall *fc = fcall_new(req, nat, 200);
	if (strcmp(route, "read") == 0) {
		fc->op = agentfs_read_doc(nat->fs, id, path, doc_done, fc);
	} else if (strcmp(route, "edit") == 0) {
		const char *old = member(body, "old_text", &olen);
		const char *new = member(body, "new_text", &nlen);
		fc->op = agentfs_edit(nat->fs, id, path, old, olen, new, nlen, doc_done, fc);
	} else if (strcmp(route, "mkdir") == 0) {
		bool parents;
		if (member_bool(body, "parents", true, &parents) != 0) {
			http_request_set_cancel(req, NULL, NULL);
			http_respond_error(req, 400, "invalid_request", "parents must be a boolean");
			return;
		}
		fc->op = agentfs_mkdir(nat->fs, id, path, parents, doc_done, fc);
	} else {
		bool overwrite;
		const char *from = member(body, "from", &plen);
		const char *to = member(body, "to", &tlen);
		if (member_bool(body, "overwrite", false, &overwrite) != 0 ||
		    (from && strlen(from) != plen) || (to && strlen(to) != tlen)) {
			http_request_set_cancel(req, NULL, NULL);
			http_respond_error(req, 400, "invalid_request",
					   "from and to must be paths, overwrite a boolean");
			return;
		}
		fc->op = agentfs_move(nat->fs, id, from, to, overwrite, doc_done, fc);
	}
}

/* ---- content out: GET, with one Range ---- */

/* 1 with the range, 0 when there is none to honour (absent, not bytes,
 * several ranges, malformed: the whole file is sent). */
static int parse_range(const char *h, uint64_t *offset, uint64_t *length, bool *suffix)
{
	if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
		return 0;
	const char *p = h + 6, *dash = strchr(p, '-');
	if (!dash)
		return 0;
	char *end;
	*suffix = false;
	if (dash == p) {
		if (!dash[1] || dash[1] < '0' || dash[1] > '9')
			return 0;
		unsigned long long n = strtoull(dash + 1, &end, 10);
		if (*end)
			return 0;
		*suffix = true;
		*offset = 0;
		*length = n;
		return 1;
	}
	if (*p < '0' || *p > '9')
		return 0;
	unsigned long long a = strtoull(p, &end, 10);
	if (end != dash)
		return 0;
	*offset = a;
	if (!dash[1]) {
		*length = UINT64_MAX;
		return 1;
	}
	if (dash[1] < '0' || dash[1] > '9')
		return 0;
	unsigned long long b = strtoull(dash + 1, &end, 10);
	if (*end || b < a)
		return 0;
	*length = b - a + 1 == 0 ? UINT64_MAX : b - a + 1;
	return 1;
}

static const struct agentfs_read_events read_events = { rd_head, rd_data, rd_end, rd_failed };

static void get_content_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	uint64_t offset = 0, length = UINT64_MAX;
	bool suffix = false;
	if (!id_ok(req))
		return;
	struct fcall *fc = fcall_new(req, nat, 200);
	fc->ranged = parse_range(http_request_header(req, "Range"), &offset, &length, &suffix) == 1;
	fc->op = agentfs_read(nat->fs, http_request_param(req, "id"), http_request_query(req, "path"), offset,
			      length, suffix, &read_events, fc);
}

static void rd_head(void *arg, const struct agentfs_head *h)
{
	struct fcall *fc = arg;
	struct http_request *req = fc->req;
	int status = 200;
	http_response_header(req, "Accept-Ranges", "bytes");
	if (fc->ranged && h->size > 0) {
		char cr[80];
		snprintf(cr, sizeof(cr), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, h->offset,
			 h->offset + h->length - 1, h->size);
		http_response_header(req, "Content-Range", cr);
		status = 206;
	}
	fc->started = true;
	http_response_start(req, status, h->content_type, (int64_t)h->length);
	http_response_on_drain(req, rd_drain, fc);
}

static void rd_data(void *arg, const uint8_t *data, size_t len)
{
	struct fcall *fc = arg;
	http_response_write_bytes(fc->req, data, len);
	fc->consumed += len;
	/* the window stays open while the client keeps up; else the drain acks */
	if (http_response_pending(fc->req) < CONTENT_HIGH_WATERMARK) {
		fc->acked = fc->consumed;
		agentfs_read_ack(fc->op, fc->acked);
	}
}

static void rd_drain(void *arg)
{
	struct fcall *fc = arg;
	if (fc->op && fc->acked < fc->consumed) {
		fc->acked = fc->consumed;
		agentfs_read_ack(fc->op, fc->acked);
	}
}

static void rd_end(void *arg)
{
	struct fcall *fc = arg;
	fc->op = NULL;
	http_request_set_cancel(fc->req, NULL, NULL);
	http_response_end(fc->req);
}

static void rd_failed(void *arg, const struct core_error *fail)
{
	struct fcall *fc = arg;
	fc->op = NULL;
	http_request_set_cancel(fc->req, NULL, NULL);
	if (fc->started) {
		/* too late for a status: cut the response short so the client sees it */
		log_warn("files %s: read failed mid-response (%s)", http_request_path(fc->req), fail->code);
		http_response_abort(fc->req);
		return;
	}
	native_respond_error(fc->req, fail);
}

/* ---- content in: PUT ---- */

static const struct agentfs_write_events write_events = { wr_ready, doc_done };
static const struct http_body_stream body_cbs = { wr_body_data, wr_body_end };

static void put_content_route(struct http_request *req, void *arg)
{
	struct native *nat = arg;
	if (!id_ok(req))
		return;
	uint32_t mode = 0644;
	const char *m = http_request_query(req, "mode");
	if (m) {
		char *end;
		unsigned long v = strtoul(m, &end, 8);
		if (!*m || *end || v > 07777 || strlen(m) > 5) {
			http_respond_error(req, 400, "invalid_mode",
					   "mode must be octal permission bits, e.g. 0644");
			return;
		}
		mode = (uint32_t)v;
	}
	int64_t cl = http_request_content_length(req);
	if (cl >= 0 && (uint64_t)cl > nat->cfg->upload_limit) {
		http_respond_error(req, 413, "too_large",
				   "the file is larger than the limit of %" PRIu64 " bytes",
				   nat->cfg->upload_limit);
		return;
	}
	struct fcall *fc = fcall_new(req, nat, 200);
	fc->mode = mode;
	fc->op = agentfs_write(nat->fs, http_request_param(req, "id"), http_request_query(req, "path"), mode,
			       &write_events, fc);
}

static void wr_ready(void *arg)
{
	struct fcall *fc = arg;
	if (!fc->streaming) {
		fc->streaming = true;
		http_request_stream_body(fc->req, &body_cbs, fc);
	} else {
		http_request_body_resume(fc->req);
	}
}

static void wr_body_data(struct http_request *req, struct evbuffer *chunk, void *arg)
{
	struct fcall *fc = arg;
	while (fc->op && evbuffer_get_length(chunk) > 0) {
		size_t n = evbuffer_get_contiguous_space(chunk);
		int rc = agentfs_write_data(fc->op, evbuffer_pullup(chunk, (ssize_t)n), n);
		evbuffer_drain(chunk, n);
		if (rc < 0)
			break;
		if (rc > 0) {
			http_request_body_pause(req);
			return;
		}
	}
	evbuffer_drain(chunk, evbuffer_get_length(chunk)); /* after a failure: discarded */
}

static void wr_body_end(struct http_request *req, void *arg)
{
	struct fcall *fc = arg;
	if (fc->op)
		agentfs_write_end(fc->op);
}
