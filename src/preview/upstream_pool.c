/* Connections to sandbox ports: made, kept idle per host:port after an
 * exchange (up to SANDBAR_PREVIEW_IDLE_CONNS), taken for the next, and closed
 * when the app closes them, sends unasked, or stays idle too long. */
#include <stdlib.h>

#include <event2/bufferevent.h>

#include "core/check.h"
#include "proxy_internal.h"
#include "upstream_agent.h"

static void idle_event(struct bufferevent *bev, short what, void *arg);
static void idle_read(struct bufferevent *bev, void *arg);

struct upconn *upconn_new(struct preview *pv, int host_port, struct agent_channel *ch, int port)
{
	struct upconn *up = calloc(1, sizeof(*up));
	CHECK(up != NULL);
	up->pv = pv;
	up->host_port = host_port;
	if (ch) {
		up->ua = upstream_agent_new(pv->base, ch, port, &up->bev);
		return up;
	}
	up->bev = bufferevent_socket_new(pv->base, -1, BEV_OPT_CLOSE_ON_FREE);
	CHECK(up->bev != NULL);
	return up;
}

struct upconn *upconn_take(struct preview *pv, int host_port)
{
	struct upconn *up;
	TAILQ_FOREACH(up, &pv->idle, link)
	{
		if (up->host_port == host_port) {
			TAILQ_REMOVE(&pv->idle, up, link);
			up->reused = true;
			return up;
		}
	}
	return NULL;
}

void upconn_free(struct upconn *up)
{
	if (up->ua)
		upstream_agent_free(up->ua); /* its bev too */
	else
		bufferevent_free(up->bev);
	free(up);
}

static void idle_event(struct bufferevent *bev, short what, void *arg)
{
	struct upconn *up = arg;
	TAILQ_REMOVE(&up->pv->idle, up, link);
	upconn_free(up);
}

static void idle_read(struct bufferevent *bev, void *arg)
{
	idle_event(bev, BEV_EVENT_ERROR, arg); /* bytes nobody asked for: not reusable */
}

void upconn_keep(struct upconn *up)
{
	struct preview *pv = up->pv;
	int same = 0;
	struct upconn *o;
	TAILQ_FOREACH(o, &pv->idle, link)
	same += o->host_port == up->host_port;
	if (same >= pv->cfg.idle_per_port) {
		upconn_free(up);
		return;
	}
	bufferevent_setcb(up->bev, idle_read, NULL, idle_event, up);
	proxy_set_timeouts(up->bev, pv->cfg.idle_timeout_ms);
	bufferevent_enable(up->bev, EV_READ);
	TAILQ_INSERT_HEAD(&pv->idle, up, link);
}

void upconn_free_idle(struct preview *pv)
{
	struct upconn *up;
	while ((up = TAILQ_FIRST(&pv->idle))) {
		TAILQ_REMOVE(&pv->idle, up, link);
		upconn_free(up);
	}
}
