/* Tar headers: an archive with a file, a dir, a long name and a symlink is
 * listed by tar(1), and the header fields parse back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "docker/tar.h"

static char long_name[160];

static void build_archive(struct evbuffer *out)
{
	struct tar_entry dir = { .name = "dir/", .type = TAR_DIR, .mode = 0755, .mtime = 1700000000 };
	struct tar_entry file = {
		.name = "dir/hello.txt", .type = TAR_FILE, .size = 6, .mode = 0644, .mtime = 1700000000
	};
	memset(long_name, 'a', sizeof(long_name) - 1);
	memcpy(long_name, "dir/", 4);
	struct tar_entry longf = { .name = long_name, .type = TAR_FILE, .size = 1000, .mode = 0600 };
	struct tar_entry link = {
		.name = "link", .linkname = "dir/hello.txt", .type = TAR_SYMLINK, .mode = 0777
	};
	assert_int_equal(tar_write_header(out, &dir), 0);
	assert_int_equal(tar_write_header(out, &file), 0);
	evbuffer_add(out, "hello\n", 6);
	tar_write_padding(out, 6);
	assert_int_equal(tar_write_header(out, &longf), 0);
	char big[1000];
	memset(big, 'x', sizeof(big));
	evbuffer_add(out, big, sizeof(big));
	tar_write_padding(out, sizeof(big));
	assert_int_equal(tar_write_header(out, &link), 0);
	tar_write_end(out);
}

static void test_fields_parse_back(void **state)
{
	struct evbuffer *out = evbuffer_new();
	build_archive(out);
	size_t len = evbuffer_get_length(out);
	assert_int_equal(len % 512, 0);
	const char *a = (const char *)evbuffer_pullup(out, -1);
	/* first block: the directory */
	assert_string_equal(a, "dir/");
	assert_int_equal(a[156], '5');
	assert_memory_equal(a + 257,
			    "ustar\0"
			    "00",
			    8);
	unsigned sum = 0;
	for (int i = 0; i < 512; i++)
		sum += (i >= 148 && i < 156) ? ' ' : (unsigned char)a[i];
	assert_int_equal(strtoul(a + 148, NULL, 8), sum);
	/* second: the file with its size */
	assert_string_equal(a + 512, "dir/hello.txt");
	assert_int_equal(strtoull(a + 512 + 124, NULL, 8), 6);
	assert_memory_equal(a + 1024, "hello\n", 6);
	/* then the PAX header for the long name */
	assert_int_equal(a[1536 + 156], 'x');
	char rec[200];
	snprintf(rec, sizeof(rec), "%zu path=%s\n", strlen(long_name) + 10, long_name);
	assert_memory_equal(a + 2048, rec, strlen(rec));
	evbuffer_free(out);
}

static void test_tar_lists_it(void **state)
{
	char path[] = "/tmp/sandbar-tar-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	struct evbuffer *out = evbuffer_new();
	build_archive(out);
	while (evbuffer_get_length(out) > 0)
		assert_true(evbuffer_write(out, fd) > 0);
	close(fd);
	evbuffer_free(out);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "tar -tvf %s 2>&1", path);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	char listing[4096] = { 0 };
	size_t n = fread(listing, 1, sizeof(listing) - 1, p);
	listing[n] = '\0';
	assert_int_equal(pclose(p), 0);
	unlink(path);
	assert_non_null(strstr(listing, "dir/hello.txt"));
	assert_non_null(strstr(listing, long_name));
	assert_non_null(strstr(listing, "link -> dir/hello.txt"));
	assert_non_null(strstr(listing, "drwxr-xr-x"));
	assert_non_null(strstr(listing, " 1000 "));
}

static void test_invalid_entries(void **state)
{
	struct evbuffer *out = evbuffer_new();
	struct tar_entry noname = { .name = "", .type = TAR_FILE };
	struct tar_entry nolink = { .name = "l", .type = TAR_SYMLINK };
	assert_int_equal(tar_write_header(out, &noname), -1);
	assert_int_equal(tar_write_header(out, &nolink), -1);
	assert_int_equal(evbuffer_get_length(out), 0);
	evbuffer_free(out);
}

static void test_huge_size_uses_pax(void **state)
{
	struct evbuffer *out = evbuffer_new();
	struct tar_entry f = { .name = "big", .type = TAR_FILE, .size = 9ULL << 30, .mode = 0644 };
	assert_int_equal(tar_write_header(out, &f), 0);
	const char *a = (const char *)evbuffer_pullup(out, -1);
	assert_int_equal(a[156], 'x');
	assert_non_null(strstr(a + 512, "size=9663676416\n"));
	evbuffer_free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fields_parse_back),
		cmocka_unit_test(test_tar_lists_it),
		cmocka_unit_test(test_invalid_entries),
		cmocka_unit_test(test_huge_size_uses_pax),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
