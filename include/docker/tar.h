/* Writing tar streams on the fly (ustar headers, PAX records for long names
 * and large sizes), as Docker's /build and archive endpoints take them. */
#ifndef SANDBAR_DOCKER_TAR_H
#define SANDBAR_DOCKER_TAR_H

#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <event2/buffer.h>

#include "core/check.h"

enum tar_type { TAR_FILE = '0', TAR_SYMLINK = '2', TAR_DIR = '5' };

struct tar_entry {
	const char *name;     /* relative path, '/' separated */
	const char *linkname; /* for TAR_SYMLINK */
	enum tar_type type;
	uint64_t size;
	mode_t mode;
	time_t mtime;
	uid_t uid;
	gid_t gid;
};

/* Appends the header block(s) for e to out. -1 on an invalid entry. */
MUST_USE int tar_write_header(struct evbuffer *out, const struct tar_entry *e);
/* Appends the zero padding after size bytes of file data. */
void tar_write_padding(struct evbuffer *out, uint64_t size);
/* Appends the two zero blocks that end an archive. */
void tar_write_end(struct evbuffer *out);

#endif
