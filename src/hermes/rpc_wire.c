/* JSON-RPC messages as they come off the WebSocket: one request parsed with
 * spec §8's strictness, a method's params read and checked, exec's params as
 * the command service's spec, and output bytes made JSON text. No I/O, so the
 * unit tests and the fuzzer drive it alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "rpc.h"

/* A params error: INVALID, code invalid_params (-32602 on the wire). */
#define bad_param(fail, ...) core_error_invalid(fail, "invalid_params", __VA_ARGS__)

static struct json_object *member(struct json_object *params, const char *key);
static int exec_env(struct json_object *v, struct command_spec *spec, struct core_error *fail);
static size_t seq_len(unsigned char c);

/* ---- a message ---- */

static enum rpc_parse_result invalid(struct rpc_request *out, int code, const char *message)
{
	out->code = code;
	out->message = message;
	return RPC_INVALID;
}

enum rpc_parse_result rpc_parse(const char *data, size_t len, struct rpc_request *out)
{
	memset(out, 0, sizeof(*out));
	if (len > INT32_MAX)
		return invalid(out, HERMES_RPC_PARSE_ERROR, "parse error: the message is too long");
	struct json_tokener *tok = json_tokener_new_ex(RPC_MAX_DEPTH);
	CHECK(tok != NULL);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	out->root = json_tokener_parse_ex(tok, data, (int)len);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t used = json_tokener_get_parse_end(tok);
	if (!out->root && jerr == json_tokener_continue && used == len) {
		/* a bare number is only known to end where the input does: say so */
		out->root = json_tokener_parse_ex(tok, " ", 1);
		jerr = json_tokener_get_error(tok);
	}
	json_tokener_free(tok);
	if (!out->root || jerr != json_tokener_success)
		return invalid(out, HERMES_RPC_PARSE_ERROR, "parse error: not a JSON text");
	for (; used < len; used++) {
		if (!data[used] || !strchr(" \t\r\n", data[used]))
			return invalid(out, HERMES_RPC_PARSE_ERROR, "parse error: bytes after the JSON text");
	}
	if (!json_object_is_type(out->root, json_type_object))
		return invalid(out, HERMES_RPC_INVALID_REQUEST,
			       "invalid request: a request is one JSON object (batches are not taken)");
	struct json_object *v;
	if (json_object_object_get_ex(out->root, "id", &v) && !json_object_is_type(v, json_type_null))
		out->id = v;
	if (!json_object_object_get_ex(out->root, "method", &v) ||
	    !json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0)
		return invalid(out, HERMES_RPC_INVALID_REQUEST,
			       "invalid request: 'method' must be a non-empty string");
	out->method = json_object_get_string(v);
	if (json_object_object_get_ex(out->root, "params", &v) && !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_object))
			return invalid(out, HERMES_RPC_INVALID_PARAMS,
				       "invalid params: 'params' must be an object");
		out->params = v;
	} else {
		out->params = out->empty = json_object_new_object();
	}
	if (!out->id)
		return RPC_NOTIFICATION;
	if (!json_object_is_type(out->id, json_type_int))
		return invalid(out, HERMES_RPC_INVALID_REQUEST, "invalid request: 'id' must be an integer");
	out->id_num = json_object_get_int64(out->id);
	return RPC_REQUEST;
}

void rpc_request_clear(struct rpc_request *r)
{
	json_object_put(r->root);
	json_object_put(r->empty);
	memset(r, 0, sizeof(*r));
}

/* ---- params ---- */

static struct json_object *member(struct json_object *params, const char *key)
{
	struct json_object *v;
	if (!params || !json_object_object_get_ex(params, key, &v) || json_object_is_type(v, json_type_null))
		return NULL;
	return v;
}

int rpc_param_string(struct json_object *params, const char *key, bool required, const char **out,
		     size_t *len, struct core_error *fail)
{
	struct json_object *v = member(params, key);
	if (!v) {
		if (required)
			return bad_param(fail, "invalid params: '%s' is required", key);
		return 0;
	}
	if (!json_object_is_type(v, json_type_string))
		return bad_param(fail, "invalid params: '%s' must be a string", key);
	*out = json_object_get_string(v);
	if (len)
		*len = (size_t)json_object_get_string_len(v);
	return 0;
}

int rpc_param_bool(struct json_object *params, const char *key, bool *out, struct core_error *fail)
{
	struct json_object *v = member(params, key);
	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return bad_param(fail, "invalid params: '%s' must be true or false", key);
	*out = json_object_get_boolean(v);
	return 0;
}

int rpc_param_uint(struct json_object *params, const char *key, uint64_t max, uint64_t *out,
		   struct core_error *fail)
{
	struct json_object *v = member(params, key);
	if (!v)
		return 0;
	/* json-c keeps integers above INT64_MAX as unsigned: read them as such */
	if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0 ||
	    json_object_get_uint64(v) > max)
		return bad_param(fail, "invalid params: '%s' must be an integer from 0 to %llu", key,
				 (unsigned long long)max);
	*out = json_object_get_uint64(v);
	return 0;
}

int rpc_param_path(struct json_object *params, const char *key, const char **out, struct core_error *fail)
{
	size_t len;
	if (rpc_param_string(params, key, true, out, &len, fail) != 0)
		return -1;
	if (strlen(*out) != len)
		return bad_param(fail, "invalid params: '%s' holds a NUL byte", key);
	if ((*out)[0] != '/')
		return bad_param(fail, "invalid params: '%s' must be an absolute path", key);
	return 0;
}

/* ---- exec ---- */

static int exec_env(struct json_object *v, struct command_spec *spec, struct core_error *fail)
{
	if (!json_object_is_type(v, json_type_object))
		return bad_param(fail, "invalid params: 'env' must be an object of strings");
	spec->env = calloc((size_t)json_object_object_length(v) + 1, sizeof(char *));
	CHECK(spec->env != NULL);
	size_t k = 0;
	json_object_object_foreach(v, key, val)
	{
		if (!*key || strchr(key, '=') || strlen(key) > 256)
			return bad_param(
				fail, "invalid params: env name '%.64s' is empty, too long or has '='", key);
		if (!json_object_is_type(val, json_type_string) ||
		    strlen(json_object_get_string(val)) != (size_t)json_object_get_string_len(val))
			return bad_param(fail, "invalid params: env '%.64s' must be a string without NUL",
					 key);
		char *kv;
		CHECK(asprintf(&kv, "%s=%s", key, json_object_get_string(val)) >= 0);
		spec->env[k++] = kv;
	}
	return 0;
}

int rpc_exec_spec(struct json_object *params, uint64_t max_output, struct command_spec *spec, bool *detached,
		  struct core_error *fail)
{
	const char *command = NULL, *cwd = NULL, *in = NULL;
	size_t clen = 0, cwdlen = 0, inlen = 0;
	uint64_t timeout = 0;
	bool sudo = false;
	struct json_object *v;
	memset(spec, 0, sizeof(*spec));
	*detached = false;
	if (rpc_param_string(params, "command", true, &command, &clen, fail) != 0)
		goto fail;
	if (strlen(command) != clen) {
		bad_param(fail, "invalid params: 'command' holds a NUL byte");
		goto fail;
	}
	if (strspn(command, " \t\r\n") == clen) {
		bad_param(fail, "invalid params: 'command' is empty");
		goto fail;
	}
	spec->shell = strdup(command);
	spec->command_json =
		strdup(json_object_to_json_string_ext(member(params, "command"), JSON_C_TO_STRING_PLAIN));
	CHECK(spec->shell && spec->command_json);
	spec->max_output_bytes = max_output;
	if ((v = member(params, "env")) && exec_env(v, spec, fail) != 0)
		goto fail;
	if (rpc_param_string(params, "working_dir", false, &cwd, &cwdlen, fail) != 0)
		goto fail;
	if (cwd && *cwd) {
		if (strlen(cwd) != cwdlen || cwdlen > 4096) {
			bad_param(fail, "invalid params: 'working_dir' must be a path without NUL");
			goto fail;
		}
		spec->cwd = strdup(cwd);
	}
	if (rpc_param_uint(params, "timeout", 7 * 86400, &timeout, fail) != 0)
		goto fail;
	spec->timeout_ms = (int64_t)timeout * 1000;
	if (rpc_param_bool(params, "sudo", &sudo, fail) != 0)
		goto fail;
	if (sudo)
		spec->user = strdup("root");
	/* the spec's name; SDK releases before it sent "stdin" */
	const char *in_key = member(params, "stdin_data") ? "stdin_data" : "stdin";
	if (rpc_param_string(params, in_key, false, &in, &inlen, fail) != 0)
		goto fail;
	if (in) {
		spec->stdin_data = malloc(inlen + 1);
		CHECK(spec->stdin_data != NULL);
		memcpy(spec->stdin_data, in, inlen + 1);
		spec->stdin_len = inlen;
	}
	if (rpc_param_bool(params, "detached", detached, fail) != 0)
		goto fail;
	return 0;
fail:
	command_spec_free(spec);
	memset(spec, 0, sizeof(*spec));
	return -1;
}

/* ---- output as text ---- */

/* Bytes of the UTF-8 sequence a lead byte starts (0: not a lead byte). */
static size_t seq_len(unsigned char c)
{
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		return 2;
	if (c >= 0xE0 && c <= 0xEF)
		return 3;
	if (c >= 0xF0 && c <= 0xF4)
		return 4;
	return 0;
}

struct json_object *rpc_text(const uint8_t *data, size_t len)
{
	size_t valid = utf8_valid_prefix((const char *)data, len);
	if (valid == len)
		return json_object_new_string_len(len ? (const char *)data : "", (int)len);
	char *buf = malloc(len * 3 + 1);
	CHECK(buf != NULL);
	size_t o = 0;
	for (size_t i = 0; i < len;) {
		size_t n = utf8_valid_prefix((const char *)data + i, len - i);
		memcpy(buf + o, data + i, n);
		o += n;
		i += n;
		if (i == len)
			break;
		if (data[i] == 0) { /* valid, only not C text: JSON escapes it */
			buf[o++] = 0;
		} else {
			memcpy(buf + o, "\xEF\xBF\xBD", 3);
			o += 3;
		}
		i++;
	}
	struct json_object *s = json_object_new_string_len(buf, (int)o);
	free(buf);
	return s;
}

size_t rpc_text_whole(const uint8_t *data, size_t len)
{
	/* the last lead byte among the final three: is its sequence short? */
	for (size_t back = 1; back <= 3 && back <= len; back++) {
		unsigned char c = data[len - back];
		if ((c & 0xC0) == 0x80)
			continue; /* a continuation byte: look further back */
		return seq_len(c) > back ? len - back : len;
	}
	return len;
}
