/* Responses: status line and headers, Content-Length or chunked framing,
 * whole JSON/error/empty answers, drain callbacks, and the access log line. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <json-c/json_object.h>

#include "core/check.h"
#include "core/log.h"
#include "http/server.h"
#include "internal.h"

static bool decide_close(const struct http_request *req);
static bool status_has_body(int status);
static size_t json_escape(char *out, size_t cap, const char *s);
static void out_add(struct http_request *req, const void *data, size_t len);
static void out_extra_headers(struct http_request *req);

const char *response_date(struct http_server *srv)
{
	struct timeval tv;
	event_base_gettimeofday_cached(srv->base, &tv);
	if (tv.tv_sec != srv->date_sec) {
		struct tm tm;
		time_t t = tv.tv_sec;
		gmtime_r(&t, &tm);
		strftime(srv->date, sizeof(srv->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		srv->date_sec = tv.tv_sec;
	}
	return srv->date;
}

static bool status_has_body(int status)
{
	return status >= 200 && status != 204 && status != 304;
}

static bool decide_close(const struct http_request *req)
{
	const struct http_conn *c = req->conn;
	if (req->close_after || !req->keep_alive || c->srv->shutting_down)
		return true;
	if (req->msg_complete)
		return false;
	/* The client may still be waiting to send the body we never invited. */
	if (req->expect_continue && !req->continue_sent)
		return true;
	if (req->body_mode != BODY_NONE)
		return false;
	if (req->chunked)
		return true;
	return req->content_length > 0 &&
	       (uint64_t)req->content_length - req->body_received > HTTP_DISCARD_MAX;
}

static void out_add(struct http_request *req, const void *data, size_t len)
{
	evbuffer_add(bufferevent_get_output(req->conn->bev), data, len);
	req->bytes_sent += len;
}

/* The headers added with http_response_header, in the order they were added
 * (they are stored newest first). */
static void out_extra_headers(struct http_request *req)
{
	struct http_kv *rev = NULL;
	while (req->out_headers) {
		struct http_kv *kv = req->out_headers;
		req->out_headers = kv->next;
		kv->next = rev;
		rev = kv;
	}
	struct evbuffer *out = bufferevent_get_output(req->conn->bev);
	for (struct http_kv *kv = rev; kv; kv = kv->next) {
		int m = evbuffer_add_printf(out, "%s: %s\r\n", kv->name, kv->value);
		if (m > 0)
			req->bytes_sent += (uint64_t)m;
	}
}

void http_response_header(struct http_request *req, const char *name, const char *value)
{
	CHECK(req->resp == RESP_NONE);
	struct http_kv *kv = http_request_alloc(req, sizeof(*kv));
	char *n = http_request_strdup(req, name);
	char *v = http_request_strdup(req, value);
	/* No header splitting, whatever a caller passes in. */
	for (char *p = n; *p; p++)
		if (*p == '\r' || *p == '\n' || *p == ':')
			*p = '-';
	for (char *p = v; *p; p++)
		if (*p == '\r' || *p == '\n')
			*p = ' ';
	kv->name = n;
	kv->value = v;
	kv->next = req->out_headers;
	req->out_headers = kv;
}

void http_response_start(struct http_request *req, int status, const char *content_type,
			 int64_t content_length)
{
	if (req->resp == RESP_ENDED)
		return; /* the server already answered (413, invalid body) */
	CHECK(req->resp == RESP_NONE);
	struct http_conn *c = req->conn;
	bool http10 = c->parser.http_major == 1 && c->parser.http_minor == 0;
	req->resp = RESP_STARTED;
	req->status = status;
	req->close_after = decide_close(req);
	bool has_body = status_has_body(status);
	req->out_nobody = req->head_method || !has_body;
	if (content_length < 0 && has_body) {
		if (http10)
			req->close_after = true; /* no chunked in 1.0: the close ends the body */
		else
			req->out_chunked = true;
	}

	char head[1024];
	int n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\nDate: %s\r\nX-Request-Id: %s\r\n", status,
			 http_status_str((enum http_status)status), response_date(c->srv), req->id);
	CHECK(n > 0 && (size_t)n < sizeof(head));
	size_t len = (size_t)n;
	if (content_type) {
		n = snprintf(head + len, sizeof(head) - len, "Content-Type: %s\r\n", content_type);
		if (n > 0)
			len += (size_t)n;
	}
	if (has_body && content_length >= 0)
		n = snprintf(head + len, sizeof(head) - len, "Content-Length: %" PRId64 "\r\n",
			     content_length);
	else if (req->out_chunked)
		n = snprintf(head + len, sizeof(head) - len, "Transfer-Encoding: chunked\r\n");
	else
		n = 0;
	if (n > 0)
		len += (size_t)n;
	if (req->close_after)
		n = snprintf(head + len, sizeof(head) - len, "Connection: close\r\n");
	else if (http10)
		n = snprintf(head + len, sizeof(head) - len, "Connection: keep-alive\r\n");
	else
		n = 0;
	if (n > 0)
		len += (size_t)n;
	CHECK(len < sizeof(head));
	out_add(req, head, len);

	out_extra_headers(req);
	out_add(req, "\r\n", 2);
}

void http_response_write(struct http_request *req, struct evbuffer *data)
{
	size_t len = evbuffer_get_length(data);
	if (req->resp != RESP_STARTED || req->out_nobody || len == 0) {
		evbuffer_drain(data, len);
		return;
	}
	struct evbuffer *out = bufferevent_get_output(req->conn->bev);
	if (req->out_chunked) {
		char size[24];
		int n = snprintf(size, sizeof(size), "%zx\r\n", len);
		out_add(req, size, (size_t)n);
	}
	evbuffer_add_buffer(out, data);
	req->bytes_sent += len;
	if (req->out_chunked)
		out_add(req, "\r\n", 2);
}

void http_response_write_bytes(struct http_request *req, const void *data, size_t len)
{
	if (req->resp != RESP_STARTED || req->out_nobody || len == 0)
		return;
	if (req->out_chunked) {
		char size[24];
		int n = snprintf(size, sizeof(size), "%zx\r\n", len);
		out_add(req, size, (size_t)n);
	}
	out_add(req, data, len);
	if (req->out_chunked)
		out_add(req, "\r\n", 2);
}

size_t http_response_pending(const struct http_request *req)
{
	return evbuffer_get_length(bufferevent_get_output(req->conn->bev));
}

void http_response_on_drain(struct http_request *req, void (*drain)(void *arg), void *arg)
{
	req->drain = drain;
	req->drain_arg = arg;
}

void http_response_end(struct http_request *req)
{
	if (req->resp == RESP_ENDED)
		return;
	if (req->resp == RESP_NONE)
		http_response_start(req, 200, NULL, 0);
	if (req->out_chunked && !req->out_nobody)
		out_add(req, "0\r\n\r\n", 5);
	req->resp = RESP_ENDED;
	req->drain = NULL;
	if (req->conn->srv->shutting_down)
		req->close_after = true;
	if (!req->msg_complete && req->expect_continue && !req->continue_sent)
		req->close_after = true;
	response_log(req);
	/* The next step (next request, discard, close) runs from the loop. */
	conn_kick(req->conn);
}

void http_request_upgrade(struct http_request *req, http_upgraded_fn upgraded, void *arg)
{
	CHECK(req->resp == RESP_NONE);
	struct http_conn *c = req->conn;
	req->status = 101;
	req->resp = RESP_STARTED;
	req->cancel = NULL; /* the request is over once the socket is handed over */
	char head[256];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
			 "X-Request-Id: %s\r\n",
			 req->id);
	CHECK(n > 0 && (size_t)n < sizeof(head));
	out_add(req, head, (size_t)n);
	out_extra_headers(req);
	out_add(req, "\r\n", 2);
	c->upgraded = upgraded;
	c->upgraded_arg = arg;
	req->resp = RESP_ENDED;
	req->drain = NULL;
	response_log(req);
	conn_kick(c);
}

void http_respond_json(struct http_request *req, int status, struct json_object *body)
{
	size_t len = 0;
	const char *s = json_object_to_json_string_length(
		body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	http_response_start(req, status, "application/json", (int64_t)len);
	http_response_write_bytes(req, s, len);
	http_response_end(req);
	json_object_put(body);
}

void http_respond_empty(struct http_request *req, int status)
{
	http_response_start(req, status, NULL, 0);
	http_response_end(req);
}

static size_t json_escape(char *out, size_t cap, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t j = 0;
	for (; *s && j + 7 < cap; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\') {
			out[j++] = '\\';
			out[j++] = (char)ch;
		} else if (ch < 0x20) {
			out[j++] = '\\';
			out[j++] = 'u';
			out[j++] = '0';
			out[j++] = '0';
			out[j++] = hex[ch >> 4];
			out[j++] = hex[ch & 15];
		} else {
			out[j++] = (char)ch;
		}
	}
	out[j] = '\0';
	return j;
}

void http_respond_error(struct http_request *req, int status, const char *code, const char *fmt, ...)
{
	char msg[512], emsg[1024], ecode[128], body[1300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	const struct http_server *srv = req->conn->srv;
	if (srv->render_error) {
		srv->render_error(req, status, code, msg, srv->render_arg);
		return;
	}
	json_escape(emsg, sizeof(emsg), msg);
	json_escape(ecode, sizeof(ecode), code);
	int n = snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", ecode, emsg);
	CHECK(n > 0 && (size_t)n < sizeof(body));
	http_response_start(req, status, "application/json", n);
	http_response_write_bytes(req, body, (size_t)n);
	http_response_end(req);
}

void response_server_error(struct http_request *req, int status, const char *code, const char *msg)
{
	if (req->resp == RESP_NONE) {
		req->close_after = true;
		http_respond_error(req, status, code, "%s", msg);
		return;
	}
	http_response_abort(req);
}

void http_response_abort(struct http_request *req)
{
	if (req->resp != RESP_STARTED)
		return;
	/* No chunk terminator: the close tells the client the body is cut short. */
	req->resp = RESP_ENDED;
	req->drain = NULL;
	req->close_after = true;
	log_warn("http %s: response cut short after %" PRIu64 "B", req->id, req->bytes_sent);
	response_log(req);
	conn_kick(req->conn);
}

void response_log(struct http_request *req)
{
	double ms = (double)(http_now_us() - req->start_us) / 1000.0;
	log_info("http %s %s %s %d %" PRIu64 "B %.2fms", req->id, http_request_method(req),
		 http_request_path(req), req->status, req->bytes_sent, ms);
}
