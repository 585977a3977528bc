/* SHA-256 against the FIPS 180-4 example vectors, whole and fed in pieces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/sha256.h"

static void hex_of(const void *data, size_t len, size_t chunk, char out[65])
{
	struct sha256 s;
	unsigned char d[32];
	const unsigned char *p = data;
	sha256_init(&s);
	for (size_t off = 0; off < len; off += chunk)
		sha256_update(&s, p + off, len - off < chunk ? len - off : chunk);
	sha256_final(&s, d);
	sha256_hex(d, out);
}

static void test_vectors(void **state)
{
	static const struct {
		const char *in;
		const char *hex;
	} v[] = {
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
		{ "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlm"
		  "nopqrsmnopqrstnopqrstu",
		  "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t chunks[] = { 1, 3, 63, 64, 65, 1000 };
		for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
			char hex[65];
			hex_of(v[i].in, strlen(v[i].in), chunks[c], hex);
			assert_string_equal(hex, v[i].hex);
		}
	}
}

static void test_million_a(void **state)
{
	(void)state;
	char *buf = malloc(1000000);
	assert_non_null(buf);
	memset(buf, 'a', 1000000);
	char hex[65];
	hex_of(buf, 1000000, 1000000, hex);
	assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	hex_of(buf, 1000000, 4097, hex);
	assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(buf);
}

static void test_padding_edges(void **state)
{
	/* 55, 56 and 64 bytes straddle the one-or-two-block padding decision;
	 * compare whole-buffer against byte-at-a-time hashing. */
	(void)state;
	unsigned char buf[130];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)i;
	for (size_t len = 50; len <= sizeof(buf); len++) {
		char a[65], b[65];
		hex_of(buf, len, len ? len : 1, a);
		hex_of(buf, len, 1, b);
		assert_string_equal(a, b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_million_a),
		cmocka_unit_test(test_padding_edges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
