/* The Hermes request bodies (Go encoding/json as the SDK writes them), parsed
 * into what the core is called with: which of create and list a POST on
 * /api/v1/sandboxes means (spec §3), create's members, list's filters and
 * page, PATCH's spec and image, extend's seconds and configure's payloads.
 * Bad input fills a core error (INVALID, a stable code naming the member). */
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "internal.h"

#define USER_ID_MAX   256
#define TTL_HOURS_MAX (24 * 365)
#define ENV_NAME_MAX  256
#define PAYLOADS_MAX  64
#define CPU_NANOS_MIN 10000000 /* 10m: Docker's least NanoCpus */

/* The member, or NULL when absent (null counts as absent: Go never sends it). */
static struct json_object *member(struct json_object *body, const char *key)
{
	struct json_object *v = NULL;
	if (body && json_object_object_get_ex(body, key, &v) && json_object_is_type(v, json_type_null))
		v = NULL;
	return v;
}

static bool has(struct json_object *body, const char *key)
{
	return body && json_object_object_get_ex(body, key, NULL);
}

/* A string without NUL bytes (PostgreSQL's text takes none). */
static bool plain_string(struct json_object *v, size_t max)
{
	if (!json_object_is_type(v, json_type_string))
		return false;
	size_t len = (size_t)json_object_get_string_len(v);
	return len <= max && strlen(json_object_get_string(v)) == len;
}

static int need_object(struct json_object *body, struct core_error *e)
{
	if (!body || !json_object_is_type(body, json_type_object))
		return core_error_invalid(e, "invalid_body", "the body must be a JSON object");
	return 0;
}

enum hermes_post hermes_post_classify(struct json_object *body)
{
	if (!has(body, "user_id") || has(body, "status") || has(body, "limit") || has(body, "offset"))
		return HERMES_POST_LIST;
	if (has(body, "spec") || has(body, "labels") || has(body, "payloads") || has(body, "ttl_hours"))
		return HERMES_POST_CREATE;
	return HERMES_POST_BOTH;
}

static int parse_user_id(struct json_object *body, const char **out, struct core_error *e)
{
	struct json_object *v = member(body, "user_id");
	*out = NULL;
	if (!v)
		return 0;
	if (!plain_string(v, USER_ID_MAX))
		return core_error_invalid(e, "invalid_user_id",
					  "'user_id' must be a string of at most %d bytes", USER_ID_MAX);
	*out = json_object_get_string(v);
	return 0;
}

/* spec: an object of strings; the known ones given (non-empty) are kept as
 * written into *kept (a new object), cpu and memory parsed as quantities. */
static int parse_spec(struct json_object *v, struct hermes_spec *s, struct core_error *e)
{
	static const char *const keys[] = { "cpu", "memory", "image", "requests_cpu", "requests_memory" };
	if (!json_object_is_type(v, json_type_object))
		return core_error_invalid(e, "invalid_spec", "'spec' must be an object of strings");
	json_object_object_foreach(v, key, val)
	{
		if (!json_object_is_type(val, json_type_string) && !json_object_is_type(val, json_type_null))
			return core_error_invalid(e, "invalid_spec", "'spec.%s' must be a string", key);
	}
	s->kept = json_object_new_object();
	for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
		struct json_object *f = member(v, keys[i]);
		if (!f || json_object_get_string_len(f) == 0)
			continue;
		if (!plain_string(f, 256))
			return core_error_invalid(e, "invalid_spec",
						  "'spec.%s' must be a string of at most 256 bytes", keys[i]);
		json_object_object_add(s->kept, keys[i], json_object_get(f));
	}
	struct json_object *f;
	if (json_object_object_get_ex(s->kept, "cpu", &f)) {
		uint64_t nanos;
		if (hermes_quantity_cpu(json_object_get_string(f), (size_t)json_object_get_string_len(f),
					&nanos) != 0 ||
		    nanos < CPU_NANOS_MIN)
			return core_error_invalid(
				e, "invalid_cpu",
				"'spec.cpu' must be a Kubernetes quantity of at least 10m, such as \"500m\" "
				"or \"2\" (got \"%s\")",
				json_object_get_string(f));
		s->cpus = (double)nanos / 1e9;
	}
	if (json_object_object_get_ex(s->kept, "memory", &f)) {
		if (hermes_quantity_memory(json_object_get_string(f), (size_t)json_object_get_string_len(f),
					   &s->memory) != 0 ||
		    s->memory == 0)
			return core_error_invalid(
				e, "invalid_memory",
				"'spec.memory' must be a Kubernetes quantity such as \"512Mi\" or \"1G\" "
				"(got \"%s\")",
				json_object_get_string(f));
	}
	for (size_t i = 3; i < ARRAY_LEN(keys); i++) { /* requests_*: kept, checked as quantities */
		uint64_t n;
		if (json_object_object_get_ex(s->kept, keys[i], &f) &&
		    (i == 3 ? hermes_quantity_cpu : hermes_quantity_memory)(
			    json_object_get_string(f), (size_t)json_object_get_string_len(f), &n) != 0)
			return core_error_invalid(e, "invalid_spec",
						  "'spec.%s' must be a Kubernetes quantity (got \"%s\")",
						  keys[i], json_object_get_string(f));
	}
	if (json_object_object_get_ex(s->kept, "image", &f))
		s->image = json_object_get_string(f);
	return 0;
}

static int parse_labels(struct json_object *v, struct json_object **out, struct core_error *e)
{
	if (sandbox_labels_check(v, e) != 0)
		return -1;
	*out = v;
	return 0;
}

/* One /api/v1/env payload's body merged into env. */
static int merge_env(struct json_object *env, struct json_object *body, struct core_error *e)
{
	if (!body || !json_object_is_type(body, json_type_object))
		return core_error_invalid(e, "invalid_payload",
					  "an /api/v1/env payload's body must be an object of strings");
	json_object_object_foreach(body, key, val)
	{
		size_t n = strlen(key);
		if (n == 0 || n > ENV_NAME_MAX || strchr(key, '='))
			return core_error_invalid(e, "invalid_payload",
						  "env name '%s' is empty, too long or has '='", key);
		if (!plain_string(val, SIZE_MAX))
			return core_error_invalid(e, "invalid_payload",
						  "env '%s' must be a string without NUL bytes", key);
		json_object_object_add(env, key, json_object_get(val));
	}
	return 0;
}

/* payloads: their env, merged in order into a new object *env. */
static int parse_payloads(struct json_object *v, struct json_object **env, struct core_error *e)
{
	if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) > PAYLOADS_MAX)
		return core_error_invalid(e, "invalid_payload",
					  "'payloads' must be an array of at most %d objects", PAYLOADS_MAX);
	*env = json_object_new_object();
	for (size_t i = 0; i < json_object_array_length(v); i++) {
		struct json_object *p = json_object_array_get_idx(v, i), *api, *envs;
		if (!json_object_is_type(p, json_type_object) || !(api = member(p, "api")) ||
		    !json_object_is_type(api, json_type_string))
			return core_error_invalid(e, "invalid_payload",
						  "each payload must be an object with an 'api' string");
		if ((envs = member(p, "envs")) && !json_object_is_type(envs, json_type_object))
			return core_error_invalid(e, "invalid_payload",
						  "a payload's 'envs' must be an object of strings");
		if (strcmp(json_object_get_string(api), HERMES_ENV_API) != 0)
			return core_error_invalid(
				e, "unsupported_payload",
				"payload api '%.64s' is not supported (only " HERMES_ENV_API
				", whose body {\"NAME\":\"value\"} is the sandbox's environment)",
				json_object_get_string(api));
		if (merge_env(*env, member(p, "body"), e) != 0)
			return -1;
	}
	return 0;
}

int hermes_create_parse(struct json_object *body, struct hermes_create *c, struct core_error *e)
{
	struct json_object *v;
	memset(c, 0, sizeof(*c));
	if (need_object(body, e) != 0 || parse_user_id(body, &c->user_id, e) != 0)
		return -1;
	if (!c->user_id)
		c->user_id = "";
	if ((v = member(body, "spec")) && parse_spec(v, &c->spec, e) != 0)
		return -1;
	if ((v = member(body, "labels")) && parse_labels(v, &c->labels, e) != 0)
		return -1;
	if ((v = member(body, "payloads")) && parse_payloads(v, &c->env, e) != 0)
		return -1;
	if ((v = member(body, "ttl_hours"))) {
		if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) <= 0 ||
		    json_object_get_int64(v) > TTL_HOURS_MAX)
			return core_error_invalid(e, "invalid_ttl",
						  "'ttl_hours' must be a whole number of hours, 1 to %d",
						  TTL_HOURS_MAX);
		c->ttl_hours = json_object_get_int64(v);
	}
	return 0;
}

void hermes_create_clear(struct hermes_create *c)
{
	json_object_put(c->spec.kept);
	json_object_put(c->env);
	memset(c, 0, sizeof(*c));
}

static int parse_count(struct json_object *body, const char *key, size_t max, size_t *out,
		       struct core_error *e)
{
	struct json_object *v = member(body, key);
	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0 ||
	    (uint64_t)json_object_get_int64(v) > max)
		return core_error_invalid(e, strcmp(key, "limit") == 0 ? "invalid_limit" : "invalid_offset",
					  "'%s' must be a whole number, 0 to %zu", key, max);
	*out = (size_t)json_object_get_int64(v);
	return 0;
}

int hermes_list_parse(struct json_object *body, struct hermes_list *l, struct core_error *e)
{
	struct json_object *v;
	memset(l, 0, sizeof(*l));
	if (body && need_object(body, e) != 0)
		return -1;
	if (parse_user_id(body, &l->user_id, e) != 0)
		return -1;
	if (l->user_id && !*l->user_id)
		l->user_id = NULL; /* List leaves an empty one out: "" is no filter */
	if ((v = member(body, "status"))) {
		if (!json_object_is_type(v, json_type_string))
			return core_error_invalid(e, "invalid_status", "'status' must be a string");
		const char *name = json_object_get_string(v);
		if (*name && hermes_status_mask(name, &l->statuses) != 0)
			return core_error_invalid(
				e, "invalid_status",
				"'%.64s' is no status (creating, active, stopping, stopped, failed, "
				"destroying)",
				name);
		l->none = *name && l->statuses == 0;
	}
	if (parse_count(body, "limit", HERMES_LIST_LIMIT_MAX, &l->limit, e) != 0 ||
	    parse_count(body, "offset", HERMES_LIST_OFFSET_MAX, &l->offset, e) != 0)
		return -1;
	if (l->limit == 0)
		l->limit = HERMES_LIST_LIMIT_DEFAULT;
	return 0;
}

int hermes_patch_parse(struct json_object *body, struct hermes_spec *s, struct core_error *e)
{
	struct json_object *v;
	memset(s, 0, sizeof(*s));
	if (need_object(body, e) != 0)
		return -1;
	if ((v = member(body, "spec")) && parse_spec(v, s, e) != 0)
		return -1;
	if ((v = member(body, "image"))) {
		if (!plain_string(v, 256))
			return core_error_invalid(e, "invalid_image",
						  "'image' must be a string of at most 256 bytes");
		if (json_object_get_string_len(v) > 0)
			s->image = json_object_get_string(v); /* over spec.image */
	}
	if (!s->image && (!s->kept || json_object_object_length(s->kept) == 0))
		return core_error_invalid(e, "nothing_to_update",
					  "nothing to update: give 'spec' fields or 'image'");
	return 0;
}

int hermes_seconds_parse(struct json_object *body, int64_t *seconds, struct core_error *e)
{
	struct json_object *v =
		body && json_object_is_type(body, json_type_object) ? member(body, "seconds") : NULL;
	if (!v || !json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 1 ||
	    json_object_get_int64(v) > HERMES_EXTEND_MAX)
		return core_error_invalid(e, "invalid_seconds", "'seconds' must be a whole number, 1 to %d",
					  HERMES_EXTEND_MAX);
	*seconds = json_object_get_int64(v);
	return 0;
}

int hermes_configure_parse(struct json_object *body, struct json_object **env, struct core_error *e)
{
	*env = NULL;
	if (!body)
		return 0; /* no body: what was configured is applied again */
	struct json_object *v;
	if (need_object(body, e) != 0)
		return -1;
	if (!(v = member(body, "payloads")))
		return 0;
	return parse_payloads(v, env, e);
}
