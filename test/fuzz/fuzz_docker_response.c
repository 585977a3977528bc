/* Random bytes as a Docker HTTP response into the client's parser. The first
 * byte only steers: byte % 3 picks the call (whole JSON, stream, upgrade) and
 * byte / 3 the size of the pieces it arrives in (0: at once); the parser gets
 * the bytes after it, then EOF. So "0HTTP/1.1 ..." is a JSON call fed 16 bytes
 * at a time, "1HTTP/1.1 ..." a stream, "2HTTP/1.1 ..." an upgrade. */
#include <stddef.h>
#include <stdint.h>

/* docker_response_fuzz: the response parser entry */
#include "../../src/docker/client_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	enum docker_fuzz_mode mode = (enum docker_fuzz_mode)(data[0] % DOCKER_FUZZ_MODE_MAX);
	size_t split = data[0] / DOCKER_FUZZ_MODE_MAX;
	docker_response_fuzz(mode, data + 1, size - 1, split);
	return 0;
}
