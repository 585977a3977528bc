/* Reading tar streams on the fly (ustar, PAX and GNU long names, base-256
 * sizes), as Docker's archive endpoints send them and clients upload them:
 * each entry's header is handed over before its data, and the raw bytes can
 * be passed on only once the header that precedes them was accepted. */
#ifndef SANDBAR_FILES_TAR_READER_H
#define SANDBAR_FILES_TAR_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "core/check.h"

#define TAR_READER_NAME_MAX 8192	/* a path or link name, PAX or GNU */
#define TAR_READER_META_MAX (64u << 10) /* one PAX or GNU long-name record */

struct tar_reader;

struct tar_reader_entry {
	const char *name;     /* as in the archive, PAX/GNU long names applied */
	const char *linkname; /* "" unless a link */
	char type;     /* '0' file ('\0' and '7' map to it), '1' hard link, '2' symlink, '5' dir, ... */
	uint64_t size; /* bytes of data that follow */
	uint32_t mode;
	int64_t mtime;
};

/* entry returns 0 to go on, -1 to fail. move (may be NULL) gets the entry's
 * data as it passes: it must take exactly len bytes off the front of in
 * (evbuffer_remove_buffer to where they go, or evbuffer_drain), and returns
 * 0, 1 to pause after this call, or -1. */
struct tar_reader_cbs {
	int (*entry)(const struct tar_reader_entry *e, void *arg);
	int (*move)(struct evbuffer *in, size_t len, void *arg);
};

enum tar_reader_status {
	TAR_READER_MORE = 0,
	TAR_READER_PAUSED,
	TAR_READER_DONE, /* the end blocks passed; later bytes are dropped */
	TAR_READER_ERROR,
};

struct tar_reader *tar_reader_new(const struct tar_reader_cbs *cbs, void *arg);
void tar_reader_free(struct tar_reader *r);
/* Consumes from in; when out is not NULL every byte consumed is appended to
 * it (header blocks only once entry accepted them) except the data that move
 * takes. */
enum tar_reader_status tar_reader_feed(struct tar_reader *r, struct evbuffer *in, struct evbuffer *out);
/* The input ended: DONE at an entry boundary (end blocks may be missing), else ERROR. */
enum tar_reader_status tar_reader_finish(struct tar_reader *r);
const char *tar_reader_error(const struct tar_reader *r);

#endif
