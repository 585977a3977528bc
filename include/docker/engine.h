/* The Docker Engine operations the control plane uses, on top of client.h:
 * version check, the host's resources (/info), containers, volumes, images
 * (build from a context folder), and running a command to completion through
 * an exec. */
#ifndef SANDBAR_DOCKER_ENGINE_H
#define SANDBAR_DOCKER_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/check.h"
#include "docker/client.h"

struct json_object;

/* err == NULL on success. Called once, from the loop. */
typedef void (*docker_done_fn)(const char *err, void *arg);

/* GET /version: err unless ApiVersion >= 1.41. version is Docker's ApiVersion. */
typedef void (*docker_version_fn)(const char *version, const char *err, void *arg);
struct docker_call *docker_version_check(struct docker *d, docker_version_fn cb, void *arg);

/* GET /info: what the Docker host has. info is NULL when err is set. */
struct docker_info {
	uint64_t mem_total; /* MemTotal: the host's memory, bytes (> 0) */
	/* Runtimes: an object keyed by runtime name (NULL when Docker sent none)
	 * and DefaultRuntime ("" when none), both valid during the callback only */
	struct json_object *runtimes;
	const char *default_runtime;
};
typedef void (*docker_info_fn)(const struct docker_info *info, const char *err, void *arg);
struct docker_call *docker_info(struct docker *d, docker_info_fn cb, void *arg);

/* POST /containers/create?name=: spec is the Engine's create body (taken).
 * id is the new container id. not_found is true when the image is missing. */
typedef void (*docker_created_fn)(const char *id, const char *err, void *arg);
struct docker_call *docker_container_create(struct docker *d, const char *name, struct json_object *spec,
					    docker_created_fn cb, void *arg);
struct docker_call *docker_container_start(struct docker *d, const char *id, docker_done_fn cb, void *arg);
/* timeout_s: seconds before SIGKILL. A stopped container is not an error. */
struct docker_call *docker_container_stop(struct docker *d, const char *id, int timeout_s, docker_done_fn cb,
					  void *arg);
/* POST /containers/{id}/update: memory (bytes, swap the same) and CPUs
 * (nano_cpus) as they are; 0 leaves one as it is. Works on a stopped
 * container too; the limits stay across stop and start. */
struct docker_call *docker_container_update(struct docker *d, const char *id, uint64_t memory,
					    int64_t nano_cpus, docker_done_fn cb, void *arg);
/* Force-removes with its anonymous volumes. A missing container is not an error. */
struct docker_call *docker_container_remove(struct docker *d, const char *id, docker_done_fn cb, void *arg);
/* GET /containers/{id}/json. info is Docker's JSON (valid during the callback);
 * missing is true (and err NULL, info NULL) when there is no such container. */
typedef void (*docker_inspect_fn)(struct json_object *info, bool missing, const char *err, void *arg);
struct docker_call *docker_container_inspect(struct docker *d, const char *id, docker_inspect_fn cb,
					     void *arg);
/* GET /containers/json?all=1 filtered by label ("sandbar.managed=true").
 * list is Docker's array (valid during the callback). */
typedef void (*docker_list_fn)(struct json_object *list, const char *err, void *arg);
struct docker_call *docker_container_list(struct docker *d, const char *label, docker_list_fn cb, void *arg);

/* A bridge network with inter-container traffic off (enable_icc=false),
 * labels an object of strings (consumed); one that already has the name
 * (409) counts as made. */
struct docker_call *docker_network_create(struct docker *d, const char *name, struct json_object *labels,
					  docker_done_fn cb, void *arg);

/* Named volumes (made by container creates). Removing a missing one is not an error. */
struct docker_call *docker_volume_remove(struct docker *d, const char *name, docker_done_fn cb, void *arg);
/* volumes: the array of Docker's volume objects (never NULL without err). */
typedef void (*docker_volume_list_fn)(struct json_object *volumes, const char *err, void *arg);
struct docker_call *docker_volume_list(struct docker *d, const char *label, docker_volume_list_fn cb,
				       void *arg);

/* GET /images/{name}/json: exists false (err NULL) when absent. */
typedef void (*docker_exists_fn)(bool exists, const char *err, void *arg);
struct docker_call *docker_image_exists(struct docker *d, const char *name, docker_exists_fn cb, void *arg);

/* GET /images/{name}/json with the image's JSON (Config.Entrypoint, Config.Cmd,
 * ...) like docker_container_inspect; missing when there is no such image. */
struct docker_call *docker_image_inspect(struct docker *d, const char *name, docker_inspect_fn cb, void *arg);

/* GET /images/json filtered by label (like docker_container_list). */
struct docker_call *docker_image_list(struct docker *d, const char *label, docker_list_fn cb, void *arg);
/* DELETE /images/{name} (not forced: an image a container uses is refused
 * with a conflict). Removing a missing one is not an error. */
struct docker_call *docker_image_remove(struct docker *d, const char *name, docker_done_fn cb, void *arg);

/* POST /build with the folder context_dir streamed as a tar, tagged tag.
 * dockerfile is relative to context_dir; buildargs a JSON object of strings
 * (taken, may be NULL); target may be NULL. On a failed build err holds
 * Docker's error and log the tail of the build output (up to 8 KiB). */
struct docker_build_opts {
	const char *context_dir;
	const char *dockerfile;
	const char *tag;
	struct json_object *buildargs;
	const char *target;
	struct json_object *labels; /* taken, may be NULL */
};
typedef void (*docker_build_fn)(const char *err, const char *log, void *arg);
struct docker_call *docker_image_build(struct docker *d, const struct docker_build_opts *opts,
				       docker_build_fn cb, void *arg);

/* Runs argv (a JSON array of strings, taken) in a running container through an
 * exec, collecting stdout and stderr interleaved up to output_cap bytes (the
 * rest is counted and dropped), then the exit code. env: JSON array of
 * "K=V" strings (taken, may be NULL); user and workdir may be NULL. */
struct docker_exec_opts {
	struct json_object *argv;
	struct json_object *env;
	const char *user;
	const char *workdir;
	size_t output_cap;
};
typedef void (*docker_exec_fn)(int exit_code, const char *output, size_t len, bool truncated, const char *err,
			       void *arg);
struct docker_call *docker_exec_run(struct docker *d, const char *container,
				    const struct docker_exec_opts *opts, docker_exec_fn cb, void *arg);

#endif
