/* One worker thread for file I/O that may sleep, so the loop never does:
 * a FIFO of jobs under one mutex, results handed back through an eventfd. */
#include "core/iojob.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <unistd.h>

#include "core/check.h"

enum iojob_kind { IOJOB_WRITE, IOJOB_READ, IOJOB_CLOSE };

struct iojob {
	TAILQ_ENTRY(iojob) link;
	enum iojob_kind kind;
	struct iojob_file *file;
	struct evbuffer *buf; /* the bytes to write, or the bytes read */
	uint64_t offset;
	size_t len;
	int err;
	iojob_done_fn cb;
	void *arg;
};
TAILQ_HEAD(iojob_list, iojob);

struct iojob_file {
	LIST_ENTRY(iojob_file) link; /* open files, touched by the loop only */
	struct iojob_worker *w;
	int fd;
	bool closing;	/* under the mutex: results of its running job are dropped */
	size_t pending; /* loop only */
};

struct iojob_worker {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	struct iojob_list todo; /* under mu */
	struct iojob_list done; /* under mu */
	bool stop;		/* under mu */
	int efd;		/* the worker's "done is no longer empty" */
	struct event *ev;
	LIST_HEAD(, iojob_file) files;
};

static void *worker_main(void *arg);
static void job_run(struct iojob *job);
static void job_free(struct iojob *job);
static void job_queue(struct iojob_file *f, struct iojob *job);
static void jobs_take(struct iojob_list *from, struct iojob_file *f, struct iojob_list *to);
static void on_done(evutil_socket_t fd, short what, void *arg);

struct iojob_worker *iojob_worker_new(struct event_base *base)
{
	struct iojob_worker *w = calloc(1, sizeof(*w));
	CHECK(w != NULL);
	CHECK(pthread_mutex_init(&w->mu, NULL) == 0);
	CHECK(pthread_cond_init(&w->cond, NULL) == 0);
	TAILQ_INIT(&w->todo);
	TAILQ_INIT(&w->done);
	LIST_INIT(&w->files);
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	CHECK(w->efd >= 0);
	w->ev = event_new(base, w->efd, EV_READ | EV_PERSIST, on_done, w);
	CHECK(w->ev != NULL && event_add(w->ev, NULL) == 0);
	/* the thread inherits the mask: signals stay with the loop's handlers */
	sigset_t all, old;
	sigfillset(&all);
	CHECK(pthread_sigmask(SIG_BLOCK, &all, &old) == 0);
	CHECK(pthread_create(&w->thread, NULL, worker_main, w) == 0);
	CHECK(pthread_sigmask(SIG_SETMASK, &old, NULL) == 0);
	return w;
}

void iojob_worker_free(struct iojob_worker *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
	CHECK(pthread_join(w->thread, NULL) == 0);
	/* alone now: closes still queued run here, everything else is dropped */
	struct iojob *job;
	while ((job = TAILQ_FIRST(&w->todo))) {
		TAILQ_REMOVE(&w->todo, job, link);
		if (job->kind == IOJOB_CLOSE)
			job_run(job);
		job_free(job);
	}
	while ((job = TAILQ_FIRST(&w->done))) {
		TAILQ_REMOVE(&w->done, job, link);
		job_free(job);
	}
	struct iojob_file *f;
	while ((f = LIST_FIRST(&w->files))) {
		LIST_REMOVE(f, link);
		close(f->fd);
		free(f);
	}
	event_free(w->ev);
	close(w->efd);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

struct iojob_file *iojob_file_new(struct iojob_worker *w, int fd)
{
	struct iojob_file *f = calloc(1, sizeof(*f));
	CHECK(f != NULL);
	f->w = w;
	f->fd = fd;
	LIST_INSERT_HEAD(&w->files, f, link);
	return f;
}

void iojob_file_close(struct iojob_file *f)
{
	if (!f)
		return;
	struct iojob_worker *w = f->w;
	struct iojob_list dropped = TAILQ_HEAD_INITIALIZER(dropped);
	struct iojob *close_job = calloc(1, sizeof(*close_job));
	CHECK(close_job != NULL);
	close_job->kind = IOJOB_CLOSE;
	close_job->file = f;
	LIST_REMOVE(f, link);
	pthread_mutex_lock(&w->mu);
	f->closing = true;
	jobs_take(&w->todo, f, &dropped);
	jobs_take(&w->done, f, &dropped);
	/* first in line: it runs right after the job running now, if any */
	TAILQ_INSERT_HEAD(&w->todo, close_job, link);
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
	struct iojob *job;
	while ((job = TAILQ_FIRST(&dropped))) {
		TAILQ_REMOVE(&dropped, job, link);
		job_free(job);
	}
}

size_t iojob_file_pending(const struct iojob_file *f)
{
	return f->pending;
}

void iojob_write(struct iojob_file *f, struct evbuffer *src, size_t len, iojob_done_fn cb, void *arg)
{
	struct iojob *job = calloc(1, sizeof(*job));
	CHECK(job != NULL);
	job->kind = IOJOB_WRITE;
	job->buf = evbuffer_new();
	CHECK(job->buf != NULL);
	CHECK(evbuffer_remove_buffer(src, job->buf, len) == (int)len);
	job->len = len;
	job->cb = cb;
	job->arg = arg;
	f->pending += len;
	job_queue(f, job);
}

void iojob_read(struct iojob_file *f, uint64_t offset, size_t len, iojob_done_fn cb, void *arg)
{
	struct iojob *job = calloc(1, sizeof(*job));
	CHECK(job != NULL);
	job->kind = IOJOB_READ;
	job->buf = evbuffer_new();
	CHECK(job->buf != NULL);
	job->offset = offset;
	job->len = len;
	job->cb = cb;
	job->arg = arg;
	job_queue(f, job);
}

static void job_queue(struct iojob_file *f, struct iojob *job)
{
	struct iojob_worker *w = f->w;
	job->file = f;
	pthread_mutex_lock(&w->mu);
	TAILQ_INSERT_TAIL(&w->todo, job, link);
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
}

static void jobs_take(struct iojob_list *from, struct iojob_file *f, struct iojob_list *to)
{
	struct iojob *job = TAILQ_FIRST(from);
	while (job) {
		struct iojob *next = TAILQ_NEXT(job, link);
		if (job->file == f) {
			TAILQ_REMOVE(from, job, link);
			TAILQ_INSERT_TAIL(to, job, link);
		}
		job = next;
	}
}

static void job_free(struct iojob *job)
{
	if (job->buf)
		evbuffer_free(job->buf);
	free(job);
}

static void *worker_main(void *arg)
{
	struct iojob_worker *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->stop && TAILQ_EMPTY(&w->todo))
			pthread_cond_wait(&w->cond, &w->mu);
		if (w->stop)
			break;
		struct iojob *job = TAILQ_FIRST(&w->todo);
		TAILQ_REMOVE(&w->todo, job, link);
		pthread_mutex_unlock(&w->mu);
		job_run(job);
		pthread_mutex_lock(&w->mu);
		/* a close frees its file; a closing file's result has nobody to go to */
		if (job->kind == IOJOB_CLOSE || job->file->closing) {
			job_free(job);
			continue;
		}
		bool wake = TAILQ_EMPTY(&w->done);
		TAILQ_INSERT_TAIL(&w->done, job, link);
		if (wake) {
			uint64_t one = 1;
			CHECK(write(w->efd, &one, sizeof(one)) == sizeof(one));
		}
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* Runs in the worker (or, for a close, in iojob_worker_free once it is alone). */
static void job_run(struct iojob *job)
{
	int fd = job->file->fd;
	switch (job->kind) {
	case IOJOB_WRITE:
		while (evbuffer_get_length(job->buf) > 0) {
			int n = evbuffer_write(job->buf, fd);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				job->err = n < 0 ? errno
						 : ENOSPC; /* a regular file takes 0 bytes only when full */
				return;
			}
		}
		return;
	case IOJOB_READ: {
		struct evbuffer_iovec v;
		if (job->len == 0)
			return;
		CHECK(evbuffer_reserve_space(job->buf, (ev_ssize_t)job->len, &v, 1) == 1);
		size_t got = 0;
		while (got < job->len) {
			ssize_t n = pread(fd, (char *)v.iov_base + got, job->len - got,
					  (off_t)(job->offset + got));
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				job->err = errno;
			if (n <= 0)
				break;
			got += (size_t)n;
		}
		v.iov_len = got;
		CHECK(evbuffer_commit_space(job->buf, &v, 1) == 0);
		return;
	}
	case IOJOB_CLOSE:
		close(fd);
		free(job->file);
		return;
	}
}

/* On the loop: one job at a time, so a callback that closes a file (its own
 * or another) takes that file's later results out of the list before they run. */
static void on_done(evutil_socket_t fd, short what, void *arg)
{
	struct iojob_worker *w = arg;
	uint64_t count;
	(void)!read(fd, &count, sizeof(count)); /* EAGAIN: an earlier pass took them */
	for (;;) {
		pthread_mutex_lock(&w->mu);
		struct iojob *job = TAILQ_FIRST(&w->done);
		if (job)
			TAILQ_REMOVE(&w->done, job, link);
		pthread_mutex_unlock(&w->mu);
		if (!job)
			return;
		if (job->kind == IOJOB_WRITE) {
			job->file->pending -= job->len;
			job->cb(job->err, NULL, job->arg);
		} else {
			job->cb(job->err, job->buf, job->arg);
		}
		job_free(job);
	}
}
