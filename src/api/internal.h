/* What the API files share: the api object, route registration per dialect,
 * and the plumbing from a pending core call to an HTTP answer. */
#ifndef SANDBAR_API_INTERNAL_H
#define SANDBAR_API_INTERNAL_H

#include "api/api.h"
#include "http/router.h"
#include "commands/commands.h"
#include "sandbox/service.h"

struct agentfs;
struct iojob_worker;
struct ws_hub;

struct api {
	const struct config *cfg;
	struct sandbox_service *svc;
	struct registry *reg; /* the sandboxes, for lookups and handles */
	struct router *router;
	char **tokens;		 /* NULL-terminated, NULL when auth is off */
	struct commands *cmds;	 /* the command service (api_set_commands) */
	struct ws_hub *ws;	 /* live WebSocket connections (terminals) */
	struct agentfs *fs;	 /* the file service through the agent (files_native.c) */
	struct iojob_worker *io; /* the upload spool's file I/O, off the loop (files.c) */
};

/* The native (monza-compatible) routes. */
MUST_USE int api_native_routes(struct api *api);
/* The native command routes (src/api/commands.c). */
MUST_USE int api_command_routes(struct api *api);
/* The interactive terminal over a WebSocket (src/api/terminal.c). */
MUST_USE int api_terminal_routes(struct api *api);

/* The file routes (files.c, files_archive.c). */
MUST_USE int api_files_routes(struct api *api);
/* The native file API through the agent (files_native.c); api_free frees api->fs. */
MUST_USE int api_files_native_routes(struct api *api, struct event_base *base);

/* render.c: the native JSON of the core's structs. */
struct json_object *api_sandbox_json(const struct sandbox *sb);
struct json_object *api_command_json(const struct command_record *rec);
struct agentfs_result;
/* The file API's answers (stat, list, mkdir, remove, move, edit, read, write). */
struct json_object *api_file_json(const struct agentfs_result *r);
/* RFC 3339, UTC, microseconds; NULL (JSON null) for 0. */
struct json_object *api_time_json(int64_t us);

/* A request waiting on the core: cancelled if the client goes away. */
struct api_pending {
	struct http_request *req;
	struct sandbox_call *call;
	int ok_status; /* status of a successful answer with a doc; 204 without */
};
struct api_pending *api_pending_new(struct http_request *req, int ok_status);
/* The sandbox_result_fn that answers p->req (arg: the api_pending). */
void api_pending_reply(const struct sandbox_result *res, void *arg);
/* errors.c: the one table from a core error to HTTP, and the native error body. */
int api_error_status(const struct core_error *e);
void api_respond_error(struct http_request *req, const struct core_error *e);

#endif
