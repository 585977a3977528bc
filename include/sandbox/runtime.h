/* The container runtimes a sandbox may run under: Docker's default (runc) and
 * gVisor (runsc, an opt-in user-space kernel), which the operator enables with
 * SANDBAR_RUNTIMES and registers with dockerd (README, "gVisor"). */
#ifndef SANDBAR_SANDBOX_RUNTIME_H
#define SANDBAR_SANDBOX_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>

#include "core/check.h"

enum sandbox_runtime {
	SANDBOX_RUNTIME_RUNC,	/* Docker's default runtime: no HostConfig.Runtime */
	SANDBOX_RUNTIME_GVISOR, /* runsc, registered with dockerd as "sandbar-gvisor" */
	SANDBOX_RUNTIME_MAX
};

#define SANDBOX_RUNTIME_DOCKER_MAX 64 /* bytes of a Docker runtime name, NUL included */

const char *sandbox_runtime_name(enum sandbox_runtime r);
/* 0, or -1 for a name that is no runtime. */
MUST_USE int sandbox_runtime_parse(const char *name, enum sandbox_runtime *out);

/* The runtimes enabled (SANDBAR_RUNTIMES) and the Docker runtime each one is. */
struct sandbox_runtimes {
	bool enabled[SANDBOX_RUNTIME_MAX];			      /* runc always */
	char docker[SANDBOX_RUNTIME_MAX][SANDBOX_RUNTIME_DOCKER_MAX]; /* "" for runc: Docker's default */
};

/* SANDBAR_RUNTIMES: comma-separated names, each optionally `=docker-runtime`
 * ("gvisor", "gvisor=runsc"); NULL or "" enables runc alone. -1 with a
 * one-line reason in err. */
MUST_USE int sandbox_runtimes_parse(const char *spec, struct sandbox_runtimes *out, char *err, size_t errcap);
/* The Docker runtime to name in HostConfig.Runtime, or NULL for Docker's default. */
const char *sandbox_runtimes_docker(const struct sandbox_runtimes *rt, enum sandbox_runtime r);

#endif
