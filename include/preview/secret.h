/* The server's preview secret, which signs private previews' tokens: from
 * SANDBAR_PREVIEW_SECRET, else 32 random bytes kept in the data folder.
 * Blocking I/O: start-up only, before the loop. */
#ifndef SANDBAR_PREVIEW_SECRET_H
#define SANDBAR_PREVIEW_SECRET_H

#include <stddef.h>

#include "core/check.h"
#include "preview/token.h"

#define PREVIEW_SECRET_FILE "preview.secret"

/* configured: SANDBAR_PREVIEW_SECRET (NULL or "": unset), its key the
 * SHA-256 of the string. Otherwise <data_dir>/preview.secret is read, or
 * made (data_dir 0700 and the file 0600, written whole before it gets its
 * name, so instances starting together agree on one). 0, or -1 with err. */
MUST_USE int preview_secret_load(struct preview_secret *out, const char *configured, const char *data_dir,
				 char *err, size_t errcap);

#endif
