/* Content-Type by magic bytes first (the content decides, as monza promised),
 * the extension second, and "is it UTF-8 text" last. */
#include "files/sniff.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/utf8.h"

struct magic {
	const char *bytes;
	size_t len;
	size_t at;
	const char *type;
};

static const struct magic magics[] = {
	{ "\x89PNG\r\n\x1a\n", 8, 0, "image/png" },
	{ "\xff\xd8\xff", 3, 0, "image/jpeg" },
	{ "GIF87a", 6, 0, "image/gif" },
	{ "GIF89a", 6, 0, "image/gif" },
	{ "WEBP", 4, 8, "image/webp" },
	{ "%PDF-", 5, 0, "application/pdf" },
	{ "PK\x03\x04", 4, 0, "application/zip" },
	{ "\x1f\x8b", 2, 0, "application/gzip" },
	{ "\x7f"
	  "ELF",
	  4, 0, "application/x-executable" },
	{ "ustar", 5, 257, "application/x-tar" },
};

static const struct {
	const char *ext;
	const char *type;
} exts[] = {
	{ "txt", "text/plain; charset=utf-8" },
	{ "md", "text/markdown; charset=utf-8" },
	{ "html", "text/html; charset=utf-8" },
	{ "htm", "text/html; charset=utf-8" },
	{ "css", "text/css; charset=utf-8" },
	{ "js", "text/javascript; charset=utf-8" },
	{ "json", "application/json" },
	{ "svg", "image/svg+xml" },
	{ "xml", "application/xml" },
	{ "csv", "text/csv; charset=utf-8" },
	{ "yaml", "application/yaml" },
	{ "yml", "application/yaml" },
	{ "wasm", "application/wasm" },
	{ "mp4", "video/mp4" },
	{ "mp3", "audio/mpeg" },
};

const char *files_content_type(const char *name, const char *head, size_t n)
{
	for (size_t i = 0; i < sizeof(magics) / sizeof(magics[0]); i++) {
		const struct magic *m = &magics[i];
		if (n >= m->at + m->len && memcmp(head + m->at, m->bytes, m->len) == 0) {
			if (m->at == 8 && memcmp(head, "RIFF", 4) != 0)
				continue;
			return m->type;
		}
	}
	const char *dot = strrchr(name, '.');
	if (dot && dot != name)
		for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++)
			if (strcasecmp(dot + 1, exts[i].ext) == 0)
				return exts[i].type;
	/* text: valid UTF-8 with no NUL (a multi-byte character cut at the end is fine) */
	size_t ok = utf8_valid_prefix(head, n);
	if (n == 0 || (ok + 4 > n && !memchr(head, '\0', n)))
		return "text/plain; charset=utf-8";
	return "application/octet-stream";
}

void files_content_disposition(const char *base, char *out, size_t cap)
{
	size_t o = 0;
	bool ascii = true;
	o += (size_t)snprintf(out, cap, "attachment; filename=\"");
	for (const unsigned char *p = (const unsigned char *)base; *p && o + 8 < cap; p++) {
		unsigned char c = *p;
		if (c >= 0x80) {
			ascii = false;
			if ((c & 0xC0) != 0x80) /* one '_' per character, not per byte */
				out[o++] = '_';
		} else if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
			ascii = false; /* filename*= carries the exact name */
			out[o++] = '_';
		} else {
			out[o++] = (char)c;
		}
	}
	if (o + 2 < cap)
		out[o++] = '"';
	if (!ascii && o + 20 < cap) {
		o += (size_t)snprintf(out + o, cap - o, "; filename*=UTF-8''");
		for (const unsigned char *p = (const unsigned char *)base; *p && o + 4 < cap; p++) {
			/* RFC 8187 attr-char: ALPHA DIGIT !#$&+-.^_`|~ */
			if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			    (*p >= '0' && *p <= '9') || strchr("!#$&+-.^_`|~", *p))
				out[o++] = (char)*p;
			else
				o += (size_t)snprintf(out + o, cap - o, "%%%02X", *p);
		}
	}
	out[o < cap ? o : cap - 1] = '\0';
}
