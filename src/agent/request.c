/* Request decoding: bytes from outside, so each field is checked for length,
 * range and embedded NULs before the agent acts on it. */
#include "request.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

static uint64_t get_u64(const uint8_t *p);
static int field_u64(const struct agent_field *fld, uint64_t *out, const char **why);
static int decode_field(struct agent_req *r, const struct agent_field *fld, const char **why);
static int check_request(const struct agent_req *r, const char **why);
static bool service_id_ok(const uint8_t *p, uint32_t n);

/* A service's id names a file in the services folder: a letter or digit
 * first (no "." nor ".."), then [A-Za-z0-9._-]. */
static bool service_id_ok(const uint8_t *p, uint32_t n)
{
	static const char more[] = "._-";
	if (n == 0 || n > AGENT_SERVICE_ID_MAX)
		return false;
	for (uint32_t i = 0; i < n; i++) {
		bool alnum = (p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') ||
			     (p[i] >= '0' && p[i] <= '9');
		if (!alnum && (i == 0 || !p[i] || !strchr(more, p[i])))
			return false;
	}
	return true;
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static int field_u64(const struct agent_field *fld, uint64_t *out, const char **why)
{
	if (fld->len != 8) {
		*why = "integer field not 8 bytes";
		return -1;
	}
	*out = get_u64(fld->data);
	return 0;
}

static int decode_field(struct agent_req *r, const struct agent_field *fld, const char **why)
{
	uint64_t v = 0;
	switch (fld->tag) {
	case AGENT_T_TAG:
		if (fld->len > AGENT_TAG_MAX) {
			*why = "TAG too long";
			return -1;
		}
		r->tag = fld->data;
		r->tag_len = fld->len;
		return 0;
	case AGENT_T_ARGV:
	case AGENT_T_ENV:
		if (memchr(fld->data, 0, fld->len)) {
			*why = "NUL byte in ARGV or ENV";
			return -1;
		}
		if (fld->tag == AGENT_T_ARGV) {
			if (r->argc == 0 && fld->len == 0) {
				*why = "empty ARGV[0]";
				return -1;
			}
			r->argc++;
		} else {
			const uint8_t *eq = memchr(fld->data, '=', fld->len);
			if (!eq || eq == fld->data) {
				*why = "ENV entry not K=V";
				return -1;
			}
			r->envc++;
		}
		return 0;
	case AGENT_T_CWD:
	case AGENT_T_USER:
		if (memchr(fld->data, 0, fld->len) || fld->len == 0 || fld->len > 4096) {
			*why = "bad CWD or USER";
			return -1;
		}
		if (fld->tag == AGENT_T_CWD) {
			r->cwd = fld->data;
			r->cwd_len = fld->len;
		} else {
			r->user = fld->data;
			r->user_len = fld->len;
		}
		return 0;
	case AGENT_T_SHELL:
		if (memchr(fld->data, 0, fld->len)) {
			*why = "NUL byte in SHELL";
			return -1;
		}
		r->shell = fld->data;
		r->shell_len = fld->len;
		return 0;
	case AGENT_T_SERVICE:
		if (!service_id_ok(fld->data, fld->len)) {
			*why = "SERVICE must be 1 to 64 of [A-Za-z0-9._-], a letter or digit first";
			return -1;
		}
		r->service = fld->data;
		r->service_len = fld->len;
		return 0;
	case AGENT_T_DATA:
		r->data = fld->data;
		r->data_len = fld->len;
		return 0;
	case AGENT_T_DATA2:
		r->data2 = fld->data;
		r->data2_len = fld->len;
		return 0;
	case AGENT_T_PATH:
	case AGENT_T_PATH2:
		if (fld->len == 0 || fld->len > 4096 || fld->data[0] != '/' ||
		    memchr(fld->data, 0, fld->len)) {
			*why = "PATH must be absolute, without NUL, at most 4096 bytes";
			return -1;
		}
		if (fld->tag == AGENT_T_PATH) {
			r->path = fld->data;
			r->path_len = fld->len;
		} else {
			r->path2 = fld->data;
			r->path2_len = fld->len;
		}
		return 0;
	case AGENT_T_PTY_ROWS:
	case AGENT_T_PTY_COLS:
		if (field_u64(fld, &v, why) != 0)
			return -1;
		if (v > 0xffff) {
			*why = "PTY size out of range";
			return -1;
		}
		if (fld->tag == AGENT_T_PTY_ROWS)
			r->rows = (uint16_t)v;
		else
			r->cols = (uint16_t)v;
		return 0;
	case AGENT_T_VERSION:
	case AGENT_T_STDIN_OPEN:
	case AGENT_T_TIMEOUT_MS:
	case AGENT_T_GRACE_MS:
	case AGENT_T_RING_BYTES:
	case AGENT_T_WINDOW:
	case AGENT_T_OFFSET:
	case AGENT_T_SIGNO:
	case AGENT_T_LOSSLESS:
	case AGENT_T_QUIET:
	case AGENT_T_LOGIN:
	case AGENT_T_OP:
	case AGENT_T_MODE:
	case AGENT_T_FLAGS:
	case AGENT_T_DEPTH:
	case AGENT_T_LIMIT:
	case AGENT_T_LENGTH:
	case AGENT_T_SIZE:
	case AGENT_T_PORT:
		if (field_u64(fld, &v, why) != 0)
			return -1;
		break;
	default:
		return 0; /* unknown or not a request field: skipped */
	}
	switch (fld->tag) {
	case AGENT_T_VERSION:
		r->version = v;
		break;
	case AGENT_T_STDIN_OPEN:
		r->stdin_open = v != 0;
		break;
	case AGENT_T_LOSSLESS:
		r->lossless = v != 0;
		break;
	case AGENT_T_QUIET:
		r->quiet = v != 0;
		break;
	case AGENT_T_LOGIN:
		r->login = v != 0;
		break;
	case AGENT_T_TIMEOUT_MS:
	case AGENT_T_GRACE_MS:
		if (v > (uint64_t)1 << 40) {
			*why = "TIMEOUT_MS or GRACE_MS out of range";
			return -1;
		}
		if (fld->tag == AGENT_T_TIMEOUT_MS)
			r->timeout_ms = v;
		else
			r->grace_ms = v;
		break;
	case AGENT_T_RING_BYTES:
		r->ring_bytes = v;
		break;
	case AGENT_T_WINDOW:
		r->window = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
		r->has_window = true;
		break;
	case AGENT_T_OFFSET:
		r->offset = v;
		r->has_offset = true;
		break;
	case AGENT_T_SIGNO:
		if (v == 0 || v >= (uint64_t)NSIG) {
			*why = "SIGNO out of range";
			return -1;
		}
		r->signo = (int)v;
		break;
	case AGENT_T_OP:
		if (v == 0 || v >= AGENT_FS_OP_MAX) {
			*why = "unknown OP";
			return -1;
		}
		r->fs_op = (uint8_t)v;
		break;
	case AGENT_T_MODE:
		if (v > 07777) {
			*why = "MODE out of range";
			return -1;
		}
		r->mode = (uint32_t)v;
		r->has_mode = true;
		break;
	case AGENT_T_FLAGS:
		r->flags = (uint32_t)v;
		break;
	case AGENT_T_DEPTH:
		r->depth = v;
		break;
	case AGENT_T_LIMIT:
		r->limit = v;
		break;
	case AGENT_T_LENGTH:
		r->length = v;
		r->has_length = true;
		break;
	case AGENT_T_SIZE:
		r->size = v;
		r->has_size = true;
		break;
	case AGENT_T_PORT:
		if (v == 0 || v > 65535) {
			*why = "PORT out of range";
			return -1;
		}
		r->port = (uint16_t)v;
		break;
	}
	return 0;
}

static int check_request(const struct agent_req *r, const char **why)
{
	switch (r->type) {
	case AGENT_SPAWN:
		if (r->argc == 0) { /* with SHELL too: what an older agent would run */
			*why = "SPAWN without ARGV";
			return -1;
		}
		return 0;
	case AGENT_SIGNAL:
		if (r->signo == 0) {
			*why = "SIGNAL without SIGNO";
			return -1;
		}
		return 0;
	case AGENT_RESIZE:
		if (r->rows == 0 || r->cols == 0) {
			*why = "RESIZE without PTY_ROWS and PTY_COLS";
			return -1;
		}
		return 0;
	case AGENT_ACK:
		if (!r->has_offset) {
			*why = "ACK without OFFSET";
			return -1;
		}
		return 0;
	case AGENT_FS:
		if (r->fs_op == 0 || !r->path || !r->tag) {
			*why = "FS needs TAG, OP and PATH";
			return -1;
		}
		if (r->fs_op == AGENT_FS_MOVE && !r->path2) {
			*why = "MOVE needs PATH2";
			return -1;
		}
		if (r->fs_op == AGENT_FS_EDIT && (!r->data || r->data_len == 0)) {
			*why = "EDIT needs a non-empty DATA";
			return -1;
		}
		return 0;
	case AGENT_FS_READ:
	case AGENT_FS_WRITE:
		if (!r->path || !r->tag) {
			*why = "FS_READ and FS_WRITE need TAG and PATH";
			return -1;
		}
		return 0;
	case AGENT_FS_ACK:
		if (!r->tag || !r->has_offset) {
			*why = "FS_ACK needs TAG and OFFSET";
			return -1;
		}
		return 0;
	case AGENT_FS_DATA:
	case AGENT_FS_COMMIT:
	case AGENT_FS_CLOSE:
		if (!r->tag) {
			*why = "a stream request needs its TAG";
			return -1;
		}
		return 0;
	case AGENT_UNSERVICE:
		if (!r->tag || !r->service) {
			*why = "UNSERVICE needs TAG and SERVICE";
			return -1;
		}
		return 0;
	case AGENT_TCP_OPEN:
		if (!r->tag || !r->port) {
			*why = "TCP_OPEN needs TAG and PORT";
			return -1;
		}
		return 0;
	case AGENT_TCP_ACK:
		if (!r->tag || !r->has_offset) {
			*why = "TCP_ACK needs TAG and OFFSET";
			return -1;
		}
		return 0;
	case AGENT_TCP_DATA:
	case AGENT_TCP_SHUT:
	case AGENT_TCP_CLOSE:
		if (!r->tag) {
			*why = "a TCP stream request needs its TAG";
			return -1;
		}
		return 0;
	case AGENT_HELLO:
	case AGENT_SUBSCRIBE:
	case AGENT_UNSUBSCRIBE:
	case AGENT_STDIN:
	case AGENT_STDIN_CLOSE:
	case AGENT_FORGET:
	case AGENT_LIST:
	case AGENT_PING:
		return 0;
	default:
		*why = "not a request";
		return -1;
	}
}

int agent_req_decode(const struct agent_frame *f, struct agent_req *r, const char **why)
{
	struct agent_field_iter it;
	struct agent_field fld;
	int rc;
	memset(r, 0, sizeof(*r));
	r->type = f->type;
	r->id = f->id;
	r->grace_ms = AGENT_GRACE_DEFAULT_MS;
	agent_fields_begin(&it, f);
	while ((rc = agent_fields_next(&it, &fld)) == 1) {
		if (decode_field(r, &fld, why) != 0)
			return -1;
	}
	if (rc < 0) {
		*why = "malformed fields";
		return -1;
	}
	if (r->ring_bytes == 0)
		r->ring_bytes = AGENT_RING_DEFAULT;
	if (r->ring_bytes < AGENT_RING_MIN)
		r->ring_bytes = AGENT_RING_MIN;
	if (r->ring_bytes > AGENT_RING_MAX)
		r->ring_bytes = AGENT_RING_MAX;
	return check_request(r, why);
}

char **agent_req_strings(const struct agent_frame *f, uint8_t tag, size_t count)
{
	struct agent_field_iter it;
	struct agent_field fld;
	size_t bytes = 0, n = 0;
	if (count == 0)
		return NULL;
	agent_fields_begin(&it, f);
	while (agent_fields_next(&it, &fld) == 1) {
		if (fld.tag == tag)
			bytes += fld.len + 1;
	}
	char **v = malloc((count + 1) * sizeof(char *) + bytes);
	CHECK(v != NULL);
	char *s = (char *)(v + count + 1);
	agent_fields_begin(&it, f);
	while (agent_fields_next(&it, &fld) == 1 && n < count) {
		if (fld.tag != tag)
			continue;
		memcpy(s, fld.data, fld.len);
		s[fld.len] = '\0';
		v[n++] = s;
		s += fld.len + 1;
	}
	v[n] = NULL;
	return v;
}
