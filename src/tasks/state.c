/* A task's states: their names and the one legality table that
 * task_set_state (tasks.c) asserts. No I/O: the unit tests link it alone. */
#include <stdbool.h>
#include <string.h>

#include "tasks/tasks.h"

static const char *const state_names[TASK_STATE_MAX] = {
	[TASK_PREPARING] = "preparing", [TASK_RUNNING] = "running", [TASK_CHECKPOINTING] = "checkpointing",
	[TASK_SUCCEEDED] = "succeeded", [TASK_FAILED] = "failed",   [TASK_CANCELLED] = "cancelled",
	[TASK_TIMED_OUT] = "timed_out",
};

/* Preparing may fail or be cancelled before the CLI starts; the checkpoint
 * after settles every outcome but a task the sandbox lost (failed). */
static const bool legal[TASK_STATE_MAX][TASK_STATE_MAX] = {
	[TASK_PREPARING] = { [TASK_RUNNING] = true, [TASK_CHECKPOINTING] = true, [TASK_FAILED] = true },
	[TASK_RUNNING] = { [TASK_CHECKPOINTING] = true, [TASK_FAILED] = true },
	[TASK_CHECKPOINTING] = { [TASK_SUCCEEDED] = true,
				 [TASK_FAILED] = true,
				 [TASK_CANCELLED] = true,
				 [TASK_TIMED_OUT] = true },
};

int task_name_index(const char *const *names, int n, const char *name)
{
	for (int i = 0; name && i < n; i++)
		if (strcmp(name, names[i]) == 0)
			return i;
	return -1;
}

const char *task_state_name(enum task_state s)
{
	return (unsigned)s < TASK_STATE_MAX ? state_names[s] : "?";
}

int task_state_parse(const char *name, enum task_state *out)
{
	int i = task_name_index(state_names, TASK_STATE_MAX, name);
	if (i < 0)
		return -1;
	*out = (enum task_state)i;
	return 0;
}

bool task_state_final(enum task_state s)
{
	return s >= TASK_SUCCEEDED;
}

bool task_state_can(enum task_state from, enum task_state to)
{
	return (unsigned)from < TASK_STATE_MAX && (unsigned)to < TASK_STATE_MAX && legal[from][to];
}
