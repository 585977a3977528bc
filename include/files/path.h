/* Paths inside a sandbox as the file API takes them: absolute, normalised,
 * never escaping, bounded; and single file names (an upload's filename). */
#ifndef SANDBAR_FILES_PATH_H
#define SANDBAR_FILES_PATH_H

#include <stdbool.h>
#include <stddef.h>

#include "core/check.h"

#define FILES_PATH_MAX 4096 /* bytes of a whole path, like Linux PATH_MAX */
#define FILES_NAME_MAX 255  /* bytes of one name, like NAME_MAX */

/* Normalises in (len bytes, may hold a NUL, which is refused) into out, which
 * must hold FILES_PATH_MAX + 1 bytes: absolute, "." and "//" collapsed, no
 * trailing '/' except for "/" itself. Refuses relative paths, ".." (also
 * percent-encoded once more, and invalid UTF-8 such as overlong dots), NUL,
 * and over-long paths or names. 0, or -1 with *why set to a static reason. */
MUST_USE int files_path_normalize(const char *in, size_t len, char *out, const char **why);
/* A plain file name: not empty, ".", ".."; no '/', NUL, invalid UTF-8; at
 * most FILES_NAME_MAX bytes. NULL when valid, else why. */
const char *files_name_check(const char *name, size_t len);
/* The last name of a normalised path ("/" for "/"). */
const char *files_path_base(const char *path);
/* dir + "/" + name into out (FILES_PATH_MAX + 1 bytes); -1 when too long. */
MUST_USE int files_path_join(const char *dir, const char *name, char *out);

/* Resolves a link target against the directory dir (normalised) the way the
 * kernel would lexically: absolute targets from "/", ".." stops at "/".
 * out holds FILES_PATH_MAX + 1 bytes; -1 when too long. */
MUST_USE int files_path_resolve(const char *dir, const char *target, char *out);
/* For a tar entry named name (relative): does it, or the link target it
 * carries (symlink when is_symlink, else a hard link named from the root),
 * reach outside the extraction directory? */
bool files_tar_name_escapes(const char *name);
bool files_tar_link_escapes(const char *name, const char *target, bool is_symlink);
#endif
