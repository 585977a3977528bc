/* Against the real dockerd at DOCKER_HOST (default unix:///var/run/docker.sock,
 * as the server's): version, info, volumes, container lifecycle, exec, attach, build.
 * When it does not answer they fail if docker is provided, else skip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "docker/client.h"
#include "docker/demux.h"
#include "docker/engine.h"
#include "need.h"

#define DEFAULT_HOST "unix:///var/run/docker.sock" /* DOCKER_HOST's default in src/core/config.c */
#define VERSION_WAIT 30				   /* seconds; a loaded machine can take a while */

static struct event_base *base;
static struct docker *docker;
static char unreachable[700]; /* why docker is NULL */
/* This run's names: runs in other checkouts share the dockerd. */
static char run[32]; /* "docker-<pid>", the sandbar.test label */
static char vol[64], tag[64];
static char label_filter[64]; /* "sandbar.test=<run>" */

struct res {
	int done;
	char err[512];
	char text[8192];
	size_t len;
	int code;
	bool flag;
	struct bufferevent *bev;
	struct json_object *json;
};

/* Runs the loop until r's callback ran; fails at the caller's line when it
 * does not within the given seconds, or ran twice. */
#define wait_done(r, seconds) wait_done_at((r), (seconds), __LINE__)
static void wait_done_at(struct res *r, int seconds, int line)
{
	for (int i = 0; i < seconds * 100 && !r->done; i++) {
		struct timeval tv = { 0, 10000 };
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	if (r->done != 1) {
		print_error("%s\n", r->done ? "called back twice" : "no answer in time");
		_fail(__FILE__, line);
	}
}

static void set_err(struct res *r, const char *err)
{
	r->done++;
	snprintf(r->err, sizeof(r->err), "%s", err ? err : "");
}

static void done_cb(const char *err, void *arg)
{
	set_err(arg, err);
}

static void version_cb(const char *version, const char *err, void *arg)
{
	set_err(arg, err);
}

static int setup(void **state)
{
	base = event_base_new();
	snprintf(run, sizeof(run), "docker-%d", (int)getpid());
	snprintf(vol, sizeof(vol), "sandbar-test-%s-vol", run);
	snprintf(tag, sizeof(tag), "sandbar/test-docker:%d", (int)getpid());
	snprintf(label_filter, sizeof(label_filter), "sandbar.test=%s", run);
	const char *host = getenv("DOCKER_HOST");
	if (!host || !host[0]) /* empty counts as unset, as for the server */
		host = DEFAULT_HOST;
	docker = docker_new(base, host);
	if (!docker) {
		snprintf(unreachable, sizeof(unreachable), "DOCKER_HOST %s is not a host the client takes",
			 host);
		return 0;
	}
	struct res r = { 0 };
	docker_version_check(docker, version_cb, &r);
	for (int i = 0; i < VERSION_WAIT * 100 && !r.done; i++) {
		struct timeval tv = { 0, 10000 };
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	if (!r.done || r.err[0]) {
		if (r.done)
			snprintf(unreachable, sizeof(unreachable), "dockerd at %s: %s", host, r.err);
		else
			snprintf(unreachable, sizeof(unreachable), "dockerd at %s: no version within %d s",
				 host, VERSION_WAIT);
		docker_free(docker);
		docker = NULL;
	}
	return 0;
}

static int teardown(void **state)
{
	if (docker)
		docker_free(docker);
	event_base_free(base);
	return 0;
}

#define NEED_DOCKER() need("docker", docker != NULL, "%s", unreachable)

static struct json_object *labels(void)
{
	struct json_object *l = json_object_new_object();
	json_object_object_add(l, "sandbar.managed", json_object_new_string("true"));
	json_object_object_add(l, "sandbar.test", json_object_new_string(run));
	return l;
}

static void test_version(void **state)
{
	NEED_DOCKER();
	struct res r = { 0 };
	docker_version_check(docker, version_cb, &r);
	wait_done(&r, 5);
	assert_string_equal(r.err, "");
}

static void info_cb(const struct docker_info *info, const char *err, void *arg)
{
	struct res *r = arg;
	set_err(r, err);
	if (info)
		r->len = (size_t)info->mem_total;
}

/* The host's memory (this machine's, when dockerd runs here). */
static void test_info(void **state)
{
	NEED_DOCKER();
	struct res r = { 0 };
	docker_info(docker, info_cb, &r);
	wait_done(&r, 5);
	assert_string_equal(r.err, "");
	assert_true(r.len > 0);
	const char *host = getenv("DOCKER_HOST");
	if (!host || !host[0] || strncmp(host, "unix://", 7) == 0) {
		uint64_t here = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
		assert_true(r.len == here);
	}
}

static void volume_list_cb(struct json_object *vols, const char *err, void *arg)
{
	struct res *r = arg;
	set_err(r, err);
	for (size_t i = 0; vols && i < json_object_array_length(vols); i++) {
		struct json_object *n;
		if (json_object_object_get_ex(json_object_array_get_idx(vols, i), "Name", &n) &&
		    strcmp(json_object_get_string(n), vol) == 0)
			r->flag = true;
	}
}

static void volume_created_cb(int status, struct json_object *body, const char *err, void *arg)
{
	set_err(arg, status == 201 ? NULL : err ? err : "volume create failed");
}

static void test_volumes(void **state)
{
	NEED_DOCKER();
	struct res r = { 0 };
	struct json_object *body = json_object_new_object();
	json_object_object_add(body, "Name", json_object_new_string(vol));
	json_object_object_add(body, "Labels", labels());
	docker_call_json(docker, "POST", "/volumes/create", body, volume_created_cb, &r);
	wait_done(&r, 10);
	assert_string_equal(r.err, "");
	memset(&r, 0, sizeof(r));
	docker_volume_list(docker, label_filter, volume_list_cb, &r);
	wait_done(&r, 10);
	assert_string_equal(r.err, "");
	assert_true(r.flag);
	memset(&r, 0, sizeof(r));
	docker_volume_remove(docker, vol, done_cb, &r);
	wait_done(&r, 10);
	assert_string_equal(r.err, "");
	memset(&r, 0, sizeof(r));
	docker_volume_remove(docker, vol, done_cb, &r); /* missing is fine */
	wait_done(&r, 10);
	assert_string_equal(r.err, "");
}

static void created_cb(const char *id, const char *err, void *arg)
{
	struct res *r = arg;
	set_err(r, err);
	snprintf(r->text, sizeof(r->text), "%s", id ? id : "");
}

static void inspect_cb(struct json_object *info, bool missing, const char *err, void *arg)
{
	struct res *r = arg;
	set_err(r, err);
	r->flag = missing;
	struct json_object *st, *running;
	if (info && json_object_object_get_ex(info, "State", &st) &&
	    json_object_object_get_ex(st, "Running", &running))
		r->code = json_object_get_boolean(running);
}

static void list_cb(struct json_object *list, const char *err, void *arg)
{
	struct res *r = arg;
	set_err(r, err);
	r->code = list ? (int)json_object_array_length(list) : -1;
}

static void exec_cb(int exit_code, const char *output, size_t len, bool truncated, const char *err, void *arg)
{
	struct res *r = arg;
	set_err(r, err);
	r->code = exit_code;
	r->flag = truncated;
	memcpy(r->text, output, len);
	r->len = len;
}

/* Container sandbar-test-<run>-<what>, labelled with the run. */
static char *create_container(const char *what, const char *cmd)
{
	char name[96];
	snprintf(name, sizeof(name), "sandbar-test-%s-%s", run, what);
	struct json_object *spec = json_object_new_object();
	json_object_object_add(spec, "Image", json_object_new_string("sandbar/base:latest"));
	struct json_object *argv = json_object_new_array();
	json_object_array_add(argv, json_object_new_string("bash"));
	json_object_array_add(argv, json_object_new_string("-c"));
	json_object_array_add(argv, json_object_new_string(cmd));
	json_object_object_add(spec, "Cmd", argv);
	json_object_object_add(spec, "Labels", labels());
	json_object_object_add(spec, "AttachStdout", json_object_new_boolean(1));
	json_object_object_add(spec, "AttachStderr", json_object_new_boolean(1));
	struct res r = { 0 };
	docker_container_create(docker, name, spec, created_cb, &r);
	wait_done(&r, 20);
	assert_string_equal(r.err, "");
	return strdup(r.text);
}

static void remove_container(const char *id)
{
	struct res r = { 0 };
	docker_container_remove(docker, id, done_cb, &r);
	wait_done(&r, 20);
	assert_string_equal(r.err, "");
}

static void run_exec(const char *id, const char *script, size_t cap, struct res *r)
{
	struct json_object *argv = json_object_new_array();
	json_object_array_add(argv, json_object_new_string("bash"));
	json_object_array_add(argv, json_object_new_string("-c"));
	json_object_array_add(argv, json_object_new_string(script));
	struct docker_exec_opts o = { .argv = argv, .output_cap = cap };
	assert_non_null(docker_exec_run(docker, id, &o, exec_cb, r));
	wait_done(r, 20);
}

static void test_container_lifecycle(void **state)
{
	NEED_DOCKER();
	char *id = create_container("life", "sleep 60");
	struct res r = { 0 };
	docker_container_start(docker, id, done_cb, &r);
	wait_done(&r, 20);
	assert_string_equal(r.err, "");

	memset(&r, 0, sizeof(r));
	docker_container_inspect(docker, id, inspect_cb, &r);
	wait_done(&r, 10);
	assert_string_equal(r.err, "");
	assert_false(r.flag);
	assert_int_equal(r.code, 1);

	memset(&r, 0, sizeof(r));
	docker_container_list(docker, label_filter, list_cb, &r);
	wait_done(&r, 10);
	assert_string_equal(r.err, "");
	assert_int_equal(r.code, 1); /* this one, by its run's label */

	memset(&r, 0, sizeof(r));
	run_exec(id, "echo out; echo err >&2; exit 3", 1024, &r);
	assert_string_equal(r.err, "");
	assert_int_equal(r.code, 3);
	assert_false(r.flag);
	r.text[r.len] = '\0';
	assert_non_null(strstr(r.text, "out\n"));
	assert_non_null(strstr(r.text, "err\n"));

	memset(&r, 0, sizeof(r));
	run_exec(id, "head -c 5000 /dev/zero | tr '\\0' x", 100, &r);
	assert_string_equal(r.err, "");
	assert_int_equal(r.code, 0);
	assert_true(r.flag);
	assert_int_equal(r.len, 100);

	/* cancel an exec while it runs: no callback */
	memset(&r, 0, sizeof(r));
	struct json_object *argv = json_object_new_array();
	json_object_array_add(argv, json_object_new_string("sleep"));
	json_object_array_add(argv, json_object_new_string("2"));
	struct docker_exec_opts o = { .argv = argv, .output_cap = 10 };
	struct docker_call *c = docker_exec_run(docker, id, &o, exec_cb, &r);
	for (int i = 0; i < 30; i++) {
		struct timeval tv = { 0, 10000 };
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	docker_call_cancel(c);
	for (int i = 0; i < 30; i++) {
		struct timeval tv = { 0, 10000 };
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	assert_int_equal(r.done, 0);

	memset(&r, 0, sizeof(r));
	docker_container_stop(docker, id, 1, done_cb, &r);
	wait_done(&r, 20);
	assert_string_equal(r.err, "");
	memset(&r, 0, sizeof(r));
	docker_container_stop(docker, id, 1, done_cb, &r); /* already stopped */
	wait_done(&r, 20);
	assert_string_equal(r.err, "");

	remove_container(id);
	memset(&r, 0, sizeof(r));
	docker_container_inspect(docker, id, inspect_cb, &r);
	wait_done(&r, 10);
	assert_string_equal(r.err, "");
	assert_true(r.flag);
	free(id);
}

static void upgraded_cb(int status, struct bufferevent *bev, const char *err, void *arg)
{
	struct res *r = arg;
	set_err(r, err);
	r->code = status;
	r->bev = bev;
}

static void collect_stdout(enum docker_stream_type type, const char *data, size_t len, void *arg)
{
	struct res *r = arg;
	if (type == DOCKER_STDOUT && r->len + len < sizeof(r->text)) {
		memcpy(r->text + r->len, data, len);
		r->len += len;
	}
}

static void attach_read(struct bufferevent *bev, void *arg)
{
	struct res *r = arg;
	static struct docker_demux dm;
	if (r->len == 0 && !r->flag) {
		docker_demux_init(&dm);
		r->flag = true;
	}
	assert_int_equal(docker_demux_feed(&dm, bufferevent_get_input(bev), collect_stdout, r), 0);
}

static void attach_event(struct bufferevent *bev, short what, void *arg)
{
	struct res *r = arg;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		r->done++;
}

static void test_attach(void **state)
{
	NEED_DOCKER();
	char *id = create_container("attach", "sleep 0.5; echo hello");
	struct res r = { 0 };
	char path[256];
	snprintf(path, sizeof(path), "/containers/%s/attach?stream=1&stdout=1&stderr=1", id);
	docker_call_upgrade(docker, "POST", path, NULL, upgraded_cb, &r);
	wait_done(&r, 10);
	assert_string_equal(r.err, "");
	assert_non_null(r.bev);
	struct bufferevent *bev = r.bev;

	struct res s = { 0 };
	docker_container_start(docker, id, done_cb, &s);
	wait_done(&s, 20);
	assert_string_equal(s.err, "");

	struct res out = { 0 };
	bufferevent_setcb(bev, attach_read, NULL, attach_event, &out);
	bufferevent_enable(bev, EV_READ);
	attach_read(bev, &out);
	wait_done(&out, 20);
	out.text[out.len] = '\0';
	assert_string_equal(out.text, "hello\n");
	bufferevent_free(bev);
	remove_container(id);
	free(id);
}

static void build_cb(const char *err, const char *log, void *arg)
{
	struct res *r = arg;
	set_err(r, err);
	snprintf(r->text, sizeof(r->text), "%s", log ? log : "");
}

static void exists_cb(bool exists, const char *err, void *arg)
{
	struct res *r = arg;
	set_err(r, err);
	r->flag = exists;
}

static void json_cb(int status, struct json_object *body, const char *err, void *arg)
{
	struct res *r = arg;
	set_err(r, err);
	r->code = status;
}

static void write_file(const char *dir, const char *name, const char *content)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static void build(const char *dockerfile, struct res *r)
{
	char dir[] = "/tmp/sandbar-build-XXXXXX";
	assert_non_null(mkdtemp(dir));
	write_file(dir, "Dockerfile", dockerfile);
	write_file(dir, "extra.txt", "extra\n");
	char sub[600];
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	mkdir(sub, 0755);
	write_file(sub, "nested.txt", "nested\n");
	struct docker_build_opts o = {
		.context_dir = dir, .dockerfile = "Dockerfile", .tag = tag, .labels = labels()
	};
	assert_non_null(docker_image_build(docker, &o, build_cb, r));
	wait_done(r, 120);
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_build(void **state)
{
	NEED_DOCKER();
	struct res r = { 0 };
	build("FROM sandbar/base:latest\nRUN echo built > /built\nCOPY extra.txt /extra.txt\n"
	      "COPY sub /sub\nRUN test \"$(cat /extra.txt /sub/nested.txt)\" = \"$(printf "
	      "'extra\\nnested')\"\n",
	      &r);
	assert_string_equal(r.err, "");
	assert_non_null(strstr(r.text, "Successfully"));

	memset(&r, 0, sizeof(r));
	docker_image_exists(docker, tag, exists_cb, &r);
	wait_done(&r, 10);
	assert_string_equal(r.err, "");
	assert_true(r.flag);

	memset(&r, 0, sizeof(r));
	char path[96];
	snprintf(path, sizeof(path), "/images/%s", tag);
	docker_call_json(docker, "DELETE", path, NULL, json_cb, &r);
	wait_done(&r, 30);
	assert_string_equal(r.err, "");
	assert_int_equal(r.code, 200);

	memset(&r, 0, sizeof(r));
	docker_image_exists(docker, tag, exists_cb, &r);
	wait_done(&r, 10);
	assert_false(r.flag);
}

static void test_build_fails(void **state)
{
	NEED_DOCKER();
	struct res r = { 0 };
	build("FROM sandbar/base:latest\nRUN echo about to fail; false\n", &r);
	assert_true(r.err[0] != '\0');
	assert_non_null(strstr(r.text, "about to fail"));
	/* a Dockerfile that is not there fails early, from the loop */
	memset(&r, 0, sizeof(r));
	struct docker_build_opts o = { .context_dir = "/tmp",
				       .dockerfile = "no-such-Dockerfile",
				       .tag = "x:y" };
	assert_non_null(docker_image_build(docker, &o, build_cb, &r));
	assert_int_equal(r.done, 0);
	wait_done(&r, 5);
	assert_non_null(strstr(r.err, "Dockerfile"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version),	    cmocka_unit_test(test_info),
		cmocka_unit_test(test_volumes),	    cmocka_unit_test(test_container_lifecycle),
		cmocka_unit_test(test_attach),	    cmocka_unit_test(test_build),
		cmocka_unit_test(test_build_fails),
	};
	return need_exit(cmocka_run_group_tests(tests, setup, teardown));
}
