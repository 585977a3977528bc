/* The registry of channels, one per sandbox, made on first use. A dropped
 * channel leaves the registry at once and is freed after its subscriptions
 * have been told. */
#include "channel_internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "docker/client.h"

TAILQ_HEAD(channel_list, agent_channel);

struct channels {
	struct event_base *base;
	struct docker *docker;
	struct channel_list list; /* a few hundred sandboxes at most per instance: a list will do */
	channels_reset_fn reset;
	void *reset_arg;
};

/* Every channel's stream runs through dockerd: when it is gone they all are,
 * and waiting on them would hang until TCP gave up. */
static void docker_health_changed(enum docker_health health, void *arg)
{
	struct channels *chs = arg;
	if (health != DOCKER_UNREACHABLE)
		return;
	struct agent_channel *ch;
	TAILQ_FOREACH(ch, &chs->list, link)
	channel_docker_down(ch, "Docker is unreachable");
}

struct channels *channels_new(struct event_base *base, struct docker *docker)
{
	struct channels *chs = calloc(1, sizeof(*chs));
	CHECK(chs != NULL);
	chs->base = base;
	chs->docker = docker;
	TAILQ_INIT(&chs->list);
	if (docker)
		docker_watch_health(docker, docker_health_changed, chs);
	return chs;
}

void channels_free(struct channels *chs)
{
	if (!chs)
		return;
	struct agent_channel *ch;
	while ((ch = TAILQ_FIRST(&chs->list)) != NULL) {
		TAILQ_REMOVE(&chs->list, ch, link);
		channel_destroy(ch);
	}
	free(chs);
}

struct agent_channel *channels_find(struct channels *chs, const char *sandbox_id)
{
	struct agent_channel *ch;
	TAILQ_FOREACH(ch, &chs->list, link)
	if (strcmp(ch->sandbox_id, sandbox_id) == 0)
		return ch;
	return NULL;
}

struct agent_channel *channels_get(struct channels *chs, const char *sandbox_id, const char *container)
{
	struct agent_channel *ch = channels_find(chs, sandbox_id);
	if (ch)
		return ch;
	ch = channel_new(chs->base, chs->docker, sandbox_id, container);
	ch->chs = chs;
	TAILQ_INSERT_TAIL(&chs->list, ch, link);
	return ch;
}

void channels_on_reset(struct channels *chs, channels_reset_fn fn, void *arg)
{
	chs->reset = fn;
	chs->reset_arg = arg;
}

void channels_reset(struct channels *chs, const char *sandbox_id)
{
	if (chs->reset)
		chs->reset(sandbox_id, chs->reset_arg);
}

void channels_drop(struct channels *chs, const char *sandbox_id)
{
	/* heard whether a channel was open or not: the agent goes either way */
	channels_reset(chs, sandbox_id);
	struct agent_channel *ch = channels_find(chs, sandbox_id);
	if (!ch)
		return;
	TAILQ_REMOVE(&chs->list, ch, link);
	ch->chs = NULL;
	channel_close(ch, "sandbox gone");
}
