/* Configuration: defaults with a clean environment, overrides, refused
 * values with their message, and a help text naming every variable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"

/* Every variable of include/core/config.h; test_help_lists_everything fails
 * when the help names one that is not here. */
static const char *const env_names[] = {
	"DATABASE_URL",
	"SERVER_ADDR",
	"DEVCONTAINERS_PATH",
	"DOCKER_HOST",
	"SANDBAR_DOCKER_CONNECT_TIMEOUT",
	"SANDBAR_DOCKER_PROBE_INTERVAL",
	"SANDBAR_DOCKER_PROBE_TIMEOUT",
	"SANDBAR_MIGRATIONS_PATH",
	"SANDBAR_LOG_LEVEL",
	"SANDBAR_CLUSTER",
	"SANDBAR_INSTANCE_ID",
	"SANDBAR_AGENT_BINARY",
	"SANDBOX_IDLE_TIMEOUT",
	"SANDBAR_REAPER_INTERVAL",
	"SANDBOX_MEMORY_LIMIT",
	"SANDBOX_CPU_LIMIT",
	"SANDBOX_PIDS_LIMIT",
	"SANDBAR_MAX_CPU",
	"SANDBAR_MAX_MEMORY",
	"SANDBAR_MEMORY_OVERCOMMIT",
	"SANDBAR_MAX_PORTS",
	"SANDBAR_MAX_KEEPALIVE",
	"SANDBAR_CREATE_TIMEOUT",
	"SANDBAR_STOP_GRACE",
	"SANDBAR_PREBUILD_TEMPLATES",
	"SANDBAR_ALLOW_PRIVILEGED",
	"SANDBAR_ALLOW_CAP_ADD",
	"SANDBAR_ALLOW_BIND_MOUNTS",
	"SANDBAR_WARM_POOL",
	"SANDBAR_WARM_POOL_CONCURRENCY",
	"SANDBAR_WARM_POOL_CHECK",
	"SANDBAR_ALLOWED_IMAGES",
	"SANDBAR_DEFAULT_TTL",
	"SANDBAR_HERMES_TEMPLATE",
	"SANDBAR_IMAGE_PRUNE_AGE",
	"SANDBAR_PUBLISH_ADDR",
	"SANDBAR_RUNTIMES",
	"SANDBAR_NETWORK",
	"SANDBAR_PREVIEW_DOMAIN",
	"SANDBAR_PREVIEW_ADDR",
	"SANDBAR_PREVIEW_SCHEME",
	"SANDBAR_PREVIEW_PORT",
	"SANDBAR_PREVIEW_CONNECT_TIMEOUT",
	"SANDBAR_PREVIEW_HEAD_TIMEOUT",
	"SANDBAR_PREVIEW_IDLE_TIMEOUT",
	"SANDBAR_PREVIEW_IDLE_CONNS",
	"SANDBAR_WAKE_TIMEOUT",
	"SANDBAR_PREVIEW_SECRET",
	"SANDBAR_PREVIEW_TOKEN_MAX_TTL",
	"SANDBAR_DATA_DIR",
	"SANDBAR_MAX_COMMANDS_PER_SANDBOX",
	"SANDBAR_COMMAND_OUTPUT_BUFFER",
	"SANDBAR_MAX_OUTPUT_BYTES",
	"SANDBAR_STREAM_WINDOW",
	"SANDBAR_EXEC_LOOKUP_CACHE",
	"SANDBAR_HERMES_WS_MAX_MESSAGE",
	"SANDBAR_TASK_TIMEOUT",
	"SANDBAR_TASK_MAX_TIMEOUT",
	"SANDBAR_MAX_HEADER_BYTES",
	"SANDBAR_MAX_BODY_BYTES",
	"UPLOAD_LIMIT",
	"UPLOAD_SPOOL_DIR",
	"SANDBAR_HEADER_TIMEOUT",
	"SANDBAR_BODY_TIMEOUT",
	"SANDBAR_IDLE_CONN_TIMEOUT",
	"SANDBAR_MAX_CONNECTIONS",
	"SANDBAR_SHUTDOWN_GRACE",
	"SANDBAR_API_TOKENS",
	"SANDBAR_PG_POOL_SIZE",
	"SANDBAR_PG_MAX_WAITERS",
	"SANDBAR_PG_STARTUP_TIMEOUT",
};

static int clear_env(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(env_names); i++)
		unsetenv(env_names[i]);
	return 0;
}

static void test_defaults(void **state)
{
	struct config cfg;
	char err[256] = "";
	(void)state;
	assert_int_equal(config_load(&cfg, err, sizeof(err)), 0);
	assert_null(cfg.database_url);
	assert_string_equal(cfg.server_addr, ":8080");
	assert_string_equal(cfg.devcontainers_path, "devcontainers");
	assert_string_equal(cfg.docker_host, "unix:///var/run/docker.sock");
	assert_string_equal(cfg.migrations_path, "sql");
	assert_string_equal(cfg.log_level, "info");
	assert_string_equal(cfg.cluster, "default");
	/* derived: the hostname and SERVER_ADDR, and next to the executable */
	char host[256] = "localhost", exe[4096], want[4400];
	gethostname(host, sizeof(host) - 1);
	snprintf(want, sizeof(want), "%s/:8080", host);
	assert_string_equal(cfg.instance_id, want);
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(n > 0);
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	snprintf(want, sizeof(want), "%s/agent/sandbar-agent", exe);
	assert_string_equal(cfg.agent_binary, want);
	assert_int_equal(cfg.sandbox_idle_timeout_ms, 15 * 60 * 1000);
	assert_int_equal(cfg.reaper_interval_ms, 60 * 1000);
	assert_true(cfg.sandbox_memory_limit == 2ull << 30);
	assert_true(cfg.sandbox_cpu_limit == 2.0);
	assert_int_equal(cfg.sandbox_pids_limit, 1024);
	assert_int_equal(cfg.create_timeout_ms, 10 * 60 * 1000);
	assert_int_equal(cfg.stop_grace_ms, 10 * 1000);
	assert_true(cfg.max_cpu == 8.0);
	assert_int_equal(cfg.max_memory, 16ull << 30);
	assert_true(cfg.memory_overcommit == 8.0);
	assert_int_equal(cfg.max_ports, 32);
	assert_int_equal(cfg.max_keepalive_ms, 24 * 3600 * 1000);
	assert_false(cfg.prebuild_templates);
	assert_false(cfg.allow_privileged);
	assert_false(cfg.allow_cap_add);
	assert_false(cfg.allow_bind_mounts);
	assert_int_equal(cfg.image_prune_age_ms, 3600 * 1000);
	assert_string_equal(cfg.publish_addr, "127.0.0.1");
	assert_string_equal(cfg.preview_domain, "preview.localhost");
	assert_string_equal(cfg.preview_scheme, "http");
	assert_int_equal(cfg.preview_port, 0);
	assert_int_equal(cfg.preview_connect_timeout_ms, 5000);
	assert_int_equal(cfg.preview_head_timeout_ms, 60000);
	assert_int_equal(cfg.preview_idle_timeout_ms, 120000);
	assert_int_equal(cfg.preview_idle_conns, 32);
	assert_string_equal(cfg.preview_addr, "");
	assert_int_equal(cfg.wake_timeout_ms, 30000);
	assert_null(cfg.preview_secret);
	assert_int_equal(cfg.preview_token_max_ttl_ms, 24 * 3600 * 1000);
	assert_string_equal(cfg.data_dir, ".data");
	assert_int_equal(cfg.commands_per_sandbox, 64);
	assert_true(cfg.command_output_buffer == 512 * 1024);
	assert_true(cfg.max_output_bytes == 16 << 20);
	assert_true(cfg.stream_window == 256 * 1024);
	assert_int_equal(cfg.exec_lookup_cache_ms, 1000);
	assert_true(cfg.http_max_header_bytes == 16 * 1024);
	assert_true(cfg.http_max_body_bytes == 1 << 20);
	assert_int_equal(cfg.http_header_timeout_ms, 10000);
	assert_int_equal(cfg.http_body_timeout_ms, 60000);
	assert_int_equal(cfg.http_idle_timeout_ms, 120000);
	assert_int_equal(cfg.http_max_connections, 4096);
	assert_int_equal(cfg.shutdown_grace_ms, 10000);
	assert_true(cfg.upload_limit == 100 << 20);
	assert_string_equal(cfg.upload_spool_dir, "/tmp");
	assert_null(cfg.api_tokens);
	assert_int_equal(cfg.pg_pool_size, 4);
	assert_int_equal(cfg.pg_max_waiters, 1024);
	assert_int_equal(cfg.pg_connect_timeout_ms, 60000);
	config_free(&cfg);
	assert_null(cfg.server_addr);
	config_free(&cfg); /* twice is harmless */
}

static void test_overrides(void **state)
{
	struct config cfg;
	char err[256] = "";
	(void)state;
	setenv("DATABASE_URL", "postgres://x@/db", 1);
	setenv("SERVER_ADDR", "127.0.0.1:9000", 1);
	setenv("SANDBOX_IDLE_TIMEOUT", "1h30m", 1);
	setenv("SANDBAR_REAPER_INTERVAL", "100ms", 1);
	setenv("SANDBOX_MEMORY_LIMIT", "512m", 1);
	setenv("SANDBOX_CPU_LIMIT", "0.5", 1);
	setenv("SANDBAR_MEMORY_OVERCOMMIT", "1.5", 1);
	setenv("SANDBAR_ALLOW_BIND_MOUNTS", "yes", 1);
	setenv("SANDBAR_ALLOW_CAP_ADD", "TRUE", 1);
	setenv("SANDBAR_ALLOW_PRIVILEGED", "0", 1);
	setenv("SANDBAR_PG_POOL_SIZE", "16", 1);
	setenv("SANDBAR_LOG_LEVEL", "debug", 1);
	setenv("SANDBAR_API_TOKENS", "a,b", 1);
	setenv("DEVCONTAINERS_PATH", "", 1); /* empty counts as unset */
	assert_int_equal(config_load(&cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.database_url, "postgres://x@/db");
	assert_string_equal(cfg.server_addr, "127.0.0.1:9000");
	assert_string_equal(cfg.devcontainers_path, "devcontainers");
	assert_int_equal(cfg.sandbox_idle_timeout_ms, 5400000);
	assert_int_equal(cfg.reaper_interval_ms, 100);
	assert_true(cfg.sandbox_memory_limit == 512ull << 20);
	assert_true(cfg.sandbox_cpu_limit == 0.5);
	assert_true(cfg.memory_overcommit == 1.5);
	assert_true(cfg.allow_bind_mounts);
	assert_true(cfg.allow_cap_add);
	assert_false(cfg.allow_privileged);
	assert_int_equal(cfg.pg_pool_size, 16);
	assert_string_equal(cfg.log_level, "debug");
	assert_string_equal(cfg.api_tokens, "a,b");
	config_free(&cfg);
	setenv("SANDBAR_MEMORY_OVERCOMMIT", "0", 1); /* admission off: a number, unlike CPUs */
	assert_int_equal(config_load(&cfg, err, sizeof(err)), 0);
	assert_true(cfg.memory_overcommit == 0.0);
	config_free(&cfg);
}

static void expect_bad(const char *name, const char *value, const char *message)
{
	struct config cfg;
	char err[256] = "";
	clear_env(NULL);
	setenv(name, value, 1);
	assert_int_equal(config_load(&cfg, err, sizeof(err)), -1);
	assert_string_equal(err, message);
	assert_null(cfg.server_addr); /* nothing left to free */
	unsetenv(name);
}

static void test_bad_values(void **state)
{
	(void)state;
	expect_bad("SANDBOX_IDLE_TIMEOUT", "x", "SANDBOX_IDLE_TIMEOUT: bad duration 'x'");
	expect_bad("SANDBOX_IDLE_TIMEOUT", "-5m", "SANDBOX_IDLE_TIMEOUT: bad duration '-5m'");
	expect_bad("SANDBAR_REAPER_INTERVAL", "50ms",
		   "SANDBAR_REAPER_INTERVAL: '50ms' is below the minimum of 100ms");
	expect_bad("SANDBOX_MEMORY_LIMIT", "lots", "SANDBOX_MEMORY_LIMIT: bad size 'lots'");
	expect_bad("SANDBOX_CPU_LIMIT", "0", "SANDBOX_CPU_LIMIT: bad number of CPUs '0'");
	expect_bad("SANDBOX_CPU_LIMIT", "-1", "SANDBOX_CPU_LIMIT: bad number of CPUs '-1'");
	expect_bad("SANDBOX_CPU_LIMIT", "inf", "SANDBOX_CPU_LIMIT: bad number of CPUs 'inf'");
	expect_bad("SANDBOX_CPU_LIMIT", "2x", "SANDBOX_CPU_LIMIT: bad number of CPUs '2x'");
	expect_bad("SANDBAR_MEMORY_OVERCOMMIT", "-1", "SANDBAR_MEMORY_OVERCOMMIT: bad number '-1'");
	expect_bad("SANDBAR_MEMORY_OVERCOMMIT", "8x", "SANDBAR_MEMORY_OVERCOMMIT: bad number '8x'");
	expect_bad("SANDBAR_MEMORY_OVERCOMMIT", "nan", "SANDBAR_MEMORY_OVERCOMMIT: bad number 'nan'");
	expect_bad("SANDBAR_ALLOW_PRIVILEGED", "maybe",
		   "SANDBAR_ALLOW_PRIVILEGED: bad boolean (1/0/true/false/yes/no) 'maybe'");
	expect_bad("SANDBAR_PG_POOL_SIZE", "0", "SANDBAR_PG_POOL_SIZE: '0' is below the minimum of 1");
	expect_bad("SANDBAR_PG_POOL_SIZE", "4k", "SANDBAR_PG_POOL_SIZE: bad integer '4k'");
	expect_bad("SANDBAR_LOG_LEVEL", "loud", "SANDBAR_LOG_LEVEL: bad log level 'loud'");
	/* a bad value after a string was already set must not leak it (ASan) */
	setenv("DATABASE_URL", "postgres://", 1);
	expect_bad("SANDBAR_PG_STARTUP_TIMEOUT", "soon", "SANDBAR_PG_STARTUP_TIMEOUT: bad duration 'soon'");
}

static void test_help_lists_everything(void **state)
{
	char *text = NULL;
	size_t len = 0;
	(void)state;
	FILE *f = open_memstream(&text, &len);
	assert_non_null(f);
	config_print_help(f);
	fclose(f);
	for (size_t i = 0; i < ARRAY_LEN(env_names); i++)
		assert_non_null(strstr(text, env_names[i]));
	/* and the other way: a setting's line ("  NAME  help") names a listed
	 * variable, so a new setting cannot miss the defaults' clean environment */
	size_t settings = 0;
	for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (strncmp(line, "  ", 2) != 0)
			continue;
		size_t n = strspn(line + 2, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_");
		if (n == 0 || line[2 + n] != ' ')
			continue;
		bool listed = false;
		for (size_t i = 0; i < ARRAY_LEN(env_names); i++)
			listed |= strlen(env_names[i]) == n && strncmp(line + 2, env_names[i], n) == 0;
		if (!listed)
			fail_msg("the help names %.*s, missing from env_names", (int)n, line + 2);
		settings++;
	}
	assert_int_equal(settings, ARRAY_LEN(env_names));
	assert_non_null(strstr(text, "(default: :8080)"));
	assert_non_null(strstr(text, "(default: 15m)"));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_defaults, clear_env),
		cmocka_unit_test_setup(test_overrides, clear_env),
		cmocka_unit_test_setup(test_bad_values, clear_env),
		cmocka_unit_test(test_help_lists_everything),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
