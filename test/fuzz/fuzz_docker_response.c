/* Random bytes as a Docker HTTP response into the client's parser (whole-JSON
 * and streamed calls), fed in splits chosen by the first byte, then EOF. */
#include <stddef.h>
#include <stdint.h>

/* docker_response_fuzz: the response parser entry */
#include "../../src/docker/client_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t split = size ? data[0] >> 1 : 0;
	docker_response_fuzz(data, size, split);
	return 0;
}
