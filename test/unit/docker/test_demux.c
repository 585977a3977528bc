/* The multiplexed-stream demuxer over arbitrary splits and bad headers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "docker/demux.h"

struct collected {
	char out[256];
	size_t out_len;
	char err[256];
	size_t err_len;
	int calls;
};

static void collect(enum docker_stream_type type, const char *data, size_t len, void *arg)
{
	struct collected *c = arg;
	c->calls++;
	if (type == DOCKER_STDOUT) {
		memcpy(c->out + c->out_len, data, len);
		c->out_len += len;
	} else {
		memcpy(c->err + c->err_len, data, len);
		c->err_len += len;
	}
}

static size_t frame(unsigned char *p, int type, const char *payload)
{
	size_t n = strlen(payload);
	unsigned char h[8] = { (unsigned char)type,
			       0,
			       0,
			       0,
			       (unsigned char)(n >> 24),
			       (unsigned char)(n >> 16),
			       (unsigned char)(n >> 8),
			       (unsigned char)n };
	memcpy(p, h, 8);
	memcpy(p + 8, payload, n);
	return n + 8;
}

static size_t sample(unsigned char *buf)
{
	size_t n = 0;
	n += frame(buf + n, 1, "hello ");
	n += frame(buf + n, 2, "oops\n");
	n += frame(buf + n, 1, "");
	n += frame(buf + n, 1, "world\n");
	return n;
}

static void feed_split(size_t step)
{
	unsigned char buf[128];
	size_t n = sample(buf);
	struct docker_demux dm;
	struct collected c = { 0 };
	struct evbuffer *in = evbuffer_new();
	docker_demux_init(&dm);
	for (size_t off = 0; off < n; off += step) {
		size_t k = n - off < step ? n - off : step;
		evbuffer_add(in, buf + off, k);
		assert_int_equal(docker_demux_feed(&dm, in, collect, &c), 0);
		assert_int_equal(evbuffer_get_length(in), 0);
	}
	assert_int_equal(c.out_len, 12);
	assert_memory_equal(c.out, "hello world\n", 12);
	assert_int_equal(c.err_len, 5);
	assert_memory_equal(c.err, "oops\n", 5);
	assert_int_equal(dm.hdr_len, 0);
	assert_int_equal(dm.remaining, 0);
	evbuffer_free(in);
}

static void test_byte_by_byte(void **state)
{
	feed_split(1);
}

static void test_all_at_once(void **state)
{
	feed_split(1000);
}

static void test_odd_splits(void **state)
{
	for (size_t s = 2; s < 20; s++)
		feed_split(s);
}

static void test_bad_headers(void **state)
{
	static const unsigned char bad_type[8] = { 3, 0, 0, 0, 0, 0, 0, 1 };
	static const unsigned char bad_pad[8] = { 1, 0, 1, 0, 0, 0, 0, 1 };
	const unsigned char *cases[] = { bad_type, bad_pad };
	for (size_t i = 0; i < 2; i++) {
		struct docker_demux dm;
		struct collected c = { 0 };
		struct evbuffer *in = evbuffer_new();
		docker_demux_init(&dm);
		evbuffer_add(in, cases[i], 4);
		assert_int_equal(docker_demux_feed(&dm, in, collect, &c), 0);
		evbuffer_add(in, cases[i] + 4, 4);
		assert_int_equal(docker_demux_feed(&dm, in, collect, &c), -1);
		assert_int_equal(c.calls, 0);
		evbuffer_free(in);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_all_at_once),
		cmocka_unit_test(test_odd_splits),
		cmocka_unit_test(test_bad_headers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
