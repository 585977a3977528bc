/* Waking a stopped sandbox for the requests that want it running (a preview,
 * an exec, a file, a terminal): one wake per sandbox however many wait, which
 * starts it through power.c (admission first) and answers every waiter at
 * once. A sandbox another request or instance is starting or stopping is
 * looked at again until it settles. The start outlives its waiters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "core/config.h"
#include "core/log.h"
#include "internal.h"

#define WAKE_POLL_MS 200 /* a sandbox moving (someone else's start or stop): read again after */

enum wake_state {
	WAKE_READ,     /* the sandbox as it is now */
	WAKE_STARTING, /* our start (power.c) */
	WAKE_POLL,     /* someone else's move: read again soon */
	WAKE_DONE,
	WAKE_STATE_MAX
};

struct wake_waiter {
	TAILQ_ENTRY(wake_waiter) link;
	struct wake *wk;
	registry_woken_fn done;
	void *arg;
	struct event *timeout;
};
TAILQ_HEAD(wake_waiters, wake_waiter);

struct wake {
	LIST_ENTRY(wake) link; /* among the service's wakes */
	struct sandbox_service *svc;
	enum wake_state state;
	char id[37];
	struct wake_waiters waiters;
	struct registry_wait *read;
	struct sandbox_call *start;
	struct event *poll;
	bool answering; /* its waiters hear the answer: it is no longer joined */
};

struct wakes {
	LIST_HEAD(, wake) list;
};

static void *wake_join(void *ctx, const char *id, registry_woken_fn done, void *arg);
static void wake_leave(void *handle);
static void wake_set_state(struct wake *wk, enum wake_state next);
static void wake_read(struct wake *wk);
static void wake_got(struct sandbox_ref *ref, const struct core_error *err, void *arg);
static void wake_started(const struct sandbox_result *res, void *arg);
static void wake_poll_fire(evutil_socket_t fd, short what, void *arg);
static void wake_timed_out(evutil_socket_t fd, short what, void *arg);
static void wake_answer(struct wake *wk, const struct core_error *err);
static void wake_free(struct wake *wk);

struct wakes *wakes_new(struct sandbox_service *svc)
{
	struct wakes *ws = calloc(1, sizeof(*ws));
	CHECK(ws != NULL);
	LIST_INIT(&ws->list);
	struct registry_waker w = { .wake = wake_join, .cancel = wake_leave, .ctx = svc };
	registry_set_waker(svc->reg, &w);
	return ws;
}

void wakes_free(struct sandbox_service *svc, struct wakes *ws)
{
	if (!ws)
		return;
	registry_set_waker(svc->reg, NULL);
	struct wake *wk;
	while ((wk = LIST_FIRST(&ws->list))) {
		struct wake_waiter *wt;
		while ((wt = TAILQ_FIRST(&wk->waiters))) {
			TAILQ_REMOVE(&wk->waiters, wt, link);
			event_free(wt->timeout);
			free(wt);
		}
		wake_free(wk);
	}
	free(ws);
}

/* Every step but the end goes on from the one before; a read may follow a
 * start that lost a race, and a poll. */
static void wake_set_state(struct wake *wk, enum wake_state next)
{
	static const unsigned legal[WAKE_STATE_MAX] = {
		[WAKE_READ] = 1u << WAKE_STARTING | 1u << WAKE_POLL | 1u << WAKE_DONE,
		[WAKE_STARTING] = 1u << WAKE_READ | 1u << WAKE_DONE,
		[WAKE_POLL] = 1u << WAKE_READ | 1u << WAKE_DONE,
	};
	static const char *const names[WAKE_STATE_MAX] = { "read", "starting", "poll", "done" };
	CHECK(next < WAKE_STATE_MAX && (legal[wk->state] & (1u << next)));
	log_debug("sandbox=%s wake %s -> %s", wk->id, names[wk->state], names[next]);
	wk->state = next;
}

static void *wake_join(void *ctx, const char *id, registry_woken_fn done, void *arg)
{
	struct sandbox_service *svc = ctx;
	struct wake *wk;
	LIST_FOREACH(wk, &svc->wakes->list, link)
	{
		if (strcmp(wk->id, id) == 0)
			break;
	}
	if (!wk) {
		wk = calloc(1, sizeof(*wk));
		CHECK(wk != NULL);
		wk->svc = svc;
		snprintf(wk->id, sizeof(wk->id), "%s", id);
		TAILQ_INIT(&wk->waiters);
		wk->poll = evtimer_new(svc->base, wake_poll_fire, wk);
		CHECK(wk->poll != NULL);
		LIST_INSERT_HEAD(&svc->wakes->list, wk, link);
		log_info("sandbox=%s: waking it for a request", id);
		wake_read(wk);
	}
	struct wake_waiter *wt = calloc(1, sizeof(*wt));
	CHECK(wt != NULL);
	wt->wk = wk;
	wt->done = done;
	wt->arg = arg;
	wt->timeout = evtimer_new(svc->base, wake_timed_out, wt);
	CHECK(wt->timeout != NULL);
	int64_t ms = svc->cfg->wake_timeout_ms;
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
	evtimer_add(wt->timeout, &tv);
	TAILQ_INSERT_TAIL(&wk->waiters, wt, link);
	return wt;
}

/* A waiter goes (its caller left, or it timed out). The wake goes on (its
 * read, then its start), joined by whoever comes next; only one waiting on
 * someone else's move ends with its last waiter. */
static void waiter_remove(struct wake_waiter *wt)
{
	struct wake *wk = wt->wk;
	TAILQ_REMOVE(&wk->waiters, wt, link);
	event_free(wt->timeout);
	free(wt);
	if (TAILQ_EMPTY(&wk->waiters) && wk->state == WAKE_POLL && !wk->answering) {
		wake_set_state(wk, WAKE_DONE);
		wake_free(wk);
	}
}

static void wake_leave(void *handle)
{
	waiter_remove(handle);
}

static void wake_timed_out(evutil_socket_t fd, short what, void *arg)
{
	struct wake_waiter *wt = arg;
	struct core_error err;
	core_error_set(&err, CORE_UNAVAILABLE, "wake_timeout", "sandbox %s did not wake within %lld ms",
		       wt->wk->id, (long long)wt->wk->svc->cfg->wake_timeout_ms);
	registry_woken_fn done = wt->done;
	void *darg = wt->arg;
	waiter_remove(wt);
	done(&err, darg);
}

static void wake_read(struct wake *wk)
{
	if (wk->state != WAKE_READ)
		wake_set_state(wk, WAKE_READ);
	wk->read = registry_acquire(wk->svc->reg, wk->id, REGISTRY_FRESH | REGISTRY_LIVE, wake_got, wk);
}

static void wake_got(struct sandbox_ref *ref, const struct core_error *err, void *arg)
{
	struct wake *wk = arg;
	wk->read = NULL;
	if (err) {
		wake_answer(wk, err);
		return;
	}
	const struct sandbox *sb = sandbox_ref_get(ref);
	enum sandbox_status status = sb->status;
	bool auto_wake = sb->auto_wake;
	sandbox_ref_put(ref);
	struct core_error e;
	switch (status) {
	case SANDBOX_RUNNING:
		wake_answer(wk, NULL);
		return;
	case SANDBOX_STOPPED:
		if (auto_wake) {
			wake_set_state(wk, WAKE_STARTING);
			wk->start = sandbox_start(wk->svc, wk->id, "wake", wake_started, wk);
			return;
		}
		break;
	case SANDBOX_STARTING:
	case SANDBOX_STOPPING:
		if (auto_wake && !TAILQ_EMPTY(&wk->waiters)) {
			wake_set_state(wk, WAKE_POLL);
			struct timeval tv = { 0, WAKE_POLL_MS * 1000 };
			evtimer_add(wk->poll, &tv);
			return;
		}
		break;
	default:
		break;
	}
	core_error_set(&e, CORE_CONFLICT, "sandbox_not_running", "sandbox is %s%s",
		       sandbox_status_name(status), auto_wake ? "" : " (auto_wake is off)");
	e.status = sandbox_status_name(status);
	wake_answer(wk, &e);
}

static void wake_poll_fire(evutil_socket_t fd, short what, void *arg)
{
	wake_read(arg);
}

static void wake_started(const struct sandbox_result *res, void *arg)
{
	struct wake *wk = arg;
	wk->start = NULL;
	if (res->err.kind == CORE_CONFLICT && res->err.code && strcmp(res->err.code, "invalid_state") == 0) {
		/* someone else moved it first: see where it went */
		if (TAILQ_EMPTY(&wk->waiters)) {
			wake_answer(wk, NULL);
			return;
		}
		wake_read(wk);
		return;
	}
	if (res->err.kind != CORE_OK) {
		log_warn("sandbox=%s: the wake's start failed: %s", wk->id, res->err.message);
		wake_answer(wk, &res->err);
		return;
	}
	log_info("sandbox=%s: woken", wk->id);
	wake_answer(wk, NULL);
}

/* Every waiter hears the one answer (one may leave while another hears it);
 * the wake ends, and the next request starts another. */
static void wake_answer(struct wake *wk, const struct core_error *err)
{
	wake_set_state(wk, WAKE_DONE);
	LIST_REMOVE(wk, link);
	wk->answering = true;
	struct wake_waiter *wt;
	while ((wt = TAILQ_FIRST(&wk->waiters))) {
		TAILQ_REMOVE(&wk->waiters, wt, link);
		registry_woken_fn done = wt->done;
		void *darg = wt->arg;
		event_free(wt->timeout);
		free(wt);
		done(err, darg);
	}
	wake_free(wk);
}

static void wake_free(struct wake *wk)
{
	if (!wk->answering)
		LIST_REMOVE(wk, link);
	registry_wait_cancel(wk->read);
	if (wk->start)
		sandbox_call_cancel(wk->start);
	event_free(wk->poll);
	free(wk);
}
