/* The cluster's sandboxes counted by status (pool members apart) and the
 * capacity admission allows, for an overview such as Hermes' pool status. */
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "internal.h"

struct count_op {
	struct sandbox_call *call; /* NULL once the caller went away */
	struct sandbox_service *svc;
};

static void counted(enum pg_error err, PGresult *res, const char *message, void *arg);

struct sandbox_call *sandbox_count(struct sandbox_service *svc, sandbox_result_fn cb, void *arg)
{
	struct sandbox_call *call = call_new(svc, cb, arg);
	struct count_op *op = calloc(1, sizeof(*op));
	CHECK(op != NULL);
	op->call = call;
	op->svc = svc;
	call->owner = &op->call; /* a cancel forgets the call; the count lands and is dropped */
	static const char sql[] = "SELECT status, in_pool, count(*) FROM sandboxes WHERE cluster = $1 "
				  "GROUP BY 1, 2";
	const char *params[] = { svc->cluster };
	pg_query_send(svc->pg, sql, 1, params, counted, op);
	return call;
}

static void counted(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct count_op *op = arg;
	if (!op->call) {
		free(op);
		return;
	}
	if (err != PG_OK) {
		struct core_error e;
		pg_core_error(&e, err, message);
		call_fail(op->call, &e);
		free(op);
		return;
	}
	struct sandbox_counts c = { 0 };
	for (int i = 0; i < PQntuples(res); i++) {
		enum sandbox_status st;
		if (sandbox_status_parse(PQgetvalue(res, i, 0), &st) != 0)
			continue;
		int64_t n = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		if (strcmp(PQgetvalue(res, i, 1), "t") != 0)
			c.by_status[st] += n;
		else if (st == SANDBOX_CREATING)
			c.pool_creating += n;
	}
	uint64_t cap = admission_capacity(op->svc->admission);
	uint64_t each = op->svc->cfg->sandbox_memory_limit;
	c.max_total = cap && each ? (int64_t)(cap / each) : 0;
	struct sandbox_result r = { .counts = &c };
	call_finish(op->call, &r);
	free(op);
}
