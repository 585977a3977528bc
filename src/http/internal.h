/* Private structures shared by the http modules (conn, request, body,
 * response, server): one connection owns at most one request at a time. */
#ifndef SANDBAR_HTTP_INTERNAL_H
#define SANDBAR_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <http_parser.h>

#include "http/server.h"

#define HTTP_MAX_HEADERS     100
#define HTTP_ARENA_FIRST     2048
#define HTTP_ARENA_BLOCK     4096
#define HTTP_INPUT_HIGHWAT   (512 * 1024) /* held unparsed input before reading stops */
#define HTTP_FEED_MAX	     (256 * 1024) /* body bytes parsed per step */
#define HTTP_STREAM_BACKLOG  (256 * 1024) /* undrained streamed body before parsing stops */
#define HTTP_DISCARD_MAX     (256 * 1024) /* unread body we discard to keep the connection */
#define HTTP_WRITE_LOWAT     (16 * 1024)
#define HTTP_FEED_SEGS	     8		  /* body pieces moved per parse step */
#define HTTP_IO_MAX	     (256 * 1024) /* one read or write syscall (libevent: 16 KiB) */
#define HTTP_REQUEST_ID_MAX  64
#define HTTP_STATUS_CANCELED 499

struct http_kv {
	struct http_kv *next;
	const char *name;
	const char *value;
};

struct http_header {
	uint32_t name_off, name_len;
	uint32_t val_off, val_len;
};

struct arena_block {
	struct arena_block *next;
	size_t cap;
	char data[];
};

enum body_mode { BODY_NONE, BODY_WHOLE, BODY_JSON, BODY_STREAM, BODY_DISCARD };
enum resp_state { RESP_NONE, RESP_STARTED, RESP_ENDED };

struct http_request {
	struct http_conn *conn;
	const char *method;
	const char *path;
	const char *raw_query; /* NUL-terminated, undecoded, NULL when absent */
	struct http_kv *query;
	bool query_parsed;
	struct http_kv *params;
	char id[HTTP_REQUEST_ID_MAX + 1];
	int64_t start_us;
	bool keep_alive;
	bool head_method;

	void (*cancel)(void *arg);
	void *cancel_arg;
	bool canceled;

	/* body */
	enum body_mode body_mode;
	bool msg_complete;
	bool chunked;
	bool expect_continue;
	bool continue_sent;
	bool body_paused;
	bool body_end_called;
	bool body_checked; /* Content-Length compared with the cap */
	int body_error;	   /* status the server answers with on the handler's behalf */
	int64_t content_length;
	int64_t body_deadline_us; /* a whole body must be in by then */
	uint64_t body_received;
	size_t body_cap;
	http_body_done_fn whole_done;
	http_json_done_fn json_done;
	struct http_body_stream stream;
	void *body_arg;
	struct json_object *json;

	/* response */
	enum resp_state resp;
	int status;
	bool out_chunked;
	bool out_nobody;
	bool close_after;
	struct http_kv *out_headers;
	uint64_t bytes_sent;
	void (*drain)(void *arg);
	void *drain_arg;

	/* arena: the first block lives here, so most requests never malloc */
	struct arena_block *blocks;
	char *apos;
	size_t aleft;
	_Alignas(16) char first[HTTP_ARENA_FIRST];
};

enum conn_state {
	CONN_IDLE,     /* between requests, idle timer armed */
	CONN_HEAD,     /* request head arriving, header timer armed */
	CONN_REQUEST,  /* head dispatched, the handler owns the response */
	CONN_DISCARD,  /* response ended, rest of the request body discarded */
	CONN_CLOSING,  /* flushing the last response, then close */
	CONN_UPGRADED, /* 101 sent: the socket is handed over by the kick event */
	CONN_DEAD,     /* closed, freed by the kick event */
	CONN_STATE_MAX
};

struct http_conn {
	TAILQ_ENTRY(http_conn) link;
	struct http_server *srv;
	struct bufferevent *bev;
	struct event *timer;
	struct event *kick;
	enum conn_state state;
	bool counted;	 /* within max_connections (the 503 ones are not) */
	bool in_request; /* req holds a live request */
	http_parser parser;
	size_t head_bytes;
	int parse_error; /* status for a head that failed our own checks */
	const char *parse_code;

	/* head storage, reused across requests: "url\0name\0value\0..." */
	char *hbuf;
	size_t hlen, hcap;
	uint32_t url_off, url_len;
	struct http_header hdrs[HTTP_MAX_HEADERS];
	int nhdrs;
	bool in_value;

	struct evbuffer *body_buf;
	uint64_t discarded;
	/* streamed body bytes seen by the parser in the slice being fed, moved
	 * (not copied) from the input into body_buf once the parser returns */
	const char *feed_base;
	struct {
		size_t off, len;
	} feed_segs[HTTP_FEED_SEGS];
	int nfeed_segs;
	bool read_held;		   /* reading stopped while a paused body fills the input */
	http_upgraded_fn upgraded; /* set by http_request_upgrade */
	void *upgraded_arg;
	struct http_request req;
};

TAILQ_HEAD(http_conn_list, http_conn);

struct http_server {
	struct event_base *base;
	struct http_server_limits lim;
	http_dispatch_fn dispatch;
	void *arg;
	http_error_render_fn render_error;
	void *render_arg;
	struct evconnlistener *listener;
	int port;
	struct http_conn_list conns;
	int nconns;
	uint64_t rng;
	bool shutting_down;
	struct event *deadline;
	struct event *done_ev;
	void (*done)(void *arg);
	void *done_arg;
	time_t date_sec;
	char date[40];
};

/* conn.c */
struct http_conn *conn_new(struct http_server *srv, int fd, bool over_cap);
void conn_kick(struct http_conn *c);
void conn_set_state(struct http_conn *c, enum conn_state to);
void conn_shutdown(struct http_conn *c);
void conn_force_close(struct http_conn *c);
void conn_destroy(struct http_conn *c);
int64_t http_now_us(void);

/* request.c */
void request_init(struct http_request *req, struct http_conn *c);
void request_reset(struct http_request *req);
void request_gen_id(struct http_request *req);
int request_finish_head(struct http_request *req, const char **code); /* 0 or an error status */
void request_cancel(struct http_request *req);

/* body.c */
void body_on_data(struct http_request *req, const char *at, size_t len);
bool body_wanted(const struct http_request *req);
void body_deliver(struct http_request *req);
void body_start_discard(struct http_request *req);

/* response.c */
void response_server_error(struct http_request *req, int status, const char *code, const char *msg);
void response_log(struct http_request *req);
const char *response_date(struct http_server *srv);

/* server.c */
void server_conn_gone(struct http_server *srv);
uint64_t server_random(struct http_server *srv);

#endif
