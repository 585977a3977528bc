/* Lists of sandboxes: a filter (statuses, labels, a page) as one query that
 * also counts every match, answered as a page of immutable sandboxes. */
#include "sandbox/registry.h"

#include <stdio.h>
#include <stdlib.h>

#include <json-c/json.h>
#include <libpq-fe.h>

#include "registry_internal.h"
#include "row.h"

static void listed(struct registry_wait *w, PGresult *res);

struct registry_wait *registry_list(struct registry *reg, const struct sandbox_filter *f, registry_list_fn cb,
				    void *arg)
{
	struct registry_wait *w = wait_new(reg, WAIT_LIST, arg);
	w->list_cb = cb;
	static const char sql[] =
		"WITH f AS (SELECT " SANDBOX_ROW_COLUMNS
		", s.created_at AS at FROM sandboxes s WHERE s.cluster = $1 "
		"  AND NOT s.in_pool AND (CASE WHEN $2::text[] IS NULL THEN s.deleted_at IS NULL "
		"  ELSE s.status = ANY($2::text[]) END) AND s.labels @> coalesce($3::jsonb, '{}') "
		"  AND s.project = coalesce($6, s.project) AND s.user_id = coalesce($7, s.user_id)), "
		"page AS (SELECT * FROM f ORDER BY CASE WHEN $8::boolean THEN at END, at DESC, 1 "
		"  LIMIT $4 OFFSET $5) "
		"SELECT page.*, (SELECT count(*) FROM f) FROM (SELECT 1) one LEFT JOIN page ON true "
		"ORDER BY CASE WHEN $8::boolean THEN page.at END, page.at DESC, 1";
	char statuses[256] = "", limit[24], offset[24];
	if (f && f->statuses) {
		size_t n = 0;
		statuses[n++] = '{';
		for (int st = 0; st < SANDBOX_STATUS_MAX; st++)
			if (f->statuses & (1u << st))
				n += (size_t)snprintf(statuses + n, sizeof(statuses) - n, "%s%s",
						      n > 1 ? "," : "",
						      sandbox_status_name((enum sandbox_status)st));
		snprintf(statuses + n, sizeof(statuses) - n, "}");
	}
	snprintf(limit, sizeof(limit), "%zu", f ? f->limit : 0);
	snprintf(offset, sizeof(offset), "%zu", f ? f->offset : 0);
	const char *params[] = {
		reg->cluster,
		statuses[0] ? statuses : NULL,
		f && f->labels ? json_object_to_json_string_ext(f->labels, JSON_C_TO_STRING_PLAIN) : NULL,
		f && f->limit ? limit : NULL,
		offset,
		f ? f->project : NULL,
		f ? f->user_id : NULL,
		f && f->oldest_first ? "t" : "f",
	};
	wait_query(w, sql, 8, params, listed);
	return w;
}

/* A page, and the total in the last column of every row. */
static void listed(struct registry_wait *w, PGresult *res)
{
	int n = PQntuples(res);
	struct sandbox_ref **refs = calloc((size_t)n + 1, sizeof(*refs));
	const struct sandbox **list = calloc((size_t)n + 1, sizeof(*list));
	CHECK(refs != NULL && list != NULL);
	size_t k = 0;
	for (int i = 0; i < n; i++) {
		if (PQgetisnull(res, i, 0))
			continue; /* the one row of an empty page, for the total */
		refs[k] = ref_from_row(w->reg, res, i);
		if (refs[k]) {
			list[k] = &refs[k]->sb;
			k++;
		}
	}
	size_t total = n ? strtoull(PQgetvalue(res, 0, PQnfields(res) - 1), NULL, 10) : 0;
	w->list_cb(NULL, list, k, total, w->arg);
	for (size_t i = 0; i < k; i++)
		sandbox_ref_put(refs[i]);
	free(refs);
	free(list);
	wait_free(w);
}
