/* The app's answer to a proxied request: its head parsed (answer_parse.c) and
 * passed on without the hop-by-hop headers, its body streamed to the client
 * with backpressure, the connection kept at the end; or the 101 of an upgrade. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "core/check.h"
#include "core/log.h"
#include "http/server.h"
#include "proxy_internal.h"
#include "upstream_agent.h"

static void answer_head(struct up_answer *a, int status, int64_t length, void *arg);
static void answer_body(const char *at, size_t len, void *arg);
static void forward_headers(struct px *px, bool upgrade);
static void resume_upstream(void *arg);
static void px_complete(struct px *px);
static bool up_parse(struct px *px, struct bufferevent *bev, bool all);

static const struct up_answer_ops answer_ops = { .head = answer_head, .body = answer_body };

void up_answer_start(struct px *px)
{
	up_answer_init(&px->answer, px->head_method, &answer_ops, px);
}

/* The answer's headers for the client: hop-by-hop ones dropped, framing ours. */
static void forward_headers(struct px *px, bool upgrade)
{
	const struct up_answer *a = &px->answer;
	const char *connection = NULL;
	for (int i = 0; i < up_answer_count(a); i++)
		if (strcasecmp(up_answer_name(a, i), "Connection") == 0)
			connection = up_answer_value(a, i);
	/* http_response_header prepends: added last to first, they go out in order */
	for (int i = up_answer_count(a) - 1; i >= 0; i--) {
		const char *name = up_answer_name(a, i);
		if (upgrade && strcasecmp(name, "Upgrade") == 0) {
			http_response_header(px->req, name, up_answer_value(a, i));
			continue;
		}
		if (proxy_skipped_header(name, connection) && strcasecmp(name, "X-Forwarded-For") != 0 &&
		    strcasecmp(name, "X-Forwarded-Proto") != 0 && strcasecmp(name, "X-Forwarded-Host") != 0)
			continue;
		http_response_header(px->req, name, up_answer_value(a, i));
	}
}

/* The final head: passed on, and the body streams from here. */
static void answer_head(struct up_answer *a, int status, int64_t length, void *arg)
{
	struct px *px = arg;
	forward_headers(px, false);
	http_response_start(px->req, status, NULL, length);
	px_set_state(px, PX_BODY);
	proxy_set_timeouts(px->up->bev, px->pv->cfg.idle_timeout_ms);
}

static void answer_body(const char *at, size_t len, void *arg)
{
	struct px *px = arg;
	http_response_write_bytes(px->req, at, len);
}

static void resume_upstream(void *arg)
{
	struct px *px = arg;
	if (!px->up || px->state != PX_BODY)
		return;
	bufferevent_enable(px->up->bev, EV_READ);
	/* what was left unparsed when reading stopped comes with no new read event */
	if (evbuffer_get_length(bufferevent_get_input(px->up->bev)) > 0)
		bufferevent_trigger(px->up->bev, EV_READ, BEV_TRIG_DEFER_CALLBACKS);
}

/* The answer is over: the client's response ends, and the connection is kept
 * when both sides said keep-alive and the whole request went out. */
static void px_complete(struct px *px)
{
	struct http_request *req = px_take_req(px);
	bool keep = up_answer_keep_alive(&px->answer) && px->sent_all && !px->up->ua &&
		    evbuffer_get_length(bufferevent_get_input(px->up->bev)) == 0;
	struct upconn *up = px->up;
	px->up = NULL;
	if (keep)
		upconn_keep(up);
	else
		upconn_free(up);
	px_end(px);
	http_response_end(req);
}

void up_read(struct bufferevent *bev, void *arg)
{
	up_parse(arg, bev, false);
}

/* Parses what the upstream sent; false when the exchange ended or left the
 * answer (px may be freed). all: past the client's backpressure too (the
 * upstream's EOF came: nothing more will call for the rest). */
static bool up_parse(struct px *px, struct bufferevent *bev, bool all)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	if (px->state == PX_PORT_SETTLE) {
		/* the app spoke first: it is there */
		event_del(px->tick);
		px_send(px);
	}
	if (px->state == PX_SENT)
		px_set_state(px, PX_HEAD);
	while (evbuffer_get_length(in) > 0 && (px->state == PX_HEAD || px->state == PX_BODY)) {
		size_t n = evbuffer_get_contiguous_space(in), used;
		const char *data = (const char *)evbuffer_pullup(in, (ssize_t)n);
		enum up_answer_step step = up_answer_feed(&px->answer, data, n, &used);
		evbuffer_drain(in, used);
		if (step == UP_ANSWER_COMPLETE) {
			px_set_state(px, PX_COMPLETE);
			px_complete(px);
			return false;
		}
		if (step == UP_ANSWER_UPGRADE) {
			if (!px->upgrade) {
				px_fail(px, 502, "bad_upstream_response",
					"the app switched protocols unasked");
				return false;
			}
			forward_headers(px, true);
			px_set_state(px, PX_SPLICE);
			bufferevent_disable(bev, EV_READ);
			http_request_upgrade(px_take_req(px), splice_start, px);
			return false;
		}
		if (step == UP_ANSWER_BAD) {
			px_fail(px, 502, "bad_upstream_response", "the app's answer is not HTTP: %s",
				up_answer_error(&px->answer));
			return false;
		}
		if (!all && px->state == PX_BODY && http_response_pending(px->req) > UP_HIGHWAT) {
			bufferevent_disable(bev, EV_READ);
			http_response_on_drain(px->req, resume_upstream, px);
			return true;
		}
	}
	return px->state == PX_HEAD || px->state == PX_BODY;
}

void up_write(struct bufferevent *bev, void *arg)
{
	struct px *px = arg;
	if (px->req && px->body && !px->sent_all)
		http_request_body_resume(px->req);
}

void up_event(struct bufferevent *bev, short what, void *arg)
{
	struct px *px = arg;
	if (what & BEV_EVENT_CONNECTED) {
		int one = 1; /* a head and its body are two writes: no Nagle wait between */
		if (!px->up->ua)
			setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (px->state == PX_PORT_TRY) {
			px_port_connected(px);
			return;
		}
		px_send(px);
		return;
	}
	int agent_err = px->up->ua ? upstream_agent_error(px->up->ua) : 0;
	bool connecting = px->state == PX_CONNECT || px->state == PX_PORT_TRY;
	if (connecting && agent_err == ENOTSUP) {
		px_fail(px, 502, "port_not_published",
			"port %d of sandbox %s is not published, and its agent predates TCP streams",
			px->target.port, px->target.sandbox_id);
		return;
	}
	if (px->state == PX_PORT_TRY || px->state == PX_PORT_SETTLE) {
		px_port_again(px);
		return;
	}
	if (px->state == PX_CONNECT) {
		bool timeout = (what & BEV_EVENT_TIMEOUT) != 0;
		px_fail(px, 502, "upstream_unreachable", "port %d of sandbox %s %s", px->target.port,
			px->target.sandbox_id,
			timeout					 ? "did not accept a connection in time"
			: agent_err && agent_err != ECONNREFUSED ? strerror(agent_err)
								 : "refused the connection");
		return;
	}
	/* the agent's EOF may come with bytes still unparsed (no socket read found it) */
	if ((what & BEV_EVENT_EOF) &&
	    (px->state == PX_SENT || px->state == PX_HEAD || px->state == PX_BODY) &&
	    evbuffer_get_length(bufferevent_get_input(bev)) > 0 && !up_parse(px, bev, true))
		return;
	if ((what & BEV_EVENT_EOF) && px->state == PX_BODY) {
		/* an answer ended by the close (no length, HTTP/1.0 style) */
		if (up_answer_eof(&px->answer) == UP_ANSWER_COMPLETE) {
			px_set_state(px, PX_COMPLETE);
			px_complete(px);
			return;
		}
	}
	if (px->state == PX_SENT && px->wake_until_ms && !px->up->reused && !px->body) {
		/* the app of a woken sandbox closed before answering: it may be starting still */
		px_port_again(px);
		return;
	}
	if (px->state == PX_SENT && px->up->reused && !px->body) {
		/* a kept connection the app had closed meanwhile: once more on a fresh one */
		upconn_free(px->up);
		px->up = NULL;
		px_connect(px, false);
		return;
	}
	bool unanswered = px->state == PX_SENT || px->state == PX_HEAD;
	if (what & BEV_EVENT_TIMEOUT)
		px_fail(px, unanswered ? 504 : 502, "upstream_timeout", "port %d of sandbox %s %s",
			px->target.port, px->target.sandbox_id,
			unanswered ? "did not answer in time" : "went quiet mid-answer");
	else if (px->state == PX_SENT)
		px_fail(px, 502, "upstream_unreachable",
			"port %d of sandbox %s closed the connection without an answer (is anything "
			"listening?)",
			px->target.port, px->target.sandbox_id);
	else
		px_fail(px, 502, "bad_upstream_response", "port %d of sandbox %s closed the connection %s",
			px->target.port, px->target.sandbox_id,
			px->state == PX_HEAD ? "mid-head" : "mid-answer");
}
