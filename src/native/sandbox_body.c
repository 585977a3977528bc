/* The native sandbox request bodies: create's and PATCH's members parsed into
 * the core's parameters. Each bad member fails with a stable code naming it
 * (invalid_cpu, invalid_memory, ...); ranges against the server's maxima are
 * the core's to check. Numbers of seconds or duration strings ("15m") for
 * times, bytes or size strings ("512m") for memory. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/units.h"
#include "internal.h"

/* The member, or NULL when absent or null. */
static struct json_object *member(struct json_object *body, const char *key)
{
	struct json_object *v;
	if (!body || !json_object_object_get_ex(body, key, &v) || json_object_is_type(v, json_type_null))
		return NULL;
	return v;
}

/* A string with a NUL byte (\u0000 in JSON): PostgreSQL's text takes none,
 * and C would read it cut short. */
static bool has_nul(struct json_object *str)
{
	return strlen(json_object_get_string(str)) != (size_t)json_object_get_string_len(str);
}

static bool is_number(struct json_object *v)
{
	return json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double);
}

static int parse_cpu(struct json_object *v, double *out, struct core_error *e)
{
	double d = is_number(v) ? json_object_get_double(v) : NAN;
	if (!isfinite(d) || d <= 0)
		return core_error_invalid(e, "invalid_cpu",
					  "'cpu' must be a number of CPUs above 0, such as 1.5");
	*out = d;
	return 0;
}

static int parse_memory(struct json_object *v, uint64_t *out, struct core_error *e)
{
	if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) > 0) {
		*out = (uint64_t)json_object_get_int64(v);
		return 0;
	}
	if (json_object_is_type(v, json_type_string) && size_parse(json_object_get_string(v), out) == 0 &&
	    *out > 0)
		return 0;
	return core_error_invalid(e, "invalid_memory",
				  "'memory' must be bytes above 0 or a size such as \"512m\" or \"2g\"");
}

/* Whole seconds (a number) or a duration string, above 0. */
static int parse_duration(struct json_object *v, const char *key, const char *code, int64_t *out_ms,
			  struct core_error *e)
{
	if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) > 0 &&
	    json_object_get_int64(v) < INT64_MAX / 1000) {
		*out_ms = json_object_get_int64(v) * 1000;
		return 0;
	}
	if (json_object_is_type(v, json_type_string) &&
	    duration_parse(json_object_get_string(v), out_ms) == 0 && *out_ms > 0)
		return 0;
	return core_error_invalid(e, code, "'%s' must be seconds above 0 or a duration such as \"15m\"", key);
}

static int parse_labels(struct json_object *v, struct json_object **out, struct core_error *e)
{
	if (sandbox_labels_check(v, e) != 0)
		return -1;
	*out = v;
	return 0;
}

/* env_vars: an object of string values with keys a shell accepts in `K=V`. */
static int parse_env(struct json_object *v, struct json_object **out, struct core_error *e)
{
	if (!json_object_is_type(v, json_type_object))
		return core_error_invalid(e, "invalid_env", "'env_vars' must be an object of strings");
	json_object_object_foreach(v, key, val)
	{
		if (!*key || strchr(key, '=') || strlen(key) > 256)
			return core_error_invalid(e, "invalid_env",
						  "env var name '%s' is empty, too long or has '='", key);
		if (!json_object_is_type(val, json_type_string))
			return core_error_invalid(e, "invalid_env", "env var '%s' must be a string", key);
		if (has_nul(val))
			return core_error_invalid(e, "invalid_env", "env var '%s' contains a NUL byte", key);
	}
	*out = v;
	return 0;
}

static int parse_string(struct json_object *v, const char *key, const char *code, const char **out,
			struct core_error *e)
{
	if (!json_object_is_type(v, json_type_string))
		return core_error_invalid(e, code, "'%s' must be a string", key);
	if (has_nul(v))
		return core_error_invalid(e, code, "'%s' contains a NUL byte", key);
	*out = json_object_get_string(v);
	return 0;
}

static int parse_idle_action(struct json_object *v, enum sandbox_idle_action *out, struct core_error *e)
{
	if (!json_object_is_type(v, json_type_string) ||
	    sandbox_idle_action_parse(json_object_get_string(v), out) != 0)
		return core_error_invalid(e, "invalid_idle_action",
					  "'idle_action' must be \"expire\", \"stop\" or \"none\"");
	return 0;
}

/* auto_wake: a boolean, as the core's tri-state (1 on, -1 off). */
static int parse_auto_wake(struct json_object *v, int *out, struct core_error *e)
{
	if (!json_object_is_type(v, json_type_boolean))
		return core_error_invalid(e, "invalid_auto_wake", "'auto_wake' must be a boolean");
	*out = json_object_get_boolean(v) ? 1 : -1;
	return 0;
}

/* private: a boolean (previews need a preview token). */
static int parse_private(struct json_object *v, int *out, struct core_error *e)
{
	if (!json_object_is_type(v, json_type_boolean))
		return core_error_invalid(e, "invalid_private", "'private' must be a boolean");
	*out = json_object_get_boolean(v) ? 1 : -1;
	return 0;
}

/* private_ports: an array of up to SANDBOX_PRIVATE_PORTS_MAX port numbers. */
static int parse_private_ports(struct json_object *v, struct sandbox_port_set *out, struct core_error *e)
{
	if (!json_object_is_type(v, json_type_array) ||
	    json_object_array_length(v) > SANDBOX_PRIVATE_PORTS_MAX)
		return core_error_invalid(e, "invalid_private_ports",
					  "'private_ports' must be an array of at most %d port numbers",
					  SANDBOX_PRIVATE_PORTS_MAX);
	out->n = 0;
	for (size_t i = 0; i < json_object_array_length(v); i++) {
		struct json_object *p = json_object_array_get_idx(v, i);
		int64_t port = json_object_is_type(p, json_type_int) ? json_object_get_int64(p) : 0;
		if (port < 1 || port > 65535)
			return core_error_invalid(e, "invalid_private_ports",
						  "'private_ports' must hold port numbers 1 to 65535");
		out->port[out->n++] = (uint16_t)port;
	}
	return 0;
}

/* ports: an array of container ports (kept in scratch, freed by the caller). */
static int parse_ports(struct json_object *v, int **out, size_t *n, struct core_error *e)
{
	if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) > 1024)
		return core_error_invalid(e, "invalid_ports", "'ports' must be an array of port numbers");
	size_t len = json_object_array_length(v);
	int *ports = calloc(len + 1, sizeof(int));
	if (!ports)
		return core_error_invalid(e, "invalid_ports", "'ports' is too long");
	for (size_t i = 0; i < len; i++) {
		struct json_object *p = json_object_array_get_idx(v, i);
		int64_t port = json_object_is_type(p, json_type_int) ? json_object_get_int64(p) : 0;
		if (port < 1 || port > 65535) {
			free(ports);
			return core_error_invalid(e, "invalid_ports",
						  "'ports' must hold port numbers 1 to 65535");
		}
		ports[i] = (int)port;
	}
	*out = ports;
	*n = len;
	return 0;
}

static int create_params(struct json_object *body, struct sandbox_create_params *p, int **ports,
			 struct core_error *e)
{
	struct json_object *v;
	if (body && !json_object_is_type(body, json_type_object))
		return core_error_invalid(e, "invalid_body", "the body must be a JSON object");
	if ((v = member(body, "name")) && parse_string(v, "name", "invalid_body", &p->name, e))
		return -1;
	if ((v = member(body, "template")) &&
	    parse_string(v, "template", "invalid_body", &p->template_name, e))
		return -1;
	/* monza clients send "" for "not given" */
	if (p->name && !*p->name)
		p->name = NULL;
	if (p->template_name && !*p->template_name)
		p->template_name = NULL;
	if ((v = member(body, "env_vars")) && parse_env(v, &p->env_vars, e))
		return -1;
	if ((v = member(body, "labels")) && parse_labels(v, &p->labels, e))
		return -1;
	if ((v = member(body, "cpu")) && parse_cpu(v, &p->cpus, e))
		return -1;
	if ((v = member(body, "memory")) && parse_memory(v, &p->memory, e))
		return -1;
	if ((v = member(body, "idle_timeout")) &&
	    parse_duration(v, "idle_timeout", "invalid_idle_timeout", &p->idle_timeout_ms, e))
		return -1;
	if ((v = member(body, "idle_action")) && parse_idle_action(v, &p->idle_action, e))
		return -1;
	if ((v = member(body, "ttl")) && parse_duration(v, "ttl", "invalid_ttl", &p->ttl_ms, e))
		return -1;
	if ((v = member(body, "auto_wake")) && parse_auto_wake(v, &p->auto_wake, e))
		return -1;
	int priv = 0;
	if ((v = member(body, "private")) && parse_private(v, &priv, e))
		return -1;
	p->is_private = priv > 0;
	if ((v = member(body, "private_ports")) && parse_private_ports(v, &p->private_ports, e))
		return -1;
	if ((v = member(body, "ports")) && parse_ports(v, ports, &p->nports, e))
		return -1;
	p->ports = *ports;
	if ((v = member(body, "network")) &&
	    (!json_object_is_type(v, json_type_string) ||
	     sandbox_network_parse(json_object_get_string(v), &p->network) != 0))
		return core_error_invalid(e, "invalid_network", "'network' must be \"full\" or \"none\"");
	/* the name is the core's to check (unknown, or not enabled here) */
	if ((v = member(body, "runtime")) && parse_string(v, "runtime", "invalid_runtime", &p->runtime, e))
		return -1;
	if ((v = member(body, "wait"))) {
		if (!json_object_is_type(v, json_type_boolean))
			return core_error_invalid(e, "invalid_body", "'wait' must be a boolean");
		p->wait = json_object_get_boolean(v);
	}
	return 0;
}

int native_create_params(struct json_object *body, struct sandbox_create_params *p, int **ports,
			 struct core_error *e)
{
	*ports = NULL;
	if (create_params(body, p, ports, e) == 0)
		return 0;
	/* a member after ports failed: nothing for the caller to free */
	free(*ports);
	*ports = NULL;
	p->ports = NULL;
	return -1;
}

int native_update_params(struct json_object *body, struct sandbox_changes *c, struct core_error *e)
{
	struct json_object *v;
	if (!body || !json_object_is_type(body, json_type_object))
		return core_error_invalid(e, "invalid_body", "the body must be a JSON object");
	json_object_object_foreach(body, key, unused)
	{
		(void)unused;
		static const char *const known[] = { "name",	"labels",	 "env_vars",	"cpu",
						     "memory",	"idle_timeout",	 "idle_action", "auto_wake",
						     "private", "private_ports", NULL };
		bool ok = false;
		for (size_t i = 0; known[i]; i++)
			ok |= strcmp(key, known[i]) == 0;
		if (!ok)
			return core_error_invalid(
				e, "invalid_body",
				"'%s' cannot be changed (name, labels, env_vars, cpu, memory, "
				"idle_timeout, idle_action, auto_wake, private and private_ports can)",
				key);
	}
	if ((v = member(body, "name")) && parse_string(v, "name", "invalid_name", &c->name, e))
		return -1;
	if ((v = member(body, "labels")) && parse_labels(v, &c->labels, e))
		return -1;
	if ((v = member(body, "env_vars")) && parse_env(v, &c->env_vars, e))
		return -1;
	if ((v = member(body, "cpu")) && parse_cpu(v, &c->cpus, e))
		return -1;
	if ((v = member(body, "memory")) && parse_memory(v, &c->memory, e))
		return -1;
	if ((v = member(body, "idle_timeout")) &&
	    parse_duration(v, "idle_timeout", "invalid_idle_timeout", &c->idle_timeout_ms, e))
		return -1;
	if ((v = member(body, "idle_action"))) {
		if (parse_idle_action(v, &c->idle_action, e))
			return -1;
		c->set_idle_action = true;
	}
	if ((v = member(body, "auto_wake")) && parse_auto_wake(v, &c->auto_wake, e))
		return -1;
	if ((v = member(body, "private")) && parse_private(v, &c->is_private, e))
		return -1;
	if ((v = member(body, "private_ports"))) {
		if (parse_private_ports(v, &c->private_ports, e))
			return -1;
		c->set_private_ports = true;
	}
	return 0;
}

/* {"seconds": N}: N whole seconds above 0. */
int native_seconds(struct json_object *body, int64_t *out_ms, struct core_error *e)
{
	struct json_object *v = member(body, "seconds");
	if (!v || !json_object_is_type(v, json_type_int) || json_object_get_int64(v) <= 0 ||
	    json_object_get_int64(v) > 10LL * 365 * 86400)
		return core_error_invalid(e, "invalid_seconds",
					  "'seconds' must be a whole number of seconds above 0");
	*out_ms = json_object_get_int64(v) * 1000;
	return 0;
}

int native_preview_token_params(struct json_object *body, int *port, int64_t *ttl_s, struct core_error *e)
{
	struct json_object *v = member(body, "port");
	if (!v || !json_object_is_type(v, json_type_int))
		return core_error_invalid(e, "invalid_port", "'port' must be a port number, 1..65535");
	int64_t p = json_object_get_int64(v);
	*port = p < 0 || p > 65535 ? -1 : (int)p; /* the core says which range */
	*ttl_s = NATIVE_PREVIEW_TOKEN_TTL;
	if ((v = member(body, "ttl_seconds"))) {
		if (!json_object_is_type(v, json_type_int))
			return core_error_invalid(e, "invalid_ttl",
						  "'ttl_seconds' must be a whole number of seconds");
		*ttl_s = json_object_get_int64(v);
	}
	return 0;
}
