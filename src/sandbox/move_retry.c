/* A registry move that follows what Docker already did (a create's `error`, a
 * stop's `stopped`, a start's `running`) must not be lost while PostgreSQL is
 * away: it is sent again every MOVE_RETRY_MS, up to MOVE_RETRY_MAX times (then
 * the next start's reconciler settles the row). One mechanism for create.c
 * and power.c. */
#include "core/clock.h"
#include "core/log.h"
#include "internal.h"

bool move_retry_later(struct move_retry *r, struct event_base *base, const struct core_error *err,
		      event_callback_fn resend, void *arg, const char *id, const char *what)
{
	if (!err || err->kind != CORE_UNAVAILABLE || ++r->tries > MOVE_RETRY_MAX)
		return false;
	log_warn("sandbox=%s %s: %s; again in %d ms", id, what, err->message, MOVE_RETRY_MS);
	if (!r->timer)
		r->timer = evtimer_new(base, resend, arg);
	CHECK(r->timer != NULL);
	struct timeval tv = clock_tv(MOVE_RETRY_MS);
	evtimer_add(r->timer, &tv);
	return true;
}

void move_retry_clear(struct move_retry *r)
{
	if (r->timer)
		event_free(r->timer);
	*r = (struct move_retry){ 0 };
}
