/* One channel = one connection to a sandbox's agent: a Docker exec of
 * `/.sandbar/agent relay` hijacked into a byte stream. This file is its state
 * machine (connect, handshake, ready, broken, back-off) and the reading side:
 * frames from the agent routed by TAG to subscriptions and list requests. */
#include "channel_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/log.h"
#include "docker/client.h"

static void ch_set_state(struct agent_channel *ch, enum channel_state to);
static void ch_connect(struct agent_channel *ch);
static void ch_break(struct agent_channel *ch, const char *why);
static void ch_give_up(struct agent_channel *ch, int code, const char *why);
static void ch_ready(struct agent_channel *ch);
static void ch_forget_commands(struct agent_channel *ch);
static bool ch_live(const struct agent_channel *ch);
static void ch_drop_stream(struct agent_channel *ch);
static void ch_arm(struct agent_channel *ch, int ms);
static void ch_unbusy(struct agent_channel *ch);
static void ch_timer_cb(evutil_socket_t fd, short what, void *arg);
static void ch_defer_cb(evutil_socket_t fd, short what, void *arg);
static void ch_read_cb(struct bufferevent *bev, void *arg);
static void ch_event_cb(struct bufferevent *bev, short what, void *arg);
static void ch_demux_cb(enum docker_stream_type type, const char *data, size_t len, void *arg);
static void ch_log_stderr(struct agent_channel *ch, bool all);
static int ch_frame(struct agent_channel *ch, const struct agent_frame *f);
static void ch_output(struct agent_channel *ch, const struct agent_frame *f);
static void ch_exited(struct agent_channel *ch, const struct agent_frame *f);
static void ch_status(struct agent_channel *ch, const struct agent_frame *f);
static void ch_error(struct agent_channel *ch, const struct agent_frame *f);
static struct agent_sub *ch_find_sub(struct agent_channel *ch, const struct agent_frame *f);
static struct agent_list_req *ch_find_list(struct agent_channel *ch, const struct agent_frame *f);
static void docker_connect(struct agent_channel *ch);
static void exec_created_cb(int status, struct json_object *body, const char *err, void *arg);
static void exec_upgraded_cb(int status, struct bufferevent *bev, const char *err, void *arg);

static const char *const state_names[CH_STATE_MAX] = {
	"IDLE", "CONNECTING", "STARTING", "HELLO", "READY", "BACKOFF", "CLOSED",
};

const char *channel_state_name(enum channel_state s)
{
	return s < CH_STATE_MAX ? state_names[s] : "?";
}

static void ch_set_state(struct agent_channel *ch, enum channel_state to)
{
	static const unsigned legal[CH_STATE_MAX] = {
		[CH_IDLE] = 1u << CH_CONNECTING,
		[CH_CONNECTING] = 1u << CH_STARTING | 1u << CH_BACKOFF | 1u << CH_IDLE,
		[CH_STARTING] = 1u << CH_HELLO | 1u << CH_BACKOFF | 1u << CH_IDLE,
		[CH_HELLO] = 1u << CH_READY | 1u << CH_BACKOFF | 1u << CH_IDLE,
		[CH_READY] = 1u << CH_BACKOFF | 1u << CH_IDLE,
		[CH_BACKOFF] = 1u << CH_CONNECTING | 1u << CH_IDLE,
		[CH_CLOSED] = 0,
	};
	CHECK(to < CH_STATE_MAX);
	CHECK(to == CH_CLOSED ? ch->state != CH_CLOSED : (legal[ch->state] & (1u << to)) != 0);
	log_msg(LOG_LEVEL_DEBUG, ch->log_prefix, "channel %s -> %s", state_names[ch->state], state_names[to]);
	ch->state = to;
}

static struct agent_channel *ch_alloc(struct event_base *base, const char *sandbox_id)
{
	struct agent_channel *ch = calloc(1, sizeof(*ch));
	CHECK(ch != NULL);
	ch->base = base;
	ch->sandbox_id = strdup(sandbox_id);
	ch->in = evbuffer_new();
	ch->errtext = evbuffer_new();
	ch->queue = evbuffer_new();
	ch->timer = evtimer_new(base, ch_timer_cb, ch);
	ch->defer = event_new(base, -1, 0, ch_defer_cb, ch);
	CHECK(ch->sandbox_id && ch->in && ch->errtext && ch->queue && ch->timer && ch->defer);
	snprintf(ch->log_prefix, sizeof(ch->log_prefix), "sandbox=%s", sandbox_id);
	TAILQ_INIT(&ch->subs);
	TAILQ_INIT(&ch->lists);
	TAILQ_INIT(&ch->fsreqs);
	TAILQ_INIT(&ch->tcps);
	ch->next_tag = 1;
	ch->backoff_ms = CHANNEL_BACKOFF_MIN_MS;
	ch->max_attempts = CHANNEL_MAX_ATTEMPTS;
	ch->state = CH_IDLE;
	docker_demux_init(&ch->dm);
	return ch;
}

struct agent_channel *channel_new(struct event_base *base, struct docker *docker, const char *sandbox_id,
				  const char *container)
{
	struct agent_channel *ch = ch_alloc(base, sandbox_id);
	ch->docker = docker;
	ch->container = strdup(container);
	CHECK(ch->container != NULL);
	return ch;
}

struct agent_channel *channel_new_with_transport(struct event_base *base, const char *sandbox_id,
						 const struct channel_transport *t)
{
	struct agent_channel *ch = ch_alloc(base, sandbox_id);
	ch->transport = *t;
	return ch;
}

void channel_destroy(struct agent_channel *ch)
{
	CHECK(ch->busy == 0);
	ch_drop_stream(ch);
	struct agent_sub *sub;
	while ((sub = TAILQ_FIRST(&ch->subs)) != NULL)
		channel_sub_free(sub);
	struct agent_list_req *l;
	while ((l = TAILQ_FIRST(&ch->lists)) != NULL)
		channel_list_free(ch, l);
	struct agent_fs *fs;
	while ((fs = TAILQ_FIRST(&ch->fsreqs)) != NULL)
		channel_fs_free(fs);
	struct agent_tcp *t;
	while ((t = TAILQ_FIRST(&ch->tcps)) != NULL)
		channel_tcp_free(t);
	event_free(ch->timer);
	event_free(ch->defer);
	evbuffer_free(ch->in);
	evbuffer_free(ch->errtext);
	evbuffer_free(ch->queue);
	free(ch->fatal);
	free(ch->sandbox_id);
	free(ch->container);
	free(ch);
}

void channel_close(struct agent_channel *ch, const char *msg)
{
	ch_drop_stream(ch);
	ch_set_state(ch, CH_CLOSED);
	evbuffer_drain(ch->queue, evbuffer_get_length(ch->queue));
	struct agent_sub *sub;
	TAILQ_FOREACH(sub, &ch->subs, link)
	channel_sub_fail(sub, ESRCH, msg);
	struct agent_list_req *l;
	TAILQ_FOREACH(l, &ch->lists, link)
	if (!l->done && !l->err)
		l->err = strdup(msg);
	struct agent_fs *fs;
	TAILQ_FOREACH(fs, &ch->fsreqs, link)
	channel_fs_fail(fs, ESRCH, msg);
	channel_tcp_break(ch, ESRCH, msg, true);
	channel_defer(ch);
}

/* ---- connecting ---- */

void channel_kick(struct agent_channel *ch)
{
	if (ch->state != CH_IDLE)
		return;
	free(ch->fatal);
	ch->fatal = NULL;
	ch->attempts = 0;
	ch->backoff_ms = CHANNEL_BACKOFF_MIN_MS;
	ch_connect(ch);
}

static void ch_connect(struct agent_channel *ch)
{
	ch_set_state(ch, CH_CONNECTING);
	ch_arm(ch, CHANNEL_HELLO_TIMEOUT_MS);
	if (ch->transport.connect) {
		ch_set_state(ch, CH_STARTING);
		ch->transport.connect(ch, ch->transport.arg);
		return;
	}
	docker_connect(ch);
}

static void docker_connect(struct agent_channel *ch)
{
	struct json_object *body = json_object_new_object();
	struct json_object *cmd = json_object_new_array();
	json_object_array_add(cmd, json_object_new_string(AGENT_PATH));
	json_object_array_add(cmd, json_object_new_string("relay"));
	json_object_object_add(body, "AttachStdin", json_object_new_boolean(1));
	json_object_object_add(body, "AttachStdout", json_object_new_boolean(1));
	json_object_object_add(body, "AttachStderr", json_object_new_boolean(1));
	json_object_object_add(body, "Tty", json_object_new_boolean(0));
	/* the relay reaches the agent's socket as root, whatever the container's user */
	json_object_object_add(body, "User", json_object_new_string("0"));
	json_object_object_add(body, "Cmd", cmd);
	char path[256];
	snprintf(path, sizeof(path), "/containers/%s/exec", ch->container);
	ch->call = docker_call_json(ch->docker, "POST", path, body, exec_created_cb, ch);
	if (!ch->call)
		channel_transport_failed(ch, "out of memory", false);
}

static void exec_created_cb(int status, struct json_object *body, const char *err, void *arg)
{
	struct agent_channel *ch = arg;
	struct json_object *id;
	ch->call = NULL;
	if (status == 404 || status == 409) {
		/* no such container, or not running: nothing to retry for */
		char msg[256];
		snprintf(msg, sizeof(msg), "sandbox container unavailable: %s", err ? err : "not running");
		channel_transport_failed(ch, msg, true);
		return;
	}
	if (status != 201 && status != 200) {
		channel_transport_failed(ch, err ? err : "exec create failed", false);
		return;
	}
	if (!json_object_object_get_ex(body, "Id", &id) || !json_object_is_type(id, json_type_string)) {
		channel_transport_failed(ch, "no Id in the exec create response", false);
		return;
	}
	ch_set_state(ch, CH_STARTING);
	char path[160];
	snprintf(path, sizeof(path), "/exec/%.100s/start", json_object_get_string(id));
	struct json_object *start = json_object_new_object();
	json_object_object_add(start, "Detach", json_object_new_boolean(0));
	json_object_object_add(start, "Tty", json_object_new_boolean(0));
	ch->call = docker_call_upgrade(ch->docker, "POST", path, start, exec_upgraded_cb, ch);
	if (!ch->call)
		channel_transport_failed(ch, "out of memory", false);
}

static void exec_upgraded_cb(int status, struct bufferevent *bev, const char *err, void *arg)
{
	struct agent_channel *ch = arg;
	ch->call = NULL;
	if (!bev) {
		channel_transport_failed(ch, err ? err : "exec start failed", status == 404 || status == 409);
		return;
	}
	channel_transport_ready(ch, bev);
}

void channel_transport_ready(struct agent_channel *ch, struct bufferevent *bev)
{
	CHECK(ch->state == CH_STARTING && !ch->bev);
	ch_set_state(ch, CH_HELLO);
	ch->bev = bev;
	docker_demux_init(&ch->dm);
	evbuffer_drain(ch->in, evbuffer_get_length(ch->in));
	bufferevent_setcb(bev, ch_read_cb, NULL, ch_event_cb, ch);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_HELLO, 0, 0);
	agent_msg_u64(&m, AGENT_T_VERSION, AGENT_PROTOCOL_VERSION);
	CHECK(agent_msg_end(&m) == 0);
	bufferevent_write(bev, m.buf, m.len);
	agent_msg_free(&m);
	/* bytes that came with the upgrade */
	if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
		bufferevent_trigger(bev, EV_READ, BEV_OPT_DEFER_CALLBACKS);
}

void channel_transport_failed(struct agent_channel *ch, const char *err, bool fatal)
{
	CHECK(ch->state == CH_CONNECTING || ch->state == CH_STARTING);
	if (ch->docker && docker_health(ch->docker) == DOCKER_UNREACHABLE)
		ch_give_up(ch, AGENT_DOCKER_DOWN, err); /* retrying cannot help until it is back */
	else if (fatal)
		ch_give_up(ch, ECONNREFUSED, err);
	else
		ch_break(ch, err);
}

void channel_docker_down(struct agent_channel *ch, const char *why)
{
	if (ch->state != CH_IDLE)
		ch_give_up(ch, AGENT_DOCKER_DOWN, why);
}

/* ---- breaking, backing off, giving up ---- */

static void ch_drop_stream(struct agent_channel *ch)
{
	if (ch->call) {
		docker_call_cancel(ch->call);
		ch->call = NULL;
	}
	if (ch->bev) {
		ch_log_stderr(ch, true);
		bufferevent_free(ch->bev);
		ch->bev = NULL;
	}
	evtimer_del(ch->timer);
	evbuffer_drain(ch->in, evbuffer_get_length(ch->in));
	evbuffer_drain(ch->errtext, evbuffer_get_length(ch->errtext));
	docker_demux_init(&ch->dm);
}

static bool ch_live(const struct agent_channel *ch)
{
	const struct agent_sub *sub;
	TAILQ_FOREACH(sub, &ch->subs, link)
	if (sub->state != SUB_DONE && !sub->err_msg)
		return true;
	const struct agent_list_req *l;
	TAILQ_FOREACH(l, &ch->lists, link)
	if (!l->done && !l->err)
		return true;
	const struct agent_fs *fs;
	TAILQ_FOREACH(fs, &ch->fsreqs, link)
	if (fs->state != FSR_DONE && !fs->err_msg)
		return true;
	const struct agent_tcp *t;
	TAILQ_FOREACH(t, &ch->tcps, link)
	if (t->state != TCPR_DONE && !t->err_msg)
		return true;
	return evbuffer_get_length(ch->queue) > 0;
}

/* The stream is gone: what was in flight on it is settled, the rest waits for
 * the next connection. */
static void ch_break(struct agent_channel *ch, const char *why)
{
	bool was_ready = ch->state == CH_READY;
	log_msg(was_ready ? LOG_LEVEL_WARN : LOG_LEVEL_INFO, ch->log_prefix, "agent channel broke in %s: %s",
		state_names[ch->state], why);
	ch_drop_stream(ch);
	struct agent_sub *sub;
	TAILQ_FOREACH(sub, &ch->subs, link)
	{
		/* re-sending a SPAWN could start the command twice */
		if (sub->state == SUB_SENT)
			channel_sub_fail(sub, EPIPE, "channel lost before the command started");
		sub->subscribed = false;
	}
	struct agent_list_req *l;
	TAILQ_FOREACH(l, &ch->lists, link)
	l->sent = false;
	/* a file request is not idempotent (a write, a move): what was sent fails */
	channel_fs_break(ch, EPIPE, "the agent channel broke during the file operation");
	/* nor is a TCP stream (bytes went to the app): open ones are reset */
	channel_tcp_break(ch, ECONNRESET, "the agent channel broke", false);
	if (!was_ready)
		ch->attempts++;
	if (!ch_live(ch)) {
		ch_set_state(ch, CH_IDLE);
		return;
	}
	if (ch->attempts >= ch->max_attempts) {
		char msg[384];
		snprintf(msg, sizeof(msg), "agent unreachable after %d attempts: %s", ch->attempts, why);
		ch_give_up(ch, ECONNREFUSED, msg);
		return;
	}
	ch_set_state(ch, CH_BACKOFF);
	int ms = was_ready ? CHANNEL_BACKOFF_MIN_MS : ch->backoff_ms;
	if (!was_ready)
		ch->backoff_ms = ch->backoff_ms * 2 > CHANNEL_BACKOFF_MAX_MS ? CHANNEL_BACKOFF_MAX_MS
									     : ch->backoff_ms * 2;
	ch_arm(ch, ms);
}

/* Everything waiting gets the error (code: ECONNREFUSED, or
 * AGENT_DOCKER_DOWN); the next request starts afresh. */
static void ch_give_up(struct agent_channel *ch, int code, const char *why)
{
	log_msg(LOG_LEVEL_WARN, ch->log_prefix, "agent channel gave up: %s", why);
	ch_drop_stream(ch);
	evbuffer_drain(ch->queue, evbuffer_get_length(ch->queue));
	struct agent_sub *sub;
	TAILQ_FOREACH(sub, &ch->subs, link)
	channel_sub_fail(sub, code, why);
	struct agent_list_req *l;
	TAILQ_FOREACH(l, &ch->lists, link)
	if (!l->done && !l->err)
		l->err = strdup(why);
	channel_fs_break(ch, code, why);
	channel_tcp_break(ch, code, why, true);
	free(ch->fatal);
	ch->fatal = strdup(why);
	ch_set_state(ch, CH_IDLE);
	channel_defer(ch);
}

static void ch_arm(struct agent_channel *ch, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	evtimer_add(ch->timer, &tv);
}

static void ch_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent_channel *ch = arg;
	if (ch->state == CH_BACKOFF)
		ch_connect(ch);
	else if (ch->state == CH_CONNECTING || ch->state == CH_STARTING || ch->state == CH_HELLO)
		ch_break(ch, "the agent did not answer in time");
}

static void ch_ready(struct agent_channel *ch)
{
	ch_set_state(ch, CH_READY);
	evtimer_del(ch->timer);
	ch->attempts = 0;
	ch->backoff_ms = CHANNEL_BACKOFF_MIN_MS;
	/* what the last stream carried first, then what waited for this one */
	struct agent_sub *sub;
	TAILQ_FOREACH(sub, &ch->subs, link)
	if (sub->state == SUB_ACTIVE && sub->window > 0 && !sub->subscribed && !sub->err_msg)
		channel_send_subscribe(ch, sub);
	struct agent_list_req *l;
	TAILQ_FOREACH(l, &ch->lists, link)
	if (!l->done && !l->sent && !l->err)
		channel_send_list(ch, l);
	TAILQ_FOREACH(sub, &ch->subs, link)
	{
		if (sub->held)
			channel_sub_release(sub); /* sent, or refused by an agent without services */
		else if (sub->state == SUB_QUEUED)
			sub->state = SUB_SENT;
	}
	bufferevent_write_buffer(ch->bev, ch->queue);
	channel_fs_ready(ch);
	channel_tcp_ready(ch);
}

/* A new agent numbers its commands from 1 again (kept services first): an
 * id of the old one names another command now. Subscriptions to the old
 * agent's commands fail (their records are settled by the reconcile the
 * reset starts), and queued requests about them (stdin, signals, resizes,
 * unsubscribes: every frame with a command id) are not sent. */
static void ch_forget_commands(struct agent_channel *ch)
{
	struct agent_sub *sub;
	TAILQ_FOREACH(sub, &ch->subs, link)
	if (sub->state == SUB_ACTIVE)
		channel_sub_fail(sub, ESRCH, "the agent restarted");
	struct evbuffer *keep = evbuffer_new();
	CHECK(keep != NULL);
	size_t have;
	while ((have = evbuffer_get_length(ch->queue)) >= AGENT_FRAME_HEADER) {
		const uint8_t *h = evbuffer_pullup(ch->queue, AGENT_FRAME_HEADER);
		size_t len = AGENT_FRAME_HEADER +
			     ((size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3]);
		uint32_t id = (uint32_t)h[8] << 24 | (uint32_t)h[9] << 16 | (uint32_t)h[10] << 8 | h[11];
		CHECK(len <= have); /* our own frames, whole */
		if (id == 0)
			evbuffer_remove_buffer(ch->queue, keep, len);
		else
			evbuffer_drain(ch->queue, len);
	}
	CHECK(evbuffer_get_length(ch->queue) == 0);
	evbuffer_add_buffer(ch->queue, keep);
	evbuffer_free(keep);
}

/* ---- deferred callbacks and frees ---- */

void channel_defer(struct agent_channel *ch)
{
	event_active(ch->defer, EV_TIMEOUT, 0);
}

static void ch_defer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct agent_channel *ch = arg;
	ch->busy++;
	struct agent_sub *sub;
	TAILQ_FOREACH(sub, &ch->subs, link)
	{
		if (sub->state == SUB_DONE || !sub->err_msg)
			continue;
		sub->state = SUB_DONE;
		if (sub->ops->error)
			sub->ops->error(sub->arg, sub->err_code, sub->err_msg);
	}
	struct agent_list_req *l;
	TAILQ_FOREACH(l, &ch->lists, link)
	{
		if (!l->done && l->err)
			channel_list_finish(l, l->err, l->err_code);
	}
	struct agent_fs *fs;
	TAILQ_FOREACH(fs, &ch->fsreqs, link)
	{
		if (fs->state == FSR_DONE || !fs->err_msg)
			continue;
		fs->state = FSR_DONE;
		if (fs->ops->error)
			fs->ops->error(fs->arg, fs->err_code, fs->err_msg);
	}
	struct agent_tcp *t;
	TAILQ_FOREACH(t, &ch->tcps, link)
	channel_tcp_deliver(t);
	ch_unbusy(ch);
}

/* Frees what finished once no callback of this channel is on the stack; a
 * closed channel goes when nothing is left in it. */
static void ch_unbusy(struct agent_channel *ch)
{
	CHECK(ch->busy > 0);
	if (--ch->busy > 0)
		return;
	struct agent_sub *sub, *next_sub;
	for (sub = TAILQ_FIRST(&ch->subs); sub; sub = next_sub) {
		next_sub = TAILQ_NEXT(sub, link);
		if (sub->state == SUB_DONE)
			channel_sub_free(sub);
	}
	struct agent_list_req *l, *next_l;
	for (l = TAILQ_FIRST(&ch->lists); l; l = next_l) {
		next_l = TAILQ_NEXT(l, link);
		if (l->done)
			channel_list_free(ch, l);
	}
	struct agent_fs *fs, *next_fs;
	for (fs = TAILQ_FIRST(&ch->fsreqs); fs; fs = next_fs) {
		next_fs = TAILQ_NEXT(fs, link);
		if (fs->state == FSR_DONE)
			channel_fs_free(fs);
	}
	struct agent_tcp *t, *next_t;
	for (t = TAILQ_FIRST(&ch->tcps); t; t = next_t) {
		next_t = TAILQ_NEXT(t, link);
		if (t->state == TCPR_DONE)
			channel_tcp_free(t);
	}
	if (ch->state == CH_CLOSED && TAILQ_EMPTY(&ch->subs) && TAILQ_EMPTY(&ch->lists) &&
	    TAILQ_EMPTY(&ch->fsreqs) && TAILQ_EMPTY(&ch->tcps))
		channel_destroy(ch);
}

void channel_sub_fail(struct agent_sub *sub, int code, const char *msg)
{
	if (sub->state == SUB_DONE || sub->err_msg)
		return;
	sub->err_code = code;
	sub->err_msg = strdup(msg);
	CHECK(sub->err_msg != NULL);
	channel_defer(sub->ch);
}

/* ---- reading ---- */

static void ch_demux_cb(enum docker_stream_type type, const char *data, size_t len, void *arg)
{
	struct agent_channel *ch = arg;
	if (type == DOCKER_STDOUT)
		evbuffer_add(ch->in, data, len);
	else if (evbuffer_get_length(ch->errtext) < 64 * 1024)
		evbuffer_add(ch->errtext, data, len);
}

/* The relay's stderr is for humans: one log line per line. */
static void ch_log_stderr(struct agent_channel *ch, bool all)
{
	char *line;
	size_t n;
	while ((line = evbuffer_readln(ch->errtext, &n, EVBUFFER_EOL_LF)) != NULL) {
		log_msg(LOG_LEVEL_WARN, ch->log_prefix, "agent relay: %s", line);
		free(line);
	}
	size_t rest = evbuffer_get_length(ch->errtext);
	if (rest > 0 && (all || rest >= 4096)) {
		log_msg(LOG_LEVEL_WARN, ch->log_prefix, "agent relay: %.*s", (int)rest,
			(const char *)evbuffer_pullup(ch->errtext, -1));
		evbuffer_drain(ch->errtext, rest);
	}
}

static void ch_read_cb(struct bufferevent *bev, void *arg)
{
	struct agent_channel *ch = arg;
	ch->busy++;
	if (docker_demux_feed(&ch->dm, bufferevent_get_input(bev), ch_demux_cb, ch) < 0) {
		ch_break(ch, "malformed Docker stream");
		goto out;
	}
	ch_log_stderr(ch, false);
	while (ch->state == CH_HELLO || ch->state == CH_READY) {
		size_t have = evbuffer_get_length(ch->in);
		if (have < AGENT_FRAME_HEADER)
			break;
		const uint8_t *h = evbuffer_pullup(ch->in, AGENT_FRAME_HEADER);
		size_t plen = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
		if (plen <= AGENT_FRAME_MAX && have < AGENT_FRAME_HEADER + plen)
			break;
		size_t want = plen <= AGENT_FRAME_MAX ? AGENT_FRAME_HEADER + plen : AGENT_FRAME_HEADER;
		struct agent_frame f;
		long used = agent_frame_parse(evbuffer_pullup(ch->in, (ssize_t)want), want, &f);
		if (used <= 0 || !agent_frame_valid(&f)) {
			ch_break(ch, "malformed agent frame");
			break;
		}
		int rc = ch_frame(ch, &f);
		/* a callback may have closed the channel (its buffers are drained then) */
		if (ch->state == CH_HELLO || ch->state == CH_READY)
			evbuffer_drain(ch->in, (size_t)used);
		if (rc < 0)
			break;
	}
out:
	ch_unbusy(ch);
}

static void ch_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct agent_channel *ch = arg;
	ch->busy++;
	if (what & BEV_EVENT_EOF)
		ch_break(ch, "the agent stream ended");
	else if (what & BEV_EVENT_ERROR)
		ch_break(ch, strerror(EVUTIL_SOCKET_ERROR()));
	ch_unbusy(ch);
}

static int ch_frame(struct agent_channel *ch, const struct agent_frame *f)
{
	uint64_t v;
	if (ch->state == CH_HELLO) {
		if (f->type != AGENT_WELCOME) {
			ch_break(ch, "expected WELCOME from the agent");
			return -1;
		}
		if (agent_frame_u64(f, AGENT_T_VERSION, &v) != 0 || v != AGENT_PROTOCOL_VERSION) {
			char msg[128];
			snprintf(msg, sizeof(msg),
				 "the agent speaks protocol version %" PRIu64 ", sandbard %d", v,
				 AGENT_PROTOCOL_VERSION);
			ch_give_up(ch, ECONNREFUSED, msg);
			return -1;
		}
		uint64_t pid = 0, started = 0;
		agent_frame_u64(f, AGENT_T_PID, &pid);
		agent_frame_u64(f, AGENT_T_STARTED_AT, &started);
		if (ch->agent_started_at &&
		    ((int64_t)pid != ch->agent_pid || (int64_t)started != ch->agent_started_at)) {
			log_msg(LOG_LEVEL_WARN, ch->log_prefix, "the agent restarted: its commands are gone");
			ch_forget_commands(ch);
			if (ch->chs)
				channels_reset(ch->chs, ch->sandbox_id);
		}
		ch->agent_pid = (int64_t)pid;
		ch->agent_started_at = (int64_t)started;
		ch->agent_features = 0;
		agent_frame_u64(f, AGENT_T_FEATURES, &ch->agent_features);
		ch_ready(ch);
		return 0;
	}
	struct agent_sub *sub;
	switch (f->type) {
	case AGENT_STARTED:
		sub = ch_find_sub(ch, f);
		if (!sub || sub->state != SUB_SENT)
			break;
		uint64_t pid = 0, started = 0;
		agent_frame_u64(f, AGENT_T_PID, &pid);
		agent_frame_u64(f, AGENT_T_STARTED_AT, &started);
		sub->cmd_id = f->id;
		sub->state = SUB_ACTIVE;
		sub->subscribed = sub->window > 0;
		if (sub->window == 0)
			sub->state = SUB_DONE; /* detached: started is all it gets */
		if (sub->quiet && sub->subscribed) {
			/* made quiet before the agent knew the sub: tell it now */
			sub->quiet = false;
			agent_sub_quiet(sub);
		}
		if (sub->ops->started)
			sub->ops->started(sub->arg, f->id, (int)pid, (int64_t)started);
		break;
	case AGENT_SPAWN_FAILED:
	case AGENT_ERROR:
		ch_error(ch, f);
		break;
	case AGENT_OUTPUT:
		ch_output(ch, f);
		break;
	case AGENT_EXITED:
		ch_exited(ch, f);
		break;
	case AGENT_STATUS:
		ch_status(ch, f);
		break;
	case AGENT_LIST_END:
	case AGENT_UNSERVICED: {
		struct agent_list_req *l = ch_find_list(ch, f);
		if (!l || l->type != (f->type == AGENT_LIST_END ? AGENT_LIST : AGENT_UNSERVICE))
			break;
		if (f->type == AGENT_UNSERVICED) {
			uint64_t kept = 0, spid = 0;
			agent_frame_u64(f, AGENT_T_COUNT, &kept);
			agent_frame_u64(f, AGENT_T_PID, &spid);
			l->kept = kept != 0;
			l->pid = (int)spid;
		}
		channel_list_finish(l, NULL, 0);
		break;
	}
	case AGENT_PONG:
		break;
	case AGENT_FS_ENTRY:
	case AGENT_FS_DATA:
	case AGENT_FS_DONE:
		channel_fs_frame(ch, f);
		break;
	case AGENT_TCP_OPENED:
	case AGENT_TCP_DATA:
	case AGENT_TCP_ACK:
	case AGENT_TCP_SHUT:
	case AGENT_TCP_CLOSE:
		channel_tcp_frame(ch, f);
		break;
	default:
		log_msg(LOG_LEVEL_DEBUG, ch->log_prefix, "agent sent an unexpected %s",
			agent_msg_type_name(f->type));
		break;
	}
	return 0;
}

static struct agent_sub *ch_find_sub(struct agent_channel *ch, const struct agent_frame *f)
{
	uint64_t tag;
	if (agent_frame_u64(f, AGENT_T_TAG, &tag) != 0)
		return NULL;
	struct agent_sub *sub;
	TAILQ_FOREACH(sub, &ch->subs, link)
	if (sub->tag == tag)
		return sub->state == SUB_DONE || sub->err_msg ? NULL : sub;
	return NULL;
}

static struct agent_list_req *ch_find_list(struct agent_channel *ch, const struct agent_frame *f)
{
	uint64_t tag;
	if (agent_frame_u64(f, AGENT_T_TAG, &tag) != 0)
		return NULL;
	struct agent_list_req *l;
	TAILQ_FOREACH(l, &ch->lists, link)
	if (l->tag == tag)
		return l->done || l->err ? NULL : l;
	return NULL;
}

static void ch_output(struct agent_channel *ch, const struct agent_frame *f)
{
	struct agent_sub *sub = ch_find_sub(ch, f);
	uint64_t offset, stream = AGENT_STREAM_STDOUT;
	if (!sub || sub->state != SUB_ACTIVE || agent_frame_u64(f, AGENT_T_OFFSET, &offset) != 0)
		return;
	agent_frame_u64(f, AGENT_T_STREAM, &stream);
	if (f->flags & AGENT_FLAG_GAP) {
		if (offset <= sub->delivered)
			return;
		sub->delivered = offset;
		sub->ops->output(sub->arg, (enum agent_stream)stream, offset, NULL, 0, true);
		return;
	}
	const uint8_t *data = NULL;
	uint32_t len = 0;
	agent_frame_bytes(f, AGENT_T_DATA, &data, &len);
	if (len == 0 || offset + len <= sub->delivered)
		return; /* already delivered before a reconnect */
	uint64_t skip = sub->delivered > offset ? sub->delivered - offset : 0;
	bool gap = offset > sub->delivered;
	sub->delivered = offset + len;
	sub->ops->output(sub->arg, (enum agent_stream)stream, offset + skip, data + skip, len - skip, gap);
}

static void ch_exit_fields(const struct agent_frame *f, struct agent_exit *e)
{
	uint64_t v;
	memset(e, 0, sizeof(*e));
	e->exit_code = agent_frame_u64(f, AGENT_T_EXIT_CODE, &v) == 0 ? (int)(int64_t)v : -1;
	e->signal = agent_frame_u64(f, AGENT_T_SIGNAL, &v) == 0 ? (int)v : 0;
	e->timed_out = agent_frame_u64(f, AGENT_T_TIMED_OUT, &v) == 0 && v != 0;
	if (agent_frame_u64(f, AGENT_T_STARTED_AT, &v) == 0)
		e->started_at = (int64_t)v;
	if (agent_frame_u64(f, AGENT_T_ENDED_AT, &v) == 0)
		e->ended_at = (int64_t)v;
	if (agent_frame_u64(f, AGENT_T_OFFSET, &v) == 0)
		e->offset = v;
}

static void ch_exited(struct agent_channel *ch, const struct agent_frame *f)
{
	struct agent_sub *sub = ch_find_sub(ch, f);
	if (!sub || sub->state != SUB_ACTIVE)
		return;
	struct agent_exit e;
	ch_exit_fields(f, &e);
	sub->state = SUB_DONE;
	if (sub->ops->exited)
		sub->ops->exited(sub->arg, &e);
}

static void ch_status(struct agent_channel *ch, const struct agent_frame *f)
{
	struct agent_list_req *l = ch_find_list(ch, f);
	if (!l || l->type != AGENT_LIST)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct agent_status *items = realloc(l->items, cap * sizeof(*items));
		CHECK(items != NULL);
		l->items = items;
		l->cap = cap;
	}
	struct agent_status *s = &l->items[l->n++];
	uint64_t v;
	memset(s, 0, sizeof(*s));
	s->id = f->id;
	s->pid = agent_frame_u64(f, AGENT_T_PID, &v) == 0 ? (int)v : 0;
	s->running = agent_frame_u64(f, AGENT_T_STATE, &v) == 0 && v == AGENT_CMD_RUNNING;
	ch_exit_fields(f, &s->exit);
	const uint8_t *svc;
	uint32_t len;
	if (agent_frame_bytes(f, AGENT_T_SERVICE, &svc, &len) == 0 && len < sizeof(s->service))
		memcpy(s->service, svc, len); /* s was zeroed: NUL-terminated */
	s->port = agent_frame_u64(f, AGENT_T_PORT, &v) == 0 && v <= 65535 ? (int)v : 0;
	s->ready = agent_frame_u64(f, AGENT_T_READY, &v) == 0 && v != 0;
}

static void ch_error(struct agent_channel *ch, const struct agent_frame *f)
{
	uint64_t code = 0;
	const uint8_t *m = NULL;
	uint32_t mlen = 0;
	agent_frame_u64(f, AGENT_T_CODE, &code);
	agent_frame_bytes(f, AGENT_T_MESSAGE, &m, &mlen);
	char msg[512];
	snprintf(msg, sizeof(msg), "%.*s", (int)mlen, m ? (const char *)m : "");
	if (!msg[0])
		snprintf(msg, sizeof(msg), "%s",
			 f->type == AGENT_SPAWN_FAILED ? "spawn failed" : "agent error");
	struct agent_sub *sub = ch_find_sub(ch, f);
	if (sub) {
		sub->state = SUB_DONE;
		if (sub->ops->error)
			sub->ops->error(sub->arg, (int)code, msg);
		return;
	}
	struct agent_list_req *l = ch_find_list(ch, f);
	if (l) {
		channel_list_finish(l, msg, (int)code);
		return;
	}
	uint64_t tag;
	struct agent_fs *fs = agent_frame_u64(f, AGENT_T_TAG, &tag) == 0 ? channel_fs_find(ch, tag) : NULL;
	if (fs) {
		fs->state = FSR_DONE;
		if (fs->ops->error)
			fs->ops->error(fs->arg, (int)code, msg);
		return;
	}
	struct agent_tcp *t = agent_frame_u64(f, AGENT_T_TAG, &tag) == 0 ? channel_tcp_find(ch, tag) : NULL;
	if (t) {
		channel_tcp_fail(t, (int)code, msg);
		channel_tcp_deliver(t);
		return;
	}
	log_msg(LOG_LEVEL_WARN, ch->log_prefix, "agent: %s about command %u: %s",
		agent_msg_type_name(f->type), f->id, msg);
}
