/* X-Project-Id: the project a Hermes request belongs to, and whether a
 * sandbox is one it may see. REST and the WebSocket's dial both ask here, so
 * the two cannot disagree on what another project's sandbox is. */
#include <string.h>

#include "http/server.h"
#include "internal.h"
#include "sandbox/registry.h"

#define PROJECT_MAX 128

const char *hermes_request_project(struct http_request *req, struct core_error *e)
{
	const char *p = http_request_header(req, "X-Project-Id");
	if (!p || !*p)
		return "default";
	size_t n = strlen(p);
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f || n > PROJECT_MAX) {
			core_error_set(e, CORE_INVALID, "invalid_project",
				       "X-Project-Id must be 1 to %d printable bytes", PROJECT_MAX);
			return NULL;
		}
	}
	return p;
}

bool hermes_sandbox_visible(const struct sandbox *sb, const char *project, const char *id,
			    struct core_error *e)
{
	if (!sandbox_status_final(sb->status) && sb->project && strcmp(sb->project, project) == 0)
		return true;
	core_error_set(e, CORE_NOT_FOUND, "not_found", "no sandbox %s in project %s", id, project);
	return false;
}
