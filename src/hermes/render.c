/* The Hermes JSON of the core's structs: the Info object (spec §4) with its
 * statuses (§4.1), a list page (§5.4). Every field has the JSON type the
 * SDK decodes (a wrong one fails the whole call): port an integer or null,
 * labels and spec objects of strings, times RFC 3339 in UTC with Z. */
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/config.h"
#include "internal.h"
#include "preview/host.h"

/* Our statuses as Hermes names them; NULL: not shown (warm members are
 * never listed; expired and deleted ones are not found). */
static const char *const status_names[SANDBOX_STATUS_MAX] = {
	[SANDBOX_CREATING] = "creating", [SANDBOX_STARTING] = "creating", [SANDBOX_RUNNING] = "active",
	[SANDBOX_STOPPING] = "stopping", [SANDBOX_STOPPED] = "stopped",	  [SANDBOX_ERROR] = "failed",
	[SANDBOX_WARM] = "warm",
};

const char *hermes_status_name(enum sandbox_status s)
{
	return (unsigned)s < SANDBOX_STATUS_MAX && status_names[s] ? status_names[s] : "destroying";
}

int hermes_status_mask(const char *name, unsigned *mask)
{
	*mask = 0;
	if (strcmp(name, "destroying") == 0)
		return 0; /* a deleted sandbox is gone at once here: none is destroying */
	for (int s = 0; s < SANDBOX_STATUS_MAX; s++)
		if (s != SANDBOX_WARM && status_names[s] && strcmp(status_names[s], name) == 0)
			*mask |= 1u << s;
	return *mask ? 0 : -1;
}

struct json_object *hermes_time_json(int64_t us)
{
	char buf[CLOCK_RFC3339_LEN];
	clock_rfc3339_seconds(us, buf);
	return json_object_new_string(buf);
}

/* spec: always the five strings, as create or PATCH wrote them ("" when not given). */
static struct json_object *spec_json(const struct sandbox *sb)
{
	static const char *const keys[] = { "cpu", "memory", "image", "requests_cpu", "requests_memory" };
	struct json_object *o = json_object_new_object();
	for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
		struct json_object *v;
		bool given = sb->spec && json_object_object_get_ex(sb->spec, keys[i], &v) &&
			     json_object_is_type(v, json_type_string);
		json_object_object_add(o, keys[i], given ? json_object_get(v) : json_object_new_string(""));
	}
	return o;
}

/* labels: the strings only (a row is never anything else, but the SDK fails on another type). */
static struct json_object *labels_json(const struct sandbox *sb)
{
	struct json_object *o = json_object_new_object();
	if (!sb->labels)
		return o;
	json_object_object_foreach(sb->labels, key, val)
	{
		if (json_object_is_type(val, json_type_string))
			json_object_object_add(o, key, json_object_get(val));
	}
	return o;
}

struct json_object *hermes_info_json(const struct hermes *h, const struct sandbox *sb)
{
	const struct preview_public *pub = h->core->preview;
	bool previews = pub && pub->domain[0];
	int port = sb->nports > 0 ? sb->ports[0].container_port : 0;
	char host[300], url[512];
	/* without a preview domain, the id: never empty, and no host we answer */
	if (!previews || preview_host_of(host, sizeof(host), pub, sb->id) <= 0)
		snprintf(host, sizeof(host), "%s", sb->id);
	if (!previews || (port > 0 ? preview_url(url, sizeof(url), pub, sb->id, port)
				   : snprintf(url, sizeof(url), "%s://%s", pub->scheme, host)) <= 0)
		snprintf(url, sizeof(url), "%s", host);
	/* the hard lifetime; a sandbox made without one (natively) shows its idle expiry */
	int64_t expire = sb->ends_at_us ? sb->ends_at_us : sb->expires_at_us;

	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(sb->id));
	json_object_object_add(o, "user_id", json_object_new_string(sb->user_id ? sb->user_id : ""));
	json_object_object_add(o, "namespace",
			       json_object_new_string(sb->project && *sb->project ? sb->project : "default"));
	json_object_object_add(o, "status", json_object_new_string(hermes_status_name(sb->status)));
	json_object_object_add(o, "ip", json_object_new_string(""));
	json_object_object_add(o, "preview_host", json_object_new_string(host));
	json_object_object_add(o, "preview_url", json_object_new_string(url));
	json_object_object_add(o, "port", port > 0 ? json_object_new_int(port) : NULL);
	json_object_object_add(o, "image_tag", json_object_new_string(sb->image ? sb->image : ""));
	json_object_object_add(o, "spec", spec_json(sb));
	json_object_object_add(o, "labels", labels_json(sb));
	json_object_object_add(o, "created_at", hermes_time_json(sb->created_at_us));
	json_object_object_add(o, "allocated_at", hermes_time_json(sb->created_at_us));
	json_object_object_add(o, "last_active_at",
			       sb->last_activity_us ? hermes_time_json(sb->last_activity_us)
						    : json_object_new_string(""));
	json_object_object_add(o, "expire_at", hermes_time_json(expire));
	return o;
}

struct json_object *hermes_list_json(const struct hermes *h, const struct sandbox_result *res,
				     const struct hermes_list *l)
{
	struct json_object *items = json_object_new_array_ext((int)res->n);
	for (size_t i = 0; i < res->n; i++)
		json_object_array_add(items, hermes_info_json(h, res->list[i]));
	struct json_object *page = json_object_new_object();
	json_object_object_add(page, "total", json_object_new_int64((int64_t)res->total));
	json_object_object_add(page, "limit", json_object_new_int64((int64_t)l->limit));
	json_object_object_add(page, "offset", json_object_new_int64((int64_t)l->offset));
	json_object_object_add(page, "has_more", json_object_new_boolean(l->offset + res->n < res->total));
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "items", items);
	json_object_object_add(o, "pagination", page);
	return o;
}
