/* The HTTP client against a scripted peer on a unix socket: body framings,
 * Docker errors, the body cap, a peer hanging up mid-head, and cancel. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/listener.h>
#include <json-c/json.h>

#include "docker/client.h"
#include "docker/demux.h"
#include "unix_peer.h"

struct peer {
	const char *response;
	size_t response_len;
	bool close_after;
	bool silent; /* never answers */
	bool sent;
	struct evbuffer *request;
	struct bufferevent *bev;
};

struct result {
	int calls;
	int status;
	char err[256];
	char body[256];
	struct bufferevent *bev;
	char stream[256];
	size_t stream_len;
};

static struct event_base *base;
static struct unix_peer sock;
static struct docker *docker;
static struct peer peer;

static void peer_writecb(struct bufferevent *bev, void *arg)
{
	if (peer.close_after && peer.sent && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
		bufferevent_free(bev);
		peer.bev = NULL;
	}
}

static void peer_readcb(struct bufferevent *bev, void *arg)
{
	evbuffer_add_buffer(peer.request, bufferevent_get_input(bev));
	if (peer.silent)
		return;
	if (evbuffer_search(peer.request, "\r\n\r\n", 4, NULL).pos < 0)
		return;
	if (peer.response) {
		bufferevent_write(bev, peer.response, peer.response_len);
		peer.response = NULL;
		peer.sent = true;
	}
}

static void peer_eventcb(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		bufferevent_free(bev);
		peer.bev = NULL;
	}
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	peer.bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(peer.bev, peer_readcb, peer_writecb, peer_eventcb, NULL);
	bufferevent_enable(peer.bev, EV_READ | EV_WRITE);
}

static int setup(void **state)
{
	base = event_base_new();
	unix_peer_open(&sock, base, "docker-test", accept_cb);
	docker = sock.docker;
	memset(&peer, 0, sizeof(peer));
	peer.request = evbuffer_new();
	return 0;
}

static int teardown(void **state)
{
	if (peer.bev)
		bufferevent_free(peer.bev);
	evbuffer_free(peer.request);
	unix_peer_close(&sock);
	event_base_free(base);
	return 0;
}

static void script(const char *response, bool close_after)
{
	peer.response = response;
	peer.response_len = strlen(response);
	peer.close_after = close_after;
}

static void run_until(const int *flag, int ms)
{
	for (int i = 0; i < ms && !*flag; i++) {
		struct timeval tv = { 0, 1000 };
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
}

static void json_cb(int status, struct json_object *body, const char *err, void *arg)
{
	struct result *r = arg;
	r->calls++;
	r->status = status;
	snprintf(r->err, sizeof(r->err), "%s", err ? err : "");
	snprintf(r->body, sizeof(r->body), "%s", body ? json_object_to_json_string(body) : "");
	if (getenv("TEST_VERBOSE"))
		fprintf(stderr, "json_cb: %d %s %s\n", status, r->err, r->body);
}

static void run_json(const char *response, bool close_after, struct result *r)
{
	script(response, close_after);
	struct docker_call *c = docker_call_json(docker, "GET", "/containers/x/json", NULL, json_cb, r);
	assert_non_null(c);
	assert_int_equal(r->calls, 0); /* never from inside the start */
	run_until(&r->calls, 2000);
	assert_int_equal(r->calls, 1);
}

static void test_content_length(void **state)
{
	struct result r = { 0 };
	run_json("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n{\"a\": 1}",
		 false, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.err, "");
	assert_string_equal(r.body, "{ \"a\": 1 }");
	char *req = (char *)evbuffer_pullup(peer.request, -1);
	assert_non_null(strstr(req, "GET /v1.41/containers/x/json HTTP/1.1\r\n"));
	assert_non_null(strstr(req, "Host: docker\r\n"));
}

static void test_chunked(void **state)
{
	struct result r = { 0 };
	run_json("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n4\r\n: 2}\r\n0\r\n\r\n",
		 false, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{ \"a\": 2 }");
}

static void test_eof_body(void **state)
{
	struct result r = { 0 };
	run_json("HTTP/1.1 200 OK\r\n\r\n{\"a\": 3}", true, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.err, "");
	assert_string_equal(r.body, "{ \"a\": 3 }");
}

static void test_error_json(void **state)
{
	struct result r = { 0 };
	run_json("HTTP/1.1 404 Not Found\r\nContent-Length: 34\r\n\r\n{\"message\":\"No such container: x\"}",
		 false, &r);
	assert_int_equal(r.status, 404);
	assert_string_equal(r.err, "No such container: x");
}

static void test_too_large(void **state)
{
	struct result r = { 0 };
	docker_set_max_body(docker, 4);
	run_json("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{\"a\": 1}", false, &r);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.err, "response too large");
}

static void test_closed_mid_head(void **state)
{
	struct result r = { 0 };
	run_json("HTTP/1.1 200 OK\r\nContent-Le", true, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.err, "closed"));
}

static void test_closed_mid_body(void **state)
{
	struct result r = { 0 };
	run_json("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"a\"", true, &r);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.err, "mid-body"));
}

static void test_no_daemon(void **state)
{
	struct result r = { 0 };
	struct docker *d = docker_new(base, "unix:///nonexistent/docker.sock");
	struct docker_call *c = docker_call_json(d, "GET", "/version", NULL, json_cb, &r);
	assert_non_null(c);
	assert_int_equal(r.calls, 0);
	run_until(&r.calls, 2000);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.status, 0);
	assert_non_null(strstr(r.err, "connect"));
	docker_free(d);
}

static void test_cancel(void **state)
{
	struct result r = { 0 };
	int never = 0;
	peer.silent = true;
	struct docker_call *c = docker_call_json(docker, "GET", "/version", NULL, json_cb, &r);
	run_until(&never, 30);
	docker_call_cancel(c);
	run_until(&never, 30);
	assert_int_equal(r.calls, 0);
	/* and cancelling before the loop ever ran */
	c = docker_call_json(docker, "GET", "/version", NULL, json_cb, &r);
	docker_call_cancel(c);
	run_until(&never, 20);
	assert_int_equal(r.calls, 0);
	/* a finished-but-undelivered call is also silenced. With no daemon the
	 * connect fails inside the start: the call is over, and one loop pass,
	 * with nothing to wait for, delivers it... */
	struct docker *dead = docker_new(base, "unix:///nonexistent/docker.sock");
	struct result over = { 0 };
	docker_call_json(dead, "GET", "/version", NULL, json_cb, &over);
	assert_int_equal(over.calls, 0);
	assert_int_equal(event_base_loop(base, EVLOOP_NONBLOCK), 0);
	assert_int_equal(over.calls, 1);
	assert_non_null(strstr(over.err, "connect"));
	/* ...unless it is cancelled before that pass */
	c = docker_call_json(dead, "GET", "/version", NULL, json_cb, &r);
	docker_call_cancel(c);
	run_until(&never, 20);
	assert_int_equal(r.calls, 0);
	docker_free(dead);
}

static int stream_head(struct docker_call *c, int status, void *arg)
{
	((struct result *)arg)->status = status;
	return 0;
}

static void stream_data(struct docker_call *c, struct evbuffer *body, void *arg)
{
	struct result *r = arg;
	size_t n = evbuffer_get_length(body);
	evbuffer_remove(body, r->stream + r->stream_len, n);
	r->stream_len += n;
}

static void stream_done(struct docker_call *c, const char *err, void *arg)
{
	struct result *r = arg;
	r->calls++;
	snprintf(r->err, sizeof(r->err), "%s", err ? err : "");
}

static void test_stream_chunked_request(void **state)
{
	struct result r = { 0 };
	static const struct docker_stream_cbs cbs = { stream_head, stream_data, NULL, stream_done };
	/* the peer answers once the request head is in; the body follows */
	script("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
	       false);
	struct docker_call *c =
		docker_call_stream(docker, "POST", "/build", "application/x-tar", -1, &cbs, &r);
	struct evbuffer *b = evbuffer_new();
	evbuffer_add(b, "abc", 3);
	docker_call_write(c, b);
	docker_call_finish(c);
	evbuffer_free(b);
	run_until(&r.calls, 2000);
	assert_int_equal(r.calls, 1);
	assert_string_equal(r.err, "");
	assert_int_equal(r.status, 200);
	assert_int_equal(r.stream_len, 11);
	assert_memory_equal(r.stream, "hello world", 11);
	char *req = (char *)evbuffer_pullup(peer.request, -1);
	assert_non_null(strstr(req, "Transfer-Encoding: chunked\r\n"));
	assert_non_null(strstr(req, "\r\n\r\n3\r\nabc\r\n0\r\n\r\n"));
}

static void upgraded_cb(int status, struct bufferevent *bev, const char *err, void *arg)
{
	struct result *r = arg;
	r->calls++;
	r->status = status;
	r->bev = bev;
	snprintf(r->err, sizeof(r->err), "%s", err ? err : "");
}

static void test_upgrade(void **state)
{
	struct result r = { 0 };
	static const char resp[] = "HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
				   "\x01\0\0\0\0\0\0\x03hi\n";
	script(resp, false);
	peer.response_len = sizeof(resp) - 1;
	struct docker_call *c =
		docker_call_upgrade(docker, "POST", "/containers/x/attach?stream=1", NULL, upgraded_cb, &r);
	assert_non_null(c);
	run_until(&r.calls, 2000);
	assert_int_equal(r.status, 101);
	assert_non_null(r.bev);
	struct evbuffer *in = bufferevent_get_input(r.bev);
	int wait = 0;
	for (int i = 0; i < 100 && evbuffer_get_length(in) < 11; i++)
		run_until(&wait, 1);
	assert_int_equal(evbuffer_get_length(in), 11);
	assert_memory_equal(evbuffer_pullup(in, -1), "\x01\0\0\0\0\0\0\x03hi\n", 11);
	char *req = (char *)evbuffer_pullup(peer.request, -1);
	assert_non_null(strstr(req, "Connection: Upgrade\r\nUpgrade: tcp\r\n"));
	bufferevent_free(r.bev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_content_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chunked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eof_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_error_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_large, setup, teardown),
		cmocka_unit_test_setup_teardown(test_closed_mid_head, setup, teardown),
		cmocka_unit_test_setup_teardown(test_closed_mid_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_daemon, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_chunked_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_upgrade, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
