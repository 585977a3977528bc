/* The transfer engine, for every API dialect: a file or a directory's tar out
 * of a sandbox, a tar into one, and the upload of one file, all through
 * Docker's archive API socket to socket (a stopped sandbox too, without
 * starting it); an upload whose size cannot be known first waits in a spool
 * on the host. No HTTP here: bytes come and go as evbuffer chains, moved not
 * copied, with backpressure both ways; failures are core errors. Each
 * transfer starts with the sandbox's handle from the registry (activity;
 * refused once expired or deleted) and Docker's word on whether its container
 * runs. Callbacks come from the loop, never on the caller's stack. */
#ifndef SANDBAR_FILES_TRANSFER_H
#define SANDBAR_FILES_TRANSFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "core/check.h"
#include "core/error.h"

/* Above this queued on a destination, its source is not read. */
#define FILES_HIGH_WATERMARK (1u << 20)
#define FILES_SIZE_UNKNOWN   UINT64_MAX

struct agentfs;
struct docker;
struct files_transfer;
struct registry;

struct files_transfer_config {
	uint64_t upload_limit; /* UPLOAD_LIMIT: bytes of one uploaded file, or of one tar put */
	const char *spool_dir; /* UPLOAD_SPOOL_DIR: where a spooled upload waits, never named */
};

/* fs puts an upload's temporary in place (a Docker exec when the agent
 * cannot). The spool's reads and writes run on a worker thread of its own. */
struct files_transfer *files_transfer_new(struct event_base *base, struct registry *reg,
					  struct docker *docker, struct agentfs *fs,
					  const struct files_transfer_config *cfg);
/* Spool files of uploads cut short close with it. */
void files_transfer_free(struct files_transfer *t);

/* ---- out of a sandbox: a file, or a tar ---- */

struct files_xfer; /* one download or archive, out or in */

struct files_head {
	const char *path;	  /* what is sent: the file with its links followed, or the archived path */
	uint64_t size;		  /* bytes that follow; FILES_SIZE_UNKNOWN for a tar (to its end) */
	const char *content_type; /* a file's, from its first bytes and its name; a tar's */
};

struct files_out_events {
	/* Once, before any byte. */
	void (*head)(void *arg, const struct files_head *h);
	/* Bytes in order: take all of data (move its chains on). Return 1 when
	 * the sink is above FILES_HIGH_WATERMARK: nothing more comes until
	 * files_xfer_resume. */
	int (*data)(void *arg, struct evbuffer *data);
	/* The end, once: fail NULL after the last byte. A failure after head
	 * means the bytes stopped short. */
	void (*done)(void *arg, const struct core_error *fail);
};

/* One regular file's bytes, symbolic links followed (up to 8, resolved like
 * the kernel would): INVALID is_a_directory, not_a_file, too_many_links;
 * NOT_FOUND. path: absolute and normalised (files_path_normalize), else NULL
 * is returned with fail set (and no callback follows). */
struct files_xfer *files_download(struct files_transfer *t, const char *sandbox_id, const char *path,
				  const struct files_out_events *ev, void *arg, struct core_error *fail);
/* path and what is below it as Docker's tar makes it (modes, owners, links kept). */
struct files_xfer *files_archive_get(struct files_transfer *t, const char *sandbox_id, const char *path,
				     const struct files_out_events *ev, void *arg, struct core_error *fail);
/* The sink has drained below its low watermark: more may come. */
void files_xfer_resume(struct files_xfer *x);

/* ---- into a sandbox ---- */

struct files_in_events {
	/* Bytes may be written: first once the transfer can take them, then
	 * after a write answered 1. */
	void (*ready)(void *arg);
	/* The end, once: fail NULL when the bytes are in place at path (the
	 * upload's file, the tar's directory). */
	void (*done)(void *arg, const struct core_error *fail, const char *path);
};

/* A tar extracted into dir (which must exist: NOT_FOUND), every entry checked
 * before its bytes reach Docker (INVALID invalid_tar: names or links leaving
 * dir, device files, a malformed stream). Entries before a bad one are
 * already extracted. */
struct files_xfer *files_archive_put(struct files_transfer *t, const char *sandbox_id, const char *dir,
				     const struct files_in_events *ev, void *arg, struct core_error *fail);
/* Moves all of in towards Docker. 0: more may come; 1: wait for ready; -1:
 * failed (LIMIT too_large past the upload limit, INVALID invalid_tar), fail
 * says why, and the transfer is over: no callback follows. */
MUST_USE int files_xfer_write(struct files_xfer *x, struct evbuffer *in, struct core_error *fail);
/* The source ended: 0 (done follows), or -1 as files_xfer_write. */
MUST_USE int files_xfer_finish(struct files_xfer *x, struct core_error *fail);
/* No callback follows; the transfer stops where it is. */
void files_xfer_cancel(struct files_xfer *x);

/* ---- the upload of one file: whole at its destination, or not at all ---- */

/* Into a running sandbox the file is extracted as a temporary beside its
 * destination (named from tag, e.g. a request id, and a random part), cut
 * to the bytes that came and renamed into place by the agent once the
 * source is whole; a
 * failure removes it. Into a stopped sandbox, where nothing can move a
 * temporary, it is spooled first and written under its final name once
 * whole. An upload whose size is not known before its first byte is spooled
 * too, then sent with its exact size. */
struct files_upload;

/* sized: files_upload_begin will know the file's size, or a bound of it. */
struct files_upload *files_upload_new(struct files_transfer *t, const char *sandbox_id, bool sized,
				      const char *tag, const struct files_in_events *ev, void *arg);
/* After the first ready: does the file wait in the spool until the commit?
 * Its directory may then change until the commit (files_upload_set_dir). */
bool files_upload_spooled(const struct files_upload *up);
/* The file begins: dir (absolute, normalised) / name (checked as a file
 * name). size, unless spooled: at most this many bytes follow (the file is
 * cut to those that came). -1 as files_upload_write. */
MUST_USE int files_upload_begin(struct files_upload *up, const char *dir, const char *name, size_t name_len,
				uint64_t size, struct core_error *fail);
/* A spooled file's directory, before the commit. */
MUST_USE int files_upload_set_dir(struct files_upload *up, const char *dir, struct core_error *fail);
/* Moves len bytes off the front of in. 0: more may come; 1: wait for ready;
 * -1: failed (LIMIT too_large past the upload limit; INVALID size_exceeded
 * past begin's size), fail says why, and the upload is over: no callback
 * follows, what was half written is removed. */
MUST_USE int files_upload_write(struct files_upload *up, struct evbuffer *in, size_t len,
				struct core_error *fail);
/* The file's bytes are all given. */
void files_upload_end(struct files_upload *up);
/* The source is whole and valid: the file goes in place, done follows. -1 as
 * files_upload_write. */
MUST_USE int files_upload_commit(struct files_upload *up, struct core_error *fail);
/* No callback follows. What was half written is removed, except a spooled
 * file whose source was whole (committed): it is still written. */
void files_upload_cancel(struct files_upload *up);

#endif
