/* UTF-8 checks for bytes that must become JSON or PostgreSQL text. */
#ifndef SANDBAR_CORE_UTF8_H
#define SANDBAR_CORE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length of the longest valid UTF-8 prefix of s (no NUL allowed). */
size_t utf8_valid_prefix(const char *s, size_t len);
/* A new NUL-terminated copy with each invalid byte (and NUL) replaced by U+FFFD. */
char *utf8_sanitize(const char *s, size_t len);

#endif
