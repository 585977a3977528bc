/* The Hermes dialect: what the Vtrix sandbox-go SDK speaks (REST under
 * /api/v1/sandboxes and /admin, every answer in the {"code","message",
 * "data","request_id"} envelope; one WebSocket per attached sandbox carrying
 * JSON-RPC 2.0 for commands and files), on the same core as the native API.
 * It parses, calls the core and renders with its own renderer and its own
 * error table; no SQL, no Docker call, nothing copied from another dialect. */
#ifndef SANDBAR_HERMES_HERMES_H
#define SANDBAR_HERMES_HERMES_H

#include <stdbool.h>

#include <event2/event.h>

#include "api/core.h"

struct config;
struct hermes;
struct http_request;
struct router;

/* Registers the dialect's routes on router; NULL if one clashes. */
struct hermes *hermes_new(struct event_base *base, const struct config *cfg, const struct core *core,
			  struct router *router);
/* SIGTERM: WebSocket clients are told the server is going away. */
void hermes_shutdown(struct hermes *h);
void hermes_free(struct hermes *h);
/* A path this dialect answers (/api/v1/..., /admin/...): its errors, the
 * HTTP layer's own included, go in the envelope. */
bool hermes_owns_path(const char *path);
/* The envelope of an error the HTTP layer raises (413, 431, bad JSON, 401,
 * 404 route), as an http_error_render_fn (arg unused). */
void hermes_render_error(struct http_request *req, int status, const char *code, const char *message,
			 void *arg);

#endif
