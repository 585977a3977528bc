/* Async Docker Engine API client: HTTP/1.1 over a unix socket or TCP
 * (DOCKER_HOST), one connection per call (Docker hijacks connections for
 * streams, so reuse buys little and complicates cancel). Paths are given
 * without the version prefix; the client adds /v1.41.
 *
 * Every call has exactly one completion callback, always called from the loop
 * (never from inside the function that started the call), unless the call was
 * cancelled first. */
#ifndef SANDBAR_DOCKER_CLIENT_H
#define SANDBAR_DOCKER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/check.h"

struct docker;
struct docker_call;
struct json_object;

#define DOCKER_API_VERSION "1.41"

/* host: "unix:///var/run/docker.sock" or "tcp://127.0.0.1:2375". NULL on a bad host. */
struct docker *docker_new(struct event_base *base, const char *host);
void docker_free(struct docker *d);
/* Cap on whole (non-streamed) response bodies; default 8 MiB. */
void docker_set_max_body(struct docker *d, size_t max_body);

/* Is Docker there? One state per client. It becomes unreachable when a
 * connect is refused, finds no socket or host, or takes longer than
 * connect_timeout, or when GET /_ping (sent every probe_interval; every
 * DOCKER_PROBE_FAST_MS while unreachable) has no answer within probe_timeout.
 * Then every new call fails at once with an error starting "Docker is
 * unreachable" until a probe is answered; after a timeout (a frozen dockerd,
 * a cut path) so does every call in flight. Any response makes it reachable. Callers turn a failed call into
 * 503 docker_unavailable when docker_health() says unreachable. */
enum docker_health { DOCKER_REACHABLE, DOCKER_UNREACHABLE };
#define DOCKER_PROBE_FAST_MS 250
struct docker_limits {
	int64_t connect_timeout_ms; /* 0: none */
	int64_t probe_interval_ms;  /* 0: no probes */
	int64_t probe_timeout_ms;
};
/* Sets the limits and starts probing. */
void docker_set_limits(struct docker *d, const struct docker_limits *limits);
enum docker_health docker_health(const struct docker *d);
/* fn(health, arg) after each change, in the order registered (at most 4). */
typedef void (*docker_health_fn)(enum docker_health health, void *arg);
void docker_watch_health(struct docker *d, docker_health_fn fn, void *arg);
void docker_unwatch_health(struct docker *d, docker_health_fn fn, void *arg);

/* A whole JSON call. status is the HTTP status (0 when the transport failed,
 * then err says why). body is the parsed JSON response (NULL when empty or not
 * JSON; owned by the client, valid during the callback). For Docker's error
 * statuses err is Docker's "message". */
typedef void (*docker_json_fn)(int status, struct json_object *body, const char *err, void *arg);
/* request_body is taken (may be NULL). */
struct docker_call *docker_call_json(struct docker *d, const char *method, const char *path,
				     struct json_object *request_body, docker_json_fn cb, void *arg);

/* A streamed call: the request body (if any) is written by the caller, the
 * response body is delivered as it arrives, de-chunked. */
struct docker_stream_cbs {
	/* response head arrived; return -1 to abort the call (done gets "aborted") */
	int (*head)(struct docker_call *call, int status, void *arg);
	/* decoded response bytes; drain what you consume */
	void (*data)(struct docker_call *call, struct evbuffer *body, void *arg);
	/* the request body output fell below the low watermark (write more) */
	void (*drain)(struct docker_call *call, void *arg);
	/* the call is over: err NULL when the response body ended cleanly */
	void (*done)(struct docker_call *call, const char *err, void *arg);
};
/* content_length: -1 for a chunked request body, 0 for none. */
struct docker_call *docker_call_stream(struct docker *d, const char *method, const char *path,
				       const char *content_type, int64_t content_length,
				       const struct docker_stream_cbs *cbs, void *arg);
void docker_call_write(struct docker_call *call, struct evbuffer *data);
size_t docker_call_pending(const struct docker_call *call);
void docker_call_finish(struct docker_call *call); /* end of the request body */
void docker_call_pause(struct docker_call *call);  /* stop reading the response */
void docker_call_resume(struct docker_call *call);

/* Connection upgrade (attach, exec start with Upgrade: tcp): after the 101 (or
 * 200) head, the caller owns bev; bytes already read past the head are in its
 * input buffer. On failure bev is NULL and err says why. */
typedef void (*docker_upgraded_fn)(int status, struct bufferevent *bev, const char *err, void *arg);
struct docker_call *docker_call_upgrade(struct docker *d, const char *method, const char *path,
					struct json_object *request_body, docker_upgraded_fn cb, void *arg);

/* The callback will not be called; the connection is closed. */
void docker_call_cancel(struct docker_call *call);

#endif
