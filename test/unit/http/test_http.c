/* The server over real loopback sockets on port 0: parsing, keep-alive,
 * pipelining, bodies, limits, timeouts, 100-continue, cancel and shutdown.
 * The client sockets are driven from the test thread between loop passes. */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <json-c/json_object.h>

#include "core/log.h"
#include "http/router.h"
#include "http/server.h"

static struct event_base *base;
static struct http_server *srv;
static struct router *router;
static int cancels;
static struct http_request *parked;
static int done_calls;
static size_t streamed;

static void dispatch(struct http_request *req, void *arg);

/* ---- handlers ---- */

static void h_hello(struct http_request *req, void *arg)
{
	static const char body[] = "{\"ok\":true}";
	http_response_start(req, 200, "application/json", sizeof(body) - 1);
	http_response_write_bytes(req, body, sizeof(body) - 1);
	http_response_end(req);
}

static void h_echo_req(struct http_request *req, void *arg)
{
	char buf[512];
	const char *a = http_request_query(req, "a"), *b = http_request_query(req, "b");
	const char *foo = http_request_header(req, "x-FOO");
	const char *id = http_request_param(req, "id");
	int n = snprintf(buf, sizeof(buf), "%s|%s|%s|%s|%s|%s", http_request_method(req),
			 http_request_path(req), a ? a : "(null)", b ? b : "(null)", foo ? foo : "(null)",
			 id ? id : "(null)");
	http_response_start(req, 200, "text/plain", n);
	http_response_write_bytes(req, buf, (size_t)n);
	http_response_end(req);
}

static void body_done(struct http_request *req, struct evbuffer *body, void *arg)
{
	http_response_start(req, 200, "text/plain", -1); /* chunked */
	http_response_write(req, body);
	http_response_end(req);
}

static void h_echo_body(struct http_request *req, void *arg)
{
	http_request_read_body(req, 0, body_done, NULL);
}

static void json_done(struct http_request *req, struct json_object *body, void *arg)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "got", body ? json_object_get(body) : NULL);
	http_respond_json(req, 200, o);
}

static void h_json(struct http_request *req, void *arg)
{
	http_request_read_json(req, 0, json_done, NULL);
}

static void stream_data(struct http_request *req, struct evbuffer *chunk, void *arg)
{
	streamed += evbuffer_get_length(chunk);
	evbuffer_drain(chunk, evbuffer_get_length(chunk));
}

static void stream_end(struct http_request *req, void *arg)
{
	http_respond_error(req, 200, "streamed", "n=%zu", streamed);
}

static void h_stream(struct http_request *req, void *arg)
{
	static const struct http_body_stream cbs = { stream_data, stream_end };
	streamed = 0;
	http_request_stream_body(req, &cbs, NULL);
}

static void h_noread(struct http_request *req, void *arg)
{
	http_respond_empty(req, 204);
}

/* A failure after the head: a chunked or a sized body cut short. */
static void h_cut(struct http_request *req, void *arg)
{
	bool sized = http_request_query(req, "sized") != NULL;
	http_response_start(req, 200, "application/x-tar", sized ? 100 : -1);
	http_response_write_bytes(req, "partial", 7);
	http_response_abort(req);
	http_response_abort(req); /* a second call does nothing */
}

/* What a proxy does before forwarding: X-Drop out, Cookie shortened in
 * place, a longer value refused; then every header as it now is. */
static void h_rewrite(struct http_request *req, void *arg)
{
	const char *name, *value;
	for (int i = 0; http_request_header_at(req, i, &name, &value);) {
		if (strcasecmp(name, "X-Drop") == 0) {
			assert_true(http_request_header_rewrite(req, i, NULL));
			continue;
		}
		if (strcasecmp(name, "Cookie") == 0) {
			assert_false(http_request_header_rewrite(req, i, "a much longer value than it had"));
			assert_true(http_request_header_rewrite(req, i, value + 2)); /* inside the old one */
		}
		i++;
	}
	assert_false(http_request_header_rewrite(req, 99, NULL));
	char buf[512];
	size_t n = 0;
	for (int i = 0; http_request_header_at(req, i, &name, &value); i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s=%s|", name, value);
	assert_null(http_request_header(req, "X-Drop"));
	http_response_start(req, 200, "text/plain", (int64_t)n);
	http_response_write_bytes(req, buf, n);
	http_response_end(req);
}

static void on_cancel(void *arg)
{
	cancels++;
	parked = NULL;
}

static void h_slow(struct http_request *req, void *arg)
{
	parked = req;
	http_request_set_cancel(req, on_cancel, NULL);
}

static void dispatch(struct http_request *req, void *arg)
{
	route_fn fn;
	void *fa;
	switch (router_match(router, req, &fn, &fa)) {
	case ROUTER_MATCH:
		fn(req, fa);
		break;
	case ROUTER_NOT_FOUND:
		http_respond_error(req, 404, "not_found", "no route for %s", http_request_path(req));
		break;
	case ROUTER_METHOD_NOT_ALLOWED:
		http_respond_error(req, 405, "method_not_allowed", "method not allowed");
		break;
	}
}

/* ---- client side ---- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int client(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sin = { .sin_family = AF_INET,
				   .sin_port = htons((uint16_t)http_server_port(srv)) };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

static void csend(int fd, const char *s)
{
	size_t len = strlen(s);
	assert_int_equal(send(fd, s, len, MSG_NOSIGNAL), (ssize_t)len);
}

struct reply {
	char buf[65536];
	size_t len;
	bool eof;
};

/* Runs the loop and reads until cond holds, EOF, or ms pass. */
static void pump(int fd, struct reply *r, int ms, bool (*cond)(const struct reply *r, int want), int want)
{
	int64_t end = now_ms() + ms;
	while (now_ms() < end) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (fd >= 0 && !r->eof) {
			ssize_t n = recv(fd, r->buf + r->len, sizeof(r->buf) - 1 - r->len, MSG_DONTWAIT);
			if (n > 0) {
				r->len += (size_t)n;
				r->buf[r->len] = '\0';
			} else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
				r->eof = true;
			}
		}
		if (cond && cond(r, want))
			return;
		if (r->eof && cond)
			return;
		usleep(200);
	}
}

/* Complete responses in r (Content-Length or chunked; 1xx do not count). */
static int complete(const struct reply *r)
{
	const char *p = r->buf, *end = r->buf + r->len;
	int n = 0;
	while (p < end) {
		const char *he = strstr(p, "\r\n\r\n");
		if (!he)
			break;
		he += 4;
		if (strncmp(p, "HTTP/1.1 1", 10) == 0) {
			p = he;
			continue;
		}
		const char *cl = strstr(p, "Content-Length: ");
		if (cl && cl < he) {
			size_t len = strtoul(cl + 16, NULL, 10);
			if ((size_t)(end - he) < len)
				break;
			p = he + len;
		} else if (strstr(p, "Transfer-Encoding: chunked") &&
			   strstr(p, "Transfer-Encoding: chunked") < he) {
			const char *z = strstr(he, "\r\n0\r\n\r\n");
			if (!z && strncmp(he, "0\r\n\r\n", 5) == 0)
				z = he - 2;
			if (!z)
				break;
			p = z + 7;
		} else {
			p = he;
		}
		n++;
	}
	return n;
}

static bool have(const struct reply *r, int want)
{
	return complete(r) >= want;
}

static bool closed(const struct reply *r, int want)
{
	return r->eof;
}

static void roundtrip(int fd, const char *req, struct reply *r, int want)
{
	memset(r, 0, sizeof(*r));
	if (req)
		csend(fd, req);
	pump(fd, r, 2000, have, want);
	if (complete(r) != want)
		fprintf(stderr, "reply to %s: [%s]\n", req ? req : "-", r->buf);
	assert_int_equal(complete(r), want);
}

/* ---- fixtures ---- */

static int setup(void **state)
{
	log_set_level(LOG_LEVEL_WARN);
	base = event_base_new();
	struct http_server_limits lim = {
		.max_header_bytes = 1024,
		.max_body_bytes = 1000,
		.header_timeout_ms = 100,
		.body_timeout_ms = 600,
		.idle_timeout_ms = 300,
		.max_connections = 4,
	};
	srv = http_server_new(base, &lim, dispatch, NULL);
	assert_non_null(srv);
	assert_int_equal(http_server_listen(srv, "127.0.0.1:0"), 0);
	assert_true(http_server_port(srv) > 0);
	cancels = 0;
	parked = NULL;
	done_calls = 0;
	return 0;
}

static int teardown(void **state)
{
	http_server_free(srv);
	event_base_free(base);
	return 0;
}

/* ---- tests ---- */

static void test_keepalive_and_headers(void **state)
{
	int fd = client();
	struct reply r;
	roundtrip(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r, 1);
	assert_non_null(strstr(r.buf, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(r.buf, "Content-Length: 11\r\n"));
	assert_non_null(strstr(r.buf, "X-Request-Id: "));
	assert_null(strstr(r.buf, "Connection: close"));
	assert_non_null(strstr(r.buf, "{\"ok\":true}"));
	roundtrip(fd, "GET /hello HTTP/1.1\r\nX-Request-Id: abc.DEF_1-2\r\n\r\n", &r, 1);
	assert_non_null(strstr(r.buf, "X-Request-Id: abc.DEF_1-2\r\n"));
	roundtrip(fd, "GET /hello HTTP/1.1\r\nX-Request-Id: bad id!\r\n\r\n", &r, 1);
	assert_null(strstr(r.buf, "bad id"));
	roundtrip(fd, "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n", &r, 1);
	assert_non_null(strstr(r.buf, "Connection: close\r\n"));
	pump(fd, &r, 1000, closed, 0);
	assert_true(r.eof);
	close(fd);

	fd = client(); /* HTTP/1.0 keep-alive only when asked */
	roundtrip(fd, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r, 1);
	assert_non_null(strstr(r.buf, "Connection: keep-alive\r\n"));
	roundtrip(fd, "GET /hello HTTP/1.0\r\n\r\n", &r, 1);
	assert_non_null(strstr(r.buf, "Connection: close\r\n"));
	close(fd);
}

static void test_parse_request(void **state)
{
	int fd = client();
	struct reply r;
	roundtrip(
		fd,
		"GET /items/a%20b?a=x+y%21&b=&c HTTP/1.1\r\nX-Empty:\r\nX-Foo: bar \r\nx-foo: second\r\n\r\n",
		&r, 1);
	assert_non_null(strstr(r.buf, "GET|/items/a b|x y!||bar|a b"));
	roundtrip(fd, "DELETE /items/7 HTTP/1.1\r\n\r\n", &r, 1);
	assert_non_null(strstr(r.buf, "DELETE|/items/7|(null)|(null)|(null)|7"));
	memset(&r, 0, sizeof(r));
	csend(fd, "HEAD /hello HTTP/1.1\r\n\r\n");
	pump(fd, &r, 100, NULL, 0);
	assert_non_null(strstr(r.buf, "Content-Length: 11\r\n"));
	assert_null(strstr(r.buf, "{\"ok\""));
	roundtrip(fd, "GET /nope HTTP/1.1\r\n\r\n", &r, 1);
	assert_non_null(strstr(r.buf, "HTTP/1.1 404 Not Found"));
	assert_non_null(strstr(r.buf, "{\"error\":{\"code\":\"not_found\""));
	roundtrip(fd, "POST /hello HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &r, 1);
	assert_non_null(strstr(r.buf, "HTTP/1.1 405"));
	assert_non_null(strstr(r.buf, "Content-Type: application/json"));
	roundtrip(fd, "GET /items/a%zz HTTP/1.1\r\n\r\n", &r, 1);
	assert_non_null(strstr(r.buf, "HTTP/1.1 400"));
	assert_non_null(strstr(r.buf, "Connection: close"));
	close(fd);
	fd = client();
	roundtrip(fd, "GET /items/a%00 HTTP/1.1\r\n\r\n", &r, 1);
	assert_non_null(strstr(r.buf, "HTTP/1.1 400"));
	close(fd);
	fd = client();
	roundtrip(fd, "GET /items/a%4 HTTP/1.1\r\n\r\n", &r, 1);
	assert_non_null(strstr(r.buf, "HTTP/1.1 400"));
	close(fd);
}

static void test_header_rewrite(void **state)
{
	int fd = client();
	struct reply r;
	roundtrip(
		fd,
		"GET /rewrite HTTP/1.1\r\nX-Drop: 1\r\nA: x\r\nCookie: t=1; b=2\r\nx-drop: 2\r\nB: y\r\n\r\n",
		&r, 1);
	assert_non_null(strstr(r.buf, "\r\n\r\nA=x|Cookie=1; b=2|B=y|"));
	close(fd);
}

static void test_pipelining(void **state)
{
	int fd = client();
	struct reply r;
	roundtrip(fd,
		  "GET /items/one HTTP/1.1\r\n\r\nPOST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
		  "GET /items/two HTTP/1.1\r\n\r\n",
		  &r, 3);
	const char *one = strstr(r.buf, "|one");
	const char *hello = strstr(r.buf, "hello");
	const char *two = strstr(r.buf, "|two");
	assert_true(one && hello && two && one < hello && hello < two);
	close(fd);
}

static void test_bodies(void **state)
{
	int fd = client();
	struct reply r;
	roundtrip(fd, "POST /echo HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world", &r, 1);
	assert_non_null(strstr(r.buf, "Transfer-Encoding: chunked"));
	assert_non_null(strstr(r.buf, "b\r\nhello world\r\n0\r\n\r\n"));

	csend(fd, "POST /stream HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
	memset(&r, 0, sizeof(r));
	pump(fd, &r, 50, NULL, 0);
	assert_int_equal(r.len, 0);
	roundtrip(fd, "6\r\n world\r\n0\r\n\r\n", &r, 1);
	assert_non_null(strstr(r.buf, "n=11"));

	roundtrip(fd, "POST /json HTTP/1.1\r\nContent-Length: 9\r\n\r\n{\"a\": 1}\n", &r, 1);
	assert_non_null(strstr(r.buf, "{\"got\":{\"a\":1}}"));
	roundtrip(fd, "POST /json HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &r, 1);
	assert_non_null(strstr(r.buf, "{\"got\":null}"));

	/* unread body is discarded and the connection kept */
	roundtrip(fd, "POST /noread HTTP/1.1\r\nContent-Length: 5\r\n\r\nxxxxxGET /hello HTTP/1.1\r\n\r\n",
		  &r, 2);
	assert_non_null(strstr(r.buf, "HTTP/1.1 204"));
	assert_non_null(strstr(r.buf, "{\"ok\":true}"));

	roundtrip(fd, "POST /json HTTP/1.1\r\nContent-Length: 5\r\n\r\n{nope", &r, 1);
	assert_non_null(strstr(r.buf, "invalid_json"));
	close(fd);
}

static void test_body_cap(void **state)
{
	int fd = client();
	struct reply r;
	roundtrip(fd, "POST /echo HTTP/1.1\r\nContent-Length: 5000\r\n\r\nabc", &r, 1);
	assert_non_null(strstr(r.buf, "HTTP/1.1 413"));
	assert_non_null(strstr(r.buf, "payload_too_large"));
	assert_non_null(strstr(r.buf, "Connection: close"));
	close(fd);

	fd = client();
	char big[1400];
	memset(big, 'z', sizeof(big));
	big[sizeof(big) - 1] = '\0';
	csend(fd, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n577\r\n");
	roundtrip(fd, big, &r, 1);
	assert_non_null(strstr(r.buf, "HTTP/1.1 413"));
	close(fd);
}

static void test_header_cap_and_malformed(void **state)
{
	int fd = client();
	struct reply r;
	char req[3000];
	memset(req, 0, sizeof(req));
	strcpy(req, "GET /hello HTTP/1.1\r\nX-Big: ");
	memset(req + strlen(req), 'a', 2000);
	strcat(req, "\r\n\r\n");
	roundtrip(fd, req, &r, 1);
	assert_non_null(strstr(r.buf, "HTTP/1.1 431"));
	assert_non_null(strstr(r.buf, "header_too_large"));
	pump(fd, &r, 1000, closed, 0);
	assert_true(r.eof);
	close(fd);

	static const char *const bad[] = {
		"GARBAGE\r\n\r\n",
		"GET /hello HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"GET /hello HTTP/1.1\r\nBad Header: x\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fd = client();
		roundtrip(fd, bad[i], &r, 1);
		if (!strstr(r.buf, "HTTP/1.1 400"))
			fprintf(stderr, "%s -> %s\n", bad[i], r.buf);
		assert_non_null(strstr(r.buf, "HTTP/1.1 400"));
		assert_non_null(strstr(r.buf, "\"code\":\"bad_request\""));
		assert_non_null(strstr(r.buf, "Connection: close"));
		close(fd);
	}
	fd = client();
	roundtrip(fd, "POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", &r, 1);
	assert_true(strstr(r.buf, "HTTP/1.1 501") || strstr(r.buf, "HTTP/1.1 400"));
	close(fd);
	fd = client();
	roundtrip(fd, "POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &r, 1);
	assert_non_null(strstr(r.buf, "HTTP/1.1 501"));
	close(fd);
}

static void test_timeouts(void **state)
{
	int fd = client();
	struct reply r;
	memset(&r, 0, sizeof(r));
	csend(fd, "GET /hello HTTP/1.1\r\nHost:");
	pump(fd, &r, 1000, closed, 0);
	assert_non_null(strstr(r.buf, "HTTP/1.1 408"));
	assert_non_null(strstr(r.buf, "request_timeout"));
	assert_true(r.eof);
	close(fd);

	fd = client(); /* idle: closed silently */
	roundtrip(fd, "GET /hello HTTP/1.1\r\n\r\n", &r, 1);
	memset(&r, 0, sizeof(r));
	pump(fd, &r, 1000, closed, 0);
	assert_true(r.eof);
	assert_int_equal(r.len, 0);
	close(fd);

	/* a JSON body trickling in a byte per 100 ms, never idle for 300 ms:
	 * cut at the body timeout (600 ms) all the same */
	fd = client();
	memset(&r, 0, sizeof(r));
	int64_t t0 = now_ms();
	csend(fd, "POST /json HTTP/1.1\r\nContent-Length: 40\r\n\r\n");
	for (int i = 0; i < 20 && !strstr(r.buf, "HTTP/1.1 408"); i++) {
		if (send(fd, " ", 1, MSG_NOSIGNAL) != 1)
			break;
		pump(fd, &r, 100, closed, 0);
	}
	pump(fd, &r, 200, have, 1);
	assert_non_null(strstr(r.buf, "HTTP/1.1 408"));
	assert_non_null(strstr(r.buf, "request body timed out"));
	int64_t took = now_ms() - t0;
	assert_true(took >= 550 && took < 1500);
	close(fd);
}

static void test_expect_continue(void **state)
{
	int fd = client();
	struct reply r;
	memset(&r, 0, sizeof(r));
	csend(fd, "POST /echo HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
	pump(fd, &r, 100, NULL, 0);
	assert_non_null(strstr(r.buf, "HTTP/1.1 100 Continue\r\n\r\n"));
	csend(fd, "ping");
	pump(fd, &r, 2000, have, 1);
	assert_non_null(strstr(r.buf, "4\r\nping\r\n"));
	assert_null(strstr(r.buf, "Connection: close"));

	/* answered without reading: no 100, and the connection closes */
	roundtrip(fd, "POST /noread HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n", &r, 1);
	assert_null(strstr(r.buf, "100 Continue"));
	assert_non_null(strstr(r.buf, "Connection: close"));
	close(fd);

	/* over the cap: 413 up front, no 100 */
	fd = client();
	roundtrip(fd, "POST /echo HTTP/1.1\r\nContent-Length: 4000\r\nExpect: 100-continue\r\n\r\n", &r, 1);
	assert_null(strstr(r.buf, "100 Continue"));
	assert_non_null(strstr(r.buf, "HTTP/1.1 413"));
	close(fd);
}

static void test_cancel(void **state)
{
	int fd = client();
	struct reply r;
	memset(&r, 0, sizeof(r));
	csend(fd, "GET /slow HTTP/1.1\r\n\r\n");
	pump(fd, &r, 50, NULL, 0);
	assert_non_null(parked);
	close(fd);
	pump(-1, &r, 100, NULL, 0);
	assert_int_equal(cancels, 1);
	assert_null(parked);
}

static void test_abort(void **state)
{
	static const char *const paths[] = { "/cut", "/cut?sized=1" };
	for (size_t i = 0; i < 2; i++) {
		int fd = client();
		struct reply r;
		char line[128];
		memset(&r, 0, sizeof(r));
		snprintf(line, sizeof(line), "GET %s HTTP/1.1\r\n\r\n", paths[i]);
		csend(fd, line);
		pump(fd, &r, 1000, closed, 0);
		assert_true(r.eof); /* closed though the client asked for keep-alive */
		assert_non_null(strstr(r.buf, "HTTP/1.1 200"));
		assert_non_null(strstr(r.buf, "partial"));
		const char *body = strstr(r.buf, "\r\n\r\n");
		assert_non_null(body);
		assert_null(strstr(body + 4, "0\r\n\r\n")); /* no chunked terminator */
		assert_int_equal(complete(&r), 0);
		close(fd);
	}
}

static void on_done(void *arg)
{
	done_calls++;
}

static void test_shutdown(void **state)
{
	int idle = client();
	int fd = client();
	struct reply r, ri;
	roundtrip(idle, "GET /hello HTTP/1.1\r\n\r\n", &ri, 1);
	memset(&r, 0, sizeof(r));
	csend(fd, "GET /slow HTTP/1.1\r\n\r\n");
	pump(fd, &r, 50, NULL, 0);
	assert_non_null(parked);
	http_server_shutdown(srv, 1000, on_done, NULL);
	memset(&ri, 0, sizeof(ri));
	pump(idle, &ri, 100, closed, 0);
	assert_true(ri.eof);
	assert_int_equal(done_calls, 0);
	http_respond_empty(parked, 204);
	parked = NULL;
	pump(fd, &r, 1000, closed, 0);
	assert_non_null(strstr(r.buf, "HTTP/1.1 204"));
	assert_non_null(strstr(r.buf, "Connection: close"));
	assert_true(r.eof);
	pump(-1, &r, 50, NULL, 0);
	assert_int_equal(done_calls, 1);
	assert_int_equal(cancels, 0);
	close(fd);
	close(idle);
}

static void test_shutdown_deadline(void **state)
{
	int fd = client();
	struct reply r;
	memset(&r, 0, sizeof(r));
	csend(fd, "GET /slow HTTP/1.1\r\n\r\n");
	pump(fd, &r, 50, NULL, 0);
	assert_non_null(parked);
	http_server_shutdown(srv, 50, on_done, NULL);
	pump(fd, &r, 1000, closed, 0);
	assert_true(r.eof);
	pump(-1, &r, 20, NULL, 0);
	assert_int_equal(cancels, 1);
	assert_int_equal(done_calls, 1);
	close(fd);
}

static void test_connection_cap(void **state)
{
	int fds[4];
	struct reply r;
	for (int i = 0; i < 4; i++) {
		fds[i] = client();
		roundtrip(fds[i], "GET /hello HTTP/1.1\r\n\r\n", &r, 1);
	}
	int extra = client();
	memset(&r, 0, sizeof(r));
	pump(extra, &r, 1000, closed, 0);
	assert_non_null(strstr(r.buf, "HTTP/1.1 503"));
	assert_non_null(strstr(r.buf, "too_many_connections"));
	close(extra);
	for (int i = 0; i < 4; i++)
		close(fds[i]);
}

int main(void)
{
	router = router_new();
	if (router_add(router, "GET", "/hello", h_hello, NULL) ||
	    router_add(router, "GET", "/items/{id}", h_echo_req, NULL) ||
	    router_add(router, "DELETE", "/items/{id}", h_echo_req, NULL) ||
	    router_add(router, "POST", "/echo", h_echo_body, NULL) ||
	    router_add(router, "POST", "/json", h_json, NULL) ||
	    router_add(router, "POST", "/stream", h_stream, NULL) ||
	    router_add(router, "POST", "/noread", h_noread, NULL) ||
	    router_add(router, "GET", "/slow", h_slow, NULL) ||
	    router_add(router, "GET", "/cut", h_cut, NULL) ||
	    router_add(router, "GET", "/rewrite", h_rewrite, NULL))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_keepalive_and_headers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parse_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_rewrite, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipelining, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bodies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_cap_and_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeouts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expect_continue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_cap, setup, teardown),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	router_free(router);
	return rc;
}
