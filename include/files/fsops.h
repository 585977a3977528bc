/* The few file operations an upload needs inside the sandbox beyond Docker's
 * archive API (put a finished temporary in place, or throw it away) through a
 * Docker exec: the fallback when the agent cannot (agentfs_upload_commit). */
#ifndef SANDBAR_FILES_FSOPS_H
#define SANDBAR_FILES_FSOPS_H

#include <stdint.h>

#include "docker/engine.h"

/* Truncates tmp to size bytes and renames it over dst (atomic in one
 * directory). err NULL on success. Cancel the returned call to drop cb. */
struct docker_call *files_fs_commit(struct docker *d, const char *container, const char *tmp, const char *dst,
				    uint64_t size, docker_done_fn cb, void *arg);
/* Removes tmp if it exists. */
struct docker_call *files_fs_discard(struct docker *d, const char *container, const char *tmp,
				     docker_done_fn cb, void *arg);

#endif
