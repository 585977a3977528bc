/* Random bytes as an app's answer to a proxied request, into the preview
 * proxy's parser (src/preview/answer_parse.c). The first byte only steers:
 * bit 0 says the request was a HEAD, the rest (byte >> 1) the size of the
 * pieces the answer arrives in (0: at once), so a head or a chunk split
 * anywhere is seen. An answer that completes with bytes after it on a
 * connection kept alive is followed by the next answer on the same parser,
 * as a kept upstream connection is reused; then EOF. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "answer_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t sink; /* what the callbacks saw, so that nothing is optimised away */

static void on_head(struct up_answer *a, int status, int64_t length, void *arg)
{
	/* what forward_headers reads of it */
	for (int i = 0; i < up_answer_count(a); i++)
		sink += strlen(up_answer_name(a, i)) + strlen(up_answer_value(a, i));
	sink += (size_t)status + (size_t)length;
}

static void on_body(const char *at, size_t len, void *arg)
{
	if (len)
		sink += (unsigned char)at[0] + (unsigned char)at[len - 1] + len;
}

static const struct up_answer_ops ops = { .head = on_head, .body = on_body };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	bool head_method = data[0] & 1;
	size_t piece = data[0] >> 1;
	const char *p = (const char *)data + 1;
	size_t left = size - 1;
	struct up_answer a = { 0 };
	up_answer_init(&a, head_method, &ops, NULL);
	enum up_answer_step step = UP_ANSWER_MORE;
	while (left > 0) {
		size_t n = piece && piece < left ? piece : left, used = 0;
		step = up_answer_feed(&a, p, n, &used);
		if (used > n)
			__builtin_trap();
		p += used;
		left -= used;
		if (step == UP_ANSWER_COMPLETE) {
			if (!up_answer_keep_alive(&a))
				break;
			up_answer_init(&a, head_method, &ops,
				       NULL); /* the next exchange on the kept connection */
			step = UP_ANSWER_MORE;
			continue;
		}
		if (step != UP_ANSWER_MORE) {
			sink += (size_t)up_answer_status(&a) + strlen(up_answer_error(&a));
			break;
		}
		if (used < n)
			__builtin_trap(); /* MORE takes everything */
	}
	if (step == UP_ANSWER_MORE)
		sink += up_answer_eof(&a);
	up_answer_clear(&a);
	return 0;
}
