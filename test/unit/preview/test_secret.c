/* The preview secret: a configured one is its string's SHA-256; else 32
 * random bytes made once (0600) in the data folder and read back after. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/sha256.h"
#include "preview/secret.h"

static void test_configured(void **state)
{
	(void)state;
	struct preview_secret s;
	char err[256];
	assert_int_equal(preview_secret_load(&s, "hunter2", "/nonexistent/never/made", err, sizeof(err)), 0);
	unsigned char want[32];
	struct sha256 h;
	sha256_init(&h);
	sha256_update(&h, "hunter2", 7);
	sha256_final(&h, want);
	assert_memory_equal(s.key, want, 32);
}

static void test_made_then_kept(void **state)
{
	(void)state;
	char dir[] = "/tmp/sandbar-secret-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char data[64], path[128];
	snprintf(data, sizeof(data), "%s/data", dir);
	snprintf(path, sizeof(path), "%s/%s", data, PREVIEW_SECRET_FILE);
	struct preview_secret a, b;
	char err[256];
	assert_int_equal(preview_secret_load(&a, NULL, data, err, sizeof(err)), 0);
	struct stat st;
	assert_int_equal(stat(data, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, 32);
	assert_int_equal(preview_secret_load(&b, "", data, err, sizeof(err)), 0); /* "" is unset */
	assert_memory_equal(a.key, b.key, 32);

	/* a file of another size is refused, not replaced */
	int fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	close(fd);
	assert_int_equal(preview_secret_load(&b, NULL, data, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not 32 bytes"));
	unlink(path);
	rmdir(data);

	/* a data folder that cannot be made */
	snprintf(data, sizeof(data), "%s/no/such", dir);
	assert_int_equal(preview_secret_load(&b, NULL, data, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "SANDBAR_DATA_DIR"));
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_configured),
		cmocka_unit_test(test_made_then_kept),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
