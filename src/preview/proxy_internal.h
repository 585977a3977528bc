/* Private to src/preview: the proxy's objects (struct preview, one exchange
 * struct px, a kept upstream struct upconn) and the calls the proxy's files
 * make into each other. */
#ifndef SANDBAR_PREVIEW_PROXY_INTERNAL_H
#define SANDBAR_PREVIEW_PROXY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "answer_parse.h"
#include "preview/host.h"
#include "preview/proxy.h"

struct agent_channel;
struct evbuffer;
struct http_request;
struct px_ask;
struct registry_wait;
struct sandbox_ref;
struct upstream_agent;

/* How an exchange reaches the port: the port Docker published, when there
 * is one (a plain TCP connection, kept alive per host:port afterwards), else
 * a TCP stream of the sandbox's agent (upstream_agent.c: a bufferevent like a
 * socket's, so the HTTP code is the same; serves one exchange, never kept). */

#define UP_HIGHWAT (1024 * 1024) /* queued bytes one way before the source stops */
/* An open WebSocket counts as activity at least this often, so the reaper
 * never stops a sandbox with one (at most half its idle timeout). */
#define SPLICE_TOUCH_MS 30000

/* A connection to one sandbox port: in an exchange, or kept idle. */
struct upconn {
	TAILQ_ENTRY(upconn) link; /* among the kept ones */
	struct preview *pv;
	struct bufferevent *bev;
	int host_port; /* the published port it reaches (0: through the agent) */
	bool reused;
	struct upstream_agent *ua; /* through the agent: bev is its near end, never kept */
};
TAILQ_HEAD(upconn_list, upconn);

struct preview {
	struct event_base *base;
	struct preview_config cfg;
	struct registry *reg;
	struct upconn_list idle;
	/* SANDBAR_PUBLISH_ADDR, parsed once (a wildcard as loopback), port 0;
	 * publish_len 0: not an address */
	struct sockaddr_storage publish;
	int publish_len;
};

/* Where an exchange is, from the Host to the end; px_set_state moves it
 * (a legality table, a debug line). The request's body streams beside the
 * states from PX_SENT on (sent_all says when it is all out). */
enum px_state {
	PX_RESOLVE,	/* the sandbox's row read, its token checked */
	PX_WAKE,	/* it was stopped: held while the core wakes it, then its row read again */
	PX_PORT_POLL,	/* woken: the agent asked whether the port's service is ready, until it is */
	PX_PORT_TRY,	/* woken, no service on the port (or through the agent): a connection opening */
	PX_PORT_SETTLE, /* ... open to a published port, held a moment unless the app speaks first */
	PX_PORT_RETRY,	/* ... refused or closed: the next try soon */
	PX_CONNECT,	/* the upstream connection opening (its sandbox ran, or its service is ready) */
	PX_SENT,	/* the request's head sent (its body may still stream), nothing answered yet */
	PX_HEAD,	/* the answer's head coming in (an interim 1xx too) */
	PX_BODY,	/* the answer's head passed on, its body streaming to the client */
	PX_COMPLETE,	/* the answer is over: its connection kept or closed, the client's answer ended */
	PX_SPLICE,	/* 101 answered: bytes copied both ways until either side closes */
	PX_FLUSH,	/* one side closed: what it sent is written to the other, then both close */
	PX_DONE,	/* answered or abandoned: px is being freed */
	PX_STATE_MAX
};

/* One proxied request (an exchange). */
struct px {
	struct preview *pv;
	struct http_request *req; /* NULL once answered, upgraded or gone */
	enum px_state state;
	struct preview_target target;
	int host_port; /* the port Docker published (0: through the agent) */
	struct registry_wait *wait;
	struct agent_channel *ch; /* the port is not published: through the agent's channel */
	struct upconn *up;
	struct bufferevent *client; /* after an upgrade */
	struct evbuffer *head;	    /* the request head, kept for a retry on a fresh connection */
	int64_t wake_until_ms;	    /* woken for it: 504 wake_timeout then (0: it ran when asked) */
	struct sandbox_ref *ref; /* woken, published: its handle, whose agent says when the port is ready */
	struct px_ask *ask;	 /* ... a question to the agent in flight (proxy_wake.c) */
	int64_t touch_ms;	 /* while spliced, activity this often */
	struct event *tick;	 /* a woken port's next step or deadline; the splice's activity */
	/* Facts of the client's request, fixed once its head is built: */
	bool body;	  /* it has a body */
	bool chunked;	  /* ... sent chunked */
	bool upgrade;	  /* it asks for an upgrade */
	bool head_method; /* HEAD: the answer has no body whatever it says */
	/* The request side, which runs beside the answer's states (an app may
	 * answer before the body is in): the whole request is in the upstream's
	 * output. A kept connection needs it. */
	bool sent_all;

	struct up_answer answer; /* the app's answer, parsed (answer_parse.c) */
};

/* ---- proxy.c: the exchange ---- */
void px_set_state(struct px *px, enum px_state next);
/* The client's request, no longer px's to answer or cancel (NULL when it
 * went); px_fail, an upgrade and a complete answer take it. */
struct http_request *px_take_req(struct px *px);
/* The exchange is over: PX_DONE, everything px holds closed or cancelled, px freed. */
void px_end(struct px *px);
/* The answer when nothing could be forwarded (JSON, or a page for a
 * browser; a started answer is cut); ends the exchange. */
void px_fail(struct px *px, int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* A kept connection when there is one (and may_reuse), else a new one. */
void px_connect(struct px *px, bool may_reuse);
/* A new connection, opening in state next (PX_CONNECT, PX_PORT_TRY). */
void px_open(struct px *px, enum px_state next);
/* PX_SENT: the request's head goes out (again, on a fresh connection),
 * then its body as it comes. */
void px_send(struct px *px);
/* px's one timer (px_tick: a woken port's next step, or a splice's activity), ms from now. */
void px_tick_in(struct px *px, int64_t ms);
/* Hop-by-hop headers (RFC 9110 7.6.1), those we write ourselves, and those
 * the Connection header (connection, may be NULL) names. */
bool proxy_skipped_header(const char *name, const char *connection);
/* Both the read and the write timeout of bev. */
void proxy_set_timeouts(struct bufferevent *bev, int64_t ms);

/* ---- proxy_answer.c: the upstream's callbacks during an exchange ---- */
/* px_send: the answer to parse is a new one. */
void up_answer_start(struct px *px);
void up_read(struct bufferevent *bev, void *arg);
void up_write(struct bufferevent *bev, void *arg);
void up_event(struct bufferevent *bev, short what, void *arg);

/* ---- proxy_wake.c: a woken sandbox's port, until it may take the request ---- */
/* After the wake: the agent asked about the port's service (PX_PORT_POLL,
 * px->ref held), or, through the agent, the port tried. */
void px_port_wait(struct px *px);
/* PX_PORT_TRY connected: the request goes, at once or after a moment. */
void px_port_connected(struct px *px);
/* A try refused or closed, or a sent request without a body closed
 * unanswered: PX_PORT_RETRY, the next try soon, within the deadline. */
void px_port_again(struct px *px);
/* px's tick in PX_PORT_POLL, PX_PORT_SETTLE or PX_PORT_RETRY. */
void px_port_tick(struct px *px);
/* The handle and any question to the agent let go (px ends). */
void px_port_release(struct px *px);

/* ---- proxy_splice.c: after a 101, the client's socket and the upstream's ---- */
void splice_start(struct bufferevent *client, void *arg);
/* px's tick while spliced: activity, and the next tick. */
void splice_tick(struct px *px);

/* ---- upstream_pool.c: connections to sandbox ports ---- */
/* A new connection: through the agent's stream to port when ch, else a
 * socket (to host_port) not connected yet. */
struct upconn *upconn_new(struct preview *pv, int host_port, struct agent_channel *ch, int port);
/* A kept connection to host_port, taken out of the pool; NULL when none. */
struct upconn *upconn_take(struct preview *pv, int host_port);
/* After an exchange: kept idle (up to idle_per_port per host port), else freed. */
void upconn_keep(struct upconn *up);
void upconn_free(struct upconn *up);
/* Every kept connection closed (the proxy goes). */
void upconn_free_idle(struct preview *pv);

#endif
