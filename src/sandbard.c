/* sandbard: one event loop in front of Docker and PostgreSQL. Start-up is a
 * chain: configuration and templates (blocking, before the loop), then Docker
 * version check, PostgreSQL, migrations, reconciliation, and only then the
 * HTTP listener. SIGTERM/SIGINT drain in-flight requests, then exit 0. */
#include <signal.h>
#include <sys/resource.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "api/api.h"
#include "core/config.h"
#include "core/log.h"
#include "docker/engine.h"
#include "channel/channel.h"
#include "commands/commands.h"
#include "files/agentfs.h"
#include "files/transfer.h"
#include "http/server.h"
#include "native/native.h"
#include "preview/host.h"
#include "preview/secret.h"
#include "pg/migrate.h"
#include "pg/pool.h"
#include "sandbox/registry.h"
#include "sandbox/service.h"
#include "sandbox/template.h"
#include "tasks/tasks.h"

enum boot_state {
	BOOT_DOCKER,
	BOOT_RUNTIMES, /* dockerd has the runtimes SANDBAR_RUNTIMES enables */
	BOOT_NETWORK,  /* the sandboxes' bridge network made, or found */
	BOOT_DATABASE,
	BOOT_MIGRATE,
	BOOT_RECONCILE,
	BOOT_SERVING,
	BOOT_STOPPING,
	BOOT_STATE_MAX
};

struct sandbard {
	struct event_base *base;
	struct config cfg;
	enum boot_state state;
	struct template_set *templates;
	struct sandbox_runtimes runtimes; /* SANDBAR_RUNTIMES */
	struct migration_set migrations;
	struct docker *docker;
	struct pg_pool *pg;
	struct channels *channels;
	void *agent_bin; /* installed into every sandbox */
	size_t agent_len;
	struct registry *reg;
	struct sandbox_service *svc;
	struct commands *commands;
	struct tasks *tasks;	       /* coding-agent tasks */
	struct agentfs *fs;	       /* files through the agent */
	struct files_transfer *xfer;   /* uploads, downloads, archives: Docker's archive API */
	struct preview_public preview; /* how preview URLs look */
	char preview_domain[256];
	struct preview_secret preview_secret; /* signs private previews' tokens */
	struct api *api;
	struct http_server *http;
	struct http_server *preview_http; /* SANDBAR_PREVIEW_ADDR's, or NULL */
	int serving;			  /* listeners not yet drained at shutdown */
	struct event *sigterm, *sigint, *boot_timeout;
	int exit_code;
};

static void raise_fd_limit(const struct config *cfg);
static void boot_set_state(struct sandbard *d, enum boot_state next);
static void boot_docker_checked(const char *version, const char *err, void *arg);
static void boot_runtimes_checked(const struct docker_info *info, const char *err, void *arg);
static void runtimes_list(struct json_object *runtimes, char *buf, size_t cap);
static void boot_network(struct sandbard *d);
static void boot_network_made(const char *err, void *arg);
static bool on_every_address(const char *addr);
static void boot_pg_state(bool up, void *arg);
static void boot_migrated(int rc, const char *message, void *arg);
static void boot_reconciled(int rc, void *arg);
static void boot_timed_out(evutil_socket_t fd, short what, void *arg);
static void on_signal(evutil_socket_t sig, short what, void *arg);
static void shutdown_done(void *arg);
static void fatal(struct sandbard *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int agent_binary_load(const char *path, void **out, size_t *len);

static void boot_set_state(struct sandbard *d, enum boot_state next)
{
	CHECK(next < BOOT_STATE_MAX && (next == d->state + 1 || next == BOOT_STOPPING));
	d->state = next;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: sandbard [--help] [--version]\n\n");
	config_print_help(out);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("sandbard %s\n", SANDBAR_VERSION);
			return 0;
		}
		fprintf(stderr, "sandbard: unknown argument '%s'\n", argv[i]);
		usage(stderr);
		return 2;
	}

	static struct sandbard d;
	char err[512];
	if (config_load(&d.cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "sandbard: %s\n", err);
		return 2;
	}
	if (!d.cfg.database_url) {
		fprintf(stderr, "sandbard: DATABASE_URL is not set (see sandbard --help)\n");
		return 2;
	}
	enum log_level level;
	if (log_level_parse(d.cfg.log_level, &level) != 0) {
		fprintf(stderr, "sandbard: SANDBAR_LOG_LEVEL: unknown level '%s'\n", d.cfg.log_level);
		return 2;
	}
	log_set_level(level);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit(&d.cfg);

	if (sandbox_runtimes_parse(d.cfg.runtimes, &d.runtimes, err, sizeof(err)) != 0) {
		fprintf(stderr, "sandbard: %s\n", err);
		return 2;
	}

	/* start-up work that may block: templates and migration files */
	struct template_policy policy = {
		.allow_privileged = d.cfg.allow_privileged,
		.allow_cap_add = d.cfg.allow_cap_add,
		.allow_bind_mounts = d.cfg.allow_bind_mounts,
	};
	memcpy(policy.runtimes, d.runtimes.enabled, sizeof(policy.runtimes));
	d.templates = template_set_load(d.cfg.devcontainers_path, &policy);
	if (!d.templates) {
		fprintf(stderr, "sandbard: cannot read templates from %s\n", d.cfg.devcontainers_path);
		return 1;
	}
	log_info("%zu template(s) from %s", template_set_count(d.templates), d.cfg.devcontainers_path);
	if (sandbox_pool_check(d.cfg.warm_pool, d.templates, err, sizeof(err)) != 0) {
		fprintf(stderr, "sandbard: %s\n", err);
		return 1;
	}
	if (migration_set_load(d.cfg.migrations_path, &d.migrations, err, sizeof(err)) != 0) {
		fprintf(stderr, "sandbard: migrations: %s\n", err);
		return 1;
	}

	if (agent_binary_load(d.cfg.agent_binary, &d.agent_bin, &d.agent_len) != 0) {
		fprintf(stderr,
			"sandbard: cannot read the sandbox agent %s: %s (build it with meson, or set "
			"SANDBAR_AGENT_BINARY)\n",
			d.cfg.agent_binary, strerror(errno));
		return 1;
	}
	log_info("agent %s (%zu bytes)", d.cfg.agent_binary, d.agent_len);
	if (preview_secret_load(&d.preview_secret, d.cfg.preview_secret, d.cfg.data_dir, err, sizeof(err)) !=
	    0) {
		fprintf(stderr, "sandbard: preview secret: %s\n", err);
		return 1;
	}

	d.base = event_base_new();
	CHECK(d.base != NULL);
	d.docker = docker_new(d.base, d.cfg.docker_host);
	if (!d.docker) {
		fprintf(stderr, "sandbard: DOCKER_HOST: cannot use '%s'\n", d.cfg.docker_host);
		return 2;
	}
	docker_set_limits(d.docker, &(struct docker_limits){
					    .connect_timeout_ms = d.cfg.docker_connect_timeout_ms,
					    .probe_interval_ms = d.cfg.docker_probe_interval_ms,
					    .probe_timeout_ms = d.cfg.docker_probe_timeout_ms,
				    });
	struct pg_pool_config pgc = {
		.conninfo = d.cfg.database_url,
		.application_name = d.cfg.instance_id, /* sandbox_events.instance's default */
		.size = (int)d.cfg.pg_pool_size,
		.max_waiters = (int)d.cfg.pg_max_waiters,
		.retry_min_ms = 100,
		.retry_max_ms = 5000,
	};
	d.pg = pg_pool_new(d.base, &pgc);
	d.channels = channels_new(d.base, d.docker);
	struct registry_config rcfg = {
		.cluster = d.cfg.cluster,
		.instance = d.cfg.instance_id,
		.conninfo = d.cfg.database_url,
		.idle_timeout_ms = d.cfg.sandbox_idle_timeout_ms,
		.cache_ms = d.cfg.exec_lookup_cache_ms,
	};
	d.reg = registry_new(d.base, &rcfg, d.pg, d.channels);
	d.svc = sandbox_service_new(d.base, &d.cfg, d.reg, d.docker, d.templates, d.agent_bin, d.agent_len);
	sandbox_service_set_preview_secret(d.svc, &d.preview_secret);
	struct commands_config ccfg = {
		.instance = d.cfg.instance_id,
		.max_per_sandbox = (int)d.cfg.commands_per_sandbox,
		.ring_bytes = d.cfg.command_output_buffer,
		.max_output_cap = d.cfg.max_output_bytes,
		.window = (uint32_t)(d.cfg.stream_window > (64u << 20) ? (64u << 20) : d.cfg.stream_window),
		.grace_ms = 2000,
	};
	d.commands = commands_new(d.base, &ccfg, d.reg);
	struct tasks_config kcfg = {
		.instance = d.cfg.instance_id,
		.default_timeout_ms = d.cfg.task_timeout_ms,
		.max_timeout_ms = d.cfg.task_max_timeout_ms,
		.cancel_grace_ms = 5000,
		.max_output = d.cfg.max_output_bytes,
	};
	d.tasks = tasks_new(d.base, &kcfg, d.reg, d.commands);
	d.fs = agentfs_new(d.base, d.reg, d.cfg.upload_limit);
	struct files_transfer_config tcfg = { .upload_limit = d.cfg.upload_limit,
					      .spool_dir = d.cfg.upload_spool_dir };
	d.xfer = files_transfer_new(d.base, d.reg, d.docker, d.fs, &tcfg);
	const char *colon = strrchr(d.cfg.server_addr, ':');
	int listen_port = colon ? atoi(colon + 1) : 0;
	preview_public_init(&d.preview, d.preview_domain, sizeof(d.preview_domain), d.cfg.preview_domain,
			    d.cfg.preview_scheme, d.cfg.preview_port ? (int)d.cfg.preview_port : listen_port);
	struct core core = { .svc = d.svc,
			     .reg = d.reg,
			     .cmds = d.commands,
			     .tasks = d.tasks,
			     .fs = d.fs,
			     .xfer = d.xfer,
			     .preview = &d.preview,
			     .preview_secret = &d.preview_secret };
	d.api = api_new(d.base, &d.cfg, &core);
	CHECK(d.api != NULL);

	d.sigterm = evsignal_new(d.base, SIGTERM, on_signal, &d);
	d.sigint = evsignal_new(d.base, SIGINT, on_signal, &d);
	evsignal_add(d.sigterm, NULL);
	evsignal_add(d.sigint, NULL);
	d.boot_timeout = evtimer_new(d.base, boot_timed_out, &d);
	struct timeval tv = { .tv_sec = (time_t)(d.cfg.pg_connect_timeout_ms / 1000),
			      .tv_usec = (suseconds_t)(d.cfg.pg_connect_timeout_ms % 1000) * 1000 };
	evtimer_add(d.boot_timeout, &tv);

	d.state = BOOT_DOCKER;
	docker_version_check(d.docker, boot_docker_checked, &d);
	event_base_dispatch(d.base);

	if (d.http)
		http_server_free(d.http);
	if (d.preview_http)
		http_server_free(d.preview_http);
	api_free(d.api);
	files_transfer_free(d.xfer); /* spool files of uploads cut short close with it */
	agentfs_free(d.fs);
	tasks_free(d.tasks); /* before the commands its runs hold */
	commands_free(d.commands);
	sandbox_service_free(d.svc);
	registry_free(d.reg);
	channels_free(d.channels);
	free(d.agent_bin);
	pg_pool_free(d.pg);
	docker_free(d.docker);
	event_free(d.sigterm);
	event_free(d.sigint);
	event_free(d.boot_timeout);
	event_base_free(d.base);
	migration_set_free(&d.migrations);
	template_set_free(d.templates);
	config_free(&d.cfg);
	log_info("sandbard: stopped");
	return d.exit_code;
}

static void fatal(struct sandbard *d, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error("%s", msg);
	d->exit_code = 1;
	event_base_loopbreak(d->base);
}

static void boot_docker_checked(const char *version, const char *err, void *arg)
{
	struct sandbard *d = arg;
	if (err) {
		fatal(d, "docker at %s: %s", d->cfg.docker_host, err);
		return;
	}
	log_info("docker at %s: API %s", d->cfg.docker_host, version);
	boot_set_state(d, BOOT_RUNTIMES);
	for (int r = 0; r < SANDBOX_RUNTIME_MAX; r++) {
		if (sandbox_runtimes_docker(&d->runtimes, (enum sandbox_runtime)r)) {
			if (!docker_info(d->docker, boot_runtimes_checked, d))
				fatal(d, "docker at %s: cannot ask for /info", d->cfg.docker_host);
			return;
		}
	}
	boot_network(d);
}

/* A runtime a create may name must be one dockerd knows: else every such
 * create would fail at Docker's start, long after the 201. */
static void boot_runtimes_checked(const struct docker_info *info, const char *err, void *arg)
{
	struct sandbard *d = arg;
	if (d->state != BOOT_RUNTIMES) /* a signal came first */
		return;
	if (err) {
		fatal(d, "docker at %s: /info: %s", d->cfg.docker_host, err);
		return;
	}
	for (int r = 0; r < SANDBOX_RUNTIME_MAX; r++) {
		const char *name = sandbox_runtimes_docker(&d->runtimes, (enum sandbox_runtime)r);
		struct json_object *rt = NULL;
		if (!name)
			continue;
		if (!info->runtimes || !json_object_object_get_ex(info->runtimes, name, &rt)) {
			char have[256];
			runtimes_list(info->runtimes, have, sizeof(have));
			const char *what = sandbox_runtime_name((enum sandbox_runtime)r);
			fatal(d,
			      "SANDBAR_RUNTIMES=%s: dockerd at %s has no runtime '%s' "
			      "(it has: %s); register it (SANDBAR_RUNTIMES=%s "
			      "tools/lib/setup.sh docker; README, gVisor) or leave %s out",
			      d->cfg.runtimes, d->cfg.docker_host, name, have, what, what);
			return;
		}
		struct json_object *path = NULL;
		json_object_object_get_ex(rt, "path", &path);
		log_info("runtime %s: dockerd's %s (%s)", sandbox_runtime_name((enum sandbox_runtime)r), name,
			 path ? json_object_get_string(path) : "?");
	}
	boot_network(d);
}

/* The names of dockerd's runtimes, comma separated ("none" for none). */
static void runtimes_list(struct json_object *runtimes, char *buf, size_t cap)
{
	size_t len = 0;
	buf[0] = '\0';
	if (runtimes) {
		json_object_object_foreach(runtimes, key, unused)
		{
			(void)unused;
			if (len < cap)
				len += (size_t)snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", key);
		}
	}
	if (!buf[0])
		snprintf(buf, cap, "none");
}

static void boot_network(struct sandbard *d)
{
	boot_set_state(d, BOOT_NETWORK);
	if (!d->cfg.network[0]) {
		boot_network_made(NULL, d);
		return;
	}
	struct json_object *labels = json_object_new_object();
	json_object_object_add(labels, "sandbar.managed", json_object_new_string("true"));
	if (!docker_network_create(d->docker, d->cfg.network, labels, boot_network_made, d))
		fatal(d, "docker network %s: cannot ask Docker", d->cfg.network);
}

/* Sandboxes join it at create (NetworkMode): a missing one would fail every
 * create. Not labelled with a cluster: every installation on the Docker host
 * shares it (and none may remove it). */
static void boot_network_made(const char *err, void *arg)
{
	struct sandbard *d = arg;
	if (d->state != BOOT_NETWORK) /* a signal came first */
		return;
	if (err) {
		fatal(d, "docker network %s (SANDBAR_NETWORK): %s", d->cfg.network, err);
		return;
	}
	if (d->cfg.network[0])
		log_info("sandboxes join docker network %s (inter-container traffic off)", d->cfg.network);
	/* a sandbox reaches the host at its gateway address: what listens on
	 * every address is in its reach (README, "Security") */
	if (on_every_address(d->cfg.server_addr))
		log_warn("SERVER_ADDR %s listens on every address: sandboxes reach the API at their gateway "
			 "(listen on 127.0.0.1 behind a proxy, or set SANDBAR_API_TOKENS)",
			 d->cfg.server_addr);
	if (on_every_address(d->cfg.publish_addr))
		log_warn("SANDBAR_PUBLISH_ADDR %s: a sandbox reaches another's published ports through the "
			 "host",
			 d->cfg.publish_addr);
	boot_set_state(d, BOOT_DATABASE);
	pg_pool_start(d->pg, boot_pg_state, d);
}

/* "", ":8080", "0.0.0.0", "0.0.0.0:8080", "::", "[::]:8080" */
static bool on_every_address(const char *addr)
{
	return !*addr || *addr == ':' || strncmp(addr, "0.0.0.0", 7) == 0 || strcmp(addr, "::") == 0 ||
	       strncmp(addr, "[::]", 4) == 0;
}

static void boot_pg_state(bool up, void *arg)
{
	struct sandbard *d = arg;
	log_info("postgresql %s", up ? "reachable" : "unreachable: answering 503 until it is back");
	if (up && d->state == BOOT_DATABASE) {
		boot_set_state(d, BOOT_MIGRATE);
		migrate_run(d->pg, &d->migrations, boot_migrated, d);
	}
}

static void boot_migrated(int rc, const char *message, void *arg)
{
	struct sandbard *d = arg;
	if (rc != 0) {
		fatal(d, "migrations: %s", message);
		return;
	}
	boot_set_state(d, BOOT_RECONCILE);
	registry_start(d->reg);
	sandbox_service_start(d->svc, boot_reconciled, d);
	tasks_start(d->tasks); /* this instance's tasks followed again */
}

static void boot_reconciled(int rc, void *arg)
{
	struct sandbard *d = arg;
	if (rc != 0)
		log_warn("reconcile incomplete; serving anyway (it runs again at the next start)");
	struct http_server_limits limits = {
		.max_header_bytes = d->cfg.http_max_header_bytes,
		.max_body_bytes = d->cfg.http_max_body_bytes,
		.header_timeout_ms = d->cfg.http_header_timeout_ms,
		.body_timeout_ms = d->cfg.http_body_timeout_ms,
		.idle_timeout_ms = d->cfg.http_idle_timeout_ms,
		.max_connections = (int)d->cfg.http_max_connections,
	};
	d->http = http_server_new(d->base, &limits, api_dispatch, d->api);
	http_server_set_error_renderer(d->http, api_render_error, d->api);
	if (http_server_listen(d->http, d->cfg.server_addr) != 0) {
		fatal(d, "cannot listen on %s: %m", d->cfg.server_addr);
		return;
	}
	if (d->cfg.preview_addr[0]) {
		d->preview_http = http_server_new(d->base, &limits, api_preview_dispatch, d->api);
		if (http_server_listen(d->preview_http, d->cfg.preview_addr) != 0) {
			fatal(d, "cannot listen on %s (SANDBAR_PREVIEW_ADDR): %m", d->cfg.preview_addr);
			return;
		}
		log_info("previews also on %s (port %d)", d->cfg.preview_addr,
			 http_server_port(d->preview_http));
	}
	evtimer_del(d->boot_timeout);
	boot_set_state(d, BOOT_SERVING);
	log_info("sandbard %s listening on %s (port %d)", SANDBAR_VERSION, d->cfg.server_addr,
		 http_server_port(d->http));
}

static void boot_timed_out(evutil_socket_t fd, short what, void *arg)
{
	struct sandbard *d = arg;
	fatal(d, "start-up did not finish within SANDBAR_PG_STARTUP_TIMEOUT (stuck in state %d)",
	      (int)d->state);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct sandbard *d = arg;
	if (d->state == BOOT_STOPPING) {
		log_warn("second signal: stopping now");
		event_base_loopbreak(d->base);
		return;
	}
	bool serving = d->state == BOOT_SERVING;
	boot_set_state(d, BOOT_STOPPING);
	log_info("signal %d: draining connections (up to %lld ms)", (int)sig,
		 (long long)d->cfg.shutdown_grace_ms);
	if (!serving) {
		event_base_loopbreak(d->base);
		return;
	}
	api_shutdown(d->api);
	d->serving = d->preview_http ? 2 : 1;
	http_server_shutdown(d->http, d->cfg.shutdown_grace_ms, shutdown_done, d);
	if (d->preview_http)
		http_server_shutdown(d->preview_http, d->cfg.shutdown_grace_ms, shutdown_done, d);
}

static void tasks_drained(void *arg)
{
	struct sandbard *d = arg;
	event_base_loopbreak(d->base);
}

/* Then what the tasks have not stored yet is written, so a resumed runner
 * picks up where this one stopped. */
static void shutdown_drained(void *arg)
{
	struct sandbard *d = arg;
	tasks_drain(d->tasks, 3000, tasks_drained, d);
}

/* Every listener's requests answered: then background work (creates, the
 * warm pool's) ends. */
static void shutdown_done(void *arg)
{
	struct sandbard *d = arg;
	if (--d->serving > 0)
		return;
	sandbox_service_drain(d->svc, d->cfg.shutdown_grace_ms, shutdown_drained, d);
}

/* Every connection may hold two sockets (a proxied one: the client's and the
 * sandbox port's), besides Docker's, PostgreSQL's and the agents' streams:
 * the soft limit on open files is raised to fit, as far as the hard one lets. */
static void raise_fd_limit(const struct config *cfg)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	int listeners = cfg->preview_addr[0] ? 2 : 1;
	rlim_t want = (rlim_t)cfg->http_max_connections * 2 * (rlim_t)listeners + 1024;
	if (rl.rlim_cur >= want)
		return;
	rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want)
		log_warn("open files limited to %llu (the hard limit); SANDBAR_MAX_CONNECTIONS=%lld wants "
			 "%llu",
			 (unsigned long long)rl.rlim_cur, (long long)cfg->http_max_connections,
			 (unsigned long long)want);
}

/* Start-up, before the loop: a blocking read is fine here. */
static int agent_binary_load(const char *path, void **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;
	if (!f)
		return -1;
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 1u << 20;
			char *nb = realloc(buf, cap);
			if (!nb)
				goto fail;
			buf = nb;
		}
		size_t got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f))
		goto fail;
	if (n == 0) {
		errno = ENOEXEC;
		goto fail;
	}
	fclose(f);
	*out = buf;
	*len = n;
	return 0;
fail:
	free(buf);
	fclose(f);
	return -1;
}
