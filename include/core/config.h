/* Server configuration, read once from the environment at start-up.
 * Every setting has a default and a line in `sandbard --help`. */
#ifndef SANDBAR_CORE_CONFIG_H
#define SANDBAR_CORE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/check.h"

struct config {
	/* where things are */
	char *database_url;		   /* DATABASE_URL (required) */
	char *server_addr;		   /* SERVER_ADDR, default ":8080" */
	char *devcontainers_path;	   /* DEVCONTAINERS_PATH, default "devcontainers" */
	char *docker_host;		   /* DOCKER_HOST, default "unix:///var/run/docker.sock" */
	char *migrations_path;		   /* SANDBAR_MIGRATIONS_PATH, default "sql" */
	int64_t docker_connect_timeout_ms; /* SANDBAR_DOCKER_CONNECT_TIMEOUT, default 1s */
	int64_t docker_probe_interval_ms;  /* SANDBAR_DOCKER_PROBE_INTERVAL, default 2s */
	int64_t docker_probe_timeout_ms;   /* SANDBAR_DOCKER_PROBE_TIMEOUT, default 2s */
	char *log_level;		   /* SANDBAR_LOG_LEVEL, default "info" */
	char *cluster;	    /* SANDBAR_CLUSTER: installation sharing one database, default "default" */
	char *instance_id;  /* SANDBAR_INSTANCE_ID: this process among them, default hostname + SERVER_ADDR */
	char *agent_binary; /* SANDBAR_AGENT_BINARY: the sandbar-agent copied into every sandbox, default
			       <sandbard's folder>/agent/sandbar-agent (set by sandbard when unset) */

	/* sandboxes */
	int64_t sandbox_idle_timeout_ms; /* SANDBOX_IDLE_TIMEOUT, default 15m */
	int64_t reaper_interval_ms;	 /* SANDBAR_REAPER_INTERVAL, default 60s */
	uint64_t sandbox_memory_limit;	 /* SANDBOX_MEMORY_LIMIT bytes, default 2g */
	double sandbox_cpu_limit;	 /* SANDBOX_CPU_LIMIT cpus, default 2 */
	int64_t sandbox_pids_limit;	 /* SANDBOX_PIDS_LIMIT, default 1024 */
	double max_cpu;			 /* SANDBAR_MAX_CPU: most a create or update asks for, default 8 */
	uint64_t max_memory;		 /* SANDBAR_MAX_MEMORY bytes, default 16g */
	double memory_overcommit;	 /* SANDBAR_MEMORY_OVERCOMMIT × host memory, default 8 (0: off) */
	int64_t max_ports;		 /* SANDBAR_MAX_PORTS published per sandbox, default 32 */
	int64_t max_keepalive_ms;	 /* SANDBAR_MAX_KEEPALIVE, default 24h */
	int64_t create_timeout_ms;	 /* SANDBAR_CREATE_TIMEOUT, default 10m (includes image build) */
	int64_t stop_grace_ms;		 /* SANDBAR_STOP_GRACE, default 10s (SIGTERM -> SIGKILL at a stop) */
	bool prebuild_templates; /* SANDBAR_PREBUILD_TEMPLATES: build template images at start, default false
				  */
	bool allow_privileged;	 /* SANDBAR_ALLOW_PRIVILEGED, default false */
	bool allow_cap_add;	 /* SANDBAR_ALLOW_CAP_ADD, default false */
	bool allow_bind_mounts;	 /* SANDBAR_ALLOW_BIND_MOUNTS, default false */
	int64_t image_prune_age_ms; /* SANDBAR_IMAGE_PRUNE_AGE, default 1h */
	char *publish_addr; /* SANDBAR_PUBLISH_ADDR: host address of published ports, default 127.0.0.1 */
	char *network;	    /* SANDBAR_NETWORK: the sandboxes' bridge network, default sandbar, "" Docker's */
	char *runtimes;	    /* SANDBAR_RUNTIMES: runtimes beside runc a create may ask for ("gvisor"), default
			       none */
	char *preview_domain;		    /* SANDBAR_PREVIEW_DOMAIN, default preview.localhost */
	char *preview_addr;		    /* SANDBAR_PREVIEW_ADDR: a previews-only listener, "" none */
	char *preview_scheme;		    /* SANDBAR_PREVIEW_SCHEME, default http */
	int64_t preview_port;		    /* SANDBAR_PREVIEW_PORT, default 0: SERVER_ADDR's */
	int64_t preview_connect_timeout_ms; /* SANDBAR_PREVIEW_CONNECT_TIMEOUT, default 5s */
	int64_t preview_head_timeout_ms;    /* SANDBAR_PREVIEW_HEAD_TIMEOUT, default 60s */
	int64_t preview_idle_timeout_ms;    /* SANDBAR_PREVIEW_IDLE_TIMEOUT, default 120s */
	int64_t preview_idle_conns;	    /* SANDBAR_PREVIEW_IDLE_CONNS per sandbox port, default 4 */
	int64_t wake_timeout_ms;	    /* SANDBAR_WAKE_TIMEOUT, default 30s */
	char *preview_secret;		    /* SANDBAR_PREVIEW_SECRET; unset: <data dir>/preview.secret */
	int64_t preview_token_max_ttl_ms;   /* SANDBAR_PREVIEW_TOKEN_MAX_TTL, default 24h */
	char *data_dir;			    /* SANDBAR_DATA_DIR, default .data */
	char *warm_pool;		    /* SANDBAR_WARM_POOL "template=count,...", default none */
	int64_t warm_pool_concurrency;	    /* SANDBAR_WARM_POOL_CONCURRENCY, default 2 */
	int64_t warm_pool_check_ms;	    /* SANDBAR_WARM_POOL_CHECK, default 10s */
	char *allowed_images;	/* SANDBAR_ALLOWED_IMAGES, comma separated; unset: the templates' */
	int64_t default_ttl_ms; /* SANDBAR_DEFAULT_TTL: a Hermes sandbox's lifetime, default 12h */
	char *hermes_template;	/* SANDBAR_HERMES_TEMPLATE, default base */

	/* commands */
	int64_t commands_per_sandbox;	/* SANDBAR_MAX_COMMANDS_PER_SANDBOX, default 64 */
	uint64_t command_output_buffer; /* SANDBAR_COMMAND_OUTPUT_BUFFER, default 512k */
	uint64_t max_output_bytes;	/* SANDBAR_MAX_OUTPUT_BYTES, default 16m */
	uint64_t stream_window;		/* SANDBAR_STREAM_WINDOW, default 256k */
	int64_t exec_lookup_cache_ms;	/* SANDBAR_EXEC_LOOKUP_CACHE, default 1s */
	uint64_t hermes_ws_max_message; /* SANDBAR_HERMES_WS_MAX_MESSAGE, default 8m (at least 1m) */
	int64_t task_timeout_ms;	/* SANDBAR_TASK_TIMEOUT, default 30m */
	int64_t task_max_timeout_ms;	/* SANDBAR_TASK_MAX_TIMEOUT, default 6h */

	/* HTTP server */
	uint64_t http_max_header_bytes; /* SANDBAR_MAX_HEADER_BYTES, default 16k */
	uint64_t http_max_body_bytes;	/* SANDBAR_MAX_BODY_BYTES (JSON bodies), default 1m */
	int64_t http_header_timeout_ms; /* SANDBAR_HEADER_TIMEOUT, default 10s */
	int64_t http_body_timeout_ms;	/* SANDBAR_BODY_TIMEOUT, default 60s */
	int64_t http_idle_timeout_ms;	/* SANDBAR_IDLE_CONN_TIMEOUT, default 120s (> Go's 90 s) */
	int64_t http_max_connections;	/* SANDBAR_MAX_CONNECTIONS, default 4096 */
	int64_t shutdown_grace_ms;	/* SANDBAR_SHUTDOWN_GRACE, default 10s */
	uint64_t upload_limit;		/* UPLOAD_LIMIT bytes of one uploaded file, default 100m */
	char *upload_spool_dir;		/* UPLOAD_SPOOL_DIR: chunked uploads wait here, default /tmp */
	char *api_tokens;		/* SANDBAR_API_TOKENS, comma separated; unset = no auth */

	/* PostgreSQL */
	int64_t pg_pool_size;	       /* SANDBAR_PG_POOL_SIZE, default 4 */
	int64_t pg_max_waiters;	       /* SANDBAR_PG_MAX_WAITERS, default 1024 */
	int64_t pg_connect_timeout_ms; /* SANDBAR_PG_STARTUP_TIMEOUT: how long start-up waits for PostgreSQL,
					  default 60s */
};

/* Fills *cfg from the environment (getenv), defaults for what is unset.
 * On a bad value returns -1 and writes a one-line reason into err. */
MUST_USE int config_load(struct config *cfg, char *err, size_t errcap);
void config_free(struct config *cfg);
/* Prints every setting, its default and a one-line description. */
void config_print_help(FILE *out);

#endif
