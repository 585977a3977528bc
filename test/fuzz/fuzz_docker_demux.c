/* Random bytes through the multiplexed-stream demuxer, fed in splits taken
 * from the input itself, checked against a one-shot feed of the same bytes. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "docker/demux.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sum {
	uint64_t bytes[3];
};

static void count(enum docker_stream_type type, const char *d, size_t len, void *arg)
{
	struct sum *s = arg;
	CHECK(type <= DOCKER_STDERR);
	CHECK(len > 0 && d != NULL);
	s->bytes[type] += len;
}

static int run(const uint8_t *data, size_t size, size_t seed, struct sum *s)
{
	struct docker_demux dm;
	struct evbuffer *in = evbuffer_new();
	docker_demux_init(&dm);
	int rc = 0;
	size_t off = 0, k = 0;
	while (off < size && rc == 0) {
		size_t step = seed ? 1 + (data[k++ % size] ^ seed) % 17 : size;
		if (step > size - off)
			step = size - off;
		evbuffer_add(in, data + off, step);
		off += step;
		rc = docker_demux_feed(&dm, in, count, s);
	}
	evbuffer_free(in);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	struct sum whole = { { 0 } }, split = { { 0 } };
	int a = run(data, size, 0, &whole);
	int b = run(data, size, data[0] | 1, &split);
	CHECK(a == b);
	if (a == 0)
		CHECK(memcmp(&whole, &split, sizeof(whole)) == 0);
	return 0;
}
