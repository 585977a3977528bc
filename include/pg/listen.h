/* LISTEN on a connection of its own, apart from the pool: every NOTIFY on one
 * channel reaches a callback. The connection reconnects with back-off like
 * the pool's; a notification sent while it was away is lost, so reset() says
 * when it listens again (first time included): a cache kept true by these
 * notifications must then forget what it holds. */
#ifndef SANDBAR_PG_LISTEN_H
#define SANDBAR_PG_LISTEN_H

#include <stdbool.h>

#include <event2/event.h>

struct pg_listener;

struct pg_listener_ops {
	void (*notified)(const char *payload, void *arg);
	/* listening (again): anything may have changed while it was not */
	void (*reset)(void *arg);
	/* not listening any more (the connection broke) */
	void (*lost)(void *arg);
};

/* channel: a plain identifier ([a-z_][a-z0-9_]*). */
struct pg_listener *pg_listener_new(struct event_base *base, const char *conninfo, const char *channel,
				    const struct pg_listener_ops *ops, void *arg);
void pg_listener_start(struct pg_listener *l);
bool pg_listener_listening(const struct pg_listener *l);
void pg_listener_free(struct pg_listener *l);

#endif
