/* The listening side: binds, accepts (over the connection cap: 503 and
 * close), owns the connection list, and runs the graceful shutdown. */
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/check.h"
#include "core/log.h"
#include "http/server.h"
#include "internal.h"

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
		      void *arg);
static void accept_error_cb(struct evconnlistener *l, void *arg);
static void deadline_cb(evutil_socket_t fd, short what, void *arg);
static void done_cb(evutil_socket_t fd, short what, void *arg);
static int split_addr(const char *addr, char *host, size_t hostcap, char *port, size_t portcap);

void http_server_set_error_renderer(struct http_server *srv, http_error_render_fn fn, void *arg)
{
	srv->render_error = fn;
	srv->render_arg = arg;
}

struct http_server *http_server_new(struct event_base *base, const struct http_server_limits *limits,
				    http_dispatch_fn dispatch, void *arg)
{
	struct http_server *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return NULL;
	srv->base = base;
	if (limits)
		srv->lim = *limits;
	if (!srv->lim.max_header_bytes)
		srv->lim.max_header_bytes = 16 * 1024;
	if (!srv->lim.max_body_bytes)
		srv->lim.max_body_bytes = 1024 * 1024;
	if (srv->lim.header_timeout_ms <= 0)
		srv->lim.header_timeout_ms = 10000;
	if (srv->lim.body_timeout_ms <= 0)
		srv->lim.body_timeout_ms = 60000;
	if (srv->lim.idle_timeout_ms <= 0)
		srv->lim.idle_timeout_ms = 60000;
	if (srv->lim.max_connections <= 0)
		srv->lim.max_connections = 1024;
	srv->dispatch = dispatch;
	srv->arg = arg;
	srv->port = -1;
	TAILQ_INIT(&srv->conns);
	uint64_t seed = 0;
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
	}
	srv->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
	srv->done_ev = event_new(base, -1, 0, done_cb, srv);
	srv->deadline = evtimer_new(base, deadline_cb, srv);
	if (!srv->done_ev || !srv->deadline) {
		http_server_free(srv);
		return NULL;
	}
	return srv;
}

/* xorshift64*: request ids need to be unique-ish and cheap, not secret. */
uint64_t server_random(struct http_server *srv)
{
	uint64_t x = srv->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	srv->rng = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static int split_addr(const char *addr, char *host, size_t hostcap, char *port, size_t portcap)
{
	const char *colon;
	const char *h = addr;
	size_t hlen;
	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');
		if (!end || end[1] != ':')
			return -1;
		h = addr + 1;
		hlen = (size_t)(end - h);
		colon = end + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			return -1;
		hlen = (size_t)(colon - addr);
	}
	size_t plen = strlen(colon + 1);
	if (hlen >= hostcap || plen == 0 || plen >= portcap)
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	memcpy(port, colon + 1, plen + 1);
	return 0;
}

int http_server_listen(struct http_server *srv, const char *addr)
{
	char host[256], port[16];
	if (srv->listener || split_addr(addr, host, sizeof(host), port, sizeof(port)) != 0) {
		errno = EINVAL;
		return -1;
	}
	struct addrinfo hints = { 0 }, *res = NULL;
	hints.ai_family = host[0] ? AF_UNSPEC : AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	/* Start-up only: resolving a name here may block, the loop is not running. */
	int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc != 0) {
		log_error("http: cannot resolve %s: %s", addr, gai_strerror(rc));
		errno = EINVAL;
		return -1;
	}
	srv->listener = evconnlistener_new_bind(
		srv->base, accept_cb, srv, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
		511, res->ai_addr, (int)res->ai_addrlen);
	freeaddrinfo(res);
	if (!srv->listener) {
		int e = errno;
		log_error("http: cannot listen on %s: %s", addr, strerror(e));
		errno = e;
		return -1;
	}
	evconnlistener_set_error_cb(srv->listener, accept_error_cb);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(evconnlistener_get_fd(srv->listener), (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			srv->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	log_info("http: listening on %s (port %d)", addr, srv->port);
	return 0;
}

int http_server_port(const struct http_server *srv)
{
	return srv->port;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct http_server *srv = arg;
	if (srv->shutting_down) {
		evutil_closesocket(fd);
		return;
	}
	bool over = srv->nconns >= srv->lim.max_connections;
	if (!conn_new(srv, fd, over))
		log_warn("http: out of memory accepting a connection");
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	/* EMFILE and friends: log and keep going, the listener stays enabled. */
	int e = EVUTIL_SOCKET_ERROR();
	log_warn("http: accept failed: %s", evutil_socket_error_to_string(e));
}

void http_server_shutdown(struct http_server *srv, int64_t deadline_ms, void (*done)(void *arg), void *arg)
{
	if (srv->shutting_down)
		return;
	srv->shutting_down = true;
	srv->done = done;
	srv->done_arg = arg;
	if (srv->listener)
		evconnlistener_disable(srv->listener);
	struct http_conn *c, *next;
	for (c = TAILQ_FIRST(&srv->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		conn_shutdown(c);
	}
	struct timeval tv = { deadline_ms / 1000, (deadline_ms % 1000) * 1000 };
	evtimer_add(srv->deadline, &tv);
	server_conn_gone(srv);
}

void server_conn_gone(struct http_server *srv)
{
	if (srv->shutting_down && TAILQ_EMPTY(&srv->conns))
		event_active(srv->done_ev, EV_TIMEOUT, 0);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *srv = arg;
	struct http_conn *c;
	TAILQ_FOREACH(c, &srv->conns, link)
	conn_force_close(c);
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *srv = arg;
	if (!TAILQ_EMPTY(&srv->conns) || !srv->done)
		return;
	evtimer_del(srv->deadline);
	void (*done)(void *) = srv->done;
	srv->done = NULL;
	done(srv->done_arg);
}

void http_server_free(struct http_server *srv)
{
	if (!srv)
		return;
	struct http_conn *c;
	while ((c = TAILQ_FIRST(&srv->conns)) != NULL) {
		conn_force_close(c);
		conn_destroy(c);
	}
	if (srv->listener)
		evconnlistener_free(srv->listener);
	if (srv->deadline)
		event_free(srv->deadline);
	if (srv->done_ev)
		event_free(srv->done_ev);
	free(srv);
}
