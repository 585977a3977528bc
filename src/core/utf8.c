/* UTF-8 validation (RFC 3629: no overlongs, no surrogates, max U+10FFFF). */
#include "core/utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

/* Bytes in the valid sequence starting at s, or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
	unsigned char c = s[0];
	if (c >= 0x01 && c < 0x80)
		return 1;
	size_t n;
	uint32_t cp, min;
	if ((c & 0xE0) == 0xC0) {
		n = 2, cp = c & 0x1F, min = 0x80;
	} else if ((c & 0xF0) == 0xE0) {
		n = 3, cp = c & 0x0F, min = 0x800;
	} else if ((c & 0xF8) == 0xF0) {
		n = 4, cp = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

size_t utf8_valid_prefix(const char *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		size_t n = utf8_seq((const unsigned char *)s + i, len - i);
		if (n == 0)
			break;
		i += n;
	}
	return i;
}

char *utf8_sanitize(const char *s, size_t len)
{
	char *out = malloc(len * 3 + 1);
	CHECK(out != NULL);
	size_t o = 0;
	for (size_t i = 0; i < len;) {
		size_t n = utf8_seq((const unsigned char *)s + i, len - i);
		if (n == 0) {
			memcpy(out + o, "\xEF\xBF\xBD", 3);
			o += 3;
			i++;
		} else {
			memcpy(out + o, s + i, n);
			o += n;
			i += n;
		}
	}
	out[o] = '\0';
	return out;
}
