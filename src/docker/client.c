/* The Docker Engine HTTP client: one connection per call, driven by one state
 * machine (connect, send, read head, read body, done or upgraded), and the
 * client's one health state (reachable or not: connects and /_ping probes). Responses
 * are parsed with http-parser; every completion is delivered from the loop. */
#include "docker/client.h"
#include "client_internal.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <http_parser.h>
#include <json-c/json.h>

#include "core/bev.h"
#include "core/clock.h"
#include "core/log.h"

#define DEFAULT_MAX_BODY    (8u << 20)
#define DRAIN_LOW_WATERMARK (256u << 10)
#define IO_MAX		    (256u << 10) /* one read or write syscall (libevent: 16 KiB) */
#define PARSE_SLICE	    (256u << 10) /* parse at most this much before yielding to the user */
#define FEED_SEGS	    16		 /* body pieces noted per parse step (chunks of 32 KiB) */

enum call_kind { CALL_JSON, CALL_STREAM, CALL_UPGRADE, CALL_OP };

enum call_state {
	CALL_CONNECTING,
	CALL_SENDING, /* request body not finished yet */
	CALL_READING_HEAD,
	CALL_READING_BODY,
	CALL_DONE,
	CALL_UPGRADED,
	CALL_STATE_MAX
};

#define HEALTH_WATCHERS 4

struct docker {
	struct event_base *base;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	size_t max_body;
	TAILQ_HEAD(, docker_call) calls; /* live calls and ops, freed with the client */
	enum docker_health health;
	char why[160]; /* what made it unreachable */
	struct docker_limits limits;
	struct docker_call *probe; /* GET /_ping in flight */
	struct event *probe_timer; /* the next probe, or the one in flight's deadline */
	struct event *tell;	   /* watchers hear of a change from the loop */
	enum docker_health told;   /* what they heard last */
	struct {
		docker_health_fn fn;
		void *arg;
	} watchers[HEALTH_WATCHERS];
	int nwatchers;
};

struct docker_call {
	TAILQ_ENTRY(docker_call) link;
	struct docker *d;
	enum call_kind kind;
	enum call_state state;
	struct bufferevent *bev;
	struct event *ev; /* deferred delivery, free and resume */
	http_parser parser;
	int status;
	int64_t content_length; /* of the request body: -1 chunked */
	bool req_finished;
	bool msg_done;
	bool upgraded;
	bool eof;
	bool paused;
	bool dead;  /* cancelled: no callback, free at the next loop pass */
	bool probe; /* the health probe: made while Docker is unreachable too */
	struct evbuffer *body;
	/* a stream's body pieces in the chunk being parsed, moved once it returns */
	const char *feed_base;
	struct {
		size_t off, len;
	} feed_segs[FEED_SEGS];
	int nfeed_segs;
	char *err;
	docker_json_fn json_cb;
	struct docker_stream_cbs scbs;
	docker_upgraded_fn up_cb;
	void *arg;
	void *ctx;
	void (*ctx_free)(void *);
	void (*op_cancel)(void *);
};

static const char *const state_names[CALL_STATE_MAX] = {
	"CONNECTING", "SENDING", "READING_HEAD", "READING_BODY", "DONE", "UPGRADED",
};

static void call_set_state(struct docker_call *c, enum call_state to);
static struct docker_call *call_new(struct docker *d, enum call_kind kind, void *arg);
static void call_start(struct docker_call *c, const char *method, const char *path, const char *content_type,
		       int64_t content_length, struct evbuffer *body);
static void call_start_json(struct docker_call *c, const char *method, const char *path,
			    struct json_object *request_body);
static void call_finish(struct docker_call *c, const char *err);
static void call_free(struct docker_call *c);
static void call_deferred_cb(evutil_socket_t fd, short what, void *arg);
static void call_deliver(struct docker_call *c);
static void call_process_input(struct docker_call *c, struct evbuffer *in);
static void call_process_eof(struct docker_call *c);
static void call_feed_move(struct docker_call *c, struct evbuffer *in, size_t n);
static void call_flush_body(struct docker_call *c);
static void call_readcb(struct bufferevent *bev, void *arg);
static void call_writecb(struct bufferevent *bev, void *arg);
static void call_eventcb(struct bufferevent *bev, short what, void *arg);
static int on_headers_complete(http_parser *p);
static int on_body(http_parser *p, const char *at, size_t len);
static int on_message_complete(http_parser *p);
static char *error_message(int status, struct json_object *body);
static void health_set(struct docker *d, enum docker_health to, bool timed_out, const char *why);
static void health_tell(evutil_socket_t fd, short what, void *arg);
static void probe_schedule(struct docker *d);
static void probe_fire(evutil_socket_t fd, short what, void *arg);
static void connect_failed(struct docker_call *c, int err);

static const http_parser_settings parser_settings = {
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

struct docker *docker_new(struct event_base *base, const char *host)
{
	struct docker *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->base = base;
	d->max_body = DEFAULT_MAX_BODY;
	TAILQ_INIT(&d->calls);
	d->probe_timer = evtimer_new(base, probe_fire, d);
	d->tell = event_new(base, -1, 0, health_tell, d);
	if (!d->probe_timer || !d->tell)
		goto fail;
	if (strncmp(host, "unix://", 7) == 0) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&d->addr;
		const char *path = host + 7;
		if (!path[0] || strlen(path) >= sizeof(sun->sun_path))
			goto fail;
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, path, strlen(path) + 1);
		d->addrlen = (socklen_t)sizeof(*sun);
	} else if (strncmp(host, "tcp://", 6) == 0) {
		/* Resolved once here: docker_new runs at start-up, before the loop. */
		char name[256];
		snprintf(name, sizeof(name), "%s", host + 6);
		char *colon = strrchr(name, ':');
		if (!colon || colon == name || !colon[1])
			goto fail;
		*colon = '\0';
		char *h = name;
		if (h[0] == '[' && colon[-1] == ']') {
			h++;
			colon[-1] = '\0';
		}
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
		if (getaddrinfo(h, colon + 1, &hints, &res) != 0 || !res)
			goto fail;
		memcpy(&d->addr, res->ai_addr, res->ai_addrlen);
		d->addrlen = res->ai_addrlen;
		freeaddrinfo(res);
	} else {
		goto fail;
	}
	return d;
fail:
	if (d->probe_timer)
		event_free(d->probe_timer);
	if (d->tell)
		event_free(d->tell);
	free(d);
	return NULL;
}

void docker_free(struct docker *d)
{
	if (!d)
		return;
	/* Calls still going (shutdown): no callbacks. Multi-step operations first,
	 * as cancelling one cancels its current call. */
	struct docker_call *c, *next;
	for (c = TAILQ_FIRST(&d->calls); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->kind == CALL_OP) {
			docker_call_cancel(c);
			next = TAILQ_FIRST(&d->calls);
		}
	}
	while ((c = TAILQ_FIRST(&d->calls)) != NULL)
		call_free(c);
	event_free(d->probe_timer);
	event_free(d->tell);
	free(d);
}

void docker_set_max_body(struct docker *d, size_t max_body)
{
	d->max_body = max_body;
}

struct event_base *docker_base(struct docker *d)
{
	return d->base;
}

/* ---- health ---- */

void docker_set_limits(struct docker *d, const struct docker_limits *limits)
{
	d->limits = *limits;
	evtimer_del(d->probe_timer);
	probe_schedule(d);
}

enum docker_health docker_health(const struct docker *d)
{
	return d->health;
}

void docker_watch_health(struct docker *d, docker_health_fn fn, void *arg)
{
	CHECK(d->nwatchers < HEALTH_WATCHERS);
	d->watchers[d->nwatchers].fn = fn;
	d->watchers[d->nwatchers++].arg = arg;
}

void docker_unwatch_health(struct docker *d, docker_health_fn fn, void *arg)
{
	for (int i = 0; i < d->nwatchers; i++) {
		if (d->watchers[i].fn == fn && d->watchers[i].arg == arg) {
			d->watchers[i] = d->watchers[--d->nwatchers];
			return;
		}
	}
}

static void health_set(struct docker *d, enum docker_health to, bool timed_out, const char *why)
{
	if (to == DOCKER_UNREACHABLE)
		snprintf(d->why, sizeof(d->why), "%s", why);
	if (to == DOCKER_UNREACHABLE && timed_out) {
		/* a frozen dockerd, or a cut path, answers none of the calls in flight
		 * either: they fail now rather than hang (a refused connect leaves
		 * them: a dockerd on its way out still ends them, events included) */
		char msg[200];
		snprintf(msg, sizeof(msg), "Docker is unreachable: %s", why);
		struct docker_call *c;
		TAILQ_FOREACH(c, &d->calls, link)
		if (c->kind != CALL_OP && !c->probe && !c->dead)
			call_finish(c, msg);
	}
	if (d->health == to)
		return;
	d->health = to;
	if (to == DOCKER_UNREACHABLE) {
		log_warn("docker: unreachable: %s", why);
	} else {
		log_info("docker: reachable again");
	}
	evtimer_del(d->probe_timer);
	if (!d->probe)
		probe_schedule(d); /* fast while unreachable */
	event_active(d->tell, 0, 0);
}

static void health_tell(evutil_socket_t fd, short what, void *arg)
{
	struct docker *d = arg;
	if (d->told == d->health)
		return; /* it changed and changed back before the loop came round */
	d->told = d->health;
	for (int i = 0; i < d->nwatchers; i++)
		d->watchers[i].fn(d->health, d->watchers[i].arg);
}

static void probe_schedule(struct docker *d)
{
	int64_t ms = d->limits.probe_interval_ms;
	if (ms <= 0)
		return;
	if (d->health == DOCKER_UNREACHABLE && ms > DOCKER_PROBE_FAST_MS)
		ms = DOCKER_PROBE_FAST_MS;
	struct timeval tv = clock_tv(ms);
	evtimer_add(d->probe_timer, &tv);
}

static void probed(int status, struct json_object *body, const char *err, void *arg)
{
	struct docker *d = arg;
	d->probe = NULL;
	evtimer_del(d->probe_timer);
	if (status > 0)
		health_set(d, DOCKER_REACHABLE, false, NULL);
	else
		health_set(d, DOCKER_UNREACHABLE, false, err ? err : "no answer to GET /_ping");
	probe_schedule(d);
}

/* The next probe is due, or the one in flight ran out of time. */
static void probe_fire(evutil_socket_t fd, short what, void *arg)
{
	struct docker *d = arg;
	if (d->probe) {
		docker_call_cancel(d->probe);
		d->probe = NULL;
		char why[96];
		snprintf(why, sizeof(why), "no answer to GET /_ping within %lld ms",
			 (long long)d->limits.probe_timeout_ms);
		health_set(d, DOCKER_UNREACHABLE, true, why);
		probe_schedule(d);
		return;
	}
	struct docker_call *c = call_new(d, CALL_JSON, d);
	if (!c) {
		probe_schedule(d);
		return;
	}
	c->probe = true;
	c->json_cb = probed;
	d->probe = c;
	int64_t ms = d->limits.probe_timeout_ms > 0 ? d->limits.probe_timeout_ms : 1000;
	struct timeval tv = clock_tv(ms);
	evtimer_add(d->probe_timer, &tv);
	call_start_json(c, "GET", "/_ping", NULL);
}

/* A connect that failed says Docker is not there only for these errors (a
 * full listen backlog or out of descriptors is ours, not Docker's). */
static void connect_failed(struct docker_call *c, int err)
{
	char why[160];
	snprintf(why, sizeof(why), "connect: %s", evutil_socket_error_to_string(err));
	switch (err) {
	case ECONNREFUSED:
	case ENOENT:
	case ETIMEDOUT:
	case EHOSTUNREACH:
	case ENETUNREACH:
	case EHOSTDOWN:
	case ENETDOWN:
		call_finish(c, why);
		health_set(c->d, DOCKER_UNREACHABLE, err == ETIMEDOUT, why);
		break;
	default:
		call_finish(c, why);
	}
}

static void call_set_state(struct docker_call *c, enum call_state to)
{
	static const unsigned legal[CALL_STATE_MAX] = {
		[CALL_CONNECTING] = 1u << CALL_SENDING | 1u << CALL_DONE,
		[CALL_SENDING] = 1u << CALL_READING_HEAD | 1u << CALL_READING_BODY | 1u << CALL_DONE,
		[CALL_READING_HEAD] = 1u << CALL_READING_BODY | 1u << CALL_UPGRADED | 1u << CALL_DONE,
		[CALL_READING_BODY] = 1u << CALL_DONE,
	};
	CHECK(c->state < CALL_STATE_MAX && to < CALL_STATE_MAX);
	CHECK(legal[c->state] & (1u << to));
	log_debug("docker call %p: %s -> %s", (void *)c, state_names[c->state], state_names[to]);
	c->state = to;
}

static struct docker_call *call_new(struct docker *d, enum call_kind kind, void *arg)
{
	struct docker_call *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->d = d;
	TAILQ_INSERT_TAIL(&d->calls, c, link);
	c->kind = kind;
	c->arg = arg;
	c->state = CALL_CONNECTING;
	c->ev = event_new(d->base, -1, 0, call_deferred_cb, c);
	c->body = evbuffer_new();
	if (!c->ev || !c->body) {
		call_free(c);
		return NULL;
	}
	http_parser_init(&c->parser, HTTP_RESPONSE);
	c->parser.data = c;
	return c;
}

static void call_free(struct docker_call *c)
{
	TAILQ_REMOVE(&c->d->calls, c, link);
	if (c->bev)
		bufferevent_free(c->bev);
	if (c->ev)
		event_free(c->ev);
	if (c->body)
		evbuffer_free(c->body);
	if (c->ctx_free)
		c->ctx_free(c->ctx);
	free(c->err);
	free(c);
}

/* Writes the request head (and body) into the connection's output; the
 * bufferevent holds it until the connect completes. */
static void call_start(struct docker_call *c, const char *method, const char *path, const char *content_type,
		       int64_t content_length, struct evbuffer *body)
{
	c->content_length = content_length;
	if (c->d->health == DOCKER_UNREACHABLE && !c->probe) {
		char err[200];
		snprintf(err, sizeof(err), "Docker is unreachable: %s", c->d->why);
		call_finish(c, err);
		return;
	}
	c->bev = bufferevent_socket_new(c->d->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		call_finish(c, "out of memory");
		return;
	}
	bufferevent_setcb(c->bev, call_readcb, call_writecb, call_eventcb, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, DRAIN_LOW_WATERMARK, 0);
	bufferevent_set_max_single_read(c->bev, IO_MAX);
	bufferevent_set_max_single_write(c->bev, IO_MAX);
	struct evbuffer *out = bufferevent_get_output(c->bev);
	evbuffer_add_printf(out, "%s /v%s%s HTTP/1.1\r\nHost: docker\r\nUser-Agent: sandbar\r\n", method,
			    DOCKER_API_VERSION, path);
	if (content_type)
		evbuffer_add_printf(out, "Content-Type: %s\r\n", content_type);
	if (content_length < 0)
		evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
	else if (content_length > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0)
		evbuffer_add_printf(out, "Content-Length: %lld\r\n", (long long)content_length);
	if (c->kind == CALL_UPGRADE)
		evbuffer_add_printf(out, "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n");
	else
		evbuffer_add_printf(out, "Connection: close\r\n\r\n");
	if (body)
		evbuffer_add_buffer(out, body);
	c->req_finished = c->kind != CALL_STREAM || content_length == 0;
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	int64_t ms = c->d->limits.connect_timeout_ms;
	if (ms > 0) { /* taken off once connected */
		struct timeval tv = clock_tv(ms);
		bufferevent_set_timeouts(c->bev, &tv, &tv);
	}
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&c->d->addr, (int)c->d->addrlen) < 0)
		connect_failed(c, errno);
}

/* Connected: no more connect timeout. */
static void call_connected(struct docker_call *c)
{
	call_set_state(c, CALL_SENDING);
	if (c->d->limits.connect_timeout_ms > 0)
		bufferevent_set_timeouts(c->bev, NULL, NULL);
}

/* Ends the call: the result is delivered (or the call freed) at the next loop
 * pass, never from under the caller. */
static void call_finish(struct docker_call *c, const char *err)
{
	if (c->state == CALL_DONE || c->state == CALL_UPGRADED)
		return;
	if (err && !c->err)
		c->err = strdup(err);
	if (c->upgraded && !err) {
		call_set_state(c, CALL_UPGRADED);
		if (c->bev)
			bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
	} else {
		call_set_state(c, CALL_DONE);
		if (c->bev) {
			bufferevent_free(c->bev);
			c->bev = NULL;
		}
	}
	event_active(c->ev, 0, 0);
}

static void call_deferred_cb(evutil_socket_t fd, short what, void *arg)
{
	struct docker_call *c = arg;
	if (c->dead) {
		call_free(c);
		return;
	}
	if (c->state == CALL_DONE || c->state == CALL_UPGRADED) {
		call_deliver(c);
		call_free(c);
		return;
	}
	/* resumed: parse what was buffered while paused */
	if (c->bev)
		call_process_input(c, bufferevent_get_input(c->bev));
	if (!c->dead && !c->paused && c->eof && c->state != CALL_DONE)
		call_process_eof(c);
}

static void call_deliver(struct docker_call *c)
{
	switch (c->kind) {
	case CALL_JSON: {
		struct json_object *body = NULL;
		size_t len = evbuffer_get_length(c->body);
		if (!c->err && len > 0) {
			struct json_tokener *tok = json_tokener_new();
			if (tok) {
				body = json_tokener_parse_ex(tok, (const char *)evbuffer_pullup(c->body, -1),
							     (int)len);
				json_tokener_free(tok);
			}
		}
		char *msg = NULL;
		if (!c->err && c->status >= 400)
			msg = error_message(c->status, body);
		c->json_cb(c->err ? 0 : c->status, body, c->err ? c->err : msg, c->arg);
		free(msg);
		json_object_put(body);
		break;
	}
	case CALL_STREAM:
		c->scbs.done(c, c->err, c->arg);
		break;
	case CALL_UPGRADE:
		if (c->state == CALL_UPGRADED && c->bev) {
			struct bufferevent *bev = c->bev;
			c->bev = NULL;
			bufferevent_enable(bev, EV_READ | EV_WRITE);
			c->up_cb(c->status, bev, NULL, c->arg);
		} else if (c->err || c->state == CALL_UPGRADED) {
			c->up_cb(c->err ? 0 : c->status, NULL, c->err ? c->err : "no connection", c->arg);
		} else {
			struct json_tokener *tok = json_tokener_new();
			struct json_object *body = NULL;
			if (tok && evbuffer_get_length(c->body) > 0)
				body = json_tokener_parse_ex(tok, (const char *)evbuffer_pullup(c->body, -1),
							     (int)evbuffer_get_length(c->body));
			if (tok)
				json_tokener_free(tok);
			char *msg = error_message(c->status, body);
			c->up_cb(c->status, NULL, msg, c->arg);
			free(msg);
			json_object_put(body);
		}
		break;
	case CALL_OP:
		CHECK(!"an op is never delivered");
	}
}

/* Docker's error bodies are {"message": "..."}. */
static char *error_message(int status, struct json_object *body)
{
	struct json_object *m;
	if (body && json_object_object_get_ex(body, "message", &m) &&
	    json_object_is_type(m, json_type_string))
		return strdup(json_object_get_string(m));
	char buf[32];
	snprintf(buf, sizeof(buf), "HTTP %d", status);
	return strdup(buf);
}

static void call_process_input(struct docker_call *c, struct evbuffer *in)
{
	while (!c->dead && !c->paused && c->state != CALL_DONE && c->state != CALL_UPGRADED) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			return;
		size_t len = v.iov_len < PARSE_SLICE ? v.iov_len : PARSE_SLICE;
		if (c->state == CALL_CONNECTING) {
			call_connected(c); /* bytes arrived, so we are connected */
			if (c->req_finished)
				call_set_state(c, CALL_READING_HEAD);
		}
		c->feed_base = v.iov_base;
		c->nfeed_segs = 0;
		size_t n = http_parser_execute(&c->parser, &parser_settings, v.iov_base, len);
		c->feed_base = NULL;
		if (c->dead)
			return;
		call_feed_move(c, in, n);
		if (c->upgraded) {
			call_finish(c, NULL);
			return;
		}
		if (c->msg_done) {
			call_flush_body(c);
			if (!c->dead)
				call_finish(c, NULL);
			return;
		}
		enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
		if (e == HPE_PAUSED) { /* the pieces were full */
			http_parser_pause(&c->parser, 0);
			e = HPE_OK;
		}
		if (e != HPE_OK) {
			if (!c->err) {
				char buf[96];
				snprintf(buf, sizeof(buf), "bad response: %s", http_errno_description(e));
				call_finish(c, buf);
			} else {
				call_finish(c, c->err);
			}
			return;
		}
		call_flush_body(c);
	}
}

/* The n parsed bytes leave in: body pieces moved to c->body as chains
 * (copied only where a piece ends inside one), the framing drained. */
static void call_feed_move(struct docker_call *c, struct evbuffer *in, size_t n)
{
	size_t pos = 0;
	for (int i = 0; i < c->nfeed_segs; i++) {
		CHECK(c->feed_segs[i].off >= pos && c->feed_segs[i].off + c->feed_segs[i].len <= n);
		evbuffer_drain(in, c->feed_segs[i].off - pos);
		evbuffer_remove_buffer(in, c->body, c->feed_segs[i].len);
		pos = c->feed_segs[i].off + c->feed_segs[i].len;
	}
	evbuffer_drain(in, n - pos);
}

static void call_process_eof(struct docker_call *c)
{
	if (c->state != CALL_READING_BODY) {
		call_finish(c, "connection closed before the response");
		return;
	}
	/* a body that ends at EOF (hijacked raw streams) completes here */
	http_parser_execute(&c->parser, &parser_settings, NULL, 0);
	call_flush_body(c);
	if (c->dead)
		return;
	call_finish(c, c->msg_done ? NULL : "connection closed mid-body");
}

static void call_flush_body(struct docker_call *c)
{
	if (c->kind == CALL_STREAM && evbuffer_get_length(c->body) > 0 && c->scbs.data)
		c->scbs.data(c, c->body, c->arg);
}

static int on_headers_complete(http_parser *p)
{
	struct docker_call *c = p->data;
	if (p->status_code < 100) {
		/* "HTTP/1.1 000" parses, but status 0 tells callers the transport failed */
		if (!c->err)
			c->err = strdup("bad response: status below 100");
		return -1;
	}
	c->status = p->status_code;
	health_set(c->d, DOCKER_REACHABLE, false, NULL);
	if (c->kind == CALL_UPGRADE && (c->status == 101 || c->status == 200)) {
		c->upgraded = true;
		return 2; /* the rest of the connection is not HTTP */
	}
	/* from SENDING when Docker answers before the request body ended */
	call_set_state(c, CALL_READING_BODY);
	if (c->kind == CALL_STREAM && c->scbs.head && c->scbs.head(c, c->status, c->arg) < 0) {
		if (!c->err)
			c->err = strdup("aborted");
		return -1;
	}
	return c->dead ? -1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct docker_call *c = p->data;
	if (c->kind != CALL_STREAM && evbuffer_get_length(c->body) + len > c->d->max_body) {
		if (!c->err)
			c->err = strdup("response too large");
		return -1;
	}
	if (c->kind == CALL_STREAM && c->feed_base) {
		/* noted here, moved by call_feed_move when the parser has returned */
		c->feed_segs[c->nfeed_segs].off = (size_t)(at - c->feed_base);
		c->feed_segs[c->nfeed_segs].len = len;
		if (++c->nfeed_segs == FEED_SEGS)
			http_parser_pause(p, 1);
		return 0;
	}
	evbuffer_add(c->body, at, len);
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct docker_call *c = p->data;
	c->msg_done = true;
	http_parser_pause(p, 1); /* one response per connection */
	return 0;
}

static void call_readcb(struct bufferevent *bev, void *arg)
{
	if (evbuffer_get_length(bufferevent_get_input(bev)) >= BEV_LIBEVENT_READ)
		bev_read_more(bev, IO_MAX);
	call_process_input(arg, bufferevent_get_input(bev));
}

static void call_writecb(struct bufferevent *bev, void *arg)
{
	struct docker_call *c = arg;
	if (c->kind == CALL_STREAM && !c->req_finished && c->scbs.drain)
		c->scbs.drain(c, c->arg);
}

static void call_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct docker_call *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		if (c->state != CALL_CONNECTING)
			return;
		call_connected(c);
		if (c->req_finished) {
			call_set_state(c, CALL_READING_HEAD);
		} else if (c->scbs.drain &&
			   evbuffer_get_length(bufferevent_get_output(bev)) < DRAIN_LOW_WATERMARK) {
			c->scbs.drain(c, c->arg);
		}
		return;
	}
	if (what & BEV_EVENT_EOF) {
		c->eof = true;
		call_process_input(c, bufferevent_get_input(bev));
		if (!c->dead && !c->paused && c->state != CALL_DONE && c->state != CALL_UPGRADED)
			call_process_eof(c);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) { /* only the connect has one */
		char why[96];
		snprintf(why, sizeof(why), "connect: no answer within %lld ms",
			 (long long)c->d->limits.connect_timeout_ms);
		call_finish(c, why);
		health_set(c->d, DOCKER_UNREACHABLE, true, why);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		int e = EVUTIL_SOCKET_ERROR();
		if (c->state == CALL_CONNECTING) {
			connect_failed(c, e);
			return;
		}
		char err[128];
		snprintf(err, sizeof(err), "connection: %s", evutil_socket_error_to_string(e));
		call_finish(c, err);
	}
}

/* Starts c with request_body (taken, may be NULL) as its JSON body. */
static void call_start_json(struct docker_call *c, const char *method, const char *path,
			    struct json_object *request_body)
{
	struct evbuffer *body = NULL;
	size_t len = 0;
	if (request_body) {
		body = evbuffer_new();
		const char *s = json_object_to_json_string_ext(request_body, JSON_C_TO_STRING_PLAIN);
		len = strlen(s);
		evbuffer_add(body, s, len);
	}
	call_start(c, method, path, body ? "application/json" : NULL, (int64_t)len, body);
	if (body)
		evbuffer_free(body);
	json_object_put(request_body);
}

struct docker_call *docker_call_json(struct docker *d, const char *method, const char *path,
				     struct json_object *request_body, docker_json_fn cb, void *arg)
{
	struct docker_call *c = call_new(d, CALL_JSON, arg);
	if (!c) {
		json_object_put(request_body);
		return NULL;
	}
	c->json_cb = cb;
	call_start_json(c, method, path, request_body);
	return c;
}

struct docker_call *docker_call_stream(struct docker *d, const char *method, const char *path,
				       const char *content_type, int64_t content_length,
				       const struct docker_stream_cbs *cbs, void *arg)
{
	struct docker_call *c = call_new(d, CALL_STREAM, arg);
	if (!c)
		return NULL;
	c->scbs = *cbs;
	call_start(c, method, path, content_type, content_length, NULL);
	return c;
}

struct docker_call *docker_call_upgrade(struct docker *d, const char *method, const char *path,
					struct json_object *request_body, docker_upgraded_fn cb, void *arg)
{
	struct docker_call *c = call_new(d, CALL_UPGRADE, arg);
	if (!c) {
		json_object_put(request_body);
		return NULL;
	}
	c->up_cb = cb;
	call_start_json(c, method, path, request_body);
	return c;
}

void docker_call_write(struct docker_call *c, struct evbuffer *data)
{
	size_t len = evbuffer_get_length(data);
	if (!c->bev || c->req_finished || c->state == CALL_DONE || len == 0) {
		evbuffer_drain(data, len);
		return;
	}
	struct evbuffer *out = bufferevent_get_output(c->bev);
	if (c->content_length >= 0 && c->state != CALL_CONNECTING && evbuffer_get_length(out) == 0) {
		/* Write-through: with nothing queued no write event is armed, and
		 * arming then disarming it per piece costs two epoll_ctl calls.
		 * What the socket does not take (or an error) is left to the
		 * bufferevent, which reports errors as usual. */
		evutil_socket_t fd = bufferevent_getfd(c->bev);
		while (evbuffer_get_length(data) > 0 && evbuffer_write_atmost(data, fd, IO_MAX) > 0)
			;
		if (evbuffer_get_length(data) == 0)
			return;
	}
	if (c->content_length < 0) {
		evbuffer_add_printf(out, "%zx\r\n", len);
		evbuffer_add_buffer(out, data);
		evbuffer_add(out, "\r\n", 2);
	} else {
		evbuffer_add_buffer(out, data);
	}
}

size_t docker_call_pending(const struct docker_call *c)
{
	return c->bev ? evbuffer_get_length(bufferevent_get_output(c->bev)) : 0;
}

void docker_call_finish(struct docker_call *c)
{
	if (c->req_finished)
		return;
	c->req_finished = true;
	if (c->bev && c->content_length < 0)
		evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
	if (c->state == CALL_SENDING)
		call_set_state(c, CALL_READING_HEAD);
}

void docker_call_pause(struct docker_call *c)
{
	c->paused = true;
	if (c->bev)
		bufferevent_disable(c->bev, EV_READ);
}

void docker_call_resume(struct docker_call *c)
{
	if (!c->paused)
		return;
	c->paused = false;
	if (c->bev && c->state != CALL_DONE && c->state != CALL_UPGRADED) {
		if (!c->eof)
			bufferevent_enable(c->bev, EV_READ);
		event_active(c->ev, 0, 0); /* what was buffered is parsed from the loop */
	}
}

void docker_call_cancel(struct docker_call *c)
{
	if (!c)
		return;
	if (c->kind == CALL_OP) {
		c->op_cancel(c->ctx);
		docker_op_free(c);
		return;
	}
	c->dead = true;
	if (c->bev) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	event_active(c->ev, 0, 0);
}

void docker_call_set_ctx(struct docker_call *c, void *ctx, void (*free_fn)(void *))
{
	c->ctx = ctx;
	c->ctx_free = free_fn;
}

struct docker_call *docker_op_new(struct docker *d, void (*cancel)(void *ctx), void *ctx)
{
	struct docker_call *op = calloc(1, sizeof(*op));
	if (!op)
		return NULL;
	op->d = d;
	TAILQ_INSERT_TAIL(&d->calls, op, link);
	op->kind = CALL_OP;
	op->op_cancel = cancel;
	op->ctx = ctx;
	return op;
}

void docker_op_free(struct docker_call *op)
{
	CHECK(op->kind == CALL_OP);
	TAILQ_REMOVE(&op->d->calls, op, link);
	free(op);
}

void docker_url_encode(struct evbuffer *out, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			evbuffer_add(out, s, 1);
		} else {
			char e[3] = { '%', hex[ch >> 4], hex[ch & 15] };
			evbuffer_add(out, e, 3);
		}
	}
}

static void fuzz_json_cb(int status, struct json_object *body, const char *err, void *arg)
{
	CHECK((status != 0 && status < 400) || err != NULL); /* a failure always says why */
	(void)json_object_to_json_string(body);
}

static int fuzz_head_cb(struct docker_call *c, int status, void *arg)
{
	return status == 418 ? -1 : 0;
}

static void fuzz_data_cb(struct docker_call *c, struct evbuffer *body, void *arg)
{
	evbuffer_drain(body, evbuffer_get_length(body));
}

static void fuzz_done_cb(struct docker_call *c, const char *err, void *arg)
{
}

static void fuzz_up_cb(int status, struct bufferevent *bev, const char *err, void *arg)
{
	CHECK(bev == NULL && err != NULL); /* the fuzzed call has no connection to hand over */
}

void docker_response_fuzz(enum docker_fuzz_mode mode, const uint8_t *data, size_t len, size_t split)
{
	static const enum call_kind kinds[DOCKER_FUZZ_MODE_MAX] = {
		[DOCKER_FUZZ_JSON] = CALL_JSON,
		[DOCKER_FUZZ_STREAM] = CALL_STREAM,
		[DOCKER_FUZZ_UPGRADE] = CALL_UPGRADE,
	};
	CHECK(mode < DOCKER_FUZZ_MODE_MAX);
	struct event_base *base = event_base_new();
	struct docker *d = docker_new(base, "unix:///nonexistent/docker.sock");
	struct docker_call *c = call_new(d, kinds[mode], NULL);
	docker_set_max_body(d, 4096);
	c->json_cb = fuzz_json_cb;
	c->scbs = (struct docker_stream_cbs){ .head = fuzz_head_cb,
					      .data = fuzz_data_cb,
					      .done = fuzz_done_cb };
	c->up_cb = fuzz_up_cb;
	call_set_state(c, CALL_SENDING);
	call_set_state(c, CALL_READING_HEAD);
	struct evbuffer *in = evbuffer_new();
	size_t off = 0;
	while (off < len && c->state != CALL_DONE && c->state != CALL_UPGRADED) {
		size_t n = split && len - off > split ? split : len - off;
		evbuffer_add(in, data + off, n);
		off += n;
		call_process_input(c, in);
	}
	if (c->state != CALL_DONE && c->state != CALL_UPGRADED)
		call_process_eof(c);
	event_base_loop(base, EVLOOP_NONBLOCK);
	evbuffer_free(in);
	docker_free(d);
	event_base_free(base);
}
