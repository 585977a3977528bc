/* Random bytes through the tar reader, whole and split, with pass-through:
 * both feeds agree, and what passes through is a prefix of the input. An
 * entry named "refuse" is refused, the data of one named "refuse-data" too. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/check.h"
#include "files/tar_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sum {
	uint64_t entries, bytes, hash;
	int calls;
	bool refuse_data;
	struct evbuffer *out;
};

static int on_entry(const struct tar_reader_entry *e, void *arg)
{
	struct sum *s = arg;
	s->entries++;
	s->hash = s->hash * 31 + strlen(e->name) + strlen(e->linkname) + (unsigned char)e->type;
	s->refuse_data = strcmp(e->name, "refuse-data") == 0;
	return strcmp(e->name, "refuse") == 0 ? -1 : 0;
}

/* data bytes go on to out, so that out stays the input's prefix */
static int on_move(struct evbuffer *in, size_t n, void *arg)
{
	struct sum *s = arg;
	CHECK(n > 0 && evbuffer_get_length(in) >= n);
	if (s->refuse_data)
		return -1;
	s->bytes += n;
	CHECK(evbuffer_remove_buffer(in, s->out, n) == (int)n);
	return ++s->calls % 2 == 0 ? 1 : 0;
}

static enum tar_reader_status run(const uint8_t *data, size_t size, size_t seed, struct sum *s)
{
	static const struct tar_reader_cbs cbs = { on_entry, on_move };
	struct tar_reader *r = tar_reader_new(&cbs, s);
	struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
	s->out = out;
	enum tar_reader_status st = TAR_READER_MORE;
	size_t off = 0, k = 0;
	while (off < size && st != TAR_READER_ERROR && st != TAR_READER_DONE) {
		size_t step = seed ? 1 + (data[k++ % size] ^ seed) % 700 : size;
		if (step > size - off)
			step = size - off;
		evbuffer_add(in, data + off, step);
		off += step;
		do
			st = tar_reader_feed(r, in, out);
		while (st == TAR_READER_PAUSED);
	}
	if (st == TAR_READER_MORE)
		st = tar_reader_finish(r);
	size_t n = evbuffer_get_length(out);
	CHECK(n <= size);
	CHECK(n == 0 || memcmp(evbuffer_pullup(out, -1), data, n) == 0);
	evbuffer_free(in);
	evbuffer_free(out);
	tar_reader_free(r);
	return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	struct sum whole = { 0 }, split = { 0 };
	enum tar_reader_status a = run(data, size, 0, &whole);
	enum tar_reader_status b = run(data, size, data[0] | 1, &split);
	CHECK(a == b);
	if (a == TAR_READER_DONE)
		CHECK(whole.entries == split.entries && whole.bytes == split.bytes &&
		      whole.hash == split.hash);
	return 0;
}
