/* The output ring: records, absolute offsets, overwrite, reading from an
 * offset, the gap a reader behind the start sees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ring.h"

static size_t read_all(struct ring *r, uint64_t off, uint8_t *dst, size_t cap, uint8_t *streams);

static size_t read_all(struct ring *r, uint64_t off, uint8_t *dst, size_t cap, uint8_t *streams)
{
	size_t n = 0, got;
	uint8_t s;
	while ((got = ring_copy(r, off + n, cap - n, &s, dst + n)) > 0) {
		memset(streams + n, s, got);
		n += got;
	}
	return n;
}

static void test_records_and_offsets(void **state)
{
	(void)state;
	struct ring *r = ring_new(64);
	uint8_t buf[64], s = 0;
	ring_write(r, 1, "abc", 3);
	ring_write(r, 1, "de", 2); /* coalesced with the previous record */
	ring_write(r, 2, "XY", 2);
	ring_write(r, 1, "f", 1);
	assert_int_equal(ring_records(r), 3);
	assert_int_equal(ring_start(r), 0);
	assert_int_equal(ring_end(r), 8);
	/* one stream per copy */
	assert_int_equal(ring_copy(r, 0, sizeof(buf), &s, buf), 5);
	assert_int_equal(s, 1);
	assert_memory_equal(buf, "abcde", 5);
	assert_int_equal(ring_copy(r, 5, sizeof(buf), &s, buf), 2);
	assert_int_equal(s, 2);
	assert_int_equal(ring_copy(r, 7, sizeof(buf), &s, buf), 1);
	assert_int_equal(s, 1);
	/* from the middle of a record, and bounded by max */
	assert_int_equal(ring_copy(r, 2, 2, &s, buf), 2);
	assert_memory_equal(buf, "cd", 2);
	assert_int_equal(ring_copy(r, 8, sizeof(buf), &s, buf), 0);
	ring_write(r, 1, "", 0);
	assert_int_equal(ring_end(r), 8);
	ring_free(r);
}

static void test_overwrite_and_gap(void **state)
{
	(void)state;
	struct ring *r = ring_new(10);
	uint8_t buf[32], streams[32], s;
	ring_write(r, 1, "0123456", 7);
	ring_write(r, 2, "789ab", 5); /* 12 bytes through 10: the first 2 go */
	assert_int_equal(ring_start(r), 2);
	assert_int_equal(ring_end(r), 12);
	assert_int_equal(ring_copy(r, 1, sizeof(buf), &s, buf), 0); /* behind the start: gap */
	size_t n = read_all(r, 2, buf, sizeof(buf), streams);
	assert_int_equal(n, 10);
	assert_memory_equal(buf, "23456789ab", 10);
	assert_memory_equal(streams, "\1\1\1\1\1\2\2\2\2\2", 10);
	/* wrap-around reads */
	ring_write(r, 2, "cdefg", 5);
	assert_int_equal(ring_start(r), 7);
	assert_int_equal(ring_records(r), 1);
	n = read_all(r, 9, buf, sizeof(buf), streams);
	assert_int_equal(n, 8);
	assert_memory_equal(buf, "9abcdefg", 8);
	/* a write larger than the ring keeps its last cap bytes */
	ring_write(r, 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ", 26);
	assert_int_equal(ring_end(r), 17 + 26);
	assert_int_equal(ring_start(r), 17 + 16);
	n = read_all(r, ring_start(r), buf, sizeof(buf), streams);
	assert_int_equal(n, 10);
	assert_memory_equal(buf, "QRSTUVWXYZ", 10);
	assert_int_equal(ring_records(r), 1);
	ring_free(r);
}

static void test_many_tiny_records(void **state)
{
	(void)state;
	/* alternating streams: records are bounded too, the oldest go */
	struct ring *r = ring_new(4096);
	uint8_t buf[4096], streams[4096];
	for (int i = 0; i < 10000; i++)
		ring_write(r, (uint8_t)(1 + i % 2), i % 2 ? "e" : "o", 1);
	assert_int_equal(ring_end(r), 10000);
	assert_true(ring_records(r) <= 4096);
	assert_true(ring_start(r) >= 10000 - 4096);
	size_t n = read_all(r, ring_start(r), buf, sizeof(buf), streams);
	assert_int_equal(n, ring_end(r) - ring_start(r));
	for (size_t i = 0; i < n; i++) {
		uint64_t off = ring_start(r) + i;
		assert_int_equal(streams[i], 1 + off % 2);
		assert_int_equal(buf[i], off % 2 ? 'e' : 'o');
	}
	ring_free(r);
}

static void test_random_against_model(void **state)
{
	(void)state;
	/* every byte read back at its absolute offset equals what was written */
	enum { CAP = 1000, TOTAL = 200000 };
	static uint8_t all[TOTAL], alls[TOTAL];
	struct ring *r = ring_new(CAP);
	uint32_t seed = 12345;
	size_t w = 0;
	while (w < TOTAL - 3000) {
		seed = seed * 1103515245u + 12345u;
		size_t n = (seed >> 16) % 2500;
		uint8_t st = (uint8_t)(1 + (seed >> 8) % 2);
		uint8_t tmp[2500];
		for (size_t i = 0; i < n; i++) {
			tmp[i] = (uint8_t)(w + i);
			all[w + i] = tmp[i];
			alls[w + i] = st;
		}
		ring_write(r, st, tmp, n);
		w += n;
		assert_int_equal(ring_end(r), w);
		assert_true(ring_end(r) - ring_start(r) <= CAP);
		uint8_t buf[CAP], streams[CAP];
		uint64_t from = ring_start(r) + (seed % (ring_end(r) - ring_start(r) + 1));
		size_t got = read_all(r, from, buf, sizeof(buf), streams);
		assert_int_equal(got, ring_end(r) - from);
		assert_memory_equal(buf, all + from, got);
		assert_memory_equal(streams, alls + from, got);
	}
	ring_free(r);
}

static void test_grows_and_trims(void **state)
{
	(void)state;
	/* the buffer grows from small as output comes, wrapping at every size on
	 * the way, and a trim keeps every byte where it was */
	enum { CAP = 50000, TOTAL = 120000 };
	static uint8_t all[TOTAL], alls[TOTAL], buf[CAP], streams[CAP];
	struct ring *r = ring_new(CAP);
	size_t first = ring_bytes(r);
	assert_true(first < 8192);
	uint32_t seed = 777;
	size_t w = 0;
	for (int round = 0; w < TOTAL - 1000; round++) {
		seed = seed * 1103515245u + 12345u;
		size_t n = (seed >> 16) % 700;
		uint8_t st = (uint8_t)(1 + (seed >> 8) % 2), tmp[700];
		for (size_t i = 0; i < n; i++) {
			tmp[i] = (uint8_t)((w + i) * 7);
			all[w + i] = tmp[i];
			alls[w + i] = st;
		}
		ring_write(r, st, tmp, n);
		w += n;
		if (round % 37 == 0) /* trimmed mid-way, then written again */
			ring_trim(r);
		uint64_t from = ring_start(r);
		size_t got = read_all(r, from, buf, sizeof(buf), streams);
		assert_int_equal(got, w - from);
		assert_memory_equal(buf, all + from, got);
		assert_memory_equal(streams, alls + from, got);
	}
	assert_true(ring_bytes(r) > CAP);
	ring_trim(r);
	assert_true(ring_bytes(r) < CAP + 8192);
	assert_int_equal(read_all(r, ring_start(r), buf, sizeof(buf), streams), CAP);
	assert_memory_equal(buf, all + ring_start(r), CAP);
	ring_free(r);

	/* a command that printed 3 bytes keeps about 3 bytes */
	r = ring_new(512 * 1024);
	ring_write(r, 1, "ok\n", 3);
	ring_trim(r);
	assert_true(ring_bytes(r) < 256);
	uint8_t s3 = 0;
	assert_int_equal(ring_copy(r, 0, 10, &s3, buf), 3);
	assert_memory_equal(buf, "ok\n", 3);
	ring_free(r);
}

/* The room a lossless reader leaves: nothing at or after its offset is ever
 * dropped by a write that fits. */
static void test_room_for_a_lossless_reader(void **state)
{
	(void)state;
	struct ring *r = ring_new(100);
	uint8_t data[100] = { 0 };
	assert_int_equal(ring_room(r, 0), 100);
	ring_write(r, 1, data, 60);
	assert_int_equal(ring_room(r, 0), 40);
	assert_int_equal(ring_room(r, 50), 90);
	assert_int_equal(ring_room(r, 60), 100);
	assert_int_equal(ring_room(r, 1000), 100); /* past the end: everything acked */
	ring_write(r, 1, data, 40);
	assert_int_equal(ring_room(r, 0), 0);
	ring_write(r, 1, data, ring_room(r, 30)); /* 30 bytes: the start moves to 30 */
	assert_int_equal(ring_start(r), 30);
	assert_int_equal(ring_end(r), 130);
	assert_int_equal(ring_room(r, 30), 0);
	assert_int_equal(ring_room(r, 0), 0); /* before the start: lost already, the start is kept */
	ring_free(r);

	/* the record array is bounded too: a full one drops its oldest record */
	r = ring_new(16 * 24);
	size_t max = 0;
	for (int i = 0; ring_room(r, 0) > 0; i++) {
		ring_write(r, (uint8_t)(1 + i % 2), data, 1);
		max = ring_records(r);
	}
	assert_int_equal(ring_start(r), 0);
	assert_true(ring_end(r) < 16 * 24);
	assert_int_equal(ring_records(r), max);
	assert_true(ring_room(r, 1) > 0); /* the oldest record is acked: it may go */
	ring_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_records_and_offsets), cmocka_unit_test(test_overwrite_and_gap),
		cmocka_unit_test(test_many_tiny_records),   cmocka_unit_test(test_random_against_model),
		cmocka_unit_test(test_grows_and_trims),	    cmocka_unit_test(test_room_for_a_lossless_reader),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
