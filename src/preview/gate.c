/* Private previews' check at the proxy's door: where the token came from,
 * whether it opens this sandbox port, and the request cleaned of it. */
#include "preview/gate.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/check.h"
#include "http/server.h"

/* The next `name=value` of a Cookie header from *p: false at its end. */
static bool cookie_next(const char **p, const char **pair, size_t *len, const char **value, size_t *vlen)
{
	const char *s = *p + strspn(*p, "; \t");
	if (!*s)
		return false;
	size_t n = strcspn(s, ";");
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	const char *eq = memchr(s, '=', n);
	*pair = s;
	*len = n;
	*value = eq ? eq + 1 : s + n;
	*vlen = eq ? n - (size_t)(eq + 1 - s) : 0;
	*p = s + n;
	return true;
}

static bool cookie_is_ours(const char *pair, size_t len)
{
	size_t n = strlen(PREVIEW_TOKEN_COOKIE);
	return len > n && strncmp(pair, PREVIEW_TOKEN_COOKIE, n) == 0 && pair[n] == '=';
}

/* The pairs of a Cookie value but ours, joined by sep into kept (room for
 * twice the value): its length. Our cookie's value is copied to jar (the
 * first one). */
static size_t cookies_kept(const char *value, const char *sep, char *kept, char jar[PREVIEW_TOKEN_MAX])
{
	size_t klen = 0, len, vlen, seplen = strlen(sep);
	const char *pair, *v;
	for (const char *p = value; cookie_next(&p, &pair, &len, &v, &vlen);) {
		if (cookie_is_ours(pair, len)) {
			if (!jar[0])
				snprintf(jar, PREVIEW_TOKEN_MAX, "%.*s", (int)vlen,
					 vlen < PREVIEW_TOKEN_MAX ? v : "\x01");
			continue;
		}
		if (klen) {
			memcpy(kept + klen, sep, seplen);
			klen += seplen;
		}
		memcpy(kept + klen, pair, len);
		klen += len;
	}
	kept[klen] = '\0';
	return klen;
}

/* Our header and our cookie out of what the app gets (its other cookies
 * stay); the tokens they held copied to hdr and jar first ("" none; "\x01"
 * one too long to be a token). */
static void take_token(struct http_request *req, char hdr[PREVIEW_TOKEN_MAX], char jar[PREVIEW_TOKEN_MAX])
{
	hdr[0] = jar[0] = '\0';
	const char *name, *value;
	for (int i = 0; http_request_header_at(req, i, &name, &value);) {
		if (strcasecmp(name, PREVIEW_TOKEN_HEADER) == 0) {
			if (!hdr[0])
				snprintf(hdr, PREVIEW_TOKEN_MAX, "%s",
					 strlen(value) < PREVIEW_TOKEN_MAX ? value : "\x01");
			CHECK(http_request_header_rewrite(req, i, NULL));
			continue;
		}
		if (strcasecmp(name, "Cookie") != 0 || !strstr(value, PREVIEW_TOKEN_COOKIE)) {
			i++;
			continue;
		}
		char *kept = http_request_alloc(req, 2 * strlen(value) + 1);
		size_t klen = cookies_kept(value, "; ", kept, jar);
		if (klen > strlen(value)) /* "a;b;..." grown by its spaces: ";" is never longer */
			klen = cookies_kept(value, ";", kept, jar);
		if (klen && http_request_header_rewrite(req, i, kept))
			i++;
		else
			CHECK(http_request_header_rewrite(req, i, NULL));
	}
}

/* The target without ?sandbar_token=: where the 302 sends the browser
 * (a path starting "//" kept a path, not made another host). The first
 * one's value, as sent, copied to tok ("" none; "\x01" too long). */
static char *target_without_token(struct http_request *req, char tok[PREVIEW_TOKEN_MAX])
{
	tok[0] = '\0';
	const char *t = http_request_target(req);
	size_t n = strlen(t);
	char *out = http_request_alloc(req, n + 3);
	size_t len = 0;
	if (t[0] == '/' && t[1] == '/')
		out[len++] = '/', out[len++] = '.';
	const char *q = strchr(t, '?');
	size_t plen = q ? (size_t)(q - t) : n;
	memcpy(out + len, t, plen);
	len += plen;
	char sep = '?';
	for (const char *p = q ? q + 1 : NULL; p && *p;) {
		size_t seg = strcspn(p, "&");
		size_t nlen = strcspn(p, "=&");
		bool ours = nlen == strlen(PREVIEW_TOKEN_QUERY) && strncmp(p, PREVIEW_TOKEN_QUERY, nlen) == 0;
		if (ours && !tok[0]) {
			size_t vlen = seg > nlen ? seg - nlen - 1 : 0;
			snprintf(tok, PREVIEW_TOKEN_MAX, "%.*s", (int)vlen,
				 vlen < PREVIEW_TOKEN_MAX ? p + nlen + 1 : "\x01");
			if (!tok[0])
				tok[0] = '\x01', tok[1] = '\0'; /* present, empty */
		}
		if (!ours && seg > 0) {
			out[len++] = sep;
			sep = '&';
			memcpy(out + len, p, seg);
			len += seg;
		}
		p += seg + (p[seg] == '&');
	}
	out[len] = '\0';
	return out;
}

enum preview_gate_verdict preview_gate_check(struct http_request *req, const struct preview_secret *secret,
					     const struct preview_target *t, bool is_private, int64_t now_s,
					     struct preview_gate *out)
{
	char tok[PREVIEW_TOKEN_MAX], hdr[PREVIEW_TOKEN_MAX], jar[PREVIEW_TOKEN_MAX];
	out->location = NULL;
	out->set_cookie[0] = '\0';
	take_token(req, hdr, jar);
	tok[0] = '\0';
	/* most queries (a bundler's ?v=, ?t=) name no token: the target is not copied for them */
	const char *query = strchr(http_request_target(req), '?');
	const char *location =
		query && strstr(query, PREVIEW_TOKEN_QUERY) ? target_without_token(req, tok) : NULL;
	bool q = location && tok[0];
	if (q && !is_private) {
		out->location = location;
		return PREVIEW_GATE_REDIRECT;
	}
	if (!is_private)
		return PREVIEW_GATE_PASS;
	if (!q)
		memcpy(tok, hdr[0] ? hdr : jar, sizeof(tok));
	if (!tok[0])
		return PREVIEW_GATE_REQUIRED;
	enum preview_token_verdict v =
		secret ? preview_token_check(tok, strlen(tok), secret, t->sandbox_id, t->port, now_s)
		       : PREVIEW_TOKEN_WRONG;
	if (v == PREVIEW_TOKEN_EXPIRED)
		return PREVIEW_GATE_EXPIRED;
	if (v != PREVIEW_TOKEN_OK)
		return PREVIEW_GATE_INVALID;
	if (!q)
		return PREVIEW_GATE_PASS;
	/* <port>.<expires>.<mac>, well formed once it checks */
	int64_t expires_s = strtoll(strchr(tok, '.') + 1, NULL, 10);
	const char *proto = http_request_header(req, "X-Forwarded-Proto");
	snprintf(out->set_cookie, sizeof(out->set_cookie),
		 "%s=%s; HttpOnly; SameSite=Lax; Path=/; Max-Age=%" PRId64 "%s", PREVIEW_TOKEN_COOKIE, tok,
		 expires_s - now_s, proto && strcasecmp(proto, "https") == 0 ? "; Secure" : "");
	out->location = location;
	return PREVIEW_GATE_REDIRECT;
}
