/* Server configuration from the environment. One table row per setting, so
 * loading, defaults, validation and `sandbard --help` can never disagree. */
#include "core/config.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/log.h"
#include "core/units.h"

enum cfg_type {
	CFG_STRING,
	CFG_LOG_LEVEL,
	CFG_DURATION,
	CFG_SIZE,
	CFG_INT,
	CFG_CPUS,
	CFG_RATIO,
	CFG_BOOL,
	CFG_TYPE_MAX
};

struct cfg_setting {
	const char *env;
	enum cfg_type type;
	const char *def; /* in the same syntax as the variable; NULL = unset */
	int64_t min;	 /* lower bound for durations (ms), sizes and integers */
	size_t offset;
	const char *help;
};

static int parse_setting(const struct cfg_setting *s, const char *val, struct config *cfg, char *err,
			 size_t errcap);
static int parse_bool(const char *s, bool *out);
static int parse_int(const char *s, int64_t *out);

#define AT(field) offsetof(struct config, field)

static const struct cfg_setting settings[] = {
	{ "DATABASE_URL", CFG_STRING, NULL, 0, AT(database_url), "PostgreSQL connection string (required)" },
	{ "SERVER_ADDR", CFG_STRING, ":8080", 0, AT(server_addr), "HTTP listen address, [host]:port" },
	{ "DEVCONTAINERS_PATH", CFG_STRING, "devcontainers", 0, AT(devcontainers_path),
	  "folder of templates, one sub-folder with a devcontainer.json each" },
	{ "DOCKER_HOST", CFG_STRING, "unix:///var/run/docker.sock", 0, AT(docker_host),
	  "Docker Engine API endpoint (unix:///path or tcp://host:port)" },
	{ "SANDBAR_DOCKER_CONNECT_TIMEOUT", CFG_DURATION, "1s", 10, AT(docker_connect_timeout_ms),
	  "a connect to Docker taking longer makes Docker unreachable: requests that need it get 503 "
	  "docker_unavailable" },
	{ "SANDBAR_DOCKER_PROBE_INTERVAL", CFG_DURATION, "2s", 100, AT(docker_probe_interval_ms),
	  "how often GET /_ping checks that Docker answers (every 250ms while it does not)" },
	{ "SANDBAR_DOCKER_PROBE_TIMEOUT", CFG_DURATION, "2s", 10, AT(docker_probe_timeout_ms),
	  "a probe unanswered this long makes Docker unreachable: calls in flight fail with 503" },
	{ "SANDBAR_MIGRATIONS_PATH", CFG_STRING, "sql", 0, AT(migrations_path),
	  "folder of numbered SQL migrations applied at start-up" },
	{ "SANDBAR_LOG_LEVEL", CFG_LOG_LEVEL, "info", 0, AT(log_level), "debug, info, warn or error" },
	{ "SANDBAR_CLUSTER", CFG_STRING, "default", 0, AT(cluster),
	  "name of the installation: instances sharing a database use the same one; "
	  "containers are labelled with it and the reconciler touches no other" },
	{ "SANDBAR_INSTANCE_ID", CFG_STRING, NULL, 0, AT(instance_id),
	  "this instance among those sharing a database (default: hostname and SERVER_ADDR); "
	  "keep it stable across restarts" },
	{ "SANDBAR_AGENT_BINARY", CFG_STRING, NULL, 0, AT(agent_binary),
	  "the static sandbar-agent installed into every sandbox (default: agent/sandbar-agent "
	  "next to the sandbard executable)" },

	{ "SANDBOX_IDLE_TIMEOUT", CFG_DURATION, "15m", 1000, AT(sandbox_idle_timeout_ms),
	  "a sandbox without activity for this long expires" },
	{ "SANDBAR_REAPER_INTERVAL", CFG_DURATION, "60s", 100, AT(reaper_interval_ms),
	  "upper bound between reaper passes (at least 100ms)" },
	{ "SANDBOX_MEMORY_LIMIT", CFG_SIZE, "2g", 6 << 20, AT(sandbox_memory_limit),
	  "memory limit per sandbox (k/m/g are 1024-based, KB/MB/GB 1000-based)" },
	{ "SANDBOX_CPU_LIMIT", CFG_CPUS, "2", 0, AT(sandbox_cpu_limit),
	  "CPUs per sandbox, a decimal number > 0" },
	{ "SANDBOX_PIDS_LIMIT", CFG_INT, "1024", 1, AT(sandbox_pids_limit), "process limit per sandbox" },
	{ "SANDBAR_MAX_CPU", CFG_CPUS, "8", 0, AT(max_cpu), "most CPUs a create or update may ask for" },
	{ "SANDBAR_MAX_MEMORY", CFG_SIZE, "16g", 6 << 20, AT(max_memory),
	  "most memory a create or update may ask for" },
	{ "SANDBAR_MEMORY_OVERCOMMIT", CFG_RATIO, "8", 0, AT(memory_overcommit),
	  "creates and starts get 503 while the sandboxes' memory limits would pass this many times the "
	  "Docker host's memory (0: never)" },
	{ "SANDBAR_MAX_PORTS", CFG_INT, "32", 1, AT(max_ports),
	  "most ports a sandbox publishes (the template's and those a create asks for)" },
	{ "SANDBAR_MAX_KEEPALIVE", CFG_DURATION, "24h", 1000, AT(max_keepalive_ms),
	  "longest a keepalive may hold a sandbox's idle action off" },
	{ "SANDBAR_CREATE_TIMEOUT", CFG_DURATION, "10m", 1000, AT(create_timeout_ms),
	  "longest a create may take, image build included" },
	{ "SANDBAR_STOP_GRACE", CFG_DURATION, "10s", 0, AT(stop_grace_ms),
	  "a stop gives a sandbox's processes this long after SIGTERM before SIGKILL" },
	{ "SANDBAR_PREBUILD_TEMPLATES", CFG_BOOL, "false", 0, AT(prebuild_templates),
	  "build every template's image in the background at start-up (tools/run sets it)" },
	{ "SANDBAR_ALLOW_PRIVILEGED", CFG_BOOL, "false", 0, AT(allow_privileged),
	  "let templates ask for privileged containers" },
	{ "SANDBAR_ALLOW_CAP_ADD", CFG_BOOL, "false", 0, AT(allow_cap_add),
	  "let templates add capabilities (capAdd)" },
	{ "SANDBAR_ALLOW_BIND_MOUNTS", CFG_BOOL, "false", 0, AT(allow_bind_mounts),
	  "let templates bind-mount host paths" },
	{ "SANDBAR_WARM_POOL", CFG_STRING, NULL, 0, AT(warm_pool),
	  "started sandboxes kept ready per template, e.g. base=4,python=2 (a create claims one)" },
	{ "SANDBAR_WARM_POOL_CONCURRENCY", CFG_INT, "2", 1, AT(warm_pool_concurrency),
	  "pool members made at once (none while other creates run)" },
	{ "SANDBAR_WARM_POOL_CHECK", CFG_DURATION, "10s", 100, AT(warm_pool_check_ms),
	  "how often the pool looks at its templates' images (a change starts a rollout) and counts" },
	{ "SANDBAR_ALLOWED_IMAGES", CFG_STRING, NULL, 0, AT(allowed_images),
	  "images a sandbox may be created with or changed to by name (Hermes spec.image, PATCH image), "
	  "comma separated (unset: the templates' images)" },
	{ "SANDBAR_DEFAULT_TTL", CFG_DURATION, "12h", 1000, AT(default_ttl_ms),
	  "lifetime of a sandbox created through the Hermes dialect without ttl_hours" },
	{ "SANDBAR_HERMES_TEMPLATE", CFG_STRING, "base", 0, AT(hermes_template),
	  "the template whose devcontainer settings (and image, unless spec.image is given) Hermes "
	  "sandboxes use; its warm pool is the one /admin reports and rolls" },
	{ "SANDBAR_IMAGE_PRUNE_AGE", CFG_DURATION, "1h", 0, AT(image_prune_age_ms),
	  "at start, derived images of another agent that no container uses are removed once this old "
	  "(another "
	  "sandbard on the Docker host may have just made one)" },
	{ "SANDBAR_PUBLISH_ADDR", CFG_STRING, "127.0.0.1", 0, AT(publish_addr),
	  "host address sandbox ports are published on (0.0.0.0 exposes them to the network)" },
	{ "SANDBAR_RUNTIMES", CFG_STRING, NULL, 0, AT(runtimes),
	  "container runtimes beside runc that templates and creates may ask for, comma separated: gvisor "
	  "(dockerd's runtime sandbar-gvisor; gvisor=NAME for another name); checked with dockerd at start" },
	{ "SANDBAR_NETWORK", CFG_STRING, "sandbar", 0, AT(network),
	  "Docker bridge network sandboxes join, made at start-up when missing with inter-container "
	  "traffic off (empty: Docker's default bridge)" },
	{ "SANDBAR_PREVIEW_DOMAIN", CFG_STRING, "preview.localhost", 0, AT(preview_domain),
	  "requests for <port>-<sandbox id>.<this> go to that port of the sandbox (empty: no previews)" },
	{ "SANDBAR_PREVIEW_ADDR", CFG_STRING, "", 0, AT(preview_addr),
	  "a second listener that serves previews only, e.g. :8081 (empty: none; SERVER_ADDR serves both)" },
	{ "SANDBAR_PREVIEW_SCHEME", CFG_STRING, "http", 0, AT(preview_scheme),
	  "the scheme of the preview URLs sandboxes show (https behind a proxy with a certificate)" },
	{ "SANDBAR_PREVIEW_PORT", CFG_INT, "0", 0, AT(preview_port),
	  "the port of the preview URLs sandboxes show (0: SERVER_ADDR's; 80 and 443 are left out)" },
	{ "SANDBAR_PREVIEW_CONNECT_TIMEOUT", CFG_DURATION, "5s", 1, AT(preview_connect_timeout_ms),
	  "a preview's connection to the sandbox port, then 502" },
	{ "SANDBAR_PREVIEW_HEAD_TIMEOUT", CFG_DURATION, "60s", 1, AT(preview_head_timeout_ms),
	  "request sent to the app -> its answer's head, then 504" },
	{ "SANDBAR_PREVIEW_IDLE_TIMEOUT", CFG_DURATION, "120s", 1, AT(preview_idle_timeout_ms),
	  "a proxied answer, WebSocket or kept upstream connection with no byte either way is closed" },
	{ "SANDBAR_PREVIEW_IDLE_CONNS", CFG_INT, "32", 0, AT(preview_idle_conns),
	  "idle upstream connections kept per sandbox port for the next request" },
	{ "SANDBAR_WAKE_TIMEOUT", CFG_DURATION, "30s", 1, AT(wake_timeout_ms),
	  "a request held while its stopped sandbox (auto_wake) starts and its port answers, then 504" },
	{ "SANDBAR_PREVIEW_SECRET", CFG_STRING, NULL, 0, AT(preview_secret),
	  "signs private previews' tokens (instances sharing a database share it); "
	  "unset: 32 random bytes kept in <SANDBAR_DATA_DIR>/preview.secret" },
	{ "SANDBAR_PREVIEW_TOKEN_MAX_TTL", CFG_DURATION, "24h", 1000, AT(preview_token_max_ttl_ms),
	  "longest ttl_seconds a preview token may be minted with" },
	{ "SANDBAR_DATA_DIR", CFG_STRING, ".data", 0, AT(data_dir),
	  "folder of the server's own state (preview.secret), made at start-up when missing" },

	{ "SANDBAR_MAX_COMMANDS_PER_SANDBOX", CFG_INT, "64", 1, AT(commands_per_sandbox),
	  "running commands per sandbox and instance; over it: 429" },
	{ "SANDBAR_COMMAND_OUTPUT_BUFFER", CFG_SIZE, "512k", 4096, AT(command_output_buffer),
	  "output the agent keeps per command (replay, logs)" },
	{ "SANDBAR_MAX_OUTPUT_BYTES", CFG_SIZE, "16m", 0, AT(max_output_bytes),
	  "largest max_output_bytes an /execute may ask for" },
	{ "SANDBAR_STREAM_WINDOW", CFG_SIZE, "256k", 4096, AT(stream_window),
	  "output bytes in flight per stream between the agent and sandbard" },
	{ "SANDBAR_HERMES_WS_MAX_MESSAGE", CFG_SIZE, "8m", 1 << 20, AT(hermes_ws_max_message),
	  "largest JSON-RPC message a Hermes WebSocket takes, fragments reassembled (over it: close 1009)" },
	{ "SANDBAR_EXEC_LOOKUP_CACHE", CFG_DURATION, "1s", 0, AT(exec_lookup_cache_ms),
	  "how long a cached sandbox is trusted while not listening for other instances' changes (0: always "
	  "look up)" },
	{ "SANDBAR_TASK_TIMEOUT", CFG_DURATION, "30m", 1000, AT(task_timeout_ms),
	  "a coding-agent task's wall-clock limit when it asks for none (then timed_out)" },
	{ "SANDBAR_TASK_MAX_TIMEOUT", CFG_DURATION, "6h", 1000, AT(task_max_timeout_ms),
	  "the largest timeout_seconds a task may ask for" },
	{ "SANDBAR_MAX_HEADER_BYTES", CFG_SIZE, "16k", 1024, AT(http_max_header_bytes),
	  "largest request head (request line and headers)" },
	{ "SANDBAR_MAX_BODY_BYTES", CFG_SIZE, "1m", 1024, AT(http_max_body_bytes),
	  "largest JSON request body (uploads have their own limit)" },
	{ "UPLOAD_LIMIT", CFG_SIZE, "100m", 0, AT(upload_limit),
	  "largest file a files/upload or archive upload may write (over it: 413)" },
	{ "UPLOAD_SPOOL_DIR", CFG_STRING, "/tmp", 0, AT(upload_spool_dir),
	  "where a chunked files/upload (no Content-Length) is held until its size is known "
	  "(unlinked at once, so nothing stays)" },
	{ "SANDBAR_HEADER_TIMEOUT", CFG_DURATION, "10s", 100, AT(http_header_timeout_ms),
	  "time a client has to send a complete request head" },
	{ "SANDBAR_BODY_TIMEOUT", CFG_DURATION, "60s", 100, AT(http_body_timeout_ms),
	  "time a client has to send a request body read whole (JSON, at most SANDBAR_MAX_BODY_BYTES) "
	  "once the head is in; streamed bodies (uploads) are cut when no byte comes for "
	  "SANDBAR_IDLE_CONN_TIMEOUT instead" },
	{ "SANDBAR_IDLE_CONN_TIMEOUT", CFG_DURATION, "120s", 100, AT(http_idle_timeout_ms),
	  "an idle keep-alive connection is closed after this (keep it above 90s: Go clients such as the "
	  "Hermes SDK drop theirs then, and never resend a POST we closed under them)" },
	{ "SANDBAR_MAX_CONNECTIONS", CFG_INT, "4096", 1, AT(http_max_connections),
	  "concurrent client connections" },
	{ "SANDBAR_SHUTDOWN_GRACE", CFG_DURATION, "10s", 0, AT(shutdown_grace_ms),
	  "on SIGTERM, time in-flight requests get to finish" },
	{ "SANDBAR_API_TOKENS", CFG_STRING, NULL, 0, AT(api_tokens),
	  "comma-separated bearer tokens; unset = no authentication" },

	{ "SANDBAR_PG_POOL_SIZE", CFG_INT, "4", 1, AT(pg_pool_size), "PostgreSQL connections in the pool" },
	{ "SANDBAR_PG_MAX_WAITERS", CFG_INT, "1024", 0, AT(pg_max_waiters),
	  "queries queued for a free connection before new ones fail" },
	{ "SANDBAR_PG_STARTUP_TIMEOUT", CFG_DURATION, "60s", 0, AT(pg_connect_timeout_ms),
	  "how long start-up retries while PostgreSQL is not up yet" },
};

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" };
	static const char *const no[] = { "0", "false", "no", "off" };
	for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

static int parse_int(const char *s, int64_t *out)
{
	if (*s < '0' || *s > '9')
		return -1; /* no sign, no spaces */
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

static int parse_setting(const struct cfg_setting *s, const char *val, struct config *cfg, char *err,
			 size_t errcap)
{
	char *field = (char *)cfg + s->offset;
	int64_t i64;
	uint64_t u64;
	bool b;
	const char *what = "value";

	switch (s->type) {
	case CFG_LOG_LEVEL: {
		enum log_level lvl;
		what = "log level";
		if (log_level_parse(val, &lvl) != 0)
			goto bad;
	}
		/* fall through */
	case CFG_STRING: {
		char *copy = strdup(val);
		if (!copy) {
			snprintf(err, errcap, "%s: out of memory", s->env);
			return -1;
		}
		free(*(char **)field);
		*(char **)field = copy;
		return 0;
	}
	case CFG_DURATION:
		what = "duration";
		if (duration_parse(val, &i64) != 0)
			goto bad;
		if (i64 < s->min)
			goto too_small;
		memcpy(field, &i64, sizeof(i64));
		return 0;
	case CFG_SIZE:
		what = "size";
		if (size_parse(val, &u64) != 0)
			goto bad;
		if (u64 < (uint64_t)s->min)
			goto too_small;
		memcpy(field, &u64, sizeof(u64));
		return 0;
	case CFG_INT:
		what = "integer";
		if (parse_int(val, &i64) != 0)
			goto bad;
		if (i64 < s->min)
			goto too_small;
		memcpy(field, &i64, sizeof(i64));
		return 0;
	case CFG_CPUS:
	case CFG_RATIO: {
		what = s->type == CFG_CPUS ? "number of CPUs" : "number";
		char *end;
		if (*val < '0' || *val > '9')
			goto bad;
		errno = 0;
		double d = strtod(val, &end);
		if (errno != 0 || *end != '\0' || !isfinite(d) || d < 0 || (d == 0 && s->type == CFG_CPUS))
			goto bad;
		memcpy(field, &d, sizeof(d));
		return 0;
	}
	case CFG_BOOL:
		what = "boolean (1/0/true/false/yes/no)";
		if (parse_bool(val, &b) != 0)
			goto bad;
		memcpy(field, &b, sizeof(b));
		return 0;
	case CFG_TYPE_MAX:
		break;
	}
	CHECK(!"unknown setting type");
bad:
	snprintf(err, errcap, "%s: bad %s '%s'", s->env, what, val);
	return -1;
too_small:
	snprintf(err, errcap, "%s: '%s' is below the minimum of %lld%s", s->env, val, (long long)s->min,
		 s->type == CFG_DURATION ? "ms" : "");
	return -1;
}

int config_load(struct config *cfg, char *err, size_t errcap)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < ARRAY_LEN(settings); i++) {
		const struct cfg_setting *s = &settings[i];
		/* an empty variable counts as unset, as shells make "X= cmd" easy */
		const char *val = getenv(s->env);
		if (val && *val) {
			if (parse_setting(s, val, cfg, err, errcap) != 0)
				goto fail;
		} else if (s->def) {
			/* defaults are in the table's own syntax; a bad one is our bug */
			CHECK(parse_setting(s, s->def, cfg, err, errcap) == 0);
		}
	}
	if (!cfg->instance_id) {
		char host[256] = "localhost";
		gethostname(host, sizeof(host) - 1);
		size_t n = strlen(host) + strlen(cfg->server_addr) + 2;
		cfg->instance_id = malloc(n);
		CHECK(cfg->instance_id != NULL);
		snprintf(cfg->instance_id, n, "%s/%s", host, cfg->server_addr);
	}
	if (!cfg->agent_binary) {
		/* built next to sandbard: build/src/sandbard and build/src/agent/sandbar-agent */
		char exe[4096];
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		exe[n > 0 ? n : 0] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash)
			*slash = '\0';
		size_t len = strlen(exe) + sizeof("/agent/sandbar-agent");
		cfg->agent_binary = malloc(len);
		CHECK(cfg->agent_binary != NULL);
		snprintf(cfg->agent_binary, len, "%s/agent/sandbar-agent", slash ? exe : ".");
	}
	return 0;
fail:
	config_free(cfg);
	return -1;
}

void config_free(struct config *cfg)
{
	for (size_t i = 0; i < ARRAY_LEN(settings); i++) {
		if (settings[i].type == CFG_STRING || settings[i].type == CFG_LOG_LEVEL) {
			char **p = (char **)((char *)cfg + settings[i].offset);
			free(*p);
			*p = NULL;
		}
	}
}

void config_print_help(FILE *out)
{
	fprintf(out, "sandbard: a control plane for short-lived development sandboxes.\n\n"
		     "Configuration comes from the environment:\n\n");
	for (size_t i = 0; i < ARRAY_LEN(settings); i++) {
		const struct cfg_setting *s = &settings[i];
		fprintf(out, "  %-28s %s\n", s->env, s->help);
		if (s->def)
			fprintf(out, "  %-28s (default: %s)\n", "", s->def);
		else
			fprintf(out, "  %-28s (no default)\n", "");
	}
	fprintf(out, "\nDurations: 250ms, 30s, 15m, 1h30m (a bare number is seconds).\n"
		     "Sizes: 64k, 512m, 2g (1024-based), 100MB (1000-based), 1GiB (a bare number is bytes).\n"
		     "Booleans: 1/0, true/false, yes/no.\n");
}
