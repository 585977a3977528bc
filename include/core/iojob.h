/* File I/O off the loop: one worker thread runs writes and reads of regular
 * files (which can sleep on the disk or on dirty-page throttling) and hands
 * the results back to the loop. */
#ifndef SANDBAR_CORE_IOJOB_H
#define SANDBAR_CORE_IOJOB_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>

/* Threading contract:
 * - Every function here is called from the loop thread only, and every
 *   callback runs on the loop thread, from an event of the worker's base,
 *   never from inside the function that queued the job.
 * - Jobs run one at a time in the order they were queued (so the jobs of one
 *   file run in order). An evbuffer belongs to the worker from the moment its
 *   job is queued until its callback runs: no evbuffer is ever touched by both
 *   threads at once, so libevent needs no locking (no evthread_use_pthreads).
 * - Closing a file cancels its jobs: no callback of it runs afterwards. A job
 *   that is already running finishes in the worker and its result is dropped;
 *   the descriptor is closed by the worker after it (closing an unlinked file
 *   frees its blocks, which can take a while too). */
struct iojob_worker;
struct iojob_file;

/* err is 0 or an errno value. For a read, data holds the bytes read (fewer
 * than asked only at the end of the file; drain what you take, the rest is
 * freed after the callback); for a write, data is NULL. */
typedef void (*iojob_done_fn)(int err, struct evbuffer *data, void *arg);

/* Starts the worker thread (with every signal blocked: they go to the loop). */
struct iojob_worker *iojob_worker_new(struct event_base *base);
/* Lets the running job finish, joins the thread, drops every queued job (no
 * callback runs) and closes the files still open. Not from a callback. */
void iojob_worker_free(struct iojob_worker *w);

/* fd is taken: closed by iojob_file_close or iojob_worker_free. */
struct iojob_file *iojob_file_new(struct iojob_worker *w, int fd);
/* Cancels the file's jobs and closes its descriptor; f is gone. NULL is fine. */
void iojob_file_close(struct iojob_file *f);
/* Bytes queued for writing whose callbacks have not run yet (backpressure). */
size_t iojob_file_pending(const struct iojob_file *f);

/* Moves len bytes from src (no copy) and writes them at the descriptor's
 * position: the end, for a file only ever appended to. */
void iojob_write(struct iojob_file *f, struct evbuffer *src, size_t len, iojob_done_fn cb, void *arg);
/* Reads up to len bytes at offset (pread: the position is left alone). */
void iojob_read(struct iojob_file *f, uint64_t offset, size_t len, iojob_done_fn cb, void *arg);

#endif
