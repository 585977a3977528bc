/* Two tiers of assertion: CHECK is always on and aborts with file and line;
 * DCHECK is compiled in for debug and test builds only. */
#ifndef SANDBAR_CORE_CHECK_H
#define SANDBAR_CORE_CHECK_H

_Noreturn void check_failed(const char *file, int line, const char *expr);

#define CHECK(x) ((x) ? (void)0 : check_failed(__FILE__, __LINE__, #x))
#ifdef NDEBUG
#define DCHECK(x) ((void)0)
#else
#define DCHECK(x) CHECK(x)
#endif

#define MUST_USE     __attribute__((warn_unused_result))
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
