/* Shell strings that need no shell: a command made only of plain words and
 * single-quoted words means the same exec'd as its words as run by
 * `/bin/sh -c`, minus a fork and a shell's start-up. Anything a shell would
 * interpret (expansion, quoting beyond '...', operators, redirections,
 * assignments, comments, reserved words, builtins) is left to the shell. */
#include "shellwords.h"

#include <stdlib.h>
#include <string.h>

#include "core/check.h"

static bool needs_shell(unsigned char c);
static bool shell_builtin(const char *word, bool alone);

/* Bytes a shell would interpret outside single quotes. */
static bool needs_shell(unsigned char c)
{
	return c && strchr("$`;|&<>()*?[]~{}\n\"\\#!", c) != NULL;
}

/* A reserved word or a dash builtin: run by the shell, not a program of that
 * name (echo -e, cd, exit 3, ... differ). true and false alone are the same
 * either way. */
static bool shell_builtin(const char *word, bool alone)
{
	static const char *const names[] = {
		"!",	   "{",	       "}",	 "case",    "do",    "done",  "elif",	"else",
		"esac",	   "fi",       "for",	 "if",	    "in",    "then",  "until",	"while",
		".",	   ":",	       "[",	 "alias",   "bg",    "break", "cd",	"chdir",
		"command", "continue", "echo",	 "eval",    "exec",  "exit",  "export", "fc",
		"fg",	   "getopts",  "hash",	 "jobs",    "kill",  "local", "printf", "pwd",
		"read",	   "readonly", "return", "set",	    "shift", "test",  "times",	"trap",
		"type",	   "ulimit",   "umask",	 "unalias", "unset", "wait",  "true",	"false",
	};
	if (alone && (strcmp(word, "true") == 0 || strcmp(word, "false") == 0))
		return false;
	for (size_t i = 0; i < ARRAY_LEN(names); i++) {
		if (strcmp(word, names[i]) == 0)
			return true;
	}
	return false;
}

char **shellwords_split(const char *s, size_t len)
{
	/* words hold at most len bytes and len / 2 + 1 words: one allocation */
	size_t maxw = len / 2 + 2;
	char **argv = malloc(maxw * sizeof(char *) + len + 1);
	CHECK(argv != NULL);
	char *out = (char *)(argv + maxw);
	size_t n = 0, i = 0;
	while (i < len) {
		while (i < len && (s[i] == ' ' || s[i] == '\t'))
			i++;
		if (i == len)
			break;
		argv[n++] = out;
		while (i < len && s[i] != ' ' && s[i] != '\t') {
			unsigned char c = (unsigned char)s[i];
			if (c == '\'') {
				const char *end = memchr(s + i + 1, '\'', len - i - 1);
				if (!end)
					goto shell; /* unterminated */
				size_t q = (size_t)(end - (s + i + 1));
				memcpy(out, s + i + 1, q);
				out += q;
				i += q + 2;
				continue;
			}
			if (needs_shell(c) || c == 0)
				goto shell;
			*out++ = (char)c;
			i++;
		}
		*out++ = '\0';
	}
	argv[n] = NULL;
	/* NAME=value first is an assignment (a quoted '=' too, to be safe) */
	if (n == 0 || argv[0][0] == '\0' || strchr(argv[0], '=') || shell_builtin(argv[0], n == 1))
		goto shell;
	return argv;
shell:
	free(argv);
	return NULL;
}
