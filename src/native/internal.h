/* What the native dialect's files share: its object, route registration, the
 * plumbing from a pending core call to an HTTP answer, the renderers. */
#ifndef SANDBAR_NATIVE_INTERNAL_H
#define SANDBAR_NATIVE_INTERNAL_H

#include "commands/commands.h"
#include "http/router.h"
#include "native/native.h"
#include "sandbox/service.h"

struct agentfs;
struct files_transfer;
struct ws_hub;

struct native {
	const struct config *cfg;
	struct sandbox_service *svc;
	struct registry *reg;		      /* the sandboxes, for lookups and handles */
	struct commands *cmds;		      /* the command service */
	struct tasks *tasks;		      /* coding-agent tasks (tasks.c) */
	struct router *router;		      /* the front's: routes are registered on it */
	struct ws_hub *ws;		      /* live WebSocket connections (terminals) */
	struct agentfs *fs;		      /* the file service through the agent (files.c) */
	struct files_transfer *xfer;	      /* uploads, downloads, archives (upload.c, archive.c) */
	const struct preview_public *preview; /* the sandboxes' preview URLs */
};

/* Each file's routes. */
MUST_USE int native_sandbox_routes(struct native *nat);	 /* sandboxes.c: monza's, and ours */
MUST_USE int native_command_routes(struct native *nat);	 /* commands.c */
MUST_USE int native_terminal_routes(struct native *nat); /* terminal.c */
MUST_USE int native_upload_routes(struct native *nat);	 /* upload.c: the multipart upload */
MUST_USE int native_archive_routes(struct native *nat);	 /* archive.c: download, archive GET and PUT */
MUST_USE int native_file_routes(struct native *nat);	 /* files.c: the file API through the agent */
MUST_USE int native_pool_routes(struct native *nat);	 /* pool.c: the warm pool and its rollouts */
MUST_USE int native_task_routes(struct native *nat);	 /* tasks.c: coding-agent tasks */

/* command_spec.c: a command request's JSON body; on bad input fills fail and
 * returns -1. max_cap bounds max_output_bytes. */
MUST_USE int native_command_spec(struct json_object *body, uint64_t max_cap, struct command_spec *spec,
				 struct core_error *fail);

/* sandbox_body.c: create's and PATCH's bodies, and {"seconds"}; on bad input
 * fill e and return -1. ports: the create's extra ports, which p->ports
 * points at (on success, free it after; on failure it is NULL). */
MUST_USE int native_create_params(struct json_object *body, struct sandbox_create_params *p, int **ports,
				  struct core_error *e);
MUST_USE int native_update_params(struct json_object *body, struct sandbox_changes *c, struct core_error *e);
MUST_USE int native_seconds(struct json_object *body, int64_t *out_ms, struct core_error *e);
/* {"port","ttl_seconds"} of a preview token (ttl_seconds: an hour when left out;
 * the core checks both ranges). */
#define NATIVE_PREVIEW_TOKEN_TTL 3600
MUST_USE int native_preview_token_params(struct json_object *body, int *port, int64_t *ttl_s,
					 struct core_error *e);

/* render.c: the native JSON of the core's structs. */
struct json_object *native_sandbox_json(const struct preview_public *pub, const struct sandbox *sb);
struct json_object *native_command_json(const struct command_record *rec);
struct json_object *native_pool_json(const struct pool_status *st);
/* A minted preview token: {"token","expires_at","url"}, url the port's
 * preview URL with ?sandbar_token= (null without a preview domain). */
struct json_object *native_preview_token_json(const struct preview_public *pub,
					      const struct sandbox_result *res, int port);
struct agentfs_result;
/* The file API's answers (stat, list, mkdir, remove, move, edit, read, write). */
struct json_object *native_file_json(const struct agentfs_result *r);
/* RFC 3339, UTC, microseconds; NULL (JSON null) for 0. */
struct json_object *native_time_json(int64_t us);

/* A request waiting on the core: cancelled if the client goes away. */
struct native_pending {
	const struct native *nat;
	struct http_request *req;
	struct sandbox_call *call;
	int ok_status; /* status of a successful answer with a doc; 204 without */
	int port;      /* a preview token's */
};
struct native_pending *native_pending_new(const struct native *nat, struct http_request *req, int ok_status);
/* The sandbox_result_fn that answers p->req (arg: the native_pending). */
void native_pending_reply(const struct sandbox_result *res, void *arg);
/* errors.c: the one table from a core error to HTTP, and the native error body. */
void native_respond_error(struct http_request *req, const struct core_error *e);
/* archive.c: a transfer's failure (upload, download, archive), without the
 * sandbox's status in a conflict, as those routes have always answered; and
 * its success, {"status":"ok","path"}. */
void native_transfer_error(struct http_request *req, const struct core_error *e);
void native_transfer_ok(struct http_request *req, const char *path);

#endif
