/* Runtime names and SANDBAR_RUNTIMES: which runtimes a create or a template
 * may ask for, and the Docker runtime each is registered as. */
#include "sandbox/runtime.h"

#include <stdio.h>
#include <string.h>

static const char *const names[SANDBOX_RUNTIME_MAX] = { "runc", "gvisor" };
/* what tools/lib/setup.sh registers with dockerd */
static const char *const docker_default[SANDBOX_RUNTIME_MAX] = { "", "sandbar-gvisor" };

static bool docker_name_ok(const char *s, size_t n);

const char *sandbox_runtime_name(enum sandbox_runtime r)
{
	return (unsigned)r < SANDBOX_RUNTIME_MAX ? names[r] : "runc";
}

int sandbox_runtime_parse(const char *name, enum sandbox_runtime *out)
{
	for (int i = 0; name && i < SANDBOX_RUNTIME_MAX; i++) {
		if (strcmp(name, names[i]) == 0) {
			*out = (enum sandbox_runtime)i;
			return 0;
		}
	}
	return -1;
}

/* dockerd's runtime names: letters, digits and ._- (it writes a script of that name) */
static bool docker_name_ok(const char *s, size_t n)
{
	if (n == 0 || n >= SANDBOX_RUNTIME_DOCKER_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

int sandbox_runtimes_parse(const char *spec, struct sandbox_runtimes *out, char *err, size_t errcap)
{
	memset(out, 0, sizeof(*out));
	out->enabled[SANDBOX_RUNTIME_RUNC] = true;
	for (const char *p = spec; p && *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		size_t nlen = eq ? (size_t)(eq - p) : len;
		char name[32];
		enum sandbox_runtime r;
		snprintf(name, sizeof(name), "%.*s", (int)(nlen < sizeof(name) ? nlen : sizeof(name) - 1), p);
		if (nlen == 0 || nlen >= sizeof(name) || sandbox_runtime_parse(name, &r) != 0) {
			snprintf(err, errcap, "SANDBAR_RUNTIMES: unknown runtime '%.*s' (runc, gvisor)",
				 (int)nlen, p);
			return -1;
		}
		if (eq && r == SANDBOX_RUNTIME_RUNC) {
			snprintf(err, errcap,
				 "SANDBAR_RUNTIMES: runc is Docker's default runtime and takes no '='");
			return -1;
		}
		const char *docker = eq ? eq + 1 : docker_default[r];
		size_t dlen = eq ? len - nlen - 1 : strlen(docker);
		if (r != SANDBOX_RUNTIME_RUNC && !docker_name_ok(docker, dlen)) {
			snprintf(err, errcap, "SANDBAR_RUNTIMES: bad Docker runtime name '%.*s' for %s",
				 (int)dlen, docker, name);
			return -1;
		}
		out->enabled[r] = true;
		snprintf(out->docker[r], sizeof(out->docker[r]), "%.*s", (int)dlen, docker);
		p = end ? end + 1 : p + len;
	}
	return 0;
}

const char *sandbox_runtimes_docker(const struct sandbox_runtimes *rt, enum sandbox_runtime r)
{
	if ((unsigned)r >= SANDBOX_RUNTIME_MAX || r == SANDBOX_RUNTIME_RUNC || !rt || !rt->docker[r][0])
		return NULL;
	return rt->docker[r];
}
