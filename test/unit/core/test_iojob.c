/* The file I/O worker: bytes written come back exactly, results arrive in
 * order and on the loop thread, and cancelled or dropped jobs never call back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/iojob.h"

#define PIPE_JOB (1u << 20) /* far more than a pipe holds: the worker blocks in it */

struct fixture {
	struct event_base *base;
	struct iojob_worker *w;
	pthread_t loop_thread;
	unsigned calls;	     /* callbacks run, in order */
	int errs;	     /* callbacks with an error */
	struct evbuffer *in; /* what reads brought back */
	struct iojob_file *close_in_cb;
};

struct expect {
	struct fixture *fx;
	unsigned seq; /* the callback's place among all callbacks */
};

static int setup(void **state);
static int teardown(void **state);
static int tmp_fd(void);
static void fill(unsigned char *p, size_t n, uint32_t seed);
static void loop_until(struct fixture *fx, unsigned calls);
static void done_cb(int err, struct evbuffer *data, void *arg);
static void counted_cb(int err, struct evbuffer *data, void *arg);
static void *drain_pipe(void *arg);

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	fx->base = event_base_new();
	fx->w = iojob_worker_new(fx->base);
	fx->loop_thread = pthread_self();
	fx->in = evbuffer_new();
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	iojob_worker_free(fx->w);
	evbuffer_free(fx->in);
	event_base_free(fx->base);
	free(fx);
	return 0;
}

/* an unlinked file, appended to like the upload spool */
static int tmp_fd(void)
{
	char path[] = "/tmp/sandbar-iojob-test-XXXXXX";
	int fd = mkostemp(path, O_APPEND | O_CLOEXEC);
	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

static void fill(unsigned char *p, size_t n, uint32_t seed)
{
	uint32_t x = seed | 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (unsigned char)x;
	}
}

static void loop_until(struct fixture *fx, unsigned calls)
{
	while (fx->calls < calls)
		assert_int_equal(event_base_loop(fx->base, EVLOOP_ONCE), 0);
}

/* Checks order and thread; reads bring their bytes into fx->in. */
static void done_cb(int err, struct evbuffer *data, void *arg)
{
	struct expect *e = arg;
	struct fixture *fx = e->fx;
	assert_true(pthread_equal(pthread_self(), fx->loop_thread));
	assert_int_equal(e->seq, fx->calls);
	fx->calls++;
	if (err)
		fx->errs++;
	if (data)
		evbuffer_add_buffer(fx->in, data);
}

static void counted_cb(int err, struct evbuffer *data, void *arg)
{
	struct fixture *fx = arg;
	assert_true(pthread_equal(pthread_self(), fx->loop_thread));
	fx->calls++;
	if (fx->close_in_cb) {
		iojob_file_close(fx->close_in_cb);
		fx->close_in_cb = NULL;
	}
}

static void test_write_then_read_back(void **state)
{
	struct fixture *fx = *state;
	enum { LEN = 3 << 20, WRITES = 500, CHUNK = 256 << 10 };
	unsigned char *data = malloc(LEN);
	fill(data, LEN, 7);
	struct iojob_file *f = iojob_file_new(fx->w, tmp_fd());
	struct expect *e = calloc(WRITES + 64, sizeof(*e));
	struct evbuffer *src = evbuffer_new();
	/* uneven pieces, the last one takes the rest */
	size_t off = 0;
	unsigned seq = 0;
	for (unsigned i = 0; i < WRITES; i++) {
		size_t n = i == WRITES - 1 ? LEN - off : (size_t)(data[i] * 23 + i % 7);
		evbuffer_add(src, data + off, n);
		off += n;
		e[seq] = (struct expect){ fx, seq };
		iojob_write(f, src, n, done_cb, &e[seq]);
		seq++;
		assert_int_equal(evbuffer_get_length(src), 0);
	}
	assert_int_equal(off, LEN);
	assert_int_equal(iojob_file_pending(f), LEN);
	assert_int_equal(fx->calls, 0); /* never from inside the call that queued it */
	loop_until(fx, seq);
	assert_int_equal(iojob_file_pending(f), 0);

	/* read back in chunks, the last one short, then one past the end */
	for (size_t at = 0; at <= LEN; at += CHUNK) {
		e[seq] = (struct expect){ fx, seq };
		iojob_read(f, at, CHUNK, done_cb, &e[seq]);
		seq++;
	}
	loop_until(fx, seq);
	assert_int_equal(fx->errs, 0);
	assert_int_equal(evbuffer_get_length(fx->in), LEN);
	assert_memory_equal(evbuffer_pullup(fx->in, -1), data, LEN);
	iojob_file_close(f);
	evbuffer_free(src);
	free(e);
	free(data);
}

/* Jobs of two files interleaved: results come back in the order queued. */
static void test_many_jobs_in_order(void **state)
{
	struct fixture *fx = *state;
	enum { JOBS = 2000 };
	struct iojob_file *f[2] = { iojob_file_new(fx->w, tmp_fd()), iojob_file_new(fx->w, tmp_fd()) };
	struct expect *e = calloc(JOBS, sizeof(*e));
	struct evbuffer *src = evbuffer_new();
	for (unsigned i = 0; i < JOBS; i++) {
		e[i] = (struct expect){ fx, i };
		if (i % 3 == 2) {
			iojob_read(f[i % 2], 0, 1, done_cb, &e[i]);
		} else {
			unsigned char b = (unsigned char)i;
			evbuffer_add(src, &b, 1);
			iojob_write(f[i % 2], src, 1, done_cb, &e[i]);
		}
	}
	loop_until(fx, JOBS);
	assert_int_equal(fx->errs, 0);
	for (int k = 0; k < 2; k++) {
		/* each file holds its own writes, in order */
		size_t before = evbuffer_get_length(fx->in);
		unsigned got = fx->calls;
		struct expect last = { fx, got };
		iojob_read(f[k], 0, JOBS, done_cb, &last);
		loop_until(fx, got + 1);
		const unsigned char *p = evbuffer_pullup(fx->in, -1) + before;
		size_t n = evbuffer_get_length(fx->in) - before;
		size_t j = 0;
		for (unsigned i = 0; i < JOBS; i++)
			if (i % 3 != 2 && i % 2 == (unsigned)k)
				assert_int_equal(p[j++], (unsigned char)i);
		assert_int_equal(n, j);
		iojob_file_close(f[k]);
	}
	evbuffer_free(src);
	free(e);
}

/* A pipe's write end as a file: its first job blocks in the worker until
 * the test reads, the rest stay queued. Closing it drops them all: the pipe
 * then carries exactly the running job's bytes, and ends once the worker has
 * closed the descriptor after that job. */
static void test_cancel_queued_and_running(void **state)
{
	struct fixture *fx = *state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	struct iojob_file *piped = iojob_file_new(fx->w, p[1]);
	struct iojob_file *other = iojob_file_new(fx->w, tmp_fd());
	unsigned char *big = calloc(1, PIPE_JOB);
	struct evbuffer *src = evbuffer_new();
	for (int i = 0; i < 10; i++) {
		evbuffer_add(src, big, PIPE_JOB);
		iojob_write(piped, src, PIPE_JOB, counted_cb, fx);
	}
	evbuffer_add(src, "x", 1);
	iojob_write(other, src, 1, counted_cb, fx);
	char c;
	assert_int_equal(read(p[0], &c, 1), 1); /* the first job is running now */
	iojob_file_close(piped);
	size_t total = 1;
	ssize_t n;
	while ((n = read(p[0], big, PIPE_JOB)) > 0)
		total += (size_t)n;
	assert_int_equal(n, 0);
	assert_int_equal(total, PIPE_JOB);
	loop_until(fx, 1); /* only the other file's job calls back */
	assert_int_equal(event_base_loop(fx->base, EVLOOP_NONBLOCK), 0);
	assert_int_equal(fx->calls, 1);
	iojob_file_close(other);
	close(p[0]);
	evbuffer_free(src);
	free(big);
}

/* A callback that closes its own file: its later results, done or not, are dropped. */
static void test_cancel_from_callback(void **state)
{
	struct fixture *fx = *state;
	struct iojob_file *f = iojob_file_new(fx->w, tmp_fd());
	struct evbuffer *src = evbuffer_new();
	for (int i = 0; i < 50; i++) {
		evbuffer_add(src, "abc", 3);
		iojob_write(f, src, 3, counted_cb, fx);
	}
	fx->close_in_cb = f;
	loop_until(fx, 1);
	/* a later job proves every earlier one has been through the worker */
	struct iojob_file *g = iojob_file_new(fx->w, tmp_fd());
	iojob_read(g, 0, 1, counted_cb, fx);
	loop_until(fx, 2);
	assert_int_equal(event_base_loop(fx->base, EVLOOP_NONBLOCK), 0);
	assert_int_equal(fx->calls, 2);
	iojob_file_close(g);
	evbuffer_free(src);
}

struct drained {
	int fd;
	size_t total;
};

static void *drain_pipe(void *arg)
{
	struct drained *d = arg;
	char buf[64 << 10];
	ssize_t n;
	while ((n = read(d->fd, buf, sizeof(buf))) > 0)
		d->total += (size_t)n;
	return NULL;
}

/* Freed with a job running and more queued, and files never closed: the
 * running job completes, nothing calls back, every descriptor is closed (the
 * pipe ends), and ASan finds nothing left. */
static void test_shutdown_with_pending(void **state)
{
	struct fixture *fx = *state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	struct iojob_file *piped = iojob_file_new(fx->w, p[1]);
	int plain_fd = tmp_fd();
	struct iojob_file *plain = iojob_file_new(fx->w, plain_fd);
	unsigned char *big = calloc(1, PIPE_JOB);
	struct evbuffer *src = evbuffer_new();
	for (int i = 0; i < 5; i++) {
		evbuffer_add(src, big, PIPE_JOB);
		iojob_write(piped, src, PIPE_JOB, counted_cb, fx);
		evbuffer_add(src, big, 4096);
		iojob_write(plain, src, 4096, counted_cb, fx);
		iojob_read(plain, 0, 4096, counted_cb, fx);
	}
	char c;
	assert_int_equal(read(p[0], &c, 1), 1); /* the first job is running */
	struct drained d = { p[0], 1 };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, drain_pipe, &d), 0);
	iojob_worker_free(fx->w);
	fx->w = NULL;
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(d.total, PIPE_JOB);
	assert_int_equal(fcntl(plain_fd, F_GETFD), -1);
	assert_int_equal(errno, EBADF);
	assert_int_equal(event_base_loop(fx->base, EVLOOP_NONBLOCK), 1); /* no events left */
	assert_int_equal(fx->calls, 0);
	close(p[0]);
	evbuffer_free(src);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_write_then_read_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_jobs_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_queued_and_running, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_from_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_with_pending, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
