/* A task's steps, each a command through the command service: the checkpoint
 * before with the CLI's configuration, the CLI headless in its own process
 * group (stdin at EOF, our wall-clock limit) read line by line, the one after. */
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "core/clock.h"
#include "core/env.h"
#include "core/log.h"
#include "core/strv.h"
#include "internal.h"
#include "sandbox/registry.h"

#define STEP_TIMEOUT_MS 120000	     /* a checkpoint (git add, commit) at most */
#define STEP_OUTPUT	(256u << 10) /* a checkpoint's output kept */
#define LINE_MAX_BYTES	(4u << 20)   /* a longer stdout line is cut and translated as it is */
#define ACTIVITY_MS	30000	     /* a running task keeps its sandbox from the idle reaper this often */
/* each task's own HOME: the CLIs keep their state there, and CODEX_HOME below it */
#define TASK_HOME "/tmp/sandbar-task-$SANDBAR_TASK_ID"

static void prepared(const struct core_error *fail, const struct command_result *res, void *arg);
static void run_start(struct task *t);
static void run_started(void *arg, const struct command_info *info);
static void run_output(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data, size_t len,
		       bool gap);
static void run_exited(void *arg, const struct command_info *info);
static void run_failed(void *arg, const struct core_error *fail);
static void checkpoint(struct task *t, enum task_state outcome, const char *reason);
static void checkpointed(const struct core_error *fail, const struct command_result *res, void *arg);
static void emit_cb(void *arg, const char *type, struct json_object *data);
static void kill_fire(evutil_socket_t fd, short what, void *arg);
static void activity_fire(evutil_socket_t fd, short what, void *arg);
static void activity_start(struct task *t);
static void signalled(const struct core_error *fail, void *arg);
static bool cli_running(const struct task *t);
static const char *env_find(char *const *env, const char *name);
static bool secret_name(const char *name, size_t len);

/* The CLI starts detached (its record written at once, so a restarted
 * sandbard and a cancel find it), then its output is followed from the
 * record like a resumed task's. */
static const struct command_events spawn_events = {
	.started = run_started,
	.failed = run_failed,
};
static const struct command_events follow_events = {
	.output = run_output,
	.exited = run_exited,
	.failed = run_failed,
};

void task_git_env(struct env_list *env, const char *sandbox_id)
{
	char email[80];
	snprintf(email, sizeof(email), "%s@sandbar", sandbox_id);
	env_list_put(env, "GIT_AUTHOR_NAME", "sandbox");
	env_list_put(env, "GIT_AUTHOR_EMAIL", email);
	env_list_put(env, "GIT_COMMITTER_NAME", "sandbox");
	env_list_put(env, "GIT_COMMITTER_EMAIL", email);
}

static const char *env_find(char *const *env, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; env && env[i]; i++)
		if (strncmp(env[i], name, n) == 0 && env[i][n] == '=')
			return env[i] + n + 1;
	return NULL;
}

/* A provider key or the like, by its name: its value never shows in an event. */
static bool secret_name(const char *name, size_t len)
{
	static const char *const words[] = { "KEY", "TOKEN", "SECRET", "PASSWORD", "AUTH" };
	char up[128];
	if (len >= sizeof(up))
		len = sizeof(up) - 1;
	for (size_t i = 0; i < len; i++)
		up[i] = (char)toupper((unsigned char)name[i]);
	up[len] = '\0';
	for (size_t i = 0; i < ARRAY_LEN(words); i++)
		if (strstr(up, words[i]))
			return true;
	return false;
}

static void secrets_add(struct task *t, char *const *env)
{
	size_t n = 0;
	while (t->secrets && t->secrets[n])
		n++;
	for (size_t i = 0; env && env[i]; i++) {
		const char *eq = strchr(env[i], '=');
		if (!eq || strlen(eq + 1) < 6 || !secret_name(env[i], (size_t)(eq - env[i])))
			continue;
		t->secrets = realloc(t->secrets, (n + 2) * sizeof(char *));
		CHECK(t->secrets != NULL);
		t->secrets[n] = strdup(eq + 1);
		CHECK(t->secrets[n] != NULL);
		t->secrets[++n] = NULL;
	}
}

/* A base URL safe inside TOML and JSON strings we write. */
static bool url_plain(const char *s)
{
	for (; s && *s; s++)
		if ((unsigned char)*s < 0x21 || *s == '"' || *s == '\\' || *s == '\'' ||
		    (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

/* A checkpoint: script in the task's folder, as the sandbox's user, with
 * env (freed here) and the checkpoints' author; done(t) once it ended. */
static void git_step(struct task *t, char *script, struct env_list *env, command_result_fn done)
{
	char *argv[] = { "/bin/sh", "-c", script, NULL };
	task_git_env(env, t->sandbox_id);
	env_list_put(env, "SANDBAR_TASK_ID", t->id);
	struct command_spec spec = {
		.argv = argv,
		.command_json = "null",
		.env = env->v,
		.cwd = t->cwd,
		.timeout_ms = STEP_TIMEOUT_MS,
		.max_output_bytes = STEP_OUTPUT,
	};
	t->op = commands_execute(t->ts->cmds, t->sandbox_id, &spec, done, t);
	strv_free(env->v);
}

/* ---- step 1: the checkpoint before, the CLI's configuration ---- */

/* The configuration files the CLI reads, written into the task's HOME by
 * the prepare script (no key in them: keys stay in the environment). */
static void config_script(struct task *t, struct evbuffer *b, const char *openai_base)
{
	if (t->agent == TASK_AGENT_OPENCODE) {
		/* pre-seeded so OpenCode does not npm-install its plugin package (agent-clis.md) */
		evbuffer_add_printf(
			b,
			"mkdir -p \"$h/.config/opencode/node_modules\"\n"
			"printf '%%s\\n' '{\"dependencies\":{\"@opencode-ai/plugin\":\"*\"}}' "
			"> \"$h/.config/opencode/package.json\"\n"
			"printf '%%s\\n' '{\"lockfileVersion\":3,\"packages\":{\"\":{\"dependencies\":"
			"{\"@opencode-ai/plugin\":\"*\"}}}}' > \"$h/.config/opencode/package-lock.json\"\n");
	}
	if (t->agent == TASK_AGENT_CODEX) {
		evbuffer_add_printf(
			b, "mkdir -p \"$h/.codex\"\ncat > \"$h/.codex/config.toml\" <<'SANDBAR_EOF'\n"
			   "approval_policy = \"never\"\nsandbox_mode = \"danger-full-access\"\n"
			   "check_for_update_on_startup = false\n");
		if (openai_base)
			evbuffer_add_printf(
				b,
				"model_provider = \"sandbar\"\n[model_providers.sandbar]\n"
				"name = \"sandbar\"\nbase_url = \"%s\"\nenv_key = \"OPENAI_API_KEY\"\n"
				"wire_api = \"responses\"\n",
				openai_base);
		evbuffer_add_printf(
			b, "[analytics]\nenabled = false\n[otel]\nmetrics_exporter = \"none\"\n"
			   "[features]\nplugins = false\napps = false\nremote_plugin = false\nSANDBAR_EOF\n");
	}
}

void runner_prepare(struct task *t, const struct sandbox *sb)
{
	secrets_add(t, t->env);
	secrets_add(t, sb->run_env);
	struct json_object *d = json_object_new_object();
	json_object_object_add(d, "phase", json_object_new_string(task_state_name(TASK_PREPARING)));
	task_emit(t, "status", d);

	const char *base = env_find(t->env, "OPENAI_BASE_URL");
	if (!base)
		base = env_find(sb->run_env, "OPENAI_BASE_URL");
	if (base && !url_plain(base))
		base = NULL;
	if (base) {
		t->openai_base = strdup(base);
		CHECK(t->openai_base != NULL);
	}
	struct evbuffer *b = evbuffer_new();
	CHECK(b != NULL);
	evbuffer_add_printf(b, "set -e\nh=" TASK_HOME "\nmkdir -p \"$h\"\n");
	config_script(t, b, t->openai_base);
	evbuffer_add_printf(
		b,
		"if ! " TASK_GIT
		" rev-parse --is-inside-work-tree >/dev/null 2>&1; then git init -q; fi\n" TASK_GIT
		" add -A\n" TASK_GIT
		" commit -q --allow-empty --no-verify -m \"sandbar: before task $SANDBAR_TASK_ID\"\n" TASK_GIT
		" rev-parse HEAD\n");
	evbuffer_add(b, "", 1);
	struct env_list env = { 0 };
	for (size_t i = 0; t->env && t->env[i]; i++)
		env_list_set_kv(&env, t->env[i]);
	git_step(t, (char *)evbuffer_pullup(b, -1), &env, prepared);
	evbuffer_free(b);
}

/* The last line of a checkpoint's stdout (or the first: after) as a commit id. */
static bool commit_id(const uint8_t *out, size_t len, bool last, char *id, size_t cap)
{
	size_t start = 0, end = len;
	if (last) {
		while (end > 0 && (out[end - 1] == '\n' || out[end - 1] == '\r'))
			end--;
		start = end;
		while (start > 0 && out[start - 1] != '\n')
			start--;
	} else {
		const uint8_t *nl = memchr(out, '\n', len);
		end = nl ? (size_t)(nl - out) : len;
	}
	size_t n = end - start;
	if (n < 40 || n >= cap)
		return false;
	for (size_t i = start; i < end; i++)
		if (!isxdigit(out[i]))
			return false;
	memcpy(id, out + start, n);
	id[n] = '\0';
	return true;
}

/* A failed step's reason: the service's error, or the command's stderr end. */
static void step_failure(char *buf, size_t cap, const char *what, const struct core_error *fail,
			 const struct command_result *res)
{
	if (fail) {
		snprintf(buf, cap, "%s: %s", what, fail->message);
		return;
	}
	size_t n = res->err_len > 300 ? 300 : res->err_len;
	const char *e = (const char *)res->err + (res->err_len - n);
	while (n > 0 && (e[n - 1] == '\n' || e[n - 1] == '\r'))
		n--;
	snprintf(buf, cap, "%s: exit %d%s%.*s", what, res->info->exit_code, n ? ": " : "", (int)n, e);
}

static void prepared(const struct core_error *fail, const struct command_result *res, void *arg)
{
	struct task *t = arg;
	t->op = NULL;
	char reason[512];
	if (fail || res->info->exit_code != 0 ||
	    !commit_id(res->out, res->out_len, true, t->before, sizeof(t->before))) {
		if (!fail && res->info->exit_code == 0)
			snprintf(reason, sizeof(reason), "the checkpoint before: no commit id from git");
		else
			step_failure(reason, sizeof(reason), "the checkpoint before", fail, res);
		task_set_state(t, TASK_FAILED, reason);
		task_release(t);
		return;
	}
	task_row_dirty(t);
	if (t->cancel) {
		checkpoint(t, TASK_CANCELLED, "cancelled before the agent started");
		return;
	}
	run_start(t);
}

/* ---- step 2: the CLI ---- */

static void argv_push(char ***v, size_t *n, const char *s)
{
	*v = realloc(*v, (*n + 2) * sizeof(char *));
	CHECK(*v != NULL);
	(*v)[*n] = strdup(s);
	CHECK((*v)[*n] != NULL);
	(*v)[++*n] = NULL;
}

/* How each CLI runs headless and offline (README, "Coding-agent tasks"). */
static void cli_command(struct task *t, char ***argv, size_t *n, struct env_list *env)
{
	/* a prompt that looks like an option would be read as one */
	char *prompt = NULL;
	if (asprintf(&prompt, "%s%s", t->prompt[0] == '-' ? " " : "", t->prompt) < 0)
		CHECK(0);
	switch (t->agent) {
	case TASK_AGENT_OPENCODE: {
		static const char *const a[] = { "opencode", "run", "--format", "json" };
		for (size_t i = 0; i < ARRAY_LEN(a); i++)
			argv_push(argv, n, a[i]);
		struct json_object *cfg = json_object_new_object();
		if (t->openai_base) {
			/* an OpenAI-compatible endpoint of the user's (or the tests' scripted model) */
			const char *m = t->model ? t->model : "default";
			struct json_object *model = json_object_new_object(),
					   *models = json_object_new_object();
			json_object_object_add(model, "name", json_object_new_string(m));
			json_object_object_add(model, "tool_call", json_object_new_boolean(1));
			json_object_object_add(models, m, model);
			struct json_object *opts = json_object_new_object(), *prov = json_object_new_object();
			json_object_object_add(opts, "baseURL", json_object_new_string(t->openai_base));
			json_object_object_add(opts, "apiKey",
					       json_object_new_string("{env:OPENAI_API_KEY}"));
			json_object_object_add(prov, "npm",
					       json_object_new_string("@ai-sdk/openai-compatible"));
			json_object_object_add(prov, "name", json_object_new_string("sandbar"));
			json_object_object_add(prov, "options", opts);
			json_object_object_add(prov, "models", models);
			struct json_object *providers = json_object_new_object();
			json_object_object_add(providers, "sandbar", prov);
			json_object_object_add(cfg, "provider", providers);
			char full[300];
			snprintf(full, sizeof(full), "sandbar/%s", m);
			json_object_object_add(cfg, "model", json_object_new_string(full));
			json_object_object_add(cfg, "small_model", json_object_new_string(full));
		} else if (t->model) {
			argv_push(argv, n, "-m");
			argv_push(argv, n, t->model);
		}
		json_object_object_add(cfg, "autoupdate", json_object_new_boolean(0));
		json_object_object_add(cfg, "share", json_object_new_string("disabled"));
		struct json_object *perm = json_object_new_object();
		json_object_object_add(perm, "edit", json_object_new_string("allow"));
		json_object_object_add(perm, "bash", json_object_new_string("allow"));
		json_object_object_add(perm, "webfetch", json_object_new_string("allow"));
		json_object_object_add(perm, "external_directory", json_object_new_string("allow"));
		json_object_object_add(cfg, "permission", perm);
		const char *js = json_object_to_json_string_ext(cfg, JSON_C_TO_STRING_PLAIN);
		env_list_put(env, "OPENCODE_CONFIG_CONTENT", js);
		json_object_put(cfg);
		env_list_put(env, "OPENCODE_DISABLE_MODELS_FETCH", "1");
		env_list_put(env, "OPENCODE_DISABLE_AUTOUPDATE", "1");
		env_list_put(env, "OPENCODE_DISABLE_LSP_DOWNLOAD", "1");
		env_list_put(env, "OPENCODE_DISABLE_SHARE", "1");
		break;
	}
	case TASK_AGENT_CLAUDE: {
		static const char *const a[] = {
			"claude",      "-p",	    "--output-format",
			"stream-json", "--verbose", "--dangerously-skip-permissions"
		};
		for (size_t i = 0; i < ARRAY_LEN(a); i++)
			argv_push(argv, n, a[i]);
		if (t->model) {
			argv_push(argv, n, "--model");
			argv_push(argv, n, t->model);
		}
		/* no traffic but the model's; root may bypass permissions inside a sandbox */
		env_list_put(env, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1");
		env_list_put(env, "DISABLE_AUTOUPDATER", "1");
		env_list_put(env, "DISABLE_TELEMETRY", "1");
		env_list_put(env, "DISABLE_ERROR_REPORTING", "1");
		env_list_put(env, "IS_SANDBOX", "1");
		break;
	}
	case TASK_AGENT_CODEX: {
		static const char *const a[] = { "codex", "exec", "--json", "--skip-git-repo-check",
						 "--dangerously-bypass-approvals-and-sandbox" };
		for (size_t i = 0; i < ARRAY_LEN(a); i++)
			argv_push(argv, n, a[i]);
		if (t->model) {
			argv_push(argv, n, "-m");
			argv_push(argv, n, t->model);
		}
		break;
	}
	default:
		for (size_t i = 0; t->command && t->command[i]; i++)
			argv_push(argv, n, t->command[i]);
		env_list_put(env, "SANDBAR_TASK_PROMPT", t->prompt);
		if (t->model)
			env_list_put(env, "SANDBAR_TASK_MODEL", t->model);
		free(prompt);
		return;
	}
	argv_push(argv, n, prompt);
	free(prompt);
}

static void run_start(struct task *t)
{
	task_set_state(t, TASK_RUNNING, NULL);
	char **argv = NULL;
	size_t n = 0;
	/* its own HOME (and CODEX_HOME) per task, then the CLI in place of the shell */
	argv_push(&argv, &n, "/bin/sh");
	argv_push(&argv, &n, "-c");
	argv_push(&argv, &n,
		  "HOME=" TASK_HOME "; CODEX_HOME=\"$HOME/.codex\"; export HOME CODEX_HOME; "
		  "exec \"$@\"");
	argv_push(&argv, &n, "sh");
	struct env_list env = { 0 };
	for (size_t i = 0; t->env && t->env[i]; i++)
		env_list_set_kv(&env, t->env[i]);
	cli_command(t, &argv, &n, &env);
	env_list_put(&env, "SANDBAR_TASK_ID", t->id);
	struct json_object *cmd = json_object_new_array();
	for (size_t i = 4; i < n; i++)
		json_object_array_add(cmd, json_object_new_string(argv[i]));
	struct command_spec spec = {
		.argv = argv,
		.command_json = (char *)json_object_to_json_string_ext(cmd, JSON_C_TO_STRING_PLAIN),
		.env = env.v,
		.cwd = t->cwd,
		.timeout_ms = t->timeout_ms, /* the agent: SIGTERM to the group, SIGKILL after a grace */
	};
	t->op = commands_run(t->ts->cmds, t->sandbox_id, &spec, true, &spawn_events, t);
	json_object_put(cmd);
	strv_free(env.v);
	strv_free(argv);
}

/* A task is activity while it runs, output or not: the sandbox is not
 * stopped or expired for idleness under it. */
static void activity_start(struct task *t)
{
	if (!t->activity) {
		t->activity = event_new(t->ts->base, -1, EV_PERSIST, activity_fire, t);
		CHECK(t->activity != NULL);
	}
	struct timeval tv = { ACTIVITY_MS / 1000, 0 };
	evtimer_add(t->activity, &tv);
}

static void activity_fire(evutil_socket_t fd, short what, void *arg)
{
	struct task *t = arg;
	if (cli_running(t))
		registry_touch(t->ts->reg, t->sandbox_id);
}

static void run_started(void *arg, const struct command_info *info)
{
	struct task *t = arg;
	snprintf(t->command_id, sizeof(t->command_id), "%s", info->id);
	task_row_dirty(t);
	activity_start(t);
	/* the spawn's op ends after this callback */
	t->op = commands_logs(t->ts->cmds, t->sandbox_id, t->command_id, 0, true, &follow_events, t);
	if (t->cancel)
		runner_cancel(t);
}

static void emit_cb(void *arg, const char *type, struct json_object *data)
{
	task_emit(arg, type, data);
}

static void translate(struct task *t, const char *line, size_t len)
{
	task_translate_line(&t->tr, line, len, clock_real_ms(), emit_cb, t);
}

static void run_output(void *arg, enum agent_stream stream, uint64_t offset, const uint8_t *data, size_t len,
		       bool gap)
{
	struct task *t = arg;
	if (stream == AGENT_STREAM_STDERR) {
		/* its end tells why a CLI failed */
		if (len >= sizeof(t->errtail)) {
			memcpy(t->errtail, data + len - sizeof(t->errtail), sizeof(t->errtail));
			t->errlen = sizeof(t->errtail);
		} else {
			size_t keep =
				t->errlen + len > sizeof(t->errtail) ? sizeof(t->errtail) - len : t->errlen;
			memmove(t->errtail, t->errtail + t->errlen - keep, keep);
			memcpy(t->errtail + keep, data, len);
			t->errlen = keep + len;
		}
	} else if (gap) {
		/* bytes the agent no longer had: the line they cut is dropped */
		evbuffer_drain(t->line, evbuffer_get_length(t->line));
		struct json_object *d = json_object_new_object();
		json_object_object_add(d, "message",
				       json_object_new_string("some of the agent's output was lost"));
		json_object_object_add(d, "fatal", json_object_new_boolean(0));
		task_emit(t, "error", d);
	} else {
		for (size_t at = 0; at < len;) {
			const uint8_t *nl = memchr(data + at, '\n', len - at);
			size_t take = nl ? (size_t)(nl - (data + at)) : len - at;
			evbuffer_add(t->line, data + at, take);
			at += take;
			if (!nl && evbuffer_get_length(t->line) < LINE_MAX_BYTES)
				break;
			size_t n = evbuffer_get_length(t->line);
			translate(t, (const char *)evbuffer_pullup(t->line, -1), n);
			evbuffer_drain(t->line, n);
			if (nl)
				at++;
			t->safe_offset = offset + at;
		}
	}
	uint64_t end = offset + len;
	if (evbuffer_get_length(t->line) == 0 && stream == AGENT_STREAM_STDOUT)
		t->safe_offset = end;
	if (t->op)
		command_op_ack(t->op, end);
	if (t->safe_offset > t->acked + (64u << 10)) { /* the row follows the output now and then */
		t->acked = t->safe_offset;
		task_row_dirty(t);
	}
}

/* The outcome of the CLI's run, from how it ended and what it said. */
static void run_outcome(struct task *t, enum task_state *out, char *reason, size_t cap)
{
	const struct command_info *x = &t->exit;
	const char *name = task_agent_name(t->agent);
	size_t n = t->errlen;
	while (n > 0 && (t->errtail[n - 1] == '\n' || t->errtail[n - 1] == '\r'))
		n--;
	size_t from = n;
	while (from > 0 && t->errtail[from - 1] != '\n')
		from--;
	*out = TASK_FAILED;
	reason[0] = '\0';
	if (t->cancel) {
		*out = TASK_CANCELLED;
		snprintf(reason, cap, "cancelled");
	} else if (x->timed_out) {
		*out = TASK_TIMED_OUT;
		snprintf(reason, cap, "ran past its timeout of %lld s", (long long)(t->timeout_ms / 1000));
	} else if (x->exit_code != 0) {
		if (t->tr.error)
			snprintf(reason, cap, "%s", t->tr.error);
		else
			snprintf(reason, cap, "%s exited with code %d%s%.*s", name, x->exit_code,
				 n > from ? ": " : "", (int)(n - from), t->errtail + from);
	} else if (t->tr.error && !(t->tr.custom_status && t->tr.succeeded)) {
		snprintf(reason, cap, "%s", t->tr.error);
	} else if (t->agent != TASK_AGENT_CUSTOM && t->tr.events == 0) {
		snprintf(reason, cap, "%s printed no JSON events (%llu other lines)%s%.*s", name,
			 (unsigned long long)t->tr.lines, n > from ? ": " : "", (int)(n - from),
			 t->errtail + from);
	} else {
		*out = TASK_SUCCEEDED;
	}
}

static void run_exited(void *arg, const struct command_info *info)
{
	struct task *t = arg;
	t->op = NULL;
	t->exit = *info;
	t->exited = true;
	size_t n = evbuffer_get_length(t->line);
	if (n > 0) { /* a last line without its newline */
		translate(t, (const char *)evbuffer_pullup(t->line, -1), n);
		evbuffer_drain(t->line, n);
	}
	t->safe_offset = info->offset;
	enum task_state outcome;
	char reason[512];
	run_outcome(t, &outcome, reason, sizeof(reason));
	checkpoint(t, outcome, reason[0] ? reason : NULL);
}

static void run_failed(void *arg, const struct core_error *fail)
{
	struct task *t = arg;
	t->op = NULL;
	char reason[512];
	snprintf(reason, sizeof(reason), "the sandbox stopped or went away: %s", fail->message);
	task_set_state(t, TASK_FAILED, reason);
	task_release(t);
}

/* ---- step 3: the checkpoint after ---- */

static void checkpoint(struct task *t, enum task_state outcome, const char *reason)
{
	t->outcome = outcome;
	if (reason)
		task_set_reason(t, reason);
	if (t->state != TASK_CHECKPOINTING) /* resumed: it is already */
		task_set_state(t, TASK_CHECKPOINTING, NULL);
	static char script[] =
		"set -e\n" TASK_GIT " add -A\n" TASK_GIT
		" commit -q --allow-empty --no-verify -m \"sandbar: after task $SANDBAR_TASK_ID\"\n" TASK_GIT
		" rev-parse HEAD\n" TASK_GIT " diff --numstat \"$SANDBAR_TASK_BEFORE\" HEAD\n";
	struct env_list env = { 0 };
	env_list_put(&env, "SANDBAR_TASK_BEFORE", t->before);
	git_step(t, script, &env, checkpointed);
}

/* The count at s (digits up to a tab), NULL for git's "-" (a binary file). */
static struct json_object *count_at(const char *s, const char *end)
{
	long v = 0;
	if (s >= end || *s == '-')
		return NULL;
	for (; s < end && *s >= '0' && *s <= '9' && v < 1000000000; s++)
		v = v * 10 + (*s - '0');
	return json_object_new_int64(v);
}

/* `git diff --numstat` lines: "added<TAB>deleted<TAB>path" ("-" for binary). */
static struct json_object *numstat(const char *s, size_t len)
{
	struct json_object *files = json_object_new_array();
	for (size_t at = 0; at < len;) {
		const char *line = s + at, *nl = memchr(line, '\n', len - at);
		size_t n = nl ? (size_t)(nl - line) : len - at;
		at += n + 1;
		const char *t1 = memchr(line, '\t', n);
		const char *t2 = t1 ? memchr(t1 + 1, '\t', n - (size_t)(t1 + 1 - line)) : NULL;
		if (!t2)
			continue;
		struct json_object *f = json_object_new_object();
		json_object_object_add(f, "path",
				       json_object_new_string_len(t2 + 1, (int)(line + n - t2 - 1)));
		json_object_object_add(f, "added", count_at(line, t1));
		json_object_object_add(f, "deleted", count_at(t1 + 1, t2));
		json_object_array_add(files, f);
	}
	return files;
}

static void checkpointed(const struct core_error *fail, const struct command_result *res, void *arg)
{
	struct task *t = arg;
	t->op = NULL;
	if (fail || res->info->exit_code != 0 ||
	    !commit_id(res->out, res->out_len, false, t->after, sizeof(t->after))) {
		char why[400], reason[700];
		step_failure(why, sizeof(why), "the checkpoint after", fail, res);
		snprintf(reason, sizeof(reason), "%s%s%s", t->reason ? t->reason : "", t->reason ? "; " : "",
			 why);
		t->after[0] = '\0';
		task_set_state(t, t->outcome == TASK_SUCCEEDED ? TASK_FAILED : t->outcome, reason);
		task_release(t);
		return;
	}
	const char *out = (const char *)res->out;
	const char *nl = memchr(out, '\n', res->out_len);
	size_t skip = nl ? (size_t)(nl - out) + 1 : res->out_len;
	json_object_put(t->files);
	t->files = numstat(out + skip, res->out_len - skip);
	task_set_state(t, t->outcome, NULL);
	task_release(t);
}

/* ---- cancel ---- */

/* The CLI's command is the op in flight: a task is `running` from just
 * before it starts until it ends (the git steps run in the other states). */
static bool cli_running(const struct task *t)
{
	return t->state == TASK_RUNNING && t->op;
}

void runner_cancel(struct task *t)
{
	t->cancel = true;
	if (!cli_running(t) || !t->command_id[0] || t->sig)
		return; /* before the CLI: prepared() sees it; after: it ends anyway */
	t->sig = commands_signal(t->ts->cmds, t->sandbox_id, t->command_id, SIGTERM, signalled, t);
	if (!t->kill_timer) {
		t->kill_timer = evtimer_new(t->ts->base, kill_fire, t);
		CHECK(t->kill_timer != NULL);
	}
	struct timeval tv = { (time_t)(t->ts->cfg.cancel_grace_ms / 1000),
			      (suseconds_t)(t->ts->cfg.cancel_grace_ms % 1000) * 1000 };
	evtimer_add(t->kill_timer, &tv);
}

static void signalled(const struct core_error *fail, void *arg)
{
	struct task *t = arg;
	t->sig = NULL;
	if (fail)
		log_warn("task %s: signal not sent: %s", t->id, fail->message);
}

static void kill_fire(evutil_socket_t fd, short what, void *arg)
{
	struct task *t = arg;
	if (!cli_running(t) || t->sig)
		return;
	log_info("task %s: still running %lld ms after SIGTERM: SIGKILL", t->id,
		 (long long)t->ts->cfg.cancel_grace_ms);
	t->sig = commands_signal(t->ts->cmds, t->sandbox_id, t->command_id, SIGKILL, signalled, t);
}

/* ---- after a restart of sandbard ---- */

void runner_resume(struct task *t)
{
	switch (t->state) {
	case TASK_RUNNING:
		if (t->command_id[0]) {
			/* the CLI ran on in the sandbox: its output from where we stored */
			t->acked = t->safe_offset;
			activity_start(t);
			t->op = commands_logs(t->ts->cmds, t->sandbox_id, t->command_id, t->safe_offset, true,
					      &follow_events, t);
			return;
		}
		task_set_state(t, TASK_FAILED, "sandbard restarted before the agent started");
		break;
	case TASK_CHECKPOINTING:
		if (t->before[0]) {
			checkpoint(t, t->outcome, NULL); /* the outcome resume_rows read */
			return;
		}
		task_set_state(t, TASK_FAILED, "sandbard restarted during the checkpoint");
		break;
	default:
		task_set_state(t, TASK_FAILED, "sandbard restarted while the task was being prepared");
		break;
	}
	task_release(t);
}

void runner_free(struct task *t)
{
	if (t->op) {
		if (cli_running(t))
			command_op_cancel(t->op); /* the CLI runs on: resumed at the next start */
		else
			commands_collect_cancel(t->op);
		t->op = NULL;
	}
	if (t->sig)
		command_op_cancel(t->sig);
	t->sig = NULL;
	if (t->kill_timer)
		event_free(t->kill_timer);
	t->kill_timer = NULL;
	if (t->activity)
		event_free(t->activity);
	t->activity = NULL;
	free(t->openai_base);
	t->openai_base = NULL;
}
