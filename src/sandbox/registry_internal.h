/* Private to the sandbox registry's files: the registry, its cache entries,
 * the immutable sandboxes its handles hold and its pending calls, shared by
 * the cache (registry.c), the writes of a row (registry_write.c) and the lists
 * (registry_list.c). */
#ifndef SANDBAR_SANDBOX_REGISTRY_INTERNAL_H
#define SANDBAR_SANDBOX_REGISTRY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "core/error.h"
#include "pg/pool.h"
#include "sandbox/registry.h"

#define REGISTRY_BUCKETS 1024
/* Every write of a row but batched activity notifies it here, payload
 * "<instance> <sandbox id>", so that the other instances forget their copy. */
#define REGISTRY_NOTIFY_CHANNEL "sandbar_sandbox"

/* One sandbox's row (a lookup, the read after a write): $1 the id, $2 the cluster. */
extern const char registry_row_sql[];

/* An immutable sandbox shared by its holders (a change makes a new one);
 * sandbox_ref is this. */
struct sandbox_ref {
	int refs;
	struct registry *reg;
	struct sandbox sb;
};

/* The cache's slot of one sandbox id. */
struct entry {
	struct entry *next;
	struct registry *reg;
	char id[37];
	struct sandbox_ref *cur; /* the latest known, NULL when none is trusted */
	uint64_t epoch;		 /* reg->epoch when cur's query was sent */
	int64_t loaded_ms;	 /* monotonic */
	uint64_t gen;		 /* bumped by every invalidation */
	struct pg_query *load;	 /* the lookup in flight */
	uint64_t load_gen, load_epoch;
	struct registry_wait *waiters; /* acquires waiting for the load */
	int64_t touched_ms;	       /* activity written or queued */
};

enum wait_kind { WAIT_ACQUIRE, WAIT_MOVE, WAIT_LIST };

struct registry_wait;
/* What a write or a list does with its query's result (a failure has
 * answered the caller already). */
typedef void (*wait_result_fn)(struct registry_wait *w, PGresult *res);

/* A pending call: an acquire, a write (insert, transition, heartbeat) or a list. */
struct registry_wait {
	struct registry *reg;
	enum wait_kind kind;
	struct registry_wait *next;	 /* among an entry's waiters */
	TAILQ_ENTRY(registry_wait) link; /* among all of the registry's, until freed */
	struct entry *entry;
	unsigned flags;
	registry_ref_fn ref_cb;
	registry_moved_fn moved_cb;
	registry_list_fn list_cb;
	void *arg;
	struct event *later; /* delivery from the loop */
	struct pg_query *query;
	wait_result_fn queried;	 /* its result */
	struct sandbox_ref *ref; /* to deliver */
	struct core_error err;	 /* kind CORE_OK until the call fails */
	/* a write */
	char id[37];	/* a write's, or a waking acquire's */
	uint64_t gen;	/* the entry's when the write was answered */
	uint64_t epoch; /* reg->epoch when the read after it was sent */
	enum sandbox_status from, to;
	bool drop_channel; /* it left running: its channel goes */
	bool reread;	   /* the row it returns misses what it wrote (ports): read it again */
	bool committed;	   /* it happened: a failed read after it is retried, then says so */
	struct event *retry;
	int64_t retry_ms, retried_ms;
	void *wake;	/* an acquire's sandbox being woken: the waker's handle */
	char note[200]; /* a move's reason and actor, logged once it happened */
};

struct registry {
	struct event_base *base;
	struct pg_pool *pg;
	struct channels *chs;
	struct pg_listener *listener;
	char cluster[64];
	char instance[128];
	char idle_ms[24];
	int64_t idle_default_ms, cache_ms;
	uint64_t epoch; /* bumped when the listener starts or stops listening */
	struct entry *buckets[REGISTRY_BUCKETS];
	/* activity: ids queued for the next batched write */
	char (*touch_ids)[37];
	size_t ntouch, touch_cap;
	struct event *touch_ev;
	bool touch_in_flight;
	struct registry_waker waker; /* REGISTRY_WAKE's (wake NULL: none) */
	/* every wait not yet freed: a cancelled write goes on to its end, and one
	 * still going at shutdown is freed with the registry */
	TAILQ_HEAD(, registry_wait) waits;
};

/* ---- the cache (registry.c) ---- */

/* The entry of id, made empty when there is none. */
struct entry *entry_get(struct registry *reg, const char *id);
/* Forgets what is cached of it (another instance changed it, or a write did). */
void entry_invalidate(struct entry *e);
/* Caches ref as e's newest unless e was invalidated since gen (see registry.c). */
void entry_store(struct entry *e, struct sandbox_ref *ref, uint64_t gen, uint64_t epoch);
/* A held sandbox of res's row, NULL (logged) when the row cannot be read. */
struct sandbox_ref *ref_from_row(struct registry *reg, PGresult *res, int row);

/* ---- pending calls (registry.c) ---- */

struct registry_wait *wait_new(struct registry *reg, enum wait_kind kind, void *arg);
/* Answers w from the loop: its w->ref, or its w->err once it failed. */
void wait_later(struct registry_wait *w);
bool wait_failed(const struct registry_wait *w);
void wait_fail_later(struct registry_wait *w, enum core_err kind, const char *code, const char *msg);
void wait_free(struct registry_wait *w);
/* Sends a write's or a list's query: done has its result, or the caller
 * hears of its failure and w goes. */
void wait_query(struct registry_wait *w, const char *sql, int nparams, const char *const *params,
		wait_result_fn done);

#endif
