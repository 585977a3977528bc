/* SHA-1 (FIPS 180-4), only for the WebSocket handshake (RFC 6455 fixes it);
 * never for anything that needs collision resistance. */
#ifndef SANDBAR_CORE_SHA1_H
#define SANDBAR_CORE_SHA1_H

#include <stddef.h>

void sha1(const void *data, size_t len, unsigned char out[20]);

#endif
