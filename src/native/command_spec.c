/* A native command request's JSON body as the command service's spec, with
 * the stable error codes of bad input (the other dialects parse their own). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/units.h"
#include "commands/commands.h"
#include "internal.h"

static int parse_command(struct json_object *v, struct command_spec *spec, struct core_error *fail);
static int parse_env(struct json_object *v, struct command_spec *spec, struct core_error *fail);
static int parse_service(struct json_object *body, struct command_spec *spec, struct core_error *fail);
static char **strv_new(size_t n);

static char **strv_new(size_t n)
{
	char **v = calloc(n + 1, sizeof(char *));
	CHECK(v != NULL);
	return v;
}

static int parse_command(struct json_object *v, struct command_spec *spec, struct core_error *fail)
{
	if (!v || json_object_is_type(v, json_type_null))
		return core_error_invalid(fail, "invalid_command", "'command' is required");
	if (json_object_is_type(v, json_type_string)) {
		const char *s = json_object_get_string(v);
		size_t len = (size_t)json_object_get_string_len(v);
		if (len == 0 || strspn(s, " \t\r\n") == len)
			return core_error_invalid(fail, "invalid_command", "'command' is empty");
		if (strlen(s) != len)
			return core_error_invalid(fail, "invalid_command", "'command' contains a NUL byte");
		/* as monza: /bin/sh -lc <command>, which the agent may run directly */
		spec->shell = strdup(s);
		spec->login = true;
	} else if (json_object_is_type(v, json_type_array)) {
		size_t n = json_object_array_length(v);
		if (n == 0)
			return core_error_invalid(fail, "invalid_command", "'command' is an empty array");
		if (n > 4096)
			return core_error_invalid(fail, "invalid_command",
						  "'command' has too many arguments");
		spec->argv = strv_new(n);
		for (size_t i = 0; i < n; i++) {
			struct json_object *a = json_object_array_get_idx(v, i);
			if (!json_object_is_type(a, json_type_string))
				return core_error_invalid(fail, "invalid_command",
							  "'command' argument %zu is not a string", i);
			const char *s = json_object_get_string(a);
			if (strlen(s) != (size_t)json_object_get_string_len(a))
				return core_error_invalid(fail, "invalid_command",
							  "'command' argument %zu contains a NUL byte", i);
			if (i == 0 && !*s)
				return core_error_invalid(fail, "invalid_command",
							  "'command' program is empty");
			spec->argv[i] = strdup(s);
		}
	} else {
		return core_error_invalid(fail, "invalid_command",
					  "'command' must be a string or an array of strings");
	}
	spec->command_json = strdup(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
	return 0;
}

static int parse_env(struct json_object *v, struct command_spec *spec, struct core_error *fail)
{
	if (!json_object_is_type(v, json_type_object))
		return core_error_invalid(fail, "invalid_env", "'env' must be an object of strings");
	spec->env = strv_new((size_t)json_object_object_length(v));
	size_t k = 0;
	json_object_object_foreach(v, key, val)
	{
		if (!*key || strchr(key, '=') || strlen(key) > 256)
			return core_error_invalid(fail, "invalid_env",
						  "env var name '%.64s' is empty, too long or has '='", key);
		if (!json_object_is_type(val, json_type_string))
			return core_error_invalid(fail, "invalid_env", "env var '%.64s' must be a string",
						  key);
		const char *s = json_object_get_string(val);
		if (strlen(s) != (size_t)json_object_get_string_len(val))
			return core_error_invalid(fail, "invalid_env", "env var '%.64s' contains a NUL byte",
						  key);
		char *kv;
		CHECK(asprintf(&kv, "%s=%s", key, s) >= 0);
		spec->env[k++] = kv;
	}
	return 0;
}

/* "service" (a boolean) and "port" (1..65535, a service's only). A service
 * takes no "stdin": the agent starts it again with no one to feed it. */
static int parse_service(struct json_object *body, struct command_spec *spec, struct core_error *fail)
{
	struct json_object *v;
	if (json_object_object_get_ex(body, "service", &v) && !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_boolean))
			return core_error_invalid(fail, "invalid_service", "'service' must be true or false");
		spec->service = json_object_get_boolean(v);
	}
	if (json_object_object_get_ex(body, "port", &v) && !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 1 ||
		    json_object_get_int64(v) > 65535)
			return core_error_invalid(fail, "invalid_port",
						  "'port' must be a TCP port, 1 to 65535");
		if (!spec->service)
			return core_error_invalid(fail, "invalid_port",
						  "'port' is a service's: give \"service\": true");
		spec->port = (int)json_object_get_int64(v);
	}
	if (spec->service && spec->stdin_data)
		return core_error_invalid(
			fail, "invalid_stdin",
			"a service takes no 'stdin': it starts again with no one to give it");
	return 0;
}

/* A member that must be a string when present (null = absent). */
static int opt_string(struct json_object *body, const char *key, const char *code, char **out,
		      struct core_error *fail)
{
	struct json_object *v;
	if (!json_object_object_get_ex(body, key, &v) || json_object_is_type(v, json_type_null))
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return core_error_invalid(fail, code, "'%s' must be a string", key);
	const char *s = json_object_get_string(v);
	if (!*s || strlen(s) != (size_t)json_object_get_string_len(v) || strlen(s) > 4096)
		return core_error_invalid(fail, code, "'%s' must be a non-empty string without NUL", key);
	*out = strdup(s);
	return 0;
}

int native_command_spec(struct json_object *body, uint64_t max_cap, struct command_spec *spec,
			struct core_error *fail)
{
	struct json_object *v;
	memset(spec, 0, sizeof(*spec));
	spec->max_output_bytes = 65536 < max_cap ? 65536 : max_cap;
	if (!body || !json_object_is_type(body, json_type_object)) {
		core_error_invalid(fail, "invalid_body", "the body must be a JSON object");
		goto fail;
	}
	if (parse_command(json_object_object_get_ex(body, "command", &v) ? v : NULL, spec, fail))
		goto fail;
	if (json_object_object_get_ex(body, "env", &v) && !json_object_is_type(v, json_type_null) &&
	    parse_env(v, spec, fail))
		goto fail;
	if (opt_string(body, "cwd", "invalid_cwd", &spec->cwd, fail) ||
	    opt_string(body, "user", "invalid_user", &spec->user, fail))
		goto fail;
	if (json_object_object_get_ex(body, "timeout", &v) && !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double)) {
			core_error_invalid(fail, "invalid_timeout", "'timeout' must be a number of seconds");
			goto fail;
		}
		double t = json_object_get_double(v);
		if (!isfinite(t) || t < 0 || t > 7 * 86400.0) {
			core_error_invalid(fail, "invalid_timeout",
					   "'timeout' must be between 0 and 604800 seconds");
			goto fail;
		}
		spec->timeout_ms = (int64_t)(t * 1000.0 + 0.5);
	}
	if (json_object_object_get_ex(body, "max_output_bytes", &v) &&
	    !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0) {
			core_error_invalid(fail, "invalid_max_output_bytes",
					   "'max_output_bytes' must be a non-negative integer");
			goto fail;
		}
		uint64_t m = (uint64_t)json_object_get_int64(v);
		if (m > max_cap) {
			core_error_invalid(fail, "invalid_max_output_bytes",
					   "'max_output_bytes' is above the limit of %llu",
					   (unsigned long long)max_cap);
			goto fail;
		}
		spec->max_output_bytes = m;
	}
	if (json_object_object_get_ex(body, "stdin", &v) && !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_string)) {
			core_error_invalid(fail, "invalid_stdin", "'stdin' must be a string");
			goto fail;
		}
		spec->stdin_len = (size_t)json_object_get_string_len(v);
		spec->stdin_data = malloc(spec->stdin_len + 1);
		CHECK(spec->stdin_data != NULL);
		memcpy(spec->stdin_data, json_object_get_string(v), spec->stdin_len + 1);
	}
	if (parse_service(body, spec, fail) != 0)
		goto fail;
	return 0;
fail:
	command_spec_free(spec);
	return -1;
}
