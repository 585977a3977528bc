/* The preview proxy: one exchange per request (resolve the sandbox's
 * published port, connect or reuse a kept connection, send the head and
 * stream the body, parse the answer's head, stream its body back), or a
 * splice of two sockets after an upgrade. Kept upstream connections live in
 * a small list per host:port. A port that is not published is reached
 * through a TCP stream of the sandbox's agent instead (upstream_agent.c: a
 * bufferevent like a socket's, so the HTTP code is the same); such a
 * connection serves one exchange and is never kept. */
#include "preview/proxy.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "core/check.h"
#include "core/clock.h"
#include "core/log.h"
#include "http/server.h"
#include "preview/host.h"
#include "preview/gate.h"
#include "sandbox/registry.h"
#include "upstream_agent.h"

#define UP_HIGHWAT  (1024 * 1024) /* queued bytes one way before the source stops */
#define UP_HEAD_MAX (64 * 1024)	  /* an upstream response head past this: 502 */
#define UP_KEY_MAX  64
#define UP_HDRS_MAX 100
/* A woken sandbox's port: Docker's userland proxy accepts on it before the
 * app listens, then closes; a connection still open this long after it was
 * accepted reached the app. Between tries, the wait. */
#define WAKE_SETTLE_MS 150
#define WAKE_RETRY_MS  100
/* An open WebSocket counts as activity at least this often, so the reaper
 * never stops a sandbox with one (at most half its idle timeout). */
#define SPLICE_TOUCH_MS 30000

/* A connection to one sandbox port: in an exchange, or kept idle. */
struct upconn {
	TAILQ_ENTRY(upconn) link; /* among the kept ones */
	struct preview *pv;
	struct bufferevent *bev;
	char key[UP_KEY_MAX]; /* "addr:port" */
	bool reused;
	struct upstream_agent *ua; /* through the agent: bev is its near end, never kept */
};
TAILQ_HEAD(upconn_list, upconn);

struct preview {
	struct event_base *base;
	struct preview_config cfg;
	struct registry *reg;
	struct upconn_list idle;
};

/* The answer's side of an exchange (the request side only needs "sent all"). */
enum px_state {
	PX_RESOLVE, /* the sandbox's row */
	PX_CONNECT, /* the upstream connection opening */
	PX_READY,   /* woken sandbox: its port tried until the app holds the connection (or between tries) */
	PX_HEAD,    /* request sent (its body may still stream), waiting for the answer's head */
	PX_BODY,    /* answer head sent to the client, its body streaming */
	PX_SPLICE,  /* 101 answered: bytes copied both ways until either side closes */
	PX_FLUSH,   /* one side closed: what it sent is written to the other, then both close */
	PX_DONE,
	PX_STATE_MAX
};

struct upheader {
	uint32_t name, name_len, value, value_len; /* offsets into hbuf */
};

struct px {
	struct preview *pv;
	struct http_request *req;
	enum px_state state;
	struct preview_target target;
	struct sockaddr_storage addr; /* the published port */
	int addr_len;
	char key[UP_KEY_MAX];
	struct registry_wait *wait;
	struct agent_channel *ch; /* the port is not published: through the agent's channel */
	struct upconn *up;
	struct bufferevent *client; /* after an upgrade */
	struct evbuffer *head;	    /* the request head, kept for a retry on a fresh connection */
	bool body;		    /* the request has a body */
	bool chunked;		    /* ... sent chunked */
	bool sent_all;		    /* the whole request is in the upstream's output */
	bool upgrade;		    /* the client asked for an upgrade */
	bool head_method;
	bool got_bytes;	       /* the upstream answered something */
	bool woke;	       /* its sandbox was stopped: held while it woke, the port tried until ready */
	bool port_ready;       /* ... and the app held a connection */
	int64_t wake_until_ms; /* monotonic: then 504 wake_timeout */
	int64_t touch_ms;      /* while spliced, activity this often */
	struct event *tick;    /* a try's settle or wait; the splice's activity */

	http_parser parser;
	char *hbuf;
	size_t hlen, hcap;
	struct upheader hdrs[UP_HDRS_MAX];
	int nhdrs;
	bool in_value;
	bool complete; /* the answer's message is over */
};

static void px_set_state(struct px *px, enum px_state next);
static void px_free(struct px *px);
static void px_fail(struct px *px, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void px_resolved(struct sandbox_ref *ref, const struct core_error *err, void *arg);
static bool px_admit(struct px *px, bool is_private);
static void px_connect(struct px *px, bool may_reuse);
static void px_tick(evutil_socket_t fd, short what, void *arg);
static void px_tick_in(struct px *px, int64_t ms);
static void px_wake_retry(struct px *px);
static void px_send(struct px *px);
static void up_read(struct bufferevent *bev, void *arg);
static void up_write(struct bufferevent *bev, void *arg);
static void up_event(struct bufferevent *bev, short what, void *arg);
static bool up_parse(struct px *px, struct bufferevent *bev, bool all);
static void upconn_free(struct upconn *up);
static void upconn_keep(struct upconn *up);

/* ---- the proxy ---- */

struct preview *preview_new(struct event_base *base, const struct preview_config *cfg, struct registry *reg)
{
	struct preview *pv = calloc(1, sizeof(*pv));
	CHECK(pv != NULL);
	pv->base = base;
	pv->cfg = *cfg;
	pv->reg = reg;
	TAILQ_INIT(&pv->idle);
	return pv;
}

void preview_free(struct preview *pv)
{
	if (!pv)
		return;
	struct upconn *up;
	while ((up = TAILQ_FIRST(&pv->idle))) {
		TAILQ_REMOVE(&pv->idle, up, link);
		upconn_free(up);
	}
	free(pv);
}

static void px_cancel(void *arg)
{
	struct px *px = arg;
	px->req = NULL;
	px_free(px);
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
	http_request_set_cancel(req, px_cancel, px);
	/* activity once admitted (px_resolved): a refused request is none */
	px->wait = registry_acquire(pv->reg, t.sandbox_id, REGISTRY_LIVE, px_resolved, px);
	return true;
}

/* ---- the exchange ---- */

static void px_set_state(struct px *px, enum px_state next)
{
	static const unsigned legal[PX_STATE_MAX] = {
		[PX_RESOLVE] = 1u << PX_CONNECT | 1u << PX_HEAD | 1u << PX_DONE,
		[PX_CONNECT] = 1u << PX_HEAD | 1u << PX_READY | 1u << PX_DONE,
		[PX_READY] = 1u << PX_CONNECT | 1u << PX_HEAD | 1u << PX_DONE,
		[PX_HEAD] =
			1u << PX_CONNECT | 1u << PX_READY | 1u << PX_BODY | 1u << PX_SPLICE | 1u << PX_DONE,
		[PX_BODY] = 1u << PX_DONE,
		[PX_SPLICE] = 1u << PX_FLUSH | 1u << PX_DONE,
		[PX_FLUSH] = 1u << PX_DONE,
	};
	CHECK(legal[px->state] & (1u << next));
	px->state = next;
}

static void px_free(struct px *px)
{
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
	free(px->hbuf);
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

/* The answer when nothing could be forwarded: JSON for API clients, a small
 * page for browsers. Ends the exchange. */
static void px_fail(struct px *px, int status, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct http_request *req = px->req;
	px->req = NULL;
	if (req) {
		http_request_set_cancel(req, NULL, NULL);
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
	if (px->state != PX_DONE)
		px_set_state(px, PX_DONE);
	px_free(px);
}

/* The connect address of a published port: the publish address, loopback
 * for a wildcard one. */
static int published_addr(const char *publish, int port, struct sockaddr_storage *ss, int *len)
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
		in4->sin_port = htons((uint16_t)port);
		*len = sizeof(*in4);
		return 0;
	}
	if (inet_pton(AF_INET6, publish, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
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
	px->req = NULL;
	http_request_set_cancel(req, NULL, NULL);
	http_respond_empty(req, 302);
	px_set_state(px, PX_DONE);
	px_free(px);
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
	sandbox_ref_put(ref);
	if (!px->woke && !px_admit(px, is_private))
		return; /* decided before anything wakes */
	if (!px->woke && status == SANDBOX_RUNNING)
		registry_touch(px->pv->reg, px->target.sandbox_id);
	if (status != SANDBOX_RUNNING && auto_wake && !px->woke &&
	    (status == SANDBOX_STOPPED || status == SANDBOX_STOPPING || status == SANDBOX_STARTING)) {
		/* held: the core wakes it (once however many wait), then it is read again */
		px->woke = true;
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
		px_connect(px, false);
		return;
	}
	if (published_addr(px->pv->cfg.publish_addr, host_port, &px->addr, &px->addr_len) != 0) {
		px_fail(px, 502, "upstream_unreachable", "SANDBAR_PUBLISH_ADDR %s is not an address",
			px->pv->cfg.publish_addr);
		return;
	}
	snprintf(px->key, sizeof(px->key), "%s:%d", px->pv->cfg.publish_addr, host_port);
	px_connect(px, true);
}

static struct upconn *idle_take(struct preview *pv, const char *key)
{
	struct upconn *up;
	TAILQ_FOREACH(up, &pv->idle, link)
	{
		if (strcmp(up->key, key) == 0) {
			TAILQ_REMOVE(&pv->idle, up, link);
			return up;
		}
	}
	return NULL;
}

static void set_idle_timeouts(struct bufferevent *bev, int64_t ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	bufferevent_set_timeouts(bev, &tv, &tv);
}

/* A kept connection when there is one (and may_reuse), else a new one. */
static void px_connect(struct px *px, bool may_reuse)
{
	struct preview *pv = px->pv;
	struct upconn *up = may_reuse ? idle_take(pv, px->key) : NULL;
	if (up) {
		up->reused = true;
		px->up = up;
		bufferevent_setcb(up->bev, up_read, up_write, up_event, px);
		px_set_state(px, PX_HEAD);
		px_send(px);
		return;
	}
	up = calloc(1, sizeof(*up));
	CHECK(up != NULL);
	up->pv = pv;
	snprintf(up->key, sizeof(up->key), "%s", px->key);
	if (px->ch) {
		/* the read timeout stands for the connect's until the agent connected */
		up->ua = upstream_agent_new(pv->base, px->ch, px->target.port, &up->bev);
		px->up = up;
		bufferevent_setcb(up->bev, up_read, up_write, up_event, px);
		set_idle_timeouts(up->bev, pv->cfg.connect_timeout_ms);
		bufferevent_enable(up->bev, EV_READ);
		px_set_state(px, PX_CONNECT);
		return;
	}
	up->bev = bufferevent_socket_new(pv->base, -1, BEV_OPT_CLOSE_ON_FREE);
	CHECK(up->bev != NULL);
	px->up = up;
	bufferevent_setcb(up->bev, up_read, up_write, up_event, px);
	set_idle_timeouts(up->bev, pv->cfg.connect_timeout_ms);
	px_set_state(px, PX_CONNECT);
	if (bufferevent_socket_connect(up->bev, (struct sockaddr *)&px->addr, px->addr_len) != 0)
		px_fail(px, 502, "upstream_unreachable", "cannot connect to port %d of sandbox %s: %s",
			px->target.port, px->target.sandbox_id, strerror(errno));
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

/* Hop-by-hop headers (RFC 9110 7.6.1) and those we write ourselves. */
static bool skipped_header(const char *name, const char *connection)
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
	const char *upgrade = http_request_header(req, "Upgrade");
	px->upgrade = upgrade && has_token(connection, "upgrade");
	int64_t cl = http_request_content_length(req);
	const char *te = http_request_header(req, "Transfer-Encoding");
	px->chunked = cl < 0 && te != NULL;
	px->body = cl > 0 || px->chunked;
	evbuffer_add_printf(h, "%s %s HTTP/1.1\r\n", http_request_method(req), http_request_target(req));
	const char *name, *value;
	for (int i = 0; http_request_header_at(req, i, &name, &value); i++)
		if (!skipped_header(name, connection))
			evbuffer_add_printf(h, "%s: %s\r\n", name, value);
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
	else if (cl >= 0)
		evbuffer_add_printf(h, "Content-Length: %" PRId64 "\r\n", cl);
	if (px->upgrade)
		evbuffer_add_printf(h, "Connection: Upgrade\r\nUpgrade: %s\r\n\r\n", upgrade);
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
static void px_send(struct px *px)
{
	if (!px->head)
		build_head(px);
	struct bufferevent *bev = px->up->bev;
	evbuffer_add(bufferevent_get_output(bev), evbuffer_pullup(px->head, -1),
		     evbuffer_get_length(px->head));
	set_idle_timeouts(bev, px->pv->cfg.head_timeout_ms);
	bufferevent_setwatermark(bev, EV_WRITE, UP_HIGHWAT / 2, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	http_parser_init(&px->parser, HTTP_RESPONSE);
	px->parser.data = px;
	if (px->body)
		http_request_stream_body(px->req, &body_cbs, px);
	else
		px->sent_all = true;
}

/* ---- the answer ---- */

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
		if (skipped_header(name, connection) && strcasecmp(name, "X-Forwarded-For") != 0 &&
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
	set_idle_timeouts(px->up->bev, px->pv->cfg.idle_timeout_ms);
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
	px->complete = true;
	http_parser_pause(p, 1);
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
	struct http_request *req = px->req;
	px->req = NULL;
	http_request_set_cancel(req, NULL, NULL);
	bool keep = http_should_keep_alive(&px->parser) && px->sent_all && !px->up->ua &&
		    evbuffer_get_length(bufferevent_get_input(px->up->bev)) == 0;
	struct upconn *up = px->up;
	px->up = NULL;
	if (keep)
		upconn_keep(up);
	else
		upconn_free(up);
	px_set_state(px, PX_DONE);
	px_free(px);
	http_response_end(req);
}

static void px_upgraded(struct bufferevent *client, void *arg);

static void up_read(struct bufferevent *bev, void *arg)
{
	up_parse(arg, bev, false);
}

/* Parses what the upstream sent; false when the exchange ended or left the
 * answer (px may be freed). all: past the client's backpressure too (the
 * upstream's EOF came: nothing more will call for the rest). */
static bool up_parse(struct px *px, struct bufferevent *bev, bool all)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	if (px->state == PX_READY) {
		/* the app spoke first: it is there */
		event_del(px->tick);
		px->port_ready = true;
		px_set_state(px, PX_HEAD);
		px_send(px);
	}
	px->got_bytes = true;
	while (evbuffer_get_length(in) > 0 && (px->state == PX_HEAD || px->state == PX_BODY)) {
		size_t n = evbuffer_get_contiguous_space(in);
		const char *data = (const char *)evbuffer_pullup(in, (ssize_t)n);
		size_t used = http_parser_execute(&px->parser, &parser_settings, data, n);
		enum http_errno e = HTTP_PARSER_ERRNO(&px->parser);
		evbuffer_drain(in, used);
		if (px->complete) {
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
			struct http_request *req = px->req;
			px->req = NULL;
			http_request_set_cancel(req, NULL, NULL);
			bufferevent_disable(bev, EV_READ);
			http_request_upgrade(req, px_upgraded, px);
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

static void up_write(struct bufferevent *bev, void *arg)
{
	struct px *px = arg;
	if (px->req && px->body && !px->sent_all)
		http_request_body_resume(px->req);
}

static void up_event(struct bufferevent *bev, short what, void *arg)
{
	struct px *px = arg;
	if (what & BEV_EVENT_CONNECTED) {
		int one = 1; /* a head and its body are two writes: no Nagle wait between */
		if (!px->up->ua)
			setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (px->woke && !px->port_ready) {
			/* held a moment: Docker's proxy closes at once while the app does not listen */
			px_set_state(px, PX_READY);
			bufferevent_enable(bev, EV_READ);
			px_tick_in(px, WAKE_SETTLE_MS);
			return;
		}
		px_set_state(px, PX_HEAD);
		px_send(px);
		return;
	}
	int agent_err = px->up->ua ? upstream_agent_error(px->up->ua) : 0;
	if (px->state == PX_CONNECT && agent_err == ENOTSUP) {
		px_fail(px, 502, "port_not_published",
			"port %d of sandbox %s is not published, and its agent predates TCP streams",
			px->target.port, px->target.sandbox_id);
		return;
	}
	if (px->woke && !px->port_ready && (px->state == PX_CONNECT || px->state == PX_READY)) {
		px_wake_retry(px);
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
	if ((what & BEV_EVENT_EOF) && (px->state == PX_HEAD || px->state == PX_BODY) &&
	    evbuffer_get_length(bufferevent_get_input(bev)) > 0 && !up_parse(px, bev, true))
		return;
	if ((what & BEV_EVENT_EOF) && px->state == PX_BODY) {
		/* an answer ended by the close (no length, HTTP/1.0 style) */
		http_parser_execute(&px->parser, &parser_settings, NULL, 0);
		if (px->complete) {
			px_complete(px);
			return;
		}
	}
	if (px->state == PX_HEAD && !px->got_bytes && px->woke && !px->up->reused && !px->body) {
		/* the app of a woken sandbox closed before answering: it may be starting still */
		px->port_ready = false;
		px_wake_retry(px);
		return;
	}
	if (px->state == PX_HEAD && !px->got_bytes && px->up->reused && !px->body) {
		/* a kept connection the app had closed meanwhile: once more on a fresh one */
		upconn_free(px->up);
		px->up = NULL;
		px_connect(px, false);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		px_fail(px, px->state == PX_HEAD ? 504 : 502, "upstream_timeout", "port %d of sandbox %s %s",
			px->target.port, px->target.sandbox_id,
			px->state == PX_HEAD ? "did not answer in time" : "went quiet mid-answer");
	else if (px->state == PX_HEAD && !px->got_bytes)
		px_fail(px, 502, "upstream_unreachable",
			"port %d of sandbox %s closed the connection without an answer (is anything "
			"listening?)",
			px->target.port, px->target.sandbox_id);
	else
		px_fail(px, 502, "bad_upstream_response", "port %d of sandbox %s closed the connection %s",
			px->target.port, px->target.sandbox_id,
			px->state == PX_HEAD ? "mid-head" : "mid-answer");
}

/* ---- a woken sandbox's port ---- */

static void px_tick_in(struct px *px, int64_t ms)
{
	if (!px->tick) {
		px->tick = evtimer_new(px->pv->base, px_tick, px);
		CHECK(px->tick != NULL);
	}
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(px->tick, &tv);
}

/* Nothing listens behind the port yet (refused, or closed unanswered): tried
 * again soon, until the wake's deadline. */
static void px_wake_retry(struct px *px)
{
	if (px->up) {
		upconn_free(px->up);
		px->up = NULL;
	}
	if (px->state != PX_READY)
		px_set_state(px, PX_READY);
	if (clock_mono_ms() + WAKE_RETRY_MS >= px->wake_until_ms) {
		px_fail(px, 504, "wake_timeout",
			"sandbox %s woke, but nothing answered on port %d within SANDBAR_WAKE_TIMEOUT",
			px->target.sandbox_id, px->target.port);
		return;
	}
	px_tick_in(px, WAKE_RETRY_MS);
}

/* A try's settle is over (the app holds the connection: the request goes),
 * or its wait (another try); a splice's activity. */
static void px_tick(evutil_socket_t fd, short what, void *arg)
{
	struct px *px = arg;
	if (px->state == PX_SPLICE) {
		registry_touch(px->pv->reg, px->target.sandbox_id);
		px_tick_in(px, px->touch_ms);
		return;
	}
	CHECK(px->state == PX_READY);
	if (px->up) {
		px->port_ready = true;
		px_set_state(px, PX_HEAD);
		px_send(px);
		return;
	}
	px_connect(px, false);
}

/* ---- the splice after an upgrade ---- */

static void splice_close(struct px *px)
{
	px_set_state(px, PX_DONE);
	px_free(px);
}

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
			splice_close(px);
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
		splice_close(px);
		return;
	}
	evbuffer_add_buffer(bufferevent_get_output(other), bufferevent_get_input(bev));
	if (evbuffer_get_length(bufferevent_get_output(other)) == 0) {
		splice_close(px);
		return;
	}
	px_set_state(px, PX_FLUSH);
	bufferevent_disable(bev, EV_READ | EV_WRITE);
	bufferevent_disable(other, EV_READ);
	bufferevent_setwatermark(other, EV_WRITE, 0, 0);
	bufferevent_enable(other, EV_WRITE);
}

static void px_upgraded(struct bufferevent *client, void *arg)
{
	struct px *px = arg;
	px->client = client;
	struct bufferevent *up = px->up->bev;
	bufferevent_setcb(client, splice_read, splice_write, splice_event, px);
	bufferevent_setcb(up, splice_read, splice_write, splice_event, px);
	bufferevent_setwatermark(client, EV_WRITE, UP_HIGHWAT / 2, 0);
	bufferevent_setwatermark(up, EV_WRITE, UP_HIGHWAT / 2, 0);
	set_idle_timeouts(client, px->pv->cfg.idle_timeout_ms);
	set_idle_timeouts(up, px->pv->cfg.idle_timeout_ms);
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

/* ---- kept connections ---- */

static void upconn_free(struct upconn *up)
{
	if (up->ua)
		upstream_agent_free(up->ua); /* its bev too */
	else
		bufferevent_free(up->bev);
	free(up);
}

static void idle_event(struct bufferevent *bev, short what, void *arg)
{
	struct upconn *up = arg;
	TAILQ_REMOVE(&up->pv->idle, up, link);
	upconn_free(up);
}

static void idle_read(struct bufferevent *bev, void *arg)
{
	idle_event(bev, BEV_EVENT_ERROR, arg); /* bytes nobody asked for: not reusable */
}

static void upconn_keep(struct upconn *up)
{
	struct preview *pv = up->pv;
	int same = 0;
	struct upconn *o;
	TAILQ_FOREACH(o, &pv->idle, link)
	same += strcmp(o->key, up->key) == 0;
	if (same >= pv->cfg.idle_per_port) {
		upconn_free(up);
		return;
	}
	bufferevent_setcb(up->bev, idle_read, NULL, idle_event, up);
	set_idle_timeouts(up->bev, pv->cfg.idle_timeout_ms);
	bufferevent_enable(up->bev, EV_READ);
	TAILQ_INSERT_HEAD(&pv->idle, up, link);
}
