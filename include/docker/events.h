/* Docker's event stream (GET /events): a line reader that turns the stream's
 * bytes into one decoded event at a time, and a watch that keeps one filtered
 * stream open for good. A stream that breaks is opened again after a back-off
 * with `since` = the newest event's time, so what happened meanwhile is
 * replayed (dockerd keeps its last 256 events of all kinds for that). */
#ifndef SANDBAR_DOCKER_EVENTS_H
#define SANDBAR_DOCKER_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "core/check.h"

struct docker;
struct json_object;

/* Docker sends one JSON object per line; a longer line is a protocol error. */
#define DOCKER_EVENT_LINE_MAX (64u << 10)

/* One event, borrowed from whoever handed it over (valid during the callback,
 * or until the reader's next call). */
struct docker_event {
	const char *type;		/* "container", "network", ...; "" when absent */
	const char *action;		/* "die", "oom", "destroy", ... */
	const char *id;			/* Actor.ID: the container's full id */
	int64_t time_nano;		/* Unix nanoseconds */
	struct json_object *attributes; /* Actor.Attributes (labels, exitCode), NULL when absent */
};
/* An attribute's string value (a label, "exitCode"), NULL when absent. */
const char *docker_event_attr(const struct docker_event *ev, const char *name);

/* ---- the line reader ---- */

struct docker_event_reader {
	struct evbuffer *in;	  /* arrived, not handed out yet: add the stream's bytes here */
	size_t scanned;		  /* leading bytes of `in` known to hold no newline */
	struct json_object *held; /* the event handed out last */
	char err[96];		  /* why the last call returned -1 */
};
void docker_event_reader_init(struct docker_event_reader *r);
void docker_event_reader_clear(struct docker_event_reader *r);
/* Forgets what arrived and was not handed out (a stream that broke). */
void docker_event_reader_reset(struct docker_event_reader *r);
/* 1: *ev is the next event (valid until the next call); 0: no whole line has
 * arrived yet; -1: a protocol error (r->err says which: a line longer than
 * DOCKER_EVENT_LINE_MAX, one that is not a JSON object, or one without
 * Action, Actor.ID or timeNano). Empty lines are skipped. */
MUST_USE int docker_event_next(struct docker_event_reader *r, struct docker_event *ev);

/* ---- the watch: one stream, kept open ---- */

enum docker_events_state {
	DOCKER_EVENTS_IDLE,	  /* made, not started */
	DOCKER_EVENTS_CONNECTING, /* the request is out, no 200 head yet */
	DOCKER_EVENTS_STREAMING,  /* events flow */
	DOCKER_EVENTS_BACKOFF,	  /* the stream broke: waiting to open it again */
	DOCKER_EVENTS_STATE_MAX
};

struct docker_events_opts {
	const char *type;	    /* filter: "container"; NULL: every type */
	const char *label;	    /* filter: "sandbar.cluster=x"; NULL: none */
	const char *const *actions; /* filter: NULL-terminated ("die", "oom"); NULL: every action */
	int64_t since_nano;	    /* the first stream replays from here (Unix ns); 0: from now */
	int backoff_min_ms;	    /* first wait after a break; 0: 100 ms */
	int backoff_max_ms;	    /* the wait doubles up to this; 0: 5 s */
};

struct docker_events_cbs {
	/* One event; the watch may be paused from here (not freed). */
	void (*event)(const struct docker_event *ev, void *arg);
	/* The connection changed state (may be NULL); why: what broke the
	 * stream, on a move to BACKOFF, else NULL. */
	void (*state)(enum docker_events_state st, const char *why, void *arg);
};

struct docker_events;
struct docker_events *docker_events_new(struct docker *d, const struct docker_events_opts *opts,
					const struct docker_events_cbs *cbs, void *arg);
/* Opens the first stream. */
void docker_events_start(struct docker_events *w);
/* No event is handed over until resume (the stream stops being read); resume
 * hands over what is buffered from the loop, never on the caller's stack. */
void docker_events_pause(struct docker_events *w);
void docker_events_resume(struct docker_events *w);
enum docker_events_state docker_events_state(const struct docker_events *w);
/* Backing off: open the next stream now, the back-off started over (Docker
 * is known to be back). */
void docker_events_kick(struct docker_events *w);
/* Not from inside its callbacks. */
void docker_events_free(struct docker_events *w);

#endif
