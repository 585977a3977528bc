/* Fuzz target: arbitrary bytes from a client into one server connection
 * (over a socketpair), through the parser, limits, bodies and responses. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <json-c/json_object.h>

/* conn_new: a connection on our end of the socketpair, as accept would make */
#include "../../src/http/internal.h"
#include "core/log.h"
#include "http/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz_body_done(struct http_request *req, struct evbuffer *body, void *arg)
{
	http_response_start(req, 200, "text/plain", -1);
	http_response_write(req, body);
	http_response_end(req);
}

static void fz_json_done(struct http_request *req, struct json_object *body, void *arg)
{
	http_respond_json(req, 200, body ? json_object_get(body) : json_object_new_object());
}

static void stream_data(struct http_request *req, struct evbuffer *chunk, void *arg)
{
	http_response_write(req, chunk);
}

static void stream_end(struct http_request *req, void *arg)
{
	http_response_end(req);
}

static void fz_dispatch(struct http_request *req, void *arg)
{
	static const struct http_body_stream cbs = { stream_data, stream_end };
	const char *path = http_request_path(req);
	(void)http_request_query(req, "a");
	(void)http_request_header(req, "host");
	if (strncmp(path, "/json", 5) == 0) {
		http_request_read_json(req, 0, fz_json_done, NULL);
	} else if (strncmp(path, "/stream", 7) == 0) {
		http_response_start(req, 200, NULL, -1);
		http_request_stream_body(req, &cbs, NULL);
	} else if (strncmp(path, "/noread", 7) == 0) {
		http_respond_error(req, 404, "not_found", "no %s", path);
	} else {
		http_request_read_body(req, 0, fz_body_done, NULL);
	}
}

static void fuzz_pump(struct event_base *base, int fd, int rounds)
{
	char buf[4096];
	for (int i = 0; i < rounds; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
			;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	if (!quiet) {
		log_set_level(LOG_LEVEL_ERROR);
		quiet = true;
	}
	struct event_base *base = event_base_new();
	struct http_server_limits lim = {
		.max_header_bytes = 2048,
		.max_body_bytes = 4096,
		.header_timeout_ms = 10000,
		.idle_timeout_ms = 10000,
		.max_connections = 4,
	};
	struct http_server *srv = http_server_new(base, &lim, fz_dispatch, NULL);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0)
		abort();
	if (!conn_new(srv, sv[0], false))
		abort();
	size_t off = 0;
	while (off < size) {
		ssize_t n = send(sv[1], data + off, size - off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0)
			off += (size_t)n;
		fuzz_pump(base, sv[1], 2);
		if (n <= 0 && off < size) {
			/* the server stopped reading (held input): give up on the rest */
			break;
		}
	}
	fuzz_pump(base, sv[1], 8);
	close(sv[1]);
	fuzz_pump(base, -1, 4);
	http_server_free(srv);
	event_base_free(base);
	return 0;
}
