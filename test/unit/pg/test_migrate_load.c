/* migration_set_load on temporary folders: ordering, skipped files, bad names
 * and duplicate numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pg/migrate.h"

static void write_file(const char *dir, const char *name, const char *content);
static char *make_dir(void);
static void remove_dir(char *dir);

static void write_file(const char *dir, const char *name, const char *content)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static char *make_dir(void)
{
	char *dir = strdup("/tmp/sandbar-migrate-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return dir;
}

static void remove_dir(char *dir)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(dir);
}

static void test_sorted_numerically(void **state)
{
	char *dir = make_dir();
	write_file(dir, "10_ten.sql", "SELECT 10;");
	write_file(dir, "002_two.sql", "SELECT 2;");
	write_file(dir, "1_one.sql", "SELECT 1;");
	write_file(dir, "README.md", "not a migration");
	write_file(dir, "003_three.sql.orig", "skipped");
	char sub[512];
	snprintf(sub, sizeof(sub), "%s/099_dir.sql", dir);
	assert_int_equal(mkdir(sub, 0700), 0);

	struct migration_set set;
	char err[256] = "";
	assert_int_equal(migration_set_load(dir, &set, err, sizeof(err)), 0);
	assert_int_equal(set.count, 3);
	assert_int_equal(set.items[0].version, 1);
	assert_string_equal(set.items[0].name, "1_one.sql");
	assert_string_equal(set.items[0].sql, "SELECT 1;");
	assert_int_equal(set.items[1].version, 2);
	assert_string_equal(set.items[1].name, "002_two.sql");
	assert_int_equal(set.items[2].version, 10);
	migration_set_free(&set);
	assert_int_equal(set.count, 0);
	remove_dir(dir);
}

static void test_empty_dir(void **state)
{
	char *dir = make_dir();
	struct migration_set set;
	char err[256] = "";
	assert_int_equal(migration_set_load(dir, &set, err, sizeof(err)), 0);
	assert_int_equal(set.count, 0);
	migration_set_free(&set);
	remove_dir(dir);
}

static void test_duplicate_number(void **state)
{
	char *dir = make_dir();
	write_file(dir, "001_a.sql", "SELECT 1;");
	write_file(dir, "01_b.sql", "SELECT 1;");
	write_file(dir, "002_c.sql", "SELECT 2;");
	struct migration_set set;
	char err[256] = "";
	assert_int_equal(migration_set_load(dir, &set, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "same number 1"));
	assert_int_equal(set.count, 0);
	assert_null(set.items);
	remove_dir(dir);
}

static void test_bad_names(void **state)
{
	static const char *const bad[] = { "init.sql", "_001.sql", "001x.sql", "99999999999_big.sql",
					   ".sql" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *dir = make_dir();
		write_file(dir, "001_ok.sql", "SELECT 1;");
		write_file(dir, bad[i], "SELECT 1;");
		struct migration_set set;
		char err[256] = "";
		assert_int_equal(migration_set_load(dir, &set, err, sizeof(err)), -1);
		assert_non_null(strstr(err, bad[i]));
		assert_int_equal(set.count, 0);
		remove_dir(dir);
	}
}

static void test_number_only_name(void **state)
{
	char *dir = make_dir();
	write_file(dir, "007.sql", "SELECT 7;");
	struct migration_set set;
	char err[256] = "";
	assert_int_equal(migration_set_load(dir, &set, err, sizeof(err)), 0);
	assert_int_equal(set.count, 1);
	assert_int_equal(set.items[0].version, 7);
	migration_set_free(&set);
	remove_dir(dir);
}

static void test_missing_dir(void **state)
{
	struct migration_set set;
	char err[256] = "";
	assert_int_equal(migration_set_load("/nonexistent/sandbar/sql", &set, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/nonexistent/sandbar/sql"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sorted_numerically), cmocka_unit_test(test_empty_dir),
		cmocka_unit_test(test_duplicate_number),   cmocka_unit_test(test_bad_names),
		cmocka_unit_test(test_number_only_name),   cmocka_unit_test(test_missing_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
