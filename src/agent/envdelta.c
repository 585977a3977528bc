/* The login environment as a difference: parsing what the capture printed,
 * diffing it against what the profile started with, laying it over a
 * command's environment (the rule is in envdelta.h). */
#include "envdelta.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

static bool shell_own(const char *kv, size_t namelen);
static char **pack(char *const *v, size_t n);

/* Variables a shell sets for itself: they describe the capture, not the
 * login. */
static bool shell_own(const char *kv, size_t namelen)
{
	static const char *const names[] = { "PWD", "OLDPWD", "SHLVL", "_" };
	for (size_t i = 0; i < ARRAY_LEN(names); i++) {
		if (strlen(names[i]) == namelen && memcmp(kv, names[i], namelen) == 0)
			return true;
	}
	return false;
}

/* n strings of v, and the array, in one allocation. */
static char **pack(char *const *v, size_t n)
{
	size_t bytes = 0;
	for (size_t i = 0; i < n; i++)
		bytes += strlen(v[i]) + 1;
	char **out = malloc((n + 1) * sizeof(char *) + bytes);
	CHECK(out != NULL);
	char *p = (char *)(out + n + 1);
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(v[i]) + 1;
		memcpy(p, v[i], l);
		out[i] = p;
		p += l;
	}
	out[n] = NULL;
	return out;
}

const char *envdelta_get(char *const *env, const char *name, size_t namelen)
{
	for (size_t i = 0; env && env[i]; i++) {
		if (strncmp(env[i], name, namelen) == 0 && env[i][namelen] == '=')
			return env[i] + namelen + 1;
	}
	return NULL;
}

char **envdelta_parse(const char *buf, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len;) {
		const char *end = memchr(buf + i, '\0', len - i);
		const char *eq = end ? memchr(buf + i, '=', (size_t)(end - (buf + i))) : NULL;
		if (!eq || eq == buf + i)
			return NULL;
		n++;
		i = (size_t)(end - buf) + 1;
	}
	char **out = malloc((n + 1) * sizeof(char *) + len);
	CHECK(out != NULL);
	char *p = (char *)(out + n + 1);
	if (len)
		memcpy(p, buf, len);
	for (size_t k = 0; k < n; k++) {
		out[k] = p;
		p += strlen(p) + 1;
	}
	out[n] = NULL;
	return out;
}

char **envdelta_diff(char *const *before, char *const *after)
{
	size_t n = 0, k = 0;
	while (after && after[n])
		n++;
	char **keep = calloc(n + 1, sizeof(char *));
	CHECK(keep != NULL);
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(after[i], '=');
		size_t nl = (size_t)(eq - after[i]);
		if (shell_own(after[i], nl))
			continue;
		const char *was = envdelta_get(before, after[i], nl);
		if (was && strcmp(was, eq + 1) == 0)
			continue;
		keep[k++] = after[i];
	}
	char **out = pack(keep, k);
	free(keep);
	return out;
}

char **envdelta_apply(char *const *env, char *const *base, char *const *delta)
{
	size_t ne = 0, nd = 0, k = 0;
	bool changed = false;
	while (env && env[ne])
		ne++;
	while (delta && delta[nd])
		nd++;
	char **out = malloc((ne + nd + 1) * sizeof(char *));
	CHECK(out != NULL);
	for (size_t i = 0; i < ne; i++) {
		const char *eq = strchr(env[i], '=');
		out[k++] = env[i];
		if (!eq)
			continue;
		size_t nl = (size_t)(eq - env[i]);
		const char *was = envdelta_get(base, env[i], nl);
		if (!was || strcmp(was, eq + 1) != 0)
			continue; /* set on purpose: it wins over the profile */
		for (size_t d = 0; d < nd; d++) {
			if (strncmp(delta[d], env[i], nl + 1) == 0) {
				out[k - 1] = delta[d];
				changed = true;
				break;
			}
		}
	}
	for (size_t d = 0; d < nd; d++) {
		const char *eq = strchr(delta[d], '=');
		if (!envdelta_get(env, delta[d], (size_t)(eq - delta[d]))) {
			out[k++] = delta[d];
			changed = true;
		}
	}
	out[k] = NULL;
	if (!changed) {
		free(out);
		return NULL;
	}
	return out;
}
