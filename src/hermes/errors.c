/* The Hermes dialect's one error table: a core error's kind (refined by a few
 * stable codes) gives the HTTP status, which is also the envelope's "code"
 * (the SDK ignores the status and shows "atlas error <code>: <message>"),
 * and the JSON-RPC error code of the same failure on the WebSocket. */
#include <string.h>

#include "internal.h"

static const struct {
	int status;
	int rpc;
} kind_codes[CORE_ERR_MAX] = {
	[CORE_OK] = { 200, 0 },
	[CORE_INVALID] = { 400, HERMES_RPC_INVALID_PARAMS },
	[CORE_FORBIDDEN] = { 403, -32003 },
	[CORE_NOT_FOUND] = { 404, HERMES_RPC_NOT_FOUND },
	[CORE_CONFLICT] = { 409, -32009 },
	[CORE_GONE] = { 410, -32010 },
	[CORE_LIMIT] = { 429, -32029 },
	[CORE_CAPACITY] = { 503, -32053 },
	[CORE_UNAVAILABLE] = { 503, -32053 },
	[CORE_UNSUPPORTED] = { 501, -32051 },
	[CORE_INTERNAL] = { 500, HERMES_RPC_INTERNAL },
};

/* Codes whose status is not their kind's (the native table's refinements). */
static const struct {
	const char *code;
	int status;
	int rpc;
} code_codes[] = {
	{ "too_large", 413, -32013 },	 { "insufficient_storage", 507, -32057 },
	{ "timeout", 504, -32004 },	 /* a command's own timeout (exec "timeout") */
	{ "wake_timeout", 504, -32004 }, /* a stopped sandbox did not wake in time */
	{ "docker_error", 502, -32052 },
};

static int lookup(const struct core_error *e, bool rpc)
{
	for (size_t i = 0; i < ARRAY_LEN(code_codes); i++)
		if (e->code && strcmp(e->code, code_codes[i].code) == 0)
			return rpc ? code_codes[i].rpc : code_codes[i].status;
	if ((unsigned)e->kind >= CORE_ERR_MAX || e->kind == CORE_OK)
		return rpc ? HERMES_RPC_INTERNAL : 500;
	return rpc ? kind_codes[e->kind].rpc : kind_codes[e->kind].status;
}

int hermes_http_status(const struct core_error *e)
{
	return lookup(e, false);
}

int hermes_rpc_code(const struct core_error *e)
{
	return lookup(e, true);
}
