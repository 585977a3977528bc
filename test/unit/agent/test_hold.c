/* Lossless subscriptions (AGENT_T_LOSSLESS): the commands and connections
 * modules driven by a poll loop like main.c's (world.c), real children, the
 * client on the other end of a socketpair. A reader that does not ack holds
 * its command; acks, QUIET, UNSUBSCRIBE and a closed connection let it go on. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent.h"
#include "cmd.h"
#include "conn.h"
#include "ring.h"
#include "world.h"

#define RING	 8192
#define WINDOW	 4096
#define PRODUCED 300000 /* well past the ring and a pipe buffer */
#define FLOOD	 "head -c 300000 /dev/zero | tr '\\0' x"

/* What the client has seen of one command. */
struct seen {
	uint64_t got; /* contiguous bytes received */
	uint8_t last; /* the last byte, to check content */
	int gaps;
	bool exited, bad_order, timed_out;
	uint64_t exit_offset;
	int pongs;
	char pong_tag[16]; /* the TAG of the last PONG */
};

struct world {
	struct agent_world aw;
	struct seen seen;
	bool auto_ack;
};

static void on_frame(struct agent_world *aw, const struct agent_frame *f);
static void client_send(struct world *w, struct agent_msg *m);
static void client_ack(struct world *w, uint32_t id, uint64_t offset);
static void client_ack_as(struct world *w, uint32_t id, uint64_t offset, bool quiet);
static struct cmd *flood(struct world *w, bool lossless, int ms, uint32_t *id);
static uint32_t spawn(struct world *w, const char *script, bool lossless, bool pty, uint64_t timeout_ms);
static void run_for(struct world *w, int ms);
static bool run_until_exited(struct world *w, int ms);
static bool alive(pid_t pid);

/* A frame from the agent: output must be contiguous; acks when auto_ack. */
static void on_frame(struct agent_world *aw, const struct agent_frame *f)
{
	struct world *w = (struct world *)aw;
	uint64_t off = 0, v = 0;
	const uint8_t *data = NULL;
	uint32_t len = 0;
	if (f->type == AGENT_OUTPUT && (f->flags & AGENT_FLAG_GAP)) {
		w->seen.gaps++;
		assert_int_equal(agent_frame_u64(f, AGENT_T_OFFSET, &off), 0);
		w->seen.got = off;
	} else if (f->type == AGENT_OUTPUT) {
		assert_int_equal(agent_frame_u64(f, AGENT_T_OFFSET, &off), 0);
		assert_int_equal(agent_frame_bytes(f, AGENT_T_DATA, &data, &len), 0);
		w->seen.bad_order |= w->seen.exited || off != w->seen.got;
		w->seen.got = off + len;
		if (len)
			w->seen.last = data[len - 1];
		if (w->auto_ack)
			client_ack(w, f->id, w->seen.got);
	} else if (f->type == AGENT_EXITED) {
		w->seen.exited = true;
		assert_int_equal(agent_frame_u64(f, AGENT_T_OFFSET, &w->seen.exit_offset), 0);
		assert_int_equal(agent_frame_u64(f, AGENT_T_TIMED_OUT, &v), 0);
		w->seen.timed_out = v != 0;
	} else if (f->type == AGENT_PONG) {
		w->seen.pongs++;
		assert_int_equal(agent_frame_bytes(f, AGENT_T_TAG, &data, &len), 0);
		assert_true(len < sizeof(w->seen.pong_tag));
		memcpy(w->seen.pong_tag, data, len);
		w->seen.pong_tag[len] = '\0';
	} else {
		assert_int_equal(f->type, AGENT_STARTED);
	}
}

static void client_send(struct world *w, struct agent_msg *m)
{
	world_send(&w->aw, m); /* through the agent's own dispatch, as conn_read would */
}

static void client_ack(struct world *w, uint32_t id, uint64_t offset)
{
	client_ack_as(w, id, offset, false);
}

static void client_ack_as(struct world *w, uint32_t id, uint64_t offset, bool quiet)
{
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_ACK, 0, id);
	agent_msg_str(&m, AGENT_T_TAG, "t");
	agent_msg_u64(&m, AGENT_T_OFFSET, offset);
	if (quiet)
		agent_msg_u64(&m, AGENT_T_QUIET, 1);
	client_send(w, &m);
}

/* A world running FLOOD (lossless or not) for ms; its command. */
static struct cmd *flood(struct world *w, bool lossless, int ms, uint32_t *id)
{
	world_open(&w->aw, on_frame);
	*id = spawn(w, FLOOD, lossless, false, 0);
	struct cmd *c = cmd_find(&w->aw.a, *id);
	run_for(w, ms);
	return c;
}

static uint32_t spawn(struct world *w, const char *script, bool lossless, bool pty, uint64_t timeout_ms)
{
	struct agent_msg m;
	world_spawn_sh(&m, "t", script);
	agent_msg_str(&m, AGENT_T_ENV, "PATH=/usr/bin:/bin");
	agent_msg_u64(&m, AGENT_T_RING_BYTES, RING);
	agent_msg_u64(&m, AGENT_T_WINDOW, WINDOW);
	agent_msg_u64(&m, AGENT_T_LOSSLESS, lossless);
	if (timeout_ms) {
		agent_msg_u64(&m, AGENT_T_TIMEOUT_MS, timeout_ms);
		agent_msg_u64(&m, AGENT_T_GRACE_MS, 100);
	}
	if (pty) {
		agent_msg_u64(&m, AGENT_T_PTY_ROWS, 24);
		agent_msg_u64(&m, AGENT_T_PTY_COLS, 80);
	}
	uint32_t before = w->aw.a.next_id;
	client_send(w, &m);
	assert_int_equal(w->aw.a.next_id, before + 1);
	return before;
}

static void run_for(struct world *w, int ms)
{
	int64_t until = agent_mono_ms() + ms;
	while (agent_mono_ms() < until)
		world_pass(&w->aw, 10);
}

static bool run_until_exited(struct world *w, int ms)
{
	int64_t until = agent_mono_ms() + ms;
	while (!w->seen.exited && agent_mono_ms() < until)
		world_pass(&w->aw, 10);
	return w->seen.exited;
}

static bool alive(pid_t pid)
{
	return kill(pid, 0) == 0;
}

/* Without acks the producer stops at a full ring; acks let every byte through. */
static void hold_and_release(bool pty)
{
	struct world w = { 0 };
	world_open(&w.aw, on_frame);
	uint32_t id = spawn(&w, FLOOD, true, pty, 0);
	struct cmd *c = cmd_find(&w.aw.a, id);
	run_for(&w, 300);
	assert_true(cmd_paused(c));
	assert_int_equal(c->state, CMD_RUNNING);
	assert_true(alive(c->pid));
	assert_int_equal(ring_start(c->ring), 0); /* nothing dropped */
	assert_int_equal(ring_end(c->ring), RING);
	assert_int_equal(w.seen.got, WINDOW); /* the window's worth, then silence */
	assert_false(w.seen.exited);
	assert_int_equal(w.seen.gaps, 0);
	w.auto_ack = true;
	client_ack(&w, id, w.seen.got);
	assert_true(run_until_exited(&w, 10000));
	assert_int_equal(w.seen.gaps, 0);
	assert_false(w.seen.bad_order);
	assert_int_equal(w.seen.got, PRODUCED);
	assert_int_equal(w.seen.exit_offset, PRODUCED);
	assert_int_equal(w.seen.last, 'x');
	world_close(&w.aw);
}

static void test_hold_and_release_pipes(void **state)
{
	(void)state;
	hold_and_release(false);
}

static void test_hold_and_release_pty(void **state)
{
	(void)state;
	hold_and_release(true);
}

/* The default keeps ring semantics: the command runs to its end, the reader
 * gets a gap. */
static void test_not_lossless_runs_free(void **state)
{
	(void)state;
	struct world w = { 0 };
	uint32_t id;
	struct cmd *c = flood(&w, false, 100, &id);
	for (int i = 0; i < 300 && c->state != CMD_EXITED; i++)
		world_pass(&w.aw, 10);
	assert_int_equal(c->state, CMD_EXITED);
	assert_int_equal(c->keepers, 0);
	w.auto_ack = true;
	client_ack(&w, id, w.seen.got);
	assert_true(run_until_exited(&w, 5000));
	assert_true(w.seen.gaps >= 1); /* each time it fell a ring behind */
	assert_int_equal(w.seen.got, PRODUCED);
	world_close(&w.aw);
}

/* A reader that says QUIET (nobody reads the output any more) holds nothing
 * and gets no more OUTPUT, whatever the command writes, but its EXITED, with
 * the offset the output reached, as soon as the command ends. */
static void test_quiet_reader_gets_only_the_exit(void **state)
{
	(void)state;
	struct world w = { 0 };
	uint32_t id;
	struct cmd *c = flood(&w, true, 200, &id);
	assert_true(cmd_paused(c));
	assert_int_equal(w.seen.got, WINDOW);
	client_ack_as(&w, id, UINT64_MAX, true);
	assert_int_equal(c->keepers, 0);
	assert_false(cmd_paused(c));
	assert_true(run_until_exited(&w, 10000));
	assert_int_equal(w.seen.got, WINDOW); /* not one byte more */
	assert_int_equal(w.seen.gaps, 0);
	assert_int_equal(w.seen.exit_offset, PRODUCED);
	world_close(&w.aw);
}

/* A reader that goes away holds nothing: UNSUBSCRIBE, or its connection. */
static void test_vanished_reader_releases(void **state)
{
	(void)state;
	for (int how = 0; how < 2; how++) {
		struct world w = { 0 };
		uint32_t id;
		struct cmd *c = flood(&w, true, 200, &id);
		assert_true(cmd_paused(c));
		if (how == 0) {
			struct agent_msg m;
			agent_msg_init(&m);
			agent_msg_begin(&m, AGENT_UNSUBSCRIBE, 0, id);
			agent_msg_str(&m, AGENT_T_TAG, "t");
			client_send(&w, &m);
		} else {
			conn_free_all(&w.aw.a); /* as when the peer closes: reaped after the pass */
			w.aw.conn = NULL;
		}
		assert_int_equal(c->keepers, 0);
		assert_false(cmd_paused(c));
		for (int i = 0; i < 500 && c->state != CMD_EXITED; i++)
			world_pass(&w.aw, 10);
		assert_int_equal(c->state, CMD_EXITED);
		assert_int_equal(ring_end(c->ring), PRODUCED);
		world_close(&w.aw);
	}
}

/* The timeout fires while held; EXITED still waits for the last byte. */
static void test_timeout_while_paused(void **state)
{
	(void)state;
	struct world w = { 0 };
	world_open(&w.aw, on_frame);
	uint32_t id = spawn(&w, "head -c 300000 /dev/zero | tr '\\0' x; sleep 100", true, false, 300);
	struct cmd *c = cmd_find(&w.aw.a, id);
	pid_t pid = c->pid;
	run_for(&w, 200);
	assert_true(cmd_paused(c));
	run_for(&w, 400);
	assert_true(c->timed_out);
	assert_int_equal(c->state, CMD_DRAINING); /* killed, reaped, output still held */
	assert_false(alive(pid));
	assert_false(w.seen.exited);
	run_for(&w, 300); /* the drain grace does not run out while held */
	assert_int_equal(c->state, CMD_DRAINING);
	w.auto_ack = true;
	client_ack(&w, id, w.seen.got);
	assert_true(run_until_exited(&w, 5000));
	assert_true(w.seen.timed_out);
	assert_int_equal(w.seen.gaps, 0);
	assert_false(w.seen.bad_order);
	assert_int_equal(w.seen.got, w.seen.exit_offset);
	world_close(&w.aw);
}

/* One held command never stalls another one, nor the connection: a PING
 * gets its PONG while the command is still held. */
static void test_others_go_on(void **state)
{
	(void)state;
	struct world w = { 0 };
	world_open(&w.aw, on_frame);
	uint32_t held = spawn(&w, FLOOD, true, false, 0);
	run_for(&w, 200);
	struct agent_msg m;
	world_spawn_sh(&m, "other", "head -c 300000 /dev/zero");
	agent_msg_u64(&m, AGENT_T_RING_BYTES, RING);
	uint32_t other = w.aw.a.next_id;
	client_send(&w, &m);
	struct cmd *o = cmd_find(&w.aw.a, other);
	for (int i = 0; i < 500 && o->state != CMD_EXITED; i++)
		world_pass(&w.aw, 10);
	assert_int_equal(o->state, CMD_EXITED);
	assert_true(cmd_paused(cmd_find(&w.aw.a, held)));
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_PING, 0, 0);
	agent_msg_str(&m, AGENT_T_TAG, "ping-1");
	client_send(&w, &m);
	for (int i = 0; i < 500 && w.seen.pongs == 0; i++)
		world_pass(&w.aw, 10);
	assert_int_equal(w.seen.pongs, 1);
	assert_string_equal(w.seen.pong_tag, "ping-1");
	assert_true(cmd_paused(cmd_find(&w.aw.a, held)));
	world_close(&w.aw);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hold_and_release_pipes),
		cmocka_unit_test(test_hold_and_release_pty),
		cmocka_unit_test(test_not_lossless_runs_free),
		cmocka_unit_test(test_quiet_reader_gets_only_the_exit),
		cmocka_unit_test(test_vanished_reader_releases),
		cmocka_unit_test(test_timeout_while_paused),
		cmocka_unit_test(test_others_go_on),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
