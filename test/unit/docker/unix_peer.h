/* The scripted peer the Docker client's tests talk to: a listening unix
 * socket under /tmp, named after the test and its pid, and a client of it. */
#ifndef SANDBAR_TEST_UNIX_PEER_H
#define SANDBAR_TEST_UNIX_PEER_H

#include <event2/listener.h>

struct docker;

struct unix_peer {
	struct evconnlistener *listener;
	struct docker *docker; /* connects to the listener */
	char path[108];
};

/* Fails the test when the socket cannot be made. */
void unix_peer_open(struct unix_peer *p, struct event_base *base, const char *name,
		    evconnlistener_cb accept_cb);
void unix_peer_close(struct unix_peer *p);

#endif
