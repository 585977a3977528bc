/* Random bytes as Docker's event stream into the line reader, fed once whole
 * and once in pieces, which must hand out the same events and stop at the
 * same protocol error. The first byte only steers: '+' repeats the rest past
 * the line bound and ends it with a newline (so a short seed reaches the
 * overlong-line refusals), any other byte is the size of the pieces
 * (byte % 17 + 1). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "docker/events.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sum {
	size_t events;
	uint64_t hash; /* of each event's action, id, time and sandbox label */
	int rc;	       /* the last result: 0, or -1 at a protocol error */
};

static uint64_t mix(uint64_t h, const char *s)
{
	for (; s && *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h * 31 + 7;
}

static void run(const uint8_t *data, size_t size, size_t step, struct sum *s)
{
	struct docker_event_reader r;
	docker_event_reader_init(&r);
	s->hash = 14695981039346656037ULL;
	size_t off = 0;
	while (off < size && s->rc == 0) {
		size_t n = step && step < size - off ? step : size - off;
		evbuffer_add(r.in, data + off, n);
		off += n;
		struct docker_event ev;
		int rc;
		while ((rc = docker_event_next(&r, &ev)) == 1) {
			CHECK(ev.action && ev.id && ev.type && ev.time_nano > 0);
			s->events++;
			s->hash = mix(s->hash, ev.action);
			s->hash = mix(s->hash, ev.id);
			s->hash = mix(s->hash, ev.type);
			s->hash = mix(s->hash, docker_event_attr(&ev, "sandbar.sandbox"));
			s->hash = mix(s->hash, docker_event_attr(&ev, "exitCode"));
			s->hash = s->hash * 31 + (uint64_t)ev.time_nano;
		}
		if (rc < 0) {
			CHECK(r.err[0] != '\0');
			s->rc = -1;
		}
	}
	docker_event_reader_clear(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t *stretched = NULL;
	size_t step = (size_t)(data[0] % 17) + 1;
	const uint8_t *body = data + 1;
	size_t len = size - 1;
	if (data[0] == '+') {
		size_t want = DOCKER_EVENT_LINE_MAX + 8192; /* the pieces pass the bound before the newline */
		stretched = malloc(want);
		CHECK(stretched != NULL);
		for (size_t i = 0; i < want - 1; i++)
			stretched[i] = body[i % len];
		stretched[want - 1] = '\n';
		body = stretched;
		len = want;
		step = 4096;
	}
	struct sum whole = { 0 }, split = { 0 };
	run(body, len, 0, &whole);
	run(body, len, step, &split);
	CHECK(whole.events == split.events && whole.hash == split.hash && whole.rc == split.rc);
	free(stretched);
	return 0;
}
