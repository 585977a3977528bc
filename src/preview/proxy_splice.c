/* After a 101 (a WebSocket, Vite's hot reload): the client's socket and the
 * upstream's copied into each other byte for byte, with backpressure, until
 * either closes; what the closing side sent last is flushed to the other. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "proxy_internal.h"
#include "sandbox/registry.h"

static void splice_move(struct px *px, struct bufferevent *from, struct bufferevent *to);
static void splice_read(struct bufferevent *bev, void *arg);
static void splice_write(struct bufferevent *bev, void *arg);
static void splice_event(struct bufferevent *bev, short what, void *arg);

static void splice_move(struct px *px, struct bufferevent *from, struct bufferevent *to)
{
	struct evbuffer *out = bufferevent_get_output(to);
	evbuffer_add_buffer(out, bufferevent_get_input(from));
	if (evbuffer_get_length(out) > UP_HIGHWAT)
		bufferevent_disable(from, EV_READ);
	registry_touch(px->pv->reg, px->target.sandbox_id);
}

static void splice_read(struct bufferevent *bev, void *arg)
{
	struct px *px = arg;
	splice_move(px, bev, bev == px->client ? px->up->bev : px->client);
}

static void splice_write(struct bufferevent *bev, void *arg)
{
	struct px *px = arg;
	if (px->state == PX_FLUSH) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			px_end(px);
		return;
	}
	struct bufferevent *other = bev == px->client ? px->up->bev : px->client;
	if (evbuffer_get_length(bufferevent_get_output(bev)) <= UP_HIGHWAT / 2)
		bufferevent_enable(other, EV_READ);
}

/* A side that closed has what it sent written to the other first; a
 * failure, or either side idle past the timeout, ends both at once. */
static void splice_event(struct bufferevent *bev, short what, void *arg)
{
	struct px *px = arg;
	struct bufferevent *other = bev == px->client ? px->up->bev : px->client;
	if (px->state != PX_SPLICE || !(what & BEV_EVENT_EOF)) {
		px_end(px);
		return;
	}
	evbuffer_add_buffer(bufferevent_get_output(other), bufferevent_get_input(bev));
	if (evbuffer_get_length(bufferevent_get_output(other)) == 0) {
		px_end(px);
		return;
	}
	px_set_state(px, PX_FLUSH);
	bufferevent_disable(bev, EV_READ | EV_WRITE);
	bufferevent_disable(other, EV_READ);
	bufferevent_setwatermark(other, EV_WRITE, 0, 0);
	bufferevent_enable(other, EV_WRITE);
}

void splice_start(struct bufferevent *client, void *arg)
{
	struct px *px = arg;
	px->client = client;
	struct bufferevent *up = px->up->bev;
	bufferevent_setcb(client, splice_read, splice_write, splice_event, px);
	bufferevent_setcb(up, splice_read, splice_write, splice_event, px);
	bufferevent_setwatermark(client, EV_WRITE, UP_HIGHWAT / 2, 0);
	bufferevent_setwatermark(up, EV_WRITE, UP_HIGHWAT / 2, 0);
	proxy_set_timeouts(client, px->pv->cfg.idle_timeout_ms);
	proxy_set_timeouts(up, px->pv->cfg.idle_timeout_ms);
	/* what either side sent past the heads goes first */
	if (evbuffer_get_length(bufferevent_get_input(up)))
		splice_move(px, up, client);
	if (evbuffer_get_length(bufferevent_get_input(client)))
		splice_move(px, client, up);
	bufferevent_enable(client, EV_READ | EV_WRITE);
	bufferevent_enable(up, EV_READ | EV_WRITE);
	/* a quiet open socket is activity too: the reaper never stops its sandbox */
	if (px->touch_ms < 500)
		px->touch_ms = 500;
	px_tick_in(px, px->touch_ms);
}

void splice_tick(struct px *px)
{
	registry_touch(px->pv->reg, px->target.sandbox_id);
	px_tick_in(px, px->touch_ms);
}
