/* Bufferevent helpers shared by the HTTP server and the Docker client. */
#ifndef SANDBAR_CORE_BEV_H
#define SANDBAR_CORE_BEV_H

#include <stddef.h>

#include <event2/bufferevent.h>

/* libevent 2.1 reads at most this much per readiness (EVBUFFER_MAX_READ). */
#define BEV_LIBEVENT_READ 4096

/* After a full BEV_LIBEVENT_READ the socket may hold more: takes it in one
 * readv of up to room bytes into bev's input. EOF and errors are left for
 * libevent's next read to report. */
void bev_read_more(struct bufferevent *bev, size_t room);

#endif
