/* WebSocket over an upgraded connection: the handshake (accept key, bad
 * handshakes refused with 400), masked client frames echoed back, a message in
 * two fragments, the close handshake, a client that vanishes, the hub
 * closing what is left, and a message too big closed with 1009 while the
 * client still sends it (the close frame delivered, no reset). One thread: the client socket is driven
 * between loop passes. */
#include <errno.h>
#include <netinet/in.h>
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
#include <event2/event.h>

#include "http/server.h"
#include "http/websocket.h"

static struct event_base *base;
static struct http_server *srv;
static struct ws_hub *hub;
static int closed_calls, messages;
static uint64_t max_message; /* 0: the default */

static void on_message(struct ws_conn *ws, bool binary, const uint8_t *data, size_t len, void *arg)
{
	messages++;
	if (len == 5 && memcmp(data, "close", 5) == 0) {
		ws_close(ws, 1000, "bye");
		return;
	}
	ws_send(ws, binary, data, len);
}

static void on_closed(struct ws_conn *ws, void *arg)
{
	closed_calls++;
}

static const struct ws_ops echo_ops = { .message = on_message, .closed = on_closed };

static void dispatch(struct http_request *req, void *arg)
{
	struct ws_conn *ws = ws_accept(hub, req, &echo_ops, NULL);
	if (ws && max_message)
		ws_set_max_message(ws, max_message);
}

static int client(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)http_server_port(srv)) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	struct timeval tv = { 0, 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Runs the loop and reads until want bytes arrived (or the peer closed, or 2 s). */
static size_t pump(int fd, char *buf, size_t cap, size_t want)
{
	size_t got = 0;
	for (int i = 0; i < 2000 && got < want; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		ssize_t n = recv(fd, buf + got, cap - got, 0);
		if (n == 0)
			break;
		if (n > 0)
			got += (size_t)n;
	}
	return got;
}

static void loop_a_bit(void)
{
	for (int i = 0; i < 50; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
}

static const char handshake[] =
	"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/* A masked client frame. */
static size_t frame(uint8_t *out, int fin, int opcode, const char *payload, size_t len)
{
	static const uint8_t mask[4] = { 0x11, 0x22, 0x33, 0x44 };
	size_t o = 0;
	out[o++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
	out[o++] = (uint8_t)(0x80 | len); /* tests keep payloads under 126 */
	memcpy(out + o, mask, 4);
	o += 4;
	for (size_t i = 0; i < len; i++)
		out[o++] = (uint8_t)payload[i] ^ mask[i % 4];
	return o;
}

static int open_ws(void)
{
	int fd = client();
	assert_int_equal(send(fd, handshake, strlen(handshake), 0), (ssize_t)strlen(handshake));
	char buf[1024] = "";
	size_t n = pump(fd, buf, sizeof(buf) - 1, 1);
	for (int i = 0; i < 100 && !strstr(buf, "\r\n\r\n"); i++)
		n += pump(fd, buf + n, sizeof(buf) - 1 - n, 1);
	assert_non_null(strstr(buf, "HTTP/1.1 101 Switching Protocols\r\n"));
	assert_non_null(strstr(buf, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
	assert_non_null(strstr(buf, "Upgrade: websocket\r\n"));
	assert_non_null(strstr(buf, "X-Request-Id: "));
	return fd;
}

static void test_echo_fragments_and_close(void **state)
{
	int fd = open_ws();
	uint8_t f[256];
	size_t n = frame(f, 1, 1, "hello", 5);
	send(fd, f, n, 0);
	char buf[256];
	assert_int_equal(pump(fd, buf, sizeof(buf), 7), 7);
	assert_memory_equal(buf, "\x81\x05hello", 7);

	/* binary, in two fragments, delivered as one message */
	n = frame(f, 0, 2, "ab", 2);
	n += frame(f + n, 1, 0, "cd", 2);
	send(fd, f, n, 0);
	assert_int_equal(pump(fd, buf, sizeof(buf), 6), 6);
	assert_memory_equal(buf,
			    "\x82\x04"
			    "abcd",
			    6);

	/* the server closes: close frame 1000 "bye", then it waits for ours */
	n = frame(f, 1, 1, "close", 5);
	send(fd, f, n, 0);
	assert_int_equal(pump(fd, buf, sizeof(buf), 7), 7);
	assert_memory_equal(buf,
			    "\x88\x05\x03\xe8"
			    "bye",
			    7);
	n = frame(f, 1, 8, "\x03\xe8", 2);
	send(fd, f, n, 0);
	assert_int_equal(pump(fd, buf, sizeof(buf), 1), 0); /* then the socket closes */
	loop_a_bit();
	assert_int_equal(closed_calls, 1);
	close(fd);
}

static void test_client_vanishes_and_hub_closes_rest(void **state)
{
	closed_calls = 0;
	int a = open_ws(), b = open_ws();
	close(a);
	loop_a_bit();
	assert_int_equal(closed_calls, 1);
	/* b is still open: freeing the hub closes it */
	ws_hub_free(hub);
	hub = ws_hub_new(base);
	assert_int_equal(closed_calls, 2);
	close(b);
}

/* A loop pass, then what the server sent (into buf at *have); true at its
 * EOF. A reset fails the test. */
static bool read_some(int fd, uint8_t *buf, size_t cap, size_t *have, int flags)
{
	event_base_loop(base, EVLOOP_NONBLOCK);
	ssize_t r = recv(fd, buf + *have, cap - *have, flags);
	if (r > 0)
		*have += (size_t)r;
	else if (r < 0)
		assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	return r == 0;
}

/* A message past the limit, the client sending on as the server closes: the
 * close frame (1009) arrives, then the server's EOF; what the client sends
 * after is read and dropped (no reset), until the client closes too. */
static void test_too_big_closes_with_1009_and_lingers(void **state)
{
	closed_calls = 0;
	max_message = 1024;
	int fd = open_ws();
	max_message = 0;
	char part[100];
	memset(part, 'x', sizeof(part));
	uint8_t f[128];
	size_t n = frame(f, 0, 1, part, sizeof(part));
	assert_int_equal(send(fd, f, n, 0), (ssize_t)n);
	uint8_t got[64];
	size_t have = 0;
	bool eof = false;
	/* continuation frames, 100 bytes each, for 64 KB: past the limit at once */
	for (int i = 0; i < 640; i++) {
		n = frame(f, 0, 0, part, sizeof(part));
		assert_int_equal(send(fd, f, n, MSG_NOSIGNAL), (ssize_t)n);
		eof = read_some(fd, got, sizeof(got), &have, MSG_DONTWAIT);
	}
	for (int i = 0; i < 200 && !eof; i++)
		eof = read_some(fd, got, sizeof(got), &have, 0);
	assert_true(eof);
	assert_int_equal(have, 4);
	assert_memory_equal(got, "\x88\x02\x03\xf1", 4);
	/* still lingering: the client's close frame is taken (and dropped) too */
	n = frame(f, 1, 8, "\x03\xf1", 2);
	assert_int_equal(send(fd, f, n, MSG_NOSIGNAL), (ssize_t)n);
	loop_a_bit();
	assert_int_equal(closed_calls, 0);
	close(fd);
	loop_a_bit();
	assert_int_equal(closed_calls, 1);
}

static void test_bad_handshakes(void **state)
{
	static const char *const bad[] = {
		"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\n"
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
		"Sec-WebSocket-Key: short\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Version: 13\r\n"
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
	};
	for (size_t i = 0; i < 3; i++) {
		int fd = client();
		send(fd, bad[i], strlen(bad[i]), 0);
		char buf[1024] = "";
		pump(fd, buf, sizeof(buf) - 1, 20);
		assert_non_null(strstr(buf, "HTTP/1.1 400"));
		close(fd);
	}
	loop_a_bit();
}

static int setup(void **state)
{
	base = event_base_new();
	hub = ws_hub_new(base);
	struct http_server_limits lim = {
		.max_header_bytes = 16384,
		.max_body_bytes = 1 << 20,
		.header_timeout_ms = 5000,
		.idle_timeout_ms = 5000,
		.max_connections = 100,
	};
	srv = http_server_new(base, &lim, dispatch, NULL);
	return http_server_listen(srv, "127.0.0.1:0");
}

static int teardown(void **state)
{
	ws_hub_free(hub);
	http_server_free(srv);
	event_base_free(base);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_echo_fragments_and_close),
		cmocka_unit_test(test_client_vanishes_and_hub_closes_rest),
		cmocka_unit_test(test_too_big_closes_with_1009_and_lingers),
		cmocka_unit_test(test_bad_handshakes),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
