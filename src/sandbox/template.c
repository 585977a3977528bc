/* Templates: devcontainer.json parsed and validated into struct template at
 * start-up, with anything that would weaken isolation refused unless the
 * operator's policy allows it, and a content-addressed tag for built images. */
#include "core/strv.h"
#include "sandbox/template.h"

#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/units.h"
#include "sandbox/jsonc.h"

#define TEMPLATE_MAX_FILE (1u << 20) /* devcontainer.json larger than this is refused */

struct template_set {
	struct template **items; /* sorted by name */
	size_t n;
};

struct parse_ctx {
	struct template *t;
	const struct template_policy *policy;
	char *err;
	size_t errcap;
};

static int parse_error(struct parse_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int get_str(struct parse_ctx *c, struct json_object *v, const char *what, bool allow_empty,
		   const char **out);
static int opt_bool(struct parse_ctx *c, const char *key, bool *out);
static int opt_str_field(struct parse_ctx *c, struct json_object *obj, const char *key, char **out);
static int strv_push(char ***v, size_t *n, char *s);
static int parse_source(struct parse_ctx *c);
static int parse_build(struct parse_ctx *c, struct json_object *build, bool legacy);
static int normalise_rel(const char *rel, char *out, size_t cap);
static int parse_env(struct parse_ctx *c, const char *key, char ***out);
static int add_port(struct parse_ctx *c, int port);
static int port_value(struct parse_ctx *c, struct json_object *v, const char *what);
static int parse_ports(struct parse_ctx *c);
static int parse_workspace(struct parse_ctx *c);
static bool abs_path_ok(const char *p);
static bool volume_name_ok(const char *s);
static int mount_finish(struct parse_ctx *c, struct template_mount *m, const char *type, size_t i);
static int parse_mount_string(struct parse_ctx *c, const char *s, size_t i);
static int parse_mount_object(struct parse_ctx *c, struct json_object *o, size_t i);
static int parse_mounts(struct parse_ctx *c);
static int parse_command(struct parse_ctx *c, const char *key, struct json_object **out);
static int parse_host_requirements(struct parse_ctx *c);
static int parse_security(struct parse_ctx *c);
static int parse_customizations(struct parse_ctx *c);
static char *read_file(const char *path, size_t *len);

static int parse_error(struct parse_ctx *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, c->errcap, fmt, ap);
	va_end(ap);
	return -1;
}

/* A string without embedded NULs (json-c allows "\u0000"; C strings do not). */
static int get_str(struct parse_ctx *c, struct json_object *v, const char *what, bool allow_empty,
		   const char **out)
{
	if (!json_object_is_type(v, json_type_string))
		return parse_error(c, "%s: expected a string", what);
	const char *s = json_object_get_string(v);
	size_t len = (size_t)json_object_get_string_len(v);
	if (strlen(s) != len)
		return parse_error(c, "%s: NUL character in string", what);
	if (!allow_empty && len == 0)
		return parse_error(c, "%s: must not be empty", what);
	*out = s;
	return 0;
}

static int opt_bool(struct parse_ctx *c, const char *key, bool *out)
{
	struct json_object *v;
	if (!json_object_object_get_ex(c->t->config, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return parse_error(c, "%s: expected true or false", key);
	*out = json_object_get_boolean(v);
	return 0;
}

static int opt_str_field(struct parse_ctx *c, struct json_object *obj, const char *key, char **out)
{
	struct json_object *v;
	const char *s;
	if (!json_object_object_get_ex(obj, key, &v))
		return 0;
	if (get_str(c, v, key, false, &s) != 0)
		return -1;
	if (!(*out = strdup(s)))
		return parse_error(c, "out of memory");
	return 0;
}

static int strv_push(char ***v, size_t *n, char *s)
{
	if (!s)
		return -1;
	char **nv = realloc(*v, (*n + 2) * sizeof(**v));
	if (!nv) {
		free(s);
		return -1;
	}
	nv[(*n)++] = s;
	nv[*n] = NULL;
	*v = nv;
	return 0;
}

/* Exactly one of `image`, `build` or the legacy top-level `dockerFile`. */
static int parse_source(struct parse_ctx *c)
{
	struct json_object *root = c->t->config, *image = NULL, *build = NULL, *legacy = NULL, *v;
	json_object_object_get_ex(root, "image", &image);
	json_object_object_get_ex(root, "build", &build);
	if (json_object_object_get_ex(root, "dockerFile", &v) ||
	    json_object_object_get_ex(root, "dockerfile", &v))
		legacy = v;
	int count = (image != NULL) + (build != NULL) + (legacy != NULL);
	if (count != 1)
		return parse_error(c, "exactly one of image or build (build.dockerfile) is required");
	if (image) {
		const char *s;
		if (get_str(c, image, "image", false, &s) != 0)
			return -1;
		if (!(c->t->image = strdup(s)))
			return parse_error(c, "out of memory");
		return 0;
	}
	if (build && !json_object_is_type(build, json_type_object))
		return parse_error(c, "build: expected an object");
	return parse_build(c, build ? build : root, build == NULL);
}

/* Lexically normalises a relative path; -1 if it is absolute or climbs out
 * with "..". The result is "." for the folder itself. */
static int normalise_rel(const char *rel, char *out, size_t cap)
{
	if (rel[0] == '/' || strlen(rel) >= cap)
		return -1;
	size_t len = 0;
	const char *p = rel;
	while (*p) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 0 || (n == 1 && p[0] == '.')) {
			/* empty or "." component */
		} else if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (len == 0)
				return -1;
			while (len > 0 && out[len - 1] != '/')
				len--;
			if (len > 0)
				len--; /* the slash */
		} else {
			if (len > 0)
				out[len++] = '/';
			memcpy(out + len, p, n);
			len += n;
		}
		p += n;
		if (*p == '/')
			p++;
	}
	if (len == 0)
		out[len++] = '.';
	out[len] = '\0';
	return 0;
}

static int parse_build(struct parse_ctx *c, struct json_object *build, bool legacy)
{
	struct template *t = c->t;
	struct json_object *v;
	const char *dockerfile = NULL, *context = ".";
	char dnorm[PATH_MAX], cnorm[PATH_MAX];

	if (legacy) {
		if (!json_object_object_get_ex(build, "dockerFile", &v))
			json_object_object_get_ex(build, "dockerfile", &v);
	} else if (!json_object_object_get_ex(build, "dockerfile", &v) &&
		   !json_object_object_get_ex(build, "dockerFile", &v)) {
		return parse_error(c, "build.dockerfile is required");
	}
	if (get_str(c, v, "build.dockerfile", false, &dockerfile) != 0)
		return -1;
	if (json_object_object_get_ex(build, "context", &v) &&
	    get_str(c, v, "build.context", false, &context) != 0)
		return -1;
	/* Both are relative to the template folder, as in the devcontainer spec. */
	if (normalise_rel(context, cnorm, sizeof(cnorm)) != 0)
		return parse_error(
			c, "build.context: '%s' must be a relative path inside the template folder", context);
	if (normalise_rel(dockerfile, dnorm, sizeof(dnorm)) != 0 || strcmp(dnorm, ".") == 0)
		return parse_error(
			c, "build.dockerfile: '%s' must be a relative path inside the template folder",
			dockerfile);
	/* The Engine API wants the Dockerfile as a path inside the context. */
	const char *inctx = dnorm;
	if (strcmp(cnorm, ".") != 0) {
		size_t cl = strlen(cnorm);
		if (strncmp(dnorm, cnorm, cl) != 0 || dnorm[cl] != '/')
			return parse_error(c, "build.dockerfile: '%s' must be inside build.context '%s'",
					   dockerfile, context);
		inctx = dnorm + cl + 1;
	}
	if (!(t->build_dockerfile = strdup(inctx)))
		return parse_error(c, "out of memory");
	if (strcmp(cnorm, ".") == 0)
		t->build_context = strdup(t->dir);
	else if (asprintf(&t->build_context, "%s/%s", t->dir, cnorm) < 0)
		t->build_context = NULL;
	if (!t->build_context)
		return parse_error(c, "out of memory");

	if (!legacy && json_object_object_get_ex(build, "args", &v)) {
		if (!json_object_is_type(v, json_type_object))
			return parse_error(c, "build.args: expected an object of strings");
		json_object_object_foreach(v, key, val)
		{
			const char *s;
			if (key[0] == '\0')
				return parse_error(c, "build.args: empty name");
			if (get_str(c, val, "build.args", true, &s) != 0)
				return -1;
		}
		t->build_args = json_object_get(v);
	}
	if (!legacy && opt_str_field(c, build, "target", &t->build_target) != 0)
		return -1;
	return 0;
}

/* containerEnv / remoteEnv: an object of strings, into "K=V" strings. */
static int parse_env(struct parse_ctx *c, const char *key, char ***out)
{
	struct json_object *obj;
	size_t n = 0;
	if (!json_object_object_get_ex(c->t->config, key, &obj))
		return 0;
	if (!json_object_is_type(obj, json_type_object))
		return parse_error(c, "%s: expected an object of strings", key);
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return parse_error(c, "out of memory");
	json_object_object_foreach(obj, name, val)
	{
		const char *s;
		char *kv;
		if (name[0] == '\0' || strchr(name, '='))
			return parse_error(c, "%s: bad variable name '%s'", key, name);
		if (!json_object_is_type(val, json_type_string))
			return parse_error(c, "%s.%s: expected a string", key, name);
		if (get_str(c, val, key, true, &s) != 0)
			return -1;
		if (asprintf(&kv, "%s=%s", name, s) < 0 || strv_push(out, &n, kv) != 0)
			return parse_error(c, "out of memory");
	}
	return 0;
}

static int add_port(struct parse_ctx *c, int port)
{
	struct template *t = c->t;
	for (size_t i = 0; i < t->nports; i++)
		if (t->ports[i] == port)
			return 0;
	int *np = realloc(t->ports, (t->nports + 1) * sizeof(*np));
	if (!np)
		return parse_error(c, "out of memory");
	np[t->nports++] = port;
	t->ports = np;
	return 0;
}

/* A number, or a string whose part after the last ':' is the port
 * ("db:5432" in forwardPorts, "8000:8080" host:container in appPort). */
static int port_value(struct parse_ctx *c, struct json_object *v, const char *what)
{
	int64_t port = -1;
	if (json_object_is_type(v, json_type_int)) {
		port = json_object_get_int64(v);
	} else if (json_object_is_type(v, json_type_string)) {
		const char *s = json_object_get_string(v), *colon = strrchr(s, ':');
		const char *p = colon ? colon + 1 : s;
		size_t n = strlen(p);
		if (n >= 1 && n <= 5 && strspn(p, "0123456789") == n &&
		    (size_t)json_object_get_string_len(v) == strlen(s))
			port = strtol(p, NULL, 10);
	}
	if (port < 1 || port > 65535)
		return parse_error(c, "%s: '%s' is not a port number (1-65535)", what,
				   json_object_to_json_string(v));
	return add_port(c, (int)port);
}

static int parse_ports(struct parse_ctx *c)
{
	struct json_object *v;
	if (json_object_object_get_ex(c->t->config, "forwardPorts", &v)) {
		if (!json_object_is_type(v, json_type_array))
			return parse_error(c, "forwardPorts: expected an array");
		for (size_t i = 0; i < json_object_array_length(v); i++)
			if (port_value(c, json_object_array_get_idx(v, i), "forwardPorts") != 0)
				return -1;
	}
	if (json_object_object_get_ex(c->t->config, "appPort", &v)) {
		if (!json_object_is_type(v, json_type_array))
			return port_value(c, v, "appPort");
		for (size_t i = 0; i < json_object_array_length(v); i++)
			if (port_value(c, json_object_array_get_idx(v, i), "appPort") != 0)
				return -1;
	}
	return 0;
}

/* Absolute, no "..", no devcontainer ${variables} (we do not substitute). */
static bool abs_path_ok(const char *p)
{
	if (p[0] != '/' || strstr(p, "${"))
		return false;
	for (const char *s = p; (s = strstr(s, "..")) != NULL; s += 2)
		if (s[-1] == '/' && (s[2] == '/' || s[2] == '\0'))
			return false;
	return true;
}

static int parse_workspace(struct parse_ctx *c)
{
	struct json_object *v;
	const char *s = "/workspace";
	if (json_object_object_get_ex(c->t->config, "workspaceFolder", &v)) {
		if (get_str(c, v, "workspaceFolder", false, &s) != 0)
			return -1;
		if (!abs_path_ok(s))
			return parse_error(
				c, "workspaceFolder: '%s' must be an absolute path without '..' or ${...}",
				s);
	}
	if (!(c->t->workspace_folder = strdup(s)))
		return parse_error(c, "out of memory");
	return 0;
}

/* Docker's rule for volume names: [a-zA-Z0-9][a-zA-Z0-9_.-]+ */
static bool volume_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (n < 2 || n > 255 ||
	    !strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", s[0]))
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

/* Validates a mount whose source/target are already set (owned by m). */
static int mount_finish(struct parse_ctx *c, struct template_mount *m, const char *type, size_t i)
{
	if (!type || strcmp(type, "volume") == 0) {
		m->type = MOUNT_VOLUME;
		if (!m->source || !volume_name_ok(m->source))
			return parse_error(c, "mounts[%zu]: a volume needs a source name of [A-Za-z0-9_.-]",
					   i);
	} else if (strcmp(type, "tmpfs") == 0) {
		m->type = MOUNT_TMPFS;
		/* Docker refuses a source on tmpfs; templates written as
		 * "source=x,target=/y,type=tmpfs" mean nothing by it, so drop it. */
		free(m->source);
		m->source = NULL;
	} else if (strcmp(type, "bind") == 0) {
		m->type = MOUNT_BIND;
		if (!c->policy->allow_bind_mounts)
			return parse_error(c,
					   "bind mounts are not allowed (set SANDBAR_ALLOW_BIND_MOUNTS=1)");
		if (!m->source || !abs_path_ok(m->source))
			return parse_error(c, "mounts[%zu]: a bind mount needs an absolute source path", i);
	} else {
		return parse_error(c, "mounts[%zu]: type '%s' is not supported (volume, tmpfs, bind)", i,
				   type);
	}
	if (!m->target || !abs_path_ok(m->target) || strcmp(m->target, "/") == 0)
		return parse_error(c, "mounts[%zu]: target must be an absolute path other than /", i);
	return 0;
}

/* "type=volume,source=x,target=/y[,readonly]" as docker run --mount takes it. */
static int parse_mount_string(struct parse_ctx *c, const char *s, size_t i)
{
	struct template_mount *m = &c->t->mounts[i];
	char *copy = strdup(s), *save = NULL, *type = NULL;
	int rc = -1;
	if (!copy)
		return parse_error(c, "out of memory");
	for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		const char *val = eq ? eq + 1 : NULL;
		if (eq)
			*eq = '\0';
		char **dst = NULL;
		if (strcmp(kv, "type") == 0)
			dst = &type;
		else if (strcmp(kv, "source") == 0 || strcmp(kv, "src") == 0)
			dst = &m->source;
		else if (strcmp(kv, "target") == 0 || strcmp(kv, "destination") == 0 ||
			 strcmp(kv, "dst") == 0)
			dst = &m->target;
		if (dst) {
			if (!val || !*val || *dst) {
				parse_error(c, "mounts[%zu]: '%s' needs one non-empty value", i, kv);
				goto out;
			}
			if (!(*dst = strdup(val))) {
				parse_error(c, "out of memory");
				goto out;
			}
		} else if (strcmp(kv, "readonly") == 0 || strcmp(kv, "ro") == 0) {
			if (val && strcmp(val, "true") != 0 && strcmp(val, "1") != 0 &&
			    strcmp(val, "false") != 0 && strcmp(val, "0") != 0) {
				parse_error(c, "mounts[%zu]: bad readonly value '%s'", i, val);
				goto out;
			}
			m->readonly = !val || strcmp(val, "true") == 0 || strcmp(val, "1") == 0;
		} else if (strcmp(kv, "consistency") != 0) {
			/* consistency is a macOS hint; anything else we would silently drop */
			parse_error(c, "mounts[%zu]: option '%s' is not supported", i, kv);
			goto out;
		}
	}
	rc = mount_finish(c, m, type, i);
out:
	free(type);
	free(copy);
	return rc;
}

static int parse_mount_object(struct parse_ctx *c, struct json_object *o, size_t i)
{
	struct template_mount *m = &c->t->mounts[i];
	struct json_object *v;
	const char *type = NULL;
	if (json_object_object_get_ex(o, "type", &v) && get_str(c, v, "mounts[].type", false, &type) != 0)
		return -1;
	if (opt_str_field(c, o, "source", &m->source) != 0 || opt_str_field(c, o, "target", &m->target) != 0)
		return -1;
	if (json_object_object_get_ex(o, "readonly", &v)) {
		if (!json_object_is_type(v, json_type_boolean))
			return parse_error(c, "mounts[%zu].readonly: expected true or false", i);
		m->readonly = json_object_get_boolean(v);
	}
	return mount_finish(c, m, type, i);
}

static int parse_mounts(struct parse_ctx *c)
{
	struct json_object *arr;
	if (!json_object_object_get_ex(c->t->config, "mounts", &arr))
		return 0;
	if (!json_object_is_type(arr, json_type_array))
		return parse_error(c, "mounts: expected an array");
	size_t n = json_object_array_length(arr);
	if (n == 0)
		return 0;
	c->t->mounts = calloc(n, sizeof(*c->t->mounts));
	if (!c->t->mounts)
		return parse_error(c, "out of memory");
	for (size_t i = 0; i < n; i++) {
		struct json_object *v = json_object_array_get_idx(arr, i);
		const char *s;
		c->t->nmounts = i + 1; /* so template_free sees what was filled */
		if (json_object_is_type(v, json_type_object)) {
			if (parse_mount_object(c, v, i) != 0)
				return -1;
		} else if (json_object_is_type(v, json_type_string)) {
			if (get_str(c, v, "mounts[]", false, &s) != 0 || parse_mount_string(c, s, i) != 0)
				return -1;
		} else {
			return parse_error(c, "mounts[%zu]: expected a string or an object", i);
		}
	}
	return 0;
}

/* A lifecycle command: a string (run by a shell), an array (argv), or an
 * object of named commands run in parallel, each a string or an array. */
static int parse_command(struct parse_ctx *c, const char *key, struct json_object **out)
{
	struct json_object *v;
	const char *s;
	if (!json_object_object_get_ex(c->t->config, key, &v))
		return 0;
	if (json_object_is_type(v, json_type_object)) {
		json_object_object_foreach(v, name, cmd)
		{
			(void)name;
			if (json_object_is_type(cmd, json_type_array)) {
				for (size_t i = 0; i < json_object_array_length(cmd); i++)
					if (get_str(c, json_object_array_get_idx(cmd, i), key, true, &s) != 0)
						return -1;
			} else if (get_str(c, cmd, key, true, &s) != 0) {
				return -1;
			}
		}
	} else if (json_object_is_type(v, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(v); i++)
			if (get_str(c, json_object_array_get_idx(v, i), key, true, &s) != 0)
				return -1;
	} else if (get_str(c, v, key, true, &s) != 0) {
		return parse_error(c, "%s: expected a string, an array of strings or an object of commands",
				   key);
	}
	*out = json_object_get(v);
	return 0;
}

static int parse_host_requirements(struct parse_ctx *c)
{
	struct json_object *hr, *v;
	if (!json_object_object_get_ex(c->t->config, "hostRequirements", &hr))
		return 0;
	if (!json_object_is_type(hr, json_type_object))
		return parse_error(c, "hostRequirements: expected an object");
	if (json_object_object_get_ex(hr, "cpus", &v)) {
		double d = -1;
		if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double))
			d = json_object_get_double(v);
		if (!isfinite(d) || d <= 0)
			return parse_error(c, "hostRequirements.cpus: expected a number > 0");
		c->t->host_cpus = d;
	}
	if (json_object_object_get_ex(hr, "memory", &v)) {
		const char *s;
		if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) > 0) {
			c->t->host_memory = (uint64_t)json_object_get_int64(v);
		} else if (get_str(c, v, "hostRequirements.memory", false, &s) != 0 ||
			   size_parse(s, &c->t->host_memory) != 0) {
			return parse_error(c, "hostRequirements.memory: expected a size such as \"4gb\"");
		}
	}
	return 0;
}

static int parse_security(struct parse_ctx *c)
{
	struct template *t = c->t;
	struct json_object *v;
	if (opt_bool(c, "privileged", &t->privileged) != 0)
		return -1;
	if (t->privileged && !c->policy->allow_privileged)
		return parse_error(c,
				   "privileged containers are not allowed (set SANDBAR_ALLOW_PRIVILEGED=1)");
	if (json_object_object_get_ex(t->config, "capAdd", &v)) {
		size_t n = 0;
		if (!json_object_is_type(v, json_type_array))
			return parse_error(c, "capAdd: expected an array of strings");
		if (json_object_array_length(v) > 0 && !c->policy->allow_cap_add)
			return parse_error(c, "capAdd is not allowed (set SANDBAR_ALLOW_CAP_ADD=1)");
		for (size_t i = 0; i < json_object_array_length(v); i++) {
			const char *s;
			if (get_str(c, json_object_array_get_idx(v, i), "capAdd", false, &s) != 0)
				return -1;
			if (strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") !=
			    strlen(s))
				return parse_error(c, "capAdd: bad capability name '%s'", s);
			if (strv_push(&t->cap_add, &n, strdup(s)) != 0)
				return parse_error(c, "out of memory");
		}
	}
	if (json_object_object_get_ex(t->config, "runArgs", &v) &&
	    !(json_object_is_type(v, json_type_array) && json_object_array_length(v) == 0))
		return parse_error(c, "runArgs is not supported: raw docker flags are not passed through "
				      "(use mounts, capAdd, privileged, containerEnv or hostRequirements)");
	return 0;
}

/* customizations.sandbar: our own options (the devcontainer spec gives each
 * tool a key of customizations; the others' are ignored). An unknown option
 * of ours is refused rather than silently dropped. */
static int parse_customizations(struct parse_ctx *c)
{
	struct json_object *cust, *ours, *v;
	if (!json_object_object_get_ex(c->t->config, "customizations", &cust))
		return 0;
	if (!json_object_is_type(cust, json_type_object))
		return parse_error(c, "customizations: expected an object");
	if (!json_object_object_get_ex(cust, "sandbar", &ours))
		return 0;
	if (!json_object_is_type(ours, json_type_object))
		return parse_error(c, "customizations.sandbar: expected an object");
	json_object_object_foreach(ours, key, unused)
	{
		(void)unused;
		if (strcmp(key, "runtime") != 0)
			return parse_error(c, "customizations.sandbar.%s: unknown option (runtime)", key);
	}
	if (json_object_object_get_ex(ours, "runtime", &v)) {
		const char *s;
		if (get_str(c, v, "customizations.sandbar.runtime", false, &s) != 0)
			return -1;
		if (sandbox_runtime_parse(s, &c->t->runtime) != 0)
			return parse_error(
				c, "customizations.sandbar.runtime: unknown runtime '%s' (runc, gvisor)", s);
		if (c->t->runtime != SANDBOX_RUNTIME_RUNC && !c->policy->runtimes[c->t->runtime])
			return parse_error(c, "runtime %s is not enabled (set SANDBAR_RUNTIMES=%s)", s, s);
	}
	return 0;
}

bool template_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n < 1 || n > 64 || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

struct template *template_parse(const char *name, const char *dir, const char *text, size_t len,
				const struct template_policy *policy, char *err, size_t errcap)
{
	struct parse_ctx c = { .policy = policy, .err = err, .errcap = errcap };
	struct json_object *root = jsonc_parse(text, len, err, errcap);
	if (!root)
		return NULL;
	if (!json_object_is_type(root, json_type_object)) {
		snprintf(err, errcap, "devcontainer.json must hold a JSON object");
		json_object_put(root);
		return NULL;
	}
	c.t = calloc(1, sizeof(*c.t));
	if (!c.t) {
		snprintf(err, errcap, "out of memory");
		json_object_put(root);
		return NULL;
	}
	struct template *t = c.t;
	t->config = root;
	t->override_command = true;
	if (!(t->name = strdup(name)) || !(t->dir = strdup(dir))) {
		parse_error(&c, "out of memory");
		goto fail;
	}
	if (parse_source(&c) != 0 || parse_env(&c, "containerEnv", &t->container_env) != 0 ||
	    parse_env(&c, "remoteEnv", &t->remote_env) != 0 || parse_ports(&c) != 0 ||
	    parse_workspace(&c) != 0 || parse_mounts(&c) != 0 ||
	    opt_str_field(&c, root, "containerUser", &t->container_user) != 0 ||
	    opt_str_field(&c, root, "remoteUser", &t->remote_user) != 0 ||
	    parse_command(&c, "postCreateCommand", &t->post_create) != 0 ||
	    parse_command(&c, "postStartCommand", &t->post_start) != 0 ||
	    opt_bool(&c, "init", &t->init) != 0 ||
	    opt_bool(&c, "overrideCommand", &t->override_command) != 0 || parse_host_requirements(&c) != 0 ||
	    parse_security(&c) != 0 || parse_customizations(&c) != 0)
		goto fail;
	if (t->build_dockerfile && template_build_tag(t, err, errcap) != 0)
		goto fail;
	return t;
fail:
	template_free(t);
	return NULL;
}

void template_free(struct template *t)
{
	if (!t)
		return;
	free(t->name);
	free(t->dir);
	json_object_put(t->config);
	free(t->image);
	free(t->build_dockerfile);
	free(t->build_context);
	json_object_put(t->build_args);
	free(t->build_target);
	free(t->build_tag);
	strv_free(t->container_env);
	strv_free(t->remote_env);
	free(t->ports);
	free(t->workspace_folder);
	for (size_t i = 0; i < t->nmounts; i++) {
		free(t->mounts[i].source);
		free(t->mounts[i].target);
	}
	free(t->mounts);
	free(t->container_user);
	free(t->remote_user);
	json_object_put(t->post_create);
	json_object_put(t->post_start);
	strv_free(t->cap_add);
	free(t);
}

/* Reads a whole small file; NULL if missing, unreadable or too large. */
static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rbe");
	if (!f)
		return NULL;
	char *buf = malloc(TEMPLATE_MAX_FILE + 1);
	size_t n = buf ? fread(buf, 1, TEMPLATE_MAX_FILE + 1, f) : 0;
	bool bad = !buf || ferror(f) || n > TEMPLATE_MAX_FILE;
	fclose(f);
	if (bad) {
		free(buf);
		return NULL;
	}
	*len = n;
	return buf;
}

struct template_set *template_set_load(const char *root, const struct template_policy *policy)
{
	struct template_set *set = calloc(1, sizeof(*set));
	struct dirent **names = NULL;
	if (!set)
		return NULL;
	int n = scandir(root, &names, NULL, alphasort);
	if (n < 0) {
		log_error("templates: cannot read %s: %s", root, strerror(errno));
		return set;
	}
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;
		char dir[PATH_MAX], file[PATH_MAX + 32], err[512];
		char *abs = NULL, *text = NULL;
		size_t len = 0;
		struct stat st;
		if (name[0] == '.')
			goto next;
		snprintf(dir, sizeof(dir), "%s/%s", root, name);
		if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
			goto next;
		if (!template_name_valid(name)) {
			log_warn("templates: skipping %s: not a valid template name", dir);
			goto next;
		}
		snprintf(file, sizeof(file), "%s/devcontainer.json", dir);
		if (access(file, F_OK) != 0)
			goto next;
		abs = realpath(dir, NULL);
		text = read_file(file, &len);
		if (!abs || !text) {
			log_warn("templates: skipping %s: cannot read it (or over %u bytes)", file,
				 TEMPLATE_MAX_FILE);
			goto next;
		}
		struct template *t = template_parse(name, abs, text, len, policy, err, sizeof(err));
		if (!t) {
			log_warn("templates: skipping %s: %s", file, err);
			goto next;
		}
		struct template **nv = realloc(set->items, (set->n + 1) * sizeof(*nv));
		if (!nv) {
			template_free(t);
			goto next;
		}
		set->items = nv;
		set->items[set->n++] = t;
		log_info("templates: loaded %s (%s)", name, t->image ? t->image : t->build_tag);
	next:
		free(abs);
		free(text);
		free(names[i]);
	}
	free(names);
	return set;
}

const struct template *template_set_find(const struct template_set *set, const char *name)
{
	for (size_t i = 0; set && i < set->n; i++)
		if (strcmp(set->items[i]->name, name) == 0)
			return set->items[i];
	return NULL;
}

size_t template_set_count(const struct template_set *set)
{
	return set ? set->n : 0;
}

const struct template *template_set_at(const struct template_set *set, size_t i)
{
	return set && i < set->n ? set->items[i] : NULL;
}

void template_set_free(struct template_set *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->n; i++)
		template_free(set->items[i]);
	free(set->items);
	free(set);
}
