/* Environment lists: "K=V" strings, NULL terminated, in which setting a key
 * again replaces its earlier value in place (as the agent passes env to a
 * command exactly as given, and of two equal keys the first would win). */
#ifndef SANDBAR_CORE_ENV_H
#define SANDBAR_CORE_ENV_H

#include <stddef.h>

struct env_list {
	char **v; /* NULL until the first set; then NULL terminated */
	size_t n, cap;
};

void env_list_set(struct env_list *l, const char *key, size_t klen, const char *val);
/* key: a whole name (NUL terminated), its length not counted by hand */
void env_list_put(struct env_list *l, const char *key, const char *val);
/* kv: "K=V" */
void env_list_set_kv(struct env_list *l, const char *kv);

#endif
