/* The login environment, kept per user: the agent runs the user's login
 * shell once (`/bin/sh -l` as that user, started from the poll loop and
 * never waited for), keeps what its profile scripts exported, and lays that
 * over the environment of each login shell string, which then needs no
 * login shell of its own. Worked out again when a profile file changes. */
#ifndef SANDBAR_AGENT_LOGIN_H
#define SANDBAR_AGENT_LOGIN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent.h"

#define LOGIN_CAPTURE_MS    10000      /* a login shell slower than this: no login environment */
#define LOGIN_CAPTURE_BYTES (1u << 20) /* its environment larger than this: none either */
#define LOGIN_ENTRIES_MAX   16	       /* users and HOMEs kept; others' shell strings run sh -lc */

struct login_env;
struct user_info;

/* The environment a login shell string of user (NULL: the agent's own uid)
 * runs with, env holding the command's own variables (HOME included when it
 * has one): env with the login environment laid over it (see envdelta.h),
 * an array to free() (its strings are env's and the login's); NULL when the
 * command needs no change or none is known yet. *ready says whether the
 * login environment was known: false while it is worked out (started here
 * when no capture runs), when it could not be, or when the agent keeps none
 * (a->login_printer NULL); the command then runs `/bin/sh -lc` itself. */
char **login_env_for(struct agent *a, const struct user_info *user, char **env, bool *ready);

/* The agent's start: the login environment of user_name (a name or uid,
 * with its passwd HOME, as a SPAWN with that USER gets it; NULL: the
 * agent's own, without HOME, as a SPAWN without USER) worked out now
 * rather than at its first login shell string. */
void login_warm(struct agent *a, const char *user_name);
/* A reaped pid: true when it was a capture's shell. */
bool login_reaped(struct agent *a, pid_t pid, int status);
/* Poll events on a capture's pipe. */
void login_io(struct agent *a, struct login_env *l, short revents);
/* Captures over their time killed; the next deadline (0: none). */
int64_t login_timers(struct agent *a);
/* The captures' pipes to poll: a->logins is the first entry. */
int login_fd(const struct login_env *l); /* -1: nothing to read */
struct login_env *login_next(const struct login_env *l);
/* Whether its capture runs (until its shell is reaped, after its pipe's EOF). */
bool login_capturing(const struct login_env *l);
/* Every capture killed (not waited for) and every entry freed. */
void login_free_all(struct agent *a);

#endif
