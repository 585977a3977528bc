/* WebSocket over an upgraded connection: the handshake (accept key, bad
 * handshakes refused with 400), masked client frames echoed back, a message in
 * two fragments, the close handshake, a client that vanishes, and the hub
 * closing what is left. One thread: the client socket is driven between loop
 * passes. */
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
	ws_accept(hub, req, &echo_ops, NULL);
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
	struct http_server_limits lim = { 16384, 1 << 20, 5000, 5000, 100 };
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
		cmocka_unit_test(test_bad_handshakes),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
