/* Private to the transfer engine (transfer.c: the engine and the sandbox
 * lookup; transfer_archive.c: downloads and archives; transfer_upload.c: the
 * upload): what they share, and the pure rules they apply. */
#ifndef SANDBAR_FILES_TRANSFER_INTERNAL_H
#define SANDBAR_FILES_TRANSFER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "files/tar_reader.h"
#include "files/transfer.h"

struct iojob_worker;

struct files_transfer {
	struct event_base *base;
	struct registry *reg;
	struct docker *docker;
	struct agentfs *fs;
	struct iojob_worker *io; /* the spool's file I/O, off the loop */
	uint64_t upload_limit;
	char *spool_dir;
};

/* The lookup every transfer starts with: the registry's handle (live, counts
 * as activity; CONFLICT sandbox_not_ready before it has a container), then
 * Docker's inspect (NOT_FOUND once the container is gone). container is NULL
 * on failure. Called from the loop. */
struct xfer_lookup;
typedef void (*xfer_lookup_fn)(const char *container, bool running, const struct core_error *fail, void *arg);
struct xfer_lookup *xfer_lookup_start(struct files_transfer *t, const char *id, xfer_lookup_fn cb, void *arg);
/* No callback follows. NULL is fine. */
void xfer_lookup_cancel(struct xfer_lookup *l);

/* ---- pure rules (unit tested) ---- */

/* Docker's archive URL for path in container ("/containers/<c>/archive?path=<path percent-encoded>");
 * malloc'd. */
char *xfer_archive_url(const char *container, const char *path);
/* Where the symbolic link at path (normalised) pointing to target leads:
 * resolved from path's directory like the kernel would. -1 when too long. */
MUST_USE int xfer_link_follow(const char *path, const char *target, char *out);
/* Why an entry of a tar put into a directory is refused, or NULL: a name or
 * a link leaving the directory, a device file. */
const char *xfer_entry_refused(const struct tar_reader_entry *e);

#endif
