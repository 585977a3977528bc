/* A woken sandbox's port: when it may take the held request. A request
 * without a body: sent on the first connection the port takes, again while
 * the app closes it unanswered. One with a body, on a published port: the
 * agent's word on the service that declares it, else a connection the app
 * holds a moment. A port reached through the agent: its connect. */
#include <stdlib.h>

#include "channel/channel.h"
#include "core/check.h"
#include "core/clock.h"
#include "core/log.h"
#include "proxy_internal.h"
#include "sandbox/registry.h"

/* The agent probes a just started service's PORT every few ms, backing off
 * (src/agent/service.c); it is asked again (and a port tried again) after a
 * quarter of the time the wake has taken so far, within these bounds. */
#define WAKE_POLL_MIN_MS 5
#define WAKE_POLL_MAX_MS 100
/* An agent that does not answer a LIST this long (its channel connecting
 * still, or broken) is not waited for: the port is tried as below. */
#define WAKE_ASK_MS 2000
/* The fallback, for a published port no service declares: Docker's
 * userland proxy accepts on it before anything listens inside, then closes;
 * a connection still open this long after it was accepted reached the app.
 * Between tries (on either path), the wait. */
#define WAKE_SETTLE_MS 150
#define WAKE_RETRY_MS  100 /* at most */

/* One LIST in flight. The agent's lists have no cancel: an exchange that
 * ends or stops waiting first leaves it behind with px NULL, and the answer
 * frees it. */
struct px_ask {
	struct px *px;
};

static void port_ask(struct px *px);
static void port_listed(const struct agent_status *list, size_t n, const char *err, void *arg);
static void port_drop_ask(struct px *px);
static bool port_wait(struct px *px, int64_t ms);
static void port_timeout(struct px *px);
static int64_t wake_backoff(const struct px *px, int64_t max);

void px_port_wait(struct px *px)
{
	if (px->ch) {
		/* through the agent: nothing accepts for the app there, so its connect
		 * to 127.0.0.1 is the test (its probe, at the sandbox's own address,
		 * would never call an app bound to loopback only ready) */
		log_info("sandbox=%s preview port %d: through the agent: tried until its connect succeeds",
			 px->target.sandbox_id, px->target.port);
		px_open(px, PX_PORT_TRY);
		return;
	}
	if (!px->body) {
		/* nothing to lose by trying: Docker's userland proxy closes a
		 * connection it cannot pass on, and the request is sent again */
		log_info("sandbox=%s preview port %d: no body: sent until the app answers",
			 px->target.sandbox_id, px->target.port);
		px_open(px, PX_PORT_TRY);
		return;
	}
	px_set_state(px, PX_PORT_POLL);
	port_ask(px);
}

/* The tick guards the answer: the deadline, or WAKE_ASK_MS. */
static void port_ask(struct px *px)
{
	CHECK(px->ref != NULL);
	int64_t left = px->wake_until_ms - clock_mono_ms();
	if (left <= 0) {
		port_timeout(px);
		return;
	}
	px_tick_in(px, left < WAKE_ASK_MS ? left : WAKE_ASK_MS);
	struct px_ask *ask = calloc(1, sizeof(*ask));
	CHECK(ask != NULL);
	ask->px = px;
	px->ask = ask;
	agent_list(sandbox_ref_channel(px->ref), port_listed, ask);
}

/* Which services the agent runs, whether each one's port accepts yet. */
static void port_listed(const struct agent_status *list, size_t n, const char *err, void *arg)
{
	struct px_ask *ask = arg;
	struct px *px = ask->px;
	free(ask);
	if (!px)
		return;
	px->ask = NULL;
	event_del(px->tick);
	const char *id = px->target.sandbox_id;
	int port = px->target.port;
	if (err) {
		log_warn("sandbox=%s preview port %d: readiness unknown (%s): tried until a connection holds",
			 id, port, err);
		px_open(px, PX_PORT_TRY);
		return;
	}
	const char *service = NULL;
	bool ready = false;
	for (size_t i = 0; i < n; i++) {
		if (list[i].running && list[i].service[0] && list[i].port == port) {
			service = list[i].service;
			ready |= list[i].ready;
		}
	}
	if (!service) {
		/* the fallback: an app the image starts, or a service declared without its port */
		log_info("sandbox=%s preview port %d: no service declares it: tried until a connection holds "
			 "%d ms",
			 id, port, WAKE_SETTLE_MS);
		px_open(px, PX_PORT_TRY);
		return;
	}
	if (ready) {
		log_info("sandbox=%s preview port %d: service %s is ready (the agent's probe)", id, port,
			 service);
		px_connect(px, false);
		return;
	}
	port_wait(px, wake_backoff(px, WAKE_POLL_MAX_MS));
}

/* A quarter of the time the wake has taken so far, from WAKE_POLL_MIN_MS up to max. */
static int64_t wake_backoff(const struct px *px, int64_t max)
{
	int64_t waited = clock_mono_ms() - (px->wake_until_ms - px->pv->cfg.wake_timeout_ms);
	int64_t next = waited / 4;
	return next < WAKE_POLL_MIN_MS ? WAKE_POLL_MIN_MS : next > max ? max : next;
}

static void port_drop_ask(struct px *px)
{
	if (px->ask) {
		px->ask->px = NULL;
		px->ask = NULL;
	}
}

void px_port_release(struct px *px)
{
	port_drop_ask(px);
	sandbox_ref_put(px->ref);
	px->ref = NULL;
}

/* The next step ms from now, unless that is past the wake's deadline:
 * then false, px gone. */
static bool port_wait(struct px *px, int64_t ms)
{
	if (clock_mono_ms() + ms >= px->wake_until_ms) {
		port_timeout(px);
		return false;
	}
	px_tick_in(px, ms);
	return true;
}

static void port_timeout(struct px *px)
{
	bool asking = px->state == PX_PORT_POLL;
	px_fail(px, 504, "wake_timeout", "sandbox %s woke, but %s port %d within SANDBAR_WAKE_TIMEOUT",
		px->target.sandbox_id, asking ? "no service was ready on" : "nothing answered on",
		px->target.port);
}

void px_port_connected(struct px *px)
{
	if (px->up->ua || !px->body) {
		px_send(px); /* the agent reached the app itself, or nothing is lost if it did not */
		return;
	}
	/* held a moment: Docker's proxy closes at once while the app does not listen */
	px_set_state(px, PX_PORT_SETTLE);
	bufferevent_enable(px->up->bev, EV_READ);
	px_tick_in(px, WAKE_SETTLE_MS);
}

/* Nothing listens behind the port yet (refused, or closed at once), or the
 * app closed a sent request without a body unanswered, starting still: the
 * next try soon. */
void px_port_again(struct px *px)
{
	if (px->up) {
		upconn_free(px->up);
		px->up = NULL;
	}
	px_set_state(px, PX_PORT_RETRY);
	port_wait(px, wake_backoff(px, WAKE_RETRY_MS));
}

void px_port_tick(struct px *px)
{
	if (px->state == PX_PORT_SETTLE) {
		px_send(px); /* the app holds the connection */
		return;
	}
	if (px->state == PX_PORT_RETRY) {
		px_open(px, PX_PORT_TRY);
		return;
	}
	CHECK(px->state == PX_PORT_POLL);
	if (!px->ask) {
		port_ask(px);
		return;
	}
	if (clock_mono_ms() >= px->wake_until_ms) {
		port_timeout(px);
		return;
	}
	log_warn("sandbox=%s preview port %d: the agent did not answer in %d ms: tried until a connection "
		 "holds",
		 px->target.sandbox_id, px->target.port, WAKE_ASK_MS);
	port_drop_ask(px);
	px_open(px, PX_PORT_TRY);
}
