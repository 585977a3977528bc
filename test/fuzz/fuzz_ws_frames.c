/* Random bytes as what a WebSocket client sends once the handshake is done,
 * through the server's receive path (src/http/websocket.c on wslay) over a
 * bufferevent pair: frames, masks, fragments reassembled, control frames,
 * the message size limit (1009), protocol errors (1002), the close
 * handshake and the lingering close after ours. The first byte steers the
 * size limit (1 + byte * 16 bytes), the second the size of the pieces the
 * bytes arrive in (0: at once); the server echoes each message, and closes
 * (1000) on a message "close". Then the client's EOF. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "http/websocket.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct event_base *base;
static size_t sink;

static void on_message(struct ws_conn *ws, bool binary, const uint8_t *msg, size_t len, void *arg)
{
	if (len == 5 && memcmp(msg, "close", 5) == 0) {
		ws_close(ws, 1000, "bye");
		return;
	}
	sink += ws_pending(ws);
	(void)ws_send(ws, binary, msg, len);
}

static void on_drain(struct ws_conn *ws, void *arg)
{
	sink++;
}

static void on_closed(struct ws_conn *ws, void *arg)
{
	*(bool *)arg = true;
}

static const struct ws_ops ops = { .message = on_message, .drain = on_drain, .closed = on_closed };

/* Runs what is due, and takes what the server wrote (the client reads it all). */
static void settle(struct bufferevent *client)
{
	for (int i = 0; i < 4; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		struct evbuffer *in = bufferevent_get_input(client);
		evbuffer_drain(in, evbuffer_get_length(in));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	if (!base)
		base = event_base_new();
	uint64_t max = 1 + (uint64_t)data[0] * 16;
	size_t piece = data[1];
	data += 2;
	size -= 2;

	struct bufferevent *pair[2];
	if (bufferevent_pair_new(base, 0, pair) != 0)
		return 0;
	struct ws_hub *hub = ws_hub_new(base);
	bool closed = false;
	struct ws_conn *ws = ws_attach(hub, pair[0], &ops, &closed);
	ws_set_max_message(ws, max);
	bufferevent_enable(pair[1], EV_READ | EV_WRITE);
	while (size > 0 && !closed) {
		size_t n = piece && piece < size ? piece : size;
		bufferevent_write(pair[1], data, n);
		data += n;
		size -= n;
		settle(pair[1]);
	}
	bufferevent_flush(pair[1], EV_WRITE, BEV_FINISHED); /* the client's EOF */
	settle(pair[1]);
	bufferevent_free(pair[1]);
	ws_hub_free(hub); /* what is left is closed */
	event_base_loop(base, EVLOOP_NONBLOCK);
	return 0;
}
