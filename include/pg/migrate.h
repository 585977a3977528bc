/* Schema migrations: numbered files in a folder (001_init.sql, 002_x.sql),
 * applied in order through the pool, each in its own transaction together with
 * its row in schema_migrations, under an advisory lock so that several
 * instances starting at once apply each file once. */
#ifndef SANDBAR_PG_MIGRATE_H
#define SANDBAR_PG_MIGRATE_H

#include <stddef.h>

#include "core/check.h"

struct pg_pool;

struct migration {
	int version; /* the number the file name starts with */
	char *name;  /* file name */
	char *sql;   /* file content */
};

struct migration_set {
	struct migration *items; /* sorted by version, unique versions */
	size_t count;
};

/* Reads dir at start-up (blocking is fine then). -1 with a reason in err on a
 * file that does not start with a number, a duplicate number, or a read error. */
MUST_USE int migration_set_load(const char *dir, struct migration_set *out, char *err, size_t errcap);
void migration_set_free(struct migration_set *set);

/* Applies what is not yet applied; done(0 or -1, message, arg) when finished.
 * set must stay alive until then. While PostgreSQL is unreachable it keeps
 * retrying (about 30 s) before giving up. */
void migrate_run(struct pg_pool *pool, const struct migration_set *set,
		 void (*done)(int rc, const char *message, void *arg), void *arg);

/* The same, returning a handle: migrate_cancel stops it (done is not called),
 * which must happen before pg_pool_free if it has not finished. */
struct migrate_job;
struct migrate_job *migrate_start(struct pg_pool *pool, const struct migration_set *set,
				  void (*done)(int rc, const char *message, void *arg), void *arg);
void migrate_cancel(struct migrate_job *job);

#endif
