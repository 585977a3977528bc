/* What a unit test needs from the machine, and what an unmet need does: it fails
 * the test when our scripts provide that dependency (SANDBAR_TEST_PROVIDED),
 * else skips it by name, and the binary then exits 77 for meson's SKIP. */
#ifndef SANDBAR_TEST_NEED_H
#define SANDBAR_TEST_NEED_H

#include <stdbool.h>

/* need(word, met, why...): returns when met. Otherwise fails the current test
 * when word is in SANDBAR_TEST_PROVIDED, else prints the test, the word and
 * why, and skips it. word is one of tools/test's words: postgres, docker,
 * pg-cluster, root, mount (any other fails the test, so a typo cannot skip).
 * Call it from a test body, where cmocka may leave through its longjmp. */
#define need(word, met, ...) need_check(__FILE__, __LINE__, __func__, (word), (met), __VA_ARGS__)

void need_check(const char *file, int line, const char *test, const char *word, bool met, const char *fmt,
		...) __attribute__((format(printf, 6, 7)));
/* Whether SANDBAR_TEST_PROVIDED lists word. */
bool need_provided(const char *word);
/* The exit status of a binary whose cmocka run returned failed: 1 when a test
 * failed, else 77 (meson's SKIP) when need() skipped one, else 0. Names the
 * skipped tests on stdout. */
int need_exit(int failed);

/* A bare cmocka skip() would exit 0 and pass as OK: skip through need(). */
#ifndef NEED_IMPLEMENTATION
#undef skip
#define skip() _Static_assert(0, "skip through need() (test/unit/need.h)")
#endif

#endif
