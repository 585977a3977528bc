/* The preview proxy's exchange: a request whose Host names a sandbox port
 * is resolved (the sandbox's row, its token, a wake), connected to the port
 * and sent; the answer is proxy_answer.c's, an upgrade proxy_splice.c's. */
#include "preview/proxy.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>

#include "core/check.h"
#include "core/clock.h"
#include "core/log.h"
#include "http/server.h"
#include "preview/gate.h"
#include "proxy_internal.h"
#include "sandbox/registry.h"

static void px_cancel(void *arg);
static bool wants_html(struct http_request *req);
static int publish_parse(const char *publish, struct sockaddr_storage *ss, int *len);
static bool px_admit(struct px *px, bool is_private);
static void px_resolved(struct sandbox_ref *ref, const struct core_error *err, void *arg);
static bool has_token(const char *list, const char *token);
static void build_head(struct px *px);
static void body_data(struct http_request *req, struct evbuffer *chunk, void *arg);
static void body_end(struct http_request *req, void *arg);
static void px_tick(evutil_socket_t fd, short what, void *arg);

/* ---- the proxy ---- */

struct preview *preview_new(struct event_base *base, const struct preview_config *cfg, struct registry *reg)
{
	struct preview *pv = calloc(1, sizeof(*pv));
	CHECK(pv != NULL);
	pv->base = base;
	pv->cfg = *cfg;
	pv->reg = reg;
	TAILQ_INIT(&pv->idle);
	if (publish_parse(cfg->publish_addr, &pv->publish, &pv->publish_len) != 0)
		pv->publish_len = 0; /* each request says so (502) */
	return pv;
}

void preview_free(struct preview *pv)
{
	if (!pv)
		return;
	upconn_free_idle(pv);
	free(pv);
}

/* The client went: the server frees its request after this. */
static void px_cancel(void *arg)
{
	struct px *px = arg;
	px->req = NULL;
	px_end(px);
}

bool preview_dispatch(struct preview *pv, struct http_request *req)
{
	const char *host = http_request_header(req, "Host");
	struct preview_target t;
	switch (host ? preview_host_parse(host, strlen(host), pv->cfg.domain, &t) : PREVIEW_HOST_NONE) {
	case PREVIEW_HOST_NONE:
		return false;
	case PREVIEW_HOST_BAD:
		http_respond_error(req, 404, "not_found", "%s names no sandbox port (<port>-<sandbox id>.%s)",
				   host, pv->cfg.domain);
		return true;
	case PREVIEW_HOST_OK:
		break;
	}
	struct px *px = calloc(1, sizeof(*px));
	CHECK(px != NULL);
	px->pv = pv;
	px->req = req;
	px->target = t;
	px->head_method = strcmp(http_request_method(req), "HEAD") == 0;
	/* what the request carries decides how a woken port is waited for */
	const char *connection = http_request_header(req, "Connection");
	const char *upgrade = http_request_header(req, "Upgrade");
	px->upgrade = upgrade && has_token(connection, "upgrade");
	int64_t cl = http_request_content_length(req);
	px->chunked = cl < 0 && http_request_header(req, "Transfer-Encoding") != NULL;
	px->body = cl > 0 || px->chunked;
	http_request_set_cancel(req, px_cancel, px);
	/* activity once admitted (px_resolved): a refused request is none */
	px->wait = registry_acquire(pv->reg, t.sandbox_id, REGISTRY_LIVE, px_resolved, px);
	return true;
}

/* ---- the exchange ---- */

/* Forward through the steps (a woken port's first: its service asked
 * about, else tried), back to a fresh connection or to another try of a
 * woken port when the app closed a sent request unanswered, and to the end
 * from anywhere. */
void px_set_state(struct px *px, enum px_state next)
{
#define S(x) (1u << (x))
	static const unsigned legal[PX_STATE_MAX] = {
		[PX_RESOLVE] = S(PX_WAKE) | S(PX_CONNECT) | S(PX_SENT) | S(PX_DONE),
		[PX_WAKE] = S(PX_PORT_POLL) | S(PX_PORT_TRY) | S(PX_DONE),
		[PX_PORT_POLL] = S(PX_PORT_TRY) | S(PX_CONNECT) | S(PX_DONE),
		[PX_PORT_TRY] = S(PX_PORT_SETTLE) | S(PX_SENT) | S(PX_PORT_RETRY) | S(PX_DONE),
		[PX_PORT_SETTLE] = S(PX_SENT) | S(PX_PORT_RETRY) | S(PX_DONE),
		[PX_PORT_RETRY] = S(PX_PORT_TRY) | S(PX_DONE),
		[PX_CONNECT] = S(PX_SENT) | S(PX_DONE),
		[PX_SENT] = S(PX_HEAD) | S(PX_CONNECT) | S(PX_PORT_RETRY) | S(PX_DONE),
		[PX_HEAD] = S(PX_BODY) | S(PX_SPLICE) | S(PX_DONE),
		[PX_BODY] = S(PX_COMPLETE) | S(PX_DONE),
		[PX_COMPLETE] = S(PX_DONE),
		[PX_SPLICE] = S(PX_FLUSH) | S(PX_DONE),
		[PX_FLUSH] = S(PX_DONE),
	};
#undef S
	static const char *const names[PX_STATE_MAX] = {
		[PX_RESOLVE] = "resolve",
		[PX_WAKE] = "wake",
		[PX_PORT_POLL] = "port_poll",
		[PX_PORT_TRY] = "port_try",
		[PX_PORT_SETTLE] = "port_settle",
		[PX_PORT_RETRY] = "port_retry",
		[PX_CONNECT] = "connect",
		[PX_SENT] = "sent",
		[PX_HEAD] = "head",
		[PX_BODY] = "body",
		[PX_COMPLETE] = "complete",
		[PX_SPLICE] = "splice",
		[PX_FLUSH] = "flush",
		[PX_DONE] = "done",
	};
	CHECK(next < PX_STATE_MAX && (legal[px->state] & (1u << next)));
	log_debug("sandbox=%s preview port %d: %s -> %s", px->target.sandbox_id, px->target.port,
		  names[px->state], names[next]);
	px->state = next;
}

struct http_request *px_take_req(struct px *px)
{
	struct http_request *req = px->req;
	px->req = NULL;
	if (req)
		http_request_set_cancel(req, NULL, NULL);
	return req;
}

void px_end(struct px *px)
{
	if (px->state != PX_DONE)
		px_set_state(px, PX_DONE);
	px_port_release(px);
	if (px->wait)
		registry_wait_cancel(px->wait);
	if (px->up)
		upconn_free(px->up);
	if (px->client)
		bufferevent_free(px->client);
	if (px->head)
		evbuffer_free(px->head);
	if (px->tick)
		event_free(px->tick);
	up_answer_clear(&px->answer);
	free(px);
}

static bool wants_html(struct http_request *req)
{
	const char *accept = http_request_header(req, "Accept");
	if (!accept)
		return false;
	const char *html = strstr(accept, "text/html");
	const char *json = strstr(accept, "application/json");
	return html && (!json || html < json);
}

/* JSON for API clients, a small page for browsers. */
void px_fail(struct px *px, int status, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct http_request *req = px_take_req(px);
	if (req) {
		if (px->state == PX_BODY) {
			log_warn("preview %s:%d: %s (answer cut)", px->target.sandbox_id, px->target.port,
				 msg);
			http_response_abort(req);
		} else if (wants_html(req)) {
			static const char page[] =
				"<!doctype html><html><head><meta charset=\"utf-8\"><title>%d</title></head>"
				"<body><h1>%d</h1><p>%s</p></body></html>\n";
			struct evbuffer *b = evbuffer_new();
			CHECK(b != NULL);
			evbuffer_add_printf(b, page, status, status,
					    msg); /* msg holds no markup of the client's */
			http_response_start(req, status, "text/html; charset=utf-8",
					    (int64_t)evbuffer_get_length(b));
			http_response_write(req, b);
			http_response_end(req);
			evbuffer_free(b);
		} else {
			http_respond_error(req, status, code, "%s", msg);
		}
	}
	px_end(px);
}

/* The connect address of the published ports (port 0): the publish
 * address, loopback for a wildcard one. */
static int publish_parse(const char *publish, struct sockaddr_storage *ss, int *len)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (strcmp(publish, "0.0.0.0") == 0 || strcmp(publish, "") == 0)
		publish = "127.0.0.1";
	else if (strcmp(publish, "::") == 0)
		publish = "::1";
	if (inet_pton(AF_INET, publish, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		*len = sizeof(*in4);
		return 0;
	}
	if (inet_pton(AF_INET6, publish, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		*len = sizeof(*in6);
		return 0;
	}
	return -1;
}

/* A private sandbox's request without a good token is answered here (401,
 * 403), before anything wakes or the app is contacted; a token in the query
 * is traded for a cookie (302). False: answered and px freed. */
static bool px_admit(struct px *px, bool is_private)
{
	struct preview_gate g;
	const char *id = px->target.sandbox_id;
	switch (preview_gate_check(px->req, px->pv->cfg.secret, &px->target, is_private,
				   clock_real_ms() / 1000, &g)) {
	case PREVIEW_GATE_PASS:
		return true;
	case PREVIEW_GATE_REQUIRED:
		px_fail(px, 401, "preview_token_required",
			"sandbox %s is private: its previews need a token (POST "
			"/api/sandboxes/%s/preview-token)",
			id, id);
		return false;
	case PREVIEW_GATE_INVALID:
		px_fail(px, 403, "preview_token_invalid",
			"the preview token is not valid for port %d of sandbox %s", px->target.port, id);
		return false;
	case PREVIEW_GATE_EXPIRED:
		px_fail(px, 403, "preview_token_expired", "the preview token has expired");
		return false;
	case PREVIEW_GATE_REDIRECT:
		break;
	}
	struct http_request *req = px->req;
	http_response_header(req, "Location", g.location);
	if (g.set_cookie[0])
		http_response_header(req, "Set-Cookie", g.set_cookie);
	http_response_header(req, "Cache-Control", "no-store");
	http_respond_empty(px_take_req(px), 302);
	px_end(px);
	return false;
}

static void px_resolved(struct sandbox_ref *ref, const struct core_error *err, void *arg)
{
	struct px *px = arg;
	px->wait = NULL;
	if (err) {
		int status = err->kind == CORE_NOT_FOUND || err->kind == CORE_INVALID ? 404
			     : err->kind == CORE_CONFLICT			      ? 409
			     : strcmp(err->code, "wake_timeout") == 0		      ? 504
										      : 503;
		px_fail(px, status, err->code, "%s", err->message);
		return;
	}
	const struct sandbox *sb = sandbox_ref_get(ref);
	int host_port = 0;
	for (size_t i = 0; i < sb->nports; i++)
		if (sb->ports[i].container_port == px->target.port)
			host_port = sb->ports[i].host_port;
	enum sandbox_status status = sb->status;
	/* valid until the channels drop it, which frees it only once our stream is gone */
	struct agent_channel *ch =
		status == SANDBOX_RUNNING && host_port <= 0 ? sandbox_ref_channel(ref) : NULL;
	bool auto_wake = sb->auto_wake;
	bool is_private = sandbox_port_private(sb, px->target.port);
	int64_t idle_ms = sb->idle_timeout_ms;
	bool woken = px->state == PX_WAKE; /* read again after the wake */
	if (woken && host_port > 0)
		px->ref = sandbox_ref_hold(ref); /* its agent says when the port is ready */
	sandbox_ref_put(ref);
	if (!woken && !px_admit(px, is_private))
		return; /* decided before anything wakes */
	if (!woken && status == SANDBOX_RUNNING)
		registry_touch(px->pv->reg, px->target.sandbox_id);
	if (status != SANDBOX_RUNNING && auto_wake && !woken &&
	    (status == SANDBOX_STOPPED || status == SANDBOX_STOPPING || status == SANDBOX_STARTING)) {
		/* held: the core wakes it (once however many wait), then it is read again */
		px_set_state(px, PX_WAKE);
		px->wake_until_ms = clock_mono_ms() + px->pv->cfg.wake_timeout_ms;
		px->wait =
			registry_acquire(px->pv->reg, px->target.sandbox_id,
					 REGISTRY_RUNNING | REGISTRY_WAKE | REGISTRY_TOUCH, px_resolved, px);
		return;
	}
	px->touch_ms = idle_ms > 0 && idle_ms / 2 < SPLICE_TOUCH_MS ? idle_ms / 2 : SPLICE_TOUCH_MS;
	if (status != SANDBOX_RUNNING) {
		px_fail(px, 409, "sandbox_not_running", "sandbox %s is %s%s", px->target.sandbox_id,
			sandbox_status_name(status), auto_wake ? "" : " (auto_wake is off)");
		return;
	}
	if (host_port <= 0) {
		px->ch = ch;
	} else if (px->pv->publish_len == 0) {
		px_fail(px, 502, "upstream_unreachable", "SANDBAR_PUBLISH_ADDR %s is not an address",
			px->pv->cfg.publish_addr);
		return;
	} else {
		px->host_port = host_port;
	}
	if (woken)
		px_port_wait(px);
	else
		px_connect(px, host_port > 0);
}

void proxy_set_timeouts(struct bufferevent *bev, int64_t ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	bufferevent_set_timeouts(bev, &tv, &tv);
}

void px_open(struct px *px, enum px_state next)
{
	struct preview *pv = px->pv;
	struct upconn *up = upconn_new(pv, px->host_port, px->ch, px->target.port);
	px->up = up;
	bufferevent_setcb(up->bev, up_read, up_write, up_event, px);
	/* through the agent, the read timeout stands for the connect's until it connected */
	proxy_set_timeouts(up->bev, pv->cfg.connect_timeout_ms);
	px_set_state(px, next);
	if (up->ua) {
		bufferevent_enable(up->bev, EV_READ);
		return;
	}
	struct sockaddr_storage ss = pv->publish;
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)px->host_port);
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)px->host_port);
	if (bufferevent_socket_connect(up->bev, (struct sockaddr *)&ss, pv->publish_len) != 0)
		px_fail(px, 502, "upstream_unreachable", "cannot connect to port %d of sandbox %s: %s",
			px->target.port, px->target.sandbox_id, strerror(errno));
}

void px_connect(struct px *px, bool may_reuse)
{
	struct upconn *up = may_reuse ? upconn_take(px->pv, px->host_port) : NULL;
	if (!up) {
		px_open(px, PX_CONNECT);
		return;
	}
	px->up = up;
	bufferevent_setcb(up->bev, up_read, up_write, up_event, px);
	px_send(px);
}

/* ---- the request, upstream ---- */

/* Is token one of a comma-separated list (case-insensitive)? */
static bool has_token(const char *list, const char *token)
{
	size_t n = strlen(token);
	for (const char *p = list; p && *p;) {
		p += strspn(p, " \t,");
		size_t len = strcspn(p, " \t,");
		if (len == n && strncasecmp(p, token, n) == 0)
			return true;
		p += len;
	}
	return false;
}

bool proxy_skipped_header(const char *name, const char *connection)
{
	static const char *const hop[] = {
		"Connection", "Keep-Alive",	   "Proxy-Connection",	"TE",
		"Trailer",    "Transfer-Encoding", "Upgrade",		"Content-Length",
		"Expect",     "X-Forwarded-For",   "X-Forwarded-Proto", "X-Forwarded-Host",
	};
	for (size_t i = 0; i < ARRAY_LEN(hop); i++)
		if (strcasecmp(name, hop[i]) == 0)
			return true;
	return has_token(connection, name); /* and what the Connection header names */
}

static void build_head(struct px *px)
{
	struct http_request *req = px->req;
	struct evbuffer *h = evbuffer_new();
	CHECK(h != NULL);
	const char *connection = http_request_header(req, "Connection");
	evbuffer_add_printf(h, "%s %s HTTP/1.1\r\n", http_request_method(req), http_request_target(req));
	const char *name, *value;
	for (int i = 0; http_request_header_at(req, i, &name, &value); i++) {
		if (proxy_skipped_header(name, connection))
			continue;
		/* every header of every request: copied, not formatted */
		evbuffer_add(h, name, strlen(name));
		evbuffer_add(h, ": ", 2);
		evbuffer_add(h, value, strlen(value));
		evbuffer_add(h, "\r\n", 2);
	}
	const char *xff = http_request_header(req, "X-Forwarded-For");
	const char *peer = http_request_peer(req);
	if (xff)
		evbuffer_add_printf(h, "X-Forwarded-For: %s, %s\r\n", xff, peer);
	else
		evbuffer_add_printf(h, "X-Forwarded-For: %s\r\n", peer);
	const char *proto = http_request_header(req, "X-Forwarded-Proto");
	evbuffer_add_printf(h, "X-Forwarded-Proto: %s\r\n", proto ? proto : "http");
	const char *fhost = http_request_header(req, "X-Forwarded-Host");
	const char *host = http_request_header(req, "Host");
	evbuffer_add_printf(h, "X-Forwarded-Host: %s\r\n", fhost ? fhost : host ? host : "");
	if (px->chunked)
		evbuffer_add_printf(h, "Transfer-Encoding: chunked\r\n");
	else if (http_request_content_length(req) >= 0)
		evbuffer_add_printf(h, "Content-Length: %" PRId64 "\r\n", http_request_content_length(req));
	if (px->upgrade)
		evbuffer_add_printf(h, "Connection: Upgrade\r\nUpgrade: %s\r\n\r\n",
				    http_request_header(req, "Upgrade"));
	else
		evbuffer_add_printf(h, "Connection: keep-alive\r\n\r\n");
	px->head = h;
}

static void body_data(struct http_request *req, struct evbuffer *chunk, void *arg)
{
	struct px *px = arg;
	struct evbuffer *out = bufferevent_get_output(px->up->bev);
	size_t len = evbuffer_get_length(chunk);
	if (len == 0)
		return;
	if (px->chunked)
		evbuffer_add_printf(out, "%zx\r\n", len);
	evbuffer_add_buffer(out, chunk);
	if (px->chunked)
		evbuffer_add(out, "\r\n", 2);
	if (evbuffer_get_length(out) > UP_HIGHWAT)
		http_request_body_pause(req);
}

static void body_end(struct http_request *req, void *arg)
{
	struct px *px = arg;
	if (px->chunked)
		evbuffer_add(bufferevent_get_output(px->up->bev), "0\r\n\r\n", 5);
	px->sent_all = true;
}

static const struct http_body_stream body_cbs = { body_data, body_end };

/* The head goes out (a copy: a retry on a fresh connection sends it again),
 * then the body as it comes; the head timeout runs from here. */
void px_send(struct px *px)
{
	px_set_state(px, PX_SENT);
	if (!px->head)
		build_head(px);
	struct bufferevent *bev = px->up->bev;
	evbuffer_add(bufferevent_get_output(bev), evbuffer_pullup(px->head, -1),
		     evbuffer_get_length(px->head));
	proxy_set_timeouts(bev, px->pv->cfg.head_timeout_ms);
	bufferevent_setwatermark(bev, EV_WRITE, UP_HIGHWAT / 2, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	up_answer_start(px);
	if (px->body)
		http_request_stream_body(px->req, &body_cbs, px);
	else
		px->sent_all = true;
}

/* ---- the one timer ---- */

void px_tick_in(struct px *px, int64_t ms)
{
	if (!px->tick) {
		px->tick = evtimer_new(px->pv->base, px_tick, px);
		CHECK(px->tick != NULL);
	}
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(px->tick, &tv);
}

static void px_tick(evutil_socket_t fd, short what, void *arg)
{
	struct px *px = arg;
	if (px->state == PX_SPLICE)
		splice_tick(px);
	else
		px_port_tick(px);
}
