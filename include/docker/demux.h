/* Docker's multiplexed stream framing: an 8-byte header (stream type, 3 zero
 * bytes, big-endian 32-bit length) before each frame of a non-TTY attach or
 * exec stream. Incremental: feed whatever bytes arrived. */
#ifndef SANDBAR_DOCKER_DEMUX_H
#define SANDBAR_DOCKER_DEMUX_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "core/check.h"

enum docker_stream_type { DOCKER_STDIN = 0, DOCKER_STDOUT = 1, DOCKER_STDERR = 2 };

struct docker_demux {
	unsigned char hdr[8];
	size_t hdr_len;
	uint32_t remaining; /* bytes left in the current frame */
	enum docker_stream_type type;
};

typedef void (*docker_demux_fn)(enum docker_stream_type type, const char *data, size_t len, void *arg);

void docker_demux_init(struct docker_demux *dm);
/* Drains in and calls fn for each piece of payload (a frame may come in several
 * pieces). -1 on a malformed header (unknown type or non-zero padding). */
MUST_USE int docker_demux_feed(struct docker_demux *dm, struct evbuffer *in, docker_demux_fn fn, void *arg);

#endif
