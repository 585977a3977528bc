/* Tar headers written on the fly: a ustar header per entry, preceded by a PAX
 * extended header when the name, link name or size does not fit ustar fields. */
#include "docker/tar.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define TAR_BLOCK      512
#define USTAR_SIZE_MAX 077777777777ULL /* 11 octal digits: just under 8 GiB */

static void put_octal(char *field, size_t width, uint64_t v);
static void pax_record(struct evbuffer *out, const char *key, const char *value);
static void write_block(struct evbuffer *out, const char *name, const char *linkname, char type,
			uint64_t size, mode_t mode, time_t mtime, uid_t uid, gid_t gid);

/* width includes the terminating NUL that ustar expects. */
static void put_octal(char *field, size_t width, uint64_t v)
{
	char tmp[32];
	snprintf(tmp, sizeof(tmp), "%0*llo", (int)(width - 1), (unsigned long long)v);
	memcpy(field, tmp + strlen(tmp) - (width - 1), width - 1);
	field[width - 1] = '\0';
}

/* A PAX record is "<len> key=value\n" where len counts itself. */
static void pax_record(struct evbuffer *out, const char *key, const char *value)
{
	size_t body = strlen(key) + strlen(value) + 3; /* ' ', '=', '\n' */
	size_t len = body + 1;
	for (;;) {
		char digits[24];
		size_t d = (size_t)snprintf(digits, sizeof(digits), "%zu", len);
		if (body + d == len)
			break;
		len = body + d;
	}
	evbuffer_add_printf(out, "%zu %s=%s\n", len, key, value);
}

static void write_block(struct evbuffer *out, const char *name, const char *linkname, char type,
			uint64_t size, mode_t mode, time_t mtime, uid_t uid, gid_t gid)
{
	char h[TAR_BLOCK];
	memset(h, 0, sizeof(h));
	strncpy(h, name, 100);
	put_octal(h + 100, 8, mode & 07777);
	put_octal(h + 108, 8, uid & 07777777);
	put_octal(h + 116, 8, gid & 07777777);
	put_octal(h + 124, 12, size);
	put_octal(h + 136, 12, mtime > 0 ? (uint64_t)mtime & USTAR_SIZE_MAX : 0);
	memset(h + 148, ' ', 8);
	h[156] = type;
	if (linkname)
		strncpy(h + 157, linkname, 100);
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	unsigned sum = 0;
	for (size_t i = 0; i < sizeof(h); i++)
		sum += (unsigned char)h[i];
	put_octal(h + 148, 7, sum);
	h[155] = ' ';
	evbuffer_add(out, h, sizeof(h));
}

int tar_write_header(struct evbuffer *out, const struct tar_entry *e)
{
	if (!e->name || !e->name[0])
		return -1;
	if (e->type != TAR_FILE && e->type != TAR_DIR && e->type != TAR_SYMLINK)
		return -1;
	if (e->type == TAR_SYMLINK && (!e->linkname || !e->linkname[0]))
		return -1;
	uint64_t size = e->type == TAR_FILE ? e->size : 0;
	bool long_name = strlen(e->name) > 100;
	bool long_link = e->type == TAR_SYMLINK && strlen(e->linkname) > 100;
	bool big = size > USTAR_SIZE_MAX;
	if (long_name || long_link || big) {
		struct evbuffer *pax = evbuffer_new();
		if (!pax)
			return -1;
		if (long_name)
			pax_record(pax, "path", e->name);
		if (long_link)
			pax_record(pax, "linkpath", e->linkname);
		if (big) {
			char s[24];
			snprintf(s, sizeof(s), "%llu", (unsigned long long)size);
			pax_record(pax, "size", s);
		}
		size_t plen = evbuffer_get_length(pax);
		write_block(out, "././@PaxHeader", NULL, 'x', plen, 0644, e->mtime, 0, 0);
		evbuffer_add_buffer(out, pax);
		evbuffer_free(pax);
		tar_write_padding(out, plen);
	}
	/* The ustar fields keep a truncated name for readers that ignore PAX. */
	write_block(out, e->name, e->type == TAR_SYMLINK ? e->linkname : NULL, (char)e->type, big ? 0 : size,
		    e->mode, e->mtime, e->uid, e->gid);
	return 0;
}

void tar_write_padding(struct evbuffer *out, uint64_t size)
{
	static const char zeros[TAR_BLOCK];
	size_t rem = (size_t)(size % TAR_BLOCK);
	if (rem)
		evbuffer_add(out, zeros, TAR_BLOCK - rem);
}

void tar_write_end(struct evbuffer *out)
{
	static const char zeros[2 * TAR_BLOCK];
	evbuffer_add(out, zeros, sizeof(zeros));
}
