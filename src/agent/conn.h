/* Protocol connections to the agent: frames in, requests dispatched to the
 * commands, answers and subscribed output out. Several at once; a slow one
 * only ever holds up itself. */
#ifndef SANDBAR_AGENT_CONN_H
#define SANDBAR_AGENT_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent.h"
#include "agent/protocol.h"

enum conn_state { CONN_OPEN, CONN_CLOSING, CONN_STATE_MAX };

#define CONN_OUT_HIGH	 (256u * 1024) /* stop producing OUTPUT above this */
#define CONN_OUT_STOP_IN (4u << 20)    /* stop reading requests above this */
#define CONN_OUTPUT_MAX	 (64u * 1024)  /* DATA bytes per OUTPUT frame */

struct sub;
struct fs_stream;
struct tcp_stream;

struct conn {
	struct conn *next;
	int fd;
	enum conn_state state;
	uint8_t *in;
	size_t in_len, in_cap;
	struct agent_msg out;
	size_t out_off; /* bytes of out already written */
	struct sub *subs;
	struct fs_stream *fs_streams; /* file reads and writes (fs.c) */
	struct tcp_stream *tcp;	      /* TCP streams (tcp.c) */
};

struct conn *conn_new(struct agent *a, int fd);
/* Poll events: reads and dispatches requests, writes pending output. */
void conn_io(struct agent *a, struct conn *c, short revents);
/* Whether the loop should wait for POLLIN / POLLOUT. */
bool conn_wants_read(const struct conn *c);
bool conn_wants_write(const struct conn *c);
/* Moves subscribed output into every connection and writes what it can. */
void conn_pump_all(struct agent *a);
/* Frees the connections marked CLOSING (after the loop pass). */
void conn_reap_closed(struct agent *a);
void conn_free_all(struct agent *a);

/* One frame from a connection (exposed for tests). */
void conn_handle_frame(struct agent *a, struct conn *c, const struct agent_frame *f);

#endif
