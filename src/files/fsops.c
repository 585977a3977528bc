/* Commit and discard of upload temporaries through a Docker exec as root, for
 * a sandbox whose agent cannot do it (it predates AGENT_FEATURE_FS_MOVE_SIZE,
 * or is unreachable); paths are arguments, never spliced into the shell text. */
#include "files/fsops.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/log.h"

struct fsop {
	docker_done_fn cb;
	void *arg;
};

static void fsop_done(int exit_code, const char *output, size_t len, bool truncated, const char *err,
		      void *arg);
static struct docker_call *fsop_run(struct docker *d, const char *container, struct json_object *argv,
				    docker_done_fn cb, void *arg);

static struct docker_call *fsop_run(struct docker *d, const char *container, struct json_object *argv,
				    docker_done_fn cb, void *arg)
{
	struct fsop *op = calloc(1, sizeof(*op));
	CHECK(op != NULL);
	op->cb = cb;
	op->arg = arg;
	struct docker_exec_opts opts = { .argv = argv, .user = "0:0", .output_cap = 1024 };
	struct docker_call *c = docker_exec_run(d, container, &opts, fsop_done, op);
	if (!c)
		free(op);
	return c;
}

/* Callers never cancel these calls (a commit or discard must run to its end
 * even when the client is gone), so op is always freed here. */
static void fsop_done(int exit_code, const char *output, size_t len, bool truncated, const char *err,
		      void *arg)
{
	struct fsop *op = arg;
	char msg[256];
	if (!err && exit_code != 0) {
		snprintf(msg, sizeof(msg), "exit %d: %.*s", exit_code, (int)(len > 200 ? 200 : len), output);
		err = msg;
	}
	if (err)
		log_warn("files: sandbox file operation failed: %s", err);
	op->cb(err, op->arg);
	free(op);
}

struct docker_call *files_fs_commit(struct docker *d, const char *container, const char *tmp, const char *dst,
				    uint64_t size, docker_done_fn cb, void *arg)
{
	char sz[24];
	snprintf(sz, sizeof(sz), "%" PRIu64, size);
	struct json_object *argv = json_object_new_array();
	const char *args[] = { "/bin/sh", "-c", "truncate -s \"$1\" -- \"$2\" && mv -f -T -- \"$2\" \"$3\"",
			       "sh",	  sz,	tmp,
			       dst };
	for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++)
		json_object_array_add(argv, json_object_new_string(args[i]));
	return fsop_run(d, container, argv, cb, arg);
}

struct docker_call *files_fs_discard(struct docker *d, const char *container, const char *tmp,
				     docker_done_fn cb, void *arg)
{
	struct json_object *argv = json_object_new_array();
	const char *args[] = { "rm", "-f", "--", tmp };
	for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++)
		json_object_array_add(argv, json_object_new_string(args[i]));
	return fsop_run(d, container, argv, cb, arg);
}
