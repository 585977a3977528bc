/* The skip rule of the unit tests (need.h): an unmet need our scripts provide
 * is a failure, any other a skip that names itself and makes meson say SKIP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define NEED_IMPLEMENTATION
#include "need.h"

#define SKIPPED_MAX 64

/* tools/test's words (SANDBAR_TEST_PROVIDED) */
static const char *const words[] = { "postgres", "docker", "pg-cluster", "root", "mount" };

static const char *skipped[SKIPPED_MAX];
static int nskipped;

static bool known(const char *word);

static bool known(const char *word)
{
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (strcmp(word, words[i]) == 0)
			return true;
	}
	return false;
}

bool need_provided(const char *word)
{
	const char *p = getenv("SANDBAR_TEST_PROVIDED");
	size_t n = strlen(word);
	while (p && *p) {
		p += strspn(p, " \t");
		size_t len = strcspn(p, " \t");
		if (len == n && memcmp(p, word, n) == 0)
			return true;
		p += len;
	}
	return false;
}

/* Fails and skips at the caller's line, through the functions behind
 * cmocka's fail() and skip(). */
void need_check(const char *file, int line, const char *test, const char *word, bool met, const char *fmt,
		...)
{
	if (!known(word)) {
		print_error("%s: need(\"%s\") names no word of SANDBAR_TEST_PROVIDED\n", test, word);
		_fail(file, line);
		return; /* not reached: _fail leaves the test */
	}
	if (met)
		return;
	char why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (need_provided(word)) {
		print_error("%s needs %s, which SANDBAR_TEST_PROVIDED says is provided: %s\n", test, word,
			    why);
		_fail(file, line);
		return; /* not reached: _fail leaves the test */
	}
	printf("[  NEED    ] %s skipped: needs %s (not in SANDBAR_TEST_PROVIDED): %s\n", test, word, why);
	fflush(stdout);
	if (nskipped < SKIPPED_MAX)
		skipped[nskipped] = test;
	nskipped++;
	_skip(file, line); /* leaves the test */
}

int need_exit(int failed)
{
	if (failed)
		return 1;
	if (nskipped == 0)
		return 0;
	printf("[  NEED    ] %d test(s) skipped:", nskipped);
	for (int i = 0; i < nskipped && i < SKIPPED_MAX; i++)
		printf(" %s", skipped[i]);
	printf("\n");
	return 77;
}
