/* Base64 (RFC 4648, with padding): binary output into JSON, the WebSocket
 * handshake. */
#ifndef SANDBAR_CORE_BASE64_H
#define SANDBAR_CORE_BASE64_H

#include <stddef.h>

/* Bytes base64_encode writes for len input bytes, NUL included. */
static inline size_t base64_encoded_size(size_t len)
{
	return (len + 2) / 3 * 4 + 1;
}
/* Writes the encoding and a NUL into out (base64_encoded_size(len) bytes); returns its length. */
size_t base64_encode(const void *data, size_t len, char *out);
/* The encoding in a new NUL-terminated buffer (free() it), its length in *n. */
char *base64_encode_alloc(const void *data, size_t len, size_t *n);
/* Decodes s (padding optional, no whitespace) into out (at least slen / 4 * 3 + 3
 * bytes); returns the length, or -1 on a malformed input. */
long base64_decode(const char *s, size_t slen, unsigned char *out);

#endif
