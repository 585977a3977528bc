/* Request bodies: whole (capped), JSON, or streamed to the handler, plus
 * Expect: 100-continue and discarding what the handler never read. Data is
 * collected by the parser callbacks and handed over outside them. */
#include <string.h>

#include <json-c/json_tokener.h>

#include "core/check.h"
#include "http/server.h"
#include "internal.h"

static void ask_body(struct http_request *req, enum body_mode mode);
static void send_continue(struct http_request *req);
static void deliver_json(struct http_request *req);

static void send_continue(struct http_request *req)
{
	if (!req->expect_continue || req->continue_sent || req->msg_complete || req->resp != RESP_NONE)
		return;
	static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";
	evbuffer_add(bufferevent_get_output(req->conn->bev), line, sizeof(line) - 1);
	req->continue_sent = true;
}

static void ask_body(struct http_request *req, enum body_mode mode)
{
	CHECK(req->body_mode == BODY_NONE);
	CHECK(req->resp == RESP_NONE || mode == BODY_STREAM);
	req->body_mode = mode;
	if (mode == BODY_WHOLE || mode == BODY_JSON)
		req->body_deadline_us = http_now_us() + req->conn->srv->lim.body_timeout_ms * 1000;
	if (req->body_cap && req->content_length >= 0 && (uint64_t)req->content_length > req->body_cap)
		req->body_error = 413; /* decided up front, without inviting the body */
	else
		send_continue(req);
	/* Buffered bytes are handed over from the loop, not on the caller's stack. */
	conn_kick(req->conn);
}

void http_request_read_body(struct http_request *req, size_t cap, http_body_done_fn done, void *arg)
{
	req->body_cap = cap ? cap : req->conn->srv->lim.max_body_bytes;
	req->whole_done = done;
	req->body_arg = arg;
	ask_body(req, BODY_WHOLE);
}

void http_request_read_json(struct http_request *req, size_t cap, http_json_done_fn done, void *arg)
{
	req->body_cap = cap ? cap : req->conn->srv->lim.max_body_bytes;
	req->json_done = done;
	req->body_arg = arg;
	ask_body(req, BODY_JSON);
}

void http_request_stream_body(struct http_request *req, const struct http_body_stream *cbs, void *arg)
{
	req->stream = *cbs;
	req->body_arg = arg;
	ask_body(req, BODY_STREAM);
}

void http_request_body_pause(struct http_request *req)
{
	req->body_paused = true;
}

void http_request_body_resume(struct http_request *req)
{
	if (!req->body_paused)
		return;
	req->body_paused = false;
	conn_kick(req->conn);
}

void body_start_discard(struct http_request *req)
{
	req->body_mode = BODY_DISCARD;
	evbuffer_drain(req->conn->body_buf, evbuffer_get_length(req->conn->body_buf));
}

void body_on_data(struct http_request *req, const char *at, size_t len)
{
	struct http_conn *c = req->conn;
	req->body_received += len;
	switch (req->body_mode) {
	case BODY_DISCARD:
	case BODY_NONE:
		c->discarded += len;
		return;
	case BODY_WHOLE:
	case BODY_JSON:
		if (req->body_received > req->body_cap) {
			if (!req->body_error)
				req->body_error = 413;
			return;
		}
		break;
	case BODY_STREAM:
		break;
	}
	evbuffer_add(c->body_buf, at, len);
}

bool body_wanted(const struct http_request *req)
{
	if (req->body_end_called)
		return false;
	switch (req->body_mode) {
	case BODY_WHOLE:
	case BODY_JSON:
		return true;
	case BODY_STREAM:
		if (req->body_paused)
			return false;
		/* A handler that leaves data without pausing is paused for it. */
		return req->msg_complete || evbuffer_get_length(req->conn->body_buf) < HTTP_STREAM_BACKLOG;
	case BODY_NONE:
	case BODY_DISCARD:
		return false;
	}
	return false;
}

static void deliver_json(struct http_request *req)
{
	struct evbuffer *buf = req->conn->body_buf;
	size_t len = evbuffer_get_length(buf);
	if (len == 0) {
		req->json_done(req, NULL, req->body_arg);
		return;
	}
	const char *s = (const char *)evbuffer_pullup(buf, -1); /* capped by body_cap */
	struct json_tokener *tok = json_tokener_new();
	CHECK(tok != NULL);
	struct json_object *obj = json_tokener_parse_ex(tok, s, (int)len);
	bool ok = obj && json_tokener_get_error(tok) == json_tokener_success;
	if (ok) {
		for (size_t i = tok->char_offset; i < len; i++)
			if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
				ok = false;
	}
	json_tokener_free(tok);
	if (!ok) {
		if (obj)
			json_object_put(obj);
		req->body_error = 1; /* invalid_json, answered by the loop */
		return;
	}
	req->json = obj;
	req->json_done(req, obj, req->body_arg);
}

void body_deliver(struct http_request *req)
{
	if (req->body_error || req->resp == RESP_ENDED)
		return;
	struct evbuffer *buf = req->conn->body_buf;
	switch (req->body_mode) {
	case BODY_WHOLE:
		if (!req->msg_complete)
			return;
		req->body_end_called = true;
		req->whole_done(req, buf, req->body_arg);
		return;
	case BODY_JSON:
		if (!req->msg_complete)
			return;
		req->body_end_called = true;
		deliver_json(req);
		return;
	case BODY_STREAM:
		if (evbuffer_get_length(buf) > 0 && !req->body_paused)
			req->stream.data(req, buf, req->body_arg);
		if (req->resp == RESP_ENDED || req->body_error || req->body_paused || !req->msg_complete)
			return;
		req->body_end_called = true;
		req->stream.end(req, req->body_arg);
		return;
	case BODY_NONE:
	case BODY_DISCARD:
		return;
	}
}
