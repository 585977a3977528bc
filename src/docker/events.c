/* Docker's event stream: the line reader (one JSON object per line, bounded)
 * and the watch that keeps one GET /events open, resuming with `since` after
 * a break so that nothing in between is missed. */
#include "core/clock.h"
#include "docker/events.h"
#include "client_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "core/log.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define ERRBODY_MAX    1024 /* of a refusal's body, for the log */

struct docker_events {
	struct docker *d;
	enum docker_events_state state;
	struct docker_events_cbs cbs;
	void *arg;
	char *path; /* /events?filters=... (since is added per stream) */
	int64_t since_nano;
	int backoff_min_ms, backoff_max_ms;
	int delay_ms;	      /* the next back-off */
	int64_t streaming_ms; /* monotonic, when the stream began */
	struct docker_call *call;
	int status;		  /* of the current response */
	struct evbuffer *errbody; /* a refusal's body */
	struct docker_event_reader reader;
	struct event *timer;   /* back-off */
	struct event *deliver; /* after resume: what is buffered, from the loop */
	bool paused;
	bool in_cb;
	/* the newest event handed over: a new stream replays from its time and
	 * skips it (Docker's since is inclusive) */
	int64_t last_nano;
	char last_id[80];
	char last_action[64];
};

static void events_set_state(struct docker_events *w, enum docker_events_state next, const char *why);
static void events_connect(evutil_socket_t fd, short what, void *arg);
static void events_break(struct docker_events *w, const char *why);
static void events_pump(struct docker_events *w);
static void events_deliver(evutil_socket_t fd, short what, void *arg);
static int stream_head(struct docker_call *call, int status, void *arg);
static void stream_data(struct docker_call *call, struct evbuffer *body, void *arg);
static void stream_done(struct docker_call *call, const char *err, void *arg);

/* ---- the line reader ---- */

const char *docker_event_attr(const struct docker_event *ev, const char *name)
{
	struct json_object *v;
	if (!ev->attributes || !json_object_object_get_ex(ev->attributes, name, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

void docker_event_reader_init(struct docker_event_reader *r)
{
	memset(r, 0, sizeof(*r));
	r->in = evbuffer_new();
	CHECK(r->in != NULL);
}

void docker_event_reader_clear(struct docker_event_reader *r)
{
	if (r->in)
		evbuffer_free(r->in);
	json_object_put(r->held);
	memset(r, 0, sizeof(*r));
}

void docker_event_reader_reset(struct docker_event_reader *r)
{
	evbuffer_drain(r->in, evbuffer_get_length(r->in));
	r->scanned = 0;
	json_object_put(r->held);
	r->held = NULL;
}

static int reader_fail(struct docker_event_reader *r, const char *why)
{
	snprintf(r->err, sizeof(r->err), "%s", why);
	return -1;
}

static const char *string_at(struct json_object *obj, const char *key)
{
	struct json_object *v;
	if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* One line (without its newline) into ev; the object is held by r. */
static int reader_decode(struct docker_event_reader *r, const char *line, size_t len, struct docker_event *ev)
{
	struct json_tokener *tok = json_tokener_new();
	CHECK(tok != NULL);
	struct json_object *obj = json_tokener_parse_ex(tok, line, (int)len);
	size_t end = obj ? json_tokener_get_parse_end(tok) : 0;
	json_tokener_free(tok); /* it ate the whitespace after the object */
	if (!obj || end != len || !json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		return reader_fail(r, "an event line that is not one JSON object");
	}
	r->held = obj;
	struct json_object *actor = NULL, *attrs = NULL, *t;
	json_object_object_get_ex(obj, "Actor", &actor);
	if (actor && json_object_is_type(actor, json_type_object) &&
	    json_object_object_get_ex(actor, "Attributes", &attrs) &&
	    !json_object_is_type(attrs, json_type_object))
		attrs = NULL;
	const char *type = string_at(obj, "Type");
	*ev = (struct docker_event){
		.type = type ? type : "",
		.action = string_at(obj, "Action"),
		.id = actor && json_object_is_type(actor, json_type_object) ? string_at(actor, "ID") : NULL,
		.attributes = attrs,
	};
	if (json_object_object_get_ex(obj, "timeNano", &t) && json_object_is_type(t, json_type_int))
		ev->time_nano = json_object_get_int64(t);
	if (!ev->action || !ev->id || ev->time_nano <= 0)
		return reader_fail(r, "an event without Action, Actor.ID or timeNano");
	return 1;
}

int docker_event_next(struct docker_event_reader *r, struct docker_event *ev)
{
	json_object_put(r->held);
	r->held = NULL;
	for (;;) {
		size_t len = evbuffer_get_length(r->in);
		if (r->scanned >= len)
			return 0;
		struct evbuffer_ptr from, nl;
		CHECK(evbuffer_ptr_set(r->in, &from, r->scanned, EVBUFFER_PTR_SET) == 0);
		nl = evbuffer_search(r->in, "\n", 1, &from);
		if (nl.pos < 0) {
			r->scanned = len;
			if (len > DOCKER_EVENT_LINE_MAX)
				return reader_fail(r, "an event line longer than 64 KiB");
			return 0;
		}
		size_t n = (size_t)nl.pos;
		r->scanned = 0;
		if (n > DOCKER_EVENT_LINE_MAX)
			return reader_fail(r, "an event line longer than 64 KiB");
		const char *line = n ? (const char *)evbuffer_pullup(r->in, (ev_ssize_t)n) : "";
		if (n == 0 || (n == 1 && line[0] == '\r')) {
			evbuffer_drain(r->in, n + 1);
			continue;
		}
		int rc = reader_decode(r, line, n, ev);
		evbuffer_drain(r->in, n + 1);
		return rc;
	}
}

/* ---- the watch ---- */

static const char *const state_names[DOCKER_EVENTS_STATE_MAX] = {
	"idle",
	"connecting",
	"streaming",
	"backoff",
};

static void events_set_state(struct docker_events *w, enum docker_events_state next, const char *why)
{
	static const unsigned legal[DOCKER_EVENTS_STATE_MAX] = {
		[DOCKER_EVENTS_IDLE] = 1u << DOCKER_EVENTS_CONNECTING,
		[DOCKER_EVENTS_CONNECTING] = 1u << DOCKER_EVENTS_STREAMING | 1u << DOCKER_EVENTS_BACKOFF,
		[DOCKER_EVENTS_STREAMING] = 1u << DOCKER_EVENTS_BACKOFF,
		[DOCKER_EVENTS_BACKOFF] = 1u << DOCKER_EVENTS_CONNECTING,
	};
	CHECK(next < DOCKER_EVENTS_STATE_MAX && (legal[w->state] & (1u << next)));
	log_debug("docker events: %s -> %s", state_names[w->state], state_names[next]);
	w->state = next;
	if (w->cbs.state) {
		w->in_cb = true;
		w->cbs.state(next, why, w->arg);
		w->in_cb = false;
	}
}

/* {"type":[..],"label":[..],"event":[..]} */
static char *filter_path(const struct docker_events_opts *o)
{
	struct evbuffer *p = evbuffer_new();
	CHECK(p != NULL);
	struct json_object *f = json_object_new_object();
	if (o->type) {
		struct json_object *a = json_object_new_array();
		json_object_array_add(a, json_object_new_string(o->type));
		json_object_object_add(f, "type", a);
	}
	if (o->label) {
		struct json_object *a = json_object_new_array();
		json_object_array_add(a, json_object_new_string(o->label));
		json_object_object_add(f, "label", a);
	}
	if (o->actions) {
		struct json_object *a = json_object_new_array();
		for (size_t i = 0; o->actions[i]; i++)
			json_object_array_add(a, json_object_new_string(o->actions[i]));
		json_object_object_add(f, "event", a);
	}
	evbuffer_add_printf(p, "/events?filters=");
	docker_url_encode(p, json_object_to_json_string_ext(f, JSON_C_TO_STRING_PLAIN));
	json_object_put(f);
	evbuffer_add(p, "", 1);
	char *s = strdup((const char *)evbuffer_pullup(p, -1));
	CHECK(s != NULL);
	evbuffer_free(p);
	return s;
}

struct docker_events *docker_events_new(struct docker *d, const struct docker_events_opts *opts,
					const struct docker_events_cbs *cbs, void *arg)
{
	struct docker_events *w = calloc(1, sizeof(*w));
	CHECK(w != NULL);
	w->d = d;
	w->cbs = *cbs;
	w->arg = arg;
	w->path = filter_path(opts);
	w->since_nano = opts->since_nano;
	w->backoff_min_ms = opts->backoff_min_ms > 0 ? opts->backoff_min_ms : BACKOFF_MIN_MS;
	w->backoff_max_ms = opts->backoff_max_ms > 0 ? opts->backoff_max_ms : BACKOFF_MAX_MS;
	if (w->backoff_max_ms < w->backoff_min_ms)
		w->backoff_max_ms = w->backoff_min_ms;
	w->delay_ms = w->backoff_min_ms;
	w->errbody = evbuffer_new();
	w->timer = evtimer_new(docker_base(d), events_connect, w);
	w->deliver = event_new(docker_base(d), -1, 0, events_deliver, w);
	CHECK(w->errbody != NULL && w->timer != NULL && w->deliver != NULL);
	docker_event_reader_init(&w->reader);
	return w;
}

void docker_events_free(struct docker_events *w)
{
	if (!w)
		return;
	CHECK(!w->in_cb);
	if (w->call)
		docker_call_cancel(w->call);
	event_free(w->timer);
	event_free(w->deliver);
	free(w->path);
	evbuffer_free(w->errbody);
	docker_event_reader_clear(&w->reader);
	free(w);
}

void docker_events_start(struct docker_events *w)
{
	events_connect(-1, 0, w);
}

enum docker_events_state docker_events_state(const struct docker_events *w)
{
	return w->state;
}

void docker_events_pause(struct docker_events *w)
{
	w->paused = true;
	if (w->call)
		docker_call_pause(w->call);
}

void docker_events_kick(struct docker_events *w)
{
	if (w->state != DOCKER_EVENTS_BACKOFF)
		return;
	w->delay_ms = w->backoff_min_ms;
	evtimer_del(w->timer);
	event_active(w->timer, EV_TIMEOUT, 0);
}

void docker_events_resume(struct docker_events *w)
{
	if (!w->paused)
		return;
	w->paused = false;
	if (w->call)
		docker_call_resume(w->call);
	event_active(w->deliver, 0, 0);
}

static void events_deliver(evutil_socket_t fd, short what, void *arg)
{
	events_pump(arg);
}

/* A stream from the newest event handed over (or the first since). */
static void events_connect(evutil_socket_t fd, short what, void *arg)
{
	struct docker_events *w = arg;
	int64_t since = w->last_nano ? w->last_nano : w->since_nano;
	size_t cap = strlen(w->path) + 48; /* "&since=" and two 64-bit numbers */
	char *path = malloc(cap);
	CHECK(path != NULL);
	if (since > 0)
		snprintf(path, cap, "%s&since=%" PRId64 ".%09" PRId64, w->path, since / 1000000000,
			 since % 1000000000);
	else
		snprintf(path, cap, "%s", w->path);
	static const struct docker_stream_cbs scbs = {
		.head = stream_head,
		.data = stream_data,
		.done = stream_done,
	};
	w->status = 0;
	evbuffer_drain(w->errbody, evbuffer_get_length(w->errbody));
	events_set_state(w, DOCKER_EVENTS_CONNECTING, NULL);
	w->call = docker_call_stream(w->d, "GET", path, NULL, 0, &scbs, w);
	free(path);
	if (!w->call) {
		events_break(w, "out of memory");
		return;
	}
	if (w->paused)
		docker_call_pause(w->call);
}

/* The stream is over (why); the next one opens after the back-off. What
 * arrived and was not handed over is dropped: the next stream replays it. */
static void events_break(struct docker_events *w, const char *why)
{
	if (w->call) {
		docker_call_cancel(w->call);
		w->call = NULL;
	}
	docker_event_reader_reset(&w->reader);
	/* a stream that lived longer than the longest wait was healthy: start over */
	if (w->state == DOCKER_EVENTS_STREAMING && clock_mono_ms() - w->streaming_ms >= w->backoff_max_ms)
		w->delay_ms = w->backoff_min_ms;
	int delay = w->delay_ms;
	w->delay_ms = delay > w->backoff_max_ms / 2 ? w->backoff_max_ms : delay * 2;
	log_warn("docker events: %s; again in %d ms (since %" PRId64 ")", why, delay,
		 w->last_nano ? w->last_nano : w->since_nano);
	events_set_state(w, DOCKER_EVENTS_BACKOFF, why);
	struct timeval tv = { .tv_sec = delay / 1000, .tv_usec = (delay % 1000) * 1000 };
	evtimer_add(w->timer, &tv);
}

static bool events_seen(const struct docker_events *w, const struct docker_event *ev)
{
	return ev->time_nano == w->last_nano && strncmp(ev->id, w->last_id, sizeof(w->last_id) - 1) == 0 &&
	       strncmp(ev->action, w->last_action, sizeof(w->last_action) - 1) == 0;
}

/* Hands over whole lines while not paused. */
static void events_pump(struct docker_events *w)
{
	while (!w->paused && w->state == DOCKER_EVENTS_STREAMING) {
		struct docker_event ev;
		int rc = docker_event_next(&w->reader, &ev);
		if (rc == 0)
			return;
		if (rc < 0) {
			events_break(w, w->reader.err);
			return;
		}
		if (events_seen(w, &ev))
			continue; /* the replay's first: handed over before the break */
		if (ev.time_nano >= w->last_nano) {
			w->last_nano = ev.time_nano;
			snprintf(w->last_id, sizeof(w->last_id), "%s", ev.id);
			snprintf(w->last_action, sizeof(w->last_action), "%s", ev.action);
		}
		w->in_cb = true;
		w->cbs.event(&ev, w->arg);
		w->in_cb = false;
	}
}

static int stream_head(struct docker_call *call, int status, void *arg)
{
	struct docker_events *w = arg;
	w->status = status;
	if (status != 200)
		return 0; /* the body says why; done reports it */
	w->streaming_ms = clock_mono_ms();
	log_info("docker events: streaming (since %" PRId64 ")", w->last_nano ? w->last_nano : w->since_nano);
	events_set_state(w, DOCKER_EVENTS_STREAMING, NULL);
	return 0;
}

static void stream_data(struct docker_call *call, struct evbuffer *body, void *arg)
{
	struct docker_events *w = arg;
	if (w->status != 200) {
		size_t room = ERRBODY_MAX - evbuffer_get_length(w->errbody);
		size_t n = evbuffer_get_length(body);
		evbuffer_remove_buffer(body, w->errbody, n < room ? n : room);
		evbuffer_drain(body, evbuffer_get_length(body));
		return;
	}
	evbuffer_add_buffer(w->reader.in, body);
	events_pump(w);
}

static void stream_done(struct docker_call *call, const char *err, void *arg)
{
	struct docker_events *w = arg;
	w->call = NULL;
	char why[256];
	if (err) {
		snprintf(why, sizeof(why), "the stream broke: %s", err);
	} else if (w->status != 200) {
		size_t n = evbuffer_get_length(w->errbody);
		const char *body = n ? (const char *)evbuffer_pullup(w->errbody, -1) : "";
		while (n > 0 && (body[n - 1] == '\n' || body[n - 1] == '\r'))
			n--;
		snprintf(why, sizeof(why), "refused: HTTP %d %.*s", w->status, (int)n, body);
	} else {
		snprintf(why, sizeof(why), "the stream ended");
	}
	events_break(w, why);
}
