/* The login environment as a difference (see login.c): what a login shell's
 * profile scripts exported beyond the environment they started with, and
 * that difference laid over a command's own environment. No I/O: unit
 * tested alone. */
#ifndef SANDBAR_AGENT_ENVDELTA_H
#define SANDBAR_AGENT_ENVDELTA_H

#include <stddef.h>

/* The "K=V" entries of buf (len bytes), each ended by a NUL (as `env -0`
 * writes them), as a NULL-terminated array in one allocation (free() it);
 * NULL when an entry lacks its NUL, its '=' or a name. */
char **envdelta_parse(const char *buf, size_t len);

/* The entries of after that before lacks or holds with another value,
 * leaving out what a shell sets for itself (PWD, OLDPWD, SHLVL, _): one
 * allocation, strings copied (free() it). */
char **envdelta_diff(char *const *before, char *const *after);

/* env with delta laid over it: each entry of delta replaces env's variable
 * when env lacks it or still holds the value base gave it (the value the
 * profile saw); any other value in env was set on purpose and stays. NULL
 * when nothing changes; else an array pointing at env's and delta's
 * strings (free() the array only). */
char **envdelta_apply(char *const *env, char *const *base, char *const *delta);

/* The value of name (namelen bytes) in env, or NULL. */
const char *envdelta_get(char *const *env, const char *name, size_t namelen);

#endif
