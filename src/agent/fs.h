/* File operations of the agent (AGENT_FS*, include/agent/protocol.h): one-shot
 * operations answered at once, read and write streams driven by the poll loop,
 * recursive removes in a child process. All done as the requesting user. */
#ifndef SANDBAR_AGENT_FS_H
#define SANDBAR_AGENT_FS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent.h"
#include "agent/protocol.h"
#include "request.h"

#define FS_READ_CHUNK  (64u * 1024) /* DATA bytes per FS_DATA */
#define FS_HEAD_BYTES  512	    /* the first bytes an FS_ENTRY of a read carries */
#define FS_EDIT_MAX    (10u << 20)  /* EDIT reads the whole file: bigger ones get EFBIG */
#define FS_LIST_LIMIT  10000	    /* entries of one LIST unless LIMIT says fewer */
#define FS_LIST_DEPTH  10
#define FS_STREAMS_MAX 64 /* open streams per connection */

struct conn;
struct fs_stream;
struct fs_job;

/* A decoded FS, FS_READ, FS_WRITE, FS_DATA, FS_ACK, FS_COMMIT or FS_CLOSE. */
void fs_handle(struct agent *a, struct conn *c, const struct agent_req *r);
/* Sends what the read streams of c may send now (window, c's watermark). */
void fs_pump(struct agent *a, struct conn *c);
/* c is closing: its streams go (temporaries removed), its jobs answer no one. */
void fs_conn_closed(struct agent *a, struct conn *c);
/* A reaped pid: true when it was a remove job. */
bool fs_reaped(struct agent *a, pid_t pid, int status);
/* Jobs not yet reaped (tests). */
size_t fs_jobs_running(const struct agent *a);

#endif
