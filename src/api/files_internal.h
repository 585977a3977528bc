/* What the file routes share: the sandbox lookup every transfer starts with
 * (activity bump, container id, running or not) and the error answer. */
#ifndef SANDBAR_API_FILES_INTERNAL_H
#define SANDBAR_API_FILES_INTERNAL_H

#include <stdbool.h>

#include "internal.h"

struct docker;
struct files_lookup;

/* container is NULL on error (status, code and message say why). */
typedef void (*files_lookup_fn)(const char *container, bool running, int status, const char *code,
				const char *message, void *arg);
/* Bumps the sandbox's activity (a stopped sandbox too), reads its container
 * id, inspects the container. id must be a valid UUID. */
struct files_lookup *files_lookup_start(struct api *api, const char *id, files_lookup_fn cb, void *arg);
void files_lookup_cancel(struct files_lookup *l);

/* Registers GET download, GET/PUT archive (files_archive.c). */
MUST_USE int api_files_archive_routes(struct api *api);

#define FILES_HIGH_WATERMARK (1u << 20) /* stop reading the source above this */

#endif
