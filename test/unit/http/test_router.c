/* Router matching: literals, captures, 404 vs 405, HEAD on GET routes, and
 * the literal-beats-capture rule, on requests built without a socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "../../../src/http/internal.h"
#include "http/router.h"
#include "http/server.h"

static void h1(struct http_request *req, void *arg);
static void h2(struct http_request *req, void *arg);

static void h1(struct http_request *req, void *arg)
{
}

static void h2(struct http_request *req, void *arg)
{
}

static struct http_conn conn;

static struct http_request *fake(const char *method, const char *path)
{
	request_reset(&conn.req);
	conn.req.conn = &conn;
	conn.req.method = method;
	conn.req.path = path;
	return &conn.req;
}

static void test_match(void **state)
{
	struct router *r = router_new();
	int one = 1, two = 2;
	assert_int_equal(router_add(r, "GET", "/api/sandboxes/{id}", h1, &one), 0);
	assert_int_equal(router_add(r, "GET", "/api/sandboxes/search", h2, &two), 0);
	assert_int_equal(router_add(r, "POST", "/api/sandboxes/{id}/exec/{pid}", h2, &two), 0);
	assert_int_equal(router_add(r, "GET", "/", h1, &one), 0);
	route_fn fn;
	void *arg;

	struct http_request *req = fake("GET", "/api/sandboxes/abc");
	assert_int_equal(router_match(r, req, &fn, &arg), ROUTER_MATCH);
	assert_ptr_equal(fn, h1);
	assert_ptr_equal(arg, &one);
	assert_string_equal(http_request_param(req, "id"), "abc");

	req = fake("GET", "/api/sandboxes/search");
	assert_int_equal(router_match(r, req, &fn, &arg), ROUTER_MATCH);
	assert_ptr_equal(fn, h2);
	assert_null(http_request_param(req, "id"));

	req = fake("POST", "/api/sandboxes/s1/exec/77");
	assert_int_equal(router_match(r, req, &fn, &arg), ROUTER_MATCH);
	assert_string_equal(http_request_param(req, "id"), "s1");
	assert_string_equal(http_request_param(req, "pid"), "77");

	req = fake("HEAD", "/api/sandboxes/x");
	assert_int_equal(router_match(r, req, &fn, &arg), ROUTER_MATCH);
	req = fake("DELETE", "/api/sandboxes/x");
	assert_int_equal(router_match(r, req, &fn, &arg), ROUTER_METHOD_NOT_ALLOWED);
	req = fake("GET", "/api/sandboxes/x/y");
	assert_int_equal(router_match(r, req, &fn, &arg), ROUTER_NOT_FOUND);
	req = fake("GET", "/api/sandboxes/");
	assert_int_equal(router_match(r, req, &fn, &arg), ROUTER_NOT_FOUND);
	req = fake("GET", "/");
	assert_int_equal(router_match(r, req, &fn, &arg), ROUTER_MATCH);
	req = fake("GET", "/nope");
	assert_int_equal(router_match(r, req, &fn, &arg), ROUTER_NOT_FOUND);
	request_reset(&conn.req);
	router_free(r);
}

static void test_bad_patterns(void **state)
{
	struct router *r = router_new();
	assert_int_equal(router_add(r, "GET", "nope", h1, NULL), -1);
	assert_int_equal(router_add(r, "GET", "/a/{id", h1, NULL), -1);
	assert_int_equal(router_add(r, "GET", "/a/x{id}", h1, NULL), -1);
	assert_int_equal(router_add(r, "GET", "/a/{}", h1, NULL), -1);
	assert_int_equal(router_add(r, "GET", "/a/{i{d}", h1, NULL), -1);
	router_free(r);
}

int main(void)
{
	request_init(&conn.req, &conn);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_bad_patterns),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
