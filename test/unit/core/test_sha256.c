/* SHA-256 against the FIPS 180-4 example vectors and known digests at the
 * padding edges (55, 56, 63, 64, 65, 119, 120 bytes), whole and fed in pieces. */
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
	/* 55 bytes is the longest message whose padding fits its one block; 56
	 * needs a second block, 64 a whole block of padding; 119 and 120 are the
	 * same edges in the second block. Digests of bytes 0, 1, 2... from
	 * python3 hashlib (and sha256sum), fed whole and in pieces. */
	static const struct {
		size_t len;
		const char *hex;
	} v[] = {
		{ 55, "463eb28e72f82e0a96c0a4cc53690c571281131f672aa229e0d45ae59b598b59" },
		{ 56, "da2ae4d6b36748f2a318f23e7ab1dfdf45acdc9d049bd80e59de82a60895f562" },
		{ 63, "29af2686fd53374a36b0846694cc342177e428d1647515f078784d69cdb9e488" },
		{ 64, "fdeab9acf3710362bd2658cdc9a29e8f9c757fcf9811603a8c447cd1d9151108" },
		{ 65, "4bfd2c8b6f1eec7a2afeb48b934ee4b2694182027e6d0fc075074f2fabb31781" },
		{ 119, "da18797ed7c3a777f0847f429724a2d8cd5138e6ed2895c3fa1a6d39d18f7ec6" },
		{ 120, "f52b23db1fbb6ded89ef42a23ce0c8922c45f25c50b568a93bf1c075420bbb7c" },
	};
	(void)state;
	unsigned char buf[130];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)i;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t chunks[] = { v[i].len, 1, 7, 55, 56, 64 };
		for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
			char hex[65];
			hex_of(buf, v[i].len, chunks[c], hex);
			assert_string_equal(hex, v[i].hex);
		}
	}
	/* and every length around them: whole against byte at a time */
	for (size_t len = 50; len <= sizeof(buf); len++) {
		char a[65], b[65];
		hex_of(buf, len, len, a);
		hex_of(buf, len, 1, b);
		assert_string_equal(a, b);
	}
}

/* RFC 4231 test cases 1, 2, 3 and 6 (a key longer than the block). */
static void test_hmac_vectors(void **state)
{
	unsigned char key1[20], key3[20], msg3[50], key6[131], mac[32];
	char hex[65];
	(void)state;
	memset(key1, 0x0b, sizeof(key1));
	hmac_sha256(key1, sizeof(key1), "Hi There", 8, mac);
	sha256_hex(mac, hex);
	assert_string_equal(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
	hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
	sha256_hex(mac, hex);
	assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	memset(key3, 0xaa, sizeof(key3));
	memset(msg3, 0xdd, sizeof(msg3));
	hmac_sha256(key3, sizeof(key3), msg3, sizeof(msg3), mac);
	sha256_hex(mac, hex);
	assert_string_equal(hex, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
	memset(key6, 0xaa, sizeof(key6));
	static const char msg6[] = "Test Using Larger Than Block-Size Key - Hash Key First";
	hmac_sha256(key6, sizeof(key6), msg6, sizeof(msg6) - 1, mac);
	sha256_hex(mac, hex);
	assert_string_equal(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_million_a),
		cmocka_unit_test(test_padding_edges),
		cmocka_unit_test(test_hmac_vectors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
