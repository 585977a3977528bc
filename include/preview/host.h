/* Preview host names: `<port>-<sandbox id>.<domain>` (the shape E2B, Daytona
 * and the Hermes SDK's Domain(port) use; `*.localhost` resolves to loopback
 * with no DNS). Parsing a request's Host header, and the public URL of one
 * sandbox port. No I/O, no allocation. */
#ifndef SANDBAR_PREVIEW_HOST_H
#define SANDBAR_PREVIEW_HOST_H

#include <stddef.h>

#include "core/check.h"

enum preview_host_kind {
	PREVIEW_HOST_NONE, /* not under the preview domain: the API's */
	PREVIEW_HOST_OK,   /* a sandbox port */
	PREVIEW_HOST_BAD,  /* under the preview domain, but no `<port>-<uuid>` label: 404 */
};

struct preview_target {
	int port;	     /* 1..65535 */
	char sandbox_id[37]; /* lower case */
};

/* host: a Host header's value (a trailing `:port` and a trailing dot are
 * allowed; case does not matter), len its length. domain: lower case, no
 * leading or trailing dot. Fills *out only for PREVIEW_HOST_OK. */
enum preview_host_kind preview_host_parse(const char *host, size_t len, const char *domain,
					  struct preview_target *out);

/* What the outside world calls the preview: scheme "http" or "https";
 * public_port 0 when it is the scheme's default (80, 443: left out). */
struct preview_public {
	const char *scheme;
	const char *domain;
	int public_port;
};

/* The domain as configured, made canonical (lower case, no dots at its
 * ends) into domain_buf; the public port left out (0) when it is the
 * scheme's default. pub->domain points into domain_buf ("" : no previews). */
void preview_public_init(struct preview_public *pub, char *domain_buf, size_t cap, const char *domain,
			 const char *scheme, int public_port);

/* `<scheme>://<port>-<id>.<domain>[:<public port>]` into buf: its length, or
 * -1 when cap is too small. */
MUST_USE int preview_url(char *buf, size_t cap, const struct preview_public *pub, const char *sandbox_id,
			 int port);
/* `<id>.<domain>`: the Hermes `preview_host` (a port's host is `<port>-` and it). */
MUST_USE int preview_host_of(char *buf, size_t cap, const struct preview_public *pub, const char *sandbox_id);

#endif
