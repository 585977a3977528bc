/* Random bytes as a Hermes request body: parsed as JSON (the HTTP layer's
 * json-c), then told create or list and read as every route's body; and the
 * bytes themselves as Kubernetes quantities. No crash, no leak, and what
 * parses holds: a quantity's value is what its text says, a list's limit is
 * within bounds, PATCH has something to change. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <json-c/json.h>

#include "../../src/hermes/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t nanos, bytes;
	if (hermes_quantity_cpu((const char *)data, size, &nanos) == 0 &&
	    hermes_quantity_memory((const char *)data, size, &bytes) == 0)
		CHECK(bytes == nanos / 1000000000 + (nanos % 1000000000 != 0)); /* both rounded up */

	struct json_tokener *tok = json_tokener_new_ex(32);
	struct json_object *body = json_tokener_parse_ex(tok, (const char *)data, (int)size);
	json_tokener_free(tok);
	if (!body && size > 0)
		return 0;
	struct core_error e;
	enum hermes_post kind = hermes_post_classify(body);
	CHECK(kind < HERMES_POST_MAX);
	struct hermes_create c;
	if (hermes_create_parse(body, &c, &e) == 0)
		CHECK(c.user_id != NULL && c.ttl_hours >= 0);
	else
		CHECK(e.kind == CORE_INVALID && e.code != NULL);
	hermes_create_clear(&c);
	struct hermes_list l;
	if (hermes_list_parse(body, &l, &e) == 0)
		CHECK(l.limit >= 1 && l.limit <= HERMES_LIST_LIMIT_MAX && l.offset <= HERMES_LIST_OFFSET_MAX);
	struct hermes_spec s = { 0 };
	if (hermes_patch_parse(body, &s, &e) == 0)
		CHECK(s.image || json_object_object_length(s.kept) > 0);
	json_object_put(s.kept);
	int64_t secs;
	if (hermes_seconds_parse(body, &secs, &e) == 0)
		CHECK(secs >= 1 && secs <= HERMES_EXTEND_MAX);
	struct json_object *env = NULL;
	if (hermes_configure_parse(body, &env, &e) == 0 && env)
		CHECK(json_object_is_type(env, json_type_object));
	json_object_put(env);
	json_object_put(body);
	return 0;
}
