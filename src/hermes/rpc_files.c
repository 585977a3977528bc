/* The file methods over JSON-RPC (spec §9.3): read, write, edit,
 * write_binary, read_stream, list_files and stat, on the file service the
 * native routes use (include/files/agentfs.h). This file maps params onto it
 * and renders its structs as the SDK decodes them. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/buffer.h>

#include "core/base64.h"
#include "core/clock.h"
#include "files/agentfs.h"
#include "files/path.h"
#include "rpc.h"

#define WRITE_PIECE	     (256u * 1024) /* bytes handed to the file service at once */
#define STREAM_CHUNK_DEFAULT 65536
#define STREAM_CHUNKS_MAX    64 /* the SDK drops read_stream chunks beyond its 64-slot buffer */
#define STREAM_CHUNK_MAX     (4u << 20)

struct file_call {
	struct rpc_call call;
	struct agentfs_op *op; /* NULL once it ended */
	/* write, write_binary: the bytes, fed as the service takes them */
	uint8_t *data;
	size_t len, fed;
	bool binary;
	/* read_stream */
	uint64_t chunk, total, consumed, acked;
	struct evbuffer *pend;
	const char *mime;
};

static void read_start(struct rpc_call *call, struct json_object *params);
static void write_start(struct rpc_call *call, struct json_object *params);
static void edit_start(struct rpc_call *call, struct json_object *params);
static void write_binary_start(struct rpc_call *call, struct json_object *params);
static void read_stream_start(struct rpc_call *call, struct json_object *params);
static void list_start(struct rpc_call *call, struct json_object *params);
static void stat_start(struct rpc_call *call, struct json_object *params);
static void file_finish(struct rpc_call *call);
static void stream_drain(struct rpc_call *call);
static void done(const struct core_error *fail, const struct agentfs_result *res, void *arg);
static void wr_ready(void *arg);
static void rs_head(void *arg, const struct agentfs_head *h);
static void rs_data(void *arg, const uint8_t *data, size_t len);
static void rs_end(void *arg);
static void rs_failed(void *arg, const struct core_error *fail);
static struct json_object *mtime_json(int64_t ms);
static struct json_object *base64_json(const uint8_t *data, size_t len);

#define FILE_METHOD(n, fn, drain)                                                                            \
	{                                                                                                    \
		n, sizeof(struct file_call), fn, file_finish, drain                                          \
	}
const struct rpc_method rpc_method_read = FILE_METHOD("read", read_start, NULL);
const struct rpc_method rpc_method_write = FILE_METHOD("write", write_start, NULL);
const struct rpc_method rpc_method_edit = FILE_METHOD("edit", edit_start, NULL);
const struct rpc_method rpc_method_write_binary = FILE_METHOD("write_binary", write_binary_start, NULL);
const struct rpc_method rpc_method_read_stream = FILE_METHOD("read_stream", read_stream_start, stream_drain);
const struct rpc_method rpc_method_list_files = FILE_METHOD("list_files", list_start, NULL);
const struct rpc_method rpc_method_stat = FILE_METHOD("stat", stat_start, NULL);

static const struct agentfs_write_events write_events = { wr_ready, done };
static const struct agentfs_read_events stream_events = { rs_head, rs_data, rs_end, rs_failed };

static struct agentfs *fs_of(const struct rpc_call *call)
{
	return rpc_conn_core(call->conn)->fs;
}

static void file_finish(struct rpc_call *call)
{
	struct file_call *f = (struct file_call *)call;
	agentfs_op_cancel(f->op); /* a write's temporary goes, the file stays as it was */
	f->op = NULL;
	free(f->data);
	if (f->pend)
		evbuffer_free(f->pend);
}

static struct json_object *mtime_json(int64_t ms)
{
	if (ms <= 0)
		return NULL;
	char buf[CLOCK_RFC3339_LEN];
	clock_rfc3339(ms * 1000, buf);
	return json_object_new_string(buf);
}

static struct json_object *base64_json(const uint8_t *data, size_t len)
{
	size_t n;
	char *buf = base64_encode_alloc(data, len, &n);
	struct json_object *s = json_object_new_string_len(buf, (int)n);
	free(buf);
	return s;
}

/* A path param, or the call answered -32602. */
static bool path_param(struct rpc_call *call, struct json_object *params, const char **path)
{
	struct core_error fail;
	if (rpc_param_path(params, "path", path, &fail) == 0)
		return true;
	rpc_reply_core_error(call, &fail);
	return false;
}

/* ---- one-shot calls: read, edit, list_files, stat ---- */

static void read_start(struct rpc_call *call, struct json_object *params)
{
	struct file_call *f = (struct file_call *)call;
	const char *path;
	if (path_param(call, params, &path))
		f->op = agentfs_read_doc_whole(fs_of(call), rpc_call_sandbox(call), path, done, f);
}

static void edit_start(struct rpc_call *call, struct json_object *params)
{
	struct file_call *f = (struct file_call *)call;
	const char *path, *old_text, *new_text;
	size_t olen, nlen;
	struct core_error fail;
	if (!path_param(call, params, &path))
		return;
	if (rpc_param_string(params, "old_text", true, &old_text, &olen, &fail) != 0 ||
	    rpc_param_string(params, "new_text", true, &new_text, &nlen, &fail) != 0) {
		rpc_reply_core_error(call, &fail);
		return;
	}
	f->op = agentfs_edit(fs_of(call), rpc_call_sandbox(call), path, old_text, olen, new_text, nlen, done,
			     f);
}

static void list_start(struct rpc_call *call, struct json_object *params)
{
	struct file_call *f = (struct file_call *)call;
	const char *path;
	if (path_param(call, params, &path))
		f->op = agentfs_list(fs_of(call), rpc_call_sandbox(call), path, 1, done, f);
}

static void stat_start(struct rpc_call *call, struct json_object *params)
{
	struct file_call *f = (struct file_call *)call;
	const char *path;
	if (path_param(call, params, &path))
		f->op = agentfs_stat(fs_of(call), rpc_call_sandbox(call), path, done, f);
}

static struct json_object *read_json(const struct agentfs_result *r)
{
	struct json_object *o = json_object_new_object();
	bool text = r->doc == AGENTFS_DOC_TEXT;
	json_object_object_add(o, "type", json_object_new_string(text ? "text" : "image"));
	json_object_object_add(
		o, "content",
		text ? json_object_new_string_len(r->data_len ? (const char *)r->data : "", (int)r->data_len)
		     : json_object_new_string(""));
	json_object_object_add(o, "truncated", json_object_new_boolean(text && r->truncated));
	/* anything not text goes as base64 "image" data: the bytes come back exactly */
	const char *mime = r->doc == AGENTFS_DOC_BINARY && strncmp(r->mime, "image/", 6) != 0
				   ? "application/octet-stream"
				   : r->mime;
	json_object_object_add(o, "mime_type",
			       json_object_new_string(mime ? mime : "application/octet-stream"));
	json_object_object_add(o, "data",
			       text ? json_object_new_string("") : base64_json(r->data, r->data_len));
	return o;
}

static struct json_object *entry_json(const struct agentfs_entry *e)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(files_path_base(e->path)));
	json_object_object_add(o, "path", json_object_new_string(e->path));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)e->size));
	json_object_object_add(o, "is_dir", json_object_new_boolean(S_ISDIR(e->mode)));
	json_object_object_add(o, "modified_at", mtime_json(e->mtime_ms));
	return o;
}

static struct json_object *stat_json(const struct agentfs_result *r)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "exists", json_object_new_boolean(r->exists));
	json_object_object_add(o, "size", json_object_new_int64(r->exists ? (int64_t)r->entry.size : 0));
	json_object_object_add(o, "is_dir", json_object_new_boolean(r->exists && S_ISDIR(r->entry.mode)));
	json_object_object_add(o, "is_file", json_object_new_boolean(r->exists && S_ISREG(r->entry.mode)));
	json_object_object_add(o, "modified_at", r->exists ? mtime_json(r->entry.mtime_ms) : NULL);
	return o;
}

static void done(const struct core_error *fail, const struct agentfs_result *res, void *arg)
{
	struct file_call *f = arg;
	f->op = NULL;
	if (fail) {
		rpc_reply_core_error(&f->call, fail);
		return;
	}
	struct json_object *o = NULL;
	switch (res->call) {
	case AGENTFS_READ_DOC:
		o = read_json(res);
		break;
	case AGENTFS_WRITE:
		o = json_object_new_object();
		if (!f->binary)
			json_object_object_add(o, "bytes_written", json_object_new_int64((int64_t)res->size));
		break;
	case AGENTFS_EDIT: {
		char msg[FILES_PATH_MAX + 64];
		snprintf(msg, sizeof(msg), "Successfully replaced text in %s", res->path);
		o = json_object_new_object();
		json_object_object_add(o, "message", json_object_new_string(msg));
		break;
	}
	case AGENTFS_LIST:
		o = json_object_new_array_ext((int)res->nentries);
		for (size_t i = 0; i < res->nentries; i++)
			json_object_array_add(o, entry_json(&res->entries[i]));
		break;
	case AGENTFS_STAT:
		o = stat_json(res);
		break;
	default:
		CHECK(!"an answer no method asked for");
	}
	rpc_reply(&f->call, o);
}

/* ---- write, write_binary ---- */

static void write_begin(struct file_call *f, const char *path, uint32_t mode)
{
	f->op = agentfs_write(fs_of(&f->call), rpc_call_sandbox(&f->call), path, mode, &write_events, f);
}

static void write_start(struct rpc_call *call, struct json_object *params)
{
	struct file_call *f = (struct file_call *)call;
	const char *path, *content;
	size_t len;
	struct core_error fail;
	if (!path_param(call, params, &path))
		return;
	if (rpc_param_string(params, "content", true, &content, &len, &fail) != 0) {
		rpc_reply_core_error(call, &fail);
		return;
	}
	f->data = malloc(len + 1);
	CHECK(f->data != NULL);
	memcpy(f->data, content, len);
	f->len = len;
	write_begin(f, path, 0644);
}

static void write_binary_start(struct rpc_call *call, struct json_object *params)
{
	struct file_call *f = (struct file_call *)call;
	const char *path, *b64;
	size_t len;
	uint64_t mode = 0;
	struct core_error fail;
	if (!path_param(call, params, &path))
		return;
	if (rpc_param_string(params, "data", true, &b64, &len, &fail) != 0 ||
	    rpc_param_uint(params, "mode", 07777, &mode, &fail) != 0) {
		rpc_reply_core_error(call, &fail);
		return;
	}
	f->data = malloc(len / 4 * 3 + 3);
	CHECK(f->data != NULL);
	long n = base64_decode(b64, len, f->data);
	if (n < 0) {
		rpc_reply_error(call, HERMES_RPC_INVALID_PARAMS,
				"invalid params: 'data' must be standard base64");
		return;
	}
	f->len = (size_t)n;
	f->binary = true;
	write_begin(f, path, mode ? (uint32_t)mode : 0644);
}

/* The service takes data: feed it until it asks for a pause, then commit. */
static void wr_ready(void *arg)
{
	struct file_call *f = arg;
	while (f->op && f->fed < f->len) {
		size_t n = f->len - f->fed < WRITE_PIECE ? f->len - f->fed : WRITE_PIECE;
		int rc = agentfs_write_data(f->op, f->data + f->fed, n);
		if (rc < 0)
			return; /* done(fail) follows */
		f->fed += n;
		if (rc > 0 && f->fed < f->len)
			return; /* ready again once it drained */
	}
	if (f->op && f->fed == f->len) {
		f->fed++; /* committed once */
		agentfs_write_end(f->op);
	}
}

/* ---- read_stream ---- */

static void read_stream_start(struct rpc_call *call, struct json_object *params)
{
	struct file_call *f = (struct file_call *)call;
	const char *path;
	uint64_t chunk = 0;
	struct core_error fail;
	if (!path_param(call, params, &path))
		return;
	if (rpc_param_uint(params, "chunk_size", STREAM_CHUNK_MAX, &chunk, &fail) != 0) {
		rpc_reply_core_error(call, &fail);
		return;
	}
	f->chunk = chunk ? chunk : STREAM_CHUNK_DEFAULT;
	f->pend = evbuffer_new();
	CHECK(f->pend != NULL);
	f->op = agentfs_read(fs_of(call), rpc_call_sandbox(call), path, 0, UINT64_MAX, false, &stream_events,
			     f);
}

static void rs_head(void *arg, const struct agentfs_head *h)
{
	struct file_call *f = arg;
	f->total = h->size;
	f->mime = h->content_type;
	/* at most 64 chunks (each padded base64 of its own bytes) */
	uint64_t min = (h->length + STREAM_CHUNKS_MAX - 1) / STREAM_CHUNKS_MAX;
	if (f->chunk < min)
		f->chunk = min;
}

static void rs_send(struct file_call *f, size_t n)
{
	struct json_object *p = json_object_new_object();
	json_object_object_add(p, "data", base64_json(evbuffer_pullup(f->pend, (ev_ssize_t)n), n));
	evbuffer_drain(f->pend, n);
	rpc_notify(&f->call, "read_stream.chunk", p);
}

static void rs_data(void *arg, const uint8_t *data, size_t len)
{
	struct file_call *f = arg;
	evbuffer_add(f->pend, data, len);
	f->consumed += len;
	while (evbuffer_get_length(f->pend) >= f->chunk)
		rs_send(f, f->chunk);
	if (!rpc_conn_congested(f->call.conn)) {
		f->acked = f->consumed;
		agentfs_read_ack(f->op, f->acked);
	}
}

static void stream_drain(struct rpc_call *call)
{
	struct file_call *f = (struct file_call *)call;
	if (f->op && f->acked < f->consumed) {
		f->acked = f->consumed;
		agentfs_read_ack(f->op, f->acked);
	}
}

static void rs_end(void *arg)
{
	struct file_call *f = arg;
	f->op = NULL;
	if (evbuffer_get_length(f->pend) > 0)
		rs_send(f, evbuffer_get_length(f->pend));
	struct json_object *o = json_object_new_object();
	bool image = f->mime && strncmp(f->mime, "image/", 6) == 0;
	json_object_object_add(o, "type", json_object_new_string(image ? "image" : "text"));
	json_object_object_add(o, "total_bytes", json_object_new_uint64(f->total));
	json_object_object_add(o, "mime_type",
			       json_object_new_string(f->mime ? f->mime : "application/octet-stream"));
	rpc_reply(&f->call, o);
}

static void rs_failed(void *arg, const struct core_error *fail)
{
	struct file_call *f = arg;
	f->op = NULL;
	rpc_reply_core_error(&f->call, fail);
}
