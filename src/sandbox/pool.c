/* The warm pool: per template (SANDBAR_WARM_POOL "base=4,python=2"), started
 * sandboxes made ahead in the background, status `warm`, claimed by creates
 * (registry_claim, FOR UPDATE SKIP LOCKED) and made again. The counts are
 * the cluster's, read from PostgreSQL at every pass, so instances sharing a
 * database fill one pool (a short overshoot is trimmed). Member creates are
 * bounded (SANDBAR_WARM_POOL_CONCURRENCY) and wait while ordinary creates
 * run, so the pool never slows a create down; a failing template backs off.
 *
 * One pass at a time: the images (on the timer, every SANDBAR_WARM_POOL_CHECK,
 * or for a rollout), then the counts, then what each template needs: member
 * creates, or removals (a member of an older image during a rollout, one at
 * a time behind its replacement; an excess member; a failed member's
 * container). A rollout starts by itself when a template's image changes. */
#include <event2/buffer.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uuid/uuid.h>

#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "internal.h"
#include "sandbox/template.h"

#define POOL_TARGET_MAX	      256
#define POOL_BACKOFF_FIRST_MS 1000
#define POOL_BACKOFF_MAX_MS   60000
#define POOL_FAILED_BATCH     8 /* failed members' containers removed per pass */

enum pass_state {
	PASS_IDLE,
	PASS_IMAGES, /* each template's image checked (and its derived image made) */
	PASS_COUNT,  /* the cluster's members counted */
	PASS_STATE_MAX
};

struct pool_slot {
	struct pool *pool;
	const struct template *tpl;
	int target;
	char image[256];    /* "": the template's own; else a rollout's */
	char run_image[96]; /* what new members run, "" until known */
	struct image_wait *iwait;
	/* from the last count: the cluster's, but creates of ours are in making */
	int warm, outdated, creating;
	int making, removing; /* jobs of ours in flight */
	/* the rollout */
	enum pool_rollout_phase phase;
	char ro_id[37];
	char ro_image[256];
	char ro_trigger[64];
	char ro_error[400];
	int ro_total, ro_replaced; /* total -1: not counted yet */
	bool ro_wait_image;	   /* asked for: counted once the image was looked at */
	int64_t ro_started_us, ro_completed_us;
	char cancelled_for[96]; /* a cancelled rollout's run_image: not started again by itself */
	/* failures */
	char last_error[400];
	int failures;
	int64_t retry_at_ms; /* monotonic: no member create before */
	int64_t last_fill_us, last_claim_us;
};

/* A member's create (call), a pick of which members go (query), or one
 * member's removal (wait: warm or error -> deleted, a claim may win; then
 * its Docker objects). */
struct pool_job {
	struct pool *pool;
	struct pool_slot *slot; /* NULL: members of a template no longer pooled */
	struct sandbox_call *call;
	struct registry_wait *wait;
	struct pg_query *query;
	char id[37];
	const char *reason;
	bool outdated; /* a removal a rollout counts */
	struct pool_job *next;
};

struct pool {
	struct sandbox_service *svc;
	struct pool_slot *slots;
	size_t n;
	enum pass_state state;
	bool started, draining;
	bool again, again_images; /* kicked during a pass */
	bool pass_images;
	int images_pending;
	struct event *timer;
	struct pg_query *count;
	struct pool_job *jobs;
	char *templates_array; /* "{base,python}": the pooled templates, for SQL */
	struct pool_status_req *status_reqs;
};

/* A status request waiting for its count. */
struct pool_status_req {
	struct pool *pool;
	struct sandbox_call *call;
	struct pg_query *query;
	struct pool_status_req *next;
};

static void pass_set_state(struct pool *pool, enum pass_state next);
static void pass_begin(evutil_socket_t fd, short what, void *arg);
static void pass_image_ready(const char *err, const struct run_image *img, void *arg);
static void pass_count(struct pool *pool);
static void pass_counted(enum pg_error err, PGresult *res, const char *message, void *arg);
static void pass_end(struct pool *pool);
static void slot_act(struct pool_slot *slot);
static bool job_removing(const struct pool *pool, const char *id);
static void job_free(struct pool_job *job);
static void member_made(const struct sandbox_result *res, void *arg);
static void members_pick(struct pool *pool, struct pool_slot *slot, int n, bool outdated_only,
			 const char *reason);
static void members_picked(enum pg_error err, PGresult *res, const char *message, void *arg);
static void member_marked(const struct core_error *err, const struct sandbox *after, void *arg);
static void member_destroyed(const char *err, void *arg);
static void count_apply(struct pool *pool, PGresult *res);
static struct pool_status_req *status_req_new(struct pool *pool, struct sandbox_call *call);

const char *pool_rollout_phase_name(enum pool_rollout_phase p)
{
	static const char *const names[POOL_ROLLOUT_PHASE_MAX] = { "idle", "running", "done", "cancelled" };
	return (unsigned)p < POOL_ROLLOUT_PHASE_MAX ? names[p] : "idle";
}

/* ---- the spec ---- */

/* Calls fn for each "name=count" of spec; -1 with err on bad syntax. */
static int spec_walk(const char *spec, char *err, size_t errcap,
		     int (*fn)(const char *name, int target, void *arg, char *err, size_t errcap), void *arg)
{
	const char *p = spec ? spec : "";
	while (*p) { /* each item; an empty one (",,", a comma at either end) is refused */
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		char item[160];
		if (len == 0 || len >= sizeof(item)) {
			snprintf(err, errcap, "SANDBAR_WARM_POOL: an empty or overlong item");
			return -1;
		}
		memcpy(item, p, len);
		item[len] = '\0';
		char *eq = strchr(item, '=');
		char *stop = NULL;
		long target = eq ? strtol(eq + 1, &stop, 10) : -1;
		if (!eq || eq == item || stop == eq + 1 || *stop || target < 0 || target > POOL_TARGET_MAX) {
			snprintf(err, errcap, "SANDBAR_WARM_POOL: '%s' is not template=count (0 to %d)", item,
				 POOL_TARGET_MAX);
			return -1;
		}
		*eq = '\0';
		if (fn(item, (int)target, arg, err, errcap) != 0)
			return -1;
		if (end && end[1] == '\0') {
			snprintf(err, errcap, "SANDBAR_WARM_POOL: an empty or overlong item");
			return -1;
		}
		p = end ? end + 1 : p + len;
	}
	return 0;
}

static int spec_check_one(const char *name, int target, void *arg, char *err, size_t errcap)
{
	(void)target;
	if (!template_set_find(arg, name)) {
		snprintf(err, errcap, "SANDBAR_WARM_POOL: no template named '%s'", name);
		return -1;
	}
	return 0;
}

int sandbox_pool_check(const char *spec, const struct template_set *templates, char *err, size_t errcap)
{
	return spec_walk(spec, err, errcap, spec_check_one, (void *)templates);
}

static int spec_add_one(const char *name, int target, void *arg, char *err, size_t errcap)
{
	(void)err;
	(void)errcap;
	struct pool *pool = arg;
	const struct template *t = template_set_find(pool->svc->templates, name);
	if (!t || target == 0)
		return 0;
	for (size_t i = 0; i < pool->n; i++) {
		if (pool->slots[i].tpl == t) {
			pool->slots[i].target = target; /* the last one counts */
			return 0;
		}
	}
	struct pool_slot *slots = realloc(pool->slots, (pool->n + 1) * sizeof(*slots));
	CHECK(slots != NULL);
	pool->slots = slots;
	struct pool_slot *slot = &slots[pool->n++];
	memset(slot, 0, sizeof(*slot));
	slot->tpl = t;
	slot->target = target;
	slot->ro_total = -1;
	return 0;
}

/* ---- life ---- */

struct pool *pool_new(struct sandbox_service *svc)
{
	struct pool *pool = calloc(1, sizeof(*pool));
	CHECK(pool != NULL);
	pool->svc = svc;
	char err[256];
	if (spec_walk(svc->cfg->warm_pool, err, sizeof(err), spec_add_one, pool) != 0)
		log_error("%s (checked at start-up: not reached)", err);
	struct evbuffer *a = evbuffer_new();
	CHECK(a != NULL);
	evbuffer_add(a, "{", 1);
	for (size_t i = 0; i < pool->n; i++) {
		pool->slots[i].pool = pool;
		evbuffer_add_printf(a, "%s\"%s\"", i ? "," : "", pool->slots[i].tpl->name);
	}
	evbuffer_add(a, "}", 2);
	pool->templates_array = strdup((const char *)evbuffer_pullup(a, -1));
	CHECK(pool->templates_array != NULL);
	evbuffer_free(a);
	pool->timer = evtimer_new(svc->base, pass_begin, pool);
	CHECK(pool->timer != NULL);
	return pool;
}

void pool_start(struct pool *pool)
{
	pool->started = true;
	for (size_t i = 0; i < pool->n; i++)
		log_info("warm pool: %d x %s", pool->slots[i].target, pool->slots[i].tpl->name);
	/* members of a template no longer pooled go too: one pass even without slots */
	pool->pass_images = true;
	event_active(pool->timer, EV_TIMEOUT, 0);
}

void pool_free(struct pool *pool)
{
	if (!pool)
		return;
	/* shutdown: the loop has stopped, nothing calls back */
	while (pool->jobs) {
		struct pool_job *job = pool->jobs;
		pool->jobs = job->next;
		sandbox_call_cancel(job->call);
		registry_wait_cancel(job->wait);
		if (job->query)
			pg_query_cancel(job->query);
		free(job);
	}
	while (pool->status_reqs) {
		struct pool_status_req *r = pool->status_reqs;
		pool->status_reqs = r->next;
		if (r->query)
			pg_query_cancel(r->query);
		sandbox_call_cancel(r->call);
		free(r);
	}
	for (size_t i = 0; i < pool->n; i++)
		if (pool->slots[i].iwait)
			image_wait_cancel(pool->slots[i].iwait);
	if (pool->count)
		pg_query_cancel(pool->count);
	event_free(pool->timer);
	free(pool->templates_array);
	free(pool->slots);
	free(pool);
}

static struct pool_slot *slot_of(const struct pool *pool, const struct template *t)
{
	for (size_t i = 0; pool && i < pool->n; i++)
		if (pool->slots[i].tpl == t)
			return &pool->slots[i];
	return NULL;
}

bool pool_serves(const struct pool *pool, const struct template *t)
{
	return slot_of(pool, t) != NULL;
}

const char *pool_run_image(const struct pool *pool, const struct template *t)
{
	struct pool_slot *slot = slot_of(pool, t);
	return slot && slot->run_image[0] ? slot->run_image : NULL;
}

void pool_note_claim(struct pool *pool, const struct template *t, bool got)
{
	struct pool_slot *slot = slot_of(pool, t);
	if (!slot)
		return;
	if (got)
		slot->last_claim_us = clock_real_us();
	pool_kick(pool);
}

/* ---- the pass ---- */

static void pass_set_state(struct pool *pool, enum pass_state next)
{
	static const unsigned legal[PASS_STATE_MAX] = {
		[PASS_IDLE] = 1u << PASS_IMAGES | 1u << PASS_COUNT,
		[PASS_IMAGES] = 1u << PASS_COUNT,
		[PASS_COUNT] = 1u << PASS_IDLE,
	};
	CHECK(next < PASS_STATE_MAX && (legal[pool->state] & (1u << next)));
	pool->state = next;
}

void pool_kick(struct pool *pool)
{
	if (!pool || !pool->started)
		return;
	if (pool->state != PASS_IDLE) {
		pool->again = true;
		return;
	}
	event_active(pool->timer, EV_TIMEOUT, 0);
}

/* A kick, or the timer (which also looks at the images again). */
static void pass_begin(evutil_socket_t fd, short what, void *arg)
{
	struct pool *pool = arg;
	(void)fd;
	(void)what;
	if (pool->state != PASS_IDLE) {
		pool->again = true;
		return;
	}
	evtimer_del(pool->timer);
	/* the timer's own firing (not a kick) is the periodic look at the images */
	bool images = pool->pass_images || pool->again_images;
	pool->pass_images = pool->again_images = false;
	if (!images || pool->n == 0) {
		pass_set_state(pool, PASS_COUNT);
		pass_count(pool);
		return;
	}
	pass_set_state(pool, PASS_IMAGES);
	pool->images_pending = 1;
	for (size_t i = 0; i < pool->n; i++) {
		struct pool_slot *slot = &pool->slots[i];
		if (slot->iwait)
			continue;
		pool->images_pending++;
		slot->iwait = image_ensure(pool->svc, slot->tpl, slot->image[0] ? slot->image : NULL,
					   pass_image_ready, slot);
	}
	/* the one extra count: the loop above may not finish the images yet */
	if (--pool->images_pending == 0) {
		pass_set_state(pool, PASS_COUNT);
		pass_count(pool);
	}
}

static void pass_image_ready(const char *err, const struct run_image *img, void *arg)
{
	struct pool_slot *slot = arg;
	struct pool *pool = slot->pool;
	slot->iwait = NULL;
	slot->ro_wait_image = false;
	const char *image = slot->image[0] ? slot->image : template_image(slot->tpl);
	if (err) {
		snprintf(slot->last_error, sizeof(slot->last_error), "image %.60s: %.300s", image, err);
		log_warn("warm pool %s: %s", slot->tpl->name, slot->last_error);
		if (slot->phase == POOL_ROLLOUT_RUNNING) {
			slot->phase = POOL_ROLLOUT_CANCELLED;
			slot->ro_completed_us = clock_real_us();
			snprintf(slot->ro_error, sizeof(slot->ro_error), "%s", slot->last_error);
		}
	} else if (strcmp(slot->run_image, img->tag) != 0) {
		if (slot->run_image[0])
			log_info("warm pool %s: image %s is now %s", slot->tpl->name, image, img->tag);
		snprintf(slot->run_image, sizeof(slot->run_image), "%s", img->tag);
	}
	if (!err && strcmp(slot->cancelled_for, "*") == 0)
		/* cancelled before its image was known: not started again for it */
		snprintf(slot->cancelled_for, sizeof(slot->cancelled_for), "%s", slot->run_image);
	if (--pool->images_pending == 0) {
		pass_set_state(pool, PASS_COUNT);
		pass_count(pool);
	}
}

/* Rows per (template, status, image); a member of ours being made counts in making. */
static struct pg_query *count_send(struct pool *pool, pg_result_fn cb, void *arg)
{
	static const char sql[] = "SELECT template, status, coalesce(run_image, ''), count(*), "
				  "  (array_agg(id::text) FILTER (WHERE status = 'error'))[1:8] "
				  "FROM sandboxes WHERE cluster = $1 AND in_pool "
				  "  AND status IN ('creating', 'warm', 'error') "
				  "  AND NOT (status = 'creating' AND owner_instance = $2) GROUP BY 1, 2, 3";
	const char *params[] = { pool->svc->cluster, pool->svc->instance };
	return pg_query_send(pool->svc->pg, sql, 2, params, cb, arg);
}

static void pass_count(struct pool *pool)
{
	pool->count = count_send(pool, pass_counted, pool);
}

static void pass_counted(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct pool *pool = arg;
	pool->count = NULL;
	if (err != PG_OK) {
		log_warn("warm pool: counting members: %s", message ? message : "database unavailable");
		pass_end(pool);
		return;
	}
	count_apply(pool, res);
	/* failed members' containers, and members of templates no longer pooled, go */
	bool strays = false;
	for (int i = 0; i < PQntuples(res); i++) {
		const char *tname = PQgetvalue(res, i, 0);
		const char *status = PQgetvalue(res, i, 1);
		bool pooled = slot_of(pool, template_set_find(pool->svc->templates, tname)) != NULL;
		if (strcmp(status, "error") == 0 && !PQgetisnull(res, i, 4)) {
			/* "{id,id}" */
			char ids[8 * 40 + 4];
			snprintf(ids, sizeof(ids), "%s", PQgetvalue(res, i, 4));
			for (char *tok = strtok(ids, "{},"); tok; tok = strtok(NULL, "{},")) {
				if (!sandbox_id_valid(tok) || job_removing(pool, tok))
					continue;
				struct pool_job *job = calloc(1, sizeof(*job));
				CHECK(job != NULL);
				job->pool = pool;
				job->reason = "a failed pool member";
				snprintf(job->id, sizeof(job->id), "%s", tok);
				job->next = pool->jobs;
				pool->jobs = job;
				/* error -> deleted, then its Docker objects */
				struct sandbox_transition t = {
					.id = job->id,
					.from = SANDBOX_ERROR,
					.to = SANDBOX_DELETED,
					.reason = job->reason,
					.actor = "pool",
				};
				job->wait = registry_transition(pool->svc->reg, &t, member_marked, job);
			}
		} else if (!pooled && strcmp(status, "warm") == 0) {
			strays = true;
		}
	}
	if (strays && !pool->draining)
		members_pick(pool, NULL, (int)pool->svc->cfg->warm_pool_concurrency, false,
			     "its template is no longer pooled");
	for (size_t i = 0; i < pool->n; i++)
		slot_act(&pool->slots[i]);
	pass_end(pool);
}

static void count_apply(struct pool *pool, PGresult *res)
{
	for (size_t i = 0; i < pool->n; i++)
		pool->slots[i].warm = pool->slots[i].outdated = pool->slots[i].creating = 0;
	for (int i = 0; i < PQntuples(res); i++) {
		struct pool_slot *slot =
			slot_of(pool, template_set_find(pool->svc->templates, PQgetvalue(res, i, 0)));
		if (!slot)
			continue;
		const char *status = PQgetvalue(res, i, 1);
		int n = atoi(PQgetvalue(res, i, 3));
		if (strcmp(status, "creating") == 0)
			slot->creating += n;
		else if (strcmp(status, "warm") == 0 && slot->run_image[0] &&
			 strcmp(PQgetvalue(res, i, 2), slot->run_image) != 0)
			slot->outdated += n;
		else if (strcmp(status, "warm") == 0)
			slot->warm += n;
	}
}

static void pass_end(struct pool *pool)
{
	pass_set_state(pool, PASS_IDLE);
	if (pool->draining) {
		service_drain_check(pool->svc);
		return;
	}
	if (pool->again) {
		pool->again = false;
		event_active(pool->timer, EV_TIMEOUT, 0);
		return;
	}
	/* the next look: the check interval, or a backed-off template's retry */
	int64_t delay = pool->svc->cfg->warm_pool_check_ms, now = clock_mono_ms();
	for (size_t i = 0; i < pool->n; i++) {
		struct pool_slot *slot = &pool->slots[i];
		if (slot->retry_at_ms > now && slot->retry_at_ms - now < delay)
			delay = slot->retry_at_ms - now;
	}
	pool->pass_images = delay == pool->svc->cfg->warm_pool_check_ms;
	struct timeval tv = { .tv_sec = (time_t)(delay / 1000),
			      .tv_usec = (suseconds_t)(delay % 1000) * 1000 };
	evtimer_add(pool->timer, &tv);
}

/* ---- what a template needs ---- */

static void rollout_begin(struct pool_slot *slot, const char *trigger)
{
	uuid_t u;
	uuid_generate_random(u);
	uuid_unparse_lower(u, slot->ro_id);
	slot->phase = POOL_ROLLOUT_RUNNING;
	snprintf(slot->ro_image, sizeof(slot->ro_image), "%s",
		 slot->image[0] ? slot->image : template_image(slot->tpl));
	snprintf(slot->ro_trigger, sizeof(slot->ro_trigger), "%s", trigger);
	slot->ro_error[0] = '\0';
	slot->ro_total = -1;
	slot->ro_replaced = 0;
	slot->ro_started_us = clock_real_us();
	slot->ro_completed_us = 0;
	slot->cancelled_for[0] = '\0';
	slot->ro_wait_image = !slot->run_image[0] || strcmp(trigger, "image changed") != 0;
	log_info("warm pool %s: rollout %s to %s (%s)", slot->tpl->name, slot->ro_id, slot->ro_image,
		 trigger);
}

static void make_members(struct pool_slot *slot, int n)
{
	struct pool *pool = slot->pool;
	int busy = 0;
	for (size_t i = 0; i < pool->n; i++)
		busy += pool->slots[i].making;
	int room = (int)pool->svc->cfg->warm_pool_concurrency - busy;
	for (int i = 0; i < n && i < room; i++) {
		struct pool_job *job = calloc(1, sizeof(*job));
		CHECK(job != NULL);
		job->pool = pool;
		job->slot = slot;
		job->next = pool->jobs;
		pool->jobs = job;
		slot->making++;
		slot->last_fill_us = clock_real_us();
		job->call = pool_member_create(pool->svc, slot->tpl->name,
					       slot->image[0] ? slot->image : NULL, member_made, job);
	}
}

/* Members being made: the `creating` rows counted at the last pass hold this
 * instance's jobs whose row was written by then, so the two overlap; the
 * larger is the count (another instance's creates show as rows). */
static int slot_inflight(const struct pool_slot *slot)
{
	return slot->creating > slot->making ? slot->creating : slot->making;
}

static void slot_act(struct pool_slot *slot)
{
	struct pool *pool = slot->pool;
	if (pool->draining || !slot->run_image[0])
		return; /* an image not known (or failing) yet: nothing to make */
	int warm_all = slot->warm + slot->outdated;
	int inflight = slot_inflight(slot);
	if (slot->phase != POOL_ROLLOUT_RUNNING && slot->outdated > 0 &&
	    strcmp(slot->cancelled_for, "*") != 0 && strcmp(slot->cancelled_for, slot->run_image) != 0)
		rollout_begin(slot, "image changed");
	if (slot->phase == POOL_ROLLOUT_RUNNING && slot->ro_wait_image)
		return;
	if (slot->phase == POOL_ROLLOUT_RUNNING) {
		if (slot->ro_total < 0)
			slot->ro_total = slot->outdated;
		if (slot->outdated == 0 && slot->removing == 0) {
			slot->phase = POOL_ROLLOUT_DONE;
			slot->ro_replaced = slot->ro_total;
			slot->ro_completed_us = clock_real_us();
			log_info("warm pool %s: rollout %s done (%d replaced)", slot->tpl->name, slot->ro_id,
				 slot->ro_total);
		} else {
			/* one at a time: a member of the new image, then an old one goes,
			 * and only then the next one is made (never two extra at once) */
			if (slot->warm + inflight < slot->target && inflight == 0 &&
			    warm_all <= slot->target && slot->removing == 0 && pool->svc->creates == 0 &&
			    clock_mono_ms() >= slot->retry_at_ms)
				make_members(slot, 1);
			if ((warm_all > slot->target || slot->warm >= slot->target) && slot->removing == 0)
				members_pick(pool, slot, 1, true, "replaced by a rollout");
			return;
		}
	}
	int deficit = slot->target - warm_all - inflight;
	if (deficit > 0 && pool->svc->creates == 0 && clock_mono_ms() >= slot->retry_at_ms)
		make_members(slot, deficit);
	else if (warm_all > slot->target && inflight == 0 && slot->removing == 0)
		members_pick(pool, slot, warm_all - slot->target, false, "more than the pool's target");
}

static void member_made(const struct sandbox_result *res, void *arg)
{
	struct pool_job *job = arg;
	struct pool_slot *slot = job->slot;
	job->call = NULL;
	slot->making--;
	if (res->err.kind != CORE_OK) {
		slot->failures++;
		int64_t backoff = POOL_BACKOFF_FIRST_MS << (slot->failures < 7 ? slot->failures - 1 : 6);
		if (backoff > POOL_BACKOFF_MAX_MS)
			backoff = POOL_BACKOFF_MAX_MS;
		slot->retry_at_ms = clock_mono_ms() + backoff;
		snprintf(slot->last_error, sizeof(slot->last_error), "%.390s", res->err.message);
		log_warn("warm pool %s: a member failed (next try in %" PRId64 " ms): %s", slot->tpl->name,
			 backoff, res->err.message);
	} else {
		slot->failures = 0;
		slot->retry_at_ms = 0;
		slot->last_error[0] = '\0';
	}
	job_free(job);
	pool_kick(slot->pool);
	service_drain_check(slot->pool->svc);
}

/* n members of slot's template (slot NULL: of templates no longer pooled) go:
 * the outdated first, then the oldest. */
static void members_pick(struct pool *pool, struct pool_slot *slot, int n, bool outdated_only,
			 const char *reason)
{
	static const char sql[] =
		"SELECT id FROM sandboxes WHERE cluster = $1 AND in_pool AND status = 'warm' "
		"  AND CASE WHEN $2::text IS NULL THEN template <> ALL($5::text[]) ELSE template = $2 END "
		"  AND (NOT $4::bool OR run_image IS DISTINCT FROM $3) "
		"ORDER BY run_image IS NOT DISTINCT FROM $3, created_at LIMIT $6";
	struct pool_job *job = calloc(1, sizeof(*job));
	CHECK(job != NULL);
	job->pool = pool;
	job->slot = slot;
	job->reason = reason;
	job->outdated = outdated_only;
	job->next = pool->jobs;
	pool->jobs = job;
	if (slot)
		slot->removing++;
	char limit[16];
	snprintf(limit, sizeof(limit), "%d", n);
	const char *params[] = {
		pool->svc->cluster,	   slot ? slot->tpl->name : NULL, slot ? slot->run_image : NULL,
		outdated_only ? "t" : "f", pool->templates_array,	  limit,
	};
	job->query = pg_query_send(pool->svc->pg, sql, 6, params, members_picked, job);
}

static void members_picked(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct pool_job *pick = arg;
	struct pool *pool = pick->pool;
	pick->query = NULL;
	if (err != PG_OK)
		log_warn("warm pool: picking members to remove: %s",
			 message ? message : "database unavailable");
	for (int i = 0; err == PG_OK && i < PQntuples(res); i++) {
		struct pool_job *job = calloc(1, sizeof(*job));
		CHECK(job != NULL);
		job->pool = pool;
		job->slot = pick->slot;
		job->reason = pick->reason;
		job->outdated = pick->outdated;
		snprintf(job->id, sizeof(job->id), "%s", PQgetvalue(res, i, 0));
		job->next = pool->jobs;
		pool->jobs = job;
		if (job->slot)
			job->slot->removing++;
		/* a compare-and-set on warm: a create that claimed it meanwhile keeps it */
		struct sandbox_transition t = {
			.id = job->id,
			.from = SANDBOX_WARM,
			.to = SANDBOX_DELETED,
			.reason = job->reason,
			.actor = "pool",
		};
		job->wait = registry_transition(pool->svc->reg, &t, member_marked, job);
	}
	if (pick->slot)
		pick->slot->removing--;
	job_free(pick);
	if (err != PG_OK)
		service_drain_check(pool->svc);
}

static void member_marked(const struct core_error *err, const struct sandbox *after, void *arg)
{
	struct pool_job *job = arg;
	(void)after;
	job->wait = NULL;
	if (err) {
		/* claimed (or gone) meanwhile: nothing to remove */
		log_debug("warm pool: sandbox=%s stays: %s", job->id, err->message);
		member_destroyed(NULL, job);
		return;
	}
	log_info("warm pool: sandbox=%s removed: %s", job->id, job->reason);
	if (job->slot && job->outdated && job->slot->phase == POOL_ROLLOUT_RUNNING)
		job->slot->ro_replaced++;
	sandbox_destroy(job->pool->svc, job->id, member_destroyed, job);
}

static void member_destroyed(const char *err, void *arg)
{
	struct pool_job *job = arg;
	struct pool *pool = job->pool;
	if (err)
		log_warn("warm pool: removing sandbox=%s: %s", job->id, err);
	if (job->slot)
		job->slot->removing--;
	job_free(job);
	pool_kick(pool);
	service_drain_check(pool->svc);
}

/* A removal of member id is under way already (the count lists it until it is deleted). */
static bool job_removing(const struct pool *pool, const char *id)
{
	for (const struct pool_job *job = pool->jobs; job; job = job->next)
		if (strcmp(job->id, id) == 0)
			return true;
	return false;
}

static void job_free(struct pool_job *job)
{
	struct pool_job **pp = &job->pool->jobs;
	while (*pp != job)
		pp = &(*pp)->next;
	*pp = job->next;
	free(job);
}

/* ---- status and rollouts ---- */

static void status_fill(struct pool_slot *slot, struct pool_template_status *st)
{
	memset(st, 0, sizeof(*st));
	st->template_name = slot->tpl->name;
	st->target = slot->target;
	st->warm = slot->warm + slot->outdated;
	st->outdated = slot->outdated;
	st->creating = slot_inflight(slot);
	st->image = slot->image[0] ? slot->image : template_image(slot->tpl);
	st->run_image = slot->run_image[0] ? slot->run_image : NULL;
	st->last_error = slot->last_error[0] ? slot->last_error : NULL;
	st->last_fill_at_us = slot->last_fill_us;
	st->last_claim_at_us = slot->last_claim_us;
	struct pool_rollout *ro = &st->rollout;
	snprintf(ro->id, sizeof(ro->id), "%s", slot->ro_id);
	ro->phase = slot->phase;
	ro->image = slot->ro_image[0] ? slot->ro_image : NULL;
	ro->trigger = slot->ro_trigger[0] ? slot->ro_trigger : NULL;
	ro->total = slot->ro_total < 0 ? 0 : slot->ro_total;
	ro->replaced = slot->ro_replaced;
	ro->started_at_us = slot->ro_started_us;
	ro->completed_at_us = slot->ro_completed_us;
	ro->error = slot->ro_error[0] ? slot->ro_error : NULL;
}

static void status_counted(enum pg_error err, PGresult *res, const char *message, void *arg)
{
	struct pool_status_req *r = arg;
	struct pool *pool = r->pool;
	r->query = NULL;
	struct pool_status_req **pp = &pool->status_reqs;
	while (*pp != r)
		pp = &(*pp)->next;
	*pp = r->next;
	if (err != PG_OK) {
		struct core_error e;
		pg_core_error(&e, err, message);
		if (r->call)
			call_fail(r->call, &e);
		free(r);
		return;
	}
	count_apply(pool, res);
	if (!r->call) { /* cancelled meanwhile: the counts are kept, nobody to answer */
		free(r);
		return;
	}
	struct pool_template_status *list = calloc(pool->n + 1, sizeof(*list));
	CHECK(list != NULL);
	for (size_t i = 0; i < pool->n; i++)
		status_fill(&pool->slots[i], &list[i]);
	struct pool_status st = { .templates = list, .n = pool->n };
	struct sandbox_result res_ = { .pool = &st };
	call_finish(r->call, &res_);
	free(list);
	free(r);
}

static struct pool_status_req *status_req_new(struct pool *pool, struct sandbox_call *call)
{
	struct pool_status_req *r = calloc(1, sizeof(*r));
	CHECK(r != NULL);
	r->pool = pool;
	r->call = call;
	call->owner = &r->call; /* a cancel forgets the call, the count still lands */
	r->next = pool->status_reqs;
	pool->status_reqs = r;
	r->query = count_send(pool, status_counted, r);
	return r;
}

struct sandbox_call *sandbox_pool_status(struct sandbox_service *svc, sandbox_result_fn cb, void *arg)
{
	struct sandbox_call *call = call_new(svc, cb, arg);
	status_req_new(svc->pool, call);
	return call;
}

static struct pool_slot *slot_named(struct pool *pool, const char *name, struct sandbox_call *call)
{
	const struct template *t = name ? template_set_find(pool->svc->templates, name) : NULL;
	struct pool_slot *slot = slot_of(pool, t);
	if (!slot)
		call_fail_later(call, CORE_NOT_FOUND, "not_pooled", "template '%s' has no warm pool",
				name ? name : "");
	return slot;
}

struct sandbox_call *sandbox_pool_rollout(struct sandbox_service *svc, const char *template_name,
					  const char *image, const char *actor, sandbox_result_fn cb,
					  void *arg)
{
	struct sandbox_call *call = call_new(svc, cb, arg);
	struct pool_slot *slot = slot_named(svc->pool, template_name, call);
	if (!slot)
		return call;
	if (slot->phase == POOL_ROLLOUT_RUNNING) {
		call_fail_later(call, CORE_CONFLICT, "rollout_running", "rollout %s of '%s' is running",
				slot->ro_id, slot->tpl->name);
		return call;
	}
	if (image && strlen(image) >= sizeof(slot->image)) {
		call_fail_later(call, CORE_INVALID, "invalid_image", "image must be under %zu bytes",
				sizeof(slot->image));
		return call;
	}
	const char *own = template_image(slot->tpl);
	snprintf(slot->image, sizeof(slot->image), "%s", image && strcmp(image, own) != 0 ? image : "");
	char trigger[64];
	snprintf(trigger, sizeof(trigger), "asked by %s", actor ? actor : "?");
	rollout_begin(slot, trigger);
	/* the image is looked at now; the status answers once counted */
	svc->pool->again_images = true;
	pool_kick(svc->pool);
	status_req_new(svc->pool, call);
	return call;
}

struct sandbox_call *sandbox_pool_cancel(struct sandbox_service *svc, const char *template_name,
					 sandbox_result_fn cb, void *arg)
{
	struct sandbox_call *call = call_new(svc, cb, arg);
	struct pool *pool = svc->pool;
	struct pool_slot *only = NULL;
	if (template_name && !(only = slot_named(pool, template_name, call)))
		return call;
	int cancelled = 0;
	for (size_t i = 0; i < pool->n; i++) {
		struct pool_slot *slot = &pool->slots[i];
		if ((only && slot != only) || slot->phase != POOL_ROLLOUT_RUNNING)
			continue;
		slot->phase = POOL_ROLLOUT_CANCELLED;
		slot->ro_completed_us = clock_real_us();
		snprintf(slot->cancelled_for, sizeof(slot->cancelled_for), "%s",
			 slot->ro_wait_image ? "*" : slot->run_image);
		log_info("warm pool %s: rollout %s cancelled (%d of %d replaced)", slot->tpl->name,
			 slot->ro_id, slot->ro_replaced, slot->ro_total < 0 ? 0 : slot->ro_total);
		cancelled++;
	}
	if (!cancelled) {
		call_fail_later(call, CORE_CONFLICT, "no_rollout", "no rollout is running");
		return call;
	}
	pool_kick(pool);
	status_req_new(pool, call);
	return call;
}

/* No pass and no job of the pool's going (shutdown waits for it). */
bool pool_idle(const struct pool *pool)
{
	return !pool || (!pool->jobs && pool->state == PASS_IDLE);
}

void pool_drain(struct pool *pool)
{
	if (!pool)
		return;
	pool->draining = true;
	evtimer_del(pool->timer);
}
