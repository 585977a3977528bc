/* The agent upstream: bytes written to the near end of a bufferevent pair
 * reach the far end's input and go to the agent stream (its read stops while
 * the stream says pause); bytes from the stream go to the far end's output,
 * and are acknowledged to the agent as the near end takes them in (an
 * evbuffer callback on that output), so a client that stops reading stops
 * the app. */
#include "upstream_agent.h"

#include <errno.h>
#include <stdlib.h>

#include <event2/buffer.h>

#include "channel/channel.h"
#include "core/check.h"

struct upstream_agent {
	struct bufferevent *pair[2]; /* [0] the proxy's, [1] pumped here */
	struct agent_tcp *tcp;	     /* NULL once it ended */
	int error;
	bool eof_pending; /* the app's EOF, passed on once [1]'s output is empty */
	bool eof_sent;
	struct evbuffer_cb_entry *out_cb;
};

static void ua_opened(void *arg);
static void ua_data(void *arg, const uint8_t *data, size_t len);
static void ua_end(void *arg);
static void ua_writable(void *arg);
static void ua_closed(void *arg, int code, const char *message);
static void ua_far_read(struct bufferevent *bev, void *arg);
static void ua_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg);
static void ua_maybe_eof(struct upstream_agent *ua);

static const struct agent_tcp_ops ua_ops = { ua_opened, ua_data, ua_end, ua_writable, ua_closed };

struct upstream_agent *upstream_agent_new(struct event_base *base, struct agent_channel *ch, int port,
					  struct bufferevent **bev)
{
	struct upstream_agent *ua = calloc(1, sizeof(*ua));
	CHECK(ua != NULL);
	CHECK(bufferevent_pair_new(base, BEV_OPT_DEFER_CALLBACKS, ua->pair) == 0);
	bufferevent_setcb(ua->pair[1], ua_far_read, NULL, NULL, ua);
	ua->out_cb = evbuffer_add_cb(bufferevent_get_output(ua->pair[1]), ua_out_cb, ua);
	CHECK(ua->out_cb != NULL);
	ua->tcp = agent_tcp_open(ch, port, 0, &ua_ops, ua);
	*bev = ua->pair[0];
	return ua;
}

int upstream_agent_error(const struct upstream_agent *ua)
{
	return ua->error;
}

void upstream_agent_free(struct upstream_agent *ua)
{
	if (ua->tcp)
		agent_tcp_close(ua->tcp);
	evbuffer_remove_cb_entry(bufferevent_get_output(ua->pair[1]), ua->out_cb);
	bufferevent_free(ua->pair[0]);
	bufferevent_free(ua->pair[1]);
	free(ua);
}

static void ua_opened(void *arg)
{
	struct upstream_agent *ua = arg;
	bufferevent_enable(ua->pair[1], EV_READ | EV_WRITE);
	bufferevent_trigger_event(ua->pair[0], BEV_EVENT_CONNECTED, 0);
}

static void ua_data(void *arg, const uint8_t *data, size_t len)
{
	struct upstream_agent *ua = arg;
	evbuffer_add(bufferevent_get_output(ua->pair[1]), data, len);
}

/* The near end took bytes in: that much of the window is free again. */
static void ua_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct upstream_agent *ua = arg;
	if (info->n_deleted && ua->tcp)
		agent_tcp_consumed(ua->tcp, info->n_deleted);
	if (evbuffer_get_length(buf) == 0)
		ua_maybe_eof(ua);
}

static void ua_maybe_eof(struct upstream_agent *ua)
{
	if (!ua->eof_pending || ua->eof_sent || evbuffer_get_length(bufferevent_get_output(ua->pair[1])) > 0)
		return;
	ua->eof_sent = true;
	bufferevent_flush(ua->pair[1], EV_WRITE, BEV_FINISHED); /* EOF on the near end */
}

static void ua_end(void *arg)
{
	struct upstream_agent *ua = arg;
	ua->eof_pending = true;
	ua_maybe_eof(ua);
}

static void ua_closed(void *arg, int code, const char *message)
{
	struct upstream_agent *ua = arg;
	(void)message;
	ua->tcp = NULL; /* freed by the channel */
	if (code == 0) {
		ua_end(ua);
		return;
	}
	ua->error = code;
	bufferevent_trigger_event(ua->pair[0], BEV_EVENT_ERROR, 0);
}

/* What the proxy wrote toward the app. */
static void ua_far_read(struct bufferevent *bev, void *arg)
{
	struct upstream_agent *ua = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	while (ua->tcp && evbuffer_get_length(in) > 0) {
		size_t n = evbuffer_get_contiguous_space(in);
		int rc = agent_tcp_write(ua->tcp, evbuffer_pullup(in, (ssize_t)n), n);
		evbuffer_drain(in, n);
		if (rc < 0) {
			evbuffer_drain(in, evbuffer_get_length(in));
			return;
		}
		if (rc > 0) {
			bufferevent_disable(bev, EV_READ);
			return;
		}
	}
}

static void ua_writable(void *arg)
{
	struct upstream_agent *ua = arg;
	bufferevent_enable(ua->pair[1], EV_READ);
	if (evbuffer_get_length(bufferevent_get_input(ua->pair[1])) > 0)
		bufferevent_trigger(ua->pair[1], EV_READ, BEV_TRIG_DEFER_CALLBACKS);
}
