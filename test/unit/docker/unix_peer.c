/* The scripted peer's socket and the client of it, for the client tests. */
#include "unix_peer.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "docker/client.h"

void unix_peer_open(struct unix_peer *p, struct event_base *base, const char *name,
		    evconnlistener_cb accept_cb)
{
	snprintf(p->path, sizeof(p->path), "/tmp/sandbar-%s-%d.sock", name, (int)getpid());
	unlink(p->path);
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	memcpy(sun.sun_path, p->path, strlen(p->path) + 1);
	p->listener = evconnlistener_new_bind(base, accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE, 16,
					      (struct sockaddr *)&sun, sizeof(sun));
	assert_non_null(p->listener);
	char host[128];
	snprintf(host, sizeof(host), "unix://%s", p->path);
	p->docker = docker_new(base, host);
	assert_non_null(p->docker);
}

void unix_peer_close(struct unix_peer *p)
{
	docker_free(p->docker);
	evconnlistener_free(p->listener);
	unlink(p->path);
	memset(p, 0, sizeof(*p));
}
