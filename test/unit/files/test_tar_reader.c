/* The tar reader against archives from our writer (ustar, PAX long names)
 * and a hand-made GNU long name: entries and data identical whatever the
 * split, raw pass-through byte-exact, bad input refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "docker/tar.h"
#include "files/tar_reader.h"

struct rec {
	char log[20000];
	size_t len;
	int calls;
	struct evbuffer *out;
};

static void add(struct rec *r, const char *s, size_t n)
{
	assert_true(r->len + n < sizeof(r->log));
	memcpy(r->log + r->len, s, n);
	r->len += n;
	r->log[r->len] = '\0';
}

static int on_entry(const struct tar_reader_entry *e, void *arg)
{
	char b[9000];
	int n = snprintf(b, sizeof(b), "[%c %s -> %s %llu %o]", e->type, e->name, e->linkname,
			 (unsigned long long)e->size, e->mode);
	add(arg, b, (size_t)n);
	return strstr(e->name, "refuse") ? -1 : 0;
}

/* logs the data, and passes it on to out when there is one */
static int on_move(struct evbuffer *in, size_t n, void *arg)
{
	struct rec *r = arg;
	char b[20000];
	assert_true(n > 0 && n <= sizeof(b) && evbuffer_get_length(in) >= n);
	evbuffer_copyout(in, b, n);
	add(r, b, n);
	if (r->out)
		assert_int_equal(evbuffer_remove_buffer(in, r->out, n), (int)n);
	else
		evbuffer_drain(in, n);
	return ++r->calls % 2 ? 1 : 0;
}

static const struct tar_reader_cbs cbs = { on_entry, on_move };

static enum tar_reader_status run(struct evbuffer *tar, size_t step, struct rec *r, struct evbuffer *out)
{
	size_t len = evbuffer_get_length(tar);
	const char *p = (const char *)evbuffer_pullup(tar, -1);
	struct tar_reader *tr = tar_reader_new(&cbs, r);
	struct evbuffer *in = evbuffer_new();
	r->out = out;
	enum tar_reader_status st = TAR_READER_MORE;
	for (size_t off = 0; off < len && st != TAR_READER_ERROR && st != TAR_READER_DONE;) {
		size_t n = step && step < len - off ? step : len - off;
		evbuffer_add(in, p + off, n);
		off += n;
		do
			st = tar_reader_feed(tr, in, out);
		while (st == TAR_READER_PAUSED);
	}
	if (st == TAR_READER_MORE)
		st = tar_reader_finish(tr);
	evbuffer_free(in);
	tar_reader_free(tr);
	return st;
}

static void entry(struct evbuffer *b, const char *name, enum tar_type t, const char *link, const char *data)
{
	struct tar_entry e = {
		.name = name, .type = t, .linkname = link, .mode = 0640, .size = data ? strlen(data) : 0
	};
	assert_int_equal(tar_write_header(b, &e), 0);
	if (data) {
		evbuffer_add(b, data, strlen(data));
		tar_write_padding(b, strlen(data));
	}
}

static void test_round_trip_every_split(void **state)
{
	struct evbuffer *tar = evbuffer_new();
	char longname[300];
	memset(longname, 'L', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	entry(tar, "dir/", TAR_DIR, NULL, NULL);
	entry(tar, "dir/a.txt", TAR_FILE, NULL, "hello");
	entry(tar, "dir/empty", TAR_FILE, NULL, "");
	entry(tar, longname, TAR_FILE, NULL, "long");
	entry(tar, "dir/link", TAR_SYMLINK, "a.txt", NULL);
	tar_write_end(tar);
	size_t len = evbuffer_get_length(tar);
	struct rec ref = { 0 };
	struct evbuffer *out = evbuffer_new();
	assert_int_equal(run(tar, 0, &ref, out), TAR_READER_DONE);
	assert_int_equal(evbuffer_get_length(out), len);
	assert_memory_equal(evbuffer_pullup(out, -1), evbuffer_pullup(tar, -1), len);
	char want[1000];
	snprintf(want, sizeof(want),
		 "[5 dir/ ->  0 640][0 dir/a.txt ->  5 640]hello[0 dir/empty ->  0 640][0 %s ->  4 "
		 "640]long[2 dir/link -> a.txt 0 640]",
		 longname);
	assert_string_equal(ref.log, want);
	for (size_t step = 1; step < 1200; step += 7) {
		struct rec r = { 0 };
		assert_int_equal(run(tar, step, &r, NULL), TAR_READER_DONE);
		assert_string_equal(r.log, ref.log);
	}
	evbuffer_free(out);
	evbuffer_free(tar);
}

/* GNU long name: a ././@LongLink entry of type 'L' before the real header. */
static void test_gnu_long_name(void **state)
{
	char name[200];
	memset(name, 'g', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	struct evbuffer *tar = evbuffer_new();
	unsigned char h[512] = { 0 };
	strcpy((char *)h, "././@LongLink");
	snprintf((char *)h + 100, 8, "%07o", 0644);
	snprintf((char *)h + 124, 12, "%011o", (unsigned)sizeof(name));
	h[156] = 'L';
	memcpy(h + 257, "ustar  ", 8);
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	evbuffer_add(tar, h, 512);
	evbuffer_add(tar, name, sizeof(name));
	tar_write_padding(tar, sizeof(name));
	entry(tar, "short", TAR_FILE, NULL, "x");
	tar_write_end(tar);
	struct rec r = { 0 };
	assert_int_equal(run(tar, 3, &r, NULL), TAR_READER_DONE);
	char want[400];
	snprintf(want, sizeof(want), "[0 %s ->  1 640]x", name);
	assert_string_equal(r.log, want);
	evbuffer_free(tar);
}

static void test_bad_input(void **state)
{
	struct evbuffer *tar = evbuffer_new();
	entry(tar, "a", TAR_FILE, NULL, "abc");
	unsigned char *p = evbuffer_pullup(tar, -1);
	p[0] ^= 1; /* checksum now wrong */
	struct rec r = { 0 };
	assert_int_equal(run(tar, 0, &r, NULL), TAR_READER_ERROR);
	evbuffer_free(tar);

	tar = evbuffer_new();
	entry(tar, "a", TAR_FILE, NULL, "abc");
	evbuffer_drain(tar, 0);
	struct evbuffer *cut = evbuffer_new();
	evbuffer_add(cut, evbuffer_pullup(tar, -1), 512 + 2); /* ends inside the data */
	assert_int_equal(run(cut, 0, &r, NULL), TAR_READER_ERROR);
	evbuffer_free(cut);
	evbuffer_free(tar);

	/* an entry the callback refuses: nothing of it passes through */
	tar = evbuffer_new();
	entry(tar, "ok", TAR_FILE, NULL, "1");
	entry(tar, "refuse", TAR_FILE, NULL, "2");
	struct evbuffer *out = evbuffer_new();
	assert_int_equal(run(tar, 0, &r, out), TAR_READER_ERROR);
	assert_int_equal(evbuffer_get_length(out), 1024);
	evbuffer_free(out);
	evbuffer_free(tar);

	/* no end blocks: accepted at an entry boundary */
	tar = evbuffer_new();
	entry(tar, "a", TAR_FILE, NULL, "abc");
	struct rec r2 = { 0 };
	assert_int_equal(run(tar, 0, &r2, NULL), TAR_READER_DONE);
	evbuffer_free(tar);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_every_split),
		cmocka_unit_test(test_gnu_long_name),
		cmocka_unit_test(test_bad_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
