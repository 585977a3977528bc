/* Docker's event stream: the line reader over bytes in any pieces, and the
 * watch against a scripted peer on a unix socket that breaks the stream, so
 * the reconnect is seen asking for `since` = the newest event's time, the
 * replayed event is not handed over twice, and refusals and overlong lines
 * end a stream like a break does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/listener.h>
#include <json-c/json.h>

#include "docker/client.h"
#include "docker/events.h"
#include "unix_peer.h"

#define MAX_CONNS 8

#define EV(action, id, nano, extra)                                                                          \
	"{\"status\":\"" action "\",\"id\":\"" id "\",\"Type\":\"container\",\"Action\":\"" action           \
	"\",\"Actor\":{\"ID\":\"" id "\",\"Attributes\":{\"sandbar.sandbox\":\"s-" id "\"" extra "}},"       \
	"\"scope\":\"local\",\"time\":1,\"timeNano\":" nano "}\n"

/* ---- the line reader ---- */

static void feed(struct docker_event_reader *r, const char *s)
{
	evbuffer_add(r->in, s, strlen(s));
}

static void test_reader_pieces(void **state)
{
	struct docker_event_reader r;
	struct docker_event ev;
	docker_event_reader_init(&r);
	const char *all = EV("die", "c1", "1700000000000000001",
			     ",\"exitCode\":\"137\"") "\r\n\n" EV("destroy", "c2", "1700000000000000002", "");
	size_t len = strlen(all);
	/* one byte at a time: nothing until a newline, then exactly one event */
	int got = 0;
	for (size_t i = 0; i < len; i++) {
		evbuffer_add(r.in, all + i, 1);
		int rc = docker_event_next(&r, &ev);
		assert_true(rc >= 0);
		if (rc == 0)
			continue;
		got++;
		assert_string_equal(ev.type, "container");
		if (got == 1) {
			assert_string_equal(ev.action, "die");
			assert_string_equal(ev.id, "c1");
			assert_true(ev.time_nano == 1700000000000000001LL);
			assert_string_equal(docker_event_attr(&ev, "exitCode"), "137");
			assert_string_equal(docker_event_attr(&ev, "sandbar.sandbox"), "s-c1");
		} else {
			assert_string_equal(ev.action, "destroy");
			assert_null(docker_event_attr(&ev, "exitCode"));
		}
	}
	assert_int_equal(got, 2);
	assert_int_equal(docker_event_next(&r, &ev), 0);
	/* white space after the object is no second thing */
	feed(&r, "{\"Action\":\"oom\",\"Actor\":{\"ID\":\"x\"},\"timeNano\":5} \t\r\n");
	assert_int_equal(docker_event_next(&r, &ev), 1);
	assert_string_equal(ev.action, "oom");
	assert_string_equal(ev.type, "");
	assert_null(ev.attributes);
	docker_event_reader_clear(&r);
}

static void test_reader_refusals(void **state)
{
	static const char *const bad[] = {
		"not json\n",
		"[1, 2]\n",
		"{\"Action\":\"die\",\"Actor\":{\"ID\":\"x\"}}\n",			   /* no timeNano */
		"{\"Action\":\"die\",\"timeNano\":5}\n",				   /* no Actor.ID */
		"{\"Actor\":{\"ID\":\"x\"},\"timeNano\":5}\n",				   /* no Action */
		"{\"Action\":\"die\",\"Actor\":{\"ID\":\"x\"},\"timeNano\":5} trailing\n", /* two things */
		"{\"Action\":\"die\",\"Actor\":{\"ID\":\"x\"},\"timeNano\":\"5\"}\n", /* time as a string */
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		struct docker_event_reader r;
		struct docker_event ev;
		docker_event_reader_init(&r);
		feed(&r, bad[i]);
		assert_int_equal(docker_event_next(&r, &ev), -1);
		assert_true(r.err[0] != '\0');
		docker_event_reader_clear(&r);
	}
	/* the bound: a whole line of exactly the maximum is fine, one byte more
	 * is refused whether or not its newline has come */
	for (int over = 0; over <= 1; over++) {
		for (int newline = 0; newline <= 1; newline++) {
			struct docker_event_reader r;
			struct docker_event ev;
			docker_event_reader_init(&r);
			const char *head =
				"{\"Action\":\"die\",\"Actor\":{\"ID\":\"x\"},\"timeNano\":5,\"pad\":\"";
			size_t pad = DOCKER_EVENT_LINE_MAX - strlen(head) - 2 + (size_t)over;
			feed(&r, head);
			char *p = malloc(pad);
			memset(p, 'a', pad);
			evbuffer_add(r.in, p, pad);
			free(p);
			feed(&r, newline ? "\"}\n" : "\"}");
			int rc = docker_event_next(&r, &ev);
			if (over)
				assert_int_equal(rc, -1);
			else
				assert_int_equal(rc, newline ? 1 : 0);
			docker_event_reader_clear(&r);
		}
	}
}

/* ---- the watch against a scripted peer ---- */

struct conn_script {
	const char *response;
	bool close_after; /* hang up once it is written */
};

struct peer {
	struct conn_script script[MAX_CONNS];
	int nconns;
	char request[MAX_CONNS][2048];
	struct bufferevent *bev[MAX_CONNS];
};

struct seen {
	int n;
	char actions[32][16];
	char ids[32][16];
	int states[64];
	int nstates;
	char why[1024]; /* every reason a stream ended, "; " between */
	bool pause_in_cb;
	struct docker_events *w;
};

static struct event_base *base;
static struct unix_peer sock;
static struct peer peer;

static void peer_writecb(struct bufferevent *bev, void *arg)
{
	int i = (int)(intptr_t)arg;
	if (peer.script[i].close_after && evbuffer_get_length(bufferevent_get_output(bev)) == 0 &&
	    peer.request[i][0]) {
		bufferevent_free(bev);
		peer.bev[i] = NULL;
	}
}

static void peer_readcb(struct bufferevent *bev, void *arg)
{
	int i = (int)(intptr_t)arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t have = strlen(peer.request[i]);
	size_t n = evbuffer_get_length(in);
	if (have + n >= sizeof(peer.request[i]))
		n = sizeof(peer.request[i]) - have - 1;
	evbuffer_remove(in, peer.request[i] + have, n);
	if (!strstr(peer.request[i], "\r\n\r\n") || !peer.script[i].response)
		return;
	bufferevent_write(bev, peer.script[i].response, strlen(peer.script[i].response));
	peer.script[i].response = NULL;
}

static void peer_eventcb(struct bufferevent *bev, short what, void *arg)
{
	int i = (int)(intptr_t)arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		bufferevent_free(bev);
		peer.bev[i] = NULL;
	}
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	assert_true(peer.nconns < MAX_CONNS);
	int i = peer.nconns++;
	peer.bev[i] = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(peer.bev[i], peer_readcb, peer_writecb, peer_eventcb, (void *)(intptr_t)i);
	bufferevent_enable(peer.bev[i], EV_READ | EV_WRITE);
}

static int setup(void **state)
{
	base = event_base_new();
	unix_peer_open(&sock, base, "events-test", accept_cb);
	memset(&peer, 0, sizeof(peer));
	return 0;
}

static int teardown(void **state)
{
	for (int i = 0; i < MAX_CONNS; i++)
		if (peer.bev[i])
			bufferevent_free(peer.bev[i]);
	unix_peer_close(&sock);
	event_base_free(base);
	return 0;
}

static void run_until(bool (*done)(void), int ms)
{
	for (int i = 0; i < ms && !done(); i++) {
		struct timeval tv = { 0, 1000 };
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
}

static struct seen seen;

static void on_event(const struct docker_event *ev, void *arg)
{
	struct seen *s = arg;
	assert_true(s->n < 32);
	snprintf(s->actions[s->n], sizeof(s->actions[0]), "%s", ev->action);
	snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", ev->id);
	s->n++;
	if (s->pause_in_cb)
		docker_events_pause(s->w);
}

static void on_state(enum docker_events_state st, const char *why, void *arg)
{
	struct seen *s = arg;
	if (s->nstates < 64)
		s->states[s->nstates++] = (int)st;
	size_t len = strlen(s->why);
	if (why)
		snprintf(s->why + len, sizeof(s->why) - len, "%s; ", why);
}

static struct docker_events *watch(int64_t since)
{
	static const char *const actions[] = { "die", "oom", "destroy", NULL };
	struct docker_events_opts o = {
		.type = "container",
		.label = "sandbar.cluster=t1",
		.actions = actions,
		.since_nano = since,
		.backoff_min_ms = 5,
		.backoff_max_ms = 20,
	};
	static const struct docker_events_cbs cbs = { on_event, on_state };
	memset(&seen, 0, sizeof(seen));
	seen.w = docker_events_new(sock.docker, &o, &cbs, &seen);
	return seen.w;
}

static int want_events;
static bool enough_events(void)
{
	return seen.n >= want_events;
}

static int want_conns;
static bool enough_conns(void)
{
	return peer.nconns >= want_conns && peer.request[want_conns - 1][0] != '\0';
}

/* A started watch, once the peer has the request of its conns-th stream. */
static struct docker_events *start(int64_t since, int conns)
{
	struct docker_events *w = watch(since);
	docker_events_start(w);
	want_conns = conns;
	run_until(enough_conns, 3000);
	assert_int_equal(peer.nconns, conns);
	return w;
}

#define CHUNKED_HEAD "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"

/* A chunk of s (one static buffer per slot). */
static const char *chunk(int slot, const char *s)
{
	static char buf[4][4096];
	snprintf(buf[slot], sizeof(buf[slot]), "%zx\r\n%s\r\n", strlen(s), s);
	return buf[slot];
}

static const char *concat(int slot, const char *a, const char *b)
{
	static char buf[4][8192];
	snprintf(buf[slot], sizeof(buf[slot]), "%s%s", a, b);
	return buf[slot];
}

static void test_resume_with_since(void **state)
{
	/* first stream: two events, then the peer hangs up mid-stream */
	peer.script[0] = (struct conn_script){
		concat(0, CHUNKED_HEAD,
		       chunk(0, EV("oom", "c1", "1700000000000000001", "")
					EV("die", "c1", "1700000000000000002", ",\"exitCode\":\"137\""))),
		true
	};
	/* the second replays from the newest (inclusive), then something new */
	peer.script[1] = (struct conn_script){
		concat(1, CHUNKED_HEAD,
		       chunk(1, EV("die", "c1", "1700000000000000002", ",\"exitCode\":\"137\"")
					EV("destroy", "c1", "1700000000120000000", ""))),
		false
	};
	struct docker_events *w = watch(1690000000000000007LL);
	assert_int_equal(docker_events_state(w), DOCKER_EVENTS_IDLE);
	docker_events_start(w);
	want_events = 3;
	run_until(enough_events, 3000);
	assert_int_equal(seen.n, 3);
	assert_string_equal(seen.actions[0], "oom");
	assert_string_equal(seen.actions[1], "die");
	assert_string_equal(seen.actions[2], "destroy");
	assert_int_equal(peer.nconns, 2);
	/* the first asks from the given time, the filters URL-encoded */
	assert_non_null(strstr(peer.request[0], "GET /v1.41/events?filters="));
	assert_non_null(strstr(peer.request[0], "%22type%22%3A%5B%22container%22%5D"));
	assert_non_null(strstr(peer.request[0], "%22label%22%3A%5B%22sandbar.cluster%3Dt1%22%5D"));
	assert_non_null(strstr(peer.request[0], "%22event%22%3A%5B%22die%22%2C%22oom%22%2C%22destroy%22%5D"));
	assert_non_null(strstr(peer.request[0], "&since=1690000000.000000007 HTTP/1.1\r\n"));
	/* the reconnect from the newest event handed over */
	assert_non_null(strstr(peer.request[1], "&since=1700000000.000000002 HTTP/1.1\r\n"));
	assert_int_equal(docker_events_state(w), DOCKER_EVENTS_STREAMING);
	assert_non_null(strstr(seen.why, "the stream broke"));
	int want_states[] = { DOCKER_EVENTS_CONNECTING, DOCKER_EVENTS_STREAMING, DOCKER_EVENTS_BACKOFF,
			      DOCKER_EVENTS_CONNECTING, DOCKER_EVENTS_STREAMING };
	assert_int_equal(seen.nstates, 5);
	assert_memory_equal(seen.states, want_states, sizeof(want_states));
	docker_events_free(w);
}

static void test_no_since_until_an_event(void **state)
{
	peer.script[0] = (struct conn_script){ CHUNKED_HEAD, true };
	peer.script[1] = (struct conn_script){ CHUNKED_HEAD, false };
	struct docker_events *w = start(0, 2);
	assert_null(strstr(peer.request[0], "since="));
	assert_null(strstr(peer.request[1], "since="));
	docker_events_free(w);
}

static void test_refusal_and_overlong_line_break_the_stream(void **state)
{
	static const char refusal[] = "{\"message\":\"invalid filter 'x'\"}\n";
	static char head[256];
	snprintf(
		head, sizeof(head),
		"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
		strlen(refusal), refusal);
	peer.script[0] = (struct conn_script){ head, false };
	/* then a stream whose second line never ends within the bound */
	static char big[DOCKER_EVENT_LINE_MAX + 64];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	static char resp[sizeof(big) + 512];
	snprintf(resp, sizeof(resp), CHUNKED_HEAD "%zx\r\n%s\r\n%zx\r\n%s\r\n",
		 strlen(EV("die", "c9", "1700000000000000009", "")),
		 EV("die", "c9", "1700000000000000009", ""), strlen(big), big);
	peer.script[1] = (struct conn_script){ resp, false };
	peer.script[2] = (struct conn_script){ CHUNKED_HEAD, false };
	struct docker_events *w = start(0, 3);
	assert_int_equal(seen.n, 1);
	assert_string_equal(seen.why, "refused: HTTP 400 {\"message\":\"invalid filter 'x'\"}; "
				      "an event line longer than 64 KiB; ");
	assert_non_null(strstr(peer.request[2], "&since=1700000000.000000009 "));
	docker_events_free(w);
}

static bool one_event(void)
{
	return seen.n >= 1;
}

static void test_pause_holds_events_until_resume(void **state)
{
	peer.script[0] =
		(struct conn_script){ concat(0, CHUNKED_HEAD,
					     chunk(0, EV("die", "a", "1700000000000000001",
							 "") EV("die", "b", "1700000000000000002", "")
							      EV("die", "c", "1700000000000000003", ""))),
				      false };
	struct docker_events *w = watch(0);
	seen.pause_in_cb = true;
	docker_events_start(w);
	run_until(one_event, 3000);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(seen.n, i + 1);
		/* held while paused */
		for (int k = 0; k < 20; k++) {
			struct timeval tv = { 0, 1000 };
			event_base_loopexit(base, &tv);
			event_base_dispatch(base);
		}
		assert_int_equal(seen.n, i + 1);
		docker_events_resume(w);
		assert_int_equal(seen.n, i + 1); /* never on the caller's stack */
		if (i < 2) {
			want_events = i + 2;
			run_until(enough_events, 3000);
		}
	}
	assert_string_equal(seen.ids[0], "a");
	assert_string_equal(seen.ids[1], "b");
	assert_string_equal(seen.ids[2], "c");
	docker_events_free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reader_pieces),
		cmocka_unit_test(test_reader_refusals),
		cmocka_unit_test_setup_teardown(test_resume_with_since, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_since_until_an_event, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusal_and_overlong_line_break_the_stream, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_pause_holds_events_until_resume, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
