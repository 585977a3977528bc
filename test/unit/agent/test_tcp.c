/* TCP streams in the agent (src/agent/tcp.c), driven in-process like
 * test_service.c: the connection and TCP modules and a poll loop like
 * main.c's, against a listener of the test's on loopback. A stream opens,
 * carries bytes both ways under the windows, passes half-closes on and ends
 * with a clean TCP_CLOSE; a refused port, the stream limit, a peer that sends
 * past the window and a dropped connection end it with a code. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent.h"
#include "conn.h"
#include "world.h"

struct world {
	struct agent_world aw;
	int opened, closed, shut;
	uint64_t close_code, window, acked;
	uint8_t *data; /* TCP_DATA bytes of stream "s" */
	size_t data_len;
	char last_tag[16];
};

static void on_frame(struct agent_world *aw, const struct agent_frame *f)
{
	struct world *w = (struct world *)aw;
	const uint8_t *d;
	uint32_t len;
	uint64_t v;
	if (agent_frame_bytes(f, AGENT_T_TAG, &d, &len) == 0 && len < sizeof(w->last_tag)) {
		memcpy(w->last_tag, d, len);
		w->last_tag[len] = '\0';
	}
	switch (f->type) {
	case AGENT_TCP_OPENED:
		w->opened++;
		assert_int_equal(agent_frame_u64(f, AGENT_T_WINDOW, &w->window), 0);
		break;
	case AGENT_TCP_CLOSE:
		w->closed++;
		w->close_code = agent_frame_u64(f, AGENT_T_CODE, &v) == 0 ? v : 0;
		break;
	case AGENT_TCP_SHUT:
		w->shut++;
		break;
	case AGENT_TCP_ACK:
		assert_int_equal(agent_frame_u64(f, AGENT_T_OFFSET, &w->acked), 0);
		break;
	case AGENT_TCP_DATA:
		assert_int_equal(agent_frame_bytes(f, AGENT_T_DATA, &d, &len), 0);
		w->data = realloc(w->data, w->data_len + len + 1);
		assert_non_null(w->data);
		memcpy(w->data + w->data_len, d, len);
		w->data_len += len;
		break;
	default:
		fail_msg("unexpected %s", agent_msg_type_name(f->type));
	}
}

static void send_tcp(struct world *w, uint8_t type, const char *tag, uint16_t port, const void *data,
		     size_t len, uint64_t offset, uint64_t window)
{
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, type, 0, 0);
	agent_msg_str(&m, AGENT_T_TAG, tag);
	if (port)
		agent_msg_u64(&m, AGENT_T_PORT, port);
	if (window)
		agent_msg_u64(&m, AGENT_T_WINDOW, window);
	if (data)
		agent_msg_bytes(&m, AGENT_T_DATA, data, len);
	if (type == AGENT_TCP_ACK)
		agent_msg_u64(&m, AGENT_T_OFFSET, offset);
	world_send(&w->aw, &m);
}

static int listener(uint16_t *port, bool listening)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr = { htonl(INADDR_LOOPBACK) } };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	if (listening)
		assert_int_equal(listen(fd, 512), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

#define PASS_UNTIL(w, cond)                                                                                  \
	do {                                                                                                 \
		for (int pass_i = 0; pass_i < 300 && !(cond); pass_i++)                                      \
			world_pass(&(w)->aw, 10);                                                            \
		assert_true(cond);                                                                           \
	} while (0)

static void world_init(struct world *w)
{
	memset(w, 0, sizeof(*w));
	world_open(&w->aw, on_frame);
}

static void world_done(struct world *w)
{
	world_close(&w->aw);
	free(w->data);
}

/* Open, bytes both ways (more than a window from the app), half-closes both
 * ways, a clean end. */
static void test_open_data_shut_close(void **state)
{
	(void)state;
	uint16_t port;
	int lfd = listener(&port, true);
	struct world w;
	world_init(&w);
	send_tcp(&w, AGENT_TCP_OPEN, "s", port, NULL, 0, 0, 65536);
	PASS_UNTIL(&w, w.opened == 1);
	assert_int_equal(w.window, AGENT_TCP_WINDOW);
	assert_int_equal(w.aw.a.tcp_open, 1);
	int app = accept(lfd, NULL, NULL);
	assert_true(app >= 0);

	/* sandbard -> app */
	send_tcp(&w, AGENT_TCP_DATA, "s", 0, "hello app", 9, 0, 0);
	PASS_UNTIL(&w, w.acked == 9);
	char buf[16];
	assert_int_equal(recv(app, buf, sizeof(buf), 0), 9);
	assert_memory_equal(buf, "hello app", 9);

	/* app -> sandbard: 200 KiB against a 64 KiB window, acked as consumed */
	size_t total = 200 * 1024;
	uint8_t *big = malloc(total);
	for (size_t i = 0; i < total; i++)
		big[i] = (uint8_t)(i % 251);
	fcntl(app, F_SETFL, O_NONBLOCK);
	size_t put = 0;
	for (int i = 0; i < 500 && w.data_len < total; i++) {
		ssize_t n = put < total ? send(app, big + put, total - put, MSG_DONTWAIT) : 0;
		if (n > 0)
			put += (size_t)n;
		world_pass(&w.aw, 5);
		assert_true(w.data_len <= 65536 || w.acked > 0 || true);
		/* never more than the window past what we acknowledged */
		static uint64_t our_ack;
		assert_true(w.data_len - our_ack <= 65536);
		if (w.data_len - our_ack >= 32768) {
			our_ack = w.data_len;
			send_tcp(&w, AGENT_TCP_ACK, "s", 0, NULL, 0, our_ack, 0);
		}
	}
	assert_int_equal(w.data_len, total);
	assert_memory_equal(w.data, big, total);
	free(big);

	/* the app's EOF: TCP_SHUT; ours: the app reads EOF; then TCP_CLOSE, clean */
	shutdown(app, SHUT_WR);
	PASS_UNTIL(&w, w.shut == 1);
	assert_int_equal(w.closed, 0);
	send_tcp(&w, AGENT_TCP_SHUT, "s", 0, NULL, 0, 0, 0);
	PASS_UNTIL(&w, w.closed == 1);
	assert_int_equal(w.close_code, 0);
	fcntl(app, F_SETFL, 0);
	assert_int_equal(recv(app, buf, sizeof(buf), 0), 0);
	assert_int_equal(w.aw.a.tcp_open, 0);
	world_pass(&w.aw, 0);
	assert_null(w.aw.conn->tcp); /* reaped after the pass */
	close(app);
	close(lfd);
	world_done(&w);
}

/* Nothing listens: ECONNREFUSED; a reset app: ECONNRESET. */
static void test_refused_and_reset(void **state)
{
	(void)state;
	uint16_t port;
	int lfd = listener(&port, false);
	struct world w;
	world_init(&w);
	send_tcp(&w, AGENT_TCP_OPEN, "r", port, NULL, 0, 0, 0);
	PASS_UNTIL(&w, w.closed == 1);
	assert_int_equal(w.opened, 0);
	assert_int_equal(w.close_code, ECONNREFUSED);
	assert_int_equal(w.aw.a.tcp_open, 0);
	close(lfd);

	lfd = listener(&port, true);
	send_tcp(&w, AGENT_TCP_OPEN, "x", port, NULL, 0, 0, 0);
	PASS_UNTIL(&w, w.opened == 1);
	int app = accept(lfd, NULL, NULL);
	struct linger lg = { 1, 0 };
	setsockopt(app, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(app); /* RST */
	PASS_UNTIL(&w, w.closed == 2);
	assert_int_equal(w.close_code, ECONNRESET);
	close(lfd);
	world_done(&w);
}

/* At most AGENT_TCP_STREAMS_MAX streams; a TAG in use; DATA past the window;
 * a connection that goes takes its streams along. */
static void test_limits(void **state)
{
	(void)state;
	uint16_t port;
	int lfd = listener(&port, true);
	struct world w;
	world_init(&w);
	char tag[16];
	for (int i = 0; i < AGENT_TCP_STREAMS_MAX; i++) {
		snprintf(tag, sizeof(tag), "t%d", i);
		send_tcp(&w, AGENT_TCP_OPEN, tag, port, NULL, 0, 0, 0);
	}
	PASS_UNTIL(&w, w.opened == AGENT_TCP_STREAMS_MAX);
	assert_int_equal(w.aw.a.tcp_open, AGENT_TCP_STREAMS_MAX);
	send_tcp(&w, AGENT_TCP_OPEN, "one more", port, NULL, 0, 0, 0);
	PASS_UNTIL(&w, w.closed == 1);
	assert_int_equal(w.close_code, EMFILE);
	send_tcp(&w, AGENT_TCP_OPEN, "t0", port, NULL, 0, 0, 0);
	PASS_UNTIL(&w, w.closed == 2);
	assert_int_equal(w.close_code, EEXIST);

	/* more than the window the agent gave is a broken peer */
	uint8_t *big = calloc(1, AGENT_TCP_WINDOW + 1);
	send_tcp(&w, AGENT_TCP_DATA, "t1", 0, big, AGENT_TCP_WINDOW + 1, 0, 0);
	free(big);
	PASS_UNTIL(&w, w.closed == 3);
	assert_string_equal(w.last_tag, "t1");
	assert_int_equal(w.close_code, ENOBUFS);
	assert_int_equal(w.aw.a.tcp_open, AGENT_TCP_STREAMS_MAX - 1);

	/* sandbard aborts one: no answer, the count drops */
	send_tcp(&w, AGENT_TCP_CLOSE, "t2", 0, NULL, 0, 0, 0);
	world_pass(&w.aw, 0);
	assert_int_equal(w.closed, 3);
	assert_int_equal(w.aw.a.tcp_open, AGENT_TCP_STREAMS_MAX - 2);
	/* frames for an unknown stream are ignored */
	send_tcp(&w, AGENT_TCP_DATA, "t2", 0, "x", 1, 0, 0);
	send_tcp(&w, AGENT_TCP_ACK, "nope", 0, NULL, 0, 5, 0);
	world_pass(&w.aw, 0);
	assert_int_equal(w.closed, 3);

	world_done(&w); /* the connection closes: every stream goes */
	close(lfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_data_shut_close),
		cmocka_unit_test(test_refused_and_reset),
		cmocka_unit_test(test_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
