/* docker_image_build: walks the context folder and streams it to POST /build
 * as a tar built on the fly, reading files in chunks only while the socket
 * keeps up; then reads Docker's JSON progress stream for errors and a log. */
#include "docker/engine.h"
#include "docker/tar.h"
#include "client_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "core/log.h"

#define BUILD_HIGH_WATERMARK (256u << 10)
#define BUILD_READ_CHUNK     (64u << 10)
#define BUILD_LOG_MAX	     8192
#define BUILD_MAX_DEPTH	     64

struct build_dir {
	DIR *dir;
	char *rel; /* "" for the root, else "a/b/" */
};

struct build_op {
	struct docker *d;
	struct docker_call *handle;
	struct docker_call *step;
	struct event *defer; /* reports a failure found before the request starts */
	docker_build_fn cb;
	void *arg;
	char *root;
	struct build_dir stack[BUILD_MAX_DEPTH];
	int depth;
	int fd;	       /* file being streamed, -1 when none */
	uint64_t left; /* its bytes still to send */
	uint64_t size;
	bool tar_done;
	bool answered; /* Docker sent its head: stop feeding it */
	int status;
	struct evbuffer *out;
	struct evbuffer *line;
	struct evbuffer *log;
	char *err;
};

static void build_free(struct build_op *b);
static void build_cancel(void *ctx);
static void build_finish(struct build_op *b, const char *err);
static void build_defer_cb(evutil_socket_t fd, short what, void *arg);
static int build_next_entry(struct build_op *b);
static int build_file_chunk(struct build_op *b);
static void build_fill(struct build_op *b);
static void build_fail_context(struct build_op *b, const char *what, const char *path);
static int build_head_cb(struct docker_call *call, int status, void *arg);
static void build_data_cb(struct docker_call *call, struct evbuffer *body, void *arg);
static void build_drain_cb(struct docker_call *call, void *arg);
static void build_done_cb(struct docker_call *call, const char *err, void *arg);
static void build_line(struct build_op *b, const char *line, size_t len);
static void build_log(struct build_op *b, const char *s, size_t len);
static void add_json_param(struct evbuffer *p, const char *key, struct json_object *obj);

struct docker_call *docker_image_build(struct docker *d, const struct docker_build_opts *opts,
				       docker_build_fn cb, void *arg)
{
	struct build_op *b = calloc(1, sizeof(*b));
	struct evbuffer *path = evbuffer_new();
	if (!b || !path)
		goto fail;
	b->d = d;
	b->cb = cb;
	b->arg = arg;
	b->fd = -1;
	b->root = strdup(opts->context_dir);
	b->out = evbuffer_new();
	b->line = evbuffer_new();
	b->log = evbuffer_new();
	b->defer = evtimer_new(docker_base(d), build_defer_cb, b);
	b->handle = docker_op_new(d, build_cancel, b);
	if (!b->root || !b->out || !b->line || !b->log || !b->defer || !b->handle)
		goto fail;

	evbuffer_add_printf(path, "/build?rm=1&forcerm=1&t=");
	docker_url_encode(path, opts->tag);
	evbuffer_add_printf(path, "&dockerfile=");
	docker_url_encode(path, opts->dockerfile ? opts->dockerfile : "Dockerfile");
	if (opts->target) {
		evbuffer_add_printf(path, "&target=");
		docker_url_encode(path, opts->target);
	}
	add_json_param(path, "buildargs", opts->buildargs);
	add_json_param(path, "labels", opts->labels);
	evbuffer_add(path, "", 1);

	/* The Dockerfile is the one thing the context must have; say so plainly
	 * rather than through Docker's error. The answer still comes from the loop. */
	char df[PATH_MAX];
	struct stat st;
	snprintf(df, sizeof(df), "%s/%s", b->root, opts->dockerfile ? opts->dockerfile : "Dockerfile");
	DIR *dir = stat(df, &st) == 0 ? opendir(b->root) : NULL;
	if (!dir) {
		b->err = strdup(errno == ENOENT ? "Dockerfile not found in the build context"
						: "cannot read the build context");
		struct timeval zero = { 0, 0 };
		evtimer_add(b->defer, &zero);
	} else {
		b->stack[0].dir = dir;
		b->stack[0].rel = strdup("");
		b->depth = 1;
		static const struct docker_stream_cbs cbs = {
			.head = build_head_cb,
			.data = build_data_cb,
			.drain = build_drain_cb,
			.done = build_done_cb,
		};
		b->step = docker_call_stream(d, "POST", (const char *)evbuffer_pullup(path, -1),
					     "application/x-tar", -1, &cbs, b);
		if (!b->step)
			goto fail;
	}
	json_object_put(opts->buildargs);
	json_object_put(opts->labels);
	evbuffer_free(path);
	return b->handle;
fail:
	json_object_put(opts->buildargs);
	json_object_put(opts->labels);
	if (path)
		evbuffer_free(path);
	if (b) {
		if (b->handle)
			docker_op_free(b->handle);
		build_free(b);
	}
	return NULL;
}

static void add_json_param(struct evbuffer *p, const char *key, struct json_object *obj)
{
	if (!obj)
		return;
	evbuffer_add_printf(p, "&%s=", key);
	docker_url_encode(p, json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN));
}

static void build_free(struct build_op *b)
{
	for (int i = 0; i < b->depth; i++) {
		closedir(b->stack[i].dir);
		free(b->stack[i].rel);
	}
	if (b->fd >= 0)
		close(b->fd);
	if (b->defer)
		event_free(b->defer);
	if (b->out)
		evbuffer_free(b->out);
	if (b->line)
		evbuffer_free(b->line);
	if (b->log)
		evbuffer_free(b->log);
	free(b->root);
	free(b->err);
	free(b);
}

static void build_cancel(void *ctx)
{
	struct build_op *b = ctx;
	if (b->step)
		docker_call_cancel(b->step);
	build_free(b);
}

static void build_finish(struct build_op *b, const char *err)
{
	if (b->step) {
		docker_call_cancel(b->step);
		b->step = NULL;
	}
	evbuffer_add(b->log, "", 1);
	b->cb(err, (const char *)evbuffer_pullup(b->log, -1), b->arg);
	docker_op_free(b->handle);
	build_free(b);
}

static void build_defer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct build_op *b = arg;
	char *err = b->err;
	b->err = NULL;
	build_finish(b, err);
	free(err);
}

/* Writes the next entry's header (and opens its file); 0 at the end of the tree. */
static int build_next_entry(struct build_op *b)
{
	while (b->depth > 0) {
		struct build_dir *top = &b->stack[b->depth - 1];
		struct dirent *e = readdir(top->dir);
		if (!e) {
			closedir(top->dir);
			free(top->rel);
			b->depth--;
			continue;
		}
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char rel[PATH_MAX], full[2 * PATH_MAX];
		struct stat st;
		if ((size_t)snprintf(rel, sizeof(rel), "%s%s", top->rel, e->d_name) >= sizeof(rel)) {
			errno = ENAMETOOLONG;
			build_fail_context(b, "path", e->d_name);
			return -1;
		}
		snprintf(full, sizeof(full), "%s/%s", b->root, rel);
		if (lstat(full, &st) != 0) {
			build_fail_context(b, "stat", rel);
			return -1;
		}
		struct tar_entry te = { .name = rel, .mode = st.st_mode, .mtime = st.st_mtime };
		char link[PATH_MAX];
		if (S_ISDIR(st.st_mode)) {
			if (b->depth == BUILD_MAX_DEPTH) {
				build_fail_context(b, "too deep", rel);
				return -1;
			}
			DIR *sub = opendir(full);
			if (!sub) {
				build_fail_context(b, "opendir", rel);
				return -1;
			}
			size_t n = strlen(rel);
			b->stack[b->depth].dir = sub;
			b->stack[b->depth].rel = malloc(n + 2);
			memcpy(b->stack[b->depth].rel, rel, n);
			memcpy(b->stack[b->depth].rel + n, "/", 2);
			te.name = b->stack[b->depth].rel;
			b->depth++;
			te.type = TAR_DIR;
		} else if (S_ISLNK(st.st_mode)) {
			ssize_t n = readlink(full, link, sizeof(link) - 1);
			if (n < 0) {
				build_fail_context(b, "readlink", rel);
				return -1;
			}
			link[n] = '\0';
			te.type = TAR_SYMLINK;
			te.linkname = link;
		} else if (S_ISREG(st.st_mode)) {
			b->fd = open(full, O_RDONLY | O_CLOEXEC);
			if (b->fd < 0) {
				build_fail_context(b, "open", rel);
				return -1;
			}
			te.type = TAR_FILE;
			te.size = (uint64_t)st.st_size;
			b->left = b->size = (uint64_t)st.st_size;
		} else {
			continue; /* sockets, fifos, devices have no place in an image */
		}
		if (tar_write_header(b->out, &te) < 0) {
			build_fail_context(b, "tar header", rel);
			return -1;
		}
		return 1;
	}
	return 0;
}

/* One chunk of the open file; a file that shrank is padded with zeros so the
 * archive stays consistent with the size already announced. */
static int build_file_chunk(struct build_op *b)
{
	char buf[BUILD_READ_CHUNK];
	size_t want = b->left < sizeof(buf) ? (size_t)b->left : sizeof(buf);
	ssize_t n = read(b->fd, buf, want);
	if (n < 0) {
		build_fail_context(b, "read", "a context file");
		return -1;
	}
	if (n == 0) {
		memset(buf, 0, want);
		n = (ssize_t)want;
	}
	evbuffer_add(b->out, buf, (size_t)n);
	b->left -= (uint64_t)n;
	if (b->left == 0) {
		tar_write_padding(b->out, b->size);
		close(b->fd);
		b->fd = -1;
	}
	return 0;
}

static void build_fill(struct build_op *b)
{
	while (b->step && !b->tar_done && !b->answered &&
	       docker_call_pending(b->step) < BUILD_HIGH_WATERMARK) {
		int rc = b->fd >= 0 ? build_file_chunk(b) : build_next_entry(b);
		if (rc < 0)
			return;
		if (rc == 0 && b->fd < 0 && b->depth == 0) {
			tar_write_end(b->out);
			b->tar_done = true;
		}
		docker_call_write(b->step, b->out);
		if (b->tar_done)
			docker_call_finish(b->step);
	}
}

static void build_fail_context(struct build_op *b, const char *what, const char *path)
{
	char msg[PATH_MAX + 64];
	snprintf(msg, sizeof(msg), "build context: %s %s: %s", what, path, strerror(errno));
	build_finish(b, msg);
}

static void build_drain_cb(struct docker_call *call, void *arg)
{
	build_fill(arg);
}

static int build_head_cb(struct docker_call *call, int status, void *arg)
{
	struct build_op *b = arg;
	b->status = status;
	b->answered = true;
	return 0;
}

static void build_data_cb(struct docker_call *call, struct evbuffer *body, void *arg)
{
	struct build_op *b = arg;
	evbuffer_add_buffer(b->line, body);
	char *line;
	size_t len;
	while ((line = evbuffer_readln(b->line, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		build_line(b, line, len);
		free(line);
	}
}

static void build_line(struct build_op *b, const char *line, size_t len)
{
	if (len == 0)
		return;
	struct json_object *j = json_tokener_parse(line), *v;
	if (!j) {
		build_log(b, line, len);
		build_log(b, "\n", 1);
		return;
	}
	if (json_object_object_get_ex(j, "stream", &v) && json_object_is_type(v, json_type_string)) {
		build_log(b, json_object_get_string(v), (size_t)json_object_get_string_len(v));
	} else if (json_object_object_get_ex(j, "status", &v) && json_object_is_type(v, json_type_string)) {
		build_log(b, json_object_get_string(v), (size_t)json_object_get_string_len(v));
		build_log(b, "\n", 1);
	}
	if (json_object_object_get_ex(j, "error", &v) ||
	    (b->status >= 400 && json_object_object_get_ex(j, "message", &v))) {
		const char *s = json_object_get_string(v);
		if (!b->err)
			b->err = strdup(s ? s : "build failed");
		build_log(b, s ? s : "", s ? strlen(s) : 0);
		build_log(b, "\n", 1);
	}
	json_object_put(j);
}

static void build_log(struct build_op *b, const char *s, size_t len)
{
	evbuffer_add(b->log, s, len);
	size_t have = evbuffer_get_length(b->log);
	if (have > BUILD_LOG_MAX)
		evbuffer_drain(b->log, have - BUILD_LOG_MAX);
}

static void build_done_cb(struct docker_call *call, const char *err, void *arg)
{
	struct build_op *b = arg;
	b->step = NULL;
	size_t rest = evbuffer_get_length(b->line);
	if (rest) {
		char *tail = (char *)evbuffer_pullup(b->line, -1);
		char *copy = strndup(tail, rest);
		build_line(b, copy, rest);
		free(copy);
	}
	char status_err[32];
	const char *e = err;
	if (!e)
		e = b->err;
	if (!e && b->status != 200) {
		snprintf(status_err, sizeof(status_err), "build: HTTP %d", b->status);
		e = status_err;
	}
	char *keep = e ? strdup(e) : NULL;
	build_finish(b, keep);
	free(keep);
}
