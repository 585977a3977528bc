/* Random bytes as an exec's shell string: split into words only when no
 * shell would read them differently. No crash, no leak; every word comes from
 * the input, and a split string holds no byte a shell interprets outside
 * single quotes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "shellwords.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (memchr(data, 0, size))
		return 0; /* a shell string never holds NUL (refused before) */
	char **argv = shellwords_split((const char *)data, size);
	if (!argv)
		return 0;
	CHECK(argv[0] && argv[0][0] && !strchr(argv[0], '='));
	size_t total = 0;
	for (size_t i = 0; argv[i]; i++)
		total += strlen(argv[i]);
	CHECK(total <= size);
	/* outside quotes, only word bytes and blanks */
	bool quoted = false;
	for (size_t i = 0; i < size; i++) {
		if (data[i] == '\'')
			quoted = !quoted;
		else if (!quoted)
			CHECK(!strchr("$`;|&<>()*?[]~{}\n\"\\#!", data[i]));
	}
	CHECK(!quoted);
	free(argv);
	return 0;
}
