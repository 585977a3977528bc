/* The Hermes dialect's object: built on the front's router with the core it
 * calls; each file registers its own routes. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct hermes *hermes_new(struct event_base *base, const struct config *cfg, const struct core *core,
			  struct router *router)
{
	struct hermes *h = calloc(1, sizeof(*h));
	CHECK(h != NULL);
	h->base = base;
	h->cfg = cfg;
	h->core = core;
	h->router = router;
	if (hermes_rest_routes(h) != 0 || hermes_admin_routes(h) != 0 ||
	    !(h->connect = hermes_connect_new(h))) {
		hermes_free(h);
		return NULL;
	}
	return h;
}

void hermes_shutdown(struct hermes *h)
{
	hermes_connect_shutdown(h->connect);
}

void hermes_free(struct hermes *h)
{
	if (!h)
		return;
	hermes_connect_free(h->connect);
	free(h);
}

bool hermes_owns_path(const char *path)
{
	return strncmp(path, "/api/v1/", 8) == 0 || strcmp(path, "/api/v1") == 0 ||
	       strncmp(path, "/admin/", 7) == 0;
}
