/* Random bytes through the streaming multipart parser, fed whole and in
 * splits taken from the input, with pauses, and through the buffer-moving
 * callback: all feeds must agree. The first line also goes through
 * multipart_boundary as a Content-Type value: when it names a boundary, the
 * input (that line then a preamble) is parsed with it, else with "bnd". A
 * part named "refuse" is refused at its start, one named "refuse-end" at its end. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/check.h"
#include "files/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sum {
	uint64_t parts, bytes, ends, hash;
	int calls;
	bool refuse_end;
};

static int on_begin(const struct multipart_part *p, void *arg)
{
	struct sum *s = arg;
	s->parts++;
	CHECK(p->name != NULL && p->content_type != NULL);
	if (p->filename)
		s->hash = s->hash * 31 + p->filename_len;
	s->refuse_end = strcmp(p->name, "refuse-end") == 0;
	return strcmp(p->name, "refuse") == 0 ? -1 : 0;
}

static int on_data(const char *d, size_t n, void *arg)
{
	struct sum *s = arg;
	CHECK(n > 0);
	s->bytes += n;
	for (size_t i = 0; i < n; i++)
		s->hash = s->hash * 131 + (unsigned char)d[i];
	return ++s->calls % 3 == 0 ? 1 : 0;
}

/* The same through the buffer-moving callback, the one uploads use. */
static int on_move(struct evbuffer *in, size_t n, void *arg)
{
	char buf[512];
	int rc = 0;
	while (n > 0) {
		size_t k = n < sizeof(buf) ? n : sizeof(buf);
		CHECK(evbuffer_remove(in, buf, k) == (int)k);
		struct sum *s = arg;
		int calls = s->calls;
		rc = on_data(buf, k, arg);
		s->calls = calls;
		n -= k;
	}
	struct sum *s = arg;
	return ++s->calls % 3 == 0 ? 1 : rc;
}

static int on_end(void *arg)
{
	struct sum *s = arg;
	s->ends++;
	return s->refuse_end ? -1 : 0;
}

/* The boundary the first line names as a Content-Type, else "bnd". */
static void boundary_of(const uint8_t *data, size_t size, char *out)
{
	char line[512];
	size_t n = 0;
	while (n < size && n < sizeof(line) - 1 && data[n] != '\r' && data[n] != '\n') {
		line[n] = (char)data[n];
		n++;
	}
	line[n] = '\0';
	if (multipart_boundary(line, out) == 0) {
		size_t len = strlen(out);
		CHECK(len > 0 && len <= MULTIPART_BOUNDARY_MAX);
		for (size_t i = 0; i < len; i++)
			CHECK(out[i] >= 0x20 && out[i] <= 0x7e);
	} else {
		strcpy(out, "bnd");
	}
}

static enum multipart_status run(const char *boundary, const uint8_t *data, size_t size, size_t seed,
				 bool move, struct sum *s)
{
	static const struct multipart_cbs cbs = { .part_begin = on_begin,
						  .part_data = on_data,
						  .part_end = on_end };
	static const struct multipart_cbs mcbs = { .part_begin = on_begin,
						   .part_move = on_move,
						   .part_end = on_end };
	struct multipart *mp = multipart_new(boundary, move ? &mcbs : &cbs, s);
	struct evbuffer *in = evbuffer_new();
	enum multipart_status st = MULTIPART_MORE;
	size_t off = 0, k = 0;
	while (off < size && st != MULTIPART_ERROR) {
		size_t step = seed ? 1 + (data[k++ % size] ^ seed) % 23 : size;
		if (step > size - off)
			step = size - off;
		evbuffer_add(in, data + off, step);
		off += step;
		do
			st = multipart_feed(mp, in);
		while (st == MULTIPART_PAUSED);
	}
	if (st != MULTIPART_ERROR)
		st = multipart_finish(mp);
	evbuffer_free(in);
	multipart_free(mp);
	return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	char boundary[MULTIPART_BOUNDARY_MAX + 1];
	boundary_of(data, size, boundary);
	struct sum whole = { 0 }, split = { 0 }, moved = { 0 };
	enum multipart_status a = run(boundary, data, size, 0, false, &whole);
	enum multipart_status b = run(boundary, data, size, data[0] | 1, false, &split);
	enum multipart_status c = run(boundary, data, size, data[0] | 1, true, &moved);
	CHECK(a == b && a == c);
	if (a == MULTIPART_DONE) {
		CHECK(whole.parts == split.parts && whole.bytes == split.bytes && whole.ends == split.ends &&
		      whole.hash == split.hash);
		CHECK(whole.parts == moved.parts && whole.bytes == moved.bytes && whole.ends == moved.ends &&
		      whole.hash == moved.hash);
	}
	return 0;
}
