/* Content-addressed tags for templates built from a Dockerfile: a hash over
 * everything the build reads, so a changed file means a new image and an
 * unchanged one reuses the image already built. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/sha256.h"
#include "sandbox/template.h"

#define CONTEXT_MAX_ENTRIES 20000 /* build context files hashed at most */
#define CONTEXT_MAX_DEPTH   32

struct path_list {
	char **v;
	size_t n, cap;
};

static int build_error(char *err, size_t errcap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int inside(const char *root, const char *path);
static int walk_context(const char *abs, const char *rel, int depth, struct path_list *out);
static int hash_file(struct sha256 *h, int fd, uint64_t size);
static void hash_str(struct sha256 *h, const char *s);
static int cmp_str(const void *a, const void *b);

static int build_error(char *err, size_t errcap, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errcap, fmt, ap);
	va_end(ap);
	return -1;
}

/* 1 when the resolved path is root or below it (symlinks followed). */
static int inside(const char *root, const char *path)
{
	size_t n = strlen(root);
	if (strcmp(root, "/") == 0)
		return 1;
	return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collects every non-directory entry below abs (not following symlinks). */
static int walk_context(const char *abs, const char *rel, int depth, struct path_list *out)
{
	if (depth > CONTEXT_MAX_DEPTH)
		return -1;
	DIR *d = opendir(abs);
	if (!d)
		return -1;
	struct dirent *e;
	int rc = 0;
	while (rc == 0 && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char *sub_abs = NULL, *sub_rel = NULL;
		struct stat st;
		if (asprintf(&sub_abs, "%s/%s", abs, e->d_name) < 0) {
			rc = -1;
			break;
		}
		if (asprintf(&sub_rel, "%s%s%s", rel, *rel ? "/" : "", e->d_name) < 0) {
			free(sub_abs);
			rc = -1;
			break;
		}
		if (lstat(sub_abs, &st) != 0) {
			rc = -1;
		} else if (S_ISDIR(st.st_mode)) {
			rc = walk_context(sub_abs, sub_rel, depth + 1, out);
		} else if (out->n >= CONTEXT_MAX_ENTRIES) {
			rc = -1;
		} else {
			if (out->n == out->cap) {
				size_t cap = out->cap ? out->cap * 2 : 64;
				char **nv = realloc(out->v, cap * sizeof(*nv));
				if (!nv) {
					rc = -1;
					goto next;
				}
				out->v = nv;
				out->cap = cap;
			}
			out->v[out->n++] = sub_rel;
			sub_rel = NULL;
		}
	next:
		free(sub_abs);
		free(sub_rel);
	}
	closedir(d);
	return rc;
}

static void hash_str(struct sha256 *h, const char *s)
{
	sha256_update(h, s, strlen(s) + 1); /* the NUL separates fields */
}

static int hash_file(struct sha256 *h, int fd, uint64_t size)
{
	char buf[65536];
	uint64_t done = 0;
	while (done < size) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1; /* changed under us */
		sha256_update(h, buf, (size_t)n);
		done += (uint64_t)n;
	}
	return done == size ? 0 : -1;
}

/* The tag changes whenever anything the build reads changes. Hashed, each
 * field NUL-terminated: "sandbar-template-v1", the Dockerfile's size and
 * bytes, then per context entry in strcmp order of its relative path: path,
 * octal mode, size, bytes (a symlink: its target text instead), then the args
 * as JSON with sorted keys, then the target. */
int template_build_tag(struct template *t, char *err, size_t errcap)
{
	struct path_list list = { 0 };
	struct sha256 h;
	struct json_object *canon = NULL;
	char rdir[PATH_MAX], rctx[PATH_MAX], rdf[PATH_MAX], num[64], path[PATH_MAX * 2];
	int rc = -1, fd = -1;
	unsigned char digest[32];
	char hex[65];

	free(t->build_tag); /* callable again after the files changed */
	t->build_tag = NULL;
	if (!t->build_dockerfile || !t->build_context)
		return build_error(err, errcap, "not a build template");
	if (!realpath(t->dir, rdir))
		return build_error(err, errcap, "template folder '%s': %s", t->dir, strerror(errno));
	if (!realpath(t->build_context, rctx) || !inside(rdir, rctx))
		return build_error(err, errcap, "build.context: must be a folder inside the template folder");
	snprintf(path, sizeof(path), "%s/%s", rctx, t->build_dockerfile);
	if (!realpath(path, rdf) || !inside(rctx, rdf))
		return build_error(err, errcap,
				   "build.dockerfile: '%s' must be a file inside the build context",
				   t->build_dockerfile);

	sha256_init(&h);
	hash_str(&h, "sandbar-template-v1");
	struct stat st;
	fd = open(rdf, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		build_error(err, errcap, "build.dockerfile: cannot read '%s'", t->build_dockerfile);
		goto out;
	}
	snprintf(num, sizeof(num), "%llu", (unsigned long long)st.st_size);
	hash_str(&h, num);
	if (hash_file(&h, fd, (uint64_t)st.st_size) != 0) {
		build_error(err, errcap, "build.dockerfile: read error");
		goto out;
	}
	close(fd);
	fd = -1;

	if (walk_context(rctx, "", 0, &list) != 0) {
		build_error(err, errcap,
			    "build.context: cannot walk '%s' (unreadable, too deep or over %d files)", rctx,
			    CONTEXT_MAX_ENTRIES);
		goto out;
	}
	qsort(list.v, list.n, sizeof(*list.v), cmp_str);
	for (size_t i = 0; i < list.n; i++) {
		snprintf(path, sizeof(path), "%s/%s", rctx, list.v[i]);
		if (lstat(path, &st) != 0)
			goto read_error;
		hash_str(&h, list.v[i]);
		snprintf(num, sizeof(num), "%o", (unsigned)st.st_mode);
		hash_str(&h, num);
		snprintf(num, sizeof(num), "%llu", (unsigned long long)st.st_size);
		hash_str(&h, num);
		if (S_ISLNK(st.st_mode)) {
			char target[PATH_MAX];
			ssize_t n = readlink(path, target, sizeof(target) - 1);
			if (n < 0)
				goto read_error;
			target[n] = '\0';
			hash_str(&h, target);
		} else if (S_ISREG(st.st_mode)) {
			fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
			if (fd < 0 || hash_file(&h, fd, (uint64_t)st.st_size) != 0)
				goto read_error;
			close(fd);
			fd = -1;
		}
	}

	canon = json_object_new_object();
	if (!canon) {
		build_error(err, errcap, "out of memory");
		goto out;
	}
	if (t->build_args) {
		/* json-c keeps insertion order, so inserting sorted makes it canonical */
		size_t n = 0, cap = (size_t)json_object_object_length(t->build_args);
		const char **keys = calloc(cap + 1, sizeof(*keys));
		if (!keys) {
			build_error(err, errcap, "out of memory");
			goto out;
		}
		json_object_object_foreach(t->build_args, k, v)
		{
			(void)v;
			keys[n++] = k;
		}
		qsort(keys, n, sizeof(*keys), cmp_str);
		for (size_t i = 0; i < n; i++)
			json_object_object_add(
				canon, keys[i],
				json_object_get(json_object_object_get(t->build_args, keys[i])));
		free(keys);
	}
	hash_str(&h, json_object_to_json_string_ext(canon,
						    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	hash_str(&h, t->build_target ? t->build_target : "");
	sha256_final(&h, digest);
	sha256_hex(digest, hex);

	/* Docker repository names are lower case, separators only between
	 * alphanumerics: fold the template name into that shape. */
	char repo[80];
	size_t r = 0;
	for (const char *p = t->name; *p && r < sizeof(repo) - 1; p++) {
		char ch = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p;
		bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
		if (alnum)
			repo[r++] = ch;
		else if (r > 0 && repo[r - 1] != '-')
			repo[r++] = '-';
	}
	while (r > 0 && repo[r - 1] == '-')
		r--;
	repo[r] = '\0';
	if (asprintf(&t->build_tag, "sandbar/tpl-%s:%.16s", r ? repo : "x", hex) < 0) {
		t->build_tag = NULL;
		build_error(err, errcap, "out of memory");
		goto out;
	}
	rc = 0;
	goto out;
read_error:
	build_error(err, errcap, "build.context: cannot read '%s'", path);
out:
	if (fd >= 0)
		close(fd);
	json_object_put(canon);
	for (size_t i = 0; i < list.n; i++)
		free(list.v[i]);
	free(list.v);
	return rc;
}
