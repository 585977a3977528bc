/* Method + path-pattern routing: "/api/sandboxes/{id}/heartbeat". Patterns
 * match whole segments; {name} captures one segment into a request param. */
#ifndef SANDBAR_HTTP_ROUTER_H
#define SANDBAR_HTTP_ROUTER_H

#include "core/check.h"

struct http_request;
struct router;

typedef void (*route_fn)(struct http_request *req, void *arg);

enum router_result { ROUTER_MATCH, ROUTER_NOT_FOUND, ROUTER_METHOD_NOT_ALLOWED };

struct router *router_new(void);
void router_free(struct router *r);
/* method is "GET", "POST", ...; returns -1 on a malformed pattern. */
MUST_USE int router_add(struct router *r, const char *method, const char *pattern, route_fn fn, void *arg);
/* On a match, sets the captured params on req (http_request_set_param) and
 * fills *fn and *arg. */
enum router_result router_match(const struct router *r, struct http_request *req, route_fn *fn, void **arg);

#endif
