/* WebSocket connections on top of the upgraded socket: wslay does the framing
 * (masking, fragments, ping/pong, the close handshake); this file wires it to
 * a bufferevent with backpressure and gives each connection one state. When
 * wslay stops reading without the peer's close (a message too big, a protocol
 * error), the close frame is sent, then writing is shut down and the peer's
 * bytes are read and dropped for a while (a lingering close, as web servers
 * do): closing with unread input would reset the connection, and the peer,
 * still sending its message, might lose our close frame to the reset. */
#include "http/websocket.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <wslay/wslay.h>

#include "core/base64.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/sha1.h"
#include "http/server.h"

#define WS_WRITE_HIGHWAT (256 * 1024) /* socket output above this: wslay waits */
#define WS_WRITE_LOWAT	 (64 * 1024)  /* drain callback below this */
#define WS_DEAD_PINGS	 4	      /* ws_keepalive: intervals without a byte from the peer */
#define WS_LINGER_MS	 5000	      /* WS_LINGER: the peer's EOF awaited this long at most */
#define WS_LINGER_BYTES	 (64u << 20)  /* ... and this much of its input dropped at most */

enum ws_state {
	WS_HANDSHAKE, /* 101 queued, waiting for the socket */
	WS_OPEN,
	WS_CLOSING, /* close frame sent or received; flushing */
	WS_LINGER,  /* our close is out, the peer's never comes: writing shut, its bytes dropped */
	WS_CLOSED,  /* closed callback pending on the loop */
	WS_STATE_MAX
};

struct ws_conn {
	LIST_ENTRY(ws_conn) link;
	struct ws_hub *hub;
	enum ws_state state;
	struct bufferevent *bev;
	wslay_event_context_ptr ctx;
	const struct ws_ops *ops;
	void *arg;
	struct event *kick; /* closes (and frees) from the loop */
	bool in_pump;	    /* wslay is running: its callbacks must not re-enter it */
	struct event *ping; /* ws_keepalive's timer, NULL when off */
	int64_t ping_ms;
	int64_t last_rx_ms;   /* monotonic: the peer's last bytes */
	size_t dropped;	      /* input read and dropped since wslay stopped reading */
	struct event *linger; /* WS_LINGER's deadline */
};

struct ws_hub {
	struct event_base *base;
	LIST_HEAD(, ws_conn) conns;
};

static void ws_set_state(struct ws_conn *ws, enum ws_state next);
static struct ws_conn *ws_new(struct ws_hub *hub, const struct ws_ops *ops, void *arg);
static void ws_upgraded(struct bufferevent *bev, void *arg);
static void ws_pump(struct ws_conn *ws);
static void ws_read_cb(struct bufferevent *bev, void *arg);
static void ws_write_cb(struct bufferevent *bev, void *arg);
static void ws_event_cb(struct bufferevent *bev, short what, void *arg);
static void ws_kick_cb(evutil_socket_t fd, short what, void *arg);
static void ws_ping_cb(evutil_socket_t fd, short what, void *arg);
static void ws_linger_cb(evutil_socket_t fd, short what, void *arg);
static bool ws_drop_input(struct ws_conn *ws);
static void ws_linger(struct ws_conn *ws);
static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user);
static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
			  void *user);
static void ws_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user);

static const char *const ws_state_names[WS_STATE_MAX] = { "handshake", "open", "closing", "linger",
							  "closed" };

static void ws_set_state(struct ws_conn *ws, enum ws_state next)
{
	static const unsigned legal[WS_STATE_MAX] = {
		[WS_HANDSHAKE] = 1u << WS_OPEN | 1u << WS_CLOSED,
		[WS_OPEN] = 1u << WS_CLOSING | 1u << WS_CLOSED,
		[WS_CLOSING] = 1u << WS_LINGER | 1u << WS_CLOSED,
		[WS_LINGER] = 1u << WS_CLOSED,
		[WS_CLOSED] = 0,
	};
	CHECK(next < WS_STATE_MAX && (legal[ws->state] & (1u << next)));
	log_debug("ws %p: %s -> %s", (void *)ws, ws_state_names[ws->state], ws_state_names[next]);
	ws->state = next;
	if (next == WS_CLOSED) {
		if (ws->ping)
			event_del(ws->ping);
		if (ws->linger)
			event_del(ws->linger);
		event_active(ws->kick, EV_TIMEOUT, 0);
	}
}

struct ws_hub *ws_hub_new(struct event_base *base)
{
	struct ws_hub *hub = calloc(1, sizeof(*hub));
	CHECK(hub != NULL);
	hub->base = base;
	LIST_INIT(&hub->conns);
	return hub;
}

static void ws_free(struct ws_conn *ws)
{
	LIST_REMOVE(ws, link);
	if (ws->bev)
		bufferevent_free(ws->bev);
	wslay_event_context_free(ws->ctx);
	event_free(ws->kick);
	if (ws->ping)
		event_free(ws->ping);
	if (ws->linger)
		event_free(ws->linger);
	free(ws);
}

void ws_hub_free(struct ws_hub *hub)
{
	if (!hub)
		return;
	while (!LIST_EMPTY(&hub->conns)) {
		struct ws_conn *ws = LIST_FIRST(&hub->conns);
		if (ws->state != WS_CLOSED)
			ws_set_state(ws, WS_CLOSED);
		event_del(ws->kick);
		ws->ops->closed(ws, ws->arg);
		ws_free(ws);
	}
	free(hub);
}

bool ws_is_handshake(struct http_request *req)
{
	const char *upgrade = http_request_header(req, "Upgrade");
	const char *version = http_request_header(req, "Sec-WebSocket-Version");
	const char *key = http_request_header(req, "Sec-WebSocket-Key");
	unsigned char raw[32];
	return strcmp(http_request_method(req), "GET") == 0 && upgrade &&
	       strcasecmp(upgrade, "websocket") == 0 && version && strcmp(version, "13") == 0 && key &&
	       strlen(key) == 24 && base64_decode(key, 24, raw) == 16;
}

void ws_refuse(struct http_request *req)
{
	http_response_header(req, "Sec-WebSocket-Version", "13");
	http_respond_error(
		req, 400, "bad_websocket_handshake",
		"expected a WebSocket upgrade (GET, Upgrade: websocket, Sec-WebSocket-Version: 13, "
		"Sec-WebSocket-Key)");
}

void ws_hub_close_all(struct ws_hub *hub, uint16_t code, const char *reason)
{
	struct ws_conn *ws, *next;
	for (ws = LIST_FIRST(&hub->conns); ws; ws = next) {
		next = LIST_NEXT(ws, link);
		ws_close(ws, code, reason);
	}
}

/* A connection in WS_HANDSHAKE, in the hub, its socket still to come. */
static struct ws_conn *ws_new(struct ws_hub *hub, const struct ws_ops *ops, void *arg)
{
	struct ws_conn *ws = calloc(1, sizeof(*ws));
	CHECK(ws != NULL);
	ws->hub = hub;
	ws->ops = ops;
	ws->arg = arg;
	ws->state = WS_HANDSHAKE;
	ws->kick = event_new(hub->base, -1, 0, ws_kick_cb, ws);
	static const struct wslay_event_callbacks cbs = {
		.recv_callback = ws_recv,
		.send_callback = ws_send_cb,
		.on_msg_recv_callback = ws_on_msg,
	};
	CHECK(ws->kick != NULL && wslay_event_context_server_init(&ws->ctx, &cbs, ws) == 0);
	wslay_event_config_set_max_recv_msg_length(ws->ctx, WS_MAX_MESSAGE);
	LIST_INSERT_HEAD(&hub->conns, ws, link);
	return ws;
}

struct ws_conn *ws_accept(struct ws_hub *hub, struct http_request *req, const struct ws_ops *ops, void *arg)
{
	if (!ws_is_handshake(req)) {
		ws_refuse(req);
		return NULL;
	}
	const char *key = http_request_header(req, "Sec-WebSocket-Key");
	char buf[24 + 36 + 1];
	snprintf(buf, sizeof(buf), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
	unsigned char digest[20];
	sha1(buf, strlen(buf), digest);
	char accept[32];
	base64_encode(digest, sizeof(digest), accept);

	struct ws_conn *ws = ws_new(hub, ops, arg);
	http_response_header(req, "Upgrade", "websocket");
	http_response_header(req, "Sec-WebSocket-Accept", accept);
	http_request_upgrade(req, ws_upgraded, ws);
	return ws;
}

struct ws_conn *ws_attach(struct ws_hub *hub, struct bufferevent *bev, const struct ws_ops *ops, void *arg)
{
	struct ws_conn *ws = ws_new(hub, ops, arg);
	ws_upgraded(bev, ws);
	return ws;
}

static void ws_upgraded(struct bufferevent *bev, void *arg)
{
	struct ws_conn *ws = arg;
	ws->bev = bev;
	if (ws->state != WS_HANDSHAKE) {
		/* closed before the socket arrived: nothing more to say */
		return;
	}
	ws_set_state(ws, WS_OPEN);
	bufferevent_setcb(bev, ws_read_cb, ws_write_cb, ws_event_cb, ws);
	bufferevent_setwatermark(bev, EV_WRITE, WS_WRITE_LOWAT, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	ws_pump(ws);
}

int ws_send(struct ws_conn *ws, bool binary, const void *data, size_t len)
{
	if (ws->state != WS_HANDSHAKE && ws->state != WS_OPEN)
		return -1;
	struct wslay_event_msg msg = {
		.opcode = binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME,
		.msg = data,
		.msg_length = len,
	};
	if (wslay_event_queue_msg(ws->ctx, &msg) != 0)
		return -1;
	if (ws->state == WS_OPEN)
		ws_pump(ws);
	return 0;
}

void ws_set_max_message(struct ws_conn *ws, uint64_t max)
{
	wslay_event_config_set_max_recv_msg_length(ws->ctx, max);
}

void ws_keepalive(struct ws_conn *ws, int64_t interval_ms)
{
	CHECK(interval_ms > 0 && !ws->ping);
	ws->ping_ms = interval_ms;
	ws->last_rx_ms = clock_mono_ms();
	ws->ping = event_new(ws->hub->base, -1, EV_PERSIST, ws_ping_cb, ws);
	CHECK(ws->ping != NULL);
	struct timeval tv = { interval_ms / 1000, (interval_ms % 1000) * 1000 };
	event_add(ws->ping, &tv);
}

/* A ping each interval; a peer silent for WS_DEAD_PINGS of them (no pong, no
 * frame) is gone without a FIN (a cable pulled, a NAT forgot it): dropped. */
static void ws_ping_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ws_conn *ws = arg;
	if (ws->state != WS_OPEN)
		return;
	if (clock_mono_ms() - ws->last_rx_ms > WS_DEAD_PINGS * ws->ping_ms) {
		log_info("ws %p: no answer to %d pings: dropped", (void *)ws, WS_DEAD_PINGS);
		ws_set_state(ws, WS_CLOSED);
		return;
	}
	struct wslay_event_msg msg = { .opcode = WSLAY_PING, .msg = (const uint8_t *)"", .msg_length = 0 };
	if (wslay_event_queue_msg(ws->ctx, &msg) == 0)
		ws_pump(ws);
}

size_t ws_pending(const struct ws_conn *ws)
{
	size_t n = wslay_event_get_queued_msg_length(ws->ctx);
	if (ws->bev)
		n += evbuffer_get_length(bufferevent_get_output(ws->bev));
	return n;
}

void ws_close(struct ws_conn *ws, uint16_t code, const char *reason)
{
	if (ws->state == WS_HANDSHAKE) {
		ws_set_state(ws, WS_CLOSED);
		return;
	}
	if (ws->state != WS_OPEN)
		return;
	wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, reason ? strlen(reason) : 0);
	ws_set_state(ws, WS_CLOSING);
	ws_pump(ws);
}

/* Moves bytes both ways as far as the socket allows; ends the connection when
 * wslay has nothing left to do (close handshake done, or an error). */
static void ws_pump(struct ws_conn *ws)
{
	if (ws->state == WS_CLOSED || ws->state == WS_LINGER || !ws->bev || ws->in_pump)
		return; /* a send from a message callback goes out when recv returns */
	ws->in_pump = true;
	int rc = wslay_event_recv(ws->ctx);
	if (rc == 0)
		rc = wslay_event_send(ws->ctx);
	ws->in_pump = false;
	if (rc != 0) {
		if (ws->state != WS_CLOSED)
			ws_set_state(ws, WS_CLOSED);
		return;
	}
	if (ws->state == WS_CLOSED)
		return; /* a message callback closed it */
	if (wslay_event_get_close_sent(ws->ctx) && ws->state == WS_OPEN)
		ws_set_state(ws, WS_CLOSING);
	if (!wslay_event_get_read_enabled(ws->ctx) && !ws_drop_input(ws))
		return;
	if (!wslay_event_want_read(ws->ctx) && !wslay_event_want_write(ws->ctx) &&
	    evbuffer_get_length(bufferevent_get_output(ws->bev)) == 0) {
		if (ws->state == WS_CLOSING && !wslay_event_get_close_received(ws->ctx))
			ws_linger(ws);
		else
			ws_set_state(ws, WS_CLOSED); /* the close handshake is done */
	}
}

/* wslay reads no more: what comes is dropped, up to WS_LINGER_BYTES (then
 * the connection ends, false). */
static bool ws_drop_input(struct ws_conn *ws)
{
	struct evbuffer *in = bufferevent_get_input(ws->bev);
	size_t n = evbuffer_get_length(in);
	evbuffer_drain(in, n);
	ws->dropped += n;
	if (ws->dropped <= WS_LINGER_BYTES)
		return true;
	log_info("ws %p: %zu bytes more after our close: dropped", (void *)ws, ws->dropped);
	ws_set_state(ws, WS_CLOSED);
	return false;
}

/* Our close frame is out and the peer's will not be read: our side of the
 * socket is shut (the peer reads the close, then EOF) and the connection
 * ends at the peer's EOF, or WS_LINGER_MS, or WS_LINGER_BYTES. */
static void ws_linger(struct ws_conn *ws)
{
	ws_set_state(ws, WS_LINGER);
	evutil_socket_t fd = bufferevent_getfd(ws->bev);
	if (fd >= 0)
		shutdown(fd, SHUT_WR);
	else
		bufferevent_flush(ws->bev, EV_WRITE, BEV_FINISHED); /* a pair: EOF to the other end */
	bufferevent_disable(ws->bev, EV_WRITE);
	bufferevent_enable(ws->bev, EV_READ);
	ws->linger = evtimer_new(ws->hub->base, ws_linger_cb, ws);
	CHECK(ws->linger != NULL);
	struct timeval tv = { WS_LINGER_MS / 1000, (WS_LINGER_MS % 1000) * 1000 };
	evtimer_add(ws->linger, &tv);
}

static void ws_linger_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ws_conn *ws = arg;
	log_info("ws %p: no EOF %d ms after our close", (void *)ws, WS_LINGER_MS);
	ws_set_state(ws, WS_CLOSED);
}

static void ws_read_cb(struct bufferevent *bev, void *arg)
{
	struct ws_conn *ws = arg;
	if (ws->ping)
		ws->last_rx_ms = clock_mono_ms();
	if (ws->state == WS_LINGER)
		ws_drop_input(ws);
	else
		ws_pump(ws);
}

static void ws_write_cb(struct bufferevent *bev, void *arg)
{
	struct ws_conn *ws = arg;
	if (ws->state == WS_LINGER)
		return;
	ws_pump(ws);
	if (ws->state == WS_OPEN && ws->ops->drain && ws_pending(ws) < WS_WRITE_LOWAT)
		ws->ops->drain(ws, ws->arg);
}

static void ws_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct ws_conn *ws = arg;
	if (ws->state != WS_CLOSED)
		ws_set_state(ws, WS_CLOSED);
}

static void ws_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ws_conn *ws = arg;
	ws->ops->closed(ws, ws->arg);
	ws_free(ws);
}

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
	struct ws_conn *ws = user;
	struct evbuffer *in = bufferevent_get_input(ws->bev);
	int n = evbuffer_remove(in, buf, len);
	if (n <= 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	return n;
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user)
{
	struct ws_conn *ws = user;
	struct evbuffer *out = bufferevent_get_output(ws->bev);
	if (evbuffer_get_length(out) >= WS_WRITE_HIGHWAT) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	if (evbuffer_add(out, data, len) != 0) {
		wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
		return -1;
	}
	return (ssize_t)len;
}

static void ws_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
	struct ws_conn *ws = user;
	if (ws->state != WS_OPEN)
		return;
	if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME)
		ws->ops->message(ws, arg->opcode == WSLAY_BINARY_FRAME, arg->msg, arg->msg_length, ws->arg);
}
