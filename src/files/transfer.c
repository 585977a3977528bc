/* The transfer engine's object, the sandbox lookup every transfer starts with
 * (the registry's handle, then Docker's word on whether its container runs:
 * a stopped sandbox's files are still served), and the rules transfers
 * apply to paths and tar entries. */
#include "transfer_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/iojob.h"
#include "docker/engine.h"
#include "files/path.h"
#include "sandbox/registry.h"

struct xfer_lookup {
	struct files_transfer *t;
	struct registry_wait *wait;
	struct docker_call *dcall;
	xfer_lookup_fn cb;
	void *arg;
	char container[80];
};

static void lookup_got(struct sandbox_ref *ref, const struct core_error *err, void *arg);
static void lookup_inspected(struct json_object *info, bool missing, const char *err, void *arg);
static void lookup_finish(struct xfer_lookup *l, bool running, const struct core_error *fail);

struct files_transfer *files_transfer_new(struct event_base *base, struct registry *reg,
					  struct docker *docker, struct agentfs *fs,
					  const struct files_transfer_config *cfg)
{
	struct files_transfer *t = calloc(1, sizeof(*t));
	CHECK(t != NULL);
	t->base = base;
	t->reg = reg;
	t->docker = docker;
	t->fs = fs;
	t->upload_limit = cfg->upload_limit;
	t->spool_dir = strdup(cfg->spool_dir ? cfg->spool_dir : "/tmp");
	CHECK(t->spool_dir != NULL);
	t->io = iojob_worker_new(base);
	return t;
}

void files_transfer_free(struct files_transfer *t)
{
	if (!t)
		return;
	iojob_worker_free(t->io);
	free(t->spool_dir);
	free(t);
}

/* ---- the lookup ---- */

struct xfer_lookup *xfer_lookup_start(struct files_transfer *t, const char *id, xfer_lookup_fn cb, void *arg)
{
	struct xfer_lookup *l = calloc(1, sizeof(*l));
	CHECK(l != NULL);
	l->t = t;
	l->cb = cb;
	l->arg = arg;
	l->wait = registry_acquire(t->reg, id, REGISTRY_LIVE | REGISTRY_TOUCH, lookup_got, l);
	return l;
}

void xfer_lookup_cancel(struct xfer_lookup *l)
{
	if (!l)
		return;
	registry_wait_cancel(l->wait);
	if (l->dcall)
		docker_call_cancel(l->dcall);
	free(l);
}

static void lookup_finish(struct xfer_lookup *l, bool running, const struct core_error *fail)
{
	xfer_lookup_fn cb = l->cb;
	void *arg = l->arg;
	char container[80];
	snprintf(container, sizeof(container), "%s", l->container);
	free(l);
	cb(fail ? NULL : container, running, fail, arg);
}

static void lookup_got(struct sandbox_ref *ref, const struct core_error *err, void *arg)
{
	struct xfer_lookup *l = arg;
	l->wait = NULL;
	if (err) {
		lookup_finish(l, false, err);
		return;
	}
	const char *s = sandbox_ref_get(ref)->container_id;
	if (!*s || strlen(s) >= sizeof(l->container)) {
		sandbox_ref_put(ref);
		struct core_error e;
		core_error_set(&e, CORE_CONFLICT, "sandbox_not_ready", "sandbox has no container yet");
		lookup_finish(l, false, &e);
		return;
	}
	snprintf(l->container, sizeof(l->container), "%s", s);
	sandbox_ref_put(ref);
	l->dcall = docker_container_inspect(l->t->docker, l->container, lookup_inspected, l);
}

static void lookup_inspected(struct json_object *info, bool missing, const char *err, void *arg)
{
	struct xfer_lookup *l = arg;
	struct core_error e;
	l->dcall = NULL;
	if (missing) {
		core_error_set(&e, CORE_NOT_FOUND, "not_found", "the sandbox's container is gone");
		lookup_finish(l, false, &e);
		return;
	}
	if (err) {
		core_error_set(&e, CORE_UNAVAILABLE, "docker_unavailable", "%s", err);
		lookup_finish(l, false, &e);
		return;
	}
	struct json_object *state, *running;
	bool r = json_object_object_get_ex(info, "State", &state) &&
		 json_object_object_get_ex(state, "Running", &running) && json_object_get_boolean(running);
	lookup_finish(l, r, NULL);
}

/* ---- rules ---- */

char *xfer_archive_url(const char *container, const char *path)
{
	size_t cap = strlen(container) + 3 * strlen(path) + 64;
	char *url = malloc(cap);
	CHECK(url != NULL);
	size_t o = (size_t)snprintf(url, cap, "/containers/%s/archive?path=", container);
	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    strchr("-._~/", *p))
			url[o++] = (char)*p;
		else
			o += (size_t)snprintf(url + o, cap - o, "%%%02X", *p);
	}
	url[o] = '\0';
	return url;
}

int xfer_link_follow(const char *path, const char *target, char *out)
{
	char dir[FILES_PATH_MAX + 1];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		dir[1] = '\0';
	else if (slash)
		*slash = '\0';
	return files_path_resolve(dir, target, out);
}

const char *xfer_entry_refused(const struct tar_reader_entry *e)
{
	if (files_tar_name_escapes(e->name))
		return "an entry's name leaves the directory";
	if (e->type == '1' && files_tar_link_escapes(e->name, e->linkname, false))
		return "a hard link points outside the directory";
	if (e->type == '2' && files_tar_link_escapes(e->name, e->linkname, true))
		return "a symbolic link points outside the directory";
	if (e->type == '3' || e->type == '4')
		return "device files are not allowed";
	return NULL;
}
