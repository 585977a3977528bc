/* One client connection: parses request heads with http-parser, dispatches
 * them one at a time (pipelined input waits in the bufferevent), enforces
 * the header limit and the timeouts, and frees itself from a deferred event. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "core/clock.h"
#include "core/bev.h"
#include "core/check.h"
#include "core/log.h"
#include "http/server.h"
#include "internal.h"

enum last_cb { LAST_NONE, LAST_URL, LAST_FIELD, LAST_VALUE };

static int on_message_begin(http_parser *p);
static int on_url(http_parser *p, const char *at, size_t len);
static int on_header_field(http_parser *p, const char *at, size_t len);
static int on_header_value(http_parser *p, const char *at, size_t len);
static int on_headers_complete(http_parser *p);
static int on_body(http_parser *p, const char *at, size_t len);
static int on_message_complete(http_parser *p);
static int head_append(struct http_conn *c, const char *at, size_t len);
static bool is_token(const char *s, size_t len);
static ssize_t feed_input(struct http_conn *c, size_t max);
static void conn_process(struct http_conn *c);
static void head_error(struct http_conn *c, int status, const char *code, const char *msg);
static void parse_failed(struct http_conn *c);
static void finish_request(struct http_conn *c);
static void conn_gone(struct http_conn *c);
static void arm_timer(struct http_conn *c, int64_t ms);
static int64_t body_wait_ms(const struct http_conn *c);
static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);
static void timer_cb(evutil_socket_t fd, short what, void *arg);
static void kick_cb(evutil_socket_t fd, short what, void *arg);
static void conn_hand_over(struct http_conn *c);

static const http_parser_settings parser_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

static const char *const state_names[CONN_STATE_MAX] = {
	"idle", "head", "request", "discard", "closing", "upgraded", "dead",
};

/* legal[from] is a bitmask of the states reachable from it */
static const unsigned legal[CONN_STATE_MAX] = {
	[CONN_IDLE] = 1u << CONN_HEAD | 1u << CONN_CLOSING | 1u << CONN_DEAD,
	[CONN_HEAD] = 1u << CONN_REQUEST | 1u << CONN_DEAD,
	[CONN_REQUEST] = 1u << CONN_IDLE | 1u << CONN_DISCARD | 1u << CONN_CLOSING | 1u << CONN_UPGRADED |
			 1u << CONN_DEAD,
	[CONN_DISCARD] = 1u << CONN_IDLE | 1u << CONN_CLOSING | 1u << CONN_DEAD,
	[CONN_CLOSING] = 1u << CONN_DEAD,
	[CONN_UPGRADED] = 0, /* freed once the socket is handed over */
	[CONN_DEAD] = 0,
};

int64_t http_now_us(void)
{
	return clock_mono_us();
}

struct http_conn *conn_new(struct http_server *srv, int fd, bool over_cap)
{
	struct http_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->srv = srv;
	c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(srv->base, timer_cb, c);
	c->kick = event_new(srv->base, -1, 0, kick_cb, c);
	c->body_buf = evbuffer_new();
	if (!c->bev || !c->timer || !c->kick || !c->body_buf) {
		if (c->bev)
			bufferevent_free(c->bev);
		else
			evutil_closesocket(fd);
		c->bev = NULL;
		conn_destroy(c);
		return NULL;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	request_init(&c->req, c);
	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, HTTP_INPUT_HIGHWAT);
	bufferevent_setwatermark(c->bev, EV_WRITE, HTTP_WRITE_LOWAT, 0);
	/* bulk bodies move in few large syscalls, not 16 KiB ones */
	bufferevent_set_max_single_read(c->bev, HTTP_IO_MAX);
	bufferevent_set_max_single_write(c->bev, HTTP_IO_MAX);
	struct timeval tv = { srv->lim.idle_timeout_ms / 1000, (srv->lim.idle_timeout_ms % 1000) * 1000 };
	bufferevent_set_timeouts(c->bev, NULL, &tv);
	TAILQ_INSERT_TAIL(&srv->conns, c, link);
	c->state = CONN_IDLE;
	if (over_cap) {
		c->req.start_us = http_now_us();
		conn_set_state(c, CONN_HEAD);
		head_error(c, 503, "too_many_connections", "too many connections");
		return c;
	}
	c->counted = true;
	srv->nconns++;
	bufferevent_enable(c->bev, EV_READ);
	arm_timer(c, srv->lim.idle_timeout_ms);
	return c;
}

void conn_destroy(struct http_conn *c)
{
	struct http_server *srv = c->srv;
	bool listed = c->bev != NULL; /* only a fully built connection is listed */
	if (c->bev) {
		TAILQ_REMOVE(&srv->conns, c, link);
		if (c->counted)
			srv->nconns--;
		bufferevent_free(c->bev);
	}
	if (c->timer)
		event_free(c->timer);
	if (c->kick)
		event_free(c->kick);
	if (c->body_buf)
		evbuffer_free(c->body_buf);
	request_reset(&c->req);
	free(c->hbuf);
	free(c);
	if (listed)
		server_conn_gone(srv);
}

void conn_kick(struct http_conn *c)
{
	event_active(c->kick, EV_TIMEOUT, 0);
}

static void arm_timer(struct http_conn *c, int64_t ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	event_add(c->timer, &tv);
}

/* How long the body may go on arriving: a whole body until its deadline,
 * however its bytes trickle in (one byte a second must not hold a
 * connection for ever); a streamed one while bytes keep coming. */
static int64_t body_wait_ms(const struct http_conn *c)
{
	const struct http_request *req = &c->req;
	if (req->body_mode != BODY_WHOLE && req->body_mode != BODY_JSON)
		return c->srv->lim.idle_timeout_ms;
	int64_t left = (req->body_deadline_us - http_now_us()) / 1000;
	return left > 0 ? left : 0;
}

void conn_set_state(struct http_conn *c, enum conn_state to)
{
	CHECK(to < CONN_STATE_MAX && (legal[c->state] & (1u << to)));
	log_debug("http conn %p: %s -> %s", (void *)c, state_names[c->state], state_names[to]);
	c->state = to;
	const struct http_server_limits *lim = &c->srv->lim;
	switch (to) {
	case CONN_IDLE:
	case CONN_DISCARD:
		arm_timer(c, lim->idle_timeout_ms);
		break;
	case CONN_HEAD:
		arm_timer(c, lim->header_timeout_ms);
		break;
	case CONN_REQUEST:
		event_del(c->timer);
		break;
	case CONN_CLOSING:
		/* The write callback now fires only once everything is out. */
		bufferevent_disable(c->bev, EV_READ);
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
		arm_timer(c, lim->idle_timeout_ms);
		conn_kick(c);
		break;
	case CONN_UPGRADED:
	case CONN_DEAD:
		event_del(c->timer);
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
		conn_kick(c);
		break;
	case CONN_STATE_MAX:
		break;
	}
}

/* ---- parser callbacks: they only record, never call the handler ---- */

static int head_append(struct http_conn *c, const char *at, size_t len)
{
	size_t max = c->srv->lim.max_header_bytes;
	if (c->hlen + len + 1 > max) {
		c->parse_error = 431;
		return -1;
	}
	if (c->hlen + len + 1 > c->hcap) {
		size_t cap = c->hcap ? c->hcap : 512;
		while (cap < c->hlen + len + 1)
			cap *= 2;
		if (cap > max + 1)
			cap = max + 1;
		char *nb = realloc(c->hbuf, cap);
		CHECK(nb != NULL);
		c->hbuf = nb;
		c->hcap = cap;
	}
	memcpy(c->hbuf + c->hlen, at, len);
	c->hlen += len;
	return 0;
}

static int on_message_begin(http_parser *p)
{
	struct http_conn *c = p->data;
	c->hlen = 0;
	c->nhdrs = 0;
	c->url_off = c->url_len = 0;
	c->in_value = false;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;
	c->url_len += (uint32_t)len;
	return head_append(c, at, len);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;
	if (c->nhdrs == 0 || c->in_value) {
		/* a new header starts: terminate the url or the previous value */
		if (c->nhdrs == HTTP_MAX_HEADERS) {
			c->parse_error = 431;
			return -1;
		}
		if (head_append(c, "", 1) != 0)
			return -1;
		struct http_header *h = &c->hdrs[c->nhdrs++];
		h->name_off = (uint32_t)c->hlen;
		h->name_len = 0;
		h->val_off = h->val_len = 0;
		c->in_value = false;
	}
	c->hdrs[c->nhdrs - 1].name_len += (uint32_t)len;
	return head_append(c, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;
	struct http_header *h = &c->hdrs[c->nhdrs - 1];
	if (!c->in_value) {
		if (head_append(c, "", 1) != 0)
			return -1;
		h->val_off = (uint32_t)c->hlen;
		c->in_value = true;
	}
	h->val_len += (uint32_t)len;
	return head_append(c, at, len);
}

/* RFC 9110 token; http-parser lets spaces through, which smuggling needs. */
static bool is_token(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch <= 0x20 || ch >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", ch))
			return false;
	}
	return true;
}

static int on_headers_complete(http_parser *p)
{
	struct http_conn *c = p->data;
	if (head_append(c, "", 1) != 0)
		return -1;
	for (int i = 0; i < c->nhdrs; i++) {
		struct http_header *h = &c->hdrs[i];
		if (!is_token(c->hbuf + h->name_off, h->name_len))
			return -1;
		if (!h->val_off) /* a field with no value callback: empty */
			h->val_off = h->name_off + h->name_len;
		while (h->val_len > 0 && (c->hbuf[h->val_off + h->val_len - 1] == ' ' ||
					  c->hbuf[h->val_off + h->val_len - 1] == '\t'))
			h->val_len--;
		c->hbuf[h->val_off + h->val_len] = '\0';
	}
	/* Stop here: the handler decides whether and when the body is read. */
	c->parse_error = -1;
	http_parser_pause(p, 1);
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct http_conn *c = p->data;
	if (c->feed_base && c->req.body_mode == BODY_STREAM) {
		/* noted here, moved by feed_input when the parser has returned */
		c->req.body_received += len;
		c->feed_segs[c->nfeed_segs].off = (size_t)(at - c->feed_base);
		c->feed_segs[c->nfeed_segs].len = len;
		if (++c->nfeed_segs == HTTP_FEED_SEGS)
			http_parser_pause(p, 1);
		return 0;
	}
	body_on_data(&c->req, at, len);
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct http_conn *c = p->data;
	c->req.msg_complete = true;
	/* Keep the next pipelined request in the input until this one is done. */
	http_parser_pause(p, 1);
	return 0;
}

/* Feeds at most max bytes of the first input chunk; -1 on a parse error. */
static ssize_t feed_input(struct http_conn *c, size_t max)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer_iovec v;
	if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
		return 0;
	size_t len = v.iov_len < max ? v.iov_len : max;
	c->feed_base = v.iov_base;
	c->nfeed_segs = 0;
	size_t n = http_parser_execute(&c->parser, &parser_settings, v.iov_base, len);
	enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
	c->feed_base = NULL;
	size_t pos = 0;
	for (int i = 0; i < c->nfeed_segs; i++) {
		CHECK(c->feed_segs[i].off >= pos && c->feed_segs[i].off + c->feed_segs[i].len <= n);
		evbuffer_drain(in, c->feed_segs[i].off - pos);
		evbuffer_remove_buffer(in, c->body_buf, c->feed_segs[i].len);
		pos = c->feed_segs[i].off + c->feed_segs[i].len;
	}
	evbuffer_drain(in, n - pos);
	if (err == HPE_PAUSED)
		http_parser_pause(&c->parser, 0);
	else if (err != HPE_OK)
		return -1;
	return (ssize_t)n;
}

/* ---- the connection's one loop ---- */

static void head_error(struct http_conn *c, int status, const char *code, const char *msg)
{
	if (!c->req.id[0])
		request_gen_id(&c->req);
	conn_set_state(c, CONN_REQUEST);
	response_server_error(&c->req, status, code, msg);
}

static void parse_failed(struct http_conn *c)
{
	enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
	if (c->parse_error == 431 || err == HPE_HEADER_OVERFLOW)
		head_error(c, 431, "header_too_large", "request header too large");
	else if (err == HPE_INVALID_TRANSFER_ENCODING)
		head_error(c, 501, "not_implemented", "unsupported transfer-encoding");
	else if (err == HPE_INVALID_METHOD)
		head_error(c, 400, "bad_request", "malformed request: unknown method");
	else
		head_error(c, 400, "bad_request", "malformed request");
}

static void finish_request(struct http_conn *c)
{
	request_reset(&c->req);
	evbuffer_drain(c->body_buf, evbuffer_get_length(c->body_buf));
	c->discarded = 0;
	conn_set_state(c, CONN_IDLE);
}

static void conn_process(struct http_conn *c)
{
	struct http_server *srv = c->srv;
	struct http_request *req = &c->req;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	if (c->read_held && (c->state != CONN_REQUEST || !req->body_paused)) {
		c->read_held = false;
		if (c->state == CONN_REQUEST || c->state == CONN_DISCARD || c->state == CONN_IDLE)
			bufferevent_enable(c->bev, EV_READ);
	}
	for (;;) {
		switch (c->state) {
		case CONN_IDLE:
			if (srv->shutting_down) {
				conn_set_state(c, CONN_DEAD);
				continue;
			}
			if (evbuffer_get_length(in) == 0)
				return;
			c->head_bytes = 0;
			c->parse_error = 0;
			req->start_us = http_now_us();
			conn_set_state(c, CONN_HEAD);
			continue;
		case CONN_HEAD: {
			if (evbuffer_get_length(in) == 0)
				return;
			ssize_t n = feed_input(c, SIZE_MAX);
			if (n < 0) {
				parse_failed(c);
				continue;
			}
			c->head_bytes += (size_t)n;
			if (c->parse_error != -1) {
				if (c->head_bytes > srv->lim.max_header_bytes)
					head_error(c, 431, "header_too_large", "request header too large");
				continue;
			}
			const char *code;
			int status = request_finish_head(req, &code);
			conn_set_state(c, CONN_REQUEST);
			if (status) {
				response_server_error(req, status, code, "request not acceptable");
				continue;
			}
			if (srv->shutting_down)
				req->keep_alive = false;
			srv->dispatch(req, srv->arg);
			continue;
		}
		case CONN_REQUEST:
			if (req->resp == RESP_ENDED && c->upgraded) {
				conn_set_state(c, CONN_UPGRADED);
				continue;
			}
			if (req->resp == RESP_ENDED) {
				if (req->close_after)
					conn_set_state(c, CONN_CLOSING);
				else if (req->msg_complete)
					finish_request(c);
				else {
					body_start_discard(req);
					conn_set_state(c, CONN_DISCARD);
				}
				continue;
			}
			if (req->body_error) {
				int st = req->body_error;
				req->body_error = 0;
				request_cancel(req);
				if (st == 413)
					response_server_error(req, st, "payload_too_large",
							      "request body too large");
				else if (st == 408)
					response_server_error(req, st, "request_timeout",
							      "request body timed out");
				else if (st == 1)
					response_server_error(req, 400, "invalid_json",
							      "request body is not valid JSON");
				else
					response_server_error(req, st, "bad_request",
							      "malformed request body");
				continue;
			}
			if (!body_wanted(req))
				return;
			if (!req->msg_complete) {
				if (evbuffer_get_length(in) == 0) {
					arm_timer(c, body_wait_ms(c));
					return;
				}
				if (feed_input(c, HTTP_FEED_MAX) < 0) {
					req->body_error = 400;
					continue;
				}
			}
			body_deliver(req);
			continue;
		case CONN_DISCARD:
			if (req->msg_complete) {
				finish_request(c);
				continue;
			}
			if (c->discarded > HTTP_DISCARD_MAX) {
				conn_set_state(c, CONN_CLOSING);
				continue;
			}
			if (evbuffer_get_length(in) == 0)
				return;
			if (feed_input(c, HTTP_FEED_MAX) < 0)
				conn_set_state(c, CONN_CLOSING);
			continue;
		case CONN_CLOSING:
			if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
				conn_set_state(c, CONN_DEAD);
				continue;
			}
			return;
		case CONN_UPGRADED:
		case CONN_DEAD:
		case CONN_STATE_MAX:
			return;
		}
	}
}

/* Gives the socket (and what the client already sent) to the upgrade's owner. */
static void conn_hand_over(struct http_conn *c)
{
	/* The parser stopped at the end of the headers, before their last byte:
	 * let it finish the head so that only the new protocol's bytes remain. */
	if (!c->req.msg_complete && c->req.content_length <= 0 && !c->req.chunked)
		(void)feed_input(c, 1);
	struct bufferevent *bev = c->bev;
	http_upgraded_fn fn = c->upgraded;
	void *arg = c->upgraded_arg;
	bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
	bufferevent_set_timeouts(bev, NULL, NULL);
	bufferevent_setwatermark(bev, EV_READ | EV_WRITE, 0, 0);
	TAILQ_REMOVE(&c->srv->conns, c, link);
	if (c->counted)
		c->srv->nconns--;
	c->bev = NULL;
	struct http_server *srv = c->srv;
	conn_destroy(c);
	server_conn_gone(srv);
	fn(bev, arg);
}

/* The client went away (or is hopelessly slow): cancel and close. */
static void conn_gone(struct http_conn *c)
{
	if (c->state == CONN_DEAD || c->state == CONN_UPGRADED)
		return;
	if (c->upgraded && c->state == CONN_REQUEST) {
		/* the new owner finds the EOF or error on the socket itself */
		conn_set_state(c, CONN_UPGRADED);
		return;
	}
	if (c->state == CONN_REQUEST && c->req.resp != RESP_ENDED) {
		request_cancel(&c->req);
		c->req.resp = RESP_ENDED;
		if (c->req.status == 0)
			c->req.status = HTTP_STATUS_CANCELED;
		response_log(&c->req);
	}
	conn_set_state(c, CONN_DEAD);
}

void conn_shutdown(struct http_conn *c)
{
	switch (c->state) {
	case CONN_IDLE:
		conn_set_state(c, CONN_DEAD);
		break;
	case CONN_REQUEST:
		c->req.keep_alive = false;
		if (c->req.resp == RESP_ENDED)
			c->req.close_after = true;
		break;
	case CONN_DISCARD:
		conn_set_state(c, CONN_CLOSING);
		break;
	default:
		break;
	}
}

void conn_force_close(struct http_conn *c)
{
	conn_gone(c);
}

/* ---- libevent callbacks ---- */

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct http_conn *c = arg;
	size_t len = evbuffer_get_length(bufferevent_get_input(bev));
	/* may pass the high watermark by one read: libevent resumes reading as
	 * soon as the input is below it, which would otherwise mean 4 KiB reads */
	if (len >= BEV_LIBEVENT_READ && len < HTTP_INPUT_HIGHWAT)
		bev_read_more(bev, HTTP_IO_MAX);
	conn_process(c);
	/* libevent calls back again and again while a full input stays full
	 * (bufferevent_inbuf_wm_check): a paused body stops reading instead */
	if (c->state == CONN_REQUEST && c->req.body_paused &&
	    evbuffer_get_length(bufferevent_get_input(bev)) >= HTTP_INPUT_HIGHWAT) {
		bufferevent_disable(bev, EV_READ);
		c->read_held = true;
	}
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct http_conn *c = arg;
	if (c->state == CONN_CLOSING) {
		conn_process(c);
		return;
	}
	struct http_request *req = &c->req;
	if (c->state == CONN_REQUEST && req->resp == RESP_STARTED && req->drain)
		req->drain(req->drain_arg);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct http_conn *c = arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		conn_gone(c);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;
	switch (c->state) {
	case CONN_HEAD:
		head_error(c, 408, "request_timeout", "request header timed out");
		conn_kick(c);
		break;
	case CONN_REQUEST:
		/* the body stalled */
		if (c->req.resp == RESP_NONE) {
			c->req.body_error = 408;
			conn_kick(c);
		} else {
			conn_gone(c);
		}
		break;
	case CONN_IDLE:
	case CONN_DISCARD:
	case CONN_CLOSING:
		conn_gone(c);
		break;
	default:
		break;
	}
}

static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;
	if (c->state == CONN_UPGRADED)
		conn_hand_over(c);
	else if (c->state == CONN_DEAD)
		conn_destroy(c);
	else
		conn_process(c);
}
