/* The request side of a channel: spawns, subscriptions, acks, the
 * fire-and-forget command requests and lists. Each builds a frame and sends it
 * (or queues it until the channel is ready); errors found here are delivered
 * on the next loop pass, never on the caller's stack. */
#include "channel_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static struct agent_sub *sub_new(struct agent_channel *ch, const struct agent_sub_ops *ops, void *arg);
static void send_simple(struct agent_channel *ch, uint8_t type, uint32_t cmd_id, struct agent_msg *m);
static struct agent_sub *subscribe(struct agent_channel *ch, uint32_t cmd_id, uint64_t offset,
				   uint32_t window, bool lossless, const struct agent_sub_ops *ops,
				   void *arg);

static struct agent_sub *sub_new(struct agent_channel *ch, const struct agent_sub_ops *ops, void *arg)
{
	struct agent_sub *sub = calloc(1, sizeof(*sub));
	CHECK(sub != NULL);
	sub->ch = ch;
	sub->tag = ch->next_tag++;
	sub->ops = ops;
	sub->arg = arg;
	sub->err_code = -1;
	TAILQ_INSERT_TAIL(&ch->subs, sub, link);
	return sub;
}

void channel_sub_free(struct agent_sub *sub)
{
	TAILQ_REMOVE(&sub->ch->subs, sub, link);
	free(sub->err_msg);
	free(sub);
}

void channel_list_free(struct agent_channel *ch, struct agent_list_req *l)
{
	TAILQ_REMOVE(&ch->lists, l, link);
	free(l->items);
	free(l->err);
	free(l);
}

int channel_send(struct agent_channel *ch, struct agent_msg *m)
{
	if (ch->state == CH_READY) {
		bufferevent_write(ch->bev, m->buf, m->len);
		return 0;
	}
	if (evbuffer_get_length(ch->queue) + m->len > CHANNEL_QUEUE_MAX)
		return -1;
	evbuffer_add(ch->queue, m->buf, m->len);
	channel_kick(ch);
	return 0;
}

void channel_send_subscribe(struct agent_channel *ch, struct agent_sub *sub)
{
	CHECK(ch->state == CH_READY);
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_SUBSCRIBE, 0, sub->cmd_id);
	agent_msg_u64(&m, AGENT_T_TAG, sub->tag);
	agent_msg_u64(&m, AGENT_T_OFFSET, sub->delivered);
	agent_msg_u64(&m, AGENT_T_WINDOW, sub->window);
	if (sub->lossless)
		agent_msg_u64(&m, AGENT_T_LOSSLESS, 1);
	CHECK(agent_msg_end(&m) == 0);
	bufferevent_write(ch->bev, m.buf, m.len);
	agent_msg_free(&m);
	sub->subscribed = true;
}

void channel_send_list(struct agent_channel *ch, struct agent_list_req *l)
{
	CHECK(ch->state == CH_READY);
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_LIST, 0, 0);
	agent_msg_u64(&m, AGENT_T_TAG, l->tag);
	CHECK(agent_msg_end(&m) == 0);
	bufferevent_write(ch->bev, m.buf, m.len);
	agent_msg_free(&m);
	l->sent = true;
	l->n = 0; /* a list sent again starts over */
}

struct agent_sub *agent_spawn(struct agent_channel *ch, const struct agent_spawn_req *req,
			      const struct agent_sub_ops *ops, void *arg)
{
	struct agent_sub *sub = sub_new(ch, ops, arg);
	sub->spawn = true;
	sub->window = req->window;
	sub->lossless = req->lossless && req->window > 0;
	sub->state = SUB_QUEUED;
	if (ch->state == CH_CLOSED) {
		channel_sub_fail(sub, ESRCH, "sandbox gone");
		return sub;
	}
	if (!req->argv || !req->argv[0] || !req->argv[0][0]) {
		channel_sub_fail(sub, EINVAL, "empty command");
		return sub;
	}
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_SPAWN, 0, 0);
	agent_msg_u64(&m, AGENT_T_TAG, sub->tag);
	for (size_t i = 0; req->argv[i]; i++)
		agent_msg_str(&m, AGENT_T_ARGV, req->argv[i]);
	for (size_t i = 0; req->env && req->env[i]; i++)
		agent_msg_str(&m, AGENT_T_ENV, req->env[i]);
	if (req->cwd)
		agent_msg_str(&m, AGENT_T_CWD, req->cwd);
	if (req->user)
		agent_msg_str(&m, AGENT_T_USER, req->user);
	if (req->pty_rows > 0 && req->pty_cols > 0) {
		agent_msg_u64(&m, AGENT_T_PTY_ROWS, (uint64_t)req->pty_rows);
		agent_msg_u64(&m, AGENT_T_PTY_COLS, (uint64_t)req->pty_cols);
	}
	agent_msg_u64(&m, AGENT_T_STDIN_OPEN, req->stdin_open ? 1 : 0);
	agent_msg_u64(&m, AGENT_T_TIMEOUT_MS, req->timeout_ms > 0 ? (uint64_t)req->timeout_ms : 0);
	agent_msg_u64(&m, AGENT_T_GRACE_MS, req->grace_ms > 0 ? (uint64_t)req->grace_ms : 0);
	if (req->ring_bytes)
		agent_msg_u64(&m, AGENT_T_RING_BYTES, req->ring_bytes);
	agent_msg_u64(&m, AGENT_T_WINDOW, req->window);
	if (sub->lossless)
		agent_msg_u64(&m, AGENT_T_LOSSLESS, 1);
	if (agent_msg_end(&m) != 0)
		channel_sub_fail(sub, E2BIG, "the command (argv and env) is too large");
	else if (channel_send(ch, &m) != 0)
		channel_sub_fail(sub, ENOBUFS, "too many requests waiting for the sandbox agent");
	else if (ch->state == CH_READY)
		sub->state = SUB_SENT;
	agent_msg_free(&m);
	return sub;
}

struct agent_sub *agent_subscribe(struct agent_channel *ch, uint32_t cmd_id, uint64_t offset, uint32_t window,
				  const struct agent_sub_ops *ops, void *arg)
{
	return subscribe(ch, cmd_id, offset, window, false, ops, arg);
}

struct agent_sub *agent_subscribe_lossless(struct agent_channel *ch, uint32_t cmd_id, uint64_t offset,
					   uint32_t window, const struct agent_sub_ops *ops, void *arg)
{
	return subscribe(ch, cmd_id, offset, window, true, ops, arg);
}

static struct agent_sub *subscribe(struct agent_channel *ch, uint32_t cmd_id, uint64_t offset,
				   uint32_t window, bool lossless, const struct agent_sub_ops *ops, void *arg)
{
	struct agent_sub *sub = sub_new(ch, ops, arg);
	sub->lossless = lossless;
	sub->state = SUB_ACTIVE;
	sub->cmd_id = cmd_id;
	sub->delivered = offset;
	sub->window = window;
	if (ch->state == CH_CLOSED)
		channel_sub_fail(sub, ESRCH, "sandbox gone");
	else if (window == 0)
		channel_sub_fail(sub, EINVAL, "a subscription needs a window");
	else if (ch->state == CH_READY)
		channel_send_subscribe(ch, sub);
	else
		channel_kick(ch); /* subscribed once ready */
	return sub;
}

void agent_sub_ack(struct agent_sub *sub, uint64_t offset)
{
	struct agent_channel *ch = sub->ch;
	/* without a live subscription the next SUBSCRIBE carries the offset */
	if (sub->state != SUB_ACTIVE || !sub->subscribed || ch->state != CH_READY)
		return;
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_ACK, 0, sub->cmd_id);
	agent_msg_u64(&m, AGENT_T_TAG, sub->tag);
	agent_msg_u64(&m, AGENT_T_OFFSET, offset);
	CHECK(agent_msg_end(&m) == 0);
	bufferevent_write(ch->bev, m.buf, m.len);
	agent_msg_free(&m);
}

void agent_sub_close(struct agent_sub *sub)
{
	struct agent_channel *ch = sub->ch;
	if (sub->state == SUB_DONE)
		return;
	/* a queued SPAWN will still subscribe: the UNSUBSCRIBE follows it in the queue */
	bool live = sub->window > 0 && !sub->err_msg &&
		    (sub->state == SUB_QUEUED || (sub->state == SUB_SENT && ch->state == CH_READY) ||
		     (sub->state == SUB_ACTIVE && sub->subscribed));
	sub->state = SUB_DONE;
	if (live) {
		struct agent_msg m;
		agent_msg_init(&m);
		agent_msg_begin(&m, AGENT_UNSUBSCRIBE, 0, sub->cmd_id);
		agent_msg_u64(&m, AGENT_T_TAG, sub->tag);
		CHECK(agent_msg_end(&m) == 0);
		if (channel_send(ch, &m) != 0)
			log_msg(LOG_LEVEL_WARN, ch->log_prefix, "queue full: UNSUBSCRIBE dropped");
		agent_msg_free(&m);
	}
	if (ch->busy == 0 && ch->state != CH_CLOSED)
		channel_sub_free(sub);
	else
		channel_defer(ch); /* freed after the callbacks on the stack return */
}

static void send_simple(struct agent_channel *ch, uint8_t type, uint32_t cmd_id, struct agent_msg *m)
{
	if (ch->state == CH_CLOSED) {
		log_msg(LOG_LEVEL_DEBUG, ch->log_prefix, "%s after the sandbox was dropped",
			agent_msg_type_name(type));
		return;
	}
	if (agent_msg_end(m) != 0 || channel_send(ch, m) != 0)
		log_msg(LOG_LEVEL_WARN, ch->log_prefix, "%s for command %u dropped: too large or queue full",
			agent_msg_type_name(type), cmd_id);
}

void agent_stdin(struct agent_channel *ch, uint32_t cmd_id, const void *data, size_t len)
{
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_STDIN, 0, cmd_id);
	agent_msg_bytes(&m, AGENT_T_DATA, data, len);
	send_simple(ch, AGENT_STDIN, cmd_id, &m);
	agent_msg_free(&m);
}

void agent_stdin_close(struct agent_channel *ch, uint32_t cmd_id)
{
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_STDIN_CLOSE, 0, cmd_id);
	send_simple(ch, AGENT_STDIN_CLOSE, cmd_id, &m);
	agent_msg_free(&m);
}

void agent_signal(struct agent_channel *ch, uint32_t cmd_id, int signo)
{
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_SIGNAL, 0, cmd_id);
	agent_msg_u64(&m, AGENT_T_SIGNO, (uint64_t)signo);
	send_simple(ch, AGENT_SIGNAL, cmd_id, &m);
	agent_msg_free(&m);
}

void agent_resize(struct agent_channel *ch, uint32_t cmd_id, int rows, int cols)
{
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_RESIZE, 0, cmd_id);
	agent_msg_u64(&m, AGENT_T_PTY_ROWS, (uint64_t)rows);
	agent_msg_u64(&m, AGENT_T_PTY_COLS, (uint64_t)cols);
	send_simple(ch, AGENT_RESIZE, cmd_id, &m);
	agent_msg_free(&m);
}

void agent_forget(struct agent_channel *ch, uint32_t cmd_id)
{
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_FORGET, 0, cmd_id);
	send_simple(ch, AGENT_FORGET, cmd_id, &m);
	agent_msg_free(&m);
}

void agent_list(struct agent_channel *ch, agent_list_fn cb, void *arg)
{
	struct agent_list_req *l = calloc(1, sizeof(*l));
	CHECK(l != NULL);
	l->tag = ch->next_tag++;
	l->cb = cb;
	l->arg = arg;
	TAILQ_INSERT_TAIL(&ch->lists, l, link);
	if (ch->state == CH_CLOSED) {
		l->err = strdup("sandbox gone");
		channel_defer(ch);
	} else if (ch->state == CH_READY) {
		channel_send_list(ch, l);
	} else {
		channel_kick(ch);
	}
}

size_t agent_channel_pending(const struct agent_channel *ch)
{
	size_t n = evbuffer_get_length(ch->queue);
	if (ch->bev)
		n += evbuffer_get_length(bufferevent_get_output(ch->bev));
	return n;
}
