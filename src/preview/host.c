/* Preview host names: the Host header of a request mapped to a sandbox port,
 * and the URL of a port the sandbox object carries. */
#include "preview/host.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool is_hex(char c)
{
	c = lower(c);
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* A canonical UUID (8-4-4-4-12 hex digits), copied in lower case. */
static bool parse_uuid(const char *s, size_t len, char out[37])
{
	if (len != 36)
		return false;
	for (size_t i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !is_hex(s[i]))
			return false;
		out[i] = lower(s[i]);
	}
	out[36] = '\0';
	return true;
}

/* 1..65535, decimal, no leading zero. */
static int parse_port(const char *s, size_t len)
{
	if (len == 0 || len > 5 || s[0] == '0')
		return -1;
	int v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v <= 65535 ? v : -1;
}

/* The host without a `:port` suffix and a trailing dot; an IPv6 literal is
 * nobody's preview. */
static bool host_name(const char *host, size_t *len)
{
	if (*len > 0 && host[0] == '[')
		return false;
	const char *colon = memchr(host, ':', *len);
	if (colon) {
		for (const char *p = colon + 1; p < host + *len; p++)
			if (*p < '0' || *p > '9')
				return false;
		*len = (size_t)(colon - host);
	}
	if (*len > 0 && host[*len - 1] == '.')
		(*len)--;
	return *len > 0;
}

static bool ends_with_domain(const char *host, size_t len, const char *domain, size_t dlen)
{
	if (len < dlen)
		return false;
	for (size_t i = 0; i < dlen; i++)
		if (lower(host[len - dlen + i]) != domain[i])
			return false;
	return len == dlen || host[len - dlen - 1] == '.';
}

enum preview_host_kind preview_host_parse(const char *host, size_t len, const char *domain,
					  struct preview_target *out)
{
	size_t dlen = strlen(domain);
	if (!host || dlen == 0 || !host_name(host, &len) || !ends_with_domain(host, len, domain, dlen))
		return PREVIEW_HOST_NONE;
	if (len == dlen)
		return PREVIEW_HOST_BAD; /* the domain itself */
	size_t label = len - dlen - 1;	 /* `<port>-<uuid>`, one label */
	const char *dash = memchr(host, '-', label);
	if (!dash || memchr(host, '.', label))
		return PREVIEW_HOST_BAD;
	size_t plen = (size_t)(dash - host);
	int port = parse_port(host, plen);
	struct preview_target t;
	if (port < 0 || !parse_uuid(dash + 1, label - plen - 1, t.sandbox_id))
		return PREVIEW_HOST_BAD;
	t.port = port;
	*out = t;
	return PREVIEW_HOST_OK;
}

void preview_public_init(struct preview_public *pub, char *domain_buf, size_t cap, const char *domain,
			 const char *scheme, int public_port)
{
	domain = domain ? domain + strspn(domain, ".") : "";
	size_t n = 0;
	for (; domain[n] && n + 1 < cap; n++)
		domain_buf[n] = lower(domain[n]);
	while (n > 0 && domain_buf[n - 1] == '.')
		n--;
	domain_buf[n] = '\0';
	pub->domain = domain_buf;
	pub->scheme = scheme && *scheme ? scheme : "http";
	bool dflt = (strcmp(pub->scheme, "http") == 0 && public_port == 80) ||
		    (strcmp(pub->scheme, "https") == 0 && public_port == 443);
	pub->public_port = dflt || public_port < 0 ? 0 : public_port;
}

int preview_host_of(char *buf, size_t cap, const struct preview_public *pub, const char *sandbox_id)
{
	int n = snprintf(buf, cap, "%s.%s", sandbox_id, pub->domain);
	return n >= 0 && (size_t)n < cap ? n : -1;
}

int preview_url(char *buf, size_t cap, const struct preview_public *pub, const char *sandbox_id, int port)
{
	char suffix[16] = "";
	if (pub->public_port > 0)
		snprintf(suffix, sizeof(suffix), ":%d", pub->public_port);
	int n = snprintf(buf, cap, "%s://%d-%s.%s%s", pub->scheme, port, sandbox_id, pub->domain, suffix);
	return n >= 0 && (size_t)n < cap ? n : -1;
}
