/* Environment lists ("K=V", later keys replace earlier ones in place). */
#include "core/env.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

void env_list_set(struct env_list *l, const char *key, size_t klen, const char *val)
{
	char *kv;
	CHECK(asprintf(&kv, "%.*s=%s", (int)klen, key, val) >= 0);
	for (size_t i = 0; i < l->n; i++) {
		if (strncmp(l->v[i], key, klen) == 0 && l->v[i][klen] == '=') {
			free(l->v[i]);
			l->v[i] = kv;
			return;
		}
	}
	if (l->n + 2 > l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = realloc(l->v, l->cap * sizeof(char *));
		CHECK(l->v != NULL);
	}
	l->v[l->n++] = kv;
	l->v[l->n] = NULL;
}

void env_list_put(struct env_list *l, const char *key, const char *val)
{
	env_list_set(l, key, strlen(key), val);
}

void env_list_set_kv(struct env_list *l, const char *kv)
{
	const char *eq = strchr(kv, '=');
	CHECK(eq != NULL);
	env_list_set(l, kv, (size_t)(eq - kv), eq + 1);
}
