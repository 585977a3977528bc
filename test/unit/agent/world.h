/* The agent in-process for the unit tests: its commands, connections and
 * services behind one connection whose other end (peer) is the test's, and
 * one pass of a poll loop like main.c's (timers, probes, paused commands
 * left out) that hands each frame the agent sent to the test. */
#ifndef SANDBAR_TEST_AGENT_WORLD_H
#define SANDBAR_TEST_AGENT_WORLD_H

#include <stddef.h>
#include <stdint.h>

#include "agent.h"
#include "agent/protocol.h"

struct conn;

struct agent_world;
typedef void (*world_frame_fn)(struct agent_world *w, const struct agent_frame *f);

/* Embedded first in a test's own struct, which the callback casts back to. */
struct agent_world {
	struct agent a;
	struct conn *conn; /* NULL once the test dropped it */
	int peer;
	world_frame_fn frame;
	uint8_t *in; /* what came from the agent, not yet a whole frame */
	size_t in_len, in_cap;
};

void world_open(struct agent_world *w, world_frame_fn frame);
/* Every command killed and reaped, everything freed (the services folder stays). */
void world_close(struct agent_world *w);
/* m's frames handled by the connection, as conn_read would; m freed. */
void world_send(struct agent_world *w, struct agent_msg *m);
/* Starts m as a SPAWN of /bin/sh -c script under tag (more fields may follow). */
void world_spawn_sh(struct agent_msg *m, const char *tag, const char *script);
/* One loop pass: reap, timers, pump, poll up to timeout_ms, dispatch; then
 * world_take. */
void world_pass(struct agent_world *w, int timeout_ms);
/* What the peer got, read; every whole frame of it to w->frame. */
void world_take(struct agent_world *w);

#endif
