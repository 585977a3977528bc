/* What a downloaded file is called and what it is: Content-Type from its
 * first bytes (then its extension), Content-Disposition quoted safely. */
#ifndef SANDBAR_FILES_SNIFF_H
#define SANDBAR_FILES_SNIFF_H

#include <stddef.h>

#define FILES_SNIFF_BYTES 512

/* A static MIME type for a file named name whose first n bytes are head. */
const char *files_content_type(const char *name, const char *head, size_t n);
/* `attachment; filename="<base>"`, with '"', '\\' and control bytes replaced,
 * non-ASCII replaced by '_' in filename= and given exactly in filename*=UTF-8''.
 * out holds at least 4 * strlen(base) + 64 bytes. */
void files_content_disposition(const char *base, char *out, size_t cap);

#endif
