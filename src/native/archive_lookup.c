/* The sandbox lookup the archive routes share: the registry's handle (404
 * apart from 409 for a sandbox no longer live, and activity), then Docker's
 * word on whether its container runs (a stopped sandbox's files are still
 * served). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "docker/engine.h"
#include "transfer.h"

struct transfer_lookup {
	struct native *nat;
	struct registry_wait *wait;
	struct docker_call *dcall;
	transfer_lookup_fn cb;
	void *arg;
	char container[80];
};

static void lookup_got(struct sandbox_ref *ref, const struct core_error *err, void *arg);
static void lookup_inspected(struct json_object *info, bool missing, const char *err, void *arg);
static void lookup_finish(struct transfer_lookup *l, bool running, int status, const char *code,
			  const char *msg);

struct transfer_lookup *transfer_lookup_start(struct native *nat, const char *id, transfer_lookup_fn cb,
					      void *arg)
{
	struct transfer_lookup *l = calloc(1, sizeof(*l));
	CHECK(l != NULL);
	l->nat = nat;
	l->cb = cb;
	l->arg = arg;
	l->wait = registry_acquire(nat->reg, id, REGISTRY_LIVE | REGISTRY_TOUCH, lookup_got, l);
	return l;
}

void transfer_lookup_cancel(struct transfer_lookup *l)
{
	if (!l)
		return;
	registry_wait_cancel(l->wait);
	if (l->dcall)
		docker_call_cancel(l->dcall);
	free(l);
}

static void lookup_finish(struct transfer_lookup *l, bool running, int status, const char *code,
			  const char *msg)
{
	transfer_lookup_fn cb = l->cb;
	void *arg = l->arg;
	char container[80];
	snprintf(container, sizeof(container), "%s", l->container);
	free(l);
	cb(status ? NULL : container, running, status, code, msg, arg);
}

static void lookup_got(struct sandbox_ref *ref, const struct core_error *err, void *arg)
{
	struct transfer_lookup *l = arg;
	l->wait = NULL;
	if (err) {
		lookup_finish(l, false, native_error_status(err), err->code, err->message);
		return;
	}
	const char *s = sandbox_ref_get(ref)->container_id;
	if (!*s || strlen(s) >= sizeof(l->container)) {
		sandbox_ref_put(ref);
		lookup_finish(l, false, 409, "sandbox_not_ready", "sandbox has no container yet");
		return;
	}
	snprintf(l->container, sizeof(l->container), "%s", s);
	sandbox_ref_put(ref);
	l->dcall = docker_container_inspect(sandbox_service_docker(l->nat->svc), l->container,
					    lookup_inspected, l);
}

static void lookup_inspected(struct json_object *info, bool missing, const char *err, void *arg)
{
	struct transfer_lookup *l = arg;
	l->dcall = NULL;
	if (missing) {
		lookup_finish(l, false, 404, "not_found", "the sandbox's container is gone");
		return;
	}
	if (err) {
		lookup_finish(l, false, 503, "docker_unavailable", err);
		return;
	}
	struct json_object *state, *running;
	bool r = json_object_object_get_ex(info, "State", &state) &&
		 json_object_object_get_ex(state, "Running", &running) && json_object_get_boolean(running);
	lookup_finish(l, r, 0, NULL, NULL);
}
