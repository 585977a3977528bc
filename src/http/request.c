/* The request object: its arena, the parsed head (method, decoded path,
 * query, headers), route params, request id and the cancel hook. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <json-c/json_object.h>

#include "core/check.h"
#include "http/server.h"
#include "internal.h"

static int hexval(int ch);
static char *decode(struct http_request *req, const char *s, size_t len, bool plus_space, bool *ok);
static void parse_query(struct http_request *req);
static bool valid_request_id(const char *s, size_t len);
static const char *find_header(const struct http_request *req, const char *name, size_t *len);

void request_init(struct http_request *req, struct http_conn *c)
{
	memset(req, 0, offsetof(struct http_request, first));
	req->conn = c;
	req->apos = req->first;
	req->aleft = sizeof(req->first);
	req->content_length = -1;
}

void request_reset(struct http_request *req)
{
	struct arena_block *b = req->blocks;
	while (b) {
		struct arena_block *next = b->next;
		free(b);
		b = next;
	}
	if (req->json)
		json_object_put(req->json);
	request_init(req, req->conn);
}

void *http_request_alloc(struct http_request *req, size_t size)
{
	size = (size + 15) & ~(size_t)15;
	if (size > req->aleft) {
		size_t cap = size > HTTP_ARENA_BLOCK ? size : HTTP_ARENA_BLOCK;
		struct arena_block *b = malloc(sizeof(*b) + cap + 16);
		CHECK(b != NULL);
		b->next = req->blocks;
		b->cap = cap;
		req->blocks = b;
		uintptr_t p = ((uintptr_t)b->data + 15) & ~(uintptr_t)15;
		req->apos = (char *)p;
		req->aleft = cap;
	}
	void *p = req->apos;
	req->apos += size;
	req->aleft -= size;
	memset(p, 0, size);
	return p;
}

char *http_request_strdup(struct http_request *req, const char *s)
{
	size_t n = strlen(s);
	char *d = http_request_alloc(req, n + 1);
	memcpy(d, s, n);
	return d;
}

const char *http_request_method(const struct http_request *req)
{
	return req->method ? req->method : "-";
}

const char *http_request_path(const struct http_request *req)
{
	return req->path ? req->path : "-";
}

const char *http_request_id(const struct http_request *req)
{
	return req->id;
}

struct event_base *http_request_base(const struct http_request *req)
{
	return req->conn->srv->base;
}

int64_t http_request_content_length(const struct http_request *req)
{
	return req->chunked ? -1 : req->content_length;
}

void http_request_set_cancel(struct http_request *req, void (*cancel)(void *arg), void *arg)
{
	req->cancel = cancel;
	req->cancel_arg = arg;
}

void request_cancel(struct http_request *req)
{
	if (req->canceled)
		return;
	req->canceled = true;
	if (req->cancel)
		req->cancel(req->cancel_arg);
}

static const char *find_header(const struct http_request *req, const char *name, size_t *len)
{
	const struct http_conn *c = req->conn;
	size_t n = strlen(name);
	for (int i = 0; i < c->nhdrs; i++) {
		const struct http_header *h = &c->hdrs[i];
		if (h->name_len == n && strncasecmp(c->hbuf + h->name_off, name, n) == 0) {
			if (len)
				*len = h->val_len;
			return c->hbuf + h->val_off;
		}
	}
	return NULL;
}

const char *http_request_header(const struct http_request *req, const char *name)
{
	return find_header(req, name, NULL);
}

const char *http_request_target(const struct http_request *req)
{
	return req->conn->hbuf + req->conn->url_off;
}

bool http_request_header_at(const struct http_request *req, int i, const char **name, const char **value)
{
	const struct http_conn *c = req->conn;
	if (i < 0 || i >= c->nhdrs)
		return false;
	*name = c->hbuf + c->hdrs[i].name_off;
	*value = c->hbuf + c->hdrs[i].val_off;
	return true;
}

bool http_request_header_rewrite(struct http_request *req, int i, const char *value)
{
	struct http_conn *c = req->conn;
	if (i < 0 || i >= c->nhdrs)
		return false;
	if (!value) {
		memmove(&c->hdrs[i], &c->hdrs[i + 1], (size_t)(c->nhdrs - i - 1) * sizeof(c->hdrs[0]));
		c->nhdrs--;
		return true;
	}
	size_t n = strlen(value);
	if (n > c->hdrs[i].val_len)
		return false;
	memmove(c->hbuf + c->hdrs[i].val_off, value, n + 1); /* value may lie inside the old one */
	c->hdrs[i].val_len = (uint32_t)n;
	return true;
}

const char *http_request_peer(struct http_request *req)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char buf[INET6_ADDRSTRLEN] = "";
	int fd = (int)bufferevent_getfd(req->conn->bev);
	if (fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf, sizeof(buf));
		else if (ss.ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf, sizeof(buf));
	}
	return http_request_strdup(req, buf);
}

int http_request_version_minor(const struct http_request *req)
{
	return (int)req->conn->parser.http_minor;
}

void http_request_set_param(struct http_request *req, const char *name, const char *value)
{
	struct http_kv *kv = http_request_alloc(req, sizeof(*kv));
	kv->name = http_request_strdup(req, name);
	kv->value = http_request_strdup(req, value);
	kv->next = req->params;
	req->params = kv;
}

const char *http_request_param(const struct http_request *req, const char *name)
{
	for (const struct http_kv *kv = req->params; kv; kv = kv->next)
		if (strcmp(kv->name, name) == 0)
			return kv->value;
	return NULL;
}

const char *http_request_query(const struct http_request *req, const char *name)
{
	/* Parsed on first use: most requests never look at the query. */
	if (!req->query_parsed)
		parse_query((struct http_request *)req);
	const char *found = NULL;
	for (const struct http_kv *kv = req->query; kv; kv = kv->next)
		if (strcmp(kv->name, name) == 0)
			found = kv->value; /* list is reversed: the last hit is the first one sent */
	return found;
}

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch |= 0x20;
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

static char *decode(struct http_request *req, const char *s, size_t len, bool plus_space, bool *ok)
{
	char *out = http_request_alloc(req, len + 1);
	size_t j = 0;
	*ok = true;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (ch == '%') {
			int hi = i + 1 < len ? hexval((unsigned char)s[i + 1]) : -1;
			int lo = i + 2 < len ? hexval((unsigned char)s[i + 2]) : -1;
			/* No NUL, and no control bytes in a path (they would reach the log). */
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0) || (!plus_space && hi < 2) ||
			    (!plus_space && hi == 7 && lo == 15)) {
				*ok = false;
				return NULL;
			}
			out[j++] = (char)(hi * 16 + lo);
			i += 2;
		} else if (ch == '+' && plus_space) {
			out[j++] = ' ';
		} else {
			out[j++] = ch;
		}
	}
	out[j] = '\0';
	return out;
}

static void parse_query(struct http_request *req)
{
	req->query_parsed = true;
	const char *q = req->raw_query;
	if (!q)
		return;
	while (*q) {
		const char *amp = strchr(q, '&');
		size_t len = amp ? (size_t)(amp - q) : strlen(q);
		if (len > 0) {
			const char *eq = memchr(q, '=', len);
			size_t nlen = eq ? (size_t)(eq - q) : len;
			bool ok1, ok2 = true;
			char *name = decode(req, q, nlen, true, &ok1);
			char *value = eq ? decode(req, eq + 1, len - nlen - 1, true, &ok2) : "";
			/* A malformed pair is skipped rather than failing the request. */
			if (ok1 && ok2) {
				struct http_kv *kv = http_request_alloc(req, sizeof(*kv));
				kv->name = name;
				kv->value = value;
				kv->next = req->query;
				req->query = kv;
			}
		}
		if (!amp)
			break;
		q = amp + 1;
	}
}

static bool valid_request_id(const char *s, size_t len)
{
	if (len == 0 || len > HTTP_REQUEST_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (!isalnum(ch) && ch != '.' && ch != '_' && ch != '-')
			return false;
	}
	return true;
}

void request_gen_id(struct http_request *req)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t r = server_random(req->conn->srv);
	for (int i = 0; i < 16; i++)
		req->id[i] = hex[(r >> (i * 4)) & 15];
	req->id[16] = '\0';
}

/* Turns the raw head in conn->hbuf into the request fields. Returns 0, or
 * the status to answer with (code set) when the head is unacceptable. */
int request_finish_head(struct http_request *req, const char **code)
{
	struct http_conn *c = req->conn;
	size_t idlen;
	const char *id = find_header(req, "X-Request-Id", &idlen);
	if (id && valid_request_id(id, idlen))
		memcpy(req->id, id, idlen + 1);
	else
		request_gen_id(req);

	req->method = http_method_str((enum http_method)c->parser.method);
	req->head_method = c->parser.method == HTTP_HEAD;
	req->keep_alive = http_should_keep_alive(&c->parser) != 0;
	req->chunked = (c->parser.flags & F_CHUNKED) != 0;
	if (!req->chunked && (c->parser.flags & F_CONTENTLENGTH))
		req->content_length = (int64_t)c->parser.content_length;

	*code = "bad_request";
	const char *url = c->hbuf + c->url_off;
	size_t ulen = c->url_len;
	if (ulen == 0)
		return 400;
	const char *path = url, *query = NULL;
	size_t plen = ulen, qlen = 0;
	if (url[0] != '/') {
		if (ulen == 1 && url[0] == '*') {
			req->path = "*";
			goto headers;
		}
		struct http_parser_url u;
		http_parser_url_init(&u);
		if (http_parser_parse_url(url, ulen, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH)))
			return 400;
		path = url + u.field_data[UF_PATH].off;
		plen = u.field_data[UF_PATH].len;
		if (u.field_set & (1 << UF_QUERY)) {
			query = url + u.field_data[UF_QUERY].off;
			qlen = u.field_data[UF_QUERY].len;
		}
	} else {
		const char *qm = memchr(url, '?', ulen);
		const char *hash = memchr(url, '#', ulen);
		if (hash) /* a fragment is never sent by a sane client; ignore it */
			ulen = (size_t)(hash - url);
		if (qm && qm < url + ulen) {
			plen = (size_t)(qm - url);
			query = qm + 1;
			qlen = ulen - plen - 1;
		} else {
			plen = ulen;
		}
	}
	bool ok;
	req->path = decode(req, path, plen, false, &ok);
	if (!ok)
		return 400;
	if (query) {
		char *q = http_request_alloc(req, qlen + 1);
		memcpy(q, query, qlen);
		req->raw_query = q;
	}
headers:;
	size_t telen;
	const char *te = find_header(req, "Transfer-Encoding", &telen);
	if (te) {
		while (telen > 0 && (te[telen - 1] == ' ' || te[telen - 1] == '\t'))
			telen--;
		if (telen != 7 || strncasecmp(te, "chunked", 7) != 0) {
			*code = "not_implemented";
			return 501;
		}
	}
	const char *expect = find_header(req, "Expect", NULL);
	if (expect) {
		if (strcasecmp(expect, "100-continue") != 0) {
			*code = "expectation_failed";
			return 417;
		}
		/* HTTP/1.0 clients do not know 100 Continue; they send the body anyway. */
		req->expect_continue = c->parser.http_major == 1 && c->parser.http_minor >= 1;
	}
	return 0;
}
