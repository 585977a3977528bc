/* SHA-256 (FIPS 180-4), incremental: content-addressed image tags; and
 * HMAC-SHA256: signed preview tokens. */
#ifndef SANDBAR_CORE_SHA256_H
#define SANDBAR_CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct sha256 {
	uint32_t h[8];
	uint64_t len;
	unsigned char buf[64];
	size_t buflen;
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
void sha256_final(struct sha256 *s, unsigned char out[32]);
/* HMAC-SHA256 (RFC 2104) of msg under key. */
void hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len, unsigned char out[32]);
/* out gets 64 lowercase hex digits and a NUL. */
void sha256_hex(const unsigned char digest[32], char out[65]);

#endif
