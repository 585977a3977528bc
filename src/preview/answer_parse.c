/* The framing of an app's answer, without I/O (answer_parse.h): http_parser's
 * callbacks fill the head's buffer, give the final head and the body to the
 * caller, and stop the parser where the answer ends. */
#include "answer_parse.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

static int hbuf_add(struct up_answer *a, const char *at, size_t len, uint32_t *off, uint32_t *total);
static int on_header_field(http_parser *p, const char *at, size_t len);
static int on_header_value(http_parser *p, const char *at, size_t len);
static int on_headers_complete(http_parser *p);
static int on_body(http_parser *p, const char *at, size_t len);
static int on_message_complete(http_parser *p);

static const http_parser_settings parser_settings = {
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

void up_answer_init(struct up_answer *a, bool head_method, const struct up_answer_ops *ops, void *arg)
{
	http_parser_init(&a->parser, HTTP_RESPONSE);
	a->parser.data = a;
	a->ops = ops;
	a->arg = arg;
	a->head_method = head_method;
	a->in_body = a->complete = a->in_value = false;
	a->hlen = 0;
	a->nhdrs = 0;
}

void up_answer_clear(struct up_answer *a)
{
	free(a->hbuf);
	a->hbuf = NULL;
	a->hlen = a->hcap = 0;
	a->nhdrs = 0;
}

/* A piece of a name or value, NUL-terminated in hbuf; a continued piece
 * (the bytes came in two reads) goes over the NUL of the one before. */
static int hbuf_add(struct up_answer *a, const char *at, size_t len, uint32_t *off, uint32_t *total)
{
	if (a->hlen + len + 1 > UP_HEAD_MAX)
		return -1;
	if (a->hlen + len + 1 > a->hcap) {
		size_t cap = a->hcap ? a->hcap * 2 : 1024;
		while (cap < a->hlen + len + 1)
			cap *= 2;
		char *b = realloc(a->hbuf, cap);
		CHECK(b != NULL);
		a->hbuf = b;
		a->hcap = cap;
	}
	if (*total == 0)
		*off = (uint32_t)a->hlen;
	else
		a->hlen--; /* a continued piece: over the NUL */
	memcpy(a->hbuf + a->hlen, at, len);
	a->hlen += len;
	a->hbuf[a->hlen++] = '\0';
	*total += (uint32_t)len;
	return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
	struct up_answer *a = p->data;
	if (a->in_value || a->nhdrs == 0) {
		if (a->nhdrs == UP_HDRS_MAX)
			return -1;
		a->hdrs[a->nhdrs++] = (struct upheader){ 0 };
		a->in_value = false;
	}
	struct upheader *h = &a->hdrs[a->nhdrs - 1];
	return hbuf_add(a, at, len, &h->name, &h->name_len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
	struct up_answer *a = p->data;
	if (a->nhdrs == 0)
		return -1;
	a->in_value = true;
	struct upheader *h = &a->hdrs[a->nhdrs - 1];
	return hbuf_add(a, at, len, &h->value, &h->value_len);
}

static int on_headers_complete(http_parser *p)
{
	struct up_answer *a = p->data;
	int status = (int)p->status_code;
	if (status >= 100 && status < 200 && status != 101) {
		a->nhdrs = 0; /* an interim answer (100 Continue): the client had ours */
		a->hlen = 0;
		a->in_value = false;
		return 0;
	}
	if (status == 101)
		return 0; /* the upgrade is taken after the parser stops */
	int64_t length =
		(p->flags & F_CHUNKED) || p->content_length == ULLONG_MAX ? -1 : (int64_t)p->content_length;
	if (status == 204 || status == 304)
		length = 0;
	a->in_body = true;
	a->ops->head(a, status, length, a->arg);
	return a->head_method ? 1 : 0; /* 1: no body follows */
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct up_answer *a = p->data;
	a->ops->body(at, len, a->arg);
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct up_answer *a = p->data;
	if (!a->in_body)
		return 0; /* an interim answer, or the 101 */
	a->complete = true;
	http_parser_pause(p, 1); /* feed sees it: the answer ends there */
	return 0;
}

enum up_answer_step up_answer_feed(struct up_answer *a, const char *data, size_t len, size_t *used)
{
	CHECK(!a->complete);
	*used = http_parser_execute(&a->parser, &parser_settings, data, len);
	if (a->complete)
		return UP_ANSWER_COMPLETE;
	if (a->parser.upgrade && a->parser.status_code == 101)
		return UP_ANSWER_UPGRADE;
	if (HTTP_PARSER_ERRNO(&a->parser) != HPE_OK)
		return UP_ANSWER_BAD;
	return UP_ANSWER_MORE;
}

enum up_answer_step up_answer_eof(struct up_answer *a)
{
	if (a->complete)
		return UP_ANSWER_COMPLETE;
	http_parser_execute(&a->parser, &parser_settings, NULL, 0);
	return a->complete ? UP_ANSWER_COMPLETE : UP_ANSWER_MORE;
}

const char *up_answer_error(const struct up_answer *a)
{
	return http_errno_description(HTTP_PARSER_ERRNO(&a->parser));
}

int up_answer_count(const struct up_answer *a)
{
	return a->nhdrs;
}

const char *up_answer_name(const struct up_answer *a, int i)
{
	return a->hdrs[i].name_len ? a->hbuf + a->hdrs[i].name : "";
}

const char *up_answer_value(const struct up_answer *a, int i)
{
	return a->hdrs[i].value_len ? a->hbuf + a->hdrs[i].value : "";
}

bool up_answer_keep_alive(const struct up_answer *a)
{
	return http_should_keep_alive(&a->parser) != 0;
}

int up_answer_status(const struct up_answer *a)
{
	return (int)a->parser.status_code;
}
