/* Docker's multiplexed stream framing, decoded incrementally: headers may be
 * split across reads and payloads arrive in as many pieces as the socket gives. */
#include "docker/demux.h"

#include <string.h>

void docker_demux_init(struct docker_demux *dm)
{
	memset(dm, 0, sizeof(*dm));
}

int docker_demux_feed(struct docker_demux *dm, struct evbuffer *in, docker_demux_fn fn, void *arg)
{
	for (;;) {
		if (dm->remaining == 0) {
			size_t avail = evbuffer_get_length(in);
			if (avail == 0)
				return 0;
			size_t want = sizeof(dm->hdr) - dm->hdr_len;
			size_t n = avail < want ? avail : want;
			evbuffer_remove(in, dm->hdr + dm->hdr_len, n);
			dm->hdr_len += n;
			if (dm->hdr_len < sizeof(dm->hdr))
				return 0;
			dm->hdr_len = 0;
			if (dm->hdr[0] > DOCKER_STDERR || dm->hdr[1] || dm->hdr[2] || dm->hdr[3])
				return -1;
			dm->type = (enum docker_stream_type)dm->hdr[0];
			dm->remaining = (uint32_t)dm->hdr[4] << 24 | (uint32_t)dm->hdr[5] << 16 |
					(uint32_t)dm->hdr[6] << 8 | (uint32_t)dm->hdr[7];
			continue;
		}
		/* Hand out payload straight from the buffer's chunks: no copy. */
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			return 0;
		size_t n = v.iov_len < dm->remaining ? v.iov_len : dm->remaining;
		fn(dm->type, v.iov_base, n, arg);
		evbuffer_drain(in, n);
		dm->remaining -= (uint32_t)n;
	}
}
