/* TCP streams of the agent (AGENT_TCP_*, include/agent/protocol.h): a
 * non-blocking connect to 127.0.0.1:PORT inside the sandbox, then bytes both
 * ways in TCP_DATA frames under a window each way, half-closes passed on.
 * Driven by the poll loop, never a wait; each belongs to one connection and
 * dies with it. */
#ifndef SANDBAR_AGENT_TCP_H
#define SANDBAR_AGENT_TCP_H

#include <stdbool.h>
#include <stdint.h>

#include "agent.h"
#include "agent/protocol.h"
#include "request.h"

#define TCP_READ_CHUNK (64u * 1024) /* DATA bytes per TCP_DATA */

struct conn;
struct tcp_stream;

/* A decoded TCP_OPEN, TCP_DATA, TCP_ACK, TCP_SHUT or TCP_CLOSE. */
void tcp_handle(struct agent *a, struct conn *c, const struct agent_req *r);
/* The poll events a stream waits for (0: none), and their outcome. A stream
 * stays allocated (closed) until tcp_reap, after the loop pass. */
short tcp_events(const struct conn *c, const struct tcp_stream *s);
int tcp_fd(const struct tcp_stream *s);
struct tcp_stream *tcp_next(const struct tcp_stream *s); /* c->tcp is the first */
void tcp_io(struct agent *a, struct conn *c, struct tcp_stream *s, short revents);
/* Frees c's closed streams (all of them when c is closing). */
void tcp_reap(struct agent *a, struct conn *c);

#endif
