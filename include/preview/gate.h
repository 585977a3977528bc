/* Private previews at the proxy's door: a request's token (the query once,
 * the X-Sandbar-Preview-Token header, or our cookie) checked for the
 * sandbox and port its host names, and taken out of what the app would get.
 * Decides only: the proxy answers. No I/O. */
#ifndef SANDBAR_PREVIEW_GATE_H
#define SANDBAR_PREVIEW_GATE_H

#include <stdbool.h>
#include <stdint.h>

#include "preview/host.h"
#include "preview/token.h"

struct http_request;

#define PREVIEW_TOKEN_HEADER "X-Sandbar-Preview-Token"
#define PREVIEW_TOKEN_QUERY  "sandbar_token"
#define PREVIEW_TOKEN_COOKIE "sandbar_preview"

enum preview_gate_verdict {
	PREVIEW_GATE_PASS,     /* forward it (our header and cookie are out of it now) */
	PREVIEW_GATE_REDIRECT, /* 302 to location: the query held a token (set_cookie: "" or the cookie) */
	PREVIEW_GATE_REQUIRED, /* private, no token: 401 preview_token_required */
	PREVIEW_GATE_INVALID,  /* malformed, or another sandbox's or port's: 403 preview_token_invalid */
	PREVIEW_GATE_EXPIRED,  /* 403 preview_token_expired */
};

struct preview_gate {
	const char *location; /* REDIRECT: the target without the token, in the request's memory */
	char set_cookie[PREVIEW_TOKEN_MAX + 96];
};

/* Whatever the sandbox, our header and cookie are taken out of req and a
 * query token is redirected away (a public sandbox's without a cookie). A
 * private one's request needs a good token for t (secret NULL: none is);
 * a query token wins over the header, the header over the cookie. */
enum preview_gate_verdict preview_gate_check(struct http_request *req, const struct preview_secret *secret,
					     const struct preview_target *t, bool is_private, int64_t now_s,
					     struct preview_gate *out);

#endif
