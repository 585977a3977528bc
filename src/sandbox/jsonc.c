/* JSONC (JSON with comments and trailing commas, as VS Code writes
 * devcontainer.json) into json-c. Comments and trailing commas are blanked out
 * in a copy, byte for byte, so offsets and line numbers in errors still point
 * into the original text; then json-c parses the copy in strict mode. */
#include "sandbox/jsonc.h"

#include <ctype.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* json-c's default nesting limit is 32; devcontainer.json never goes deeper. */
#define JSONC_MAX_DEPTH 64

static int strip(char *buf, size_t len, char *err, size_t errcap);
static int line_of(const char *text, size_t off);
static bool is_space(char c);

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int line_of(const char *text, size_t off)
{
	int line = 1;
	for (size_t i = 0; i < off; i++)
		if (text[i] == '\n')
			line++;
	return line;
}

/* Blanks comments (newlines kept) and commas followed only by blanks and a
 * closing bracket. Everything inside strings is left alone. */
static int strip(char *buf, size_t len, char *err, size_t errcap)
{
	size_t i = 0;
	bool have_comma = false;
	size_t comma = 0;
	char last = 0; /* last significant character, '"' for a string */

	while (i < len) {
		char c = buf[i];
		if (c == '"') {
			size_t start = i++;
			while (i < len && buf[i] != '"') {
				if (buf[i] == '\\')
					i++;
				else if (buf[i] == '\n')
					break; /* JSON strings cannot span lines */
				i++;
			}
			if (i >= len || buf[i] != '"') {
				snprintf(err, errcap, "line %d: unterminated string", line_of(buf, start));
				return -1;
			}
			i++;
			have_comma = false;
			last = '"';
		} else if (c == '/' && i + 1 < len && buf[i + 1] == '/') {
			while (i < len && buf[i] != '\n')
				buf[i++] = ' ';
		} else if (c == '/' && i + 1 < len && buf[i + 1] == '*') {
			size_t start = i;
			buf[i++] = ' ';
			buf[i++] = ' ';
			while (i < len && !(buf[i] == '*' && i + 1 < len && buf[i + 1] == '/')) {
				if (buf[i] != '\n')
					buf[i] = ' ';
				i++;
			}
			if (i >= len) {
				snprintf(err, errcap, "line %d: unterminated comment", line_of(buf, start));
				return -1;
			}
			buf[i++] = ' ';
			buf[i++] = ' ';
		} else if (c == '\'') {
			/* json-c would take 'x' as a string, VS Code does not */
			snprintf(err, errcap, "line %d: single-quoted strings are not JSON", line_of(buf, i));
			return -1;
		} else if (is_space(c)) {
			i++;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') {
			/* json-c takes NaN and Infinity even when strict; JSON has
			 * only these three words */
			size_t start = i;
			while (i < len && (isalnum((unsigned char)buf[i]) || buf[i] == '_'))
				i++;
			size_t n = i - start;
			if (!((n == 4 && memcmp(buf + start, "true", 4) == 0) ||
			      (n == 5 && memcmp(buf + start, "false", 5) == 0) ||
			      (n == 4 && memcmp(buf + start, "null", 4) == 0))) {
				snprintf(err, errcap, "line %d: unexpected word '%.*s'", line_of(buf, start),
					 n > 32 ? 32 : (int)n, buf + start);
				return -1;
			}
			have_comma = false;
			last = 'w';
		} else if ((c >= '0' && c <= '9') || c == '-') {
			/* a number; its exponent letter is not a word */
			while (i < len && strchr("0123456789+-.eE", buf[i]))
				i++;
			have_comma = false;
			last = '0';
		} else {
			if ((c == '}' || c == ']') && have_comma)
				buf[comma] = ' ';
			/* "[,]" and "[1,,]" stay errors: only a comma after a value is trailing */
			have_comma = c == ',' && last != 0 && !strchr("[{,:", last);
			comma = i;
			last = c;
			i++;
		}
	}
	return 0;
}

struct json_object *jsonc_parse(const char *text, size_t len, char *err, size_t errcap)
{
	struct json_tokener *tok = NULL;
	struct json_object *obj = NULL;
	char *buf = NULL;

	const char *nul = memchr(text, '\0', len);
	if (nul) {
		snprintf(err, errcap, "line %d: NUL byte in input", line_of(text, (size_t)(nul - text)));
		return NULL;
	}
	/* json-c takes an int length */
	if (len > 64u << 20) {
		snprintf(err, errcap, "input too large");
		return NULL;
	}
	buf = malloc(len + 1);
	if (!buf) {
		snprintf(err, errcap, "out of memory");
		return NULL;
	}
	memcpy(buf, text, len);
	buf[len] = '\0';
	if (strip(buf, len, err, errcap) != 0)
		goto fail;

	tok = json_tokener_new_ex(JSONC_MAX_DEPTH);
	if (!tok) {
		snprintf(err, errcap, "out of memory");
		goto fail;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	/* The terminating NUL goes in too, so a bare top-level number ends. */
	obj = json_tokener_parse_ex(tok, buf, (int)len + 1);
	enum json_tokener_error jerr = json_tokener_get_error(tok);
	size_t end = json_tokener_get_parse_end(tok);
	if (jerr != json_tokener_success) {
		if (jerr == json_tokener_continue || end > len)
			snprintf(err, errcap, "line %d: unexpected end of input", line_of(buf, len));
		else
			snprintf(err, errcap, "line %d: %s", line_of(buf, end),
				 json_tokener_error_desc(jerr));
		goto fail;
	}
	for (size_t i = end; i < len; i++) {
		if (!is_space(buf[i])) {
			snprintf(err, errcap, "line %d: unexpected text after the JSON value",
				 line_of(buf, i));
			goto fail;
		}
	}
	if (!obj) {
		/* a bare null parses to NULL, which our callers read as failure */
		snprintf(err, errcap, "line %d: the document is null", line_of(buf, end));
		goto fail;
	}
	json_tokener_free(tok);
	free(buf);
	return obj;
fail:
	json_object_put(obj);
	if (tok) /* json_tokener_free(NULL) crashes */
		json_tokener_free(tok);
	free(buf);
	return NULL;
}
