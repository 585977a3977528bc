/* The pool and migrations against a real PostgreSQL (SANDBAR_TEST_DATABASE_URL,
 * set by tools/test; without it they fail when postgres is provided, else
 * skip), plus the unreachable-server path, which needs none. Each run works in
 * its own schema (PGOPTIONS search_path) and drops it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/log.h"
#include "need.h"
#include "pg/migrate.h"
#include "pg/pool.h"

struct reply {
	bool called;
	int calls;
	enum pg_error err;
	char message[512];
	char value[256]; /* first column of the first row, "NULL" for NULL */
	int rows;
};

struct state_log {
	int ups, downs;
};

struct migrate_reply {
	bool called;
	int rc;
	char message[512];
};

static void on_reply(enum pg_error err, PGresult *res, const char *message, void *arg);
static void on_state(bool up, void *arg);
static void on_migrated(int rc, const char *message, void *arg);
static void loop_until(bool *flag, int ms);
static void loop_for(int ms);
static struct pg_pool *open_pool(int size, int max_waiters, struct state_log *log);
static void query(struct pg_pool *pool, const char *sql, int nparams, const char *const *params,
		  struct reply *r);
static void write_file(const char *dir, const char *name, const char *content);

static struct event_base *base;
static const char *db_url;
static char schema[64];

static void on_reply(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct reply *r = arg;
	r->called = true;
	r->calls++;
	r->err = err;
	snprintf(r->message, sizeof(r->message), "%s", message ? message : "");
	r->rows = res ? PQntuples(res) : -1;
	if (err == PG_OK && res && PQntuples(res) > 0 && PQnfields(res) > 0)
		snprintf(r->value, sizeof(r->value), "%s",
			 PQgetisnull(res, 0, 0) ? "NULL" : PQgetvalue(res, 0, 0));
	if (err != PG_OK) {
		assert_non_null(message);
		assert_null(strchr(message, '\n'));
	}
	if (err == PG_ERR_QUERY) {
		assert_non_null(res);
		assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
	} else if (err != PG_OK) {
		assert_null(res);
	}
}

static void on_state(bool up, void *arg)
{
	struct state_log *log = arg;
	if (up)
		log->ups++;
	else
		log->downs++;
}

static void on_migrated(int rc, const char *message, void *arg)
{
	struct migrate_reply *r = arg;
	r->called = true;
	r->rc = rc;
	snprintf(r->message, sizeof(r->message), "%s", message ? message : "");
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

static void loop_until(bool *flag, int ms)
{
	bool timed_out = false;
	struct event *t = evtimer_new(base, timeout_cb, &timed_out);
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	evtimer_add(t, &tv);
	while (!*flag && !timed_out)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	assert_false(timed_out);
}

static void loop_for(int ms)
{
	bool done = false;
	struct event *t = evtimer_new(base, timeout_cb, &done);
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	evtimer_add(t, &tv);
	while (!done)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
}

static bool pool_is_up_flag;
static struct pg_pool *open_pool(int size, int max_waiters, struct state_log *log)
{
	struct pg_pool_config cfg = {
		.conninfo = db_url,
		.size = size,
		.max_waiters = max_waiters,
		.retry_min_ms = 20,
		.retry_max_ms = 200,
	};
	struct pg_pool *pool = pg_pool_new(base, &cfg);
	assert_non_null(pool);
	pg_pool_start(pool, on_state, log);
	assert_false(pg_pool_up(pool));
	for (int i = 0; i < 500 && log->ups == 0; i++)
		loop_for(10);
	assert_int_equal(log->ups, 1);
	assert_true(pg_pool_up(pool));
	/* Let every connection finish connecting, so tests know the free count. */
	loop_for(50);
	(void)pool_is_up_flag;
	return pool;
}

/* Sends and waits; asserts the callback did not run inside pg_query_send. */
static void query(struct pg_pool *pool, const char *sql, int nparams, const char *const *params,
		  struct reply *r)
{
	memset(r, 0, sizeof(*r));
	assert_non_null(pg_query_send(pool, sql, nparams, params, on_reply, r));
	assert_false(r->called);
	loop_until(&r->called, 5000);
}

#define NEED_DB() need("postgres", db_url != NULL, "SANDBAR_TEST_DATABASE_URL is not set")

static void test_params_and_nulls(void **st)
{
	NEED_DB();
	struct state_log log = { 0 };
	struct pg_pool *pool = open_pool(2, 10, &log);
	struct reply r;
	const char *const params[] = { "41", NULL, "h\xc3\xa9llo 'q'" };
	query(pool, "SELECT $1::int + 1, $2::text IS NULL, $3::text, $2::text", 3, params, &r);
	assert_int_equal(r.err, PG_OK);
	assert_string_equal(r.value, "42");
	query(pool, "SELECT $1::text", 1, params + 1, &r);
	assert_int_equal(r.err, PG_OK);
	assert_string_equal(r.value, "NULL");
	query(pool, "SELECT $1::text", 1, params + 2, &r);
	assert_string_equal(r.value, "h\xc3\xa9llo 'q'");
	query(pool, "SELECT 1 WHERE false", 0, NULL, &r);
	assert_int_equal(r.err, PG_OK);
	assert_int_equal(r.rows, 0);
	/* Script: several statements, the last result is delivered. */
	memset(&r, 0, sizeof(r));
	pg_query_send_script(pool, "SELECT 1; SELECT 2; SELECT 'three'", on_reply, &r);
	assert_false(r.called);
	loop_until(&r.called, 5000);
	assert_int_equal(r.err, PG_OK);
	assert_string_equal(r.value, "three");
	pg_pool_free(pool);
}

static void test_sql_error(void **st)
{
	NEED_DB();
	struct state_log log = { 0 };
	struct pg_pool *pool = open_pool(1, 10, &log);
	struct reply r;
	query(pool, "SELECT * FROM no_such_table_here", 0, NULL, &r);
	assert_int_equal(r.err, PG_ERR_QUERY);
	assert_non_null(strstr(r.message, "no_such_table_here"));
	/* An error in the middle of a script wins over later results. */
	memset(&r, 0, sizeof(r));
	pg_query_send_script(pool, "SELECT 1; SELECT 1/0; SELECT 3", on_reply, &r);
	loop_until(&r.called, 5000);
	assert_int_equal(r.err, PG_ERR_QUERY);
	assert_non_null(strstr(r.message, "division by zero"));
	/* The connection is still fine. */
	query(pool, "SELECT 7", 0, NULL, &r);
	assert_int_equal(r.err, PG_OK);
	assert_string_equal(r.value, "7");
	pg_pool_free(pool);
}

static void test_transaction_left_open(void **st)
{
	NEED_DB();
	struct state_log log = { 0 };
	struct pg_pool *pool = open_pool(1, 10, &log);
	struct reply r;
	memset(&r, 0, sizeof(r));
	pg_query_send_script(pool, "BEGIN; CREATE TEMP TABLE leak(x int)", on_reply, &r);
	loop_until(&r.called, 5000);
	assert_int_equal(r.err, PG_OK);
	/* Same (only) connection: the pool rolled the transaction back. */
	query(pool, "SELECT to_regclass('pg_temp.leak') IS NULL, pg_current_xact_id_if_assigned() IS NULL", 0,
	      NULL, &r);
	assert_int_equal(r.err, PG_OK);
	assert_string_equal(r.value, "t");
	/* An aborted transaction too. */
	memset(&r, 0, sizeof(r));
	pg_query_send_script(pool, "BEGIN; SELECT 1/0", on_reply, &r);
	loop_until(&r.called, 5000);
	assert_int_equal(r.err, PG_ERR_QUERY);
	query(pool, "SELECT 8", 0, NULL, &r);
	assert_string_equal(r.value, "8");
	pg_pool_free(pool);
}

static void test_many_concurrent(void **st)
{
	NEED_DB();
	struct state_log log = { 0 };
	struct pg_pool *pool = open_pool(3, 100, &log);
	enum { N = 60 };
	struct reply r[N];
	char num[N][16];
	memset(r, 0, sizeof(r));
	for (int i = 0; i < N; i++) {
		snprintf(num[i], sizeof(num[i]), "%d", i);
		const char *const params[] = { num[i] };
		assert_non_null(pg_query_send(pool, "SELECT $1::int * 2, pg_sleep(0.001)", 1, params,
					      on_reply, &r[i]));
	}
	for (int i = 0; i < N; i++)
		loop_until(&r[i].called, 5000);
	for (int i = 0; i < N; i++) {
		char want[16];
		snprintf(want, sizeof(want), "%d", i * 2);
		assert_int_equal(r[i].err, PG_OK);
		assert_int_equal(r[i].calls, 1);
		assert_string_equal(r[i].value, want);
	}
	pg_pool_free(pool);
}

static void test_wait_queue_full(void **st)
{
	NEED_DB();
	struct state_log log = { 0 };
	struct pg_pool *pool = open_pool(1, 2, &log);
	struct reply r[5];
	memset(r, 0, sizeof(r));
	for (int i = 0; i < 5; i++)
		pg_query_send(pool, "SELECT pg_sleep(0.01)", 0, NULL, on_reply, &r[i]);
	for (int i = 0; i < 5; i++)
		assert_false(r[i].called);
	for (int i = 0; i < 5; i++)
		loop_until(&r[i].called, 5000);
	/* One runs, two wait, the rest are refused. */
	assert_int_equal(r[0].err, PG_OK);
	assert_int_equal(r[1].err, PG_OK);
	assert_int_equal(r[2].err, PG_OK);
	assert_int_equal(r[3].err, PG_ERR_BUSY);
	assert_int_equal(r[4].err, PG_ERR_BUSY);
	pg_pool_free(pool);
}

static void test_cancel(void **st)
{
	NEED_DB();
	struct state_log log = { 0 };
	struct pg_pool *pool = open_pool(1, 10, &log);
	struct reply running, waiting, after, immediate;
	memset(&running, 0, sizeof(running));
	memset(&waiting, 0, sizeof(waiting));
	memset(&after, 0, sizeof(after));
	memset(&immediate, 0, sizeof(immediate));
	struct pg_query *q1 = pg_query_send(pool, "SELECT pg_sleep(0.1)", 0, NULL, on_reply, &running);
	struct pg_query *q2 = pg_query_send(pool, "SELECT 2", 0, NULL, on_reply, &waiting);
	loop_for(30); /* q1 is on the connection now, q2 waits */
	pg_query_cancel(q1);
	pg_query_cancel(q2);
	pg_query_send(pool, "SELECT 3", 0, NULL, on_reply, &after);
	struct pg_query *q4 = pg_query_send(pool, "SELECT 4", 0, NULL, on_reply, &immediate);
	pg_query_cancel(q4);
	loop_until(&after.called, 5000);
	assert_int_equal(after.err, PG_OK);
	assert_string_equal(after.value, "3");
	loop_for(20);
	assert_false(running.called);
	assert_false(waiting.called);
	assert_false(immediate.called);
	pg_pool_free(pool);
}

static void free_pool_cb(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct pg_pool **pool = arg;
	pg_pool_free(*pool);
	*pool = NULL;
}

static void test_free_with_queries_outstanding(void **st)
{
	NEED_DB();
	struct state_log log = { 0 };
	struct pg_pool *pool = open_pool(2, 10, &log);
	struct reply r[4];
	memset(r, 0, sizeof(r));
	for (int i = 0; i < 4; i++)
		pg_query_send(pool, "SELECT pg_sleep(0.05)", 0, NULL, on_reply, &r[i]);
	loop_for(10);
	pg_pool_free(pool);
	loop_for(100);
	for (int i = 0; i < 4; i++)
		assert_false(r[i].called);

	/* Freed from inside a callback, with another answer still to deliver. */
	struct state_log log2 = { 0 };
	pool = open_pool(2, 10, &log2);
	struct reply other;
	memset(&other, 0, sizeof(other));
	pg_query_send(pool, "SELECT 1", 0, NULL, free_pool_cb, &pool);
	pg_query_send(pool, "SELECT 1", 0, NULL, on_reply, &other);
	for (int i = 0; i < 100 && pool; i++)
		loop_for(10);
	assert_null(pool);
	loop_for(20);
}

static void test_reconnect_after_terminate(void **st)
{
	NEED_DB();
	struct state_log vlog = { 0 }, klog = { 0 };
	struct pg_pool *victim = open_pool(1, 10, &vlog);
	struct pg_pool *killer = open_pool(1, 10, &klog);
	struct reply r;
	query(victim, "SELECT pg_backend_pid()", 0, NULL, &r);
	char pid[sizeof(r.value)];
	snprintf(pid, sizeof(pid), "%s", r.value);

	/* Killed while idle: the pool notices, reconnects, queries work again. */
	const char *const p1[] = { pid };
	query(killer, "SELECT pg_terminate_backend($1::int)", 1, p1, &r);
	assert_string_equal(r.value, "t");
	for (int i = 0; i < 100 && vlog.downs == 0; i++)
		loop_for(10);
	assert_int_equal(vlog.downs, 1); /* noticed while idle, before any query */
	bool ok = false;
	for (int i = 0; i < 250 && !ok; i++) {
		query(victim, "SELECT pg_backend_pid()", 0, NULL, &r);
		ok = r.err == PG_OK;
		if (!ok) {
			assert_true(r.err == PG_ERR_UNAVAILABLE || r.err == PG_ERR_CONNECTION);
			loop_for(20);
		}
	}
	assert_true(ok);
	assert_string_not_equal(r.value, pid);
	assert_int_equal(vlog.downs, 1);
	assert_int_equal(vlog.ups, 2);

	/* Killed while a query runs: that query fails with PG_ERR_CONNECTION. */
	snprintf(pid, sizeof(pid), "%s", r.value);
	struct reply slow;
	memset(&slow, 0, sizeof(slow));
	pg_query_send(victim, "SELECT pg_sleep(5)", 0, NULL, on_reply, &slow);
	loop_for(50);
	const char *const p2[] = { pid };
	query(killer, "SELECT pg_terminate_backend($1::int)", 1, p2, &r);
	assert_string_equal(r.value, "t");
	loop_until(&slow.called, 2000);
	assert_int_equal(slow.err, PG_ERR_CONNECTION);
	ok = false;
	for (int i = 0; i < 250 && !ok; i++) {
		query(victim, "SELECT 1", 0, NULL, &r);
		ok = r.err == PG_OK;
		if (!ok)
			loop_for(20);
	}
	assert_true(ok);
	pg_pool_free(victim);
	pg_pool_free(killer);
}

static void write_file(const char *dir, const char *name, const char *content)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static void run_migrations(struct pg_pool *pool, const char *dir, struct migrate_reply *out)
{
	struct migration_set set;
	char err[256];
	assert_int_equal(migration_set_load(dir, &set, err, sizeof(err)), 0);
	memset(out, 0, sizeof(*out));
	migrate_run(pool, &set, on_migrated, out);
	assert_false(out->called);
	loop_until(&out->called, 5000);
	migration_set_free(&set);
}

static void test_migrations(void **st)
{
	NEED_DB();
	struct state_log log = { 0 };
	struct pg_pool *pool = open_pool(3, 10, &log);
	char dir[] = "/tmp/sandbar-migrate-XXXXXX";
	assert_non_null(mkdtemp(dir));
	write_file(dir, "001_table.sql", "CREATE TABLE m_a (x int);\n-- trailing comment");
	write_file(dir, "002_row.sql", "INSERT INTO m_a VALUES (1);");
	write_file(dir, "notes.txt", "ignored");

	struct migrate_reply m;
	run_migrations(pool, dir, &m);
	assert_int_equal(m.rc, 0);
	assert_string_equal(m.message, "2 migrations applied");
	run_migrations(pool, dir, &m);
	assert_int_equal(m.rc, 0);
	assert_string_equal(m.message, "0 migrations applied");

	/* Two instances racing over a new file: hold the migration lock from
	 * another session so both have listed schema_migrations before either
	 * applies; the second must find the row under the lock and skip. */
	write_file(dir, "004_more.sql", "INSERT INTO m_a VALUES (4);");
	struct state_log blog = { 0 };
	struct pg_pool *blocker = open_pool(1, 1, &blog);
	struct reply r;
	query(blocker, "SELECT pg_advisory_lock(7233174018138550273)", 0, NULL, &r);
	assert_int_equal(r.err, PG_OK);
	struct migration_set set;
	char err[256];
	assert_int_equal(migration_set_load(dir, &set, err, sizeof(err)), 0);
	struct migrate_reply a, b;
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	migrate_run(pool, &set, on_migrated, &a);
	migrate_run(pool, &set, on_migrated, &b);
	loop_for(200);
	assert_false(a.called);
	assert_false(b.called);
	query(blocker, "SELECT pg_advisory_unlock(7233174018138550273)", 0, NULL, &r);
	assert_string_equal(r.value, "t");
	loop_until(&a.called, 5000);
	loop_until(&b.called, 5000);
	migration_set_free(&set);
	pg_pool_free(blocker);
	assert_int_equal(a.rc, 0);
	assert_int_equal(b.rc, 0);
	assert_true((strcmp(a.message, "1 migration applied") == 0 &&
		     strcmp(b.message, "0 migrations applied") == 0) ||
		    (strcmp(b.message, "1 migration applied") == 0 &&
		     strcmp(a.message, "0 migrations applied") == 0));
	query(pool, "SELECT count(*) FROM m_a", 0, NULL, &r);
	assert_string_equal(r.value, "2");

	/* A failing file: nothing of it stays, the error names it. */
	write_file(dir, "003_bad.sql", "CREATE TABLE m_c (x int);\nSELECT * FROM no_such_thing;");
	run_migrations(pool, dir, &m);
	assert_int_equal(m.rc, -1);
	assert_non_null(strstr(m.message, "003_bad.sql"));
	assert_non_null(strstr(m.message, "no_such_thing"));
	query(pool, "SELECT to_regclass('m_c') IS NULL", 0, NULL, &r);
	assert_string_equal(r.value, "t");
	query(pool, "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations", 0, NULL,
	      &r);
	assert_string_equal(r.value, "1,2,4");

	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	pg_pool_free(pool);
}

static void cancel_other_cb(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct pg_query **other = arg;
	assert_int_equal(err, PG_ERR_UNAVAILABLE);
	pg_query_cancel(*other);
	*other = NULL;
}

static int resends;
static void resend_cb(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	assert_int_equal(err, PG_ERR_UNAVAILABLE);
	if (++resends < 100)
		pg_query_send(arg, "SELECT 1", 0, NULL, resend_cb, arg);
}

/* Needs no server: nothing listens, so queries fail fast and the pool keeps
 * retrying with growing delays. */
static void test_unreachable(void **st)
{
	struct pg_pool_config cfg = {
		.conninfo = "host=/nonexistent-sandbar-socket-dir port=5 connect_timeout=1",
		.size = 2,
		.max_waiters = 10,
		.retry_min_ms = 5,
		.retry_max_ms = 40,
	};
	struct state_log log = { 0 };
	struct pg_pool *pool = pg_pool_new(base, &cfg);
	assert_non_null(pool);
	pg_pool_start(pool, on_state, &log);
	struct reply r;
	memset(&r, 0, sizeof(r));
	pg_query_send(pool, "SELECT 1", 0, NULL, on_reply, &r);
	assert_false(r.called);
	loop_until(&r.called, 1000);
	assert_int_equal(r.err, PG_ERR_UNAVAILABLE);
	loop_for(150);
	assert_false(pg_pool_up(pool));
	assert_int_equal(log.ups, 0);
	assert_int_equal(log.downs, 0);
	memset(&r, 0, sizeof(r));
	pg_query_send(pool, "SELECT 1", 0, NULL, on_reply, &r);
	loop_until(&r.called, 1000);
	assert_int_equal(r.err, PG_ERR_UNAVAILABLE);

	/* A callback may cancel another finished query not yet delivered. */
	struct reply other;
	memset(&other, 0, sizeof(other));
	struct pg_query *victim = NULL;
	pg_query_send(pool, "SELECT 1", 0, NULL, cancel_other_cb, &victim);
	victim = pg_query_send(pool, "SELECT 2", 0, NULL, on_reply, &other);
	loop_for(30);
	assert_null(victim);
	assert_false(other.called);

	/* A callback that resends at once on failure must not starve the loop. */
	resends = 0;
	pg_query_send(pool, "SELECT 1", 0, NULL, resend_cb, pool);
	loop_for(50); /* returns only if timers still run */
	for (int i = 0; i < 200 && resends < 100; i++)
		loop_for(5);
	assert_int_equal(resends, 100);

	struct migrate_reply m = { 0 };
	struct migration_set empty = { 0 };
	struct migrate_job *job = migrate_start(pool, &empty, on_migrated, &m);
	loop_for(100);
	assert_false(m.called); /* still waiting for the server */
	migrate_cancel(job);
	pg_pool_free(pool);
	loop_for(300);
	assert_false(m.called);
}

static int group_setup(void **st)
{
	log_set_level(LOG_LEVEL_WARN);
	if (getenv("SANDBAR_TEST_LOG_DEBUG"))
		log_set_level(LOG_LEVEL_DEBUG);
	base = event_base_new();
	db_url = getenv("SANDBAR_TEST_DATABASE_URL");
	if (db_url && !db_url[0])
		db_url = NULL;
	if (!db_url)
		return 0;
	snprintf(schema, sizeof(schema), "sandbar_test_%d", (int)getpid());
	char opts[128];
	snprintf(opts, sizeof(opts), "-c search_path=%s", schema);
	setenv("PGOPTIONS", opts, 1);
	struct state_log log = { 0 };
	struct pg_pool *pool = open_pool(1, 1, &log);
	char sql[256];
	/* a run that crashed under this pid left it */
	snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", schema, schema);
	struct reply r;
	memset(&r, 0, sizeof(r));
	pg_query_send_script(pool, sql, on_reply, &r);
	loop_until(&r.called, 5000);
	pg_pool_free(pool);
	return r.err == PG_OK ? 0 : -1;
}

static int group_teardown(void **st)
{
	struct reply r = { .err = PG_OK };
	if (db_url) {
		struct state_log log = { 0 };
		struct pg_pool *pool = open_pool(1, 1, &log);
		char sql[128];
		snprintf(sql, sizeof(sql), "DROP SCHEMA %s CASCADE", schema);
		query(pool, sql, 0, NULL, &r);
		pg_pool_free(pool);
	}
	event_base_free(base);
	return r.err == PG_OK ? 0 : -1; /* a schema left behind fails the run */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_params_and_nulls),
		cmocka_unit_test(test_sql_error),
		cmocka_unit_test(test_transaction_left_open),
		cmocka_unit_test(test_many_concurrent),
		cmocka_unit_test(test_wait_queue_full),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_free_with_queries_outstanding),
		cmocka_unit_test(test_reconnect_after_terminate),
		cmocka_unit_test(test_migrations),
	};
	return need_exit(cmocka_run_group_tests(tests, group_setup, group_teardown));
}
