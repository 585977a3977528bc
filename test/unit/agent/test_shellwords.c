/* Shell strings the agent execs without a shell: plain and single-quoted
 * words split as /bin/sh would, and everything a shell interprets (every
 * metacharacter outside single quotes, assignments, reserved words,
 * builtins, unterminated quotes) left to /bin/sh -c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "shellwords.h"

/* want: the words, NULL-terminated; NULL when s needs a shell. */
static void expect(const char *s, const char *const *want)
{
	char **got = shellwords_split(s, strlen(s));
	if (!want) {
		if (got)
			fail_msg("'%s' split as '%s'... but needs a shell", s, got[0]);
		return;
	}
	if (!got)
		fail_msg("'%s' sent to the shell", s);
	size_t i = 0;
	for (; want[i]; i++) {
		assert_non_null(got[i]);
		assert_string_equal(got[i], want[i]);
	}
	assert_null(got[i]);
	free(got);
}

#define WORDS(...) ((const char *const[]){ __VA_ARGS__, NULL })

static void test_plain_words(void **state)
{
	expect("true", WORDS("true"));
	expect("false", WORDS("false"));
	expect("ls", WORDS("ls"));
	expect("ls -la /tmp", WORDS("ls", "-la", "/tmp"));
	expect("  ls \t -la\t", WORDS("ls", "-la"));
	expect("/usr/bin/env A=B printenv A", WORDS("/usr/bin/env", "A=B", "printenv", "A"));
	expect("ls --color=auto", WORDS("ls", "--color=auto"));
	expect("node a.js 100% ^x @y +z ,w :v .u -t",
	       WORDS("node", "a.js", "100%", "^x", "@y", "+z", ",w", ":v", ".u", "-t"));
	expect("cat caf\xc3\xa9 \x01\r", WORDS("cat", "caf\xc3\xa9", "\x01\r"));
}

static void test_single_quotes(void **state)
{
	/* the SDK's quoting of each argument */
	expect("ls '-la' '/tmp'", WORDS("ls", "-la", "/tmp"));
	expect("cat 'a b'", WORDS("cat", "a b"));
	expect("grep '%s' '$HOME;|&<>()*?[]~{}#!\"\\`'", WORDS("grep", "%s", "$HOME;|&<>()*?[]~{}#!\"\\`"));
	expect("cat 'multi\nline'", WORDS("cat", "multi\nline"));
	expect("touch ''", WORDS("touch", ""));
	expect("touch '' ''", WORDS("touch", "", ""));
	expect("cat a'b c'd", WORDS("cat", "ab cd"));
	expect("cat 'a''b'", WORDS("cat", "ab"));
	expect("'ls' x", WORDS("ls", "x"));
	expect("cat '\t'", WORDS("cat", "\t"));
}

static void test_needs_a_shell(void **state)
{
	static const char *const shell[] = {
		/* nothing to run */
		"",
		" ",
		"\t",
		/* every metacharacter outside single quotes */
		"echo $HOME",
		"echo `id`",
		"a; b",
		"a | b",
		"a & b",
		"a && b",
		"a || b",
		"cat < f",
		"echo > f",
		"echo >> f",
		"(ls)",
		"ls *",
		"ls ?",
		"ls [ab]",
		"ls ~",
		"ls ~/x",
		"echo {a,b}",
		"ls }",
		"a\nb",
		"echo \"x\"",
		"echo \\x",
		"echo x # c",
		"ls !x",
		"echo a\\'b",
		/* the SDK's quoting of a quote: a backslash outside quotes */
		"echo 'it'\\''s'",
		/* unterminated */
		"echo 'abc",
		"'",
		/* an empty program, an assignment */
		"'' x",
		"A=1 env",
		"A=1",
		"'A=1' x",
		/* reserved words and builtins */
		"if x",
		"for i",
		"while true",
		"! true",
		"{ ls",
		"cd /tmp",
		"exit 3",
		"export A",
		"echo hi",
		"echo -e x",
		"printf x",
		"test -f x",
		"kill 1",
		"pwd",
		"exec ls",
		"set -e",
		". ./x",
		": x",
		"read x",
		"wait",
		"umask 077",
		"type ls",
		"command -v ls",
		"true --help",
		"false x",
	};
	for (size_t i = 0; i < sizeof(shell) / sizeof(shell[0]); i++)
		expect(shell[i], NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_words),
		cmocka_unit_test(test_single_quotes),
		cmocka_unit_test(test_needs_a_shell),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
