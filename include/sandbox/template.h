/* Sandbox templates: a folder under DEVCONTAINERS_PATH holding a
 * devcontainer.json. Loaded and validated at start-up; the fields we use are
 * parsed into struct template, the whole document is kept as JSON. */
#ifndef SANDBAR_SANDBOX_TEMPLATE_H
#define SANDBAR_SANDBOX_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/check.h"
#include "sandbox/runtime.h"

struct json_object;

struct template_mount {
	enum { MOUNT_VOLUME, MOUNT_TMPFS, MOUNT_BIND } type;
	char *source; /* volume name (MOUNT_VOLUME), host path (MOUNT_BIND), NULL for tmpfs */
	char *target;
	bool readonly;
};

struct template_policy {
	bool allow_privileged;
	bool allow_cap_add;
	bool allow_bind_mounts;
	bool runtimes[SANDBOX_RUNTIME_MAX]; /* SANDBAR_RUNTIMES (runc is always allowed) */
};

struct template
{
	char *name;		    /* folder name */
	char *dir;		    /* absolute path of the folder */
	struct json_object *config; /* the whole devcontainer.json (owned) */

	/* image: exactly one of image / build_dockerfile is set */
	char *image;
	char *build_dockerfile;		/* path relative to build_context */
	char *build_context;		/* absolute path */
	struct json_object *build_args; /* object of strings or NULL (owned) */
	char *build_target;
	char *build_tag; /* "sandbar/tpl-<name>:<sha256 of context + Dockerfile + args + target, 16 hex>" */

	char **container_env; /* "K=V" strings, NULL terminated (containerEnv) */
	char **remote_env;    /* "K=V" strings, NULL terminated (remoteEnv) */
	int *ports;	      /* forwardPorts + appPort, deduplicated, in order */
	size_t nports;
	char *workspace_folder; /* default "/workspace" */
	struct template_mount *mounts;
	size_t nmounts;
	char *container_user;		 /* may be NULL */
	char *remote_user;		 /* may be NULL */
	struct json_object *post_create; /* string or array (owned), or NULL */
	struct json_object *post_start;	 /* string or array (owned), or NULL */
	bool init;
	bool override_command; /* default true: keep the container alive with our own command */
	double host_cpus;      /* hostRequirements.cpus, 0 when unset */
	uint64_t host_memory;  /* hostRequirements.memory in bytes, 0 when unset */
	bool privileged;
	char **cap_add; /* NULL terminated, may be NULL */
	/* customizations.sandbar.runtime: what its sandboxes run under unless a
	 * create asks otherwise (runc when unset) */
	enum sandbox_runtime runtime;
};

struct template_set;

/* A plain template name: [A-Za-z0-9._-], 1..64 chars, not "." or "..". */
bool template_name_valid(const char *name);

/* Parses one devcontainer.json text (dir is the template's folder, used to
 * resolve build paths). Refuses privileged / capAdd / bind mounts, and a
 * runtime other than runc, unless the policy allows them. NULL with a reason in err. */
struct template *template_parse(const char *name, const char *dir, const char *text, size_t len,
				const struct template_policy *policy, char *err, size_t errcap);
void template_free(struct template *t);
/* Sets t->build_tag from t->build_dockerfile, t->build_context (every file
 * below it), t->build_args and t->build_target; refuses a context or
 * Dockerfile that resolves (through symlinks) outside t->dir. Reads files, so
 * start-up only; template_parse calls it. -1 with a reason in err. */
MUST_USE int template_build_tag(struct template *t, char *err, size_t errcap);

/* Loads every folder of root that holds a devcontainer.json (start-up, may
 * block). A template that fails to load is logged and skipped. */
struct template_set *template_set_load(const char *root, const struct template_policy *policy);
const struct template *template_set_find(const struct template_set *set, const char *name);
size_t template_set_count(const struct template_set *set);
/* The i-th template in name order, NULL past the end. */
const struct template *template_set_at(const struct template_set *set, size_t i);
void template_set_free(struct template_set *set);

#endif
