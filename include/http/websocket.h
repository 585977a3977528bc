/* WebSocket connections (RFC 6455) on upgraded HTTP connections, framed by
 * wslay. A hub keeps every live one so that shutdown can close them. Messages
 * are delivered whole (up to a size cap); output is queued with a pending
 * count for backpressure. No pings are required from clients and idle
 * connections are not dropped (the Vtrix SDK sends none). */
#ifndef SANDBAR_HTTP_WEBSOCKET_H
#define SANDBAR_HTTP_WEBSOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "core/check.h"

struct bufferevent;
struct http_request;
struct ws_conn;
struct ws_hub;

#define WS_MAX_MESSAGE (1u << 20)

struct ws_ops {
	/* one whole message; data is valid during the call */
	void (*message)(struct ws_conn *ws, bool binary, const uint8_t *data, size_t len, void *arg);
	/* the pending output fell below the low watermark */
	void (*drain)(struct ws_conn *ws, void *arg);
	/* the connection is over (peer close, error, ws_close done, shutdown);
	 * ws is freed after this returns and must not be used again */
	void (*closed)(struct ws_conn *ws, void *arg);
};

struct ws_hub *ws_hub_new(struct event_base *base);
/* Starts the closing handshake of every connection (shutdown: 1001 "going away"). */
void ws_hub_close_all(struct ws_hub *hub, uint16_t code, const char *reason);
/* Closes every connection (their closed callbacks run), then frees the hub. */
void ws_hub_free(struct ws_hub *hub);

/* Is req a well-formed WebSocket handshake? (To check before starting work
 * that only makes sense on a WebSocket.) ws_refuse answers 400 for one that is not. */
bool ws_is_handshake(struct http_request *req);
void ws_refuse(struct http_request *req);

/* Checks req's handshake (GET, Upgrade: websocket, Sec-WebSocket-Version 13, a
 * 16-byte Sec-WebSocket-Key). On success answers 101 and returns the new
 * connection (usable at once: sends are queued until the socket is handed
 * over). Otherwise answers 400 `bad_websocket_handshake` and returns NULL. */
struct ws_conn *ws_accept(struct ws_hub *hub, struct http_request *req, const struct ws_ops *ops, void *arg);
/* A connection on a byte stream already past the handshake (bev is taken:
 * freed with the connection). For tests and the fuzzer, which speak frames
 * over a bufferevent pair. */
struct ws_conn *ws_attach(struct ws_hub *hub, struct bufferevent *bev, const struct ws_ops *ops, void *arg);
/* The largest message taken (WS_MAX_MESSAGE unless set); a longer one ends
 * the connection with close code 1009 (message too big). The close frame
 * reaches a peer still sending: what it sends after is read and dropped
 * until its EOF (5 s and 64 MiB at most), not left to reset the socket. */
void ws_set_max_message(struct ws_conn *ws, uint64_t max);
/* Pings the peer every interval_ms; a peer that sends nothing (not even a
 * pong) for four intervals is dropped as gone. Quiet but live peers stay. */
void ws_keepalive(struct ws_conn *ws, int64_t interval_ms);
/* Queues one message. -1 once the connection is closing. */
int ws_send(struct ws_conn *ws, bool binary, const void *data, size_t len);
/* Bytes queued and not yet written to the socket. */
size_t ws_pending(const struct ws_conn *ws);
/* Starts the closing handshake (code 1000 normal, 1011 error, ...); closed
 * runs once it is done or the peer is gone. */
void ws_close(struct ws_conn *ws, uint16_t code, const char *reason);

#endif
