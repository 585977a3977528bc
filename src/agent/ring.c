/* The output ring: bytes in one circular buffer, the records that type them in
 * a circular array beside it; both drop from the front when full. The buffer
 * starts small and doubles up to the ring's capacity as output comes, and is
 * cut to what it holds once the command is done (ring_trim): most commands
 * print little, and a sandbox keeps the output of many. */
#include "ring.h"

#include <stdlib.h>
#include <string.h>

#include "core/check.h"

struct rec {
	uint64_t off; /* absolute offset of the record's first byte still kept */
	uint64_t len;
	uint8_t stream;
};

/* the first buffer: most commands print less */
#define RING_FIRST_ALLOC 4096

struct ring {
	uint8_t *buf;
	size_t cap;	     /* bytes kept at most */
	size_t alloc;	     /* the buffer's size now (<= cap); byte off is at buf[off % alloc] */
	uint64_t start, end; /* absolute offsets; the bytes are buf[off % cap] */
	struct rec *recs;
	size_t rcap, rhead, rcount; /* circular array of records */
	size_t rmax;		    /* bound on records, so they cost at most ~cap bytes */
};

static void *xmalloc(size_t n);
static struct rec *rec_at(const struct ring *r, size_t i);
static void drop_front(struct ring *r, uint64_t new_start);
static void recs_push(struct ring *r, uint8_t stream, uint64_t off, uint64_t len);
static void ring_realloc(struct ring *r, size_t alloc);

static void *xmalloc(size_t n)
{
	void *p = malloc(n);
	CHECK(p != NULL);
	return p;
}

struct ring *ring_new(size_t cap)
{
	CHECK(cap > 0);
	struct ring *r = xmalloc(sizeof(*r));
	memset(r, 0, sizeof(*r));
	r->cap = cap;
	r->alloc = cap < RING_FIRST_ALLOC ? cap : RING_FIRST_ALLOC;
	r->buf = xmalloc(r->alloc);
	r->rcap = 16;
	r->recs = xmalloc(r->rcap * sizeof(*r->recs));
	r->rmax = cap / sizeof(struct rec);
	if (r->rmax < 16)
		r->rmax = 16;
	return r;
}

void ring_free(struct ring *r)
{
	if (!r)
		return;
	free(r->buf);
	free(r->recs);
	free(r);
}

static struct rec *rec_at(const struct ring *r, size_t i)
{
	return &r->recs[(r->rhead + i) % r->rcap];
}

/* Forget every byte before new_start, whole records first, then the front of
 * the one that straddles it. */
static void drop_front(struct ring *r, uint64_t new_start)
{
	while (r->rcount > 0) {
		struct rec *f = rec_at(r, 0);
		if (f->off + f->len <= new_start) {
			r->rhead = (r->rhead + 1) % r->rcap;
			r->rcount--;
			continue;
		}
		if (f->off < new_start) {
			f->len -= new_start - f->off;
			f->off = new_start;
		}
		break;
	}
	r->start = new_start;
}

static void recs_push(struct ring *r, uint8_t stream, uint64_t off, uint64_t len)
{
	if (r->rcount > 0) {
		struct rec *last = rec_at(r, r->rcount - 1);
		if (last->stream == stream && last->off + last->len == off) {
			last->len += len;
			return;
		}
	}
	if (r->rcount == r->rmax) /* too many tiny records: the oldest go */
		drop_front(r, rec_at(r, 0)->off + rec_at(r, 0)->len);
	if (r->rcount == r->rcap) {
		size_t ncap = r->rcap * 2;
		struct rec *n = xmalloc(ncap * sizeof(*n));
		for (size_t i = 0; i < r->rcount; i++)
			n[i] = *rec_at(r, i);
		free(r->recs);
		r->recs = n;
		r->rcap = ncap;
		r->rhead = 0;
	}
	*rec_at(r, r->rcount) = (struct rec){ .off = off, .len = len, .stream = stream };
	r->rcount++;
}

void ring_write(struct ring *r, uint8_t stream, const void *data, size_t len)
{
	const uint8_t *p = data;
	if (len == 0)
		return;
	if (len > r->cap) { /* only the last cap bytes can be kept */
		r->end += len - r->cap;
		drop_front(r, r->end);
		p += len - r->cap;
		len = r->cap;
	}
	if (r->end + len - r->start > r->cap)
		drop_front(r, r->end + len - r->cap);
	size_t kept = (size_t)(r->end + len - r->start);
	if (kept > r->alloc) {
		size_t n = r->alloc * 2 > kept ? r->alloc * 2 : kept;
		ring_realloc(r, n < r->cap ? n : r->cap);
	}
	size_t pos = (size_t)(r->end % r->alloc);
	size_t first = r->alloc - pos < len ? r->alloc - pos : len;
	memcpy(r->buf + pos, p, first);
	memcpy(r->buf, p + first, len - first);
	recs_push(r, stream, r->end, len);
	r->end += len;
	if (r->rcount > 0 && rec_at(r, 0)->off > r->start)
		r->start = rec_at(r, 0)->off; /* records dropped for count, bytes too */
}

uint64_t ring_start(const struct ring *r)
{
	return r->start;
}

uint64_t ring_end(const struct ring *r)
{
	return r->end;
}

size_t ring_records(const struct ring *r)
{
	return r->rcount;
}

size_t ring_room(const struct ring *r, uint64_t keep)
{
	if (keep < r->start)
		keep = r->start; /* lost already: nothing before start to protect */
	if (keep > r->end)
		keep = r->end;
	uint64_t used = r->end - keep;
	if (used >= r->cap)
		return 0;
	/* a full record array drops its oldest record on the next push */
	if (r->rcount >= r->rmax && rec_at(r, 0)->off + rec_at(r, 0)->len > keep)
		return 0;
	return (size_t)(r->cap - used);
}

size_t ring_copy(const struct ring *r, uint64_t offset, size_t max, uint8_t *stream, uint8_t *dst)
{
	if (offset < r->start || offset >= r->end || max == 0 || r->rcount == 0)
		return 0;
	/* the record holding offset: records are sorted and contiguous */
	size_t lo = 0, hi = r->rcount;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (rec_at(r, mid)->off <= offset)
			lo = mid;
		else
			hi = mid;
	}
	uint8_t s = rec_at(r, lo)->stream;
	uint64_t stop = offset;
	for (size_t i = lo; i < r->rcount && rec_at(r, i)->stream == s; i++)
		stop = rec_at(r, i)->off + rec_at(r, i)->len;
	size_t n = stop - offset < max ? (size_t)(stop - offset) : max;
	size_t pos = (size_t)(offset % r->alloc);
	size_t first = r->alloc - pos < n ? r->alloc - pos : n;
	memcpy(dst, r->buf + pos, first);
	memcpy(dst + first, r->buf, n - first);
	*stream = s;
	return n;
}

/* Moves the kept bytes into a buffer of alloc bytes, each to its place there
 * (offset % alloc), a run at a time: runs end where either buffer wraps. */
static void ring_realloc(struct ring *r, size_t alloc)
{
	CHECK(alloc >= r->end - r->start && alloc > 0);
	uint8_t *nb = xmalloc(alloc);
	for (uint64_t off = r->start; off < r->end;) {
		size_t from = (size_t)(off % r->alloc), to = (size_t)(off % alloc);
		size_t n = (size_t)(r->end - off);
		if (n > r->alloc - from)
			n = r->alloc - from;
		if (n > alloc - to)
			n = alloc - to;
		memcpy(nb + to, r->buf + from, n);
		off += n;
	}
	free(r->buf);
	r->buf = nb;
	r->alloc = alloc;
}

void ring_trim(struct ring *r)
{
	size_t kept = (size_t)(r->end - r->start);
	if (kept < r->alloc)
		ring_realloc(r, kept > 0 ? kept : 1);
	if (r->rcount < r->rcap) {
		struct rec *n = xmalloc((r->rcount > 0 ? r->rcount : 1) * sizeof(*n));
		for (size_t i = 0; i < r->rcount; i++)
			n[i] = *rec_at(r, i);
		free(r->recs);
		r->recs = n;
		r->rcap = r->rcount > 0 ? r->rcount : 1;
		r->rhead = 0;
	}
}

size_t ring_bytes(const struct ring *r)
{
	return sizeof(*r) + r->alloc + r->rcap * sizeof(struct rec);
}
