/* The front door: open routes (/health, /hello, /openapi.json), bearer-token
 * authentication for /api and /admin, route lookup, and the dialects behind
 * it (native, Hermes), each of which registers its routes on the router. */
#include "api/api.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/config.h"
#include "http/router.h"
#include "http/server.h"
#include "hermes/hermes.h"
#include "native/native.h"
#include "preview/host.h"
#include "preview/proxy.h"
#include "openapi_json.h"

struct api {
	struct router *router;
	char **tokens; /* NULL-terminated, NULL when auth is off */
	struct native *native;
	struct hermes *hermes;
	struct preview *preview; /* NULL: SANDBAR_PREVIEW_DOMAIN is empty */
};

static void route_health(struct http_request *req, void *arg);
static void route_hello(struct http_request *req, void *arg);
static void route_openapi(struct http_request *req, void *arg);
static bool authorized(const struct api *api, struct http_request *req);
static char **split_tokens(const char *list);

struct api *api_new(struct event_base *base, const struct config *cfg, const struct core *core)
{
	struct api *api = calloc(1, sizeof(*api));
	CHECK(api != NULL);
	api->router = router_new();
	api->tokens = split_tokens(cfg->api_tokens);
	if (router_add(api->router, "GET", "/health", route_health, api) != 0 ||
	    router_add(api->router, "GET", "/hello", route_hello, api) != 0 ||
	    router_add(api->router, "GET", "/openapi.json", route_openapi, api) != 0 ||
	    !(api->native = native_new(base, cfg, core, api->router)) ||
	    !(api->hermes = hermes_new(base, cfg, core, api->router))) {
		api_free(api);
		return NULL;
	}
	if (core->preview && core->preview->domain[0]) {
		struct preview_config pc = {
			.domain = core->preview->domain,
			.publish_addr = cfg->publish_addr,
			.connect_timeout_ms = cfg->preview_connect_timeout_ms,
			.head_timeout_ms = cfg->preview_head_timeout_ms,
			.idle_timeout_ms = cfg->preview_idle_timeout_ms,
			.idle_per_port = (int)cfg->preview_idle_conns,
			.wake_timeout_ms = cfg->wake_timeout_ms,
			.secret = core->preview_secret,
		};
		api->preview = preview_new(base, &pc, core->reg);
	}
	return api;
}

void api_shutdown(struct api *api)
{
	native_shutdown(api->native);
	hermes_shutdown(api->hermes);
}

void api_free(struct api *api)
{
	if (!api)
		return;
	native_free(api->native);
	hermes_free(api->hermes);
	preview_free(api->preview);
	router_free(api->router);
	for (size_t i = 0; api->tokens && api->tokens[i]; i++)
		free(api->tokens[i]);
	free(api->tokens);
	free(api);
}

void api_dispatch(struct http_request *req, void *arg)
{
	struct api *api = arg;
	if (api->preview && preview_dispatch(api->preview, req))
		return;
	const char *path = http_request_path(req);
	if ((strncmp(path, "/api/", 5) == 0 || strncmp(path, "/admin/", 7) == 0) && !authorized(api, req)) {
		http_response_header(req, "WWW-Authenticate", "Bearer");
		http_respond_error(req, 401, "unauthorized",
				   "a valid 'Authorization: Bearer <token>' header is required");
		return;
	}
	route_fn fn;
	void *fn_arg;
	switch (router_match(api->router, req, &fn, &fn_arg)) {
	case ROUTER_MATCH:
		fn(req, fn_arg);
		return;
	case ROUTER_METHOD_NOT_ALLOWED:
		http_respond_error(req, 405, "method_not_allowed", "%s is not allowed on %s",
				   http_request_method(req), path);
		return;
	case ROUTER_NOT_FOUND:
	default:
		http_respond_error(req, 404, "not_found", "no route for %s %s", http_request_method(req),
				   path);
		return;
	}
}

void api_preview_dispatch(struct http_request *req, void *arg)
{
	struct api *api = arg;
	if (api->preview && preview_dispatch(api->preview, req))
		return;
	http_respond_error(
		req, 404, "not_a_preview_host",
		"this listener serves previews only: the Host must be <port>-<sandbox id>.<preview domain>");
}

static void respond_static(struct http_request *req, const char *type, const char *body, size_t len)
{
	http_response_start(req, 200, type, (int64_t)len);
	http_response_write_bytes(req, body, len);
	http_response_end(req);
}

static void route_health(struct http_request *req, void *arg)
{
	static const char body[] = "{\"status\":\"ok\"}";
	respond_static(req, "application/json", body, sizeof(body) - 1);
}

static void route_hello(struct http_request *req, void *arg)
{
	static const char body[] = "{\"message\":\"hello, world\"}";
	respond_static(req, "application/json", body, sizeof(body) - 1);
}

static void route_openapi(struct http_request *req, void *arg)
{
	respond_static(req, "application/json", openapi_json, openapi_json_len);
}

/* Constant time in the token's content: every configured token is compared in full. */
static bool authorized(const struct api *api, struct http_request *req)
{
	if (!api->tokens)
		return true;
	const char *h = http_request_header(req, "Authorization");
	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	const char *given = h + 7;
	size_t glen = strlen(given);
	unsigned ok = 0;
	for (size_t i = 0; api->tokens[i]; i++) {
		const char *t = api->tokens[i];
		size_t tlen = strlen(t);
		unsigned diff = (unsigned)(glen ^ tlen);
		for (size_t k = 0; k < tlen; k++)
			diff |= (unsigned char)t[k] ^ (unsigned char)(k < glen ? given[k] : 0);
		ok |= (diff == 0);
	}
	return ok != 0;
}

static char **split_tokens(const char *list)
{
	if (!list || !*list)
		return NULL;
	size_t n = 1;
	for (const char *p = list; *p; p++)
		n += *p == ',';
	char **tokens = calloc(n + 1, sizeof(char *));
	CHECK(tokens != NULL);
	size_t k = 0;
	const char *start = list;
	for (const char *p = list;; p++) {
		if (*p == ',' || *p == '\0') {
			while (start < p && *start == ' ')
				start++;
			const char *end = p;
			while (end > start && end[-1] == ' ')
				end--;
			if (end > start)
				tokens[k++] = strndup(start, (size_t)(end - start));
			if (*p == '\0')
				break;
			start = p + 1;
		}
	}
	if (k == 0) {
		free(tokens);
		return NULL;
	}
	return tokens;
}

/* Errors the HTTP layer raises itself look like the dialect's own, which
 * the path tells (before the head is read whole: the native one's). */
void api_render_error(struct http_request *req, int status, const char *code, const char *message, void *arg)
{
	const char *path = http_request_path(req);
	if (path && hermes_owns_path(path))
		hermes_render_error(req, status, code, message, arg);
	else
		native_render_error(req, status, code, message, arg);
}
