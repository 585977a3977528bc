/* The transfer engine's pure rules (transfer_internal.h: Docker's archive
 * URL, where a followed link leads, the entries a tar put refuses) and its
 * contract before any I/O: a bad path is refused on the spot, a failed lookup
 * is called back from the loop (never on the caller's stack), a cancelled
 * transfer calls nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>

#include "files/path.h"
#include "files/transfer.h"
#include "sandbox/registry.h"
#include "transfer_internal.h"

static void test_archive_url(void **state)
{
	(void)state;
	char *u = xfer_archive_url("abc123", "/workspace/a b/ü%?&=#x~._-");
	assert_string_equal(u, "/containers/abc123/archive?path=/workspace/a%20b/%C3%BC%25%3F%26%3D%23x~._-");
	free(u);
	u = xfer_archive_url("c", "/");
	assert_string_equal(u, "/containers/c/archive?path=/");
	free(u);
	/* the longest path, every byte encoded */
	char path[FILES_PATH_MAX + 1];
	path[0] = '/';
	memset(path + 1, '+', FILES_PATH_MAX - 1);
	path[FILES_PATH_MAX] = '\0';
	u = xfer_archive_url("c", path);
	assert_int_equal(strlen(u), strlen("/containers/c/archive?path=/") + 3 * (FILES_PATH_MAX - 1));
	assert_memory_equal(u + strlen(u) - 6, "%2B%2B", 6);
	free(u);
}

static void test_link_follow(void **state)
{
	(void)state;
	char out[FILES_PATH_MAX + 1];
	static const struct {
		const char *path, *target, *want;
	} cases[] = {
		{ "/workspace/link", "afile", "/workspace/afile" },
		{ "/workspace/link", "/etc/passwd", "/etc/passwd" },
		{ "/workspace/a/link", "../b/./c", "/workspace/b/c" },
		{ "/link", "x", "/x" },
		{ "/link", "../../x", "/x" },
		{ "/w/link", "", "/w" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(xfer_link_follow(cases[i].path, cases[i].target, out), 0);
		assert_string_equal(out, cases[i].want);
	}
	char target[FILES_PATH_MAX + 1];
	memset(target, 'a', FILES_PATH_MAX);
	target[FILES_PATH_MAX] = '\0';
	assert_int_equal(xfer_link_follow("/w/link", target, out), -1);
}

static void test_entry_refused(void **state)
{
	(void)state;
	struct tar_reader_entry e = { .name = "ok/file", .linkname = "", .type = '0' };
	assert_null(xfer_entry_refused(&e));
	e.name = "../evil";
	assert_string_equal(xfer_entry_refused(&e), "an entry's name leaves the directory");
	e.name = "/abs";
	assert_string_equal(xfer_entry_refused(&e), "an entry's name leaves the directory");
	e.name = "d/l";
	e.type = '2';
	e.linkname = "../x";
	assert_null(xfer_entry_refused(&e)); /* d/../x stays inside */
	e.linkname = "../../x";
	assert_string_equal(xfer_entry_refused(&e), "a symbolic link points outside the directory");
	e.linkname = "/etc";
	assert_string_equal(xfer_entry_refused(&e), "a symbolic link points outside the directory");
	e.type = '1';
	e.linkname = "d/other";
	assert_null(xfer_entry_refused(&e)); /* a hard link names from the root */
	e.linkname = "../x";
	assert_string_equal(xfer_entry_refused(&e), "a hard link points outside the directory");
	e.type = '3';
	e.linkname = "";
	assert_string_equal(xfer_entry_refused(&e), "device files are not allowed");
	e.type = '4';
	assert_string_equal(xfer_entry_refused(&e), "device files are not allowed");
	e.type = '5';
	assert_null(xfer_entry_refused(&e));
}

/* ---- the contract, without PostgreSQL or Docker ---- */

static struct event_base *base;
static struct registry *reg;
static struct files_transfer *xfer;

struct seen {
	int calls, other;
	enum core_err err;
	char code[64];
};

static void out_head(void *arg, const struct files_head *h)
{
	((struct seen *)arg)->other++;
}

static int out_data(void *arg, struct evbuffer *data)
{
	((struct seen *)arg)->other++;
	return 0;
}

static void out_done(void *arg, const struct core_error *fail)
{
	struct seen *s = arg;
	s->calls++;
	assert_non_null(fail);
	s->err = fail->kind;
	snprintf(s->code, sizeof(s->code), "%s", fail->code);
}

static void in_ready(void *arg)
{
	((struct seen *)arg)->other++;
}

static void in_done(void *arg, const struct core_error *fail, const char *path)
{
	out_done(arg, fail);
	assert_null(path);
}

static const struct files_out_events oev = { out_head, out_data, out_done };
static const struct files_in_events iev = { in_ready, in_done };

static int setup(void **state)
{
	(void)state;
	base = event_base_new();
	/* nothing here reaches PostgreSQL, Docker or an agent */
	struct registry_config cfg = { .cluster = "t", .instance = "i", .idle_timeout_ms = 1000 };
	reg = registry_new(base, &cfg, NULL, NULL);
	struct files_transfer_config tcfg = { .upload_limit = 10, .spool_dir = "/tmp" };
	xfer = files_transfer_new(base, reg, NULL, NULL, &tcfg);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	event_base_loop(base, EVLOOP_NONBLOCK); /* deferred frees */
	files_transfer_free(xfer);
	registry_free(reg);
	event_base_free(base);
	return 0;
}

static void expect(struct seen *s, enum core_err err, const char *code)
{
	assert_int_equal(s->calls, 0); /* not on the caller's stack */
	event_base_loop(base, EVLOOP_NONBLOCK);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(s->calls, 1);
	assert_int_equal(s->other, 0);
	assert_int_equal(s->err, err);
	assert_string_equal(s->code, code);
}

static void test_bad_paths(void **state)
{
	(void)state;
	static const char *const bad[] = { "relative", "/a/../b", "", "/a/%2e%2e/b", NULL };
	for (size_t i = 0; bad[i]; i++) {
		struct seen s = { 0 };
		struct core_error fail = { 0 };
		assert_null(files_download(xfer, "x", bad[i], &oev, &s, &fail));
		assert_int_equal(fail.kind, CORE_INVALID);
		assert_string_equal(fail.code, "invalid_path");
		assert_null(files_archive_get(xfer, "x", bad[i], &oev, &s, &fail));
		assert_null(files_archive_put(xfer, "x", bad[i], &iev, &s, &fail));
		event_base_loop(base, EVLOOP_NONBLOCK);
		assert_int_equal(s.calls + s.other, 0);
	}
	struct seen s = { 0 };
	struct core_error fail = { 0 };
	assert_null(files_download(xfer, "x", NULL, &oev, &s, &fail));
	assert_string_equal(fail.code, "invalid_path");
}

static void test_lookup_fails_from_the_loop(void **state)
{
	(void)state;
	struct core_error fail;
	struct seen a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };
	assert_non_null(files_download(xfer, "not-a-uuid", "/w/f", &oev, &a, &fail));
	expect(&a, CORE_INVALID, "invalid_id");
	assert_non_null(files_archive_get(xfer, "not-a-uuid", "/w", &oev, &b, &fail));
	expect(&b, CORE_INVALID, "invalid_id");
	assert_non_null(files_archive_put(xfer, "not-a-uuid", "/w", &iev, &c, &fail));
	expect(&c, CORE_INVALID, "invalid_id");
	assert_non_null(files_upload_new(xfer, "not-a-uuid", true, "rid", &iev, &d));
	expect(&d, CORE_INVALID, "invalid_id");
}

static void test_cancel_calls_nothing(void **state)
{
	(void)state;
	struct core_error fail;
	struct seen s = { 0 };
	files_xfer_cancel(files_download(xfer, "not-a-uuid", "/w/f", &oev, &s, &fail));
	files_xfer_cancel(files_archive_put(xfer, "not-a-uuid", "/w", &iev, &s, &fail));
	files_upload_cancel(files_upload_new(xfer, "not-a-uuid", false, "rid", &iev, &s));
	files_xfer_cancel(NULL);
	files_upload_cancel(NULL);
	event_base_loop(base, EVLOOP_NONBLOCK);
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(s.calls + s.other, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_archive_url),
		cmocka_unit_test(test_link_follow),
		cmocka_unit_test(test_entry_refused),
		cmocka_unit_test_setup_teardown(test_bad_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lookup_fails_from_the_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_calls_nothing, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
