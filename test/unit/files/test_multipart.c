/* The streaming multipart parser: the same body fed whole and split at every
 * position gives the same parts; headers, filename*, pause/resume, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdbool.h>
#include <string.h>
#include <cmocka.h>

#include "files/multipart.h"

struct rec {
	char log[4096];
	size_t len;
	int pause_every;
	int calls;
	uint64_t file_offset;
	bool move; /* through part_move instead of part_data */
	bool refs; /* each piece its own chain (seams between chains) */
};

static void logf_(struct rec *r, const char *s, size_t n)
{
	assert_true(r->len + n < sizeof(r->log));
	memcpy(r->log + r->len, s, n);
	r->len += n;
	r->log[r->len] = '\0';
}

static int on_begin(const struct multipart_part *p, void *arg)
{
	struct rec *r = arg;
	logf_(r, "[", 1);
	logf_(r, p->name, strlen(p->name));
	logf_(r, "|", 1);
	if (p->filename)
		logf_(r, p->filename, p->filename_len); /* may hold a NUL */
	else
		logf_(r, "-", 1);
	logf_(r, "|", 1);
	logf_(r, p->content_type, strlen(p->content_type));
	logf_(r, "]", 1);
	if (p->filename)
		r->file_offset = p->offset;
	return 0;
}

static int on_data(const char *d, size_t n, void *arg)
{
	struct rec *r = arg;
	logf_(r, d, n);
	return r->pause_every && ++r->calls % r->pause_every == 0 ? 1 : 0;
}

static int on_end(void *arg)
{
	logf_(arg, "<end>", 5);
	return 0;
}

static int on_move(struct evbuffer *in, size_t n, void *arg)
{
	struct rec *r = arg;
	assert_true(r->len + n < sizeof(r->log));
	assert_int_equal(evbuffer_remove(in, r->log + r->len, n), (int)n);
	r->len += n;
	r->log[r->len] = '\0';
	return r->pause_every && ++r->calls % r->pause_every == 0 ? 1 : 0;
}

static const struct multipart_cbs cbs = { .part_begin = on_begin, .part_data = on_data, .part_end = on_end };
static const struct multipart_cbs mcbs = { .part_begin = on_begin, .part_move = on_move, .part_end = on_end };

/* Feeds body in pieces of step bytes (0: whole); returns the final status. */
static enum multipart_status run(const char *boundary, const char *body, size_t len, size_t step,
				 struct rec *r)
{
	struct multipart *mp = multipart_new(boundary, r->move ? &mcbs : &cbs, r);
	struct evbuffer *in = evbuffer_new();
	enum multipart_status st = MULTIPART_MORE;
	size_t off = 0;
	while (off < len && st != MULTIPART_ERROR) {
		size_t n = step && step < len - off ? step : len - off;
		if (r->refs)
			evbuffer_add_reference(in, body + off, n, NULL, NULL);
		else
			evbuffer_add(in, body + off, n);
		off += n;
		do
			st = multipart_feed(mp, in);
		while (st == MULTIPART_PAUSED);
	}
	if (st != MULTIPART_ERROR)
		st = multipart_finish(mp);
	if (st == MULTIPART_DONE)
		assert_int_equal(multipart_consumed(mp), len);
	evbuffer_free(in);
	multipart_free(mp);
	return st;
}

static const char body1[] = "preamble\r\n"
			    "--XyZ\r\n"
			    "Content-Disposition: form-data; name=\"path\"\r\n"
			    "\r\n"
			    "/workspace/d\r\n"
			    "--XyZ\r\n"
			    "content-disposition: form-data; name=file; filename=\"a \\\"b\\\".txt\"\r\n"
			    "Content-Type: text/plain\r\n"
			    "\r\n"
			    "line1\r\n--XyZ-not\r\n\r\n--Xy\r\n"
			    "--XyZ--\r\n"
			    "epilogue";

static void test_every_split(void **state)
{
	struct rec whole = { 0 };
	assert_int_equal(run("XyZ", body1, sizeof(body1) - 1, 0, &whole), MULTIPART_ERROR);
	/* "--XyZ-not" is a delimiter followed by garbage: refused */
	static const char good[] =
		"--XyZ\r\n"
		"Content-Disposition: form-data; name=\"path\"\r\n"
		"\r\n"
		"/workspace/d\r\n"
		"--XyZ  \r\n"
		"content-disposition: form-data; name=file; filename=\"a \\\"b\\\".txt\"\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"line1\r\n--Xy\r\n-XyZ\r\n\r\n"
		"--XyZ--\r\n"
		"epilogue";
	struct rec ref = { 0 };
	assert_int_equal(run("XyZ", good, sizeof(good) - 1, 0, &ref), MULTIPART_DONE);
	assert_string_equal(ref.log, "[path|-|]/workspace/d<end>[file|a \"b\".txt|text/plain]"
				     "line1\r\n--Xy\r\n-XyZ\r\n<end>");
	assert_int_equal(ref.file_offset, strstr(good, "line1") - good);
	for (size_t step = 1; step < sizeof(good); step++) {
		for (int mode = 0; mode < 4; mode++) {
			struct rec r = { .pause_every = (int)(step % 3), .move = mode & 1, .refs = mode & 2 };
			assert_int_equal(run("XyZ", good, sizeof(good) - 1, step, &r), MULTIPART_DONE);
			assert_string_equal(r.log, ref.log);
		}
	}
}

static void test_filename_star_and_empty(void **state)
{
	static const char b[] = "--b\r\n"
				"Content-Disposition: form-data; name=\"file\"; filename=\"x.txt\"; "
				"filename*=UTF-8''caf%C3%A9%20x.txt\r\n"
				"\r\n"
				"\r\n--b\r\n"
				"Content-Disposition: form-data; name=\"f2\"; filename*=utf-8'en'a%00b\r\n"
				"\r\n"
				"z\r\n--b--";
	struct rec r = { 0 };
	assert_int_equal(run("b", b, sizeof(b) - 1, 0, &r), MULTIPART_DONE);
	assert_memory_equal(r.log, "[file|caf\xC3\xA9 x.txt|]<end>[f2|a\0b|]z<end>", 39);
}

static void test_malformed(void **state)
{
	struct rec r = { 0 };
	static const char trunc[] = "--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nabc";
	assert_int_equal(run("b", trunc, sizeof(trunc) - 1, 0, &r), MULTIPART_ERROR);
	static const char badhdr[] = "--b\r\nno colon here\r\n\r\nabc\r\n--b--";
	assert_int_equal(run("b", badhdr, sizeof(badhdr) - 1, 0, &r), MULTIPART_ERROR);
	static const char unterminated[] = "--b\r\nContent-Disposition: form-data; name=\"f\r\n\r\n\r\n--b--";
	assert_int_equal(run("b", unterminated, sizeof(unterminated) - 1, 0, &r), MULTIPART_ERROR);
	static const char none[] = "nothing here at all";
	assert_int_equal(run("b", none, sizeof(none) - 1, 0, &r), MULTIPART_ERROR);
	static const char badstar[] =
		"--b\r\nContent-Disposition: form-data; filename*=latin1''x\r\n\r\n\r\n--b--";
	assert_int_equal(run("b", badstar, sizeof(badstar) - 1, 0, &r), MULTIPART_ERROR);
	char big[MULTIPART_HEADERS_MAX + 100];
	memset(big, 'a', sizeof(big));
	memcpy(big, "--b\r\nX: ", 8);
	assert_int_equal(run("b", big, sizeof(big), 100, &r), MULTIPART_ERROR);
}

static void test_boundary(void **state)
{
	char b[MULTIPART_BOUNDARY_MAX + 1];
	assert_int_equal(multipart_boundary("multipart/form-data; boundary=abc", b), 0);
	assert_string_equal(b, "abc");
	assert_int_equal(multipart_boundary("Multipart/Form-Data;charset=x; BOUNDARY=\"a b:c\"", b), 0);
	assert_string_equal(b, "a b:c");
	assert_int_equal(multipart_boundary("multipart/form-data", b), -1);
	assert_int_equal(multipart_boundary("text/plain; boundary=abc", b), -1);
	assert_int_equal(multipart_boundary("multipart/form-data; boundary=", b), -1);
	assert_int_equal(multipart_boundary(NULL, b), -1);
	char ct[200];
	snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%071d", 0);
	assert_int_equal(multipart_boundary(ct, b), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_split),
		cmocka_unit_test(test_filename_star_and_empty),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_boundary),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
