/* The HTTP front of sandbard: authentication, routing, and the open routes
 * (/health, /hello, /openapi.json). Each API dialect registers its routes
 * here and renders the core's results in its own wire format. */
#ifndef SANDBAR_API_API_H
#define SANDBAR_API_API_H

#include <event2/event.h>

#include "core/check.h"

struct api;
struct config;
struct http_request;
struct core;

/* core: what the dialects call, built by main and outliving the api. */
struct api *api_new(struct event_base *base, const struct config *cfg, const struct core *core);
void api_free(struct api *api);
/* SIGTERM: WebSocket clients are told the server is going away (1001). */
void api_shutdown(struct api *api);
/* The http_dispatch_fn for http_server_new (arg: the api). */
void api_dispatch(struct http_request *req, void *arg);
/* The http_dispatch_fn of the previews-only listener (SANDBAR_PREVIEW_ADDR):
 * a preview host is proxied, anything else is 404. */
void api_preview_dispatch(struct http_request *req, void *arg);
/* The http_error_render_fn for http_server_set_error_renderer (arg: the api):
 * errors the HTTP layer raises look like the API's own. */
void api_render_error(struct http_request *req, int status, const char *code, const char *message, void *arg);

#endif
