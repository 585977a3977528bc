/* The task service's ops and the watchers of a live task's events (ops.c). */
#ifndef SANDBAR_TASKS_OPS_H
#define SANDBAR_TASKS_OPS_H

#include "internal.h"

/* At shutdown: every op dropped, no callback. */
void ops_free_all(struct tasks *ts);
/* A new event of t to its watchers. */
void watchers_deliver(struct task *t, const struct task_event *e);
/* t goes: its watchers follow it from PostgreSQL from then on. */
void watchers_detach(struct task *t);

#endif
