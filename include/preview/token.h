/* Private previews' tokens: `<port>.<expires>.<mac>`, the port and the Unix
 * second it expires at, signed with HMAC-SHA256 under the server's secret
 * over the sandbox id, the port and the expiry (64 hex digits). A token
 * opens one port of one sandbox until it expires; it carries no sandbox id
 * (the host names it) and nothing secret. No I/O. */
#ifndef SANDBAR_PREVIEW_TOKEN_H
#define SANDBAR_PREVIEW_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "core/check.h"

#define PREVIEW_TOKEN_MAX 96 /* "65535." + 20 digits + "." + 64 + NUL, rounded up */

enum preview_token_verdict {
	PREVIEW_TOKEN_OK,
	PREVIEW_TOKEN_MALFORMED, /* not `<port>.<expires>.<64 hex>` */
	PREVIEW_TOKEN_WRONG,	 /* another port, or a signature that does not match */
	PREVIEW_TOKEN_EXPIRED,	 /* well signed, but past its time */
};

struct preview_secret {
	unsigned char key[32];
};

/* Writes the token for (sandbox_id, port) expiring at expires_s into out. */
void preview_token_mint(char out[PREVIEW_TOKEN_MAX], const struct preview_secret *secret,
			const char *sandbox_id, int port, int64_t expires_s);
/* token: len bytes, not NUL-terminated. The signature is compared in
 * constant time. */
enum preview_token_verdict preview_token_check(const char *token, size_t len,
					       const struct preview_secret *secret, const char *sandbox_id,
					       int port, int64_t now_s);

#endif
