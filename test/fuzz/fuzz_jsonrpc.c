/* Random bytes as one JSON-RPC message off the Hermes WebSocket: parsed with
 * §8's strictness, then read as every method reads its params (exec's spec,
 * strings, paths, integers, booleans), and the bytes as output text. No
 * crash, no leak, and the verdicts hold together. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rpc_request r;
	enum rpc_parse_result v = rpc_parse((const char *)data, size, &r);
	if (v == RPC_INVALID) {
		CHECK(r.message != NULL && r.code <= -32600 && r.code >= -32700);
	} else {
		CHECK(r.method && *r.method && json_object_is_type(r.params, json_type_object));
		CHECK(v == RPC_NOTIFICATION || json_object_is_type(r.id, json_type_int));
		struct core_error fail;
		struct command_spec spec;
		bool detached;
		if (rpc_exec_spec(r.params, 1 << 20, &spec, &detached, &fail) == 0) {
			CHECK(spec.shell && *spec.shell && spec.command_json && !spec.argv);
			command_spec_free(&spec);
		} else {
			CHECK(fail.kind == CORE_INVALID &&
			      hermes_rpc_code(&fail) == HERMES_RPC_INVALID_PARAMS);
		}
		const char *s;
		size_t len;
		uint64_t u = 0;
		bool b;
		static const char *const keys[] = {
			"path", "cmd_id", "signal", "content", "data", "old_text"
		};
		for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
			if (rpc_param_string(r.params, keys[i], false, &s, &len, &fail) == 0 && i == 0 &&
			    rpc_param_path(r.params, keys[i], &s, &fail) == 0)
				CHECK(s[0] == '/' && strlen(s) == len);
		}
		if (rpc_param_uint(r.params, "chunk_size", 1 << 22, &u, &fail) == 0)
			CHECK(u <= 1 << 22);
		if (rpc_param_uint(r.params, "mode", 07777, &u, &fail) != 0 ||
		    rpc_param_bool(r.params, "detached", &b, &fail) != 0)
			CHECK(fail.kind == CORE_INVALID);
	}
	rpc_request_clear(&r);
	/* output bytes as text: valid UTF-8 out, a cut character held back */
	struct json_object *t = rpc_text(data, size);
	json_object_put(t);
	size_t whole = rpc_text_whole(data, size);
	CHECK(whole <= size && size - whole <= 3);
	return 0;
}
