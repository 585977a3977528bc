/* Random Host header values through the preview host parser (the bytes are
 * not NUL-terminated): an answer that names a sandbox must read back from the
 * URL preview_url writes for it. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "preview/host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const domains[] = { "preview.localhost", "p.example.com", "localhost" };
	for (size_t d = 0; d < ARRAY_LEN(domains); d++) {
		struct preview_target t;
		enum preview_host_kind k = preview_host_parse((const char *)data, size, domains[d], &t);
		CHECK(k == PREVIEW_HOST_NONE || k == PREVIEW_HOST_OK || k == PREVIEW_HOST_BAD);
		if (k != PREVIEW_HOST_OK)
			continue;
		CHECK(t.port >= 1 && t.port <= 65535 && strlen(t.sandbox_id) == 36);
		char url[256];
		struct preview_public pub = { "http", domains[d], 0 };
		CHECK(preview_url(url, sizeof(url), &pub, t.sandbox_id, t.port) > 0);
		struct preview_target back;
		const char *host = url + strlen("http://");
		CHECK(preview_host_parse(host, strlen(host), domains[d], &back) == PREVIEW_HOST_OK);
		CHECK(back.port == t.port && strcmp(back.sandbox_id, t.sandbox_id) == 0);
	}
	return 0;
}
