/* The native dialect's one table from a core error to HTTP: the kind gives the
 * status, a few stable codes refine it (a size limit is 413, not 429; Docker
 * answering a transfer wrongly is 502), and the answer is
 * {"error":{"code","message"}}, plus "status" when the conflict is a
 * sandbox's status. Errors the HTTP layer raises itself (413, 431, bad JSON)
 * are rendered by the same function (native_render_error). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "http/server.h"
#include "internal.h"

static int error_status(const struct core_error *e);

static const int kind_status[CORE_ERR_MAX] = {
	[CORE_OK] = 200,	  [CORE_INVALID] = 400,	    [CORE_FORBIDDEN] = 403, [CORE_NOT_FOUND] = 404,
	[CORE_CONFLICT] = 409,	  [CORE_GONE] = 410,	    [CORE_LIMIT] = 429,	    [CORE_CAPACITY] = 503,
	[CORE_UNAVAILABLE] = 503, [CORE_UNSUPPORTED] = 501, [CORE_INTERNAL] = 500,
};

static const struct {
	const char *code;
	int status;
} code_status[] = {
	{ "too_large", 413 },		  /* a size, not a rate */
	{ "range_not_satisfiable", 416 }, /* with Content-Range */
	/* out of space: the sandbox's disk, the upload spool's (once no_space
	 * and spool_full) */
	{ "insufficient_storage", 507 },
	{ "docker_error", 502 }, /* Docker answered a transfer wrongly */
	{ "wake_timeout", 504 }, /* a stopped sandbox did not wake in time */
};

static int error_status(const struct core_error *e)
{
	for (size_t i = 0; i < ARRAY_LEN(code_status); i++)
		if (e->code && strcmp(e->code, code_status[i].code) == 0)
			return code_status[i].status;
	return (unsigned)e->kind < CORE_ERR_MAX && kind_status[e->kind] ? kind_status[e->kind] : 500;
}

void native_respond_error(struct http_request *req, const struct core_error *e)
{
	int status = error_status(e);
	if (status == 503 || status == 429)
		http_response_header(req, "Retry-After", "1");
	if (status == 416) {
		char range[48];
		snprintf(range, sizeof(range), "bytes */%" PRIu64, e->size);
		http_response_header(req, "Content-Range", range);
	}
	struct json_object *err = json_object_new_object();
	json_object_object_add(err, "code", json_object_new_string(e->code ? e->code : "internal"));
	json_object_object_add(err, "message", json_object_new_string(e->message));
	if (e->status)
		json_object_object_add(err, "status", json_object_new_string(e->status));
	struct json_object *body = json_object_new_object();
	json_object_object_add(body, "error", err);
	http_respond_json(req, status, body);
}

void native_render_error(struct http_request *req, int status, const char *code, const char *message,
			 void *arg)
{
	struct json_object *err = json_object_new_object();
	json_object_object_add(err, "code", json_object_new_string(code));
	json_object_object_add(err, "message", json_object_new_string(message));
	struct json_object *body = json_object_new_object();
	json_object_object_add(body, "error", err);
	http_respond_json(req, status, body);
}
