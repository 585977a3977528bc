/* Path rules: normalisation, and every way out refused (.., encoded dots,
 * NUL, relative, over-long), plus file names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "files/path.h"
#include "files/sniff.h"

static char out[FILES_PATH_MAX + 1];

static void ok(const char *in, const char *want)
{
	const char *why;
	assert_int_equal(files_path_normalize(in, strlen(in), out, &why), 0);
	assert_string_equal(out, want);
}

static void bad(const char *in, size_t len)
{
	const char *why = NULL;
	assert_int_equal(files_path_normalize(in, len, out, &why), -1);
	assert_non_null(why);
}

static void test_normalise(void **state)
{
	ok("/", "/");
	ok("//", "/");
	ok("/workspace", "/workspace");
	ok("/workspace/", "/workspace");
	ok("//workspace//a/./b/.", "/workspace/a/b");
	ok("/./.", "/");
	ok("/a b/caf\xC3\xA9", "/a b/caf\xC3\xA9");
	ok("/a/...", "/a/...");
	ok("/a/..b", "/a/..b");
	ok("/a/%41", "/a/%41");
}

static void test_refused(void **state)
{
	bad("", 0);
	bad("workspace", 9);
	bad("./x", 3);
	bad("/a/../b", 7);
	bad("/..", 3);
	bad("/a/..", 5);
	bad("/a\0b", 4);
	bad("/a/%2e%2e/b", 11);
	bad("/a/%2E%2e", 9);
	bad("/a/.%2e", 7);
	bad("/a/x%2fy", 8);
	bad("/a/x%00", 7);
	bad("/a/\xC0\xAE\xC0\xAE/b", 9); /* overlong dots */
	bad("/a/\xff", 4);
	char name[300];
	memset(name, 'n', sizeof(name));
	name[0] = '/';
	bad(name, 257); /* a 256-byte name */
	ok("/nnnn", "/nnnn");
	static char big[FILES_PATH_MAX + 2];
	for (size_t i = 0; i < sizeof(big) - 1; i++)
		big[i] = i % 100 == 0 ? '/' : 'x';
	bad(big, FILES_PATH_MAX + 1);
	bad(big, sizeof(big) - 1);
	size_t len = FILES_PATH_MAX;
	const char *why;
	assert_int_equal(files_path_normalize(big, len, out, &why), 0);
}

static void test_names(void **state)
{
	assert_null(files_name_check("a.txt", 5));
	assert_null(files_name_check("with space \xC3\xA9", 13));
	assert_null(files_name_check("...", 3));
	assert_non_null(files_name_check("", 0));
	assert_non_null(files_name_check(".", 1));
	assert_non_null(files_name_check("..", 2));
	assert_non_null(files_name_check("a/b", 3));
	assert_non_null(files_name_check("a\0b", 3));
	assert_non_null(files_name_check("%2e%2e", 6));
	char n[256];
	memset(n, 'a', sizeof(n));
	assert_null(files_name_check(n, 255));
	assert_non_null(files_name_check(n, 256));
}

static void test_join_base(void **state)
{
	assert_string_equal(files_path_base("/a/b.txt"), "b.txt");
	assert_string_equal(files_path_base("/"), "/");
	assert_int_equal(files_path_join("/", "x", out), 0);
	assert_string_equal(out, "/x");
	assert_int_equal(files_path_join("/w", "x", out), 0);
	assert_string_equal(out, "/w/x");
	static char big[FILES_PATH_MAX];
	memset(big, 'x', sizeof(big) - 1);
	big[0] = '/';
	assert_int_equal(files_path_join(big, "y", out), -1);
}

static void test_resolve_and_tar_escapes(void **state)
{
	assert_int_equal(files_path_resolve("/w/d", "f", out), 0);
	assert_string_equal(out, "/w/d/f");
	assert_int_equal(files_path_resolve("/w/d", "../x/./y", out), 0);
	assert_string_equal(out, "/w/x/y");
	assert_int_equal(files_path_resolve("/w", "../../../etc", out), 0);
	assert_string_equal(out, "/etc");
	assert_int_equal(files_path_resolve("/w", "/abs//p/", out), 0);
	assert_string_equal(out, "/abs/p");
	assert_false(files_tar_name_escapes("a/b"));
	assert_false(files_tar_name_escapes("./a/..b"));
	assert_true(files_tar_name_escapes("../a"));
	assert_true(files_tar_name_escapes("a/../../b"));
	assert_true(files_tar_name_escapes("/etc/passwd"));
	assert_false(files_tar_link_escapes("a/b/l", "../c", true));
	assert_false(files_tar_link_escapes("a/l", "../c", true)); /* resolves to ./c */
	assert_true(files_tar_link_escapes("l", "../c", true));
	assert_true(files_tar_link_escapes("a/l", "../../c", true));
	assert_true(files_tar_link_escapes("a/l", "/etc", true));
	assert_false(files_tar_link_escapes("a/h", "a/b", false));
	assert_true(files_tar_link_escapes("a/h", "../b", false));
}

static void test_sniff(void **state)
{
	assert_string_equal(files_content_type("x.bin", "\x89PNG\r\n\x1a\nrest", 12), "image/png");
	assert_string_equal(files_content_type("x.txt", "\x89PNG\r\n\x1a\nrest", 12), "image/png");
	assert_string_equal(files_content_type("a.json", "{}", 2), "application/json");
	assert_string_equal(files_content_type("a", "hello", 5), "text/plain; charset=utf-8");
	assert_string_equal(files_content_type("a", "", 0), "text/plain; charset=utf-8");
	assert_string_equal(files_content_type("a", "a\0b", 3), "application/octet-stream");
	char cd[256];
	files_content_disposition("a b.txt", cd, sizeof(cd));
	assert_string_equal(cd, "attachment; filename=\"a b.txt\"");
	files_content_disposition("q\"\\x", cd, sizeof(cd));
	assert_string_equal(cd, "attachment; filename=\"q__x\"; filename*=UTF-8''q%22%5Cx");
	files_content_disposition("caf\xC3\xA9", cd, sizeof(cd));
	assert_string_equal(cd, "attachment; filename=\"caf_\"; filename*=UTF-8''caf%C3%A9");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_normalise),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_join_base),
		cmocka_unit_test(test_resolve_and_tar_escapes),
		cmocka_unit_test(test_sniff),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
