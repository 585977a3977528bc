/* The preview proxy: a request whose Host is `<port>-<sandbox id>.<domain>`
 * is forwarded, in the loop, to that port of the sandbox (through the port
 * Docker published for it) and the answer streamed back: bodies both ways
 * with backpressure, keep-alive upstream connections kept per port, an
 * Upgrade (WebSocket) spliced byte for byte after the 101. A request for a
 * stopped sandbox whose auto_wake is on is held while it wakes, and sent once
 * its port is ready (the agent's probe of the service that declares it, else
 * a connection the app holds: proxy_wake.c). Every request, and an open
 * WebSocket, is activity of its sandbox. A private sandbox's requests need a
 * preview token (header, query once for a cookie, or the cookie), checked
 * before anything wakes or is contacted, and never passed to the app. */
#ifndef SANDBAR_PREVIEW_PROXY_H
#define SANDBAR_PREVIEW_PROXY_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

struct http_request;
struct preview_secret;
struct registry;

struct preview_config {
	const char *domain;	    /* SANDBAR_PREVIEW_DOMAIN, lower case */
	const char *publish_addr;   /* SANDBAR_PUBLISH_ADDR: where published ports are reached */
	int64_t connect_timeout_ms; /* SANDBAR_PREVIEW_CONNECT_TIMEOUT: upstream connect, then 502 */
	int64_t head_timeout_ms; /* SANDBAR_PREVIEW_HEAD_TIMEOUT: request sent -> response head, then 504 */
	int64_t idle_timeout_ms; /* SANDBAR_PREVIEW_IDLE_TIMEOUT: no byte either way (also kept upstreams) */
	int idle_per_port;	 /* kept idle upstream connections per sandbox port */
	int64_t wake_timeout_ms; /* SANDBAR_WAKE_TIMEOUT: a stopped sandbox woken, its port answering; then
				    504 */
	const struct preview_secret *secret; /* checks a private sandbox's tokens (NULL: none pass) */
};

struct preview;

struct preview *preview_new(struct event_base *base, const struct preview_config *cfg, struct registry *reg);
void preview_free(struct preview *pv);

/* When req's Host names the preview domain, takes the request (proxies it,
 * or answers 404 for a malformed preview host) and returns true; otherwise
 * returns false and leaves req alone. */
bool preview_dispatch(struct preview *pv, struct http_request *req);

#endif
