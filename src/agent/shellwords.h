/* A shell string as the words of a command when it needs no shell (see
 * shellwords.c): no I/O, unit tested and fuzzed. */
#ifndef SANDBAR_AGENT_SHELLWORDS_H
#define SANDBAR_AGENT_SHELLWORDS_H

#include <stdbool.h>
#include <stddef.h>

/* The words of s (len bytes) as a NULL-terminated argv in one allocation
 * (free() it) when s is only plain words (none of $ ` ; | & < > ( ) * ? [ ] ~
 * { } # ! " \ or a newline) and single-quoted ones, separated by spaces and
 * tabs, with a first word that is no assignment, reserved word or builtin;
 * NULL when it needs /bin/sh -c. */
char **shellwords_split(const char *s, size_t len);

#endif
