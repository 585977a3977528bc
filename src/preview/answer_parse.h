/* Private to src/preview: an app's answer to a proxied request as bytes come
 * (http_parser): its head kept (headers as offsets into one buffer), interim
 * 1xx heads skipped, the body's framing (length, chunked, until close) and
 * where the answer ends, or a 101's head. No I/O: proxy_answer.c feeds it
 * what the upstream sends, and the fuzzer anything. */
#ifndef SANDBAR_PREVIEW_ANSWER_PARSE_H
#define SANDBAR_PREVIEW_ANSWER_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

#define UP_HEAD_MAX (64 * 1024) /* an upstream response head past this: not taken */
#define UP_HDRS_MAX 100

struct up_answer;

struct up_answer_ops {
	/* The final head (not an interim 1xx, not a 101): the body's length,
	 * -1 when chunked or until the close, 0 for 204 and 304 (a HEAD's
	 * answer says its GET's length, and no body follows). */
	void (*head)(struct up_answer *a, int status, int64_t length, void *arg);
	/* Body bytes, unchunked. */
	void (*body)(const char *at, size_t len, void *arg);
};

enum up_answer_step {
	UP_ANSWER_MORE,	    /* what came is taken; the answer goes on */
	UP_ANSWER_COMPLETE, /* the answer is over (bytes after it not taken) */
	UP_ANSWER_UPGRADE,  /* a 101's head: the bytes after it are the new protocol's */
	UP_ANSWER_BAD,	    /* not HTTP, or a head too large: up_answer_error says why */
	UP_ANSWER_STEP_MAX
};

struct upheader {
	uint32_t name, name_len, value, value_len; /* offsets into hbuf */
};

struct up_answer {
	http_parser parser;
	const struct up_answer_ops *ops;
	void *arg;
	bool head_method; /* the request was a HEAD: no body whatever the head says */
	bool in_body;	  /* the final head was given to ops->head */
	bool complete;
	char *hbuf;
	size_t hlen, hcap;
	struct upheader hdrs[UP_HDRS_MAX];
	int nhdrs;
	bool in_value; /* the parser's place in a header line (name or value) */
};

/* For a new answer (its buffer kept from an earlier one). */
void up_answer_init(struct up_answer *a, bool head_method, const struct up_answer_ops *ops, void *arg);
void up_answer_clear(struct up_answer *a);
/* Parses data; *used: the bytes taken (all of them for UP_ANSWER_MORE). */
enum up_answer_step up_answer_feed(struct up_answer *a, const char *data, size_t len, size_t *used);
/* The upstream closed: an answer ended by the close is complete
 * (UP_ANSWER_COMPLETE); else what it was (UP_ANSWER_MORE: cut short). */
enum up_answer_step up_answer_eof(struct up_answer *a);
const char *up_answer_error(const struct up_answer *a);
/* The head's headers, in order ("" for an empty name or value). */
int up_answer_count(const struct up_answer *a);
const char *up_answer_name(const struct up_answer *a, int i);
const char *up_answer_value(const struct up_answer *a, int i);
/* Both sides said keep-alive (HTTP/1.1 without Connection: close, ...). */
bool up_answer_keep_alive(const struct up_answer *a);
int up_answer_status(const struct up_answer *a);

#endif
