/* Private to agentfs.c (lookup, one-shot ops) and agentfs_stream.c (the
 * document read, streamed reads and writes): the op and its helpers. */
#ifndef SANDBAR_FILES_AGENTFS_INTERNAL_H
#define SANDBAR_FILES_AGENTFS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "channel/channel.h"
#include "files/agentfs.h"
#include "files/path.h"
#include "sandbox/registry.h"

struct agentfs {
	struct event_base *base;
	struct registry *reg;
	uint64_t upload_limit;
};

enum afs_kind {
	AFS_STAT,
	AFS_LIST,
	AFS_MKDIR,
	AFS_REMOVE,
	AFS_MOVE,
	AFS_EDIT,
	AFS_READ_DOC,
	AFS_READ,
	AFS_WRITE
};

enum afs_state {
	AFS_LOOKUP, /* the sandbox's handle */
	AFS_AGENT,  /* the agent request (or stream) is on */
	AFS_DONE,   /* the last callback ran or is running */
	AFS_STATE_MAX
};

struct agentfs_op {
	struct agentfs *fs;
	enum afs_kind kind;
	enum afs_state state;
	char sandbox_id[40];
	char container[80];
	char *user; /* the template's remoteUser / containerUser; NULL: root */
	char path[FILES_PATH_MAX + 1], path2[FILES_PATH_MAX + 1];
	uint32_t flags, mode;
	int depth;
	char *old_text, *new_text;
	size_t old_len, new_len;
	struct registry_wait *rwait; /* the sandbox's handle on its way */
	struct agent_channel *ch;    /* valid while the sandbox is not dropped; used in this pass only */
	struct agent_fs *afs;
	struct agentfs_entry *entries; /* LIST: paths owned */
	size_t nentries, cap_entries;
	struct agentfs_entry stat; /* STAT */
	bool have_stat;
	/* reads */
	uint64_t offset, length;
	bool suffix, headed;
	uint64_t start, expect, got; /* the range as the agent clamped it, bytes received */
	struct evbuffer *buf;	     /* the document read's bytes */
	uint64_t size;		     /* the document read's; MOVE: cut path to it first when cut */
	bool cut;
	const char *mime;
	bool image;
	bool whole_binary; /* the document read: a binary file whole, up to the image cap */
	bool binary;	   /* ... and the bytes read so far are not text */
	/* writes */
	uint64_t written;
	bool paused, ended;
	/* callbacks */
	agentfs_done_fn cb;
	const struct agentfs_read_events *rev;
	const struct agentfs_write_events *wev;
	void *arg;
	int in_cb;
	bool cancelled;
	struct event *later; /* early failures, write drain polling */
	enum core_err later_err;
	const char *later_code;
	char later_msg[200];
};

struct agentfs_op *afs_op_new(struct agentfs *fs, enum afs_kind kind, const char *sandbox_id, void *arg);
int afs_path(struct agentfs_op *op, const char *in, char *out);
void afs_start(struct agentfs_op *op);
void afs_finish(struct agentfs_op *op, const struct core_error *fail, const struct agentfs_result *res);
void afs_fail(struct agentfs_op *op, enum core_err err, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void afs_fail_later(struct agentfs_op *op, enum core_err err, const char *code, const char *msg);
void afs_fail_errno(struct agentfs_op *op, int code, const char *message);
/* The op's success: r's call is set from the op. */
void afs_done(struct agentfs_op *op, struct agentfs_result *r);
/* agentfs_stream.c: the lookup found the sandbox, start the agent side. */
void afs_stream_start(struct agentfs_op *op);
/* The write's drain poll. */
void afs_write_poll(struct agentfs_op *op);
/* in_cb bookkeeping around a consumer callback: false when op was freed. */
bool afs_cb_leave(struct agentfs_op *op);

#endif
