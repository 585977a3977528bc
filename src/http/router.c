/* Method + path-pattern routing over whole segments. Among the routes whose
 * pattern fits, the one with literals furthest left wins, so
 * "/sandboxes/search" beats "/sandboxes/{id}" whatever the order added. */
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "http/router.h"
#include "http/server.h"

#define ROUTER_MAX_SEGS 32

struct segment {
	char *text; /* literal text, or the capture name */
	size_t len;
	bool capture;
};

struct route {
	char *method;
	struct segment segs[ROUTER_MAX_SEGS];
	int nsegs;
	route_fn fn;
	void *arg;
};

struct router {
	struct route *routes;
	int n, cap;
};

static void route_clear(struct route *rt);
static int split_path(const char *path, const char **starts, size_t *lens, int max);
static bool route_fits(const struct route *rt, const char **starts, const size_t *lens, int n,
		       uint32_t *score);

struct router *router_new(void)
{
	return calloc(1, sizeof(struct router));
}

static void route_clear(struct route *rt)
{
	free(rt->method);
	for (int i = 0; i < rt->nsegs; i++)
		free(rt->segs[i].text);
}

void router_free(struct router *r)
{
	if (!r)
		return;
	for (int i = 0; i < r->n; i++)
		route_clear(&r->routes[i]);
	free(r->routes);
	free(r);
}

/* Splits "/a/b" into segments; "/" has one empty segment. -1 when too deep. */
static int split_path(const char *path, const char **starts, size_t *lens, int max)
{
	if (path[0] != '/')
		return -1;
	int n = 0;
	const char *p = path + 1;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (n == max)
			return -1;
		starts[n] = p;
		lens[n] = len;
		n++;
		if (!slash)
			return n;
		p = slash + 1;
	}
}

int router_add(struct router *r, const char *method, const char *pattern, route_fn fn, void *arg)
{
	const char *starts[ROUTER_MAX_SEGS];
	size_t lens[ROUTER_MAX_SEGS];
	int n = split_path(pattern, starts, lens, ROUTER_MAX_SEGS);
	if (n < 0 || !method || !*method || !fn)
		return -1;
	struct route rt = { 0 };
	for (int i = 0; i < n; i++) {
		const char *s = starts[i];
		size_t len = lens[i];
		const char *brace = memchr(s, '{', len);
		const char *close = memchr(s, '}', len);
		bool capture = len >= 3 && s[0] == '{' && s[len - 1] == '}';
		if (capture) {
			s++;
			len -= 2;
			if (memchr(s, '{', len) || memchr(s, '}', len))
				goto fail;
		} else if (brace || close) {
			goto fail;
		}
		rt.segs[i].text = strndup(s, len);
		CHECK(rt.segs[i].text != NULL);
		rt.segs[i].len = len;
		rt.segs[i].capture = capture;
		rt.nsegs = i + 1;
	}
	if (r->n == r->cap) {
		int cap = r->cap ? r->cap * 2 : 16;
		struct route *nr = realloc(r->routes, (size_t)cap * sizeof(*nr));
		CHECK(nr != NULL);
		r->routes = nr;
		r->cap = cap;
	}
	rt.method = strdup(method);
	CHECK(rt.method != NULL);
	rt.fn = fn;
	rt.arg = arg;
	r->routes[r->n++] = rt;
	return 0;
fail:
	route_clear(&rt);
	return -1;
}

static bool route_fits(const struct route *rt, const char **starts, const size_t *lens, int n,
		       uint32_t *score)
{
	if (rt->nsegs != n)
		return false;
	uint32_t sc = 0;
	for (int i = 0; i < n; i++) {
		const struct segment *sg = &rt->segs[i];
		if (sg->capture) {
			if (lens[i] == 0)
				return false; /* a capture is never empty */
			continue;
		}
		if (sg->len != lens[i] || memcmp(sg->text, starts[i], lens[i]) != 0)
			return false;
		sc |= 1u << (31 - i);
	}
	*score = sc;
	return true;
}

enum router_result router_match(const struct router *r, struct http_request *req, route_fn *fn, void **arg)
{
	const char *starts[ROUTER_MAX_SEGS];
	size_t lens[ROUTER_MAX_SEGS];
	int n = split_path(http_request_path(req), starts, lens, ROUTER_MAX_SEGS);
	if (n < 0)
		return ROUTER_NOT_FOUND;
	const char *method = http_request_method(req);
	bool head = strcmp(method, "HEAD") == 0;
	const struct route *best = NULL;
	uint32_t best_score = 0;
	bool path_matched = false;
	for (int i = 0; i < r->n; i++) {
		const struct route *rt = &r->routes[i];
		uint32_t score;
		if (!route_fits(rt, starts, lens, n, &score))
			continue;
		path_matched = true;
		/* HEAD is served by GET routes; the response layer drops the body. */
		bool method_ok = strcmp(rt->method, method) == 0 || (head && strcmp(rt->method, "GET") == 0);
		if (!method_ok)
			continue;
		if (!best || score > best_score) {
			best = rt;
			best_score = score;
		}
	}
	if (!best)
		return path_matched ? ROUTER_METHOD_NOT_ALLOWED : ROUTER_NOT_FOUND;
	for (int i = 0; i < n; i++) {
		if (!best->segs[i].capture)
			continue;
		char *val = http_request_alloc(req, lens[i] + 1);
		memcpy(val, starts[i], lens[i]);
		http_request_set_param(req, best->segs[i].text, val);
	}
	*fn = best->fn;
	*arg = best->arg;
	return ROUTER_MATCH;
}
