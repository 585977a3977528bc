/* A sandbox's statuses and the one legality table of its moves. */
#include <string.h>

#include "sandbox/registry.h"

static int name_index(const char *const *table, int n, const char *name);

static const char *const names[SANDBOX_STATUS_MAX] = {
	[SANDBOX_CREATING] = "creating", [SANDBOX_STARTING] = "starting", [SANDBOX_RUNNING] = "running",
	[SANDBOX_STOPPING] = "stopping", [SANDBOX_STOPPED] = "stopped",	  [SANDBOX_EXPIRED] = "expired",
	[SANDBOX_DELETED] = "deleted",	 [SANDBOX_ERROR] = "error",	  [SANDBOX_WARM] = "warm",
};

#define S(x) (1u << (x))
/* legal[from]: the statuses a sandbox may move to from it. Docker's word
 * (a container gone or dead behind our back) may stop or fail it from any
 * live status; a delete removes it from any; expiry (idleness, lifetime)
 * comes to running and stopped ones. A stop or start that Docker refused
 * goes back (stopping -> running, starting -> stopped). */
static const unsigned legal[SANDBOX_STATUS_MAX] = {
	[SANDBOX_CREATING] = S(SANDBOX_RUNNING) | S(SANDBOX_WARM) | S(SANDBOX_ERROR) | S(SANDBOX_DELETED),
	[SANDBOX_WARM] = S(SANDBOX_RUNNING) | S(SANDBOX_ERROR) | S(SANDBOX_DELETED),
	[SANDBOX_RUNNING] = S(SANDBOX_STOPPING) | S(SANDBOX_STOPPED) | S(SANDBOX_EXPIRED) | S(SANDBOX_ERROR) |
			    S(SANDBOX_DELETED),
	[SANDBOX_STOPPING] = S(SANDBOX_STOPPED) | S(SANDBOX_RUNNING) | S(SANDBOX_ERROR) | S(SANDBOX_DELETED),
	[SANDBOX_STOPPED] = S(SANDBOX_STARTING) | S(SANDBOX_EXPIRED) | S(SANDBOX_ERROR) | S(SANDBOX_DELETED),
	[SANDBOX_STARTING] = S(SANDBOX_RUNNING) | S(SANDBOX_STOPPED) | S(SANDBOX_ERROR) | S(SANDBOX_DELETED),
	[SANDBOX_ERROR] = S(SANDBOX_DELETED) | S(SANDBOX_EXPIRED),
	[SANDBOX_EXPIRED] = 0,
	[SANDBOX_DELETED] = 0,
};
#undef S

const char *sandbox_status_name(enum sandbox_status s)
{
	return (unsigned)s < SANDBOX_STATUS_MAX ? names[s] : "unknown";
}

int sandbox_status_parse(const char *name, enum sandbox_status *out)
{
	for (int s = 0; s < SANDBOX_STATUS_MAX; s++) {
		if (name && strcmp(name, names[s]) == 0) {
			*out = (enum sandbox_status)s;
			return 0;
		}
	}
	return -1;
}

bool sandbox_status_can(enum sandbox_status from, enum sandbox_status to)
{
	return (unsigned)from < SANDBOX_STATUS_MAX && (unsigned)to < SANDBOX_STATUS_MAX &&
	       (legal[from] & (1u << to)) != 0;
}

static const char *const idle_actions[SANDBOX_IDLE_ACTION_MAX] = { "expire", "stop", "none" };
static const char *const networks[SANDBOX_NETWORK_MAX] = { "full", "none" };

/* The index of name in a table of n names, or -1. */
static int name_index(const char *const *table, int n, const char *name)
{
	for (int i = 0; name && i < n; i++)
		if (strcmp(name, table[i]) == 0)
			return i;
	return -1;
}

const char *sandbox_idle_action_name(enum sandbox_idle_action a)
{
	return (unsigned)a < SANDBOX_IDLE_ACTION_MAX ? idle_actions[a] : "expire";
}

int sandbox_idle_action_parse(const char *name, enum sandbox_idle_action *out)
{
	int i = name_index(idle_actions, SANDBOX_IDLE_ACTION_MAX, name);
	if (i < 0)
		return -1;
	*out = (enum sandbox_idle_action)i;
	return 0;
}

const char *sandbox_network_name(enum sandbox_network n)
{
	return (unsigned)n < SANDBOX_NETWORK_MAX ? networks[n] : "full";
}

int sandbox_network_parse(const char *name, enum sandbox_network *out)
{
	int i = name_index(networks, SANDBOX_NETWORK_MAX, name);
	if (i < 0)
		return -1;
	*out = (enum sandbox_network)i;
	return 0;
}

bool sandbox_status_final(enum sandbox_status s)
{
	return s == SANDBOX_EXPIRED || s == SANDBOX_DELETED;
}
