/* The sandbox registry's cache of sandboxes and the handles it hands out:
 * lookups (one query however many wait), wakes, LISTEN/NOTIFY invalidation,
 * batched activity, and the pending calls every registry file answers through. */
#include "core/clock.h"
#include "sandbox/registry.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "channel/channel.h"
#include "core/log.h"
#include "pg/listen.h"
#include "pg/pool.h"
#include "registry_internal.h"
#include "row.h"

/* Even while listening, a cached sandbox is read again after this long, so a
 * change written behind sandbard's back (psql) shows eventually. */
#define TRUST_MAX_MS 30000
/* Activity is written at most this often per sandbox. */
#define ACTIVITY_MS 1000

const char registry_row_sql[] =
	"SELECT " SANDBOX_ROW_COLUMNS " FROM sandboxes s WHERE s.id = $1 AND s.cluster = $2";

static void ref_free(struct sandbox_ref *ref);
static unsigned bucket_of(const char *id);
static struct entry *entry_find(struct registry *reg, const char *id);
static bool entry_trusted(const struct registry *reg, const struct entry *e);
static void wait_fire(evutil_socket_t fd, short what, void *arg);
static void wait_fail(struct registry_wait *w, const struct core_error *err);
static void wait_queried(enum pg_error err, PGresult *res, const char *message, void *arg);
static void acquire_answer(struct registry_wait *w, struct sandbox_ref *ref, const struct core_error *err);
static bool wakeable(const struct registry_wait *w, const struct sandbox *sb);
static void deliver_ref(struct registry_wait *w, struct sandbox_ref *ref);
static void acquire_queue(struct registry_wait *w, const char *id);
static void woken(const struct core_error *err, void *arg);
static void load_start(struct registry *reg, struct entry *e);
static void entry_loaded(enum pg_error err, PGresult *res, const char *message, void *arg);
static void on_notified(const char *payload, void *arg);
static void on_reset(void *arg);
static void on_lost(void *arg);
static void touch_flush(evutil_socket_t fd, short what, void *arg);
static void touch_written(enum pg_error err, PGresult *res, const char *message, void *arg);

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
	TAILQ_INIT(&reg->waits);
	snprintf(reg->cluster, sizeof(reg->cluster), "%s", cfg->cluster);
	snprintf(reg->instance, sizeof(reg->instance), "%s", cfg->instance);
	snprintf(reg->idle_ms, sizeof(reg->idle_ms), "%" PRId64, cfg->idle_timeout_ms);
	reg->idle_default_ms = cfg->idle_timeout_ms;
	reg->cache_ms = cfg->cache_ms;
	reg->touch_ev = evtimer_new(base, touch_flush, reg);
	CHECK(reg->touch_ev != NULL);
	if (cfg->conninfo) {
		static const struct pg_listener_ops ops = { on_notified, on_reset, on_lost };
		reg->listener = pg_listener_new(base, cfg->conninfo, REGISTRY_NOTIFY_CHANNEL, &ops, reg);
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
	for (size_t i = 0; i < REGISTRY_BUCKETS; i++) {
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
	struct registry_wait *w;
	while ((w = TAILQ_FIRST(&reg->waits)) != NULL) { /* writes going on after their caller went */
		pg_query_cancel(w->query);
		wait_free(w);
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
	return h % REGISTRY_BUCKETS;
}

static struct entry *entry_find(struct registry *reg, const char *id)
{
	for (struct entry *e = reg->buckets[bucket_of(id)]; e; e = e->next)
		if (strcmp(e->id, id) == 0)
			return e;
	return NULL;
}

struct entry *entry_get(struct registry *reg, const char *id)
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
void entry_invalidate(struct entry *e)
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
void entry_store(struct entry *e, struct sandbox_ref *ref, uint64_t gen, uint64_t epoch)
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

struct sandbox_ref *ref_from_row(struct registry *reg, PGresult *res, int row)
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

bool sandbox_port_private(const struct sandbox *sb, int port)
{
	if (sb->is_private)
		return true;
	for (int i = 0; i < sb->private_ports.n; i++)
		if (sb->private_ports.port[i] == port)
			return true;
	return false;
}

/* ---- pending calls ---- */

struct registry_wait *wait_new(struct registry *reg, enum wait_kind kind, void *arg)
{
	struct registry_wait *w = calloc(1, sizeof(*w));
	CHECK(w != NULL);
	w->reg = reg;
	w->kind = kind;
	w->arg = arg;
	TAILQ_INSERT_TAIL(&reg->waits, w, link);
	return w;
}

void wait_later(struct registry_wait *w)
{
	if (!w->later)
		w->later = evtimer_new(w->reg->base, wait_fire, w);
	CHECK(w->later != NULL);
	event_active(w->later, EV_TIMEOUT, 0);
}

bool wait_failed(const struct registry_wait *w)
{
	return w->err.kind != CORE_OK;
}

void wait_fail_later(struct registry_wait *w, enum core_err kind, const char *code, const char *msg)
{
	core_error_set(&w->err, kind, code, "%s", msg);
	wait_later(w);
}

void wait_free(struct registry_wait *w)
{
	TAILQ_REMOVE(&w->reg->waits, w, link);
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
		wait_fail(w, &w->err);
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
		acquire_answer(w, ref, NULL);
		return;
	}
	sandbox_ref_put(ref);
	acquire_answer(w, NULL, &err);
}

/* w goes, then its caller hears: ref (held for it), or err (not w's own). */
static void acquire_answer(struct registry_wait *w, struct sandbox_ref *ref, const struct core_error *err)
{
	registry_ref_fn cb = w->ref_cb;
	void *arg = w->arg;
	wait_free(w);
	cb(ref, err, arg);
}

/* w failed with err (w's own, or another): its caller hears it, then w goes. */
static void wait_fail(struct registry_wait *w, const struct core_error *err)
{
	if (w->kind == WAIT_ACQUIRE)
		w->ref_cb(NULL, err, w->arg);
	else if (w->kind == WAIT_LIST)
		w->list_cb(err, NULL, 0, 0, w->arg);
	else if (w->moved_cb)
		w->moved_cb(err, w->ref ? &w->ref->sb : NULL, w->arg);
	wait_free(w);
}

void wait_query(struct registry_wait *w, const char *sql, int nparams, const char *const *params,
		wait_result_fn done)
{
	w->queried = done;
	w->query = pg_query_send(w->reg->pg, sql, nparams, params, wait_queried, w);
}

/* A write's or a list's answer: its result to w->queried, or its failure to
 * the caller. */
static void wait_queried(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct registry_wait *w = arg;
	w->query = NULL;
	if (err != PG_OK) {
		struct core_error e;
		pg_core_error(&e, err, message);
		wait_fail(w, &e);
		return;
	}
	w->queried(w, res);
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
		acquire_answer(w, NULL, err);
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
	e->load = pg_query_send(reg->pg, registry_row_sql, 2, params, entry_loaded, e);
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
		if (ref)
			deliver_ref(w, sandbox_ref_hold(ref));
		else
			acquire_answer(w, NULL, &fail);
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
