/* multipart/form-data parsed as it streams: the delimiter is searched in a
 * bounded window, and a body's bytes are handed on except for a tail short
 * enough to be the start of a delimiter split across reads. */
#include "files/multipart.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"

#define WINDOW	     (64u << 10) /* bytes looked at per step */
#define VALUE_MAX    4096	 /* a Content-Disposition parameter */
#define PREAMBLE_MAX (64u << 10)
#define BODY_WINDOW  (1u << 20) /* body bytes scanned per step */
#define SCAN_VECS    16

enum mp_state {
	MP_START,	/* before the first delimiter (preamble) */
	MP_AFTER_DELIM, /* "--" (the end) or CRLF (a part) follows */
	MP_HEADERS,	/* header lines up to an empty one */
	MP_BODY,	/* part body up to CRLF "--" boundary */
	MP_DONE,	/* epilogue: discarded */
	MP_FAILED,
	MP_STATE_MAX
};

struct multipart {
	enum mp_state state;
	struct multipart_cbs cbs;
	void *arg;
	char delim[MULTIPART_BOUNDARY_MAX + 5]; /* CRLF "--" boundary */
	size_t dlen;
	uint64_t consumed;
	size_t header_bytes;
	size_t preamble;
	bool in_part;
	const char *err;
	char name[VALUE_MAX + 1];
	char filename[VALUE_MAX + 1];
	size_t filename_len;
	bool has_filename, has_filename_star;
	char content_type[256];
};

static void mp_set_state(struct multipart *mp, enum mp_state to);
static enum multipart_status mp_fail(struct multipart *mp, const char *why);
static int parse_header_line(struct multipart *mp, const char *line, size_t len);
static int parse_disposition(struct multipart *mp, const char *s, size_t len);
static size_t parse_value(const char *s, size_t len, char *out, size_t *outlen);
static int pct_decode(const char *s, size_t len, char *out, size_t *outlen);
static const char *find(const char *hay, size_t n, const char *needle, size_t m);
static size_t body_scan(struct multipart *mp, struct evbuffer *in, size_t win, bool *found);
static int body_give(struct multipart *mp, struct evbuffer *in, size_t give);

static const char *state_names[MP_STATE_MAX] = {
	"start", "after_delim", "headers", "body", "done", "failed"
};

static void mp_set_state(struct multipart *mp, enum mp_state to)
{
	static const unsigned legal[MP_STATE_MAX] = {
		[MP_START] = 1u << MP_AFTER_DELIM | 1u << MP_FAILED,
		[MP_AFTER_DELIM] = 1u << MP_HEADERS | 1u << MP_DONE | 1u << MP_FAILED,
		[MP_HEADERS] = 1u << MP_BODY | 1u << MP_FAILED,
		[MP_BODY] = 1u << MP_AFTER_DELIM | 1u << MP_FAILED,
		[MP_DONE] = 0,
		[MP_FAILED] = 0,
	};
	CHECK(to < MP_STATE_MAX && (legal[mp->state] & (1u << to)));
	log_debug("multipart: %s -> %s", state_names[mp->state], state_names[to]);
	mp->state = to;
}

int multipart_boundary(const char *ct, char *out)
{
	if (!ct || strncasecmp(ct, "multipart/form-data", 19) != 0)
		return -1;
	const char *p = ct + 19;
	while (*p) {
		while (*p == ';' || *p == ' ' || *p == '\t')
			p++;
		const char *key = p;
		while (*p && *p != '=' && *p != ';')
			p++;
		size_t klen = (size_t)(p - key);
		while (klen && (key[klen - 1] == ' ' || key[klen - 1] == '\t'))
			klen--;
		if (*p != '=') {
			continue;
		}
		p++;
		char val[VALUE_MAX + 1];
		size_t vlen;
		size_t used = parse_value(p, strlen(p), val, &vlen);
		if (used == 0 && *p != ';' && *p)
			return -1;
		p += used;
		if (klen == 8 && strncasecmp(key, "boundary", 8) == 0) {
			if (vlen == 0 || vlen > MULTIPART_BOUNDARY_MAX || memchr(val, '\0', vlen))
				return -1;
			for (size_t i = 0; i < vlen; i++)
				if ((unsigned char)val[i] < 0x20 || (unsigned char)val[i] > 0x7e)
					return -1;
			memcpy(out, val, vlen);
			out[vlen] = '\0';
			return 0;
		}
	}
	return -1;
}

struct multipart *multipart_new(const char *boundary, const struct multipart_cbs *cbs, void *arg)
{
	size_t blen = strlen(boundary);
	CHECK(blen > 0 && blen <= MULTIPART_BOUNDARY_MAX);
	struct multipart *mp = calloc(1, sizeof(*mp));
	CHECK(mp != NULL);
	mp->cbs = *cbs;
	mp->arg = arg;
	memcpy(mp->delim, "\r\n--", 4);
	memcpy(mp->delim + 4, boundary, blen);
	mp->dlen = blen + 4;
	return mp;
}

void multipart_free(struct multipart *mp)
{
	free(mp);
}

const char *multipart_error(const struct multipart *mp)
{
	return mp->err ? mp->err : "no error";
}

uint64_t multipart_consumed(const struct multipart *mp)
{
	return mp->consumed;
}

size_t multipart_trailer_min(const struct multipart *mp)
{
	return mp->dlen + 2;
}

static enum multipart_status mp_fail(struct multipart *mp, const char *why)
{
	if (mp->state != MP_FAILED) {
		mp->err = why;
		mp_set_state(mp, MP_FAILED);
	}
	return MULTIPART_ERROR;
}

static void consume(struct multipart *mp, struct evbuffer *in, size_t n)
{
	evbuffer_drain(in, n);
	mp->consumed += n;
}

static const char *find(const char *hay, size_t n, const char *needle, size_t m)
{
	return m <= n ? memmem(hay, n, needle, m) : NULL;
}

enum multipart_status multipart_feed(struct multipart *mp, struct evbuffer *in)
{
	for (;;) {
		size_t avail = evbuffer_get_length(in);
		if (mp->state == MP_FAILED)
			return MULTIPART_ERROR;
		if (mp->state == MP_DONE) {
			consume(mp, in, avail);
			return MULTIPART_DONE;
		}
		if (avail == 0)
			return MULTIPART_MORE;
		size_t win = avail < WINDOW + mp->dlen ? avail : WINDOW + mp->dlen;
		if (mp->state == MP_BODY) {
			/* bodies are scanned where they lie: no pullup, no copy */
			bool found = false;
			size_t give = body_scan(mp, in, avail < BODY_WINDOW ? avail : BODY_WINDOW, &found);
			int rc = give > 0 ? body_give(mp, in, give) : 0;
			if (rc < 0)
				return mp_fail(mp, "part data refused");
			if (found && rc == 0) {
				consume(mp, in, mp->dlen);
				mp->in_part = false;
				mp_set_state(mp, MP_AFTER_DELIM);
				if (mp->cbs.part_end && mp->cbs.part_end(mp->arg) < 0)
					return mp_fail(mp, "part refused");
				continue;
			}
			if (rc == 1)
				return MULTIPART_PAUSED;
			if (!found && give == 0)
				return MULTIPART_MORE;
			continue;
		}
		if (mp->state == MP_HEADERS && win > MULTIPART_HEADERS_MAX + 2)
			win = MULTIPART_HEADERS_MAX + 2; /* a header line is never longer */
		const char *p = (const char *)evbuffer_pullup(in, (ssize_t)win);
		switch (mp->state) {
		case MP_START: {
			/* the first delimiter may come without its leading CRLF */
			const char *d = mp->delim + 2;
			size_t dl = mp->dlen - 2;
			bool at_start = mp->consumed == 0; /* only there may the CRLF be missing */
			if (at_start && win >= dl && memcmp(p, d, dl) == 0) {
				consume(mp, in, dl);
				mp_set_state(mp, MP_AFTER_DELIM);
				break;
			}
			if (at_start && win < dl && memcmp(p, d, win) == 0)
				return MULTIPART_MORE;
			const char *m = find(p, win, mp->delim, mp->dlen);
			size_t skip =
				m ? (size_t)(m - p) + mp->dlen : (win >= mp->dlen ? win - mp->dlen + 1 : 0);
			mp->preamble += skip;
			if (mp->preamble > PREAMBLE_MAX)
				return mp_fail(mp, "no multipart boundary found");
			consume(mp, in, skip);
			if (m)
				mp_set_state(mp, MP_AFTER_DELIM);
			else if (skip == 0)
				return MULTIPART_MORE;
			break;
		}
		case MP_AFTER_DELIM: {
			/* transport padding (spaces, tabs) may precede the CRLF */
			size_t i = 0;
			while (i < win && i < 256 && (p[i] == ' ' || p[i] == '\t'))
				i++;
			if (i >= 256)
				return mp_fail(mp, "garbage after a boundary");
			if (win - i < 2) {
				if (win - i == 1 && p[i] != '-' && p[i] != '\r')
					return mp_fail(mp, "garbage after a boundary");
				return MULTIPART_MORE;
			}
			if (i == 0 && p[0] == '-' && p[1] == '-') {
				consume(mp, in, 2);
				mp_set_state(mp, MP_DONE);
				break;
			}
			if (p[i] != '\r' || p[i + 1] != '\n')
				return mp_fail(mp, "garbage after a boundary");
			consume(mp, in, i + 2);
			mp->header_bytes = 0;
			mp->name[0] = mp->filename[0] = mp->content_type[0] = '\0';
			mp->filename_len = 0;
			mp->has_filename = mp->has_filename_star = false;
			mp_set_state(mp, MP_HEADERS);
			break;
		}
		case MP_HEADERS: {
			const char *eol = find(p, win, "\r\n", 2);
			if (!eol) {
				if (mp->header_bytes + win > MULTIPART_HEADERS_MAX)
					return mp_fail(mp, "part headers too long");
				return MULTIPART_MORE;
			}
			size_t llen = (size_t)(eol - p);
			mp->header_bytes += llen + 2;
			if (mp->header_bytes > MULTIPART_HEADERS_MAX)
				return mp_fail(mp, "part headers too long");
			if (llen == 0) {
				consume(mp, in, 2);
				struct multipart_part part = {
					.name = mp->name,
					.filename = mp->has_filename ? mp->filename : NULL,
					.filename_len = mp->filename_len,
					.content_type = mp->content_type,
					.offset = mp->consumed,
				};
				mp_set_state(mp, MP_BODY);
				mp->in_part = true;
				if (mp->cbs.part_begin && mp->cbs.part_begin(&part, mp->arg) < 0)
					return mp_fail(mp, "part refused");
				break;
			}
			if (parse_header_line(mp, p, llen) < 0)
				return mp_fail(mp, "malformed part header");
			consume(mp, in, llen + 2);
			break;
		}
		case MP_BODY:
		case MP_DONE:
		case MP_FAILED:
		case MP_STATE_MAX:
			break;
		}
	}
}

/* Where the delimiter starts within the first win bytes (found), else how
 * many bytes cannot be the start of one (all but a tail that matches a
 * prefix of it). Each chain is searched in place; a delimiter split across
 * two chains is caught by searching a small copy of the seam. */
static size_t body_scan(struct multipart *mp, struct evbuffer *in, size_t win, bool *found)
{
	struct evbuffer_iovec v[SCAN_VECS];
	char seam[2 * sizeof(mp->delim)];
	size_t dl = mp->dlen;
	int n = evbuffer_peek(in, (ssize_t)win, NULL, v, SCAN_VECS);
	size_t pos = 0;
	*found = false;
	for (int i = 0; i < n && pos < win; i++) {
		size_t len = v[i].iov_len < win - pos ? v[i].iov_len : win - pos;
		const char *base = v[i].iov_base;
		const char *m = find(base, len, mp->delim, dl);
		if (m) {
			*found = true;
			return pos + (size_t)(m - base);
		}
		if (pos + len < win) {
			size_t a = len < dl - 1 ? len : dl - 1;
			struct evbuffer_ptr at;
			CHECK(evbuffer_ptr_set(in, &at, pos + len - a, EVBUFFER_PTR_SET) == 0);
			size_t b = win - (pos + len) < dl - 1 ? win - (pos + len) : dl - 1;
			ev_ssize_t got = evbuffer_copyout_from(in, &at, seam, a + b);
			m = got > 0 ? find(seam, (size_t)got, mp->delim, dl) : NULL;
			if (m) {
				*found = true;
				return pos + len - a + (size_t)(m - seam);
			}
		}
		pos += len;
	}
	/* keep the longest tail that could begin a delimiter split across reads */
	size_t k = pos < dl - 1 ? pos : dl - 1;
	struct evbuffer_ptr at;
	CHECK(evbuffer_ptr_set(in, &at, pos - k, EVBUFFER_PTR_SET) == 0);
	if (evbuffer_copyout_from(in, &at, seam, k) != (ev_ssize_t)k)
		return 0;
	for (size_t j = 0; j < k; j++)
		if (seam[j] == '\r' && memcmp(seam + j, mp->delim, k - j) == 0)
			return pos - k + j;
	return pos;
}

/* Hands give body bytes on: moved as buffers, or chain by chain as pointers. */
static int body_give(struct multipart *mp, struct evbuffer *in, size_t give)
{
	if (mp->cbs.part_move) {
		size_t before = evbuffer_get_length(in);
		int rc = mp->cbs.part_move(in, give, mp->arg);
		if (rc >= 0)
			CHECK(before - evbuffer_get_length(in) == give);
		mp->consumed += give;
		return rc;
	}
	while (give > 0) {
		struct evbuffer_iovec v;
		CHECK(evbuffer_peek(in, -1, NULL, &v, 1) == 1);
		size_t len = v.iov_len < give ? v.iov_len : give;
		int rc = mp->cbs.part_data ? mp->cbs.part_data(v.iov_base, len, mp->arg) : 0;
		if (rc < 0)
			return rc;
		consume(mp, in, len);
		give -= len;
		if (rc == 1)
			return 1;
	}
	return 0;
}

enum multipart_status multipart_finish(struct multipart *mp)
{
	if (mp->state == MP_DONE)
		return MULTIPART_DONE;
	return mp_fail(mp,
		       mp->state == MP_START ? "no multipart boundary found" : "multipart body ends early");
}

/* "Name: value"; only Content-Disposition and Content-Type matter. */
static int parse_header_line(struct multipart *mp, const char *line, size_t len)
{
	const char *colon = memchr(line, ':', len);
	if (!colon || colon == line)
		return -1;
	size_t nlen = (size_t)(colon - line);
	const char *v = colon + 1;
	size_t vlen = len - nlen - 1;
	while (vlen && (*v == ' ' || *v == '\t'))
		v++, vlen--;
	while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	if (memchr(v, '\0', vlen))
		return -1;
	if (nlen == 19 && strncasecmp(line, "Content-Disposition", 19) == 0)
		return parse_disposition(mp, v, vlen);
	if (nlen == 12 && strncasecmp(line, "Content-Type", 12) == 0) {
		if (vlen >= sizeof(mp->content_type))
			vlen = sizeof(mp->content_type) - 1;
		memcpy(mp->content_type, v, vlen);
		mp->content_type[vlen] = '\0';
	}
	return 0;
}

/* form-data; name="x"; filename="y"; filename*=UTF-8''z (filename* wins) */
static int parse_disposition(struct multipart *mp, const char *s, size_t len)
{
	if (len < 9 || strncasecmp(s, "form-data", 9) != 0)
		return -1;
	size_t i = 9;
	while (i < len) {
		while (i < len && (s[i] == ';' || s[i] == ' ' || s[i] == '\t'))
			i++;
		if (i >= len)
			break;
		size_t k = i;
		while (i < len && s[i] != '=' && s[i] != ';')
			i++;
		size_t klen = i - k;
		while (klen && (s[k + klen - 1] == ' ' || s[k + klen - 1] == '\t'))
			klen--;
		if (i >= len || s[i] != '=')
			continue; /* a bare token: ignored */
		i++;
		while (i < len && (s[i] == ' ' || s[i] == '\t'))
			i++;
		char val[VALUE_MAX + 1];
		size_t vlen;
		size_t used = parse_value(s + i, len - i, val, &vlen);
		if (used == 0 && i < len && s[i] != ';')
			return -1;
		i += used;
		if (klen == 4 && strncasecmp(s + k, "name", 4) == 0) {
			memcpy(mp->name, val, vlen);
			mp->name[vlen] = '\0';
		} else if (klen == 8 && strncasecmp(s + k, "filename", 8) == 0) {
			if (mp->has_filename_star)
				continue;
			memcpy(mp->filename, val, vlen);
			mp->filename[vlen] = '\0';
			mp->filename_len = vlen;
			mp->has_filename = true;
		} else if (klen == 9 && strncasecmp(s + k, "filename*", 9) == 0) {
			/* RFC 8187: charset'language'pct-encoded; only UTF-8 is taken */
			if (vlen < 7 || strncasecmp(val, "UTF-8'", 6) != 0)
				return -1;
			const char *q = memchr(val + 6, '\'', vlen - 6);
			if (!q)
				return -1;
			size_t off = (size_t)(q + 1 - val);
			if (pct_decode(val + off, vlen - off, mp->filename, &mp->filename_len) < 0)
				return -1;
			mp->filename[mp->filename_len] = '\0';
			mp->has_filename = mp->has_filename_star = true;
		}
	}
	return 0;
}

/* A token or a quoted string (backslash escapes); returns bytes used, 0 on error
 * or an empty value. out holds VALUE_MAX + 1 bytes. */
static size_t parse_value(const char *s, size_t len, char *out, size_t *outlen)
{
	size_t o = 0, i = 0;
	*outlen = 0;
	if (len > 0 && s[0] == '"') {
		for (i = 1; i < len; i++) {
			char c = s[i];
			if (c == '"') {
				*outlen = o;
				out[o] = '\0';
				return i + 1;
			}
			if (c == '\\' && i + 1 < len)
				c = s[++i];
			if (o >= VALUE_MAX)
				return 0;
			out[o++] = c;
		}
		return 0; /* unterminated */
	}
	while (i < len && s[i] != ';' && s[i] != ' ' && s[i] != '\t') {
		if (o >= VALUE_MAX)
			return 0;
		out[o++] = s[i++];
	}
	out[o] = '\0';
	*outlen = o;
	return i;
}

static int pct_decode(const char *s, size_t len, char *out, size_t *outlen)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%') {
			if (i + 2 >= len)
				return -1;
			char h[3] = { s[i + 1], s[i + 2], 0 };
			if (!isxdigit((unsigned char)h[0]) || !isxdigit((unsigned char)h[1]))
				return -1;
			out[o++] = (char)strtol(h, NULL, 16);
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	*outlen = o;
	return 0;
}
