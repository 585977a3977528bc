/* docker_exec_run: create an exec, read its multiplexed output to EOF, then
 * inspect it for the exit code. One op object owns whichever step is in
 * flight, so the handle the caller holds cancels any of them. */
#include "docker/engine.h"
#include "docker/demux.h"
#include "client_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/log.h"

#define INSPECT_RETRIES	 50
#define INSPECT_RETRY_MS 20

enum exec_state { EXEC_CREATING, EXEC_STREAMING, EXEC_INSPECTING, EXEC_WAITING, EXEC_STATE_MAX };

struct exec_op {
	struct docker *d;
	struct docker_call *handle;
	struct docker_call *step;
	struct event *timer;
	enum exec_state state;
	docker_exec_fn cb;
	void *arg;
	char id[96];
	struct docker_demux dm;
	int status; /* of the start response */
	struct evbuffer *errbody;
	char *out;
	size_t len, cap, dropped;
	int retries;
};

static void exec_set_state(struct exec_op *x, enum exec_state to);
static void exec_free(struct exec_op *x);
static void exec_cancel(void *ctx);
static void exec_finish(struct exec_op *x, int exit_code, const char *err);
static void exec_created_cb(int status, struct json_object *body, const char *err, void *arg);
static int exec_head_cb(struct docker_call *call, int status, void *arg);
static void exec_data_cb(struct docker_call *call, struct evbuffer *body, void *arg);
static void exec_done_cb(struct docker_call *call, const char *err, void *arg);
static void exec_output(enum docker_stream_type type, const char *data, size_t len, void *arg);
static void exec_inspect(struct exec_op *x);
static void exec_timer_cb(evutil_socket_t fd, short what, void *arg);
static void exec_inspected_cb(int status, struct json_object *body, const char *err, void *arg);

static void exec_set_state(struct exec_op *x, enum exec_state to)
{
	static const unsigned legal[EXEC_STATE_MAX] = {
		[EXEC_CREATING] = 1u << EXEC_STREAMING,
		[EXEC_STREAMING] = 1u << EXEC_INSPECTING,
		[EXEC_INSPECTING] = 1u << EXEC_WAITING,
		[EXEC_WAITING] = 1u << EXEC_INSPECTING,
	};
	CHECK(to < EXEC_STATE_MAX && (legal[x->state] & (1u << to)));
	log_debug("docker exec %s: %d -> %d", x->id, x->state, to);
	x->state = to;
}

struct docker_call *docker_exec_run(struct docker *d, const char *container,
				    const struct docker_exec_opts *opts, docker_exec_fn cb, void *arg)
{
	struct exec_op *x = calloc(1, sizeof(*x));
	struct json_object *body = json_object_new_object();
	if (!x || !body)
		goto fail;
	x->d = d;
	x->cb = cb;
	x->arg = arg;
	x->cap = opts->output_cap;
	docker_demux_init(&x->dm);
	x->errbody = evbuffer_new();
	x->timer = evtimer_new(docker_base(d), exec_timer_cb, x);
	x->out = malloc(x->cap + 1);
	if (!x->errbody || !x->timer || !x->out)
		goto fail;
	json_object_object_add(body, "AttachStdin", json_object_new_boolean(0));
	json_object_object_add(body, "AttachStdout", json_object_new_boolean(1));
	json_object_object_add(body, "AttachStderr", json_object_new_boolean(1));
	json_object_object_add(body, "Tty", json_object_new_boolean(0));
	json_object_object_add(body, "Cmd", json_object_get(opts->argv));
	if (opts->env)
		json_object_object_add(body, "Env", json_object_get(opts->env));
	if (opts->user)
		json_object_object_add(body, "User", json_object_new_string(opts->user));
	if (opts->workdir)
		json_object_object_add(body, "WorkingDir", json_object_new_string(opts->workdir));
	json_object_put(opts->argv);
	json_object_put(opts->env);
	x->handle = docker_op_new(d, exec_cancel, x);
	if (!x->handle)
		goto fail_taken;
	char path[512];
	snprintf(path, sizeof(path), "/containers/%s/exec", container);
	x->step = docker_call_json(d, "POST", path, body, exec_created_cb, x);
	if (!x->step) {
		docker_op_free(x->handle);
		exec_free(x);
		return NULL;
	}
	return x->handle;
fail:
	json_object_put(opts->argv);
	json_object_put(opts->env);
fail_taken:
	json_object_put(body);
	if (x)
		exec_free(x);
	return NULL;
}

static void exec_free(struct exec_op *x)
{
	if (x->timer)
		event_free(x->timer);
	if (x->errbody)
		evbuffer_free(x->errbody);
	free(x->out);
	free(x);
}

static void exec_cancel(void *ctx)
{
	struct exec_op *x = ctx;
	if (x->step)
		docker_call_cancel(x->step);
	exec_free(x);
}

/* Runs from a step's callback: the step call is freed by the client after we
 * return, so only the op and our context go here. */
static void exec_finish(struct exec_op *x, int exit_code, const char *err)
{
	x->step = NULL;
	if (x->dropped)
		log_debug("docker exec %s: dropped %zu bytes of output over the cap", x->id, x->dropped);
	x->out[x->len] = '\0';
	x->cb(exit_code, x->out, x->len, x->dropped > 0, err, x->arg);
	docker_op_free(x->handle);
	exec_free(x);
}

static void exec_created_cb(int status, struct json_object *body, const char *err, void *arg)
{
	struct exec_op *x = arg;
	struct json_object *id;
	x->step = NULL;
	if (status != 201 && status != 200) {
		exec_finish(x, -1, err ? err : "exec create failed");
		return;
	}
	if (!json_object_object_get_ex(body, "Id", &id) || !json_object_is_type(id, json_type_string) ||
	    strlen(json_object_get_string(id)) >= sizeof(x->id)) {
		exec_finish(x, -1, "no Id in the exec create response");
		return;
	}
	snprintf(x->id, sizeof(x->id), "%s", json_object_get_string(id));
	exec_set_state(x, EXEC_STREAMING);
	static const struct docker_stream_cbs cbs = {
		.head = exec_head_cb,
		.data = exec_data_cb,
		.done = exec_done_cb,
	};
	static const char start[] = "{\"Detach\":false,\"Tty\":false}";
	char path[160];
	snprintf(path, sizeof(path), "/exec/%s/start", x->id);
	x->step = docker_call_stream(x->d, "POST", path, "application/json", (int64_t)strlen(start), &cbs, x);
	if (!x->step) {
		exec_finish(x, -1, "out of memory");
		return;
	}
	struct evbuffer *b = evbuffer_new();
	evbuffer_add(b, start, strlen(start));
	docker_call_write(x->step, b);
	docker_call_finish(x->step);
	evbuffer_free(b);
}

static int exec_head_cb(struct docker_call *call, int status, void *arg)
{
	struct exec_op *x = arg;
	x->status = status;
	return 0;
}

static void exec_data_cb(struct docker_call *call, struct evbuffer *body, void *arg)
{
	struct exec_op *x = arg;
	if (x->status != 200) {
		/* an error body: keep a little of it for the message */
		if (evbuffer_get_length(x->errbody) < 4096)
			evbuffer_add_buffer(x->errbody, body);
		evbuffer_drain(body, evbuffer_get_length(body));
		return;
	}
	if (docker_demux_feed(&x->dm, body, exec_output, x) < 0) {
		x->step = NULL;
		docker_call_cancel(call);
		exec_finish(x, -1, "malformed exec stream");
	}
}

static void exec_output(enum docker_stream_type type, const char *data, size_t len, void *arg)
{
	struct exec_op *x = arg;
	size_t room = x->cap - x->len;
	size_t n = len < room ? len : room;
	memcpy(x->out + x->len, data, n);
	x->len += n;
	x->dropped += len - n;
}

static void exec_done_cb(struct docker_call *call, const char *err, void *arg)
{
	struct exec_op *x = arg;
	x->step = NULL;
	if (err) {
		exec_finish(x, -1, err);
		return;
	}
	if (x->status != 200) {
		char msg[512];
		struct json_object *j = json_tokener_parse((const char *)evbuffer_pullup(x->errbody, -1));
		struct json_object *m;
		if (j && json_object_object_get_ex(j, "message", &m))
			snprintf(msg, sizeof(msg), "%s", json_object_get_string(m));
		else
			snprintf(msg, sizeof(msg), "exec start: HTTP %d", x->status);
		json_object_put(j);
		exec_finish(x, -1, msg);
		return;
	}
	if (x->dm.hdr_len || x->dm.remaining)
		log_debug("docker exec %s: stream ended inside a frame", x->id);
	exec_set_state(x, EXEC_INSPECTING);
	exec_inspect(x);
}

static void exec_inspect(struct exec_op *x)
{
	char path[160];
	snprintf(path, sizeof(path), "/exec/%s/json", x->id);
	x->step = docker_call_json(x->d, "GET", path, NULL, exec_inspected_cb, x);
	if (!x->step)
		exec_finish(x, -1, "out of memory");
}

static void exec_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct exec_op *x = arg;
	exec_set_state(x, EXEC_INSPECTING);
	exec_inspect(x);
}

static void exec_inspected_cb(int status, struct json_object *body, const char *err, void *arg)
{
	struct exec_op *x = arg;
	struct json_object *running, *code;
	x->step = NULL;
	if (status != 200) {
		exec_finish(x, -1, err ? err : "exec inspect failed");
		return;
	}
	/* The stream can end a moment before Docker records the exit code. */
	if (json_object_object_get_ex(body, "Running", &running) && json_object_get_boolean(running) &&
	    x->retries++ < INSPECT_RETRIES) {
		exec_set_state(x, EXEC_WAITING);
		struct timeval tv = { 0, INSPECT_RETRY_MS * 1000 };
		evtimer_add(x->timer, &tv);
		return;
	}
	if (!json_object_object_get_ex(body, "ExitCode", &code) ||
	    !json_object_is_type(code, json_type_int)) {
		exec_finish(x, -1, "no ExitCode in exec inspect");
		return;
	}
	exec_finish(x, json_object_get_int(code), NULL);
}
