/* Private previews' tokens, minted by the core: the sandbox must exist and
 * be live; the port and the lifetime are checked here for every dialect. */
#include <inttypes.h>
#include <stdlib.h>

#include "core/check.h"
#include "core/clock.h"
#include "core/config.h"
#include "internal.h"
#include "preview/token.h"

static void token_sandbox(struct sandbox_ref *ref, const struct core_error *err, void *arg);

void sandbox_service_set_preview_secret(struct sandbox_service *svc, const struct preview_secret *secret)
{
	svc->preview_secret = secret;
}

struct sandbox_call *sandbox_preview_token(struct sandbox_service *svc, const char *id, int port,
					   int64_t ttl_s, sandbox_result_fn cb, void *arg)
{
	struct sandbox_call *call = call_new(svc, cb, arg);
	int64_t max_s = svc->cfg->preview_token_max_ttl_ms / 1000;
	if (port < 1 || port > 65535) {
		call_fail_later(call, CORE_INVALID, "invalid_port", "'port' must be 1..65535");
		return call;
	}
	if (ttl_s < 1 || ttl_s > max_s) {
		call_fail_later(call, CORE_INVALID, "invalid_ttl",
				"'ttl_seconds' must be 1..%" PRId64 " (SANDBAR_PREVIEW_TOKEN_MAX_TTL)",
				max_s);
		return call;
	}
	if (!svc->preview_secret) {
		call_fail_later(call, CORE_UNAVAILABLE, "no_preview_secret",
				"this server has no preview secret");
		return call;
	}
	call->token_port = port;
	call->token_ttl_s = ttl_s;
	call->wait = registry_acquire(svc->reg, id, REGISTRY_LIVE, token_sandbox, call);
	return call;
}

static void token_sandbox(struct sandbox_ref *ref, const struct core_error *err, void *arg)
{
	struct sandbox_call *call = arg;
	call->wait = NULL;
	if (err) {
		call_fail(call, err);
		return;
	}
	const struct sandbox *sb = sandbox_ref_get(ref);
	int64_t expires_s = clock_real_ms() / 1000 + call->token_ttl_s;
	char token[PREVIEW_TOKEN_MAX];
	preview_token_mint(token, call->svc->preview_secret, sb->id, call->token_port, expires_s);
	struct sandbox_result r = { .sb = sb, .token = token, .token_expires_s = expires_s };
	call_finish(call, &r);
	sandbox_ref_put(ref);
}
