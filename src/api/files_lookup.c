/* The sandbox lookup the archive routes share: the heartbeat (activity, and
 * 404 apart from 409), the row for its container, and Docker's word on
 * whether that container runs (a stopped sandbox's files are still served). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "docker/engine.h"
#include "files_internal.h"

struct files_lookup {
	struct api *api;
	struct sandbox_call *scall;
	struct docker_call *dcall;
	files_lookup_fn cb;
	void *arg;
	char id[40];
	char container[80];
};

static void lookup_touched(const struct sandbox_result *res, void *arg);
static void lookup_got(const struct sandbox_result *res, void *arg);
static void lookup_inspected(struct json_object *info, bool missing, const char *err, void *arg);
static void lookup_finish(struct files_lookup *l, bool running, int status, const char *code,
			  const char *msg);

struct files_lookup *files_lookup_start(struct api *api, const char *id, files_lookup_fn cb, void *arg)
{
	struct files_lookup *l = calloc(1, sizeof(*l));
	CHECK(l != NULL);
	l->api = api;
	l->cb = cb;
	l->arg = arg;
	snprintf(l->id, sizeof(l->id), "%s", id);
	/* the heartbeat is the activity bump, and tells unknown (404) from gone (409) */
	l->scall = sandbox_heartbeat(api->svc, l->id, lookup_touched, l);
	return l;
}

void files_lookup_cancel(struct files_lookup *l)
{
	if (!l)
		return;
	sandbox_call_cancel(l->scall);
	if (l->dcall)
		docker_call_cancel(l->dcall);
	free(l);
}

static void lookup_finish(struct files_lookup *l, bool running, int status, const char *code, const char *msg)
{
	files_lookup_fn cb = l->cb;
	void *arg = l->arg;
	char container[80];
	snprintf(container, sizeof(container), "%s", l->container);
	free(l);
	cb(status ? NULL : container, running, status, code, msg, arg);
}

static void lookup_touched(const struct sandbox_result *res, void *arg)
{
	struct files_lookup *l = arg;
	l->scall = NULL;
	if (res->err.kind != CORE_OK) {
		lookup_finish(l, false, api_error_status(&res->err), res->err.code, res->err.message);
		return;
	}
	l->scall = sandbox_get(l->api->svc, l->id, lookup_got, l);
}

static void lookup_got(const struct sandbox_result *res, void *arg)
{
	struct files_lookup *l = arg;
	l->scall = NULL;
	if (res->err.kind != CORE_OK) {
		lookup_finish(l, false, api_error_status(&res->err), res->err.code, res->err.message);
		return;
	}
	struct json_object *doc = json_tokener_parse(res->doc);
	struct json_object *cid = NULL;
	const char *s = NULL;
	if (doc && json_object_object_get_ex(doc, "container_id", &cid) &&
	    json_object_is_type(cid, json_type_string))
		s = json_object_get_string(cid);
	if (!s || !*s || strlen(s) >= sizeof(l->container)) {
		json_object_put(doc);
		lookup_finish(l, false, 409, "sandbox_not_ready", "sandbox has no container yet");
		return;
	}
	snprintf(l->container, sizeof(l->container), "%s", s);
	json_object_put(doc);
	l->dcall = docker_container_inspect(sandbox_service_docker(l->api->svc), l->container,
					    lookup_inspected, l);
}

static void lookup_inspected(struct json_object *info, bool missing, const char *err, void *arg)
{
	struct files_lookup *l = arg;
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
