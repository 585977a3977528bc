/* The always-on assertion's failure path. */
#include "core/check.h"

#include <stdio.h>
#include <stdlib.h>

void check_failed(const char *file, int line, const char *expr)
{
	fprintf(stderr, "%s:%d: check failed: %s\n", file, line, expr);
	abort();
}
