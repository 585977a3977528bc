/* The sandbox registry: the cache of sandboxes and the handles it hands out,
 * the activity writer, and the writes of a sandbox's row (insert, the status
 * transitions, heartbeats), each of which tells the other instances sharing
 * the database through NOTIFY; batched activity does not (it would empty
 * their caches of every active sandbox each second). A cached sandbox is an
 * immutable snapshot shared by its holders; a change makes a new one. */
#include "core/clock.h"
#include "sandbox/registry.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#include "channel/channel.h"
#include "core/log.h"
#include "pg/listen.h"
#include "pg/pool.h"
#include "row.h"

#define BUCKETS 1024
/* Even while listening, a cached sandbox is read again after this long, so a
 * change written behind sandbard's back (psql) shows eventually. */
#define TRUST_MAX_MS 30000
/* Activity is written at most this often per sandbox. */
#define ACTIVITY_MS    1000
#define NOTIFY_CHANNEL "sandbar_sandbox"
/* A committed write whose row cannot be read again is read again for this
 * long, with back-off, before its caller hears that the read failed. */
#define REREAD_FIRST_MS 100
#define REREAD_MAX_MS	5000

/* One sandbox's row (a lookup, the read after a write). */
static const char row_sql[] =
	"SELECT " SANDBOX_ROW_COLUMNS " FROM sandboxes s WHERE s.id = $1 AND s.cluster = $2";

/* An immutable sandbox; sandbox_ref is this. */
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

/* A pending call: an acquire, a write (insert, transition, heartbeat) or a list. */
struct registry_wait {
	struct registry *reg;
	enum wait_kind kind;
	struct registry_wait *next; /* among an entry's waiters */
	struct entry *entry;
	unsigned flags;
	registry_ref_fn ref_cb;
	registry_moved_fn moved_cb;
	registry_list_fn list_cb;
	void *arg;
	struct event *later; /* delivery from the loop */
	struct pg_query *query;
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
	struct entry *buckets[BUCKETS];
	/* activity: ids queued for the next batched write */
	char (*touch_ids)[37];
	size_t ntouch, touch_cap;
	struct event *touch_ev;
	bool touch_in_flight;
	struct registry_waker waker; /* REGISTRY_WAKE's (wake NULL: none) */
};

static void wait_fire(evutil_socket_t fd, short what, void *arg);
static void wait_later(struct registry_wait *w);
static void wait_free(struct registry_wait *w);
static void wait_pg_failed(struct registry_wait *w, enum pg_error err, const char *message);
static void entry_loaded(enum pg_error err, PGresult *res, const char *message, void *arg);
static void deliver_ref(struct registry_wait *w, struct sandbox_ref *ref);
static void acquire_queue(struct registry_wait *w, const char *id);
static void woken(const struct core_error *err, void *arg);
static void load_start(struct registry *reg, struct entry *e);
static void touch_flush(evutil_socket_t fd, short what, void *arg);
static void touch_written(enum pg_error err, PGresult *res, const char *message, void *arg);
static void moved(enum pg_error err, PGresult *res, const char *message, void *arg);
static void moved_loaded(enum pg_error err, PGresult *res, const char *message, void *arg);
static void move_retry(evutil_socket_t fd, short what, void *arg);
static void move_finish(struct registry_wait *w, struct sandbox_ref *ref);
static void listed(enum pg_error err, PGresult *res, const char *message, void *arg);
static void on_notified(const char *payload, void *arg);
static void on_reset(void *arg);
static void on_lost(void *arg);

bool sandbox_id_valid(const char *id)
{
	static const int dash[] = { 8, 13, 18, 23 };
	if (!id || strlen(id) != 36)
		return false;
	for (int i = 0, d = 0; i < 36; i++) {
		if (d < 4 && i == dash[d]) {
			if (id[i] != '-')
				return false;
			d++;
		} else if (!isxdigit((unsigned char)id[i])) {
			return false;
		}
	}
	return true;
}

/* ---- the registry ---- */

struct registry *registry_new(struct event_base *base, const struct registry_config *cfg, struct pg_pool *pg,
			      struct channels *chs)
{
	struct registry *reg = calloc(1, sizeof(*reg));
	CHECK(reg != NULL);
	reg->base = base;
	reg->pg = pg;
	reg->chs = chs;
	snprintf(reg->cluster, sizeof(reg->cluster), "%s", cfg->cluster);
	snprintf(reg->instance, sizeof(reg->instance), "%s", cfg->instance);
	snprintf(reg->idle_ms, sizeof(reg->idle_ms), "%" PRId64, cfg->idle_timeout_ms);
	reg->idle_default_ms = cfg->idle_timeout_ms;
	reg->cache_ms = cfg->cache_ms;
	reg->touch_ev = evtimer_new(base, touch_flush, reg);
	CHECK(reg->touch_ev != NULL);
	if (cfg->conninfo) {
		static const struct pg_listener_ops ops = { on_notified, on_reset, on_lost };
		reg->listener = pg_listener_new(base, cfg->conninfo, NOTIFY_CHANNEL, &ops, reg);
	}
	return reg;
}

void registry_start(struct registry *reg)
{
	if (reg->listener)
		pg_listener_start(reg->listener);
}

static void ref_free(struct sandbox_ref *ref)
{
	sandbox_clear(&ref->sb);
	free(ref);
}

void registry_free(struct registry *reg)
{
	if (!reg)
		return;
	pg_listener_free(reg->listener);
	for (size_t i = 0; i < BUCKETS; i++) {
		while (reg->buckets[i]) {
			struct entry *e = reg->buckets[i];
			reg->buckets[i] = e->next;
			/* lookups still waiting after a drain that timed out: their
			 * requests are gone with the server, nobody is called back */
			while (e->waiters) {
				struct registry_wait *w = e->waiters;
				e->waiters = w->next;
				wait_free(w);
			}
			if (e->load)
				pg_query_cancel(e->load);
			if (e->cur)
				sandbox_ref_put(e->cur);
			free(e);
		}
	}
	event_free(reg->touch_ev);
	free(reg->touch_ids);
	free(reg);
}

struct channels *registry_channels(const struct registry *reg)
{
	return reg->chs;
}

struct pg_pool *registry_pg(const struct registry *reg)
{
	return reg->pg;
}

/* ---- the cache ---- */

static unsigned bucket_of(const char *id)
{
	unsigned h = 2166136261u;
	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 16777619u;
	return h % BUCKETS;
}

static struct entry *entry_find(struct registry *reg, const char *id)
{
	for (struct entry *e = reg->buckets[bucket_of(id)]; e; e = e->next)
		if (strcmp(e->id, id) == 0)
			return e;
	return NULL;
}

static struct entry *entry_get(struct registry *reg, const char *id)
{
	struct entry *e = entry_find(reg, id);
	if (e)
		return e;
	e = calloc(1, sizeof(*e));
	CHECK(e != NULL);
	e->reg = reg;
	snprintf(e->id, sizeof(e->id), "%s", id);
	e->touched_ms = INT64_MIN / 2;
	unsigned b = bucket_of(id);
	e->next = reg->buckets[b];
	reg->buckets[b] = e;
	return e;
}

/* Forgets what is cached of it (another instance changed it). */
static void entry_invalidate(struct entry *e)
{
	e->gen++;
	if (e->cur) {
		sandbox_ref_put(e->cur);
		e->cur = NULL;
	}
}

static bool entry_trusted(const struct registry *reg, const struct entry *e)
{
	if (!e->cur)
		return false;
	int64_t age = clock_mono_ms() - e->loaded_ms;
	if (reg->listener && pg_listener_listening(reg->listener) && e->epoch == reg->epoch)
		return age < TRUST_MAX_MS;
	return age < reg->cache_ms;
}

/* The newest row of it, from a load or a write: cached unless the sandbox is
 * final (nothing acquires it any more) or changed meanwhile elsewhere. epoch:
 * reg->epoch when the query was sent, so a row asked for while not listening
 * (a notification may have been lost before it was read) is trusted for the
 * validity only. */
static void entry_store(struct entry *e, struct sandbox_ref *ref, uint64_t gen, uint64_t epoch)
{
	if (gen != e->gen)
		return;
	if (e->cur)
		sandbox_ref_put(e->cur);
	e->cur = NULL;
	if (sandbox_status_final(ref->sb.status))
		return;
	e->cur = sandbox_ref_hold(ref);
	e->epoch = epoch;
	e->loaded_ms = clock_mono_ms();
}

static struct sandbox_ref *ref_from_row(struct registry *reg, PGresult *res, int row)
{
	struct sandbox_ref *ref = calloc(1, sizeof(*ref));
	CHECK(ref != NULL);
	ref->refs = 1;
	ref->reg = reg;
	if (sandbox_from_row(&ref->sb, res, row) != 0) {
		log_error("sandbox=%s: unreadable row (status %s)", PQgetvalue(res, row, 0),
			  PQgetvalue(res, row, 3));
		ref_free(ref);
		return NULL;
	}
	return ref;
}

const struct sandbox *sandbox_ref_get(const struct sandbox_ref *ref)
{
	return &ref->sb;
}

struct sandbox_ref *sandbox_ref_hold(struct sandbox_ref *ref)
{
	CHECK(ref->refs > 0);
	ref->refs++;
	return ref;
}

void sandbox_ref_put(struct sandbox_ref *ref)
{
	if (!ref)
		return;
	CHECK(ref->refs > 0);
	if (--ref->refs == 0)
		ref_free(ref);
}

struct agent_channel *sandbox_ref_channel(struct sandbox_ref *ref)
{
	return channels_get(ref->reg->chs, ref->sb.id, ref->sb.container_id);
}

/* ---- pending calls ---- */

static struct registry_wait *wait_new(struct registry *reg, enum wait_kind kind, void *arg)
{
	struct registry_wait *w = calloc(1, sizeof(*w));
	CHECK(w != NULL);
	w->reg = reg;
	w->kind = kind;
	w->arg = arg;
	return w;
}

static void wait_later(struct registry_wait *w)
{
	if (!w->later)
		w->later = evtimer_new(w->reg->base, wait_fire, w);
	CHECK(w->later != NULL);
	event_active(w->later, EV_TIMEOUT, 0);
}

static bool wait_failed(const struct registry_wait *w)
{
	return w->err.kind != CORE_OK;
}

static void wait_fail_later(struct registry_wait *w, enum core_err kind, const char *code, const char *msg)
{
	core_error_set(&w->err, kind, code, "%s", msg);
	wait_later(w);
}

static void wait_free(struct registry_wait *w)
{
	if (w->later)
		event_free(w->later);
	if (w->retry)
		event_free(w->retry);
	sandbox_ref_put(w->ref);
	free(w);
}

void registry_wait_cancel(struct registry_wait *w)
{
	if (!w)
		return;
	if (w->wake) {
		w->reg->waker.cancel(w->wake);
		w->wake = NULL;
	}
	if (w->entry) {
		struct registry_wait **pp = &w->entry->waiters;
		while (*pp && *pp != w)
			pp = &(*pp)->next;
		if (*pp)
			*pp = w->next;
	}
	if (w->query || w->retry) {
		/* a write goes on (it may already be committed): only its callback goes */
		if (w->kind == WAIT_MOVE) {
			w->moved_cb = NULL;
			return;
		}
		pg_query_cancel(w->query);
	}
	wait_free(w);
}

/* The answer of an acquire whose sandbox was cached, or of an early failure. */
static void wait_fire(evutil_socket_t fd, short what, void *arg)
{
	struct registry_wait *w = arg;
	if (wait_failed(w)) {
		if (w->kind == WAIT_ACQUIRE)
			w->ref_cb(NULL, &w->err, w->arg);
		else if (w->kind == WAIT_LIST)
			w->list_cb(&w->err, NULL, 0, 0, w->arg);
		else if (w->moved_cb)
			w->moved_cb(&w->err, w->ref ? &w->ref->sb : NULL, w->arg);
		wait_free(w);
		return;
	}
	struct sandbox_ref *ref = w->ref;
	w->ref = NULL;
	deliver_ref(w, ref);
}

/* May an acquire that wants it running wake sb? */
static bool wakeable(const struct registry_wait *w, const struct sandbox *sb)
{
	return (w->flags & REGISTRY_WAKE) && w->reg->waker.wake && sb->auto_wake &&
	       (sb->status == SANDBOX_STOPPED || sb->status == SANDBOX_STOPPING ||
		sb->status == SANDBOX_STARTING);
}

/* Applies the acquire's flags, then hands ref over (or fails, or has it
 * woken first); frees w unless it waits for the wake. */
static void deliver_ref(struct registry_wait *w, struct sandbox_ref *ref)
{
	const struct sandbox *sb = &ref->sb;
	struct core_error err;
	if ((w->flags & REGISTRY_RUNNING) && sb->status != SANDBOX_RUNNING && wakeable(w, sb)) {
		w->wake = w->reg->waker.wake(w->reg->waker.ctx, sb->id, woken, w);
		sandbox_ref_put(ref);
		return;
	}
	if ((w->flags & REGISTRY_RUNNING) && sb->status != SANDBOX_RUNNING) {
		core_error_set(&err, CORE_CONFLICT, "sandbox_not_running", "sandbox is %s",
			       sandbox_status_name(sb->status));
		err.status = sandbox_status_name(sb->status);
	} else if ((w->flags & REGISTRY_LIVE) && sandbox_status_final(sb->status)) {
		core_error_set(&err, CORE_CONFLICT, "sandbox_not_live", "sandbox is %s",
			       sandbox_status_name(sb->status));
		err.status = sandbox_status_name(sb->status);
	} else {
		if ((w->flags & REGISTRY_TOUCH) && sb->status == SANDBOX_RUNNING)
			registry_touch(w->reg, sb->id);
		registry_ref_fn cb = w->ref_cb;
		void *arg = w->arg;
		wait_free(w);
		cb(ref, NULL, arg);
		return;
	}
	sandbox_ref_put(ref);
	registry_ref_fn cb = w->ref_cb;
	void *arg = w->arg;
	wait_free(w);
	cb(NULL, &err, arg);
}

/* A write's or a list's query failed: its caller hears it, w goes. */
static void wait_pg_failed(struct registry_wait *w, enum pg_error err, const char *message)
{
	struct core_error e;
	pg_core_error(&e, err, message);
	if (w->kind == WAIT_LIST)
		w->list_cb(&e, NULL, 0, 0, w->arg);
	else if (w->moved_cb)
		w->moved_cb(&e, NULL, w->arg);
	wait_free(w);
}

/* ---- acquire ---- */

struct registry_wait *registry_acquire(struct registry *reg, const char *id, unsigned flags,
				       registry_ref_fn cb, void *arg)
{
	struct registry_wait *w = wait_new(reg, WAIT_ACQUIRE, arg);
	w->ref_cb = cb;
	w->flags = flags;
	if (!sandbox_id_valid(id)) {
		wait_fail_later(w, CORE_INVALID, "invalid_id", "sandbox id must be a UUID");
		return w;
	}
	snprintf(w->id, sizeof(w->id), "%s", id); /* a wake reads it again */
	acquire_queue(w, id);
	return w;
}

/* The cached sandbox from the loop, or w waits for the (one) lookup. */
static void acquire_queue(struct registry_wait *w, const char *id)
{
	struct registry *reg = w->reg;
	struct entry *e = entry_get(reg, id);
	if (!(w->flags & REGISTRY_FRESH) && entry_trusted(reg, e)) {
		w->ref = sandbox_ref_hold(e->cur);
		wait_later(w);
		return;
	}
	w->entry = e;
	w->next = e->waiters;
	e->waiters = w;
	if (!e->load)
		load_start(reg, e);
}

/* The wake answered: the sandbox is read again (once for every waiter) and
 * delivered as any acquire, without waking twice. */
static void woken(const struct core_error *err, void *arg)
{
	struct registry_wait *w = arg;
	w->wake = NULL;
	if (err) {
		registry_ref_fn cb = w->ref_cb;
		void *warg = w->arg;
		wait_free(w);
		cb(NULL, err, warg);
		return;
	}
	w->flags = (w->flags & ~(unsigned)REGISTRY_WAKE) | REGISTRY_FRESH;
	acquire_queue(w, w->id);
}

void registry_set_waker(struct registry *reg, const struct registry_waker *w)
{
	if (w)
		reg->waker = *w;
	else
		memset(&reg->waker, 0, sizeof(reg->waker));
}

static void load_start(struct registry *reg, struct entry *e)
{
	const char *params[] = { e->id, reg->cluster };
	e->load_gen = e->gen;
	e->load_epoch = reg->epoch;
	e->load = pg_query_send(reg->pg, row_sql, 2, params, entry_loaded, e);
}

static void entry_loaded(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct entry *e = arg;
	e->load = NULL;
	/* every waiter may have cancelled meanwhile: the row is still worth caching */
	struct registry *reg = e->reg;
	struct registry_wait *list = e->waiters;
	e->waiters = NULL;
	struct sandbox_ref *ref = NULL;
	struct core_error fail = { 0 };
	if (err != PG_OK) {
		pg_core_error(&fail, err, message);
	} else if (PQntuples(res) == 0) {
		core_error_set(&fail, CORE_NOT_FOUND, "not_found", "no sandbox with this id");
	} else if (!(ref = ref_from_row(reg, res, 0))) {
		core_error_set(&fail, CORE_INTERNAL, "internal", "the sandbox's row cannot be read");
	} else {
		entry_store(e, ref, e->load_gen, e->load_epoch);
	}
	/* every waiter gets the one answer (a waiter's callback may acquire again) */
	while (list) {
		struct registry_wait *w = list;
		list = w->next;
		w->entry = NULL;
		if (ref) {
			deliver_ref(w, sandbox_ref_hold(ref));
		} else {
			registry_ref_fn cb = w->ref_cb;
			void *warg = w->arg;
			wait_free(w);
			cb(NULL, &fail, warg);
		}
	}
	sandbox_ref_put(ref);
}

/* ---- notifications ---- */

/* payload: "<instance> <sandbox id>" */
static void on_notified(const char *payload, void *arg)
{
	struct registry *reg = arg;
	const char *sp = strrchr(payload, ' ');
	if (!sp)
		return;
	size_t ilen = (size_t)(sp - payload);
	if (ilen == strlen(reg->instance) && strncmp(payload, reg->instance, ilen) == 0)
		return; /* our own write: the cache already has it */
	struct entry *e = entry_find(reg, sp + 1);
	if (e)
		entry_invalidate(e);
}

static void on_reset(void *arg)
{
	struct registry *reg = arg;
	reg->epoch++; /* what was read while not listening is trusted for its validity only */
}

static void on_lost(void *arg)
{
	struct registry *reg = arg;
	reg->epoch++;
}

/* ---- activity ---- */

void registry_touch(struct registry *reg, const char *id)
{
	if (!sandbox_id_valid(id))
		return;
	struct entry *e = entry_get(reg, id);
	int64_t now = clock_mono_ms();
	if (now - e->touched_ms < ACTIVITY_MS)
		return;
	e->touched_ms = now;
	if (e->cur && e->cur->sb.status == SANDBOX_RUNNING) {
		/* what the write will say, until its answer says it exactly */
		int64_t us = clock_real_us(), idle = e->cur->sb.idle_timeout_ms;
		e->cur->sb.last_activity_us = us;
		e->cur->sb.expires_at_us = us + (idle > 0 ? idle : reg->idle_default_ms) * 1000;
	}
	if (reg->ntouch == reg->touch_cap) {
		reg->touch_cap = reg->touch_cap ? reg->touch_cap * 2 : 32;
		reg->touch_ids = realloc(reg->touch_ids, reg->touch_cap * sizeof(*reg->touch_ids));
		CHECK(reg->touch_ids != NULL);
	}
	memcpy(reg->touch_ids[reg->ntouch++], e->id, 37);
	if (!reg->touch_in_flight)
		event_active(reg->touch_ev, EV_TIMEOUT, 0);
}

static void touch_flush(evutil_socket_t fd, short what, void *arg)
{
	struct registry *reg = arg;
	if (reg->ntouch == 0 || reg->touch_in_flight)
		return;
	struct evbuffer *ids = evbuffer_new();
	CHECK(ids != NULL);
	evbuffer_add(ids, "{", 1);
	for (size_t i = 0; i < reg->ntouch; i++)
		evbuffer_add_printf(ids, "%s%s", i ? "," : "", reg->touch_ids[i]);
	evbuffer_add(ids, "}", 2);
	reg->ntouch = 0;
	static const char sql[] =
		"WITH u AS (UPDATE sandboxes SET last_activity = now(), "
		"  expires_at = now() + coalesce(idle_timeout_ms, $3::bigint) * interval '1 millisecond' "
		"  WHERE cluster = $1 AND id = ANY($2::uuid[]) AND status = 'running' "
		"  RETURNING id, sandbar_us(last_activity), sandbar_us(expires_at)) "
		"SELECT u.* FROM u";
	/* no NOTIFY: another instance's cached activity is at most TRUST_MAX_MS old */
	const char *params[] = { reg->cluster, (const char *)evbuffer_pullup(ids, -1), reg->idle_ms };
	reg->touch_in_flight = true;
	pg_query_send(reg->pg, sql, 3, params, touch_written, reg);
	evbuffer_free(ids);
}

static void touch_written(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct registry *reg = arg;
	reg->touch_in_flight = false;
	if (err != PG_OK) {
		log_warn("activity not recorded: %s", message ? message : "database unavailable");
	} else {
		for (int i = 0; i < PQntuples(res); i++) {
			struct entry *e = entry_find(reg, PQgetvalue(res, i, 0));
			if (e && e->cur) {
				e->cur->sb.last_activity_us = strtoll(PQgetvalue(res, i, 1), NULL, 10);
				e->cur->sb.expires_at_us = strtoll(PQgetvalue(res, i, 2), NULL, 10);
			}
		}
	}
	if (reg->ntouch)
		event_active(reg->touch_ev, EV_TIMEOUT, 0);
}

/* ---- writes: insert, transitions, heartbeats ---- */

/* A write's id and where the cache stood when it was sent: its answer is
 * cached only if nothing invalidated the entry meanwhile. */
static void write_sent(struct registry_wait *w)
{
	w->gen = entry_get(w->reg, w->id)->gen;
	w->epoch = w->reg->epoch;
}

/* After a write whose answer cannot say it all (a refused one, one that wrote
 * ports): the row as it is now, cached, and the caller told. */
static void move_reload(struct registry_wait *w)
{
	const char *params[] = { w->id, w->reg->cluster };
	struct entry *e = entry_get(w->reg, w->id);
	/* what was cached is older than this write */
	entry_invalidate(e);
	w->gen = e->gen;
	w->epoch = w->reg->epoch;
	w->query = pg_query_send(w->reg->pg, row_sql, 2, params, moved_loaded, w);
}

static void move_retry(evutil_socket_t fd, short what, void *arg)
{
	struct registry_wait *w = arg;
	event_free(w->retry);
	w->retry = NULL;
	move_reload(w);
}

static void moved_loaded(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct registry_wait *w = arg;
	struct registry *reg = w->reg;
	w->query = NULL;
	struct sandbox_ref *ref = NULL;
	if (err == PG_OK && PQntuples(res) > 0 && (ref = ref_from_row(reg, res, 0)) != NULL)
		entry_store(entry_get(reg, w->id), ref, w->gen, w->epoch);
	if (!ref && err != PG_OK && w->committed && w->retried_ms < REREAD_MAX_MS) {
		/* the write happened: its caller must not act as if it had not */
		w->retry_ms = w->retry_ms ? w->retry_ms * 2 : REREAD_FIRST_MS;
		if (w->retry_ms > REREAD_MAX_MS - w->retried_ms)
			w->retry_ms = REREAD_MAX_MS - w->retried_ms;
		w->retried_ms += w->retry_ms;
		log_warn("sandbox=%s: written, but not read again (%s); again in %" PRId64 " ms", w->id,
			 message ? message : "failed", w->retry_ms);
		struct timeval tv = { .tv_sec = w->retry_ms / 1000, .tv_usec = (w->retry_ms % 1000) * 1000 };
		w->retry = evtimer_new(reg->base, move_retry, w);
		CHECK(w->retry != NULL);
		evtimer_add(w->retry, &tv);
		return;
	}
	if (!ref && err == PG_OK) {
		core_error_set(&w->err, CORE_NOT_FOUND, "not_found", "no sandbox with this id");
	} else if (!ref && !wait_failed(w)) {
		pg_core_error(&w->err, err, message);
	}
	if (!ref && w->committed) {
		char why[sizeof(w->err.message)];
		snprintf(why, sizeof(why), "%s", w->err.message);
		static const char head[] =
			"the write was committed, but the sandbox could not be read again: ";
		snprintf(w->err.message, sizeof(w->err.message), "%s%.*s", head,
			 (int)(sizeof(w->err.message) - sizeof(head)), why);
	}
	move_finish(w, ref);
}

/* The write is over (ref: the row after it, NULL when unknown): its channel
 * dropped if it left running, the caller told; frees w. */
static void move_finish(struct registry_wait *w, struct sandbox_ref *ref)
{
	if (w->drop_channel)
		channels_drop(w->reg->chs, w->id); /* every holder's subscriptions hear of it at once */
	bool failed = wait_failed(w);
	if (failed && ref && !w->committed) {
		/* the write found another status: say which */
		const char *now = sandbox_status_name(ref->sb.status);
		w->err.status = now;
		if (strcmp(w->err.code, "invalid_state") == 0)
			snprintf(w->err.message, sizeof(w->err.message), "sandbox is %s, not %s", now,
				 sandbox_status_name(w->from));
		else
			snprintf(w->err.message, sizeof(w->err.message), "sandbox is %s", now);
	}
	if (w->moved_cb)
		w->moved_cb(failed ? &w->err : NULL, ref ? &ref->sb : NULL, w->arg);
	sandbox_ref_put(ref);
	wait_free(w);
}

/* A committed write's answer: its row as the statement returned it (the row
 * columns first), cached unless the entry was invalidated since it was sent. */
static void move_answered(struct registry_wait *w, PGresult *res)
{
	w->committed = true;
	if (w->kind == WAIT_MOVE && w->from != w->to)
		log_info("sandbox=%s %s -> %s%s", w->id, sandbox_status_name(w->from),
			 sandbox_status_name(w->to), w->note);
	if (w->reread) {
		move_reload(w);
		return;
	}
	struct sandbox_ref *ref = ref_from_row(w->reg, res, 0);
	struct entry *e = entry_get(w->reg, w->id);
	bool fresh = e->gen == w->gen;
	/* what was cached, and any lookup in flight, is older than this write */
	entry_invalidate(e);
	if (!ref)
		core_error_set(&w->err, CORE_INTERNAL, "internal",
			       "the write was committed, but the sandbox's row cannot be read");
	else if (fresh)
		entry_store(e, ref, e->gen, w->epoch);
	move_finish(w, ref);
}

/* The write's answer: the row it changed (none: it found another status, or
 * no live sandbox). */
static void moved(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct registry_wait *w = arg;
	w->query = NULL;
	if (err != PG_OK) {
		wait_pg_failed(w, err, message);
		return;
	}
	if (PQntuples(res) > 0) {
		move_answered(w, res);
		return;
	}
	if (w->kind == WAIT_MOVE && w->from != w->to)
		core_error_set(&w->err, CORE_CONFLICT, "invalid_state", "the sandbox moved meanwhile");
	else
		core_error_set(&w->err, CORE_CONFLICT, "sandbox_not_live", "the sandbox is not live");
	w->drop_channel = false;
	move_reload(w);
}

struct registry_wait *registry_transition(struct registry *reg, const struct sandbox_transition *t,
					  registry_moved_fn cb, void *arg)
{
	struct registry_wait *w = wait_new(reg, WAIT_MOVE, arg);
	w->moved_cb = cb;
	snprintf(w->id, sizeof(w->id), "%s", t->id);
	w->from = t->from;
	w->to = t->to;
	if (!sandbox_status_can(t->from, t->to)) {
		core_error_set(&w->err, CORE_CONFLICT, "invalid_state", "a sandbox cannot go from %s to %s",
			       sandbox_status_name(t->from), sandbox_status_name(t->to));
		w->err.status = sandbox_status_name(t->from);
		wait_later(w);
		return w;
	}
	w->drop_channel = t->from == SANDBOX_RUNNING;
	snprintf(w->note, sizeof(w->note), "%s%s (%s)", t->reason ? ": " : "", t->reason ? t->reason : "",
		 t->actor ? t->actor : "?");
	char hports[512] = "{", cports[512] = "{";
	size_t hl = 1, cl = 1;
	for (size_t i = 0; i < t->nports && hl < sizeof(hports) - 16 && cl < sizeof(cports) - 16; i++) {
		hl += (size_t)snprintf(hports + hl, sizeof(hports) - hl, "%s%d", i ? "," : "",
				       t->host_ports[i]);
		cl += (size_t)snprintf(cports + cl, sizeof(cports) - cl, "%s%d", i ? "," : "",
				       t->container_ports[i]);
	}
	snprintf(hports + hl, sizeof(hports) - hl, "}");
	snprintf(cports + cl, sizeof(cports) - cl, "}");
	static const char sql[] =
		"WITH u AS (UPDATE sandboxes s SET status = $3, status_reason = $4, "
		"  deleted_at = CASE WHEN $3 IN ('deleted', 'expired') THEN now() ELSE deleted_at END, "
		"  container_id = coalesce($6, container_id), setup_output = coalesce($7, setup_output), "
		"  run_image = coalesce($14, run_image), "
		"  last_activity = CASE WHEN $8::bool THEN now() ELSE last_activity END, "
		"  expires_at = CASE WHEN $8::bool THEN now() + coalesce(idle_timeout_ms, $9::bigint) * "
		"    interval '1 millisecond' ELSE expires_at END "
		"  WHERE id = $1 AND cluster = $10 AND status = $2 RETURNING " SANDBOX_ROW_COLUMNS "), "
		"e AS (INSERT INTO sandbox_events (sandbox_id, from_status, to_status, reason, actor) "
		"  SELECT id, $2, $3, $4, $5 FROM u), "
		"p AS (INSERT INTO port_mappings (id, sandbox_id, host_port, container_port) "
		"  SELECT gen_random_uuid(), u.id, x.h, x.c FROM u, unnest($11::int[], $12::int[]) AS x(h, "
		"c) "
		"  ON CONFLICT (sandbox_id, container_port) DO UPDATE SET host_port = excluded.host_port), "
		"n AS (SELECT pg_notify('" NOTIFY_CHANNEL "', $13 || ' ' || id) FROM u) "
		"SELECT u.*, (SELECT count(*) FROM n) FROM u";
	const char *params[] = {
		t->id,
		sandbox_status_name(t->from),
		sandbox_status_name(t->to),
		t->reason,
		t->actor,
		t->container_id,
		t->setup_output,
		t->touch ? "t" : "f",
		reg->idle_ms,
		reg->cluster,
		hports,
		cports,
		reg->instance,
		t->run_image,
	};
	/* the row it returns cannot see the ports the same statement wrote */
	w->reread = t->nports > 0;
	write_sent(w);
	w->query = pg_query_send(reg->pg, sql, 14, params, moved, w);
	return w;
}

/* A port set as a PostgreSQL array literal, "{8000,8001}", into buf. */
#define PORT_SET_LITERAL_MAX (SANDBOX_PRIVATE_PORTS_MAX * 6 + 3)
static const char *port_set_literal(const struct sandbox_port_set *s, char buf[PORT_SET_LITERAL_MAX])
{
	size_t n = 0;
	buf[n++] = '{';
	for (int i = 0; i < s->n && i < SANDBOX_PRIVATE_PORTS_MAX; i++)
		n += (size_t)snprintf(buf + n, PORT_SET_LITERAL_MAX - n, "%s%u", i ? "," : "", s->port[i]);
	snprintf(buf + n, PORT_SET_LITERAL_MAX - n, "}");
	return buf;
}

bool sandbox_port_private(const struct sandbox *sb, int port)
{
	if (sb->is_private)
		return true;
	for (int i = 0; i < sb->private_ports.n; i++)
		if (sb->private_ports.port[i] == port)
			return true;
	return false;
}

/* A JSON parameter, NULL for none. */
static const char *json_or_null(struct json_object *o)
{
	return o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN) : NULL;
}

/* A tri-state setting as a parameter: NULL for 0 (the default, or unchanged). */
static const char *tristate(int v)
{
	return v > 0 ? "t" : v < 0 ? "f" : NULL;
}

struct registry_wait *registry_insert(struct registry *reg, const struct sandbox_insert *ins,
				      registry_moved_fn cb, void *arg)
{
	struct registry_wait *w = wait_new(reg, WAIT_MOVE, arg);
	w->moved_cb = cb;
	snprintf(w->id, sizeof(w->id), "%s", ins->id);
	w->from = w->to = SANDBOX_CREATING;
	static const char sql[] =
		"WITH i AS (INSERT INTO sandboxes AS s (id, name, template, status, image, workspace_mount, "
		"  devcontainer_config, env_vars, cluster, owner_instance, expires_at, labels, cpu_millis, "
		"  memory_bytes, idle_timeout_ms, idle_action, ends_at, in_pool, auto_wake, private, "
		"  private_ports, project, user_id, spec, configured_env) "
		"  VALUES ($1, $2, $3, 'creating', $4, $5, $6::jsonb, $7::jsonb, $8, $9, "
		"  now() + $10::bigint * interval '1 millisecond', coalesce($12::jsonb, '{}'), $13, $14, "
		"$10, $15, "
		"  now() + $16::bigint * interval '1 millisecond', $17, $18::boolean, $19::boolean, "
		"  $20::int[], coalesce($21, 'default'), coalesce($22, ''), coalesce($23::jsonb, '{}'), "
		"  coalesce($24::jsonb, '{}')) "
		"RETURNING " SANDBOX_ROW_COLUMNS "), "
		"e AS (INSERT INTO sandbox_events (sandbox_id, to_status, actor) SELECT id, 'creating', $11 "
		"FROM i) "
		"SELECT i.* FROM i";
	char idle[24], cpu[24], mem[24], ttl[24], pports[PORT_SET_LITERAL_MAX];
	snprintf(idle, sizeof(idle), "%" PRId64,
		 ins->idle_timeout_ms > 0 ? ins->idle_timeout_ms : reg->idle_default_ms);
	snprintf(cpu, sizeof(cpu), "%" PRId64, ins->cpu_millis);
	snprintf(mem, sizeof(mem), "%" PRId64, ins->memory_bytes);
	snprintf(ttl, sizeof(ttl), "%" PRId64, ins->ttl_ms);
	const char *params[] = {
		ins->id,
		ins->name,
		ins->template_name,
		ins->image,
		ins->workspace_mount,
		json_object_to_json_string_ext(ins->config, JSON_C_TO_STRING_PLAIN),
		json_object_to_json_string_ext(ins->env_vars, JSON_C_TO_STRING_PLAIN),
		reg->cluster,
		reg->instance,
		idle,
		ins->actor,
		ins->labels ? json_object_to_json_string_ext(ins->labels, JSON_C_TO_STRING_PLAIN) : NULL,
		ins->cpu_millis > 0 ? cpu : NULL,
		ins->memory_bytes > 0 ? mem : NULL,
		sandbox_idle_action_name(ins->idle_action),
		ins->ttl_ms > 0 ? ttl : NULL,
		ins->in_pool ? "t" : "f",
		tristate(ins->auto_wake),
		ins->is_private ? "t" : "f",
		port_set_literal(&ins->private_ports, pports),
		ins->project,
		ins->user_id,
		json_or_null(ins->spec),
		json_or_null(ins->configured_env),
	};
	write_sent(w);
	w->query = pg_query_send(reg->pg, sql, 24, params, moved, w);
	return w;
}

/* A write of sandbox id's row; an id that is no UUID fails it at once (from the loop). */
static struct registry_wait *write_wait_new(struct registry *reg, const char *id, registry_moved_fn cb,
					    void *arg)
{
	struct registry_wait *w = wait_new(reg, WAIT_MOVE, arg);
	w->moved_cb = cb;
	if (!sandbox_id_valid(id))
		wait_fail_later(w, CORE_INVALID, "invalid_id", "sandbox id must be a UUID");
	else
		snprintf(w->id, sizeof(w->id), "%s", id);
	return w;
}

struct registry_wait *registry_heartbeat(struct registry *reg, const char *id, registry_moved_fn cb,
					 void *arg)
{
	struct registry_wait *w = write_wait_new(reg, id, cb, arg);
	if (wait_failed(w))
		return w;
	static const char sql[] =
		"WITH u AS (UPDATE sandboxes s SET last_activity = now(), "
		"  expires_at = now() + coalesce(idle_timeout_ms, $3::bigint) * interval '1 millisecond' "
		"  WHERE id = $1 AND cluster = $2 AND status IN ('creating', 'starting', "
		"'running', 'stopping', "
		"  'stopped') RETURNING " SANDBOX_ROW_COLUMNS "), "
		"n AS (SELECT pg_notify('" NOTIFY_CHANNEL "', $4 || ' ' || id) FROM u) "
		"SELECT u.*, (SELECT count(*) FROM n) FROM u";
	const char *params[] = { id, reg->cluster, reg->idle_ms, reg->instance };
	write_sent(w);
	w->query = pg_query_send(reg->pg, sql, 4, params, moved, w);
	return w;
}

struct registry_wait *registry_settle(struct registry *reg, const char *id, const struct sandbox_settings *st,
				      registry_moved_fn cb, void *arg)
{
	struct registry_wait *w = write_wait_new(reg, id, cb, arg);
	if (wait_failed(w))
		return w;
	static const char sql[] =
		"WITH u AS (UPDATE sandboxes s SET name = coalesce($3, name), "
		"  labels = coalesce($4::jsonb, labels), "
		"  cpu_millis = coalesce($6::int, cpu_millis), memory_bytes = coalesce($7::bigint, "
		"memory_bytes), "
		"  idle_timeout_ms = coalesce($8::bigint, idle_timeout_ms), "
		"  expires_at = CASE WHEN $8::bigint IS NULL THEN expires_at "
		"    ELSE last_activity + $8::bigint * interval '1 millisecond' END, "
		"  idle_action = coalesce($9, idle_action), "
		"  keepalive_until = CASE WHEN $10::bigint IS NULL THEN keepalive_until "
		"    ELSE now() + $10::bigint * interval '1 millisecond' END, "
		"  ends_at = CASE WHEN $11::bigint IS NULL THEN ends_at "
		"    ELSE greatest(coalesce(ends_at, now()), now()) + $11::bigint * interval '1 millisecond' "
		"END, "
		"  auto_wake = coalesce($14::boolean, auto_wake), private = coalesce($15::boolean, private), "
		"  private_ports = coalesce($16::int[], private_ports), "
		"  spec = spec || coalesce($17::jsonb, '{}'), image = coalesce($20, image), "
		"  configured_env = configured_env || coalesce($18::jsonb, '{}'), "
		"  env_vars = env_vars || coalesce($5::jsonb, '{}') || coalesce($18::jsonb, '{}') "
		"    || CASE WHEN $19::boolean THEN configured_env ELSE '{}' END "
		"  WHERE id = $1 AND cluster = $2 AND deleted_at IS NULL RETURNING " SANDBOX_ROW_COLUMNS "), "
		"e AS (INSERT INTO sandbox_events (sandbox_id, from_status, to_status, reason, actor) "
		"  SELECT id, status, status, 'settings', $13 FROM u), "
		"n AS (SELECT pg_notify('" NOTIFY_CHANNEL "', $12 || ' ' || id) FROM u) "
		"SELECT u.*, (SELECT count(*) FROM n) FROM u";
	char cpu[24], mem[24], idle[24], keep[24], ext[24], pports[PORT_SET_LITERAL_MAX];
	snprintf(cpu, sizeof(cpu), "%" PRId64, st->cpu_millis);
	snprintf(mem, sizeof(mem), "%" PRId64, st->memory_bytes);
	snprintf(idle, sizeof(idle), "%" PRId64, st->idle_timeout_ms);
	snprintf(keep, sizeof(keep), "%" PRId64, st->keepalive_ms);
	snprintf(ext, sizeof(ext), "%" PRId64, st->extend_ms);
	const char *params[] = {
		id,
		reg->cluster,
		st->name,
		st->labels ? json_object_to_json_string_ext(st->labels, JSON_C_TO_STRING_PLAIN) : NULL,
		st->env_vars ? json_object_to_json_string_ext(st->env_vars, JSON_C_TO_STRING_PLAIN) : NULL,
		st->cpu_millis > 0 ? cpu : NULL,
		st->memory_bytes > 0 ? mem : NULL,
		st->idle_timeout_ms > 0 ? idle : NULL,
		st->set_idle_action ? sandbox_idle_action_name(st->idle_action) : NULL,
		st->keepalive_ms > 0 ? keep : NULL,
		st->extend_ms > 0 ? ext : NULL,
		reg->instance,
		st->actor,
		tristate(st->auto_wake),
		tristate(st->is_private),
		st->set_private_ports ? port_set_literal(&st->private_ports, pports) : NULL,
		json_or_null(st->spec),
		json_or_null(st->configured_env),
		st->reapply_configured ? "t" : "f",
		st->image,
	};
	write_sent(w);
	w->query = pg_query_send(reg->pg, sql, 20, params, moved, w);
	return w;
}

/* ---- the warm pool ---- */

/* The answer of a claim: the member's id, or none. */
static void claimed(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct registry_wait *w = arg;
	w->query = NULL;
	if (err != PG_OK) {
		wait_pg_failed(w, err, message);
		return;
	}
	if (PQntuples(res) == 0) {
		struct core_error e;
		core_error_set(&e, CORE_NOT_FOUND, "pool_empty", "no warm sandbox of this template");
		if (w->moved_cb)
			w->moved_cb(&e, NULL, w->arg);
		wait_free(w);
		return;
	}
	snprintf(w->id, sizeof(w->id), "%s", PQgetvalue(res, 0, 0));
	w->gen = entry_get(w->reg, w->id)->gen; /* the epoch is the claim's, taken when sent */
	move_answered(w, res);
}

struct registry_wait *registry_claim(struct registry *reg, const struct sandbox_claim *c,
				     registry_moved_fn cb, void *arg)
{
	struct registry_wait *w = wait_new(reg, WAIT_MOVE, arg);
	w->moved_cb = cb;
	w->from = SANDBOX_WARM;
	w->to = SANDBOX_RUNNING;
	snprintf(w->note, sizeof(w->note), " (%s)", c->actor ? c->actor : "?");
	/* the oldest member of the newest image; a locked one is someone else's */
	static const char sql[] =
		"WITH c AS (SELECT id FROM sandboxes WHERE cluster = $1 AND template = $2 AND in_pool "
		"  AND status = 'warm' ORDER BY run_image IS NOT DISTINCT FROM $3 DESC, created_at, id "
		"  LIMIT 1 FOR UPDATE SKIP LOCKED), "
		"u AS (UPDATE sandboxes s SET status = 'running', in_pool = false, status_reason = NULL, "
		"  name = $4, env_vars = coalesce($5::jsonb, '{}'), labels = coalesce($6::jsonb, '{}'), "
		"  cpu_millis = coalesce($7::int, s.cpu_millis), "
		"  memory_bytes = coalesce($8::bigint, s.memory_bytes), "
		"  idle_timeout_ms = coalesce($9::bigint, $10::bigint), idle_action = $11, "
		"  ends_at = now() + $12::bigint * interval '1 millisecond', "
		"  created_at = now(), last_activity = now(), "
		"  expires_at = now() + coalesce($9::bigint, $10::bigint) * interval '1 millisecond', "
		"  owner_instance = $13, auto_wake = $15::boolean, private = $16::boolean, "
		"  private_ports = $17::int[], project = coalesce($18, 'default'), user_id = coalesce($19, "
		"''), "
		"  spec = coalesce($20::jsonb, '{}'), configured_env = coalesce($21::jsonb, '{}') "
		"  FROM c WHERE s.id = c.id "
		"RETURNING " SANDBOX_ROW_COLUMNS "), "
		"e AS (INSERT INTO sandbox_events (sandbox_id, from_status, to_status, reason, actor) "
		"  SELECT id, 'warm', 'running', 'claimed', $14 FROM u), "
		"n AS (SELECT pg_notify('" NOTIFY_CHANNEL "', $13 || ' ' || id) FROM u) "
		"SELECT u.*, (SELECT count(*) FROM n) FROM u";
	char cpu[24], mem[24], idle[24], ttl[24], pports[PORT_SET_LITERAL_MAX];
	snprintf(cpu, sizeof(cpu), "%" PRId64, c->cpu_millis);
	snprintf(mem, sizeof(mem), "%" PRId64, c->memory_bytes);
	snprintf(idle, sizeof(idle), "%" PRId64, c->idle_timeout_ms);
	snprintf(ttl, sizeof(ttl), "%" PRId64, c->ttl_ms);
	const char *params[] = {
		reg->cluster,
		c->template_name,
		c->prefer_image,
		c->name,
		c->env_vars ? json_object_to_json_string_ext(c->env_vars, JSON_C_TO_STRING_PLAIN) : NULL,
		c->labels ? json_object_to_json_string_ext(c->labels, JSON_C_TO_STRING_PLAIN) : NULL,
		c->cpu_millis > 0 ? cpu : NULL,
		c->memory_bytes > 0 ? mem : NULL,
		c->idle_timeout_ms > 0 ? idle : NULL,
		reg->idle_ms,
		sandbox_idle_action_name(c->idle_action),
		c->ttl_ms > 0 ? ttl : NULL,
		reg->instance,
		c->actor,
		tristate(c->auto_wake),
		c->is_private ? "t" : "f",
		port_set_literal(&c->private_ports, pports),
		c->project,
		c->user_id,
		json_or_null(c->spec),
		json_or_null(c->configured_env),
	};
	w->epoch = reg->epoch;
	w->query = pg_query_send(reg->pg, sql, 21, params, claimed, w);
	return w;
}

/* ---- lists ---- */

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
	w->query = pg_query_send(reg->pg, sql, 8, params, listed, w);
	return w;
}

static void listed(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct registry_wait *w = arg;
	w->query = NULL;
	if (err != PG_OK) {
		wait_pg_failed(w, err, message);
		return;
	}
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
