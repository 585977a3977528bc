/* What the file routes share: the sandbox lookup every transfer starts with
 * (activity bump, container id, running or not) and the error answer. */
#ifndef SANDBAR_NATIVE_TRANSFER_H
#define SANDBAR_NATIVE_TRANSFER_H

#include <stdbool.h>

#include "internal.h"

struct docker;
struct transfer_lookup;

/* container is NULL on error (status, code and message say why). */
typedef void (*transfer_lookup_fn)(const char *container, bool running, int status, const char *code,
				   const char *message, void *arg);
/* Bumps the sandbox's activity (a stopped sandbox too), reads its container
 * id, inspects the container. id must be a valid UUID. */
struct transfer_lookup *transfer_lookup_start(struct native *nat, const char *id, transfer_lookup_fn cb,
					      void *arg);
void transfer_lookup_cancel(struct transfer_lookup *l);

/* Registers GET download, GET/PUT archive (archive.c). */
MUST_USE int native_archive_routes(struct native *nat);

#define FILES_HIGH_WATERMARK (1u << 20) /* stop reading the source above this */

#endif
