/* The file service through the sandbox agent, for every API dialect: stat,
 * list, mkdir, remove, move, edit, a document read (text, image, binary) and
 * streamed reads and writes of one file. Each call looks the sandbox up once
 * (running, container, default user = the template's remoteUser or
 * containerUser, as commands use) and counts as activity; the agent then acts
 * as that user. No HTTP here: results are structs (each dialect renders
 * them), byte streams, or a core error. Callbacks come from the loop, never
 * on the caller's stack; after the last one the op is freed. */
#ifndef SANDBAR_FILES_AGENTFS_H
#define SANDBAR_FILES_AGENTFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "core/check.h"
#include "core/error.h"

struct agentfs;
struct agentfs_op;
struct registry;

#define AGENTFS_TEXT_MAX       (200u * 1024) /* read: text in full up to this, else truncated */
#define AGENTFS_IMAGE_MAX      (5u << 20)    /* read: larger images are refused (too_large) */
#define AGENTFS_EDIT_MAX       (10u << 20)   /* edit: the file's size cap (the agent's) */
#define AGENTFS_LIST_DEPTH     10
#define AGENTFS_LIST_LIMIT     10000 /* entries of one listing */
#define AGENTFS_WINDOW	       (1u << 20)
#define AGENTFS_HIGH_WATERMARK (1u << 20) /* writes: wait for ready above this */
#define AGENTFS_LOW_WATERMARK  (256u * 1024)

/* Sandboxes come from the registry. upload_limit: bytes of one written file. */
struct agentfs *agentfs_new(struct event_base *base, struct registry *reg, uint64_t upload_limit);
void agentfs_free(struct agentfs *fs);

/* A file as the agent saw it (stat, list). */
struct agentfs_entry {
	const char *path; /* absolute */
	uint64_t size;
	uint32_t mode; /* st_mode: type and permission bits */
	int64_t mtime_ms;
	uint32_t uid, gid;
	bool link; /* a symbolic link (stat does not follow it) */
};

enum agentfs_call {
	AGENTFS_STAT,
	AGENTFS_LIST,
	AGENTFS_MKDIR,
	AGENTFS_REMOVE,
	AGENTFS_MOVE,
	AGENTFS_EDIT,
	AGENTFS_READ_DOC,
	AGENTFS_WRITE,
};

enum agentfs_doc { AGENTFS_DOC_TEXT, AGENTFS_DOC_IMAGE, AGENTFS_DOC_BINARY };

/* What a call did; which members are set depends on the call. */
struct agentfs_result {
	enum agentfs_call call;
	const char *path;		     /* the path acted on; MOVE: its source */
	const char *path2;		     /* MOVE: its destination */
	bool exists;			     /* STAT: else only path is set */
	struct agentfs_entry entry;	     /* STAT */
	const struct agentfs_entry *entries; /* LIST, depth-first, sorted by name */
	size_t nentries;
	bool created;	/* MKDIR, WRITE: the path did not exist */
	bool truncated; /* LIST: the entry cap was hit; READ_DOC: the bytes are the file's start */
	uint64_t size;	/* EDIT: the new size; WRITE: bytes written; READ_DOC: the file's */
	/* READ_DOC: text (valid UTF-8, cut at a character), or an image's or
	 * other file's raw bytes; mime of the file */
	enum agentfs_doc doc;
	const char *mime;
	const uint8_t *data;
	size_t data_len;
};

/* fail NULL on success, res NULL on failure. */
typedef void (*agentfs_done_fn)(const struct core_error *fail, const struct agentfs_result *res, void *arg);

/* A missing path is exists = false, not a failure. */
struct agentfs_op *agentfs_stat(struct agentfs *fs, const char *sandbox_id, const char *path,
				agentfs_done_fn cb, void *arg);
/* depth 1..AGENTFS_LIST_DEPTH; at most AGENTFS_LIST_LIMIT entries. */
struct agentfs_op *agentfs_list(struct agentfs *fs, const char *sandbox_id, const char *path, int depth,
				agentfs_done_fn cb, void *arg);
struct agentfs_op *agentfs_mkdir(struct agentfs *fs, const char *sandbox_id, const char *path, bool parents,
				 agentfs_done_fn cb, void *arg);
/* "/" and the top-level system directories are refused. */
struct agentfs_op *agentfs_remove(struct agentfs *fs, const char *sandbox_id, const char *path,
				  bool recursive, agentfs_done_fn cb, void *arg);
struct agentfs_op *agentfs_move(struct agentfs *fs, const char *sandbox_id, const char *from, const char *to,
				bool overwrite, agentfs_done_fn cb, void *arg);
/* old_text must occur exactly once (edit_no_match / edit_ambiguous with the
 * count otherwise). */
struct agentfs_op *agentfs_edit(struct agentfs *fs, const char *sandbox_id, const char *path,
				const char *old_text, size_t old_len, const char *new_text, size_t new_len,
				agentfs_done_fn cb, void *arg);
/* Text in full up to AGENTFS_TEXT_MAX; an image whole up to AGENTFS_IMAGE_MAX;
 * anything else its first AGENTFS_TEXT_MAX bytes. */
struct agentfs_op *agentfs_read_doc(struct agentfs *fs, const char *sandbox_id, const char *path,
				    agentfs_done_fn cb, void *arg);

/* The same, but a file that is neither text nor an image is read whole (up
 * to AGENTFS_IMAGE_MAX, else too_large), so that its bytes round-trip. */
struct agentfs_op *agentfs_read_doc_whole(struct agentfs *fs, const char *sandbox_id, const char *path,
					  agentfs_done_fn cb, void *arg);

/* ---- streams ---- */
struct agentfs_head {
	uint64_t size;		  /* the whole file */
	uint64_t offset, length;  /* the bytes that follow */
	const char *content_type; /* of the file (its first bytes, then its name) */
	int64_t mtime_ms;
};
struct agentfs_read_events {
	void (*head)(void *arg, const struct agentfs_head *h);
	void (*data)(void *arg, const uint8_t *data, size_t len);
	void (*end)(void *arg);
	/* before head, or after it when the file changed under the read */
	void (*failed)(void *arg, const struct core_error *fail);
};
/* length UINT64_MAX: to the end; suffix: the last length bytes. An empty or
 * unsatisfiable range of a non-empty file fails with CORE_LIMIT. */
struct agentfs_op *agentfs_read(struct agentfs *fs, const char *sandbox_id, const char *path, uint64_t offset,
				uint64_t length, bool suffix, const struct agentfs_read_events *ev,
				void *arg);
/* The consumer has taken consumed bytes of the stream in all: more may come. */
void agentfs_read_ack(struct agentfs_op *op, uint64_t consumed);

struct agentfs_write_events {
	void (*ready)(void *arg); /* data may be written: first, and after each pause */
	agentfs_done_fn done;	  /* res: path, size, created */
};
/* mode: permission bits (default 0644 when 0 is not wanted: pass 0644). */
struct agentfs_op *agentfs_write(struct agentfs *fs, const char *sandbox_id, const char *path, uint32_t mode,
				 const struct agentfs_write_events *ev, void *arg);
/* 0: taken; 1: taken, pause until ready; -1: refused (over the upload limit
 * or failed): done(fail) follows. */
int agentfs_write_data(struct agentfs_op *op, const void *data, size_t len);
/* All data given: commit (done follows). */
void agentfs_write_end(struct agentfs_op *op);

/* An upload's temporary (extracted by Docker's archive API) cut to size and
 * renamed over dst, or removed, as root, in a container the caller has just
 * seen running (no lookup). UNSUPPORTED: the agent predates it. */
struct agentfs_op *agentfs_upload_commit(struct agentfs *fs, const char *sandbox_id, const char *container,
					 const char *tmp, const char *dst, uint64_t size, agentfs_done_fn cb,
					 void *arg);
struct agentfs_op *agentfs_upload_discard(struct agentfs *fs, const char *sandbox_id, const char *container,
					  const char *tmp, agentfs_done_fn cb, void *arg);

/* The caller goes away: no callback follows; a write's temporary is removed. */
void agentfs_op_cancel(struct agentfs_op *op);

#endif
