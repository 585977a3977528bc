/* The native dialect: monza's routes and ours (sandboxes, commands and their
 * event streams, the terminal, files and archives) on the one core. It parses
 * requests, calls the core and renders the core's structs and errors as
 * JSON; it holds no SQL and makes no Docker call: file transfers stream
 * between the HTTP request and the files core's transfer engine. */
#ifndef SANDBAR_NATIVE_NATIVE_H
#define SANDBAR_NATIVE_NATIVE_H

#include <event2/event.h>

#include "api/core.h"

struct agentfs;
struct commands;
struct config;
struct files_transfer;
struct http_request;
struct native;
struct registry;
struct router;
struct sandbox_service;

/* Registers the dialect's routes on router; NULL if one clashes. */
struct native *native_new(struct event_base *base, const struct config *cfg, const struct core *core,
			  struct router *router);
/* SIGTERM: WebSocket clients are told the server is going away (1001). */
void native_shutdown(struct native *nat);
void native_free(struct native *nat);
/* The dialect's error answer ({"error":{"code","message"}}), as an
 * http_error_render_fn (arg unused). */
void native_render_error(struct http_request *req, int status, const char *code, const char *message,
			 void *arg);

#endif
