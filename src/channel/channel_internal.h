/* Private to src/channel: the channel object, its subscriptions and list
 * requests, shared by the connection state machine (channel.c), the request
 * side (channel_req.c) and the registry (channels.c); and the entry the unit
 * tests use to run a channel over a bufferevent of their own. */
#ifndef SANDBAR_CHANNEL_INTERNAL_H
#define SANDBAR_CHANNEL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "docker/demux.h"
#include "channel/channel.h"

#define CHANNEL_QUEUE_MAX	 (4u << 20) /* bytes of requests waiting for READY */
#define CHANNEL_BACKOFF_MIN_MS	 100
#define CHANNEL_BACKOFF_MAX_MS	 5000
#define CHANNEL_MAX_ATTEMPTS	 8     /* consecutive failed connects before giving up */
#define CHANNEL_HELLO_TIMEOUT_MS 10000 /* exec start + WELCOME */

enum channel_state {
	CH_IDLE,       /* nothing to do, no connection */
	CH_CONNECTING, /* exec create */
	CH_STARTING,   /* exec start, hijacked */
	CH_HELLO,      /* HELLO sent, waiting for WELCOME */
	CH_READY,
	CH_BACKOFF, /* the stream broke: waiting before the next attempt */
	CH_CLOSED,  /* dropped: callbacks being delivered, then freed */
	CH_STATE_MAX
};

enum sub_state {
	SUB_QUEUED, /* spawn: its SPAWN is in the queue, not sent */
	SUB_SENT,   /* spawn: SPAWN written, no STARTED yet */
	SUB_ACTIVE, /* the command is known (cmd_id) */
	SUB_DONE,   /* finished or closed: no more callbacks, freed when the channel is not busy */
	SUB_STATE_MAX
};

struct agent_sub {
	TAILQ_ENTRY(agent_sub) link;
	struct agent_channel *ch;
	enum sub_state state;
	uint64_t tag;
	uint32_t cmd_id;
	uint32_t window;
	bool spawn;
	bool lossless;	    /* sent with every SUBSCRIBE (and the SPAWN) */
	bool quiet;	    /* no output wanted, only the exit: sent with every SUBSCRIBE */
	bool subscribed;    /* a SUBSCRIBE (or the spawn's own) is live on the current stream */
	uint64_t delivered; /* offset after the last byte handed to the consumer */
	int err_code;	    /* >= 0 with err_msg: an error waiting for the deferred pass */
	char *err_msg;
	struct evbuffer *held; /* a service's SPAWN, until READY says whether the agent has services */
	const struct agent_sub_ops *ops;
	void *arg;
};

/* An idempotent request answered once: a LIST (STATUS... LIST_END) or an
 * UNSERVICE (UNSERVICED). Sent again on the next stream when one broke. */
struct agent_list_req {
	TAILQ_ENTRY(agent_list_req) link;
	uint8_t type; /* AGENT_LIST, AGENT_UNSERVICE */
	uint64_t tag;
	bool sent; /* on the current stream */
	bool done;
	char *err; /* waiting for the deferred pass */
	int err_code;
	struct agent_status *items;
	size_t n, cap;
	char *service; /* UNSERVICE */
	bool kept;     /* UNSERVICED */
	int pid;
	agent_list_fn cb;
	agent_unservice_fn unservice_cb;
	void *arg;
};

enum fs_req_state {
	FSR_HELD, /* frames kept in out until the channel is READY with the features needed */
	FSR_SENT, /* on the current stream */
	FSR_DONE, /* no more callbacks; freed when the channel is not busy */
	FSR_STATE_MAX
};

struct agent_fs {
	TAILQ_ENTRY(agent_fs) link;
	struct agent_channel *ch;
	enum fs_req_state state;
	uint64_t tag;
	bool stream;	      /* a read or write: FS_CLOSE when closed early */
	bool finished;	      /* a write committed: no FS_CLOSE */
	uint64_t needs;	      /* AGENT_FEATURE_* the agent must have announced */
	struct evbuffer *out; /* held frames */
	int err_code;	      /* >= 0 with err_msg: an error waiting for the deferred pass */
	char *err_msg;
	const struct agent_fs_ops *ops;
	void *arg;
};

enum tcp_req_state {
	TCPR_HELD,    /* waiting for READY (and the feature) */
	TCPR_OPENING, /* TCP_OPEN sent on the current stream */
	TCPR_OPEN,    /* TCP_OPENED came */
	TCPR_DONE,    /* no more callbacks; freed when the channel is not busy */
	TCPR_STATE_MAX
};

struct agent_tcp {
	TAILQ_ENTRY(agent_tcp) link;
	struct agent_channel *ch;
	enum tcp_req_state state;
	uint64_t tag;
	int port;
	uint32_t window; /* the agent's sends past our consumed bytes (ours) */
	uint64_t received, consumed, ack_sent;
	uint32_t peer_window; /* ours to the agent (its TCP_OPENED) */
	uint64_t sent, peer_acked;
	struct evbuffer *out;	     /* bytes for the app not yet sent */
	bool shut_wanted, shut_sent; /* our EOF */
	bool ended;		     /* the agent's TCP_SHUT came */
	bool paused;		     /* a write answered 1: writable when room again */
	int err_code;		     /* >= 0 with err_msg: closed waiting for the deferred pass */
	char *err_msg;
	const struct agent_tcp_ops *ops;
	void *arg;
};

TAILQ_HEAD(sub_list, agent_sub);
TAILQ_HEAD(tcp_req_list, agent_tcp);
TAILQ_HEAD(list_req_list, agent_list_req);
TAILQ_HEAD(fs_req_list, agent_fs);

/* How a channel reaches its agent: the Docker exec by default; tests plug in
 * their own and answer with channel_transport_ready / channel_transport_failed. */
struct channel_transport {
	void (*connect)(struct agent_channel *ch, void *arg);
	void *arg;
};

struct agent_channel {
	TAILQ_ENTRY(agent_channel) link; /* in the registry */
	struct channels *chs;		 /* NULL for a test channel */
	struct event_base *base;
	struct docker *docker;
	struct channel_transport transport; /* connect NULL: Docker */
	char *sandbox_id, *container;
	char log_prefix[48];
	enum channel_state state;
	struct docker_call *call; /* exec create or start in flight */
	struct bufferevent *bev;
	struct docker_demux dm;
	struct evbuffer *in;	  /* agent bytes (the relay's stdout), demultiplexed */
	struct evbuffer *errtext; /* the relay's stderr, logged by line */
	struct evbuffer *queue;	  /* frames waiting for READY */
	struct event *timer;	  /* back-off, handshake timeout */
	struct event *defer;	  /* deferred callbacks and frees */
	struct sub_list subs;
	struct list_req_list lists;
	struct fs_req_list fsreqs;
	struct tcp_req_list tcps;
	uint64_t agent_features; /* AGENT_FEATURE_* of the agent's WELCOME */
	uint64_t next_tag;
	int attempts; /* failed connects since the last READY */
	int max_attempts;
	int backoff_ms;
	int busy; /* callbacks on the stack: free nothing */
	int64_t agent_pid, agent_started_at;
	char *fatal; /* the channel gave up: why (the next request tries again) */
};

/* channel.c: the connection */
struct agent_channel *channel_new(struct event_base *base, struct docker *docker, const char *sandbox_id,
				  const char *container);
/* Every sub and list gets error(msg) on the next loop pass, then the channel is freed. */
void channel_close(struct agent_channel *ch, const char *msg);
/* Frees at once, no callbacks (shutdown). */
void channel_destroy(struct agent_channel *ch);
/* A request needs the connection: connect when idle. */
void channel_kick(struct agent_channel *ch);
/* Writes a frame (READY) or queues it; -1 when the queue is full. */
int channel_send(struct agent_channel *ch, struct agent_msg *m);
void channel_send_subscribe(struct agent_channel *ch, struct agent_sub *sub);
void channel_send_list(struct agent_channel *ch, struct agent_list_req *l);
/* Arms the deferred pass (errors, frees). */
void channel_defer(struct agent_channel *ch);
void channel_sub_fail(struct agent_sub *sub, int code, const char *msg);
void channel_sub_free(struct agent_sub *sub);
/* A service's SPAWN held until READY: sent now, or failed (ENOTSUP). */
void channel_sub_release(struct agent_sub *sub);
void channel_list_free(struct agent_channel *ch, struct agent_list_req *l);
/* A list or unservice answered (err NULL) or failed: done, its callback called. */
void channel_list_finish(struct agent_list_req *l, const char *err, int code);
/* channels.c: a sandbox's agent may run what no channel saw (the reset hook). */
void channels_reset(struct channels *chs, const char *sandbox_id);
/* Files (channel_req.c): held requests go out (or fail) once READY; sent
 * ones fail when the stream breaks; frames from the agent are routed here. */
void channel_fs_ready(struct agent_channel *ch);
void channel_fs_break(struct agent_channel *ch, int code, const char *msg);
void channel_fs_fail(struct agent_fs *fs, int code, const char *msg);
void channel_fs_free(struct agent_fs *fs);
struct agent_fs *channel_fs_find(struct agent_channel *ch, uint64_t tag);
void channel_fs_frame(struct agent_channel *ch, const struct agent_frame *f);
const char *channel_state_name(enum channel_state s);
/* TCP streams (channel_tcp.c), as files above: held ones go out once READY,
 * open ones end when the stream breaks, frames from the agent come here. */
void channel_tcp_ready(struct agent_channel *ch);
void channel_tcp_break(struct agent_channel *ch, int code, const char *msg, bool held_too);
void channel_tcp_fail(struct agent_tcp *t, int code, const char *msg);
void channel_tcp_free(struct agent_tcp *t);
struct agent_tcp *channel_tcp_find(struct agent_channel *ch, uint64_t tag);
void channel_tcp_frame(struct agent_channel *ch, const struct agent_frame *f);
/* Delivers a stream's pending close (from the deferred pass). */
void channel_tcp_deliver(struct agent_tcp *t);

/* Tests: a channel with its own transport. */
struct agent_channel *channel_new_with_transport(struct event_base *base, const char *sandbox_id,
						 const struct channel_transport *t);
void channel_transport_ready(struct agent_channel *ch, struct bufferevent *bev);
/* fatal: do not retry (the container is gone). */
void channel_transport_failed(struct agent_channel *ch, const char *err, bool fatal);
/* Docker became unreachable: whatever waits on ch fails with AGENT_DOCKER_DOWN. */
void channel_docker_down(struct agent_channel *ch, const char *why);

#endif
