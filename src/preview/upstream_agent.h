/* An upstream over the sandbox's agent: a bufferevent pair whose far end is
 * pumped to and from a TCP stream the agent opens to a port inside the
 * sandbox (include/channel/channel.h), so the proxy's HTTP code runs on it as
 * on a socket. The near end reports BEV_EVENT_CONNECTED once the agent
 * connected, BEV_EVENT_ERROR when it could not or the stream broke, and
 * BEV_EVENT_EOF after the app's last byte. */
#ifndef SANDBAR_PREVIEW_UPSTREAM_AGENT_H
#define SANDBAR_PREVIEW_UPSTREAM_AGENT_H

#include <event2/bufferevent.h>
#include <event2/event.h>

struct agent_channel;
struct upstream_agent;

/* *bev: the near end, owned by the upstream (freed by upstream_agent_free). */
struct upstream_agent *upstream_agent_new(struct event_base *base, struct agent_channel *ch, int port,
					  struct bufferevent **bev);
/* The errno the stream ended with (ECONNREFUSED, ENOTSUP...), 0 while none. */
int upstream_agent_error(const struct upstream_agent *ua);
void upstream_agent_free(struct upstream_agent *ua);

#endif
