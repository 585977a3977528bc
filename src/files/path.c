/* Path rules of the file API: one normaliser every route goes through, so a
 * traversal is refused in exactly one place. */
#include "files/path.h"

#include <stdio.h>
#include <string.h>

#include "core/utf8.h"

static bool is_dot_name(const char *s, size_t n);
static bool encoded_escape(const char *s, size_t n);
static int hexval(char c);
static int walk_depth(const char *s, int depth);

static bool is_dot_name(const char *s, size_t n)
{
	return (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A name that a second percent-decoding (a proxy, a shell script) would turn
 * into "..", or into something holding '/' or NUL: refused, not guessed at. */
static bool encoded_escape(const char *s, size_t n)
{
	char dec[FILES_NAME_MAX + 1];
	size_t k = 0;
	bool any = false;
	for (size_t i = 0; i < n && k < sizeof(dec); i++) {
		int hi, lo;
		if (s[i] == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 &&
		    (lo = hexval(s[i + 2])) >= 0) {
			char c = (char)(hi << 4 | lo);
			if (c == '/' || c == '\0' || c == '\\')
				return true;
			dec[k++] = c;
			i += 2;
			any = true;
		} else {
			dec[k++] = s[i];
		}
	}
	return any && is_dot_name(dec, k);
}

int files_path_normalize(const char *in, size_t len, char *out, const char **why)
{
	*why = NULL;
	if (len == 0) {
		*why = "path is empty";
		return -1;
	}
	if (memchr(in, '\0', len)) {
		*why = "path holds a NUL byte";
		return -1;
	}
	if (in[0] != '/') {
		*why = "path must be absolute";
		return -1;
	}
	if (len > FILES_PATH_MAX) {
		*why = "path is longer than 4096 bytes";
		return -1;
	}
	if (utf8_valid_prefix(in, len) != len) {
		*why = "path is not valid UTF-8";
		return -1;
	}
	size_t o = 0;
	size_t i = 0;
	while (i < len) {
		while (i < len && in[i] == '/')
			i++;
		size_t start = i;
		while (i < len && in[i] != '/')
			i++;
		size_t n = i - start;
		if (n == 0 || (n == 1 && in[start] == '.'))
			continue;
		if (n == 2 && in[start] == '.' && in[start + 1] == '.') {
			*why = "path may not contain '..'";
			return -1;
		}
		if (n > FILES_NAME_MAX) {
			*why = "a name in the path is longer than 255 bytes";
			return -1;
		}
		if (encoded_escape(in + start, n)) {
			*why = "path holds an encoded '..', '/' or NUL";
			return -1;
		}
		out[o++] = '/';
		memcpy(out + o, in + start, n);
		o += n;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	return 0;
}

const char *files_name_check(const char *name, size_t len)
{
	if (len == 0)
		return "file name is empty";
	if (memchr(name, '\0', len))
		return "file name holds a NUL byte";
	if (memchr(name, '/', len))
		return "file name holds '/'";
	if (is_dot_name(name, len))
		return "file name may not be '.' or '..'";
	if (len > FILES_NAME_MAX)
		return "file name is longer than 255 bytes";
	if (utf8_valid_prefix(name, len) != len)
		return "file name is not valid UTF-8";
	if (encoded_escape(name, len))
		return "file name holds an encoded '..', '/' or NUL";
	return NULL;
}

const char *files_path_base(const char *path)
{
	const char *s = strrchr(path, '/');
	return s && s[1] ? s + 1 : path;
}

int files_path_join(const char *dir, const char *name, char *out)
{
	bool root = strcmp(dir, "/") == 0;
	int n = snprintf(out, FILES_PATH_MAX + 1, "%s%s%s", dir, root ? "" : "/", name);
	return n < 0 || n > FILES_PATH_MAX ? -1 : 0;
}

int files_path_resolve(const char *dir, const char *target, char *out)
{
	size_t o = 0;
	char tmp[2 * FILES_PATH_MAX + 2];
	int n = snprintf(tmp, sizeof(tmp), "%s/%s", target[0] == '/' ? "" : dir, target);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -1;
	const char *p = tmp;
	while (*p) {
		while (*p == '/')
			p++;
		const char *s = p;
		while (*p && *p != '/')
			p++;
		size_t len = (size_t)(p - s);
		if (len == 0 || (len == 1 && s[0] == '.'))
			continue;
		if (len == 2 && s[0] == '.' && s[1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
			continue;
		}
		if (o + 1 + len > FILES_PATH_MAX)
			return -1;
		out[o++] = '/';
		memcpy(out + o, s, len);
		o += len;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	return 0;
}

/* Walks components of s from depth; -1 when a ".." climbs above 0. */
static int walk_depth(const char *s, int depth)
{
	while (*s) {
		while (*s == '/')
			s++;
		const char *c = s;
		while (*s && *s != '/')
			s++;
		size_t len = (size_t)(s - c);
		if (len == 0 || (len == 1 && c[0] == '.'))
			continue;
		if (len == 2 && c[0] == '.' && c[1] == '.') {
			if (--depth < 0)
				return -1;
		} else {
			depth++;
		}
	}
	return depth;
}

bool files_tar_name_escapes(const char *name)
{
	if (name[0] == '/')
		return true;
	for (const char *p = name; *p;) {
		const char *c = p;
		while (*p && *p != '/')
			p++;
		if (p - c == 2 && c[0] == '.' && c[1] == '.')
			return true;
		while (*p == '/')
			p++;
	}
	return false;
}

bool files_tar_link_escapes(const char *name, const char *target, bool is_symlink)
{
	if (!target[0] || target[0] == '/')
		return true;
	if (!is_symlink)
		return files_tar_name_escapes(target);
	/* a symlink resolves from its own directory: the name's depth minus one */
	int depth = walk_depth(name, 0);
	if (depth < 1)
		return true;
	return walk_depth(target, depth - 1) < 0;
}
