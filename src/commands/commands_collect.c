/* A run collected into one answer (monza's /execute and the dialects that
 * want the same): bounded buffers per stream, the rest counted and acked so
 * the command never blocks on a full window. */
#include <stdlib.h>
#include <string.h>

#include "commands_internal.h"

struct collector {
	struct commands *c;
	struct command_op *run;
	command_result_fn cb;
	void *arg;
	uint64_t max;
	struct {
		uint8_t *buf;
		size_t len, cap;
		uint64_t total;
	} out, err, all;
};

static void collect_started(void *arg, const struct command_info *info);
static void collect_output(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data,
			   size_t len, bool gap);
static void collect_exited(void *arg, const struct command_info *info);
static void collect_failed(void *arg, const struct core_error *fail);
static void collector_free(struct collector *col);

static const struct command_events collect_events = {
	.started = collect_started,
	.output = collect_output,
	.exited = collect_exited,
	.failed = collect_failed,
};

struct command_op *commands_execute(struct commands *c, const char *sandbox_id,
				    const struct command_spec *spec, command_result_fn cb, void *arg)
{
	struct collector *col = calloc(1, sizeof(*col));
	CHECK(col != NULL);
	col->c = c;
	col->cb = cb;
	col->arg = arg;
	col->max = spec->max_output_bytes;
	col->run = commands_run(c, sandbox_id, spec, false, &collect_events, col);
	col->run->priv = col;
	return col->run;
}

/* The caller goes away before the end: the command runs on unwatched by us. */
void commands_collect_cancel(struct command_op *op)
{
	struct collector *col = op->priv;
	op->priv = NULL;
	command_op_cancel(op);
	collector_free(col);
}

static void collect_started(void *arg, const struct command_info *info)
{
}

/* Buffers grow as output comes (most commands print little; max may be
 * megabytes), up to max. */
static void keep(struct collector *col, uint8_t **buf, size_t *blen, size_t *bcap, uint64_t *total,
		 const uint8_t *data, size_t len)
{
	*total += len;
	if (*blen >= col->max)
		return;
	size_t take = len < col->max - *blen ? len : (size_t)(col->max - *blen);
	if (*blen + take > *bcap) {
		size_t cap = *bcap ? *bcap : 256;
		while (cap < *blen + take)
			cap *= 2;
		if (cap > col->max)
			cap = (size_t)col->max;
		uint8_t *nb = realloc(*buf, cap);
		CHECK(nb != NULL);
		*buf = nb;
		*bcap = cap;
	}
	memcpy(*buf + *blen, data, take);
	*blen += take;
}

static void collect_output(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data,
			   size_t len, bool gap)
{
	struct collector *col = arg;
	if (!gap) {
		if (stream == AGENT_STREAM_STDERR)
			keep(col, &col->err.buf, &col->err.len, &col->err.cap, &col->err.total, data, len);
		else
			keep(col, &col->out.buf, &col->out.len, &col->out.cap, &col->out.total, data, len);
		keep(col, &col->all.buf, &col->all.len, &col->all.cap, &col->all.total, data, len);
	}
	command_op_ack(col->run, offset + len);
}

static void collect_exited(void *arg, const struct command_info *info)
{
	struct collector *col = arg;
	struct command_result res = {
		.info = info,
		.out = col->out.buf,
		.err = col->err.buf,
		.all = col->all.buf,
		.out_len = col->out.len,
		.err_len = col->err.len,
		.all_len = col->all.len,
		.out_total = col->out.total,
		.err_total = col->err.total,
		.all_total = col->all.total,
		.truncated = col->all.total > col->all.len,
		.duration_ms = info->ended_at - info->started_at,
	};
	if (res.duration_ms < 0)
		res.duration_ms = 0;
	col->run->priv = NULL;
	col->cb(NULL, &res, col->arg);
	collector_free(col);
}

static void collect_failed(void *arg, const struct core_error *fail)
{
	struct collector *col = arg;
	col->run->priv = NULL;
	col->cb(fail, NULL, col->arg);
	collector_free(col);
}

static void collector_free(struct collector *col)
{
	if (!col)
		return;
	free(col->out.buf);
	free(col->err.buf);
	free(col->all.buf);
	free(col);
}
