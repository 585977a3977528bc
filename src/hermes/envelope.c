/* The envelope every Hermes REST answer goes in: {"code","message","data",
 * "request_id"}. The SDK reads only the body: code 0 is success, anything
 * else an error; data null would decode as an all-zero struct, so errors
 * never rely on it. The HTTP status is ours: the error's, never 200. */
#include "http/server.h"
#include "internal.h"

static void respond(struct http_request *req, int status, int code, const char *message,
		    struct json_object *data)
{
	struct json_object *body = json_object_new_object();
	json_object_object_add(body, "code", json_object_new_int(code));
	json_object_object_add(body, "message", json_object_new_string(message));
	json_object_object_add(body, "data", data);
	json_object_object_add(body, "request_id", json_object_new_string(http_request_id(req)));
	http_respond_json(req, status, body);
}

void hermes_reply(struct http_request *req, struct json_object *data)
{
	respond(req, 200, 0, "ok", data);
}

void hermes_respond_error(struct http_request *req, const struct core_error *e)
{
	int status = hermes_http_status(e);
	if (status == 503 || status == 429)
		http_response_header(req, "Retry-After", "1");
	respond(req, status, status, e->message, NULL);
}

void hermes_render_error(struct http_request *req, int status, const char *code, const char *message,
			 void *arg)
{
	(void)code;
	(void)arg;
	respond(req, status, status, message, NULL);
}
