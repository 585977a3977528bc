/* The request side of a channel: spawns, subscriptions, acks, the
 * fire-and-forget command requests, lists and file requests. Each builds a frame and sends it
 * (or queues it until the channel is ready); errors found here are delivered
 * on the next loop pass, never on the caller's stack. */
#include "channel_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static struct agent_sub *sub_new(struct agent_channel *ch, const struct agent_sub_ops *ops, void *arg);
static void send_simple(struct agent_channel *ch, uint8_t type, uint32_t cmd_id, struct agent_msg *m);
static void send_ack(struct agent_sub *sub, uint64_t offset, bool quiet);
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
	if (sub->held)
		evbuffer_free(sub->held);
	free(sub->err_msg);
	free(sub);
}

static const char services_too_old[] = "the sandbox's agent predates services: recreate the sandbox";

void channel_sub_release(struct agent_sub *sub)
{
	struct agent_channel *ch = sub->ch;
	CHECK(ch->state == CH_READY && sub->held);
	if (!sub->err_msg && !(ch->agent_features & AGENT_FEATURE_SERVICES)) {
		channel_sub_fail(sub, ENOTSUP, services_too_old);
	} else if (!sub->err_msg) {
		bufferevent_write_buffer(ch->bev, sub->held);
		sub->state = SUB_SENT;
	}
	evbuffer_free(sub->held);
	sub->held = NULL;
}

void channel_list_free(struct agent_channel *ch, struct agent_list_req *l)
{
	TAILQ_REMOVE(&ch->lists, l, link);
	free(l->items);
	free(l->err);
	free(l->service);
	free(l);
}

void channel_list_finish(struct agent_list_req *l, const char *err, int code)
{
	l->done = true;
	if (l->type == AGENT_UNSERVICE)
		l->unservice_cb(err ? code : 0, err, !err && l->kept, err ? 0 : l->pid, l->arg);
	else
		l->cb(err ? NULL : l->items, err ? 0 : l->n, err, l->arg);
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
	if (sub->quiet)
		agent_msg_u64(&m, AGENT_T_QUIET, 1);
	CHECK(agent_msg_end(&m) == 0);
	bufferevent_write(ch->bev, m.buf, m.len);
	agent_msg_free(&m);
	sub->subscribed = true;
}

void channel_send_list(struct agent_channel *ch, struct agent_list_req *l)
{
	CHECK(ch->state == CH_READY);
	if (l->type == AGENT_UNSERVICE && !(ch->agent_features & AGENT_FEATURE_SERVICES)) {
		l->err = strdup(services_too_old);
		l->err_code = ENOTSUP;
		CHECK(l->err != NULL);
		channel_defer(ch);
		return;
	}
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, l->type, 0, 0);
	agent_msg_u64(&m, AGENT_T_TAG, l->tag);
	if (l->service)
		agent_msg_str(&m, AGENT_T_SERVICE, l->service);
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
	if (req->shell) {
		agent_msg_str(&m, AGENT_T_SHELL, req->shell);
		if (req->login)
			agent_msg_u64(&m, AGENT_T_LOGIN, 1);
	}
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
	if (req->service)
		agent_msg_str(&m, AGENT_T_SERVICE, req->service);
	if (req->port > 0)
		agent_msg_u64(&m, AGENT_T_PORT, (uint64_t)req->port);
	if (agent_msg_end(&m) != 0) {
		channel_sub_fail(sub, E2BIG, "the command (argv and env) is too large");
	} else if (req->service && ch->state == CH_READY && !(ch->agent_features & AGENT_FEATURE_SERVICES)) {
		channel_sub_fail(sub, ENOTSUP, services_too_old);
	} else if (req->service && ch->state != CH_READY) {
		/* an older agent would run it as a plain command: held until
		 * its WELCOME says what it knows */
		sub->held = evbuffer_new();
		CHECK(sub->held != NULL);
		evbuffer_add(sub->held, m.buf, m.len);
		channel_kick(ch);
	} else if (channel_send(ch, &m) != 0)
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
	send_ack(sub, offset, false);
}

void agent_sub_quiet(struct agent_sub *sub)
{
	if (sub->state == SUB_DONE || sub->quiet)
		return;
	sub->quiet = true;
	sub->lossless = false;
	/* an older agent reads a plain ACK of everything it sent */
	send_ack(sub, UINT64_MAX, true);
}

static void send_ack(struct agent_sub *sub, uint64_t offset, bool quiet)
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
	if (quiet)
		agent_msg_u64(&m, AGENT_T_QUIET, 1);
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
	bool held = sub->held != NULL; /* never sent: nothing to undo at the agent */
	if (held) {
		evbuffer_free(sub->held);
		sub->held = NULL;
	}
	sub->state = SUB_DONE;
	if (live && !held) {
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

static struct agent_list_req *list_new(struct agent_channel *ch, uint8_t type, void *arg)
{
	struct agent_list_req *l = calloc(1, sizeof(*l));
	CHECK(l != NULL);
	l->type = type;
	l->tag = ch->next_tag++;
	l->arg = arg;
	TAILQ_INSERT_TAIL(&ch->lists, l, link);
	return l;
}

/* Sends a new list or unservice now, or once the channel is ready. */
static void list_start(struct agent_channel *ch, struct agent_list_req *l)
{
	if (ch->state == CH_CLOSED) {
		l->err = strdup("sandbox gone");
		channel_defer(ch);
	} else if (ch->state == CH_READY) {
		channel_send_list(ch, l);
	} else {
		channel_kick(ch);
	}
}

void agent_list(struct agent_channel *ch, agent_list_fn cb, void *arg)
{
	struct agent_list_req *l = list_new(ch, AGENT_LIST, arg);
	l->cb = cb;
	list_start(ch, l);
}

void agent_unservice(struct agent_channel *ch, const char *service, agent_unservice_fn cb, void *arg)
{
	struct agent_list_req *l = list_new(ch, AGENT_UNSERVICE, arg);
	l->unservice_cb = cb;
	l->service = strdup(service);
	CHECK(l->service != NULL);
	list_start(ch, l);
}

size_t agent_channel_pending(const struct agent_channel *ch)
{
	size_t n = evbuffer_get_length(ch->queue);
	if (ch->bev)
		n += evbuffer_get_length(bufferevent_get_output(ch->bev));
	return n;
}

/* ---- files ---- */

static struct agent_fs *fs_new(struct agent_channel *ch, bool stream, const struct agent_fs_ops *ops,
			       void *arg);
static void fs_start(struct agent_fs *fs, struct agent_msg *m);
static void fs_send(struct agent_fs *fs, struct agent_msg *m);
static bool fs_supported(const struct agent_fs *fs);

static struct agent_fs *fs_new(struct agent_channel *ch, bool stream, const struct agent_fs_ops *ops,
			       void *arg)
{
	struct agent_fs *fs = calloc(1, sizeof(*fs));
	CHECK(fs != NULL);
	fs->ch = ch;
	fs->tag = ch->next_tag++;
	fs->stream = stream;
	fs->out = evbuffer_new();
	CHECK(fs->out != NULL);
	fs->err_code = -1;
	fs->ops = ops;
	fs->arg = arg;
	fs->state = FSR_HELD;
	fs->needs = AGENT_FEATURE_FS;
	TAILQ_INSERT_TAIL(&ch->fsreqs, fs, link);
	return fs;
}

void channel_fs_free(struct agent_fs *fs)
{
	TAILQ_REMOVE(&fs->ch->fsreqs, fs, link);
	evbuffer_free(fs->out);
	free(fs->err_msg);
	free(fs);
}

struct agent_fs *channel_fs_find(struct agent_channel *ch, uint64_t tag)
{
	struct agent_fs *fs;
	TAILQ_FOREACH(fs, &ch->fsreqs, link)
	if (fs->tag == tag)
		return fs->state == FSR_DONE || fs->err_msg ? NULL : fs;
	return NULL;
}

void channel_fs_fail(struct agent_fs *fs, int code, const char *msg)
{
	if (fs->state == FSR_DONE || fs->err_msg)
		return;
	fs->err_code = code;
	fs->err_msg = strdup(msg);
	CHECK(fs->err_msg != NULL);
	evbuffer_drain(fs->out, evbuffer_get_length(fs->out));
	channel_defer(fs->ch);
}

static const char fs_too_old[] = "the sandbox's agent predates the file API: recreate the sandbox";

static bool fs_supported(const struct agent_fs *fs)
{
	return (fs->ch->agent_features & fs->needs) == fs->needs;
}

void channel_fs_ready(struct agent_channel *ch)
{
	CHECK(ch->state == CH_READY);
	struct agent_fs *fs;
	TAILQ_FOREACH(fs, &ch->fsreqs, link)
	{
		if (fs->state != FSR_HELD || fs->err_msg)
			continue;
		if (!fs_supported(fs)) {
			channel_fs_fail(fs, ENOTSUP, fs_too_old);
			continue;
		}
		fs->state = FSR_SENT;
		bufferevent_write_buffer(ch->bev, fs->out);
	}
}

void channel_fs_break(struct agent_channel *ch, int code, const char *msg)
{
	struct agent_fs *fs;
	TAILQ_FOREACH(fs, &ch->fsreqs, link)
	if (fs->state == FSR_SENT || (code != EPIPE && fs->state == FSR_HELD))
		channel_fs_fail(fs, code, msg);
}

/* The first frame of a request: out at once, held until READY, or failed. */
static void fs_start(struct agent_fs *fs, struct agent_msg *m)
{
	struct agent_channel *ch = fs->ch;
	if (agent_msg_end(m) != 0) {
		channel_fs_fail(fs, E2BIG, "the request is too large for one frame");
		return;
	}
	if (ch->state == CH_CLOSED) {
		channel_fs_fail(fs, ESRCH, "sandbox gone");
	} else if (ch->state == CH_READY && !fs_supported(fs)) {
		channel_fs_fail(fs, ENOTSUP, fs_too_old);
	} else if (ch->state == CH_READY) {
		fs->state = FSR_SENT;
		bufferevent_write(ch->bev, m->buf, m->len);
	} else {
		evbuffer_add(fs->out, m->buf, m->len);
		channel_kick(ch);
	}
}

/* A later frame of a stream: after the first one, in order. */
static void fs_send(struct agent_fs *fs, struct agent_msg *m)
{
	if (fs->state == FSR_DONE || fs->err_msg)
		return;
	CHECK(agent_msg_end(m) == 0);
	if (fs->state == FSR_SENT)
		bufferevent_write(fs->ch->bev, m->buf, m->len);
	else
		evbuffer_add(fs->out, m->buf, m->len);
}

struct agent_fs *agent_fs_op(struct agent_channel *ch, const struct agent_fs_req *req,
			     const struct agent_fs_ops *ops, void *arg)
{
	struct agent_fs *fs = fs_new(ch, false, ops, arg);
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_FS, 0, 0);
	agent_msg_u64(&m, AGENT_T_TAG, fs->tag);
	agent_msg_u64(&m, AGENT_T_OP, (uint64_t)req->op);
	agent_msg_str(&m, AGENT_T_PATH, req->path);
	if (req->path2)
		agent_msg_str(&m, AGENT_T_PATH2, req->path2);
	if (req->user)
		agent_msg_str(&m, AGENT_T_USER, req->user);
	if (req->mode)
		agent_msg_u64(&m, AGENT_T_MODE, req->mode);
	if (req->flags)
		agent_msg_u64(&m, AGENT_T_FLAGS, req->flags);
	if (req->depth)
		agent_msg_u64(&m, AGENT_T_DEPTH, req->depth);
	if (req->limit)
		agent_msg_u64(&m, AGENT_T_LIMIT, req->limit);
	if (req->old_text)
		agent_msg_bytes(&m, AGENT_T_DATA, req->old_text, req->old_len);
	if (req->new_text)
		agent_msg_bytes(&m, AGENT_T_DATA2, req->new_text, req->new_len);
	if (req->has_size) {
		agent_msg_u64(&m, AGENT_T_SIZE, req->size);
		fs->needs |= AGENT_FEATURE_FS_MOVE_SIZE;
	}
	fs_start(fs, &m);
	agent_msg_free(&m);
	return fs;
}

struct agent_fs *agent_fs_read(struct agent_channel *ch, const char *path, const char *user, uint64_t offset,
			       uint64_t length, uint32_t flags, uint32_t window,
			       const struct agent_fs_ops *ops, void *arg)
{
	struct agent_fs *fs = fs_new(ch, true, ops, arg);
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_FS_READ, 0, 0);
	agent_msg_u64(&m, AGENT_T_TAG, fs->tag);
	agent_msg_str(&m, AGENT_T_PATH, path);
	if (user)
		agent_msg_str(&m, AGENT_T_USER, user);
	agent_msg_u64(&m, AGENT_T_OFFSET, offset);
	if (length != UINT64_MAX)
		agent_msg_u64(&m, AGENT_T_LENGTH, length);
	if (flags)
		agent_msg_u64(&m, AGENT_T_FLAGS, flags);
	agent_msg_u64(&m, AGENT_T_WINDOW, window);
	fs_start(fs, &m);
	agent_msg_free(&m);
	return fs;
}

void agent_fs_ack(struct agent_fs *fs, uint64_t offset)
{
	if (fs->state != FSR_SENT || fs->err_msg)
		return;
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_FS_ACK, 0, 0);
	agent_msg_u64(&m, AGENT_T_TAG, fs->tag);
	agent_msg_u64(&m, AGENT_T_OFFSET, offset);
	fs_send(fs, &m);
	agent_msg_free(&m);
}

struct agent_fs *agent_fs_write(struct agent_channel *ch, const char *path, const char *user, uint32_t mode,
				uint32_t flags, const struct agent_fs_ops *ops, void *arg)
{
	struct agent_fs *fs = fs_new(ch, true, ops, arg);
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_FS_WRITE, 0, 0);
	agent_msg_u64(&m, AGENT_T_TAG, fs->tag);
	agent_msg_str(&m, AGENT_T_PATH, path);
	if (user)
		agent_msg_str(&m, AGENT_T_USER, user);
	agent_msg_u64(&m, AGENT_T_MODE, mode);
	if (flags)
		agent_msg_u64(&m, AGENT_T_FLAGS, flags);
	fs_start(fs, &m);
	agent_msg_free(&m);
	return fs;
}

void agent_fs_write_data(struct agent_fs *fs, const void *data, size_t len)
{
	size_t chunk = AGENT_FRAME_MAX - 64;
	for (size_t at = 0; at < len; at += chunk) {
		struct agent_msg m;
		agent_msg_init(&m);
		agent_msg_begin(&m, AGENT_FS_DATA, 0, 0);
		agent_msg_u64(&m, AGENT_T_TAG, fs->tag);
		agent_msg_bytes(&m, AGENT_T_DATA, (const uint8_t *)data + at,
				len - at < chunk ? len - at : chunk);
		fs_send(fs, &m);
		agent_msg_free(&m);
	}
}

void agent_fs_commit(struct agent_fs *fs)
{
	struct agent_msg m;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_FS_COMMIT, 0, 0);
	agent_msg_u64(&m, AGENT_T_TAG, fs->tag);
	fs_send(fs, &m);
	agent_msg_free(&m);
	fs->finished = true;
}

size_t agent_fs_pending(const struct agent_fs *fs)
{
	return evbuffer_get_length(fs->out) + agent_channel_pending(fs->ch);
}

void agent_fs_close(struct agent_fs *fs)
{
	struct agent_channel *ch = fs->ch;
	if (fs->state == FSR_DONE)
		return;
	if (fs->stream && fs->state == FSR_SENT && !fs->err_msg && ch->state == CH_READY) {
		struct agent_msg m;
		agent_msg_init(&m);
		agent_msg_begin(&m, AGENT_FS_CLOSE, 0, 0);
		agent_msg_u64(&m, AGENT_T_TAG, fs->tag);
		fs_send(fs, &m);
		agent_msg_free(&m);
	}
	fs->state = FSR_DONE;
	if (ch->busy == 0 && ch->state != CH_CLOSED)
		channel_fs_free(fs);
	else
		channel_defer(ch);
}

/* Answers to file requests, by TAG (late ones for a closed request are dropped). */
void channel_fs_frame(struct agent_channel *ch, const struct agent_frame *f)
{
	uint64_t tag, v;
	if (agent_frame_u64(f, AGENT_T_TAG, &tag) != 0)
		return;
	struct agent_fs *fs = channel_fs_find(ch, tag);
	if (!fs)
		return;
	if (f->type == AGENT_FS_DATA) {
		const uint8_t *data = NULL;
		uint32_t len = 0;
		if (agent_frame_u64(f, AGENT_T_OFFSET, &v) == 0 &&
		    agent_frame_bytes(f, AGENT_T_DATA, &data, &len) == 0 && fs->ops->data)
			fs->ops->data(fs->arg, v, data, len);
		return;
	}
	if (f->type == AGENT_FS_DONE) {
		struct agent_fs_done d = { 0 };
		agent_frame_u64(f, AGENT_T_SIZE, &d.size);
		agent_frame_u64(f, AGENT_T_COUNT, &d.count);
		d.truncated = agent_frame_u64(f, AGENT_T_TRUNCATED, &v) == 0 && v != 0;
		d.created = agent_frame_u64(f, AGENT_T_CREATED, &v) == 0 && v != 0;
		fs->state = FSR_DONE;
		if (fs->ops->done)
			fs->ops->done(fs->arg, &d);
		return;
	}
	struct agent_fs_entry e = { 0 };
	char path[4097];
	const uint8_t *p = NULL;
	uint32_t plen = 0;
	if (agent_frame_bytes(f, AGENT_T_PATH, &p, &plen) == 0 && plen < sizeof(path)) {
		memcpy(path, p, plen);
		path[plen] = '\0';
		e.path = path;
	}
	agent_frame_u64(f, AGENT_T_SIZE, &e.size);
	if (agent_frame_u64(f, AGENT_T_MODE, &v) == 0)
		e.mode = (uint32_t)v;
	if (agent_frame_u64(f, AGENT_T_MTIME, &v) == 0)
		e.mtime_ms = (int64_t)v;
	if (agent_frame_u64(f, AGENT_T_UID, &v) == 0)
		e.uid = (uint32_t)v;
	if (agent_frame_u64(f, AGENT_T_GID, &v) == 0)
		e.gid = (uint32_t)v;
	e.link = agent_frame_u64(f, AGENT_T_LINK, &v) == 0 && v != 0;
	agent_frame_u64(f, AGENT_T_OFFSET, &e.offset);
	agent_frame_u64(f, AGENT_T_LENGTH, &e.length);
	uint32_t hl = 0;
	if (agent_frame_bytes(f, AGENT_T_DATA, &e.head, &hl) == 0)
		e.head_len = hl;
	if (fs->ops->entry)
		fs->ops->entry(fs->arg, &e);
}
