/* The protocol codec: frames and fields round trip, and every malformed
 * header or payload is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "agent/protocol.h"

static void test_round_trip(void **state)
{
	(void)state;
	struct agent_msg m;
	struct agent_frame f;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_SPAWN, 0x80, 0x01020304);
	agent_msg_str(&m, AGENT_T_ARGV, "echo");
	agent_msg_str(&m, AGENT_T_ARGV, "");
	agent_msg_u64(&m, AGENT_T_TIMEOUT_MS, 0x1122334455667788ull);
	agent_msg_bytes(&m, AGENT_T_DATA, "\0\xff", 2);
	assert_int_equal(agent_msg_end(&m), 0);
	agent_msg_begin(&m, AGENT_PING, 0, 0); /* a second frame right after */
	assert_int_equal(agent_msg_end(&m), 0);

	long used = agent_frame_parse(m.buf, m.len, &f);
	assert_int_equal(used, 12 + 9 + 5 + 13 + 7);
	assert_int_equal(f.type, AGENT_SPAWN);
	assert_int_equal(f.flags, 0x80);
	assert_int_equal(f.id, 0x01020304);
	assert_true(agent_frame_valid(&f));
	uint64_t v;
	assert_int_equal(agent_frame_u64(&f, AGENT_T_TIMEOUT_MS, &v), 0);
	assert_true(v == 0x1122334455667788ull);
	assert_int_equal(agent_frame_u64(&f, AGENT_T_ARGV, &v), -1); /* not 8 bytes */
	assert_int_equal(agent_frame_u64(&f, AGENT_T_CWD, &v), -1);  /* absent */
	const uint8_t *d;
	uint32_t n;
	assert_int_equal(agent_frame_bytes(&f, AGENT_T_DATA, &d, &n), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(d, "\0\xff", 2);
	/* repeated tags in order */
	struct agent_field_iter it;
	struct agent_field fld;
	agent_fields_begin(&it, &f);
	assert_int_equal(agent_fields_next(&it, &fld), 1);
	assert_int_equal(fld.tag, AGENT_T_ARGV);
	assert_int_equal(fld.len, 4);
	assert_int_equal(agent_fields_next(&it, &fld), 1);
	assert_int_equal(fld.len, 0);
	assert_int_equal(agent_fields_next(&it, &fld), 1);
	assert_int_equal(agent_fields_next(&it, &fld), 1);
	assert_int_equal(agent_fields_next(&it, &fld), 0);

	struct agent_frame g;
	assert_int_equal(agent_frame_parse(m.buf + used, m.len - (size_t)used, &g), 12);
	assert_int_equal(g.type, AGENT_PING);
	assert_int_equal(g.len, 0);
	assert_true(agent_frame_valid(&g));
	assert_string_equal(agent_msg_type_name(AGENT_PONG), "PONG");
	assert_string_equal(agent_msg_type_name(0), "?");
	assert_string_equal(agent_msg_type_name(200), "?");
	agent_msg_free(&m);
}

static void test_partial_frames(void **state)
{
	(void)state;
	struct agent_msg m;
	struct agent_frame f;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_STDIN, 0, 7);
	agent_msg_bytes(&m, AGENT_T_DATA, "hello", 5);
	assert_int_equal(agent_msg_end(&m), 0);
	for (size_t i = 0; i < m.len; i++)
		assert_int_equal(agent_frame_parse(m.buf, i, &f), 0); /* needs more */
	assert_int_equal(agent_frame_parse(m.buf, m.len, &f), (long)m.len);
	agent_msg_free(&m);
}

static void test_bad_headers(void **state)
{
	(void)state;
	struct agent_frame f;
	uint8_t h[12] = { 0, 0, 0, 0, AGENT_PING, 0, 0, 0, 0, 0, 0, 0 };
	assert_int_equal(agent_frame_parse(h, sizeof(h), &f), 12);
	h[4] = 0; /* type 0 */
	assert_int_equal(agent_frame_parse(h, sizeof(h), &f), -1);
	h[4] = AGENT_MSG_TYPE_MAX;
	assert_int_equal(agent_frame_parse(h, sizeof(h), &f), -1);
	h[4] = AGENT_PING;
	h[6] = 1; /* reserved */
	assert_int_equal(agent_frame_parse(h, sizeof(h), &f), -1);
	h[6] = 0;
	h[7] = 0x80;
	assert_int_equal(agent_frame_parse(h, sizeof(h), &f), -1);
	h[7] = 0;
	/* longer than AGENT_FRAME_MAX: refused from the header alone */
	uint32_t big = AGENT_FRAME_MAX + 1;
	h[0] = (uint8_t)(big >> 24);
	h[1] = (uint8_t)(big >> 16);
	h[2] = (uint8_t)(big >> 8);
	h[3] = (uint8_t)big;
	assert_int_equal(agent_frame_parse(h, sizeof(h), &f), -1);
	h[0] = 0xff;
	assert_int_equal(agent_frame_parse(h, sizeof(h), &f), -1);
	/* exactly the maximum is fine (needs more bytes) */
	big = AGENT_FRAME_MAX;
	h[0] = (uint8_t)(big >> 24);
	h[1] = (uint8_t)(big >> 16);
	h[2] = (uint8_t)(big >> 8);
	h[3] = (uint8_t)big;
	assert_int_equal(agent_frame_parse(h, sizeof(h), &f), 0);
	/* unknown flags are fine */
	memset(h, 0, 4);
	h[5] = 0xff;
	assert_int_equal(agent_frame_parse(h, sizeof(h), &f), 12);
}

static void test_bad_fields(void **state)
{
	(void)state;
	struct agent_frame f = { .type = AGENT_PING };
	struct agent_field_iter it;
	struct agent_field fld;
	uint64_t v;
	const uint8_t *d;
	uint32_t n;
	/* a field header cut short */
	static const uint8_t cut[] = { AGENT_T_TAG, 0, 0 };
	f.payload = cut;
	f.len = sizeof(cut);
	assert_false(agent_frame_valid(&f));
	agent_fields_begin(&it, &f);
	assert_int_equal(agent_fields_next(&it, &fld), -1);
	/* a field longer than the payload */
	static const uint8_t over[] = { AGENT_T_TAG, 0, 0, 0, 4, 'a', 'b', 'c' };
	f.payload = over;
	f.len = sizeof(over);
	assert_false(agent_frame_valid(&f));
	assert_int_equal(agent_frame_bytes(&f, AGENT_T_TAG, &d, &n), -1);
	/* a huge length (no overflow in the bounds check) */
	static const uint8_t huge[] = { AGENT_T_TAG, 0xff, 0xff, 0xff, 0xff, 'a' };
	f.payload = huge;
	f.len = sizeof(huge);
	assert_false(agent_frame_valid(&f));
	/* a good field followed by garbage: found, but the frame is invalid */
	static const uint8_t tail[] = { AGENT_T_OFFSET, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 9, 0x42 };
	f.payload = tail;
	f.len = sizeof(tail);
	assert_false(agent_frame_valid(&f));
	assert_int_equal(agent_frame_u64(&f, AGENT_T_OFFSET, &v), 0);
	assert_int_equal(v, 9);
	/* an integer of the wrong width */
	static const uint8_t narrow[] = { AGENT_T_OFFSET, 0, 0, 0, 4, 0, 0, 0, 9 };
	f.payload = narrow;
	f.len = sizeof(narrow);
	assert_true(agent_frame_valid(&f));
	assert_int_equal(agent_frame_u64(&f, AGENT_T_OFFSET, &v), -1);
	/* empty payload */
	f.len = 0;
	assert_true(agent_frame_valid(&f));
}

static void test_overflow(void **state)
{
	(void)state;
	struct agent_msg m;
	static uint8_t big[AGENT_FRAME_MAX];
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_PING, 0, 0);
	assert_int_equal(agent_msg_end(&m), 0);
	size_t before = m.len;
	agent_msg_begin(&m, AGENT_STDIN, 0, 1);
	agent_msg_bytes(&m, AGENT_T_DATA, big, sizeof(big)); /* + 5 bytes of field header */
	assert_int_equal(agent_msg_end(&m), -1);
	assert_int_equal(m.len, before); /* the frame is dropped, the earlier one kept */
	agent_msg_begin(&m, AGENT_STDIN, 0, 1);
	agent_msg_bytes(&m, AGENT_T_DATA, big, sizeof(big) - 5); /* exactly the maximum */
	assert_int_equal(agent_msg_end(&m), 0);
	struct agent_frame f;
	assert_int_equal(agent_frame_parse(m.buf + before, m.len - before, &f), (long)(12 + AGENT_FRAME_MAX));
	agent_msg_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),  cmocka_unit_test(test_partial_frames),
		cmocka_unit_test(test_bad_headers), cmocka_unit_test(test_bad_fields),
		cmocka_unit_test(test_overflow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
