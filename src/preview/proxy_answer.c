/* The app's answer to a proxied request: its head parsed (http_parser) and
 * passed on without the hop-by-hop headers, its body streamed to the client
 * with backpressure, the connection kept at the end; or the 101 of an upgrade. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "core/check.h"
#include "core/log.h"
#include "http/server.h"
#include "proxy_internal.h"
#include "upstream_agent.h"

static int hbuf_add(struct px *px, const char *at, size_t len, uint32_t *off, uint32_t *total);
static int on_header_field(http_parser *p, const char *at, size_t len);
static int on_header_value(http_parser *p, const char *at, size_t len);
static const char *hname(const struct px *px, int i);
static const char *hvalue(const struct px *px, int i);
static void forward_headers(struct px *px, bool upgrade);
static int on_headers_complete(http_parser *p);
static int on_body(http_parser *p, const char *at, size_t len);
static int on_message_complete(http_parser *p);
static void resume_upstream(void *arg);
static void px_complete(struct px *px);
static bool up_parse(struct px *px, struct bufferevent *bev, bool all);

static int hbuf_add(struct px *px, const char *at, size_t len, uint32_t *off, uint32_t *total)
{
	if (px->hlen + len + 1 > UP_HEAD_MAX)
		return -1;
	if (px->hlen + len + 1 > px->hcap) {
		size_t cap = px->hcap ? px->hcap * 2 : 1024;
		while (cap < px->hlen + len + 1)
			cap *= 2;
		char *b = realloc(px->hbuf, cap);
		CHECK(b != NULL);
		px->hbuf = b;
		px->hcap = cap;
	}
	if (*total == 0)
		*off = (uint32_t)px->hlen;
	else
		px->hlen--; /* a continued piece: over the NUL */
	memcpy(px->hbuf + px->hlen, at, len);
	px->hlen += len;
	px->hbuf[px->hlen++] = '\0';
	*total += (uint32_t)len;
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct px *px = p->data;
	if (px->in_value || px->nhdrs == 0) {
		if (px->nhdrs == UP_HDRS_MAX)
			return -1;
		px->hdrs[px->nhdrs++] = (struct upheader){ 0 };
		px->in_value = false;
	}
	struct upheader *h = &px->hdrs[px->nhdrs - 1];
	return hbuf_add(px, at, len, &h->name, &h->name_len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct px *px = p->data;
	if (px->nhdrs == 0)
		return -1;
	px->in_value = true;
	struct upheader *h = &px->hdrs[px->nhdrs - 1];
	return hbuf_add(px, at, len, &h->value, &h->value_len);
}

static const char *hname(const struct px *px, int i)
{
	return px->hdrs[i].name_len ? px->hbuf + px->hdrs[i].name : "";
}

static const char *hvalue(const struct px *px, int i)
{
	return px->hdrs[i].value_len ? px->hbuf + px->hdrs[i].value : "";
}

/* The answer's headers for the client: hop-by-hop ones dropped, framing ours. */
static void forward_headers(struct px *px, bool upgrade)
{
	const char *connection = NULL;
	for (int i = 0; i < px->nhdrs; i++)
		if (strcasecmp(hname(px, i), "Connection") == 0)
			connection = hvalue(px, i);
	/* http_response_header prepends: added last to first, they go out in order */
	for (int i = px->nhdrs - 1; i >= 0; i--) {
		const char *name = hname(px, i);
		if (upgrade && strcasecmp(name, "Upgrade") == 0) {
			http_response_header(px->req, name, hvalue(px, i));
			continue;
		}
		if (proxy_skipped_header(name, connection) && strcasecmp(name, "X-Forwarded-For") != 0 &&
		    strcasecmp(name, "X-Forwarded-Proto") != 0 && strcasecmp(name, "X-Forwarded-Host") != 0)
			continue;
		http_response_header(px->req, name, hvalue(px, i));
	}
}

static int on_headers_complete(http_parser *p)
{
	struct px *px = p->data;
	int status = (int)p->status_code;
	if (status >= 100 && status < 200 && status != 101) {
		px->nhdrs = 0; /* an interim answer (100 Continue): the client had ours */
		px->hlen = 0;
		px->in_value = false;
		return 0;
	}
	if (status == 101)
		return 0; /* the upgrade is taken after the parser stops */
	forward_headers(px, false);
	int64_t length =
		(p->flags & F_CHUNKED) || p->content_length == ULLONG_MAX ? -1 : (int64_t)p->content_length;
	if (status == 204 || status == 304)
		length = 0;
	http_response_start(px->req, status, NULL, length);
	px_set_state(px, PX_BODY);
	proxy_set_timeouts(px->up->bev, px->pv->cfg.idle_timeout_ms);
	return px->head_method ? 1 : 0; /* 1: no body follows */
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct px *px = p->data;
	http_response_write_bytes(px->req, at, len);
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct px *px = p->data;
	if (px->state != PX_BODY)
		return 0; /* an interim answer, or the 101 */
	px_set_state(px, PX_COMPLETE);
	http_parser_pause(p, 1); /* up_parse sees it, the exchange ends there */
	return 0;
}

static const http_parser_settings parser_settings = {
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

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
	bool keep = http_should_keep_alive(&px->parser) && px->sent_all && !px->up->ua &&
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
		size_t n = evbuffer_get_contiguous_space(in);
		const char *data = (const char *)evbuffer_pullup(in, (ssize_t)n);
		size_t used = http_parser_execute(&px->parser, &parser_settings, data, n);
		enum http_errno e = HTTP_PARSER_ERRNO(&px->parser);
		evbuffer_drain(in, used);
		if (px->state == PX_COMPLETE) {
			px_complete(px);
			return false;
		}
		if (px->parser.upgrade && px->parser.status_code == 101) {
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
		if (e != HPE_OK) {
			px_fail(px, 502, "bad_upstream_response", "the app's answer is not HTTP: %s",
				http_errno_description(e));
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
		http_parser_execute(&px->parser, &parser_settings, NULL, 0);
		if (px->state == PX_COMPLETE) {
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
