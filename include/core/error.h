/* The one error every core service returns (sandboxes, commands, files): a
 * kind, a stable machine code and one human line. No transport here: each
 * dialect maps the kind (and a few codes) onto its wire format in one table. */
#ifndef SANDBAR_CORE_ERROR_H
#define SANDBAR_CORE_ERROR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

enum core_err {
	CORE_OK = 0,
	CORE_INVALID,	  /* bad input */
	CORE_FORBIDDEN,	  /* not allowed here: permissions, a protected path */
	CORE_NOT_FOUND,	  /* no such sandbox, command or file */
	CORE_CONFLICT,	  /* the object's current state forbids it (status, exists, not empty) */
	CORE_GONE,	  /* it existed, and is no longer kept */
	CORE_LIMIT,	  /* over a limit: a size, a count, a range */
	CORE_CAPACITY,	  /* no room on the Docker host now */
	CORE_UNAVAILABLE, /* PostgreSQL, Docker or the agent cannot be reached now */
	CORE_UNSUPPORTED, /* the sandbox's agent predates the request */
	CORE_INTERNAL,
	CORE_ERR_MAX
};

struct core_error {
	enum core_err kind;
	const char *code; /* stable, static: "not_found", "invalid_state", ... */
	char message[320];
	const char *status; /* CONFLICT over a sandbox's status: that status (static), else NULL */
	uint64_t size;	    /* LIMIT on a byte range: the file's size */
};

/* Fills e (status and size cleared). */
void core_error_set(struct core_error *e, enum core_err kind, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void core_error_vset(struct core_error *e, enum core_err kind, const char *code, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));

/* Fills e as INVALID and returns -1: a parser's answer to bad input. */
int core_error_invalid(struct core_error *e, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
