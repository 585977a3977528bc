/* Random bytes as a stream of agent frames: header parsing, field iteration,
 * the lookups, the agent's own request decoding, and re-encoding each frame's
 * fields to the same bytes. The decoder is compiled in (it has no I/O). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/protocol.h"
#include "../../src/agent/request.c"
#include "../../src/core/check.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void one_frame(const struct agent_frame *f)
{
	struct agent_field_iter it;
	struct agent_field fld;
	struct agent_msg m;
	int rc;
	size_t n = 0;
	bool valid = agent_frame_valid(f);
	agent_msg_init(&m);
	agent_msg_begin(&m, f->type, f->flags, f->id);
	agent_fields_begin(&it, f);
	while ((rc = agent_fields_next(&it, &fld)) == 1) {
		CHECK(fld.data >= f->payload && fld.data + fld.len <= f->payload + f->len);
		agent_msg_bytes(&m, fld.tag, fld.data, fld.len);
		n++;
	}
	CHECK(rc == (valid ? 0 : -1));
	CHECK(agent_msg_end(&m) == 0);
	if (valid) /* a well-formed frame re-encodes to itself */
		CHECK(m.len == AGENT_FRAME_HEADER + f->len &&
		      memcmp(m.buf + AGENT_FRAME_HEADER, f->payload, f->len) == 0);
	agent_msg_free(&m);

	uint64_t v;
	const uint8_t *d;
	uint32_t len;
	for (uint8_t tag = 0; tag < AGENT_T_TAG_MAX; tag++) {
		if (agent_frame_u64(f, tag, &v) == 0)
			CHECK(agent_frame_bytes(f, tag, &d, &len) == 0 && len == 8);
	}

	struct agent_req r;
	const char *why = NULL;
	if (agent_req_decode(f, &r, &why) != 0) {
		CHECK(why != NULL);
		return;
	}
	CHECK(valid);
	CHECK(r.ring_bytes >= AGENT_RING_MIN && r.ring_bytes <= AGENT_RING_MAX);
	CHECK(r.tag_len <= AGENT_TAG_MAX);
	if (r.type == AGENT_SPAWN) {
		CHECK(r.argc > 0);
		char **argv = agent_req_strings(f, AGENT_T_ARGV, r.argc);
		char **env = agent_req_strings(f, AGENT_T_ENV, r.envc);
		CHECK(argv[0][0] != '\0' && argv[r.argc] == NULL);
		for (size_t i = 0; i < r.envc; i++)
			CHECK(strchr(env[i], '=') != NULL && env[i][0] != '=');
		free(argv);
		free(env);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;
	while (off < size) {
		struct agent_frame f;
		long used = agent_frame_parse(data + off, size - off, &f);
		if (used <= 0)
			break;
		CHECK((size_t)used >= AGENT_FRAME_HEADER && (size_t)used <= size - off);
		one_frame(&f);
		off += (size_t)used;
	}
	return 0;
}
