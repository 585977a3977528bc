/* Schema migrations: load numbered .sql files at start-up, then apply the
 * missing ones through the pool, each in one transaction that takes an
 * advisory lock and re-checks schema_migrations under it, so instances that
 * start together apply every file exactly once. */
#include "pg/migrate.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"
#include "pg/pool.h"

/* pg_advisory_xact_lock key shared by every instance ("sandbar" + 1). */
#define MIGRATE_LOCK_KEY "7233174018138550273"
/* Raised by the guard when another instance applied the file first. */
#define MIGRATE_SKIP_STATE "SB001"
#define MIGRATE_RETRY_MS   200
#define MIGRATE_RETRY_MAX  150 /* about 30 s of waiting for PostgreSQL */

enum migrate_step { MIGRATE_ENSURE_TABLE, MIGRATE_LIST_APPLIED, MIGRATE_APPLY, MIGRATE_STEP_MAX };

struct migrate_job {
	struct pg_pool *pool;
	const struct migration_set *set;
	void (*done)(int rc, const char *message, void *arg);
	void *arg;
	enum migrate_step step;
	bool *applied; /* per set item */
	size_t next;   /* the item being applied */
	int napplied;
	int retries;
	struct event *retry;
	struct pg_query *query; /* in flight */
};

static int migration_cmp(const void *a, const void *b);
static int parse_version(const char *name, int *version);
static char *read_file(const char *path, char *err, size_t errcap);
static void set_err(char *err, size_t errcap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void migrate_send(struct migrate_job *job);
static void migrate_result(enum pg_error err, PGresult *res, const char *message, void *arg);
static void migrate_retry_cb(evutil_socket_t fd, short what, void *arg);
static void migrate_apply_next(struct migrate_job *job);
static char *migrate_script(const struct migration *m);
static void migrate_finish(struct migrate_job *job, int rc, const char *message);
static void migrate_job_free(struct migrate_job *job);

int migration_set_load(const char *dir, struct migration_set *out, char *err, size_t errcap)
{
	out->items = NULL;
	out->count = 0;
	size_t cap = 0;
	char *path = NULL;
	DIR *d = opendir(dir);
	if (!d) {
		set_err(err, errcap, "cannot open %s: %s", dir, strerror(errno));
		return -1;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *name = de->d_name;
		size_t len = strlen(name);
		if (len < 4 || strcmp(name + len - 4, ".sql") != 0)
			continue;
		free(path);
		if (asprintf(&path, "%s/%s", dir, name) < 0) {
			path = NULL;
			set_err(err, errcap, "out of memory");
			goto fail;
		}
		struct stat st;
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		int version;
		if (parse_version(name, &version) < 0) {
			set_err(err, errcap, "%s: migration file names must look like NNN_name.sql", name);
			goto fail;
		}
		if (out->count == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct migration *n = realloc(out->items, ncap * sizeof(*n));
			if (!n) {
				set_err(err, errcap, "out of memory");
				goto fail;
			}
			out->items = n;
			cap = ncap;
		}
		struct migration *m = &out->items[out->count];
		m->version = version;
		m->name = strdup(name);
		if (!m->name) {
			set_err(err, errcap, "out of memory");
			goto fail;
		}
		m->sql = read_file(path, err, errcap);
		if (!m->sql) {
			free(m->name);
			goto fail;
		}
		out->count++;
	}
	free(path);
	path = NULL;
	closedir(d);
	d = NULL;
	if (out->count > 0)
		qsort(out->items, out->count, sizeof(*out->items), migration_cmp);
	for (size_t i = 1; i < out->count; i++) {
		if (out->items[i].version == out->items[i - 1].version) {
			set_err(err, errcap, "%s and %s have the same number %d", out->items[i - 1].name,
				out->items[i].name, out->items[i].version);
			goto fail;
		}
	}
	return 0;
fail:
	free(path);
	if (d)
		closedir(d);
	migration_set_free(out);
	return -1;
}

void migration_set_free(struct migration_set *set)
{
	for (size_t i = 0; i < set->count; i++) {
		free(set->items[i].name);
		free(set->items[i].sql);
	}
	free(set->items);
	set->items = NULL;
	set->count = 0;
}

void migrate_run(struct pg_pool *pool, const struct migration_set *set,
		 void (*done)(int rc, const char *message, void *arg), void *arg)
{
	(void)migrate_start(pool, set, done, arg);
}

void migrate_cancel(struct migrate_job *job)
{
	if (!job)
		return;
	if (job->query)
		pg_query_cancel(job->query);
	migrate_job_free(job);
}

struct migrate_job *migrate_start(struct pg_pool *pool, const struct migration_set *set,
				  void (*done)(int rc, const char *message, void *arg), void *arg)
{
	struct migrate_job *job = calloc(1, sizeof(*job));
	CHECK(job);
	job->pool = pool;
	job->set = set;
	job->done = done;
	job->arg = arg;
	job->applied = calloc(set->count ? set->count : 1, sizeof(bool));
	CHECK(job->applied);
	job->step = MIGRATE_ENSURE_TABLE;
	migrate_send(job);
	return job;
}

static int migration_cmp(const void *a, const void *b)
{
	const struct migration *x = a, *y = b;
	return (x->version > y->version) - (x->version < y->version);
}

/* "012_name.sql" -> 12; the digits must be followed by '_' or ".sql". */
static int parse_version(const char *name, int *version)
{
	long v = 0;
	const char *p = name;
	if (*p < '0' || *p > '9')
		return -1;
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (*p - '0');
		if (v > INT_MAX)
			return -1;
		p++;
	}
	if (*p != '_' && strcmp(p, ".sql") != 0)
		return -1;
	*version = (int)v;
	return 0;
}

static char *read_file(const char *path, char *err, size_t errcap)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	if (!f) {
		set_err(err, errcap, "cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (cap - len < 4096) {
			size_t ncap = cap ? cap * 2 : 8192;
			char *n = realloc(buf, ncap);
			if (!n) {
				set_err(err, errcap, "out of memory reading %s", path);
				goto fail;
			}
			buf = n;
			cap = ncap;
		}
		size_t got = fread(buf + len, 1, cap - len - 1, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		set_err(err, errcap, "cannot read %s", path);
		goto fail;
	}
	buf[len] = '\0';
	if (strlen(buf) != len) {
		set_err(err, errcap, "%s contains a NUL byte", path);
		goto fail;
	}
	fclose(f);
	return buf;
fail:
	free(buf);
	fclose(f);
	return NULL;
}

static void set_err(char *err, size_t errcap, const char *fmt, ...)
{
	if (!err || errcap == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errcap, fmt, ap);
	va_end(ap);
}

static void migrate_send(struct migrate_job *job)
{
	switch (job->step) {
	case MIGRATE_ENSURE_TABLE:
		/* Under the lock, because concurrent CREATE TABLE IF NOT EXISTS can
		 * collide; but only when missing, so that a run never waits for
		 * another instance's migration just to learn the table exists. */
		job->query = pg_query_send_script(job->pool,
						  "DO $sandbar_ensure$ BEGIN"
						  " IF to_regclass('schema_migrations') IS NULL THEN"
						  " PERFORM pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ");"
						  " CREATE TABLE IF NOT EXISTS schema_migrations ("
						  " version int PRIMARY KEY,"
						  " name text NOT NULL,"
						  " applied_at timestamptz NOT NULL DEFAULT now());"
						  " END IF;"
						  " END $sandbar_ensure$;",
						  migrate_result, job);
		break;
	case MIGRATE_LIST_APPLIED:
		job->query = pg_query_send(job->pool, "SELECT version FROM schema_migrations", 0, NULL,
					   migrate_result, job);
		break;
	case MIGRATE_APPLY: {
		char *script = migrate_script(&job->set->items[job->next]);
		job->query = pg_query_send_script(job->pool, script, migrate_result, job);
		free(script);
		break;
	}
	default:
		CHECK(!"bad migrate step");
	}
}

static void migrate_result(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct migrate_job *job = arg;
	job->query = NULL;
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	/* Two first starts creating the table at once can still trip over each
	 * other in the catalogs (23505, 42P07); the next try sees the table. */
	bool create_race = job->step == MIGRATE_ENSURE_TABLE && err == PG_ERR_QUERY && state &&
			   (strcmp(state, "23505") == 0 || strcmp(state, "42P07") == 0);
	if (err == PG_ERR_UNAVAILABLE || err == PG_ERR_CONNECTION || err == PG_ERR_BUSY || create_race) {
		/* Nothing half-applied: each step is one transaction, and the guard
		 * makes a re-sent file a no-op if its first try did commit. */
		if (++job->retries > MIGRATE_RETRY_MAX) {
			migrate_finish(job, -1, message);
			return;
		}
		if (job->retries == 1)
			log_warn("pg migrate: %s; retrying", message);
		if (!job->retry)
			job->retry = evtimer_new(pg_pool_event_base(job->pool), migrate_retry_cb, job);
		CHECK(job->retry);
		struct timeval tv = { .tv_sec = 0, .tv_usec = MIGRATE_RETRY_MS * 1000 };
		evtimer_add(job->retry, &tv);
		return;
	}
	job->retries = 0;
	switch (job->step) {
	case MIGRATE_ENSURE_TABLE:
		if (err != PG_OK) {
			char buf[512];
			snprintf(buf, sizeof(buf), "creating schema_migrations: %s", message);
			migrate_finish(job, -1, buf);
			return;
		}
		job->step = MIGRATE_LIST_APPLIED;
		migrate_send(job);
		return;
	case MIGRATE_LIST_APPLIED:
		if (err != PG_OK) {
			char buf[512];
			snprintf(buf, sizeof(buf), "reading schema_migrations: %s", message);
			migrate_finish(job, -1, buf);
			return;
		}
		for (int r = 0; r < PQntuples(res); r++) {
			struct migration key = { .version = atoi(PQgetvalue(res, r, 0)) };
			struct migration *m = bsearch(&key, job->set->items, job->set->count,
						      sizeof(*job->set->items), migration_cmp);
			if (m)
				job->applied[m - job->set->items] = true;
		}
		job->step = MIGRATE_APPLY;
		job->next = 0;
		migrate_apply_next(job);
		return;
	case MIGRATE_APPLY: {
		const struct migration *m = &job->set->items[job->next];
		if (err == PG_ERR_QUERY && state && strcmp(state, MIGRATE_SKIP_STATE) == 0) {
			log_info("pg migrate: %s was applied by another instance", m->name);
		} else if (err != PG_OK) {
			char buf[768];
			snprintf(buf, sizeof(buf), "migration %s failed: %s", m->name, message);
			migrate_finish(job, -1, buf);
			return;
		} else {
			log_info("pg migrate: applied %s", m->name);
			job->napplied++;
		}
		job->applied[job->next] = true;
		migrate_apply_next(job);
		return;
	}
	default:
		CHECK(!"bad migrate step");
	}
}

static void migrate_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	migrate_send(arg);
}

static void migrate_apply_next(struct migrate_job *job)
{
	while (job->next < job->set->count && job->applied[job->next])
		job->next++;
	if (job->next < job->set->count) {
		migrate_send(job);
		return;
	}
	char buf[64];
	snprintf(buf, sizeof(buf), "%d migration%s applied", job->napplied, job->napplied == 1 ? "" : "s");
	migrate_finish(job, 0, buf);
}

/* One simple-protocol script: the file and its schema_migrations row commit
 * together, and the guard (under the lock, with a fresh snapshot) aborts the
 * whole transaction if another instance got there first. */
static char *migrate_script(const struct migration *m)
{
	/* The name goes into a literal: double any quote (standard_conforming_strings). */
	size_t qn = 0;
	for (const char *p = m->name; *p; p++)
		qn += *p == '\'' ? 2 : 1;
	char *quoted = malloc(qn + 1);
	CHECK(quoted);
	char *o = quoted;
	for (const char *p = m->name; *p; p++) {
		*o++ = *p;
		if (*p == '\'')
			*o++ = '\'';
	}
	*o = '\0';
	char *script = NULL;
	/* READ COMMITTED whatever the server default: the guard needs a snapshot
	 * taken after the lock, not at the first statement. */
	int n = asprintf(
		&script,
		"BEGIN ISOLATION LEVEL READ COMMITTED;\n"
		"SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ");\n"
		"DO $sandbar_guard$ BEGIN IF EXISTS (SELECT 1 FROM schema_migrations WHERE version = %d) "
		"THEN RAISE EXCEPTION 'migration %d already applied' USING ERRCODE = '" MIGRATE_SKIP_STATE
		"'; END IF; END $sandbar_guard$;\n"
		"%s\n;\n"
		"INSERT INTO schema_migrations (version, name) VALUES (%d, '%s') ON CONFLICT DO NOTHING;\n"
		"COMMIT;",
		m->version, m->version, m->sql, m->version, quoted);
	CHECK(n >= 0);
	free(quoted);
	return script;
}

static void migrate_finish(struct migrate_job *job, int rc, const char *message)
{
	if (rc == 0)
		log_info("pg migrate: done, %s", message);
	else
		log_error("pg migrate: %s", message);
	void (*done)(int, const char *, void *) = job->done;
	void *arg = job->arg;
	/* We run from the pool's callback, which does not touch job after this. */
	migrate_job_free(job);
	done(rc, message, arg);
}

static void migrate_job_free(struct migrate_job *job)
{
	if (job->retry)
		event_free(job->retry);
	free(job->applied);
	free(job);
}
