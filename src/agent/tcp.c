/* TCP streams: the agent's end of a TCP connection to a port inside the
 * sandbox, carried over its protocol connection. Bytes from the socket go out
 * while sandbard's window has room and the connection is under its high
 * watermark; bytes from sandbard wait in a buffer no larger than the window
 * the agent gave, acknowledged as the socket takes them. */
#include "tcp.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "core/check.h"
#include "core/log.h"

enum tcp_state { TCP_CONNECTING, TCP_OPEN, TCP_CLOSED, TCP_STATE_MAX };

struct tcp_stream {
	struct tcp_stream *next;
	uint8_t tag[AGENT_TAG_MAX];
	uint32_t tag_len;
	enum tcp_state state;
	int fd;
	uint16_t port;
	/* socket -> sandbard */
	uint32_t window;      /* sandbard's */
	uint64_t sent, acked; /* DATA bytes sent; acknowledged by sandbard */
	bool rd_eof;	      /* the socket's EOF came (TCP_SHUT sent) */
	/* sandbard -> socket */
	uint8_t *buf;
	size_t len, off;
	uint64_t written, ack_sent; /* bytes written to the socket; acknowledged to sandbard */
	bool peer_shut;		    /* sandbard's TCP_SHUT came */
	bool wr_shut;		    /* shutdown(SHUT_WR) done */
};

static void tcp_set_state(struct tcp_stream *s, enum tcp_state to, const char *why);
static struct tcp_stream *tcp_find(struct conn *c, const struct agent_req *r);
static void tcp_open(struct agent *a, struct conn *c, const struct agent_req *r);
static void tcp_send_close(struct conn *c, const uint8_t *tag, uint32_t tag_len, int code, const char *msg);
static void tcp_fail(struct agent *a, struct conn *c, struct tcp_stream *s, int code);
static void tcp_drop(struct agent *a, struct tcp_stream *s);
static void tcp_data(struct agent *a, struct conn *c, struct tcp_stream *s, const struct agent_req *r);
static void tcp_write(struct agent *a, struct conn *c, struct tcp_stream *s);
static void tcp_read(struct agent *a, struct conn *c, struct tcp_stream *s);
static void tcp_ack(struct conn *c, struct tcp_stream *s);
static void tcp_maybe_done(struct agent *a, struct conn *c, struct tcp_stream *s);
static void msg_tag(struct conn *c, const struct tcp_stream *s);

static const char *const state_names[TCP_STATE_MAX] = { "connecting", "open", "closed" };

static void tcp_set_state(struct tcp_stream *s, enum tcp_state to, const char *why)
{
	static const bool legal[TCP_STATE_MAX][TCP_STATE_MAX] = {
		[TCP_CONNECTING][TCP_OPEN] = true,
		[TCP_CONNECTING][TCP_CLOSED] = true,
		[TCP_OPEN][TCP_CLOSED] = true,
	};
	CHECK(legal[s->state][to]);
	log_debug("tcp %u: %s -> %s (%s)", (unsigned)s->port, state_names[s->state], state_names[to], why);
	s->state = to;
}

static void msg_tag(struct conn *c, const struct tcp_stream *s)
{
	agent_msg_bytes(&c->out, AGENT_T_TAG, s->tag, s->tag_len);
}

static void tcp_send_close(struct conn *c, const uint8_t *tag, uint32_t tag_len, int code, const char *msg)
{
	agent_msg_begin(&c->out, AGENT_TCP_CLOSE, 0, 0);
	agent_msg_bytes(&c->out, AGENT_T_TAG, tag, tag_len);
	if (code) {
		agent_msg_u64(&c->out, AGENT_T_CODE, (uint64_t)code);
		agent_msg_str(&c->out, AGENT_T_MESSAGE, msg);
	}
	CHECK(agent_msg_end(&c->out) == 0);
}

static struct tcp_stream *tcp_find(struct conn *c, const struct agent_req *r)
{
	for (struct tcp_stream *s = c->tcp; s; s = s->next) {
		if (s->state != TCP_CLOSED && s->tag_len == r->tag_len &&
		    memcmp(s->tag, r->tag, r->tag_len) == 0)
			return s;
	}
	return NULL;
}

/* Closed: the socket goes now, the object after the loop pass. */
static void tcp_drop(struct agent *a, struct tcp_stream *s)
{
	if (s->state == TCP_CLOSED)
		return;
	tcp_set_state(s, TCP_CLOSED, "dropped");
	close(s->fd);
	s->fd = -1;
	a->tcp_open--;
}

static void tcp_fail(struct agent *a, struct conn *c, struct tcp_stream *s, int code)
{
	tcp_send_close(c, s->tag, s->tag_len, code, strerror(code));
	tcp_drop(a, s);
}

static void tcp_open(struct agent *a, struct conn *c, const struct agent_req *r)
{
	if (tcp_find(c, r)) {
		tcp_send_close(c, r->tag, r->tag_len, EEXIST, "TAG already in use");
		return;
	}
	if (a->tcp_open >= AGENT_TCP_STREAMS_MAX) {
		tcp_send_close(c, r->tag, r->tag_len, EMFILE, "too many TCP streams");
		return;
	}
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		tcp_send_close(c, r->tag, r->tag_len, errno, strerror(errno));
		return;
	}
	int one = 1; /* bytes go on as they come: no Nagle wait on a proxied request */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_port = htons(r->port),
				  .sin_addr = { htonl(INADDR_LOOPBACK) } };
	int rc = connect(fd, (const struct sockaddr *)&sa, sizeof(sa));
	if (rc != 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		tcp_send_close(c, r->tag, r->tag_len, e, strerror(e));
		return;
	}
	struct tcp_stream *s = calloc(1, sizeof(*s));
	CHECK(s != NULL);
	memcpy(s->tag, r->tag, r->tag_len);
	s->tag_len = r->tag_len;
	s->fd = fd;
	s->port = r->port;
	s->window = r->has_window && r->window ? r->window : AGENT_TCP_WINDOW;
	s->state = TCP_CONNECTING;
	s->next = c->tcp;
	c->tcp = s;
	a->tcp_open++;
	if (rc == 0)
		tcp_io(a, c, s, POLLOUT);
}

void tcp_handle(struct agent *a, struct conn *c, const struct agent_req *r)
{
	if (r->type == AGENT_TCP_OPEN) {
		tcp_open(a, c, r);
		return;
	}
	struct tcp_stream *s = tcp_find(c, r);
	if (!s)
		return; /* it ended while this frame was on the way */
	switch (r->type) {
	case AGENT_TCP_DATA:
		tcp_data(a, c, s, r);
		break;
	case AGENT_TCP_ACK:
		if (r->offset > s->acked)
			s->acked = r->offset < s->sent ? r->offset : s->sent;
		break;
	case AGENT_TCP_SHUT:
		s->peer_shut = true;
		if (s->state == TCP_OPEN)
			tcp_write(a, c, s);
		break;
	case AGENT_TCP_CLOSE:
		tcp_drop(a, s);
		break;
	default:
		break;
	}
}

static void tcp_data(struct agent *a, struct conn *c, struct tcp_stream *s, const struct agent_req *r)
{
	if (s->peer_shut || s->len - s->off + r->data_len > AGENT_TCP_WINDOW) {
		tcp_fail(a, c, s, s->peer_shut ? EPIPE : ENOBUFS); /* past the window we gave */
		return;
	}
	if (r->data_len == 0)
		return;
	if (s->off > 0) {
		memmove(s->buf, s->buf + s->off, s->len - s->off);
		s->len -= s->off;
		s->off = 0;
	}
	if (!s->buf) {
		s->buf = malloc(AGENT_TCP_WINDOW);
		CHECK(s->buf != NULL);
	}
	memcpy(s->buf + s->len, r->data, r->data_len);
	s->len += r->data_len;
	if (s->state == TCP_OPEN)
		tcp_write(a, c, s);
}

/* What sandbard may send again: an ACK once a quarter of the window went to
 * the socket, or all of it. */
static void tcp_ack(struct conn *c, struct tcp_stream *s)
{
	if (s->written == s->ack_sent || (s->written - s->ack_sent < AGENT_TCP_WINDOW / 4 && s->off < s->len))
		return;
	agent_msg_begin(&c->out, AGENT_TCP_ACK, 0, 0);
	msg_tag(c, s);
	agent_msg_u64(&c->out, AGENT_T_OFFSET, s->written);
	CHECK(agent_msg_end(&c->out) == 0);
	s->ack_sent = s->written;
}

static void tcp_write(struct agent *a, struct conn *c, struct tcp_stream *s)
{
	while (s->off < s->len) {
		ssize_t n = send(s->fd, s->buf + s->off, s->len - s->off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			s->off += (size_t)n;
			s->written += (uint64_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		tcp_fail(a, c, s, n < 0 ? errno : EPIPE);
		return;
	}
	if (s->off == s->len)
		s->off = s->len = 0;
	tcp_ack(c, s);
	if (s->peer_shut && s->len == 0 && !s->wr_shut) {
		shutdown(s->fd, SHUT_WR);
		s->wr_shut = true;
	}
	tcp_maybe_done(a, c, s);
}

static void tcp_read(struct agent *a, struct conn *c, struct tcp_stream *s)
{
	static uint8_t buf[TCP_READ_CHUNK];
	while (!s->rd_eof && s->state == TCP_OPEN && s->sent - s->acked < s->window &&
	       c->out.len - c->out_off < CONN_OUT_HIGH) {
		uint64_t room = s->window - (s->sent - s->acked);
		size_t want = room < sizeof(buf) ? (size_t)room : sizeof(buf);
		ssize_t n = recv(s->fd, buf, want, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			tcp_fail(a, c, s, errno);
			return;
		}
		if (n == 0) {
			s->rd_eof = true;
			agent_msg_begin(&c->out, AGENT_TCP_SHUT, 0, 0);
			msg_tag(c, s);
			CHECK(agent_msg_end(&c->out) == 0);
			tcp_maybe_done(a, c, s);
			return;
		}
		agent_msg_begin(&c->out, AGENT_TCP_DATA, 0, 0);
		msg_tag(c, s);
		agent_msg_bytes(&c->out, AGENT_T_DATA, buf, (size_t)n);
		CHECK(agent_msg_end(&c->out) == 0);
		s->sent += (uint64_t)n;
	}
}

/* Both ways over: the stream ends with a clean TCP_CLOSE. */
static void tcp_maybe_done(struct agent *a, struct conn *c, struct tcp_stream *s)
{
	if (s->state != TCP_OPEN || !s->rd_eof || !s->wr_shut)
		return;
	tcp_send_close(c, s->tag, s->tag_len, 0, NULL);
	tcp_drop(a, s);
}

short tcp_events(const struct conn *c, const struct tcp_stream *s)
{
	if (s->state == TCP_CONNECTING)
		return POLLOUT;
	if (s->state != TCP_OPEN)
		return 0;
	short ev = 0;
	if (!s->rd_eof && s->sent - s->acked < s->window && c->out.len - c->out_off < CONN_OUT_HIGH)
		ev |= POLLIN;
	if (s->off < s->len)
		ev |= POLLOUT;
	return ev;
}

int tcp_fd(const struct tcp_stream *s)
{
	return s->fd;
}

struct tcp_stream *tcp_next(const struct tcp_stream *s)
{
	return s->next;
}

void tcp_io(struct agent *a, struct conn *c, struct tcp_stream *s, short revents)
{
	if (c->state != CONN_OPEN)
		return;
	if (s->state == TCP_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			err = errno;
		if (err == 0 && (revents & POLLERR))
			err = ECONNREFUSED;
		if (err != 0) {
			tcp_fail(a, c, s, err);
			return;
		}
		if (!(revents & POLLOUT))
			return;
		tcp_set_state(s, TCP_OPEN, "connected");
		agent_msg_begin(&c->out, AGENT_TCP_OPENED, 0, 0);
		msg_tag(c, s);
		agent_msg_u64(&c->out, AGENT_T_WINDOW, AGENT_TCP_WINDOW);
		CHECK(agent_msg_end(&c->out) == 0);
		tcp_write(a, c, s); /* DATA (or a SHUT) that came before the connect finished */
		return;
	}
	if (s->state == TCP_OPEN && (revents & POLLOUT))
		tcp_write(a, c, s);
	if (s->state == TCP_OPEN && (revents & (POLLIN | POLLHUP | POLLERR)))
		tcp_read(a, c, s);
}

void tcp_reap(struct agent *a, struct conn *c)
{
	for (struct tcp_stream **pp = &c->tcp; *pp;) {
		struct tcp_stream *s = *pp;
		if (c->state == CONN_OPEN && s->state != TCP_CLOSED) {
			pp = &s->next;
			continue;
		}
		tcp_drop(a, s);
		*pp = s->next;
		free(s->buf);
		free(s);
	}
}
