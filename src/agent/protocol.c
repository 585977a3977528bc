/* The agent protocol's framing and fields (see include/agent/protocol.h):
 * parsing bytes from outside, so every length is checked before it is used. */
#include "agent/protocol.h"

#include <stdlib.h>
#include <string.h>

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

long agent_frame_parse(const uint8_t *buf, size_t len, struct agent_frame *out)
{
	if (len < AGENT_FRAME_HEADER)
		return 0;
	uint32_t plen = get_u32(buf);
	if (plen > AGENT_FRAME_MAX || buf[6] != 0 || buf[7] != 0 || buf[4] == 0 ||
	    buf[4] >= AGENT_MSG_TYPE_MAX)
		return -1;
	if (len - AGENT_FRAME_HEADER < plen)
		return 0;
	out->len = plen;
	out->type = buf[4];
	out->flags = buf[5];
	out->id = get_u32(buf + 8);
	out->payload = buf + AGENT_FRAME_HEADER;
	return (long)(AGENT_FRAME_HEADER + plen);
}

void agent_fields_begin(struct agent_field_iter *it, const struct agent_frame *f)
{
	it->p = f->payload;
	it->end = f->payload + f->len;
}

int agent_fields_next(struct agent_field_iter *it, struct agent_field *out)
{
	if (it->p == it->end)
		return 0;
	if ((size_t)(it->end - it->p) < 5)
		return -1;
	uint32_t flen = get_u32(it->p + 1);
	if ((size_t)(it->end - it->p) - 5 < flen)
		return -1;
	out->tag = it->p[0];
	out->len = flen;
	out->data = it->p + 5;
	it->p += 5 + (size_t)flen;
	return 1;
}

bool agent_frame_valid(const struct agent_frame *f)
{
	struct agent_field_iter it;
	struct agent_field fld;
	int rc;
	agent_fields_begin(&it, f);
	while ((rc = agent_fields_next(&it, &fld)) == 1)
		;
	return rc == 0;
}

int agent_frame_bytes(const struct agent_frame *f, uint8_t tag, const uint8_t **data, uint32_t *len)
{
	struct agent_field_iter it;
	struct agent_field fld;
	agent_fields_begin(&it, f);
	while (agent_fields_next(&it, &fld) == 1) {
		if (fld.tag == tag) {
			*data = fld.data;
			*len = fld.len;
			return 0;
		}
	}
	return -1;
}

int agent_frame_u64(const struct agent_frame *f, uint8_t tag, uint64_t *out)
{
	const uint8_t *d;
	uint32_t n;
	if (agent_frame_bytes(f, tag, &d, &n) != 0 || n != 8)
		return -1;
	*out = (uint64_t)get_u32(d) << 32 | get_u32(d + 4);
	return 0;
}

/* ---- building ---- */

void agent_msg_init(struct agent_msg *m)
{
	memset(m, 0, sizeof(*m));
}

void agent_msg_free(struct agent_msg *m)
{
	free(m->buf);
	memset(m, 0, sizeof(*m));
}

static void grow(struct agent_msg *m, size_t more)
{
	if (m->len + more <= m->cap)
		return;
	size_t cap = m->cap ? m->cap : 256;
	while (cap < m->len + more)
		cap *= 2;
	uint8_t *nb = realloc(m->buf, cap);
	if (!nb)
		abort(); /* out of memory: nothing sensible left to do on either side */
	m->buf = nb;
	m->cap = cap;
}

void agent_msg_begin(struct agent_msg *m, uint8_t type, uint8_t flags, uint32_t id)
{
	m->frame_start = m->len;
	m->overflow = false;
	grow(m, AGENT_FRAME_HEADER);
	uint8_t *h = m->buf + m->len;
	put_u32(h, 0);
	h[4] = type;
	h[5] = flags;
	h[6] = h[7] = 0;
	put_u32(h + 8, id);
	m->len += AGENT_FRAME_HEADER;
}

void agent_msg_bytes(struct agent_msg *m, uint8_t tag, const void *data, size_t len)
{
	size_t payload = m->len - m->frame_start - AGENT_FRAME_HEADER;
	if (m->overflow || len > AGENT_FRAME_MAX || payload + 5 + len > AGENT_FRAME_MAX) {
		m->overflow = true;
		return;
	}
	grow(m, 5 + len);
	m->buf[m->len] = tag;
	put_u32(m->buf + m->len + 1, (uint32_t)len);
	if (len)
		memcpy(m->buf + m->len + 5, data, len);
	m->len += 5 + len;
}

void agent_msg_u64(struct agent_msg *m, uint8_t tag, uint64_t v)
{
	uint8_t b[8];
	put_u32(b, (uint32_t)(v >> 32));
	put_u32(b + 4, (uint32_t)v);
	agent_msg_bytes(m, tag, b, sizeof(b));
}

void agent_msg_str(struct agent_msg *m, uint8_t tag, const char *s)
{
	agent_msg_bytes(m, tag, s, strlen(s));
}

int agent_msg_end(struct agent_msg *m)
{
	if (m->overflow) {
		m->len = m->frame_start;
		m->overflow = false;
		return -1;
	}
	put_u32(m->buf + m->frame_start, (uint32_t)(m->len - m->frame_start - AGENT_FRAME_HEADER));
	return 0;
}

const char *agent_msg_type_name(uint8_t type)
{
	static const char *const names[AGENT_MSG_TYPE_MAX] = {
		[AGENT_HELLO] = "HELLO",
		[AGENT_WELCOME] = "WELCOME",
		[AGENT_SPAWN] = "SPAWN",
		[AGENT_STARTED] = "STARTED",
		[AGENT_SPAWN_FAILED] = "SPAWN_FAILED",
		[AGENT_OUTPUT] = "OUTPUT",
		[AGENT_EXITED] = "EXITED",
		[AGENT_STDIN] = "STDIN",
		[AGENT_STDIN_CLOSE] = "STDIN_CLOSE",
		[AGENT_SIGNAL] = "SIGNAL",
		[AGENT_RESIZE] = "RESIZE",
		[AGENT_SUBSCRIBE] = "SUBSCRIBE",
		[AGENT_ACK] = "ACK",
		[AGENT_UNSUBSCRIBE] = "UNSUBSCRIBE",
		[AGENT_FORGET] = "FORGET",
		[AGENT_LIST] = "LIST",
		[AGENT_STATUS] = "STATUS",
		[AGENT_LIST_END] = "LIST_END",
		[AGENT_ERROR] = "ERROR",
		[AGENT_PING] = "PING",
		[AGENT_PONG] = "PONG",
		[AGENT_FS] = "FS",
		[AGENT_FS_ENTRY] = "FS_ENTRY",
		[AGENT_FS_DONE] = "FS_DONE",
		[AGENT_FS_READ] = "FS_READ",
		[AGENT_FS_DATA] = "FS_DATA",
		[AGENT_FS_ACK] = "FS_ACK",
		[AGENT_FS_WRITE] = "FS_WRITE",
		[AGENT_FS_COMMIT] = "FS_COMMIT",
		[AGENT_FS_CLOSE] = "FS_CLOSE",
		[AGENT_UNSERVICE] = "UNSERVICE",
		[AGENT_UNSERVICED] = "UNSERVICED",
		[AGENT_TCP_OPEN] = "TCP_OPEN",
		[AGENT_TCP_OPENED] = "TCP_OPENED",
		[AGENT_TCP_DATA] = "TCP_DATA",
		[AGENT_TCP_ACK] = "TCP_ACK",
		[AGENT_TCP_SHUT] = "TCP_SHUT",
		[AGENT_TCP_CLOSE] = "TCP_CLOSE",
	};
	return type < AGENT_MSG_TYPE_MAX && names[type] ? names[type] : "?";
}
