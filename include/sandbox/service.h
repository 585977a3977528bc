/* The sandbox core every API dialect adapts: create, get, list, delete and
 * heartbeat sandboxes. Results come back as the rendered sandbox document (the
 * JSON text of sandbox_docs) or as a typed error that each dialect maps onto
 * its own wire format (HTTP status + error code, Hermes envelope). */
#ifndef SANDBAR_SANDBOX_SERVICE_H
#define SANDBAR_SANDBOX_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>

#include "core/check.h"
#include "core/error.h"

struct channels;
struct config;
struct docker;
struct json_object;
struct pg_pool;
struct sandbox_service;
struct template_set;

struct sandbox_result {
	struct core_error err; /* kind CORE_OK on success */
	const char *doc;       /* JSON text (a sandbox or an array), NULL when none */
	size_t doc_len;
	bool pending; /* create: answered before the sandbox was ready (wait=false) */
};

/* Called once, from the loop; the result is valid during the call only. */
typedef void (*sandbox_result_fn)(const struct sandbox_result *res, void *arg);

struct sandbox_call; /* a pending call; cancel it when the caller goes away */

/* channels and the agent binary (agent_len bytes, kept by the caller) outlive the service. */
struct sandbox_service *sandbox_service_new(struct event_base *base, const struct config *cfg,
					    struct pg_pool *pg, struct docker *docker,
					    struct template_set *templates, struct channels *channels,
					    const void *agent_bin, size_t agent_len);
void sandbox_service_free(struct sandbox_service *svc);
/* gone(id, arg) when a sandbox goes away on this instance (deleted, expired,
 * failed), as its agent channel is dropped: for caches of other services. */
void sandbox_service_on_gone(struct sandbox_service *svc, void (*gone)(const char *id, void *arg), void *arg);
/* Starts the reconciler once, then the reaper. done(rc) after the reconcile pass. */
void sandbox_service_start(struct sandbox_service *svc, void (*done)(int rc, void *arg), void *arg);

struct sandbox_create_params {
	const char *name;	      /* NULL: "sandbox-" + template */
	const char *template_name;    /* NULL: "go" */
	struct json_object *env_vars; /* object of strings, may be NULL (borrowed) */
	bool wait;		      /* false: answer as soon as the row exists */
};

struct sandbox_call *sandbox_create(struct sandbox_service *svc, const struct sandbox_create_params *p,
				    sandbox_result_fn cb, void *arg);
struct sandbox_call *sandbox_get(struct sandbox_service *svc, const char *id, sandbox_result_fn cb,
				 void *arg);
struct sandbox_call *sandbox_list(struct sandbox_service *svc, sandbox_result_fn cb, void *arg);
struct sandbox_call *sandbox_delete(struct sandbox_service *svc, const char *id, sandbox_result_fn cb,
				    void *arg);
struct sandbox_call *sandbox_heartbeat(struct sandbox_service *svc, const char *id, sandbox_result_fn cb,
				       void *arg);
/* The callback will not be called. Work already started (a create) goes on. */
void sandbox_call_cancel(struct sandbox_call *call);

/* The Docker client the service uses (for the file API's archive streams). */
struct docker *sandbox_service_docker(const struct sandbox_service *svc);
/* Its PostgreSQL pool and agent channels (for the file API through the agent). */
struct pg_pool *sandbox_service_pg(const struct sandbox_service *svc);
struct channels *sandbox_service_channels(const struct sandbox_service *svc);

/* A canonical lowercase UUID? */
bool sandbox_id_valid(const char *id);

#endif
