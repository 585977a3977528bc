/* A tar stream read block by block as it arrives: header blocks (and the PAX
 * or GNU records in front of them) are collected, bounded, then handed over;
 * data flows through without being held or copied (moved as buffer chains). */
#include "files/tar_reader.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define BLOCK 512

enum tr_state {
	TR_HEADER,  /* collecting a 512-byte header block */
	TR_META,    /* a PAX or GNU long-name record's data, collected */
	TR_DATA,    /* an entry's data, passed on */
	TR_PADDING, /* zeros up to the next block */
	TR_END,	    /* one zero block seen; expecting the second */
	TR_DONE,
	TR_FAILED,
	TR_STATE_MAX
};

struct tar_reader {
	enum tr_state state;
	struct tar_reader_cbs cbs;
	void *arg;
	const char *err;
	unsigned char block[BLOCK];
	size_t have;	       /* bytes of block collected */
	struct evbuffer *held; /* raw header bytes not yet accepted */
	char meta_type;	       /* 'x', 'g', 'L', 'K' while in TR_META */
	char *meta;	       /* its data */
	size_t meta_len, meta_size;
	uint64_t left; /* data or padding bytes left */
	uint64_t data_size;
	char name[TAR_READER_NAME_MAX + 1];
	char linkname[TAR_READER_NAME_MAX + 1];
	bool long_name, long_link; /* set from PAX/GNU for the next entry */
	bool pax_size;
	uint64_t next_size;
};

static void tr_set_state(struct tar_reader *r, enum tr_state to);
static enum tar_reader_status tr_fail(struct tar_reader *r, const char *why);
static int parse_number(const unsigned char *f, size_t width, uint64_t *out);
static bool checksum_ok(const unsigned char *h);
static int apply_pax(struct tar_reader *r);
static int header_done(struct tar_reader *r, struct evbuffer *out);

static const char *state_names[TR_STATE_MAX] = {
	"header", "meta", "data", "padding", "end", "done", "failed"
};

static void tr_set_state(struct tar_reader *r, enum tr_state to)
{
	static const unsigned legal[TR_STATE_MAX] = {
		[TR_HEADER] = 1u << TR_META | 1u << TR_DATA | 1u << TR_HEADER | 1u << TR_END |
			      1u << TR_FAILED | 1u << TR_PADDING,
		[TR_META] = 1u << TR_HEADER | 1u << TR_FAILED,
		[TR_DATA] = 1u << TR_PADDING | 1u << TR_HEADER | 1u << TR_FAILED,
		[TR_PADDING] = 1u << TR_HEADER | 1u << TR_FAILED,
		[TR_END] = 1u << TR_DONE | 1u << TR_FAILED,
		[TR_DONE] = 0,
		[TR_FAILED] = 0,
	};
	CHECK(to < TR_STATE_MAX && (legal[r->state] & (1u << to)));
	if (to != r->state)
		log_debug("tar reader: %s -> %s", state_names[r->state], state_names[to]);
	r->state = to;
}

struct tar_reader *tar_reader_new(const struct tar_reader_cbs *cbs, void *arg)
{
	struct tar_reader *r = calloc(1, sizeof(*r));
	CHECK(r != NULL);
	r->cbs = *cbs;
	r->arg = arg;
	r->held = evbuffer_new();
	CHECK(r->held != NULL);
	return r;
}

void tar_reader_free(struct tar_reader *r)
{
	if (!r)
		return;
	evbuffer_free(r->held);
	free(r->meta);
	free(r);
}

const char *tar_reader_error(const struct tar_reader *r)
{
	return r->err ? r->err : "no error";
}

static enum tar_reader_status tr_fail(struct tar_reader *r, const char *why)
{
	if (r->state != TR_FAILED) {
		r->err = why;
		tr_set_state(r, TR_FAILED);
	}
	return TAR_READER_ERROR;
}

/* Octal (NUL or space terminated) or GNU base-256 (high bit of the first byte). */
static int parse_number(const unsigned char *f, size_t width, uint64_t *out)
{
	uint64_t v = 0;
	if (f[0] & 0x80) {
		if (f[0] != 0x80)
			return -1; /* negative or too large */
		for (size_t i = 1; i < width; i++) {
			if (v >> 56)
				return -1;
			v = v << 8 | f[i];
		}
		*out = v;
		return 0;
	}
	size_t i = 0;
	while (i < width && f[i] == ' ')
		i++;
	for (; i < width && f[i] >= '0' && f[i] <= '7'; i++) {
		if (v >> 60)
			return -1;
		v = v << 3 | (uint64_t)(f[i] - '0');
	}
	for (; i < width; i++)
		if (f[i] != ' ' && f[i] != '\0')
			return -1;
	*out = v;
	return 0;
}

static bool checksum_ok(const unsigned char *h)
{
	uint64_t want;
	if (parse_number(h + 148, 8, &want) < 0)
		return false;
	uint64_t u = 0;
	int64_t s = 0;
	for (size_t i = 0; i < BLOCK; i++) {
		unsigned char c = (i >= 148 && i < 156) ? ' ' : h[i];
		u += c;
		s += (signed char)c;
	}
	return u == want || (uint64_t)s == want;
}

static bool all_zero(const unsigned char *b)
{
	for (size_t i = 0; i < BLOCK; i++)
		if (b[i])
			return false;
	return true;
}

/* PAX records "<len> key=value\n": path, linkpath and size matter here. */
static int apply_pax(struct tar_reader *r)
{
	size_t i = 0;
	while (i < r->meta_len) {
		size_t len = 0, j = i;
		while (j < r->meta_len && r->meta[j] >= '0' && r->meta[j] <= '9' && len < r->meta_len)
			len = len * 10 + (size_t)(r->meta[j++] - '0');
		if (j == i || j >= r->meta_len || r->meta[j] != ' ' || len <= j - i + 1 ||
		    len > r->meta_len - i)
			return -1;
		const char *kv = r->meta + j + 1;
		size_t kvlen = len - (j - i) - 1;
		if (kvlen < 2 || kv[kvlen - 1] != '\n')
			return -1;
		kvlen--;
		const char *eq = memchr(kv, '=', kvlen);
		if (!eq)
			return -1;
		size_t klen = (size_t)(eq - kv);
		const char *v = eq + 1;
		size_t vlen = kvlen - klen - 1;
		if (r->meta_type == 'x') {
			if (klen == 4 && memcmp(kv, "path", 4) == 0) {
				if (vlen > TAR_READER_NAME_MAX || memchr(v, '\0', vlen))
					return -1;
				memcpy(r->name, v, vlen);
				r->name[vlen] = '\0';
				r->long_name = true;
			} else if (klen == 8 && memcmp(kv, "linkpath", 8) == 0) {
				if (vlen > TAR_READER_NAME_MAX || memchr(v, '\0', vlen))
					return -1;
				memcpy(r->linkname, v, vlen);
				r->linkname[vlen] = '\0';
				r->long_link = true;
			} else if (klen == 4 && memcmp(kv, "size", 4) == 0) {
				uint64_t s = 0;
				if (vlen == 0 || vlen > 19)
					return -1;
				for (size_t k = 0; k < vlen; k++) {
					if (v[k] < '0' || v[k] > '9')
						return -1;
					s = s * 10 + (uint64_t)(v[k] - '0');
				}
				r->next_size = s;
				r->pax_size = true;
			}
		}
		i += len;
	}
	return 0;
}

/* A full header block is in r->block. */
static int header_done(struct tar_reader *r, struct evbuffer *out)
{
	const unsigned char *h = r->block;
	if (all_zero(h)) {
		evbuffer_add(r->held, h, BLOCK);
		tr_set_state(r, TR_END);
		return 0;
	}
	if (!checksum_ok(h))
		return tr_fail(r, "bad tar header checksum"), -1;
	uint64_t size, mode, mtime;
	if (parse_number(h + 124, 12, &size) < 0 || parse_number(h + 100, 8, &mode) < 0 ||
	    parse_number(h + 136, 12, &mtime) < 0)
		return tr_fail(r, "bad number in a tar header"), -1;
	char type = (char)h[156];
	evbuffer_add(r->held, h, BLOCK);
	if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
		if (size > TAR_READER_META_MAX)
			return tr_fail(r, "tar extended header too large"), -1;
		r->meta_type = type;
		r->meta_size = (size_t)size;
		r->meta_len = 0;
		free(r->meta);
		r->meta = malloc(r->meta_size + 1);
		CHECK(r->meta != NULL);
		r->left = (size + BLOCK - 1) / BLOCK * BLOCK;
		if (r->left == 0)
			tr_set_state(r, TR_HEADER);
		else
			tr_set_state(r, TR_META);
		return 0;
	}
	if (r->pax_size)
		size = r->next_size;
	if (!r->long_name) {
		bool ustar = memcmp(h + 257, "ustar\0", 6) == 0;
		const char *prefix = (const char *)h + 345;
		size_t plen = ustar ? strnlen(prefix, 155) : 0;
		size_t nlen = strnlen((const char *)h, 100);
		if (plen) {
			memcpy(r->name, prefix, plen);
			r->name[plen] = '/';
			memcpy(r->name + plen + 1, h, nlen);
			r->name[plen + 1 + nlen] = '\0';
		} else {
			memcpy(r->name, h, nlen);
			r->name[nlen] = '\0';
		}
	}
	if (!r->long_link) {
		size_t llen = strnlen((const char *)h + 157, 100);
		memcpy(r->linkname, h + 157, llen);
		r->linkname[llen] = '\0';
	}
	if (type == '\0' || type == '7')
		type = '0';
	/* links, devices, fifos and directories carry no data whatever size says */
	if (type == '1' || type == '2' || type == '3' || type == '4' || type == '5' || type == '6')
		size = 0;
	struct tar_reader_entry e = {
		.name = r->name,
		.linkname = r->linkname,
		.type = type,
		.size = size,
		.mode = (uint32_t)(mode & 07777),
		.mtime = (int64_t)mtime,
	};
	r->long_name = r->long_link = r->pax_size = false;
	if (e.name[0] == '\0')
		return tr_fail(r, "tar entry without a name"), -1;
	if (r->cbs.entry && r->cbs.entry(&e, r->arg) < 0)
		return tr_fail(r, "tar entry refused"), -1;
	if (out)
		evbuffer_add_buffer(out, r->held);
	else
		evbuffer_drain(r->held, evbuffer_get_length(r->held));
	r->data_size = size;
	r->left = size;
	tr_set_state(r, size ? TR_DATA : TR_HEADER);
	return 0;
}

enum tar_reader_status tar_reader_feed(struct tar_reader *r, struct evbuffer *in, struct evbuffer *out)
{
	for (;;) {
		if (r->state == TR_FAILED)
			return TAR_READER_ERROR;
		size_t avail = evbuffer_get_length(in);
		if (r->state == TR_DONE) {
			evbuffer_drain(in, avail);
			return TAR_READER_DONE;
		}
		if (avail == 0)
			return TAR_READER_MORE;
		switch (r->state) {
		case TR_HEADER:
		case TR_END: {
			size_t n = BLOCK - r->have;
			if (n > avail)
				n = avail;
			evbuffer_remove(in, r->block + r->have, n);
			r->have += n;
			if (r->have < BLOCK)
				return TAR_READER_MORE;
			r->have = 0;
			if (r->state == TR_END) {
				if (!all_zero(r->block))
					return tr_fail(r, "data after a tar end block");
				evbuffer_add(r->held, r->block, BLOCK);
				if (out)
					evbuffer_add_buffer(out, r->held);
				else
					evbuffer_drain(r->held, evbuffer_get_length(r->held));
				tr_set_state(r, TR_DONE);
				break;
			}
			if (header_done(r, out) < 0)
				return TAR_READER_ERROR;
			break;
		}
		case TR_META: {
			size_t n = r->left < avail ? (size_t)r->left : avail;
			size_t keep = r->meta_size - r->meta_len;
			if (keep > n)
				keep = n;
			evbuffer_copyout(in, r->meta + r->meta_len, keep);
			r->meta_len += keep;
			evbuffer_remove_buffer(in, r->held, n);
			r->left -= n;
			if (r->left)
				return TAR_READER_MORE;
			r->meta[r->meta_len] = '\0';
			if (r->meta_type == 'L' || r->meta_type == 'K') {
				size_t l = strnlen(r->meta, r->meta_len);
				if (l > TAR_READER_NAME_MAX)
					return tr_fail(r, "tar long name too long");
				memcpy(r->meta_type == 'L' ? r->name : r->linkname, r->meta, l + 1);
				if (r->meta_type == 'L')
					r->long_name = true;
				else
					r->long_link = true;
			} else if (apply_pax(r) < 0) {
				return tr_fail(r, "malformed PAX header");
			}
			tr_set_state(r, TR_HEADER);
			break;
		}
		case TR_DATA: {
			size_t n = r->left < avail ? (size_t)r->left : avail;
			int rc = 0;
			if (r->cbs.move) {
				/* the consumer takes the bytes as chains, no copy here */
				rc = r->cbs.move(in, n, r->arg);
				if (rc < 0)
					return tr_fail(r, "tar data refused");
				CHECK(evbuffer_get_length(in) == avail - n);
			} else if (out) {
				evbuffer_remove_buffer(in, out, n);
			} else {
				evbuffer_drain(in, n);
			}
			r->left -= n;
			if (r->left == 0) {
				r->left = (BLOCK - r->data_size % BLOCK) % BLOCK;
				tr_set_state(r, r->left ? TR_PADDING : TR_HEADER);
			}
			if (rc == 1)
				return TAR_READER_PAUSED;
			break;
		}
		case TR_PADDING: {
			size_t n = r->left < avail ? (size_t)r->left : avail;
			if (out)
				evbuffer_remove_buffer(in, out, n);
			else
				evbuffer_drain(in, n);
			r->left -= n;
			if (r->left == 0)
				tr_set_state(r, TR_HEADER);
			break;
		}
		case TR_DONE:
		case TR_FAILED:
		case TR_STATE_MAX:
			break;
		}
	}
}

enum tar_reader_status tar_reader_finish(struct tar_reader *r)
{
	if (r->state == TR_DONE)
		return TAR_READER_DONE;
	if ((r->state == TR_HEADER && r->have == 0 && evbuffer_get_length(r->held) == 0) ||
	    (r->state == TR_END && r->have == 0)) {
		if (r->state == TR_HEADER)
			tr_set_state(r, TR_END);
		tr_set_state(r, TR_DONE);
		return TAR_READER_DONE;
	}
	return tr_fail(r, "tar stream ends inside an entry");
}
