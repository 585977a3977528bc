/* NULL-terminated string lists: free and copy. */
#include "core/strv.h"

#include <stdlib.h>
#include <string.h>

#include "core/check.h"

void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

char **strv_dup(const char *const *v)
{
	if (!v)
		return NULL;
	size_t n = 0;
	while (v[n])
		n++;
	char **out = calloc(n + 1, sizeof(*out));
	CHECK(out != NULL);
	for (size_t i = 0; i < n; i++) {
		out[i] = strdup(v[i]);
		CHECK(out[i] != NULL);
	}
	return out;
}
