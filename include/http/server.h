/* HTTP/1.1 server on libevent bufferevents and http-parser: keep-alive,
 * pipelining (answered in order), streamed request bodies, limits and timeouts.
 *
 * Lifetime of a request: the server calls the dispatch function once the
 * request head is parsed. From then on the handler owns the response: it must
 * eventually end it (http_respond_* or http_response_end). If the client goes
 * away first, the server calls the request's cancel function (if set), and the
 * handler must stop every async step it started and never touch req again;
 * the server frees req after cancel returns. Nothing here calls back into the
 * handler on the handler's own stack. */
#ifndef SANDBAR_HTTP_SERVER_H
#define SANDBAR_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/check.h"

struct http_server;
struct http_request;
struct json_object;

typedef void (*http_dispatch_fn)(struct http_request *req, void *arg);

struct http_server_limits {
	size_t max_header_bytes;   /* request line + headers; over it: 431 */
	size_t max_body_bytes;	   /* default cap for http_request_read_body; over it: 413 */
	int64_t header_timeout_ms; /* whole head must arrive within this: 408 */
	int64_t body_timeout_ms;   /* a body read whole must arrive within this: 408 */
	int64_t idle_timeout_ms;   /* keep-alive connection with no request, a streamed body
				    * or an answer with no byte moving: closed */
	int max_connections;	   /* over it: accept then 503 and close */
};

struct http_server *http_server_new(struct event_base *base, const struct http_server_limits *limits,
				    http_dispatch_fn dispatch, void *arg);
/* How error answers look: the dialect's renderer, called by http_respond_error
 * for the errors the server raises itself (413, 431, 408, bad JSON) as for
 * the routes' own. Without one: {"error":{"code":...,"message":...}}. */
typedef void (*http_error_render_fn)(struct http_request *req, int status, const char *code,
				     const char *message, void *arg);
void http_server_set_error_renderer(struct http_server *srv, http_error_render_fn fn, void *arg);
/* addr is ":8080", "127.0.0.1:8080" or "[::1]:8080". 0 or -1 (with errno). */
MUST_USE int http_server_listen(struct http_server *srv, const char *addr);
/* The port actually bound (useful with ":0"). */
int http_server_port(const struct http_server *srv);
/* Stops accepting, closes idle connections, lets in-flight requests finish;
 * after deadline_ms closes the rest. done(arg) runs once no connection is left. */
void http_server_shutdown(struct http_server *srv, int64_t deadline_ms, void (*done)(void *arg), void *arg);
void http_server_free(struct http_server *srv);

/* ---- the request ---- */
const char *http_request_method(const struct http_request *req); /* "GET", "POST", ... */
const char *http_request_path(const struct http_request *req);	 /* percent-decoded, no query */
/* Decoded value of a query parameter, NULL when absent ("" when present empty). */
const char *http_request_query(const struct http_request *req, const char *name);
/* Header value by case-insensitive name, NULL when absent. */
const char *http_request_header(const struct http_request *req, const char *name);
const char *http_request_id(const struct http_request *req); /* also sent as X-Request-Id */
/* The request target as it came (path and query, not decoded). */
const char *http_request_target(const struct http_request *req);
/* The i-th header as it came (0-based): false past the last. */
bool http_request_header_at(const struct http_request *req, int i, const char **name, const char **value);
/* Changes the i-th header before anyone forwards it (a proxy taking out what
 * is its own): value NULL removes it (the next ones move down by one), else
 * value, no longer than the one it replaces, is written in its place. False
 * past the last, or for a longer value. */
bool http_request_header_rewrite(struct http_request *req, int i, const char *value);
/* The client's address ("127.0.0.1", "::1"; "" when unknown), in the request's memory. */
const char *http_request_peer(struct http_request *req);
/* 1 for HTTP/1.1, 0 for HTTP/1.0. */
int http_request_version_minor(const struct http_request *req);
struct event_base *http_request_base(const struct http_request *req);

/* Request-scoped memory, zeroed, freed with the request. Never fails. */
void *http_request_alloc(struct http_request *req, size_t size);
char *http_request_strdup(struct http_request *req, const char *s);

/* Route parameters, set by the router, read by handlers. */
void http_request_set_param(struct http_request *req, const char *name, const char *value);
const char *http_request_param(const struct http_request *req, const char *name);

/* Called at most once if the client goes away before the response ended. */
void http_request_set_cancel(struct http_request *req, void (*cancel)(void *arg), void *arg);

/* ---- the request body ---- */
/* Whole body, up to cap bytes (0 = the server's max_body_bytes). done gets the
 * body buffer (owned by the server) on success. Over the cap the server answers
 * 413 itself and done is never called; a malformed body gets 400 likewise. */
typedef void (*http_body_done_fn)(struct http_request *req, struct evbuffer *body, void *arg);
void http_request_read_body(struct http_request *req, size_t cap, http_body_done_fn done, void *arg);
/* As above, then parsed as JSON: done gets an object (owned by the server,
 * freed with the request) or NULL for an empty body. Bad JSON: 400 invalid_json. */
typedef void (*http_json_done_fn)(struct http_request *req, struct json_object *body, void *arg);
void http_request_read_json(struct http_request *req, size_t cap, http_json_done_fn done, void *arg);

/* Streamed body: data is called with each decoded chunk (drain what you take;
 * what you leave is offered again with the next call); end once the body is
 * complete. Call http_request_body_pause when the destination is full and
 * http_request_body_resume when it drained. Handles Expect: 100-continue. */
struct http_body_stream {
	void (*data)(struct http_request *req, struct evbuffer *chunk, void *arg);
	void (*end)(struct http_request *req, void *arg);
};
void http_request_stream_body(struct http_request *req, const struct http_body_stream *cbs, void *arg);
void http_request_body_pause(struct http_request *req);
void http_request_body_resume(struct http_request *req);
/* Content-Length of the request, or -1 when chunked or absent. */
int64_t http_request_content_length(const struct http_request *req);

/* ---- the response ---- */
/* Extra header for the response; call before the response starts. */
void http_response_header(struct http_request *req, const char *name, const char *value);
/* Starts the response. content_length -1 means chunked. */
void http_response_start(struct http_request *req, int status, const char *content_type,
			 int64_t content_length);
/* Moves all of data into the output (chunk-framed when chunked). */
void http_response_write(struct http_request *req, struct evbuffer *data);
void http_response_write_bytes(struct http_request *req, const void *data, size_t len);
/* Bytes queued for the client and not yet written. */
size_t http_response_pending(const struct http_request *req);
/* drain(arg) is called when the pending output falls below the low watermark. */
void http_response_on_drain(struct http_request *req, void (*drain)(void *arg), void *arg);
void http_response_end(struct http_request *req);
/* For a failure after http_response_start: too late for a status, so the
 * connection is closed once the output drains, without the chunked body's
 * terminator, and the client sees a cut body rather than a complete one.
 * Does nothing before the response started or after it ended. */
void http_response_abort(struct http_request *req);

/* ---- upgrades (WebSocket) ---- */
/* Answers `101 Switching Protocols` with the headers given through
 * http_response_header (plus Connection: Upgrade) and hands the connection
 * over: upgraded(bev, arg) runs from the loop with a bufferevent the caller now
 * owns, callbacks cleared (bytes the client sent after the head are in its
 * input). The request is over; the server no longer counts the connection. */
typedef void (*http_upgraded_fn)(struct bufferevent *bev, void *arg);
void http_request_upgrade(struct http_request *req, http_upgraded_fn upgraded, void *arg);

/* Whole responses. */
/* body (taken) as compact JSON, '/' unescaped */
void http_respond_json(struct http_request *req, int status, struct json_object *body);
void http_respond_empty(struct http_request *req, int status);
/* An error answer through the server's error renderer. */
void http_respond_error(struct http_request *req, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
