/* Random bytes as a Docker HTTP response into the client's parser (whole-JSON
 * and streamed calls), fed in splits chosen by the first byte, then EOF. */
#include <stddef.h>
#include <stdint.h>

/* The client is compiled in so the fuzzer instruments the parser code. */
#include "../../src/docker/client.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t split = size ? data[0] >> 1 : 0;
	docker_response_fuzz(data, size, split);
	return 0;
}
