/* The preview benchmark's upstream: a small static HTTP/1.1 app run in a
 * sandbox (and, as the baseline, in a plain container), fast enough that
 * the proxy in front of it is what is measured. One thread, epoll, keep-alive.
 * GET /big/N answers N bytes; anything else answers "hello, world\n". Usage:
 * static_app PORT */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FD 65536
#define IN_MAX 16384

struct conn {
	char in[IN_MAX];
	size_t in_len;
	char head[256]; /* the answer's head (and a hello's body) */
	size_t head_len, head_off;
	unsigned long long body_left; /* of a /big answer */
};

static const char HELLO[] = "hello, world\n";
static char zeros[65536];
static struct conn *conns[MAX_FD];
static int ep;

static void conn_close(int fd)
{
	free(conns[fd]);
	conns[fd] = NULL;
	close(fd);
}

static void want(int fd, bool out)
{
	struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0), .data.fd = fd };
	epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

/* Writes what is pending; false when the connection is gone. */
static bool flush(int fd, struct conn *c)
{
	while (c->head_off < c->head_len || c->body_left) {
		ssize_t n;
		if (c->head_off < c->head_len) {
			n = write(fd, c->head + c->head_off, c->head_len - c->head_off);
			if (n > 0) {
				c->head_off += (size_t)n;
				continue;
			}
		} else {
			size_t len = c->body_left < sizeof(zeros) ? (size_t)c->body_left : sizeof(zeros);
			n = write(fd, zeros, len);
			if (n > 0) {
				c->body_left -= (unsigned long long)n;
				continue;
			}
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			want(fd, true);
			return true;
		}
		return false;
	}
	want(fd, false);
	return true;
}

/* Answers every complete request head in the input, one at a time. */
static bool serve(int fd, struct conn *c)
{
	while (c->head_off == c->head_len && !c->body_left) {
		char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
		if (!end)
			return c->in_len < IN_MAX;
		size_t used = (size_t)(end - c->in) + 4;
		unsigned long long big = 0;
		bool is_big = strncmp(c->in, "GET /big/", 9) == 0;
		if (is_big)
			big = strtoull(c->in + 9, NULL, 10);
		c->head_len = (size_t)snprintf(
			c->head, sizeof(c->head),
			"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %llu\r\n\r\n%s",
			is_big ? "application/octet-stream" : "text/plain",
			is_big ? big : (unsigned long long)(sizeof(HELLO) - 1), is_big ? "" : HELLO);
		c->head_off = 0;
		c->body_left = big;
		memmove(c->in, c->in + used, c->in_len - used);
		c->in_len -= used;
		if (!flush(fd, c))
			return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: static_app PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	int one = 1;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])) };
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 4096) != 0) {
		perror("static_app: listen");
		return 1;
	}
	ep = epoll_create1(0);
	struct epoll_event lev = { .events = EPOLLIN, .data.fd = lfd };
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
	struct epoll_event evs[256];
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == lfd) {
				int cfd;
				while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					if (cfd >= MAX_FD || !(conns[cfd] = calloc(1, sizeof(struct conn)))) {
						close(cfd);
						continue;
					}
					setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					struct epoll_event ev = { .events = EPOLLIN, .data.fd = cfd };
					epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev);
				}
				continue;
			}
			struct conn *c = conns[fd];
			if (!c)
				continue;
			bool ok = true;
			if (evs[i].events & EPOLLOUT)
				ok = flush(fd, c);
			if (ok && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
				ssize_t r = read(fd, c->in + c->in_len, IN_MAX - c->in_len);
				if (r > 0) {
					c->in_len += (size_t)r;
					ok = true;
				} else {
					ok = r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
				}
			}
			if (ok)
				ok = serve(fd, c);
			if (!ok)
				conn_close(fd);
		}
	}
}
