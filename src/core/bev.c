/* Reading past libevent 2.1's 4 KiB per wake-up: big transfers otherwise pay
 * an epoll_wait, an ioctl and a readv for every 4 KiB. */
#include "core/bev.h"

#include <sys/uio.h>

#include <event2/buffer.h>

void bev_read_more(struct bufferevent *bev, size_t room)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v[2];
	evbuffer_unfreeze(in, 0); /* the bufferevent keeps its input's end frozen */
	int n = evbuffer_reserve_space(in, (ev_ssize_t)room, v, 2);
	if (n < 1) {
		evbuffer_freeze(in, 0);
		return;
	}
	ssize_t got = readv(bufferevent_getfd(bev), (struct iovec *)v, n);
	size_t left = got > 0 ? (size_t)got : 0;
	int used = 0;
	for (; used < n && left > 0; used++) {
		if (v[used].iov_len > left)
			v[used].iov_len = left;
		left -= v[used].iov_len;
	}
	evbuffer_commit_space(in, v, used);
	evbuffer_freeze(in, 0);
}
