/* Decoding of the requests sandbard sends the agent (include/agent/protocol.h):
 * every field checked here, so the rest of the agent works on plain values.
 * No I/O, so the fuzzer and the unit tests can drive it alone. */
#ifndef SANDBAR_AGENT_REQUEST_H
#define SANDBAR_AGENT_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/protocol.h"

#define AGENT_TAG_MAX	       256 /* bytes of an opaque TAG */
#define AGENT_RING_DEFAULT     (512u * 1024)
#define AGENT_RING_MIN	       4096u
#define AGENT_RING_MAX	       (256u * 1024 * 1024)
#define AGENT_WINDOW_DEFAULT   (1u << 20)
#define AGENT_GRACE_DEFAULT_MS 2000

/* A request, its slices pointing into the frame. */
struct agent_req {
	uint8_t type;
	uint32_t id;
	const uint8_t *tag; /* NULL when absent; echoed verbatim */
	uint32_t tag_len;
	/* SPAWN */
	size_t argc, envc;    /* ARGV, ENV fields, iterate with agent_req_strings */
	const uint8_t *shell; /* SHELL: run instead of ARGV (NULL: none); no NUL */
	uint32_t shell_len;
	bool login; /* LOGIN: with SHELL, in the user's login environment */
	const uint8_t *cwd, *user;
	uint32_t cwd_len, user_len;
	uint16_t rows, cols; /* both > 0: PTY */
	bool stdin_open;
	uint64_t timeout_ms, grace_ms, ring_bytes;
	uint32_t window;
	bool lossless; /* SPAWN (with WINDOW), SUBSCRIBE */
	bool quiet;    /* ACK, SUBSCRIBE: no more OUTPUT, only EXITED */
	/* SPAWN (a service, a served port), UNSERVICE */
	const uint8_t *service; /* NULL: not a service; checked: a file name */
	uint32_t service_len;
	uint16_t port; /* 0: none */
	/* SUBSCRIBE, ACK */
	uint64_t offset;
	bool has_offset, has_window;
	/* STDIN */
	const uint8_t *data;
	uint32_t data_len;
	/* SIGNAL */
	int signo;
	/* HELLO */
	uint64_t version;
	/* FS, FS_READ, FS_WRITE (DATA above: FS_DATA, EDIT's old text) */
	uint8_t fs_op;
	const uint8_t *path, *path2; /* absolute, no NUL */
	uint32_t path_len, path2_len;
	const uint8_t *data2; /* EDIT's new text */
	uint32_t data2_len;
	uint32_t mode, flags;
	uint64_t depth, limit, length;
	uint64_t size; /* MOVE: cut PATH to this first */
	bool has_mode, has_length, has_size;
};

/* Fills r from f: 0, or -1 with a short reason in *why (an ERROR's MESSAGE). */
int agent_req_decode(const struct agent_frame *f, struct agent_req *r, const char **why);
/* The ARGV (or ENV) values of a SPAWN as a NULL-terminated array of C strings,
 * one allocation (free() it); NULL when the frame has none. */
char **agent_req_strings(const struct agent_frame *f, uint8_t tag, size_t count);

#endif
