/* Request decoding and the passwd/group reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "request.h"
#include "users.h"

static int decode(struct agent_msg *m, struct agent_req *r, const char **why);

static int decode(struct agent_msg *m, struct agent_req *r, const char **why)
{
	struct agent_frame f;
	assert_int_equal(agent_msg_end(m), 0);
	assert_true(agent_frame_parse(m->buf, m->len, &f) > 0);
	*why = NULL;
	return agent_req_decode(&f, r, why);
}

static void test_spawn(void **state)
{
	(void)state;
	struct agent_msg m;
	struct agent_req r;
	struct agent_frame f;
	const char *why;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_SPAWN, 0, 0);
	agent_msg_str(&m, AGENT_T_TAG, "t1");
	agent_msg_str(&m, AGENT_T_ARGV, "sh");
	agent_msg_str(&m, AGENT_T_ARGV, "-c");
	agent_msg_str(&m, AGENT_T_ARGV, "");
	agent_msg_str(&m, AGENT_T_ENV, "A=1");
	agent_msg_str(&m, AGENT_T_ENV, "B=");
	agent_msg_str(&m, AGENT_T_CWD, "/tmp");
	agent_msg_u64(&m, AGENT_T_PTY_ROWS, 24);
	agent_msg_u64(&m, AGENT_T_PTY_COLS, 80);
	agent_msg_u64(&m, AGENT_T_WINDOW, 1000);
	agent_msg_u64(&m, AGENT_T_LOSSLESS, 1);
	agent_msg_str(&m, AGENT_T_SERVICE, "0b6f1c1e-4d0a-4a8e-9c43-2f7c3b1a9d10");
	agent_msg_u64(&m, AGENT_T_PORT, 65535);
	agent_msg_bytes(&m, 200, "unknown", 7);
	assert_int_equal(decode(&m, &r, &why), 0);
	assert_true(r.lossless);
	assert_int_equal(r.service_len, 36);
	assert_memory_equal(r.service, "0b6f1c1e-4d0a-4a8e-9c43-2f7c3b1a9d10", 36);
	assert_int_equal(r.port, 65535);
	assert_int_equal(r.argc, 3);
	assert_int_equal(r.envc, 2);
	assert_int_equal(r.rows, 24);
	assert_int_equal(r.cols, 80);
	assert_int_equal(r.window, 1000);
	assert_int_equal(r.ring_bytes, AGENT_RING_DEFAULT);
	assert_int_equal(r.grace_ms, AGENT_GRACE_DEFAULT_MS);
	assert_int_equal(r.tag_len, 2);
	assert_int_equal(agent_frame_parse(m.buf, m.len, &f) > 0, 1);
	char **argv = agent_req_strings(&f, AGENT_T_ARGV, r.argc);
	assert_string_equal(argv[0], "sh");
	assert_string_equal(argv[1], "-c");
	assert_string_equal(argv[2], "");
	assert_null(argv[3]);
	free(argv);
	assert_null(agent_req_strings(&f, AGENT_T_USER, 0));
	agent_msg_free(&m);
}

static void test_bad_requests(void **state)
{
	(void)state;
	struct {
		uint8_t type, tag;
		const char *val;
		size_t len;
	} cases[] = {
		{ AGENT_SPAWN, 0, NULL, 0 },				   /* no ARGV */
		{ AGENT_SPAWN, AGENT_T_ARGV, "", 0 },			   /* empty ARGV[0] */
		{ AGENT_SPAWN, AGENT_T_ARGV, "a\0b", 3 },		   /* NUL */
		{ AGENT_SPAWN, AGENT_T_ENV, "NOEQUALS", 8 },		   /* not K=V */
		{ AGENT_SPAWN, AGENT_T_ENV, "=v", 2 },			   /* empty key */
		{ AGENT_SPAWN, AGENT_T_CWD, "", 0 },			   /* empty */
		{ AGENT_SPAWN, AGENT_T_TIMEOUT_MS, "1234", 4 },		   /* integer not 8 bytes */
		{ AGENT_SIGNAL, 0, NULL, 0 },				   /* no SIGNO */
		{ AGENT_SIGNAL, AGENT_T_SIGNO, "\0\0\0\0\0\0\0\xff", 8 },  /* out of range */
		{ AGENT_RESIZE, AGENT_T_PTY_ROWS, "\0\0\0\0\0\0\0\1", 8 }, /* no COLS */
		{ AGENT_RESIZE, AGENT_T_PTY_ROWS, "\0\0\0\0\0\1\0\0", 8 }, /* too big */
		{ AGENT_SUBSCRIBE, AGENT_T_LOSSLESS, "\1", 1 },		   /* integer not 8 bytes */
		{ AGENT_ACK, 0, NULL, 0 },				   /* no OFFSET */
		{ AGENT_SPAWN, AGENT_T_SERVICE, "", 0 },		   /* empty */
		{ AGENT_SPAWN, AGENT_T_SERVICE, ".hidden", 7 },		   /* a dot first */
		{ AGENT_SPAWN, AGENT_T_SERVICE, "a/b", 3 },		   /* not a file name */
		{ AGENT_SPAWN, AGENT_T_SERVICE, "a\0b", 3 },		   /* NUL */
		{ AGENT_SPAWN, AGENT_T_PORT, "\0\0\0\0\0\0\0\0", 8 },	   /* port 0 */
		{ AGENT_SPAWN, AGENT_T_PORT, "\0\0\0\0\0\1\0\0", 8 },	   /* past 65535 */
		{ AGENT_UNSERVICE, AGENT_T_TAG, "t", 1 },		   /* no SERVICE */
		{ AGENT_UNSERVICE, AGENT_T_SERVICE, "s1", 2 },		   /* no TAG */
		{ AGENT_WELCOME, 0, NULL, 0 },				   /* not a request */
		{ AGENT_OUTPUT, 0, NULL, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct agent_msg m;
		struct agent_req r;
		const char *why;
		agent_msg_init(&m);
		agent_msg_begin(&m, cases[i].type, 0, 1);
		if (cases[i].type == AGENT_SPAWN && cases[i].tag != AGENT_T_ARGV && cases[i].tag)
			agent_msg_str(&m, AGENT_T_ARGV, "true");
		if (cases[i].tag)
			agent_msg_bytes(&m, cases[i].tag, cases[i].val, cases[i].len);
		assert_int_equal(decode(&m, &r, &why), -1);
		assert_non_null(why);
		agent_msg_free(&m);
	}
	/* a TAG too long */
	static char tag[AGENT_TAG_MAX + 1];
	struct agent_msg m;
	struct agent_req r;
	const char *why;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_PING, 0, 0);
	agent_msg_bytes(&m, AGENT_T_TAG, tag, sizeof(tag));
	assert_int_equal(decode(&m, &r, &why), -1);
	agent_msg_free(&m);
	/* malformed fields */
	struct agent_frame f = { .type = AGENT_PING, .payload = (const uint8_t *)"\4\0\0\0\11", .len = 5 };
	assert_int_equal(agent_req_decode(&f, &r, &why), -1);
	/* clamped ring size, a good ACK */
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_ACK, 0, 3);
	agent_msg_u64(&m, AGENT_T_OFFSET, 77);
	agent_msg_u64(&m, AGENT_T_RING_BYTES, 1);
	assert_int_equal(decode(&m, &r, &why), 0);
	assert_int_equal(r.offset, 77);
	assert_int_equal(r.ring_bytes, AGENT_RING_MIN);
	assert_int_equal(r.id, 3);
	assert_null(r.service);
	assert_int_equal(r.port, 0);
	agent_msg_free(&m);
	/* a SERVICE of the longest length is fine, one byte more is not */
	static char id[AGENT_SERVICE_ID_MAX + 1];
	memset(id, 'a', sizeof(id));
	for (size_t len = AGENT_SERVICE_ID_MAX; len <= AGENT_SERVICE_ID_MAX + 1; len++) {
		agent_msg_init(&m);
		agent_msg_begin(&m, AGENT_UNSERVICE, 0, 0);
		agent_msg_str(&m, AGENT_T_TAG, "t");
		agent_msg_bytes(&m, AGENT_T_SERVICE, id, len);
		assert_int_equal(decode(&m, &r, &why), len == AGENT_SERVICE_ID_MAX ? 0 : -1);
		agent_msg_free(&m);
	}
}

static void test_users(void **state)
{
	(void)state;
	char root[] = "/tmp/sbusersXXXXXX", path[256];
	assert_non_null(mkdtemp(root));
	snprintf(path, sizeof(path), "%s/etc", root);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/etc/passwd", root);
	FILE *fp = fopen(path, "w");
	fputs("root:x:0:0:root:/root:/bin/bash\nbroken line\nsandbox:x:1000:1001::/home/sandbox:/bin/bash\n",
	      fp);
	fclose(fp);
	snprintf(path, sizeof(path), "%s/etc/group", root);
	fp = fopen(path, "w");
	fputs("root:x:0:\nsudo:x:27:sandbox,other\nsandbox:x:1001:\ndocker:x:998:other,sandbox\n", fp);
	fclose(fp);
	struct user_info u;
	assert_int_equal(users_resolve(root, "sandbox", &u), 0);
	assert_int_equal(u.uid, 1000);
	assert_int_equal(u.gid, 1001);
	assert_string_equal(u.home, "/home/sandbox");
	assert_int_equal(u.ngroups, 3); /* 1001, 27, 998 */
	assert_int_equal(users_resolve(root, "1000", &u), 0);
	assert_int_equal(u.uid, 1000);
	assert_string_equal(u.home, "/home/sandbox");
	assert_int_equal(users_resolve(root, "4242", &u), 0); /* numeric, no entry */
	assert_int_equal(u.uid, 4242);
	assert_int_equal(u.gid, 4242);
	assert_string_equal(u.home, "/");
	assert_int_equal(users_resolve(root, "nobody-here", &u), -1);
	assert_int_equal(users_resolve(root, "root", &u), 0);
	assert_int_equal(u.uid, 0);
	assert_string_equal(u.home, "/root");
	snprintf(path, sizeof(path), "%s/etc/passwd", root);
	unlink(path);
	snprintf(path, sizeof(path), "%s/etc/group", root);
	unlink(path);
	snprintf(path, sizeof(path), "%s/etc", root);
	rmdir(path);
	rmdir(root);
}

/* TCP stream requests: what each needs, and their fields. */
static void test_tcp(void **state)
{
	(void)state;
	struct agent_msg m;
	struct agent_req r;
	const char *why;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_TCP_OPEN, 0, 0);
	agent_msg_u64(&m, AGENT_T_TAG, 7);
	agent_msg_u64(&m, AGENT_T_PORT, 8001);
	agent_msg_u64(&m, AGENT_T_WINDOW, 4096);
	assert_int_equal(decode(&m, &r, &why), 0);
	assert_int_equal(r.port, 8001);
	assert_int_equal(r.window, 4096);
	assert_int_equal(r.tag_len, 8);
	static const struct {
		uint8_t type;
		bool tag, port, offset;
		int rc;
	} cases[] = {
		{ AGENT_TCP_OPEN, true, false, false, -1 },   { AGENT_TCP_OPEN, false, true, false, -1 },
		{ AGENT_TCP_ACK, true, false, false, -1 },    { AGENT_TCP_ACK, true, false, true, 0 },
		{ AGENT_TCP_DATA, false, false, false, -1 },  { AGENT_TCP_DATA, true, false, false, 0 },
		{ AGENT_TCP_SHUT, false, false, false, -1 },  { AGENT_TCP_SHUT, true, false, false, 0 },
		{ AGENT_TCP_CLOSE, false, false, false, -1 }, { AGENT_TCP_CLOSE, true, false, false, 0 },
		{ AGENT_TCP_OPENED, true, false, false, -1 }, /* an answer, not a request */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		agent_msg_free(&m);
		agent_msg_begin(&m, cases[i].type, 0, 0);
		if (cases[i].tag)
			agent_msg_str(&m, AGENT_T_TAG, "s");
		if (cases[i].port)
			agent_msg_u64(&m, AGENT_T_PORT, 80);
		if (cases[i].offset)
			agent_msg_u64(&m, AGENT_T_OFFSET, 10);
		assert_int_equal(decode(&m, &r, &why), cases[i].rc);
		if (cases[i].rc)
			assert_non_null(why);
	}
	agent_msg_free(&m);
	assert_string_equal(agent_msg_type_name(AGENT_TCP_CLOSE), "TCP_CLOSE");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spawn),
		cmocka_unit_test(test_bad_requests),
		cmocka_unit_test(test_tcp),
		cmocka_unit_test(test_users),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
