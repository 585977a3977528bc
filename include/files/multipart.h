/* A streaming multipart/form-data parser (RFC 7578): fed bytes as they
 * arrive, split anywhere; part headers are parsed, part bodies are handed on
 * as they pass, never held whole. */
#ifndef SANDBAR_FILES_MULTIPART_H
#define SANDBAR_FILES_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "core/check.h"

#define MULTIPART_BOUNDARY_MAX 70
#define MULTIPART_HEADERS_MAX  8192 /* all header lines of one part */

struct multipart;

struct multipart_part {
	const char *name;     /* Content-Disposition name, "" when absent */
	const char *filename; /* filename*= (decoded) or filename=, NULL when absent; may hold NUL */
	size_t filename_len;
	const char *content_type; /* "" when absent */
	uint64_t offset;	  /* bytes of input before the part's first body byte */
};

/* Callbacks return 0 to go on, 1 (data only) to pause after this call (the
 * feed returns MULTIPART_PAUSED, call feed again to resume), -1 to fail. */
struct multipart_cbs {
	int (*part_begin)(const struct multipart_part *part, void *arg);
	int (*part_data)(const char *data, size_t len, void *arg);
	int (*part_end)(void *arg);
	/* Optional, in place of part_data: len body bytes are at the front of in;
	 * the callback removes exactly those (evbuffer_remove_buffer moves whole
	 * chains without copying them), returning as part_data does. */
	int (*part_move)(struct evbuffer *in, size_t len, void *arg);
};

enum multipart_status {
	MULTIPART_MORE = 0, /* everything fed was consumed or kept; feed more */
	MULTIPART_PAUSED,   /* a callback asked to pause; bytes are left in the buffer */
	MULTIPART_DONE,	    /* the closing delimiter passed; later bytes are discarded */
	MULTIPART_ERROR,    /* malformed input or a callback failed: see multipart_error */
};

/* The boundary parameter of a multipart/form-data Content-Type, into out
 * (MULTIPART_BOUNDARY_MAX + 1 bytes). -1 when absent or invalid. */
MUST_USE int multipart_boundary(const char *content_type, char *out);
struct multipart *multipart_new(const char *boundary, const struct multipart_cbs *cbs, void *arg);
void multipart_free(struct multipart *mp);
/* Consumes from in what it can. At the end of the input call multipart_finish. */
enum multipart_status multipart_feed(struct multipart *mp, struct evbuffer *in);
/* The input ended: MULTIPART_DONE if the closing delimiter was seen, else ERROR. */
enum multipart_status multipart_finish(struct multipart *mp);
const char *multipart_error(const struct multipart *mp);
/* Bytes of input consumed so far. */
uint64_t multipart_consumed(const struct multipart *mp);
/* Bytes the closing delimiter takes at least after the last part's body
 * ("\r\n--" boundary "--"): the least overhead after a file part that is last. */
size_t multipart_trailer_min(const struct multipart *mp);

#endif
