/* SHA-1 (FIPS vectors and the RFC 6455 handshake example) and base64 (RFC 4648
 * vectors, strict decoding). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/base64.h"
#include "core/sha1.h"

static void hex(const unsigned char *d, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void test_sha1_vectors(void **state)
{
	unsigned char d[20];
	char h[41];
	sha1("abc", 3, d);
	hex(d, 20, h);
	assert_string_equal(h, "a9993e364706816aba3e25717850c26c9cd0d89d");
	sha1("", 0, d);
	hex(d, 20, h);
	assert_string_equal(h, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
	const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	sha1(m, strlen(m), d);
	hex(d, 20, h);
	assert_string_equal(h, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
	/* RFC 6455 section 1.3 */
	const char *k = "dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	sha1(k, strlen(k), d);
	char b64[64];
	base64_encode(d, 20, b64);
	assert_string_equal(b64, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_base64(void **state)
{
	static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	static const char *const enc[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
	for (size_t i = 0; i < 7; i++) {
		char out[16];
		unsigned char back[16];
		assert_int_equal(base64_encode(plain[i], strlen(plain[i]), out), strlen(enc[i]));
		assert_string_equal(out, enc[i]);
		long n = base64_decode(enc[i], strlen(enc[i]), back);
		assert_int_equal(n, (long)strlen(plain[i]));
		assert_memory_equal(back, plain[i], (size_t)n);
	}
	unsigned char b[16];
	assert_int_equal(base64_decode("Zm9v!", 5, b), -1);
	assert_int_equal(base64_decode("Z", 1, b), -1);
	assert_int_equal(base64_decode("Zh==", 4, b), -1); /* non-zero leftover bits */
	unsigned char bin[3] = { 0x00, 0xff, 0x80 };
	char out[8];
	base64_encode(bin, 3, out);
	assert_string_equal(out, "AP+A");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha1_vectors),
		cmocka_unit_test(test_base64),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
