/* The agent channel against a scripted agent: a socketpair stands in for the
 * hijacked exec stream (the test writes Docker-multiplexed frames, reads raw
 * ones). Handshake, queuing, tag routing, flow control, reconnect and resume,
 * giving up, closing from inside callbacks, services (held until the agent
 * says it has them), and the reset listener. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "channel_internal.h"
#include "core/log.h"

/* ---- the scripted agent ---- */

struct peer {
	struct event_base *base;
	struct agent_channel *ch;
	struct bufferevent *bev; /* our end of the current stream */
	int connects;
	int fail_connects; /* this many connects fail (non-fatal) */
	bool fail_fatal;
};

static struct peer P;

static void peer_event_cb(struct bufferevent *bev, short what, void *arg)
{
}

static void test_connect(struct agent_channel *ch, void *arg)
{
	struct peer *p = arg;
	p->connects++;
	if (p->fail_fatal) {
		channel_transport_failed(ch, "no such container", true);
		return;
	}
	if (p->fail_connects > 0) {
		p->fail_connects--;
		channel_transport_failed(ch, "connection refused", false);
		return;
	}
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	evutil_make_socket_nonblocking(sv[0]);
	evutil_make_socket_nonblocking(sv[1]);
	if (p->bev)
		bufferevent_free(p->bev);
	p->bev = bufferevent_socket_new(p->base, sv[1], BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(p->bev, NULL, NULL, peer_event_cb, p);
	bufferevent_enable(p->bev, EV_READ | EV_WRITE);
	channel_transport_ready(ch, bufferevent_socket_new(p->base, sv[0], BEV_OPT_CLOSE_ON_FREE));
}

static void spin_ms(int ms)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		event_base_loop(P.base, EVLOOP_NONBLOCK);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >= ms)
			return;
		usleep(1000);
	}
}

#define SPIN_UNTIL(cond)                                                                                     \
	do {                                                                                                 \
		for (int spin_i = 0; spin_i < 3000 && !(cond); spin_i++)                                     \
			spin_ms(1);                                                                          \
		assert_true(cond);                                                                           \
	} while (0)

/* Sends one agent frame from the peer, in a Docker stdout frame. */
static void peer_send(struct agent_msg *m)
{
	assert_int_equal(agent_msg_end(m), 0);
	uint8_t hdr[8] = { 1,
			   0,
			   0,
			   0,
			   (uint8_t)(m->len >> 24),
			   (uint8_t)(m->len >> 16),
			   (uint8_t)(m->len >> 8),
			   (uint8_t)m->len };
	bufferevent_write(P.bev, hdr, sizeof(hdr));
	bufferevent_write(P.bev, m->buf, m->len);
	agent_msg_free(m);
	agent_msg_init(m);
}

static void peer_stderr(const char *text)
{
	size_t n = strlen(text);
	uint8_t hdr[8] = {
		2, 0, 0, 0, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n
	};
	bufferevent_write(P.bev, hdr, sizeof(hdr));
	bufferevent_write(P.bev, text, n);
}

/* The next frame the channel wrote, copied into buf (waits for it). */
static struct agent_frame peer_recv(uint8_t *buf, size_t cap)
{
	struct agent_frame f;
	for (int i = 0; i < 3000; i++) {
		struct evbuffer *in = bufferevent_get_input(P.bev);
		size_t have = evbuffer_get_length(in);
		if (have >= AGENT_FRAME_HEADER) {
			size_t n = have < cap ? have : cap;
			evbuffer_copyout(in, buf, n);
			long used = agent_frame_parse(buf, n, &f);
			assert_true(used >= 0);
			if (used > 0) {
				evbuffer_drain(in, (size_t)used);
				return f;
			}
		}
		spin_ms(1);
	}
	fail_msg("no frame from the channel");
	return f;
}

static bool peer_idle(void)
{
	spin_ms(20);
	return evbuffer_get_length(bufferevent_get_input(P.bev)) == 0;
}

static uint64_t u64_of(const struct agent_frame *f, uint8_t tag)
{
	uint64_t v = 0;
	assert_int_equal(agent_frame_u64(f, tag, &v), 0);
	return v;
}

/* HELLO in, WELCOME out: an agent started at started_at that knows features. */
static void peer_welcome_as(uint64_t version, uint64_t features, uint64_t started_at)
{
	uint8_t buf[256];
	struct agent_frame f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_HELLO);
	assert_int_equal(u64_of(&f, AGENT_T_VERSION), AGENT_PROTOCOL_VERSION);
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_WELCOME, 0, 0);
	agent_msg_u64(&m, AGENT_T_VERSION, version);
	agent_msg_u64(&m, AGENT_T_PID, 1);
	agent_msg_u64(&m, AGENT_T_STARTED_AT, started_at);
	agent_msg_u64(&m, AGENT_T_FEATURES, features);
	peer_send(&m);
	agent_msg_free(&m);
}

static void peer_welcome(uint64_t version)
{
	peer_welcome_as(version, 0, 1700000000000);
}

static void peer_started(uint32_t id, uint64_t tag)
{
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_STARTED, 0, id);
	agent_msg_u64(&m, AGENT_T_TAG, tag);
	agent_msg_u64(&m, AGENT_T_PID, 100 + id);
	agent_msg_u64(&m, AGENT_T_STARTED_AT, 5);
	peer_send(&m);
	agent_msg_free(&m);
}

static void peer_output(uint32_t id, uint64_t tag, uint64_t offset, const char *data, uint8_t flags)
{
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_OUTPUT, flags, id);
	agent_msg_u64(&m, AGENT_T_TAG, tag);
	agent_msg_u64(&m, AGENT_T_STREAM, AGENT_STREAM_STDOUT);
	agent_msg_u64(&m, AGENT_T_OFFSET, offset);
	if (data)
		agent_msg_str(&m, AGENT_T_DATA, data);
	peer_send(&m);
	agent_msg_free(&m);
}

static void peer_exited(uint32_t id, uint64_t tag, int code)
{
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_EXITED, 0, id);
	agent_msg_u64(&m, AGENT_T_TAG, tag);
	agent_msg_u64(&m, AGENT_T_EXIT_CODE, (uint64_t)(int64_t)code);
	agent_msg_u64(&m, AGENT_T_SIGNAL, 0);
	agent_msg_u64(&m, AGENT_T_OFFSET, 6);
	peer_send(&m);
	agent_msg_free(&m);
}

/* ---- a consumer that records what it gets ---- */

struct rec {
	int started, exited, errors, gaps;
	uint32_t cmd_id;
	int exit_code;
	int err_code;
	char err[256];
	char out[4096];
	size_t out_len;
	uint64_t last_offset;
	bool close_on_output; /* agent_sub_close from inside output */
	bool close_channel_on_output;
	struct agent_sub *sub;
};

static void rec_started(void *arg, uint32_t cmd_id, int pid, int64_t started_at)
{
	struct rec *r = arg;
	r->started++;
	r->cmd_id = cmd_id;
}

static void rec_output(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data, size_t len,
		       bool gap)
{
	struct rec *r = arg;
	if (gap)
		r->gaps++;
	r->last_offset = offset;
	if (len)
		memcpy(r->out + r->out_len, data, len);
	r->out_len += len;
	if (r->close_on_output)
		agent_sub_close(r->sub);
	if (r->close_channel_on_output)
		channel_close(P.ch, "sandbox gone");
}

static void rec_exited(void *arg, const struct agent_exit *e)
{
	struct rec *r = arg;
	r->exited++;
	r->exit_code = e->exit_code;
}

static void rec_error(void *arg, int code, const char *message)
{
	struct rec *r = arg;
	r->errors++;
	r->err_code = code;
	snprintf(r->err, sizeof(r->err), "%s", message);
}

static const struct agent_sub_ops rec_ops = {
	.started = rec_started,
	.output = rec_output,
	.exited = rec_exited,
	.error = rec_error,
};

static struct agent_sub *spawn(struct rec *r, const char *arg0, uint32_t window)
{
	const char *argv[] = { arg0, "-c", "echo hi", NULL };
	const char *env[] = { "A=1", NULL };
	struct agent_spawn_req req = {
		.argv = argv,
		.env = env,
		.cwd = "/workspace",
		.user = "sandbox",
		.window = window,
	};
	r->sub = agent_spawn(P.ch, &req, &rec_ops, r);
	return r->sub;
}

static int setup(void **state)
{
	memset(&P, 0, sizeof(P));
	P.base = event_base_new();
	struct channel_transport t = { test_connect, &P };
	P.ch = channel_new_with_transport(P.base, "00000000-0000-0000-0000-000000000001", &t);
	return 0;
}

static int teardown(void **state)
{
	if (P.ch)
		channel_destroy(P.ch);
	if (P.bev)
		bufferevent_free(P.bev);
	event_base_free(P.base);
	return 0;
}

/* ---- tests ---- */

static void test_handshake_queue_and_routing(void **state)
{
	struct rec r = { 0 };
	spawn(&r, "/bin/sh", 1024);
	assert_int_equal(P.ch->state, CH_HELLO); /* connected on first use */
	assert_true(agent_channel_pending(P.ch) > 0);
	/* nothing but HELLO until WELCOME */
	uint8_t buf[4096];
	struct agent_frame f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_HELLO);
	assert_true(peer_idle());
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_WELCOME, 0, 0);
	agent_msg_u64(&m, AGENT_T_VERSION, AGENT_PROTOCOL_VERSION);
	peer_send(&m);
	agent_msg_free(&m);

	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_SPAWN);
	assert_int_equal(P.ch->state, CH_READY);
	uint64_t tag = u64_of(&f, AGENT_T_TAG);
	assert_int_equal(u64_of(&f, AGENT_T_WINDOW), 1024);
	const uint8_t *d;
	uint32_t dl;
	assert_int_equal(agent_frame_bytes(&f, AGENT_T_CWD, &d, &dl), 0);
	assert_memory_equal(d, "/workspace", dl);
	assert_int_equal(agent_frame_bytes(&f, AGENT_T_USER, &d, &dl), 0);
	assert_memory_equal(d, "sandbox", dl);
	int nargv = 0;
	struct agent_field_iter it;
	struct agent_field fl;
	agent_fields_begin(&it, &f);
	while (agent_fields_next(&it, &fl) == 1)
		nargv += fl.tag == AGENT_T_ARGV;
	assert_int_equal(nargv, 3);

	/* a second spawn while ready goes out at once, under a new tag */
	struct rec r2 = { 0 };
	spawn(&r2, "/bin/true", 0);
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_SPAWN);
	uint64_t tag2 = u64_of(&f, AGENT_T_TAG);
	assert_true(tag2 != tag);

	/* replies out of order, each to its own sub */
	peer_started(9, tag2);
	peer_started(7, tag);
	peer_output(7, tag, 0, "hi\n", 0);
	peer_stderr("relay: a warning\n");
	peer_output(7, tag, 3, "yo\n", 0);
	peer_exited(7, tag, 3);
	SPIN_UNTIL(r.exited == 1);
	assert_int_equal(r.started, 1);
	assert_int_equal(r.cmd_id, 7);
	assert_int_equal(r.out_len, 6);
	assert_memory_equal(r.out, "hi\nyo\n", 6);
	assert_int_equal(r.exit_code, 3);
	assert_int_equal(r.errors, 0);
	assert_int_equal(r2.started, 1);
	assert_int_equal(r2.cmd_id, 9);
	/* finished and detached subs are gone */
	assert_true(TAILQ_EMPTY(&P.ch->subs));
}

static void test_spawn_failed_and_error_by_tag(void **state)
{
	struct rec r = { 0 }, r2 = { 0 };
	spawn(&r, "/nope", 64);
	peer_welcome(AGENT_PROTOCOL_VERSION);
	uint8_t buf[4096];
	struct agent_frame f = peer_recv(buf, sizeof(buf));
	uint64_t tag = u64_of(&f, AGENT_T_TAG);
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_SPAWN_FAILED, 0, 0);
	agent_msg_u64(&m, AGENT_T_TAG, tag);
	agent_msg_u64(&m, AGENT_T_CODE, ENOENT);
	agent_msg_str(&m, AGENT_T_MESSAGE, "/nope: No such file or directory");
	peer_send(&m);
	SPIN_UNTIL(r.errors == 1);
	assert_int_equal(r.err_code, ENOENT);
	assert_string_equal(r.err, "/nope: No such file or directory");
	assert_int_equal(r.started, 0);

	/* a subscription to an unknown command: ERROR by its tag */
	r2.sub = agent_subscribe(P.ch, 42, 0, 64, &rec_ops, &r2);
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_SUBSCRIBE);
	assert_int_equal(f.id, 42);
	agent_msg_begin(&m, AGENT_ERROR, 0, 42);
	agent_msg_u64(&m, AGENT_T_TAG, u64_of(&f, AGENT_T_TAG));
	agent_msg_u64(&m, AGENT_T_CODE, ESRCH);
	agent_msg_str(&m, AGENT_T_MESSAGE, "unknown command");
	peer_send(&m);
	agent_msg_free(&m);
	SPIN_UNTIL(r2.errors == 1);
	assert_string_equal(r2.err, "unknown command");
}

struct list_rec {
	int calls;
	size_t n;
	uint32_t ids[4];
	bool running[4];
	int exit1;
	char err[128];
	char service0[AGENT_SERVICE_ID_MAX + 1]; /* the first one's service fields */
	int port0;
	bool ready0;
};

static void list_cb(const struct agent_status *list, size_t n, const char *err, void *arg)
{
	struct list_rec *l = arg;
	l->calls++;
	l->n = n;
	for (size_t i = 0; i < n && i < 4; i++) {
		l->ids[i] = list[i].id;
		l->running[i] = list[i].running;
	}
	if (n > 1)
		l->exit1 = list[1].exit.exit_code;
	if (n > 0) {
		snprintf(l->service0, sizeof(l->service0), "%s", list[0].service);
		l->port0 = list[0].port;
		l->ready0 = list[0].ready;
	}
	snprintf(l->err, sizeof(l->err), "%s", err ? err : "");
}

static void test_list_and_simple_requests(void **state)
{
	struct list_rec l = { 0 };
	agent_list(P.ch, list_cb, &l);
	agent_signal(P.ch, 5, 15);
	peer_welcome(AGENT_PROTOCOL_VERSION);
	uint8_t buf[4096];
	struct agent_frame f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_LIST);
	uint64_t tag = u64_of(&f, AGENT_T_TAG);
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_SIGNAL);
	assert_int_equal(f.id, 5);
	assert_int_equal(u64_of(&f, AGENT_T_SIGNO), 15);

	agent_stdin(P.ch, 5, "abc", 3);
	agent_stdin_close(P.ch, 5);
	agent_resize(P.ch, 5, 40, 120);
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_STDIN);
	const uint8_t *d;
	uint32_t dl;
	assert_int_equal(agent_frame_bytes(&f, AGENT_T_DATA, &d, &dl), 0);
	assert_memory_equal(d, "abc", 3);
	assert_int_equal(peer_recv(buf, sizeof(buf)).type, AGENT_STDIN_CLOSE);
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_RESIZE);
	assert_int_equal(u64_of(&f, AGENT_T_PTY_COLS), 120);

	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_STATUS, 0, 3);
	agent_msg_u64(&m, AGENT_T_TAG, tag);
	agent_msg_u64(&m, AGENT_T_STATE, AGENT_CMD_RUNNING);
	peer_send(&m);
	agent_msg_begin(&m, AGENT_STATUS, 0, 4);
	agent_msg_u64(&m, AGENT_T_TAG, tag);
	agent_msg_u64(&m, AGENT_T_STATE, AGENT_CMD_EXITED);
	agent_msg_u64(&m, AGENT_T_EXIT_CODE, 137);
	peer_send(&m);
	agent_msg_begin(&m, AGENT_LIST_END, 0, 0);
	agent_msg_u64(&m, AGENT_T_TAG, tag);
	peer_send(&m);
	agent_msg_free(&m);
	SPIN_UNTIL(l.calls == 1);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.ids[0], 3);
	assert_true(l.running[0]);
	assert_false(l.running[1]);
	assert_int_equal(l.exit1, 137);
	assert_string_equal(l.err, "");
}

static void test_ack(void **state)
{
	struct rec r = { 0 };
	spawn(&r, "/bin/cat", 4);
	peer_welcome(AGENT_PROTOCOL_VERSION);
	uint8_t buf[4096];
	struct agent_frame f = peer_recv(buf, sizeof(buf));
	uint64_t tag = u64_of(&f, AGENT_T_TAG);
	peer_started(1, tag);
	peer_output(1, tag, 0, "abcd", 0);
	SPIN_UNTIL(r.out_len == 4);
	agent_sub_ack(r.sub, 4);
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_ACK);
	assert_int_equal(f.id, 1);
	assert_int_equal(u64_of(&f, AGENT_T_TAG), tag);
	assert_int_equal(u64_of(&f, AGENT_T_OFFSET), 4);
	assert_int_equal(agent_channel_pending(P.ch), 0);
	/* quiet: one ACK of everything, saying QUIET (an older agent reads the ACK) */
	agent_sub_quiet(r.sub);
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_ACK);
	assert_int_equal(u64_of(&f, AGENT_T_TAG), tag);
	assert_true(u64_of(&f, AGENT_T_OFFSET) == UINT64_MAX);
	assert_int_equal(u64_of(&f, AGENT_T_QUIET), 1);
	agent_sub_quiet(r.sub);
	assert_true(peer_idle()); /* once */
	/* closing unsubscribes */
	agent_sub_close(r.sub);
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_UNSUBSCRIBE);
	assert_int_equal(u64_of(&f, AGENT_T_TAG), tag);
	assert_true(TAILQ_EMPTY(&P.ch->subs));
	/* late output for it is ignored */
	peer_output(1, tag, 4, "efgh", 0);
	spin_ms(20);
	assert_int_equal(r.out_len, 4);
}

static void test_reconnect_resumes(void **state)
{
	struct rec a = { 0 }, b = { 0 };
	spawn(&a, "/bin/a", 1024);
	peer_welcome(AGENT_PROTOCOL_VERSION);
	uint8_t buf[4096];
	struct agent_frame f = peer_recv(buf, sizeof(buf));
	uint64_t tag_a = u64_of(&f, AGENT_T_TAG);
	peer_started(1, tag_a);
	peer_output(1, tag_a, 0, "abc", 0);
	SPIN_UNTIL(a.out_len == 3);
	agent_sub_quiet(a.sub); /* kept across the new stream */
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_ACK);
	assert_int_equal(u64_of(&f, AGENT_T_QUIET), 1);
	spawn(&b, "/bin/b", 1024);
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_SPAWN);

	/* the stream breaks: b never got STARTED */
	bufferevent_free(P.bev);
	P.bev = NULL;
	SPIN_UNTIL(b.errors == 1);
	assert_string_equal(b.err, "channel lost before the command started");
	assert_int_equal(a.errors, 0);
	assert_int_equal(P.connects, 1);
	SPIN_UNTIL(P.connects == 2); /* after the back-off */

	peer_welcome(AGENT_PROTOCOL_VERSION);
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_SUBSCRIBE);
	assert_int_equal(f.id, 1);
	assert_int_equal(u64_of(&f, AGENT_T_TAG), tag_a);
	assert_int_equal(u64_of(&f, AGENT_T_OFFSET), 3);
	assert_int_equal(u64_of(&f, AGENT_T_WINDOW), 1024);
	assert_int_equal(u64_of(&f, AGENT_T_QUIET), 1);
	assert_true(peer_idle()); /* b's SPAWN is not sent again */
	/* overlapping output: only the new bytes reach the consumer */
	peer_output(1, tag_a, 0, "abcdef", 0);
	SPIN_UNTIL(a.out_len == 6);
	assert_memory_equal(a.out, "abcdef", 6);
	assert_int_equal(a.last_offset, 3);
	assert_int_equal(a.gaps, 0);
	/* a cursor that fell out of the ring */
	peer_output(1, tag_a, 100, NULL, AGENT_FLAG_GAP);
	SPIN_UNTIL(a.gaps == 1);
	assert_int_equal(a.last_offset, 100);
	peer_exited(1, tag_a, 0);
	SPIN_UNTIL(a.exited == 1);
}

static void test_gives_up(void **state)
{
	struct rec r = { 0 };
	P.ch->max_attempts = 3;
	P.fail_connects = 100;
	spawn(&r, "/bin/x", 16);
	SPIN_UNTIL(r.errors == 1);
	assert_int_equal(P.connects, 3);
	assert_int_equal(r.err_code, ECONNREFUSED);
	assert_string_equal(r.err, "agent unreachable after 3 attempts: connection refused");
	assert_int_equal(P.ch->state, CH_IDLE);

	/* the container is gone: no retries at all */
	struct rec r2 = { 0 };
	P.fail_fatal = true;
	spawn(&r2, "/bin/x", 16);
	assert_int_equal(r2.errors, 0); /* never on the caller's stack */
	SPIN_UNTIL(r2.errors == 1);
	assert_int_equal(P.connects, 4);
	assert_string_equal(r2.err, "no such container");

	/* a later request tries again */
	P.fail_fatal = false;
	P.fail_connects = 0;
	struct rec r3 = { 0 };
	spawn(&r3, "/bin/x", 16);
	peer_welcome(AGENT_PROTOCOL_VERSION);
	uint8_t buf[4096];
	assert_int_equal(peer_recv(buf, sizeof(buf)).type, AGENT_SPAWN);
}

static void test_version_mismatch(void **state)
{
	struct rec r = { 0 };
	spawn(&r, "/bin/x", 16);
	peer_welcome(AGENT_PROTOCOL_VERSION + 1);
	SPIN_UNTIL(r.errors == 1);
	assert_non_null(strstr(r.err, "protocol version"));
	assert_int_equal(P.connects, 1);
}

static void test_close_inside_callbacks(void **state)
{
	struct rec a = { 0 }, b = { 0 };
	a.close_on_output = true;
	spawn(&a, "/bin/a", 1024);
	spawn(&b, "/bin/b", 1024);
	peer_welcome(AGENT_PROTOCOL_VERSION);
	uint8_t buf[4096];
	uint64_t tag_a = u64_of((struct agent_frame[]){ peer_recv(buf, sizeof(buf)) }, AGENT_T_TAG);
	uint64_t tag_b = u64_of((struct agent_frame[]){ peer_recv(buf, sizeof(buf)) }, AGENT_T_TAG);
	peer_started(1, tag_a);
	peer_started(2, tag_b);
	peer_output(1, tag_a, 0, "x", 0);
	peer_output(1, tag_a, 1, "y", 0);
	peer_output(2, tag_b, 0, "z", 0);
	SPIN_UNTIL(b.out_len == 1);
	assert_int_equal(a.out_len, 1); /* nothing after the close */
	assert_int_equal(peer_recv(buf, sizeof(buf)).type, AGENT_UNSUBSCRIBE);

	/* the whole channel closed from inside a callback: b gets its error, then it is freed */
	b.close_channel_on_output = true;
	peer_output(2, tag_b, 1, "w", 0);
	SPIN_UNTIL(b.errors == 1);
	assert_string_equal(b.err, "sandbox gone");
	spin_ms(10);
	P.ch = NULL; /* freed by the channel itself */
}

static void test_queue_bound(void **state)
{
	/* requests wait while the agent is not answering; the queue is bounded */
	size_t big = 900 * 1024;
	char *arg = malloc(big + 1);
	memset(arg, 'a', big);
	arg[big] = '\0';
	struct rec r[6];
	memset(r, 0, sizeof(r));
	for (int i = 0; i < 6; i++)
		spawn(&r[i], arg, 16);
	free(arg);
	assert_int_equal(r[4].errors, 0);
	spin_ms(5);
	assert_int_equal(r[0].errors, 0);
	assert_int_equal(r[4].errors, 1);
	assert_int_equal(r[4].err_code, ENOBUFS);
	assert_int_equal(r[5].errors, 1);
	assert_true(agent_channel_pending(P.ch) > 3 * big);
}

/* ---- services ---- */

struct unservice_rec {
	int calls, code, pid;
	bool kept;
	char err[128];
};

static void unservice_cb(int code, const char *err, bool kept, int pid, void *arg)
{
	struct unservice_rec *u = arg;
	u->calls++;
	u->code = code;
	u->kept = kept;
	u->pid = pid;
	snprintf(u->err, sizeof(u->err), "%s", err ? err : "");
}

static struct agent_sub *spawn_service(struct rec *r, const char *id, int port)
{
	const char *argv[] = { "server", NULL };
	struct agent_spawn_req req = { .argv = argv, .window = 64, .service = id, .port = port };
	r->sub = agent_spawn(P.ch, &req, &rec_ops, r);
	return r->sub;
}

/* An agent without services: a service's SPAWN, held until WELCOME, and an
 * UNSERVICE are refused, and nothing of them reaches it. */
static void test_services_refused_by_an_older_agent(void **state)
{
	struct rec r = { 0 };
	struct unservice_rec u = { 0 };
	spawn_service(&r, "svc-1", 8000);
	agent_unservice(P.ch, "svc-1", unservice_cb, &u);
	peer_welcome_as(AGENT_PROTOCOL_VERSION, AGENT_FEATURE_FS, 1);
	SPIN_UNTIL(r.errors == 1 && u.calls == 1);
	assert_int_equal(r.err_code, ENOTSUP);
	assert_int_equal(u.code, ENOTSUP);
	assert_non_null(strstr(u.err, "predates services"));
	assert_true(peer_idle());
	/* and once ready, at once */
	struct rec r2 = { 0 };
	spawn_service(&r2, "svc-2", 0);
	SPIN_UNTIL(r2.errors == 1);
	assert_int_equal(r2.err_code, ENOTSUP);
	assert_true(peer_idle());
}

/* An agent with services: the held SPAWN carries SERVICE and PORT, STATUS's
 * service fields are read, UNSERVICE is answered by UNSERVICED or ERROR, and
 * a service's SPAWN closed before READY is never sent. */
static void test_services_sent_and_listed(void **state)
{
	struct rec r = { 0 }, gone = { 0 };
	struct unservice_rec u = { 0 }, u2 = { 0 };
	struct list_rec l = { 0 };
	spawn_service(&r, "svc-1", 8000);
	spawn_service(&gone, "svc-gone", 0);
	agent_sub_close(gone.sub);
	peer_welcome_as(AGENT_PROTOCOL_VERSION, AGENT_FEATURE_SERVICES, 1);
	uint8_t buf[4096];
	struct agent_frame f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_SPAWN);
	const uint8_t *d;
	uint32_t dl;
	assert_int_equal(agent_frame_bytes(&f, AGENT_T_SERVICE, &d, &dl), 0);
	assert_memory_equal(d, "svc-1", dl);
	assert_int_equal(u64_of(&f, AGENT_T_PORT), 8000);
	uint64_t tag = u64_of(&f, AGENT_T_TAG);
	assert_true(peer_idle()); /* svc-gone: neither SPAWN nor UNSUBSCRIBE */
	peer_started(3, tag);
	SPIN_UNTIL(r.started == 1);

	agent_list(P.ch, list_cb, &l);
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_LIST);
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_STATUS, 0, 3);
	agent_msg_u64(&m, AGENT_T_TAG, u64_of(&f, AGENT_T_TAG));
	agent_msg_u64(&m, AGENT_T_STATE, AGENT_CMD_RUNNING);
	agent_msg_str(&m, AGENT_T_SERVICE, "svc-1");
	agent_msg_u64(&m, AGENT_T_PORT, 8000);
	agent_msg_u64(&m, AGENT_T_READY, 1);
	peer_send(&m);
	agent_msg_begin(&m, AGENT_LIST_END, 0, 0);
	agent_msg_u64(&m, AGENT_T_TAG, u64_of(&f, AGENT_T_TAG));
	peer_send(&m);
	SPIN_UNTIL(l.calls == 1);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.service0, "svc-1");
	assert_int_equal(l.port0, 8000);
	assert_true(l.ready0);

	agent_unservice(P.ch, "svc-1", unservice_cb, &u);
	agent_unservice(P.ch, "svc-x", unservice_cb, &u2);
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_UNSERVICE);
	assert_int_equal(agent_frame_bytes(&f, AGENT_T_SERVICE, &d, &dl), 0);
	assert_memory_equal(d, "svc-1", dl);
	agent_msg_begin(&m, AGENT_UNSERVICED, 0, 0);
	agent_msg_u64(&m, AGENT_T_TAG, u64_of(&f, AGENT_T_TAG));
	agent_msg_u64(&m, AGENT_T_COUNT, 1);
	agent_msg_u64(&m, AGENT_T_PID, 103);
	peer_send(&m);
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_UNSERVICE);
	agent_msg_begin(&m, AGENT_ERROR, 0, 0);
	agent_msg_u64(&m, AGENT_T_TAG, u64_of(&f, AGENT_T_TAG));
	agent_msg_u64(&m, AGENT_T_CODE, EINVAL);
	agent_msg_str(&m, AGENT_T_MESSAGE, "bad SERVICE");
	peer_send(&m);
	agent_msg_free(&m);
	SPIN_UNTIL(u.calls == 1 && u2.calls == 1);
	assert_int_equal(u.code, 0);
	assert_string_equal(u.err, "");
	assert_true(u.kept);
	assert_int_equal(u.pid, 103);
	assert_int_equal(u2.code, EINVAL);
	assert_string_equal(u2.err, "bad SERVICE");
	assert_false(u2.kept);
}

static void reset_cb(const char *sandbox_id, void *arg)
{
	(*(int *)arg)++;
}

/* A reconnect that meets an agent started again tells the reset listener;
 * the same agent again does not. */
static void test_reset_on_a_restarted_agent(void **state)
{
	int resets = 0;
	struct channels *chs = channels_new(P.base, NULL);
	channels_on_reset(chs, reset_cb, &resets);
	P.ch->chs = chs;
	struct list_rec l = { 0 };
	uint8_t buf[4096];
	for (int i = 0; i < 3; i++) {
		agent_list(P.ch, list_cb, &l);
		peer_welcome_as(AGENT_PROTOCOL_VERSION, 0, i < 2 ? 1 : 2);
		struct agent_frame f = peer_recv(buf, sizeof(buf));
		assert_int_equal(f.type, AGENT_LIST);
		struct agent_msg m;
		agent_msg_init(&m);
		agent_msg_begin(&m, AGENT_LIST_END, 0, 0);
		agent_msg_u64(&m, AGENT_T_TAG, u64_of(&f, AGENT_T_TAG));
		peer_send(&m);
		agent_msg_free(&m);
		SPIN_UNTIL(l.calls == i + 1);
		bufferevent_free(P.bev); /* the stream breaks */
		P.bev = NULL;
		SPIN_UNTIL(P.ch->state == CH_IDLE);
	}
	assert_int_equal(resets, 1);
	channels_drop(chs, "00000000-0000-0000-0000-00000000abcd"); /* no channel: heard all the same */
	assert_int_equal(resets, 2);
	P.ch->chs = NULL;
	channels_free(chs);
}

/* A reconnect that meets another agent: its command 1 is not the old one's,
 * so the old subscription fails rather than subscribe to it, and a signal
 * queued for the old command is not sent to the new one. */
static void test_restarted_agent_fails_old_subscriptions(void **state)
{
	struct rec a = { 0 };
	spawn(&a, "/bin/a", 1024);
	peer_welcome_as(AGENT_PROTOCOL_VERSION, 0, 1);
	uint8_t buf[4096];
	struct agent_frame f = peer_recv(buf, sizeof(buf));
	uint64_t tag_a = u64_of(&f, AGENT_T_TAG);
	peer_started(1, tag_a);
	peer_output(1, tag_a, 0, "abc", 0);
	SPIN_UNTIL(a.out_len == 3);

	bufferevent_free(P.bev); /* the stream breaks */
	P.bev = NULL;
	SPIN_UNTIL(P.connects == 2);
	agent_signal(P.ch, 1, 15); /* queued: about the old agent's command 1 */
	struct rec b = { 0 };
	spawn(&b, "/bin/b", 1024); /* queued: for whichever agent answers */
	peer_welcome_as(AGENT_PROTOCOL_VERSION, 0, 2);
	SPIN_UNTIL(a.errors == 1);
	assert_int_equal(a.err_code, ESRCH);
	assert_string_equal(a.err, "the agent restarted");
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_SPAWN); /* no SUBSCRIBE to 1, no SIGNAL */
	assert_true(peer_idle());
	peer_started(1, u64_of(&f, AGENT_T_TAG));
	peer_output(1, tag_a, 3, "def", 0); /* the new command 1 reaches nobody by the old tag */
	SPIN_UNTIL(b.started == 1);
	spin_ms(20);
	assert_int_equal(a.out_len, 3);
	assert_int_equal(a.exited, 0);
}

/* ---- TCP streams ---- */

struct tcprec {
	int opened, ends, writable, closed, close_code;
	char closed_msg[256];
	uint8_t data[1 << 16];
	size_t data_len;
	struct agent_tcp *t;
	bool close_on_data;
};

static void tr_opened(void *arg)
{
	((struct tcprec *)arg)->opened++;
}

static void tr_data(void *arg, const uint8_t *data, size_t len)
{
	struct tcprec *r = arg;
	memcpy(r->data + r->data_len, data, len);
	r->data_len += len;
	if (r->close_on_data)
		agent_tcp_close(r->t);
}

static void tr_end(void *arg)
{
	((struct tcprec *)arg)->ends++;
}

static void tr_writable(void *arg)
{
	((struct tcprec *)arg)->writable++;
}

static void tr_closed(void *arg, int code, const char *message)
{
	struct tcprec *r = arg;
	r->closed++;
	r->close_code = code;
	snprintf(r->closed_msg, sizeof(r->closed_msg), "%s", message);
}

static const struct agent_tcp_ops tr_ops = { tr_opened, tr_data, tr_end, tr_writable, tr_closed };

static void peer_tcp(uint8_t type, uint64_t tag, const void *data, size_t len, uint64_t offset, int code)
{
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, type, 0, 0);
	agent_msg_u64(&m, AGENT_T_TAG, tag);
	if (type == AGENT_TCP_OPENED)
		agent_msg_u64(&m, AGENT_T_WINDOW, offset);
	if (data)
		agent_msg_bytes(&m, AGENT_T_DATA, data, len);
	if (type == AGENT_TCP_ACK)
		agent_msg_u64(&m, AGENT_T_OFFSET, offset);
	if (code)
		agent_msg_u64(&m, AGENT_T_CODE, (uint64_t)code);
	peer_send(&m);
	agent_msg_free(&m);
}

/* Held until READY; DATA both ways under the windows (the writer told to
 * pause, then writable); ACKs as the consumer takes bytes; SHUTs; a clean
 * CLOSE. */
static void test_tcp_stream(void **state)
{
	static uint8_t buf[AGENT_TCP_WINDOW + 4096];
	struct tcprec r = { 0 };
	r.t = agent_tcp_open(P.ch, 8001, 1000, &tr_ops, &r);
	/* written before it opened: queued */
	assert_int_equal(agent_tcp_write(r.t, "early", 5), 0);
	peer_welcome_as(AGENT_PROTOCOL_VERSION, AGENT_FEATURE_TCP, 1);
	struct agent_frame f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_TCP_OPEN);
	uint64_t tag = u64_of(&f, AGENT_T_TAG);
	assert_int_equal(u64_of(&f, AGENT_T_PORT), 8001);
	assert_int_equal(u64_of(&f, AGENT_T_WINDOW), 1000);
	assert_true(peer_idle());			/* no DATA before TCP_OPENED */
	peer_tcp(AGENT_TCP_OPENED, tag, NULL, 0, 8, 0); /* the agent takes 8 bytes at a time */
	SPIN_UNTIL(r.opened == 1);
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_TCP_DATA);
	const uint8_t *d;
	uint32_t len;
	assert_int_equal(agent_frame_bytes(&f, AGENT_T_DATA, &d, &len), 0);
	assert_int_equal(len, 5);
	assert_int_equal(agent_tcp_write(r.t, "0123456789", 10), 0);
	f = peer_recv(buf, sizeof(buf)); /* 3 bytes: the window's rest */
	assert_int_equal(agent_frame_bytes(&f, AGENT_T_DATA, &d, &len), 0);
	assert_int_equal(len, 3);
	assert_true(peer_idle());
	/* a writer past AGENT_TCP_WINDOW queued is told to stop */
	static uint8_t big[AGENT_TCP_WINDOW];
	assert_int_equal(agent_tcp_write(r.t, big, sizeof(big)), 1);
	peer_tcp(AGENT_TCP_ACK, tag, NULL, 0, 8, 0);
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(agent_frame_bytes(&f, AGENT_T_DATA, &d, &len), 0);
	assert_int_equal(len, 8);    /* the rest of the ten, one of the big write */
	SPIN_UNTIL(r.writable == 1); /* under the mark again */

	/* from the app: acked once the consumer took a quarter of our window */
	peer_tcp(AGENT_TCP_DATA, tag, big, 200, 0, 0);
	peer_tcp(AGENT_TCP_DATA, tag, big, 100, 0, 0);
	SPIN_UNTIL(r.data_len == 300);
	agent_tcp_consumed(r.t, 200); /* under a quarter of 1000, more unconsumed: no ACK */
	assert_true(peer_idle());
	agent_tcp_consumed(r.t, 50);
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_TCP_ACK);
	assert_int_equal(u64_of(&f, AGENT_T_OFFSET), 250);
	agent_tcp_consumed(r.t, 50); /* everything: ACK */
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(u64_of(&f, AGENT_T_OFFSET), 300);

	peer_tcp(AGENT_TCP_SHUT, tag, NULL, 0, 0, 0);
	SPIN_UNTIL(r.ends == 1);
	agent_tcp_shut(r.t); /* after the queued bytes */
	assert_int_equal(agent_tcp_write(r.t, "late", 4), -1);
	assert_true(peer_idle()); /* the SHUT waits behind the queued bytes */
	peer_tcp(AGENT_TCP_CLOSE, tag, NULL, 0, 0, 0);
	SPIN_UNTIL(r.closed == 1);
	assert_int_equal(r.close_code, 0);
	SPIN_UNTIL(TAILQ_EMPTY(&P.ch->tcps));
}

/* Refused by the app, refused by an older agent, reset by a broken channel,
 * closed from inside its data callback, aborted by us. */
static void test_tcp_errors(void **state)
{
	uint8_t buf[4096];
	struct tcprec a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };
	a.t = agent_tcp_open(P.ch, 1, 0, &tr_ops, &a);
	peer_welcome_as(AGENT_PROTOCOL_VERSION, AGENT_FEATURE_TCP, 1);
	struct agent_frame f = peer_recv(buf, sizeof(buf));
	assert_int_equal(u64_of(&f, AGENT_T_WINDOW), AGENT_TCP_WINDOW);
	peer_tcp(AGENT_TCP_CLOSE, u64_of(&f, AGENT_T_TAG), NULL, 0, 0, ECONNREFUSED);
	SPIN_UNTIL(a.closed == 1);
	assert_int_equal(a.close_code, ECONNREFUSED);
	assert_int_equal(a.opened, 0);

	b.t = agent_tcp_open(P.ch, 2, 0, &tr_ops, &b);
	f = peer_recv(buf, sizeof(buf));
	uint64_t tag_b = u64_of(&f, AGENT_T_TAG);
	peer_tcp(AGENT_TCP_OPENED, tag_b, NULL, 0, 1024, 0);
	c.t = agent_tcp_open(P.ch, 3, 0, &tr_ops, &c);
	c.close_on_data = true;
	f = peer_recv(buf, sizeof(buf));
	uint64_t tag_c = u64_of(&f, AGENT_T_TAG);
	peer_tcp(AGENT_TCP_OPENED, tag_c, NULL, 0, 1024, 0);
	peer_tcp(AGENT_TCP_DATA, tag_c, "z", 1, 0, 0);
	SPIN_UNTIL(c.data_len == 1);
	f = peer_recv(buf, sizeof(buf)); /* closed from inside data: aborted at the agent */
	assert_int_equal(f.type, AGENT_TCP_CLOSE);
	assert_int_equal(u64_of(&f, AGENT_T_TAG), tag_c);
	peer_tcp(AGENT_TCP_DATA, tag_c, "late", 4, 0, 0); /* ignored */
	SPIN_UNTIL(b.opened == 1);
	assert_int_equal(c.closed, 0);
	/* our SHUT follows the queued bytes */
	assert_int_equal(agent_tcp_write(b.t, "hi", 2), 0);
	agent_tcp_shut(b.t);
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_TCP_DATA);
	f = peer_recv(buf, sizeof(buf));
	assert_int_equal(f.type, AGENT_TCP_SHUT);
	assert_int_equal(u64_of(&f, AGENT_T_TAG), tag_b);

	/* the channel breaks: the open stream is reset */
	bufferevent_free(P.bev);
	P.bev = NULL;
	SPIN_UNTIL(b.closed == 1);
	assert_int_equal(b.close_code, ECONNRESET);

	/* an agent without TCP streams */
	d.t = agent_tcp_open(P.ch, 4, 0, &tr_ops, &d);
	SPIN_UNTIL(P.connects == 2);
	peer_welcome_as(AGENT_PROTOCOL_VERSION, AGENT_FEATURE_FS, 1);
	SPIN_UNTIL(d.closed == 1);
	assert_int_equal(d.close_code, ENOTSUP);
	assert_non_null(strstr(d.closed_msg, "predates TCP streams"));
	assert_true(peer_idle());
	SPIN_UNTIL(TAILQ_EMPTY(&P.ch->tcps));
}

int main(void)
{
	log_set_level(LOG_LEVEL_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_handshake_queue_and_routing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spawn_failed_and_error_by_tag, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_and_simple_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ack, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reconnect_resumes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gives_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_version_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_inside_callbacks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_services_refused_by_an_older_agent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_services_sent_and_listed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_on_a_restarted_agent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tcp_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tcp_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restarted_agent_fails_old_subscriptions, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
