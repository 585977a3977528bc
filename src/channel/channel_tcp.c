/* TCP streams on a channel: a connection the agent opens to a port inside the
 * sandbox, bytes both ways under a window each way (ours: what the consumer
 * has not taken yet; the agent's: what it has not written to the socket yet),
 * half-closes, and an end that is either clean or an errno. Frames go out only
 * on a READY stream; a broken one ends the streams it carried. */
#include "channel_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define TCP_DATA_CHUNK (64u * 1024) /* DATA bytes per TCP_DATA frame */

static void tcp_send(struct agent_tcp *t, struct agent_msg *m);
static void tcp_send_open(struct agent_tcp *t);
static void tcp_flush(struct agent_tcp *t);
static void tcp_maybe_writable(struct agent_tcp *t);
static bool tcp_supported(const struct agent_channel *ch);

static const char tcp_too_old[] = "the sandbox's agent predates TCP streams: recreate the sandbox";

static bool tcp_supported(const struct agent_channel *ch)
{
	return (ch->agent_features & AGENT_FEATURE_TCP) != 0;
}

/* A frame about t (built whole by the caller) on the READY stream. */
static void tcp_send(struct agent_tcp *t, struct agent_msg *m)
{
	CHECK(agent_msg_end(m) == 0);
	bufferevent_write(t->ch->bev, m->buf, m->len);
}

static void tcp_send_open(struct agent_tcp *t)
{
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_TCP_OPEN, 0, 0);
	agent_msg_u64(&m, AGENT_T_TAG, t->tag);
	agent_msg_u64(&m, AGENT_T_PORT, (uint64_t)t->port);
	agent_msg_u64(&m, AGENT_T_WINDOW, t->window);
	tcp_send(t, &m);
	agent_msg_free(&m);
	t->state = TCPR_OPENING;
}

struct agent_tcp *agent_tcp_open(struct agent_channel *ch, int port, uint32_t window,
				 const struct agent_tcp_ops *ops, void *arg)
{
	struct agent_tcp *t = calloc(1, sizeof(*t));
	CHECK(t != NULL);
	t->ch = ch;
	t->tag = ch->next_tag++;
	t->port = port;
	t->window = window ? window : AGENT_TCP_WINDOW;
	t->out = evbuffer_new();
	CHECK(t->out != NULL);
	t->err_code = -1;
	t->ops = ops;
	t->arg = arg;
	t->state = TCPR_HELD;
	TAILQ_INSERT_TAIL(&ch->tcps, t, link);
	if (ch->state == CH_CLOSED)
		channel_tcp_fail(t, ESRCH, "sandbox gone");
	else if (port <= 0 || port > 65535)
		channel_tcp_fail(t, EINVAL, "no such port");
	else if (ch->state == CH_READY && !tcp_supported(ch))
		channel_tcp_fail(t, ENOTSUP, tcp_too_old);
	else if (ch->state == CH_READY)
		tcp_send_open(t);
	else
		channel_kick(ch);
	return t;
}

void channel_tcp_free(struct agent_tcp *t)
{
	TAILQ_REMOVE(&t->ch->tcps, t, link);
	evbuffer_free(t->out);
	free(t->err_msg);
	free(t);
}

struct agent_tcp *channel_tcp_find(struct agent_channel *ch, uint64_t tag)
{
	struct agent_tcp *t;
	TAILQ_FOREACH(t, &ch->tcps, link)
	if (t->tag == tag)
		return t->state == TCPR_DONE || t->err_msg ? NULL : t;
	return NULL;
}

void channel_tcp_fail(struct agent_tcp *t, int code, const char *msg)
{
	if (t->state == TCPR_DONE || t->err_msg)
		return;
	t->err_code = code;
	t->err_msg = strdup(msg);
	CHECK(t->err_msg != NULL);
	channel_defer(t->ch);
}

void channel_tcp_deliver(struct agent_tcp *t)
{
	if (t->state == TCPR_DONE || !t->err_msg)
		return;
	t->state = TCPR_DONE;
	if (t->ops->closed)
		t->ops->closed(t->arg, t->err_code, t->err_msg);
}

void channel_tcp_ready(struct agent_channel *ch)
{
	CHECK(ch->state == CH_READY);
	struct agent_tcp *t;
	TAILQ_FOREACH(t, &ch->tcps, link)
	{
		if (t->state != TCPR_HELD || t->err_msg)
			continue;
		if (tcp_supported(ch))
			tcp_send_open(t);
		else
			channel_tcp_fail(t, ENOTSUP, tcp_too_old);
	}
}

void channel_tcp_break(struct agent_channel *ch, int code, const char *msg, bool held_too)
{
	struct agent_tcp *t;
	TAILQ_FOREACH(t, &ch->tcps, link)
	if (t->state == TCPR_OPENING || t->state == TCPR_OPEN || (held_too && t->state == TCPR_HELD))
		channel_tcp_fail(t, code, msg);
}

/* Queued bytes out as the agent's window allows, then our SHUT after them. */
static void tcp_flush(struct agent_tcp *t)
{
	if (t->state != TCPR_OPEN || t->err_msg || t->ch->state != CH_READY)
		return;
	size_t have;
	while ((have = evbuffer_get_length(t->out)) > 0 && t->sent - t->peer_acked < t->peer_window) {
		uint64_t room = t->peer_window - (t->sent - t->peer_acked);
		size_t n = have < room ? have : (size_t)room;
		if (n > TCP_DATA_CHUNK)
			n = TCP_DATA_CHUNK;
		struct agent_msg m;
		agent_msg_init(&m);
		agent_msg_begin(&m, AGENT_TCP_DATA, 0, 0);
		agent_msg_u64(&m, AGENT_T_TAG, t->tag);
		agent_msg_bytes(&m, AGENT_T_DATA, evbuffer_pullup(t->out, (ssize_t)n), n);
		tcp_send(t, &m);
		agent_msg_free(&m);
		evbuffer_drain(t->out, n);
		t->sent += n;
	}
	if (t->shut_wanted && !t->shut_sent && evbuffer_get_length(t->out) == 0) {
		struct agent_msg m;
		agent_msg_init(&m);
		agent_msg_begin(&m, AGENT_TCP_SHUT, 0, 0);
		agent_msg_u64(&m, AGENT_T_TAG, t->tag);
		tcp_send(t, &m);
		agent_msg_free(&m);
		t->shut_sent = true;
	}
}

/* From the agent's frames only, never on a writer's stack. */
static void tcp_maybe_writable(struct agent_tcp *t)
{
	if (!t->paused || t->state != TCPR_OPEN || evbuffer_get_length(t->out) >= AGENT_TCP_WINDOW)
		return;
	t->paused = false;
	if (t->ops->writable)
		t->ops->writable(t->arg);
}

int agent_tcp_write(struct agent_tcp *t, const void *data, size_t len)
{
	if (t->state == TCPR_DONE || t->err_msg || t->shut_wanted)
		return -1;
	evbuffer_add(t->out, data, len);
	tcp_flush(t);
	if (evbuffer_get_length(t->out) >= AGENT_TCP_WINDOW) {
		t->paused = true;
		return 1;
	}
	return 0;
}

void agent_tcp_shut(struct agent_tcp *t)
{
	if (t->state == TCPR_DONE || t->err_msg)
		return;
	t->shut_wanted = true;
	tcp_flush(t);
}

void agent_tcp_consumed(struct agent_tcp *t, size_t len)
{
	t->consumed += len;
	if (t->consumed > t->received)
		t->consumed = t->received;
	if (t->state != TCPR_OPEN || t->err_msg || t->ch->state != CH_READY || t->consumed == t->ack_sent)
		return;
	/* a quarter of the window at a time, or everything the agent sent */
	if (t->consumed - t->ack_sent < t->window / 4 && t->consumed < t->received)
		return;
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_TCP_ACK, 0, 0);
	agent_msg_u64(&m, AGENT_T_TAG, t->tag);
	agent_msg_u64(&m, AGENT_T_OFFSET, t->consumed);
	tcp_send(t, &m);
	agent_msg_free(&m);
	t->ack_sent = t->consumed;
}

void agent_tcp_close(struct agent_tcp *t)
{
	struct agent_channel *ch = t->ch;
	if (t->state == TCPR_DONE)
		return;
	if ((t->state == TCPR_OPENING || t->state == TCPR_OPEN) && !t->err_msg && ch->state == CH_READY) {
		struct agent_msg m;
		agent_msg_init(&m);
		agent_msg_begin(&m, AGENT_TCP_CLOSE, 0, 0);
		agent_msg_u64(&m, AGENT_T_TAG, t->tag);
		tcp_send(t, &m);
		agent_msg_free(&m);
	}
	t->state = TCPR_DONE;
	if (ch->busy == 0 && ch->state != CH_CLOSED)
		channel_tcp_free(t);
	else
		channel_defer(ch);
}

/* Frames from the agent about a stream, by TAG (late ones for an ended stream
 * are dropped). Callbacks run with the channel busy: a close inside is safe. */
void channel_tcp_frame(struct agent_channel *ch, const struct agent_frame *f)
{
	uint64_t tag, v;
	if (agent_frame_u64(f, AGENT_T_TAG, &tag) != 0)
		return;
	struct agent_tcp *t = channel_tcp_find(ch, tag);
	if (!t)
		return;
	switch (f->type) {
	case AGENT_TCP_OPENED:
		if (t->state != TCPR_OPENING)
			return;
		t->state = TCPR_OPEN;
		t->peer_window = agent_frame_u64(f, AGENT_T_WINDOW, &v) == 0 && v > 0 && v <= UINT32_MAX
					 ? (uint32_t)v
					 : AGENT_TCP_WINDOW;
		if (t->ops->opened)
			t->ops->opened(t->arg);
		tcp_flush(t);
		tcp_maybe_writable(t);
		return;
	case AGENT_TCP_DATA: {
		const uint8_t *data = NULL;
		uint32_t len = 0;
		if (t->state != TCPR_OPEN || t->ended ||
		    agent_frame_bytes(f, AGENT_T_DATA, &data, &len) != 0 || len == 0)
			return;
		t->received += len;
		if (t->ops->data)
			t->ops->data(t->arg, data, len);
		return;
	}
	case AGENT_TCP_ACK:
		if (t->state != TCPR_OPEN || agent_frame_u64(f, AGENT_T_OFFSET, &v) != 0)
			return;
		if (v > t->peer_acked)
			t->peer_acked = v < t->sent ? v : t->sent;
		tcp_flush(t);
		tcp_maybe_writable(t);
		return;
	case AGENT_TCP_SHUT:
		if (t->state != TCPR_OPEN || t->ended)
			return;
		t->ended = true;
		if (t->ops->end)
			t->ops->end(t->arg);
		return;
	case AGENT_TCP_CLOSE: {
		uint64_t code = 0;
		const uint8_t *m = NULL;
		uint32_t mlen = 0;
		agent_frame_u64(f, AGENT_T_CODE, &code);
		agent_frame_bytes(f, AGENT_T_MESSAGE, &m, &mlen);
		char msg[256];
		snprintf(msg, sizeof(msg), "%.*s", (int)mlen, m ? (const char *)m : "");
		if (!msg[0])
			snprintf(msg, sizeof(msg), "%s", code ? strerror((int)code) : "closed");
		log_msg(LOG_LEVEL_DEBUG, ch->log_prefix, "tcp stream to port %d closed: %s", t->port, msg);
		t->state = TCPR_DONE;
		if (t->ops->closed)
			t->ops->closed(t->arg, (int)code, msg);
		return;
	}
	default:
		return;
	}
}
