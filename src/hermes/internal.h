/* What the Hermes dialect's files share: its object, route registration, the
 * envelope and the one error table (REST envelope codes and JSON-RPC codes). */
#ifndef SANDBAR_HERMES_INTERNAL_H
#define SANDBAR_HERMES_INTERNAL_H

#include <stdint.h>

#include <json-c/json.h>

#include "core/check.h"
#include "core/error.h"
#include "hermes/hermes.h"
#include "sandbox/service.h"

struct hermes {
	struct event_base *base;
	const struct config *cfg;
	const struct core *core;
	struct router *router;		/* the front's: routes are registered on it */
	struct hermes_connect *connect; /* connect.c: the WebSocket route and its connections */
};

/* connect.c: GET /api/v1/sandboxes/{id}/connect, JSON-RPC over a WebSocket;
 * shutdown says "going away" to every connection, free drops them. */
struct hermes_connect *hermes_connect_new(struct hermes *h);
void hermes_connect_shutdown(struct hermes_connect *hc);
void hermes_connect_free(struct hermes_connect *hc);

/* errors.c: the one table. A core error as an HTTP status and an envelope
 * code (the same number: "atlas error 404: ..." reads well in the SDK), and
 * as a JSON-RPC error code (-32001 a missing file, -32602 bad params, ...). */
int hermes_http_status(const struct core_error *e);
int hermes_rpc_code(const struct core_error *e);
/* JSON-RPC codes that are not a core error. */
#define HERMES_RPC_PARSE_ERROR	    -32700
#define HERMES_RPC_INVALID_REQUEST  -32600
#define HERMES_RPC_METHOD_NOT_FOUND -32601
#define HERMES_RPC_INVALID_PARAMS   -32602
#define HERMES_RPC_INTERNAL	    -32603
#define HERMES_RPC_NOT_FOUND	    -32001 /* the one code the SDK reads: no such file */

/* envelope.c: {"code":0,"message":"ok","data":data,"request_id"} (data is
 * taken; NULL renders null), and an error's envelope with its status. */
void hermes_reply(struct http_request *req, struct json_object *data);
void hermes_respond_error(struct http_request *req, const struct core_error *e);

/* project.c: the request's project, X-Project-Id (any case), "default" when
 * absent or empty; NULL with e set (INVALID) when unusable. A sandbox is
 * visible to a request of project when it is that project's and neither
 * expired nor deleted; else false with e set: NOT_FOUND, as an unknown id. */
const char *hermes_request_project(struct http_request *req, struct core_error *e);
MUST_USE bool hermes_sandbox_visible(const struct sandbox *sb, const char *project, const char *id,
				     struct core_error *e);

/* Each file's routes. */
MUST_USE int hermes_rest_routes(struct hermes *h);  /* rest.c: /api/v1/sandboxes... */
MUST_USE int hermes_admin_routes(struct hermes *h); /* admin.c: /admin/pool, /admin/rolling */

/* quantity.c: a Kubernetes quantity ("500m", "2", "512Mi", "1G", "1e3";
 * Ki..Ei powers of 1024, k..E of 1000) in nano CPUs, or in bytes, rounded
 * up: 0, or -1 when it is none or does not fit 64 bits. */
MUST_USE int hermes_quantity_cpu(const char *s, size_t len, uint64_t *nano_cpus);
MUST_USE int hermes_quantity_memory(const char *s, size_t len, uint64_t *bytes);

/* body.c: the request bodies. */
#define HERMES_ENV_API		  "/api/v1/env" /* the one payload api: the sandbox's environment */
#define HERMES_LIST_LIMIT_DEFAULT 100
#define HERMES_LIST_LIMIT_MAX	  1000
#define HERMES_LIST_OFFSET_MAX	  1000000
#define HERMES_EXTEND_MAX	  86400 /* seconds, as the SDK allows */

/* What a POST on /api/v1/sandboxes means, by the keys present (spec §3). */
enum hermes_post {
	HERMES_POST_LIST,   /* no user_id, or any of status, limit, offset */
	HERMES_POST_CREATE, /* any of spec, labels, payloads, ttl_hours */
	HERMES_POST_BOTH,   /* user_id alone: create, then that user's list */
	HERMES_POST_MAX
};
enum hermes_post hermes_post_classify(struct json_object *body);

/* spec: the known fields given, as written (kept, owned: put it); cpu and
 * memory as Docker takes them (0: not given); image (in kept or the
 * PATCH's own, NULL: not given). */
struct hermes_spec {
	struct json_object *kept;
	double cpus;
	uint64_t memory;
	const char *image;
};
struct hermes_create {
	const char *user_id; /* "" when not given */
	struct hermes_spec spec;
	struct json_object *labels; /* borrowed from the body, NULL when none */
	struct json_object *env;    /* the /api/v1/env payloads merged (owned), NULL when none */
	int64_t ttl_hours;	    /* 0: SANDBAR_DEFAULT_TTL */
};
/* Each fills e and returns -1 on bad input; clear what they made either way. */
MUST_USE int hermes_create_parse(struct json_object *body, struct hermes_create *c, struct core_error *e);
void hermes_create_clear(struct hermes_create *c);
struct hermes_list {
	const char *user_id; /* NULL: any */
	unsigned statuses;   /* bits (1u << status); 0: any */
	bool none;	     /* a status no sandbox of ours has: the list is empty */
	size_t limit, offset;
};
MUST_USE int hermes_list_parse(struct json_object *body, struct hermes_list *l, struct core_error *e);
/* PATCH {"spec","image"}: at least one non-empty field, else INVALID nothing_to_update. */
MUST_USE int hermes_patch_parse(struct json_object *body, struct hermes_spec *s, struct core_error *e);
MUST_USE int hermes_seconds_parse(struct json_object *body, int64_t *seconds, struct core_error *e);
/* configure: body NULL (none) or without payloads gives env NULL (apply again). */
MUST_USE int hermes_configure_parse(struct json_object *body, struct json_object **env, struct core_error *e);

/* render.c: the core's structs as Hermes JSON. */
const char *hermes_status_name(enum sandbox_status s);
/* A Hermes status name as our statuses' bits (0 for destroying: none of
 * ours ever is); -1 for no status. */
MUST_USE int hermes_status_mask(const char *name, unsigned *mask);
/* RFC 3339 in UTC with Z, whole seconds. */
struct json_object *hermes_time_json(int64_t us);
struct json_object *hermes_info_json(const struct hermes *h, const struct sandbox *sb);
struct json_object *hermes_list_json(const struct hermes *h, const struct sandbox_result *res,
				     const struct hermes_list *l);

#endif
