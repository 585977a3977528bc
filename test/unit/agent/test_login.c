/* Login shell strings (SHELL with LOGIN, src/agent/login.c) driven in-process
 * like test_hold.c: the first one of a user runs `/bin/sh -lc` while the
 * agent works out the login environment beside it (a capture, read from the
 * poll loop); later ones run without a login shell yet see what it
 * exported, exactly as `sh -lc` shows it; the command's own variables win;
 * shell syntax and exit codes are unchanged; a changed ~/.profile is seen at
 * once and worked out again; a capture that fails leaves `sh -lc`. The
 * profile here is a temporary HOME's .profile, which counts its runs. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent.h"
#include "cmd.h"
#include "conn.h"
#include "login.h"
#include "world.h"

#define MAXCMD 64

struct out {
	char text[4096]; /* stdout */
	char err[4096];
	size_t len, elen;
	bool exited;
	uint64_t code;
};

struct world {
	struct agent_world aw;
	struct out out[MAXCMD];
};

static char home[] = "/tmp/sbloginXXXXXX";
static const char *const printer[] = { "/usr/bin/env", "-0", NULL };

static void on_frame(struct agent_world *aw, const struct agent_frame *f)
{
	struct world *w = (struct world *)aw;
	if (f->id >= MAXCMD)
		return;
	struct out *o = &w->out[f->id];
	const uint8_t *data;
	uint32_t len;
	uint64_t stream = 0;
	if (f->type == AGENT_OUTPUT && agent_frame_bytes(f, AGENT_T_DATA, &data, &len) == 0) {
		assert_int_equal(agent_frame_u64(f, AGENT_T_STREAM, &stream), 0);
		char *buf = stream == AGENT_STREAM_STDERR ? o->err : o->text;
		size_t *at = stream == AGENT_STREAM_STDERR ? &o->elen : &o->len;
		assert_true(*at + len < sizeof(o->text));
		memcpy(buf + *at, data, len);
		*at += len;
		buf[*at] = '\0';
	} else if (f->type == AGENT_EXITED) {
		uint64_t sig = 0;
		assert_int_equal(agent_frame_u64(f, AGENT_T_EXIT_CODE, &o->code), 0);
		assert_int_equal(agent_frame_u64(f, AGENT_T_SIGNAL, &sig), 0);
		assert_int_equal(sig, 0);
		o->exited = true;
	}
}

static void write_profile(const char *text)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/.profile", home);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

/* How many times the profile ran (each run appends a line to $HOME/runs). */
static int runs(void)
{
	char path[256], line[64];
	snprintf(path, sizeof(path), "%s/runs", home);
	FILE *fp = fopen(path, "r");
	int n = 0;
	while (fp && fgets(line, sizeof(line), fp))
		n++;
	if (fp)
		fclose(fp);
	return n;
}

/* Runs cmd (a login shell string, or with argv the /bin/sh -lc reference)
 * to its exit; env entries after it, NULL-terminated. */
static struct out *run(struct world *w, const char *shell, bool login, const char *argv_lc, ...)
{
	struct agent_msg m;
	va_list ap;
	agent_msg_init(&m);
	agent_msg_begin(&m, AGENT_SPAWN, 0, 0);
	agent_msg_str(&m, AGENT_T_TAG, "t");
	if (argv_lc) {
		agent_msg_str(&m, AGENT_T_ARGV, "/bin/sh");
		agent_msg_str(&m, AGENT_T_ARGV, "-lc");
		agent_msg_str(&m, AGENT_T_ARGV, argv_lc);
	} else {
		agent_msg_str(&m, AGENT_T_ARGV, "/bin/sh"); /* what an older agent runs */
		agent_msg_str(&m, AGENT_T_ARGV, "-lc");
		agent_msg_str(&m, AGENT_T_ARGV, shell);
		agent_msg_str(&m, AGENT_T_SHELL, shell);
		if (login)
			agent_msg_u64(&m, AGENT_T_LOGIN, 1);
	}
	bool path_set = false, home_set = false;
	va_start(ap, argv_lc);
	for (const char *e; (e = va_arg(ap, const char *));) {
		agent_msg_str(&m, AGENT_T_ENV, e);
		path_set |= strncmp(e, "PATH=", 5) == 0;
		home_set |= strncmp(e, "HOME=", 5) == 0;
	}
	va_end(ap);
	if (!path_set) /* sandbard's default */
		agent_msg_str(&m, AGENT_T_ENV, "PATH=" AGENT_DEFAULT_PATH);
	char homekv[64];
	snprintf(homekv, sizeof(homekv), "HOME=%s", home);
	if (!home_set)
		agent_msg_str(&m, AGENT_T_ENV, homekv);
	agent_msg_u64(&m, AGENT_T_WINDOW, 65536);
	uint32_t id = w->aw.a.next_id;
	assert_true(id < MAXCMD);
	world_send(&w->aw, &m);
	assert_int_equal(w->aw.a.next_id, id + 1);
	int64_t until = agent_mono_ms() + 10000;
	while (!w->out[id].exited && agent_mono_ms() < until)
		world_pass(&w->aw, 10);
	assert_true(w->out[id].exited);
	return &w->out[id];
}

/* Loop passes until no capture is left running. */
static void settle(struct world *w)
{
	int64_t until = agent_mono_ms() + 10000;
	for (;;) {
		bool busy = false;
		for (struct login_env *l = w->aw.a.logins; l; l = login_next(l))
			busy |= login_capturing(l);
		if (!busy)
			return;
		assert_true(agent_mono_ms() < until);
		world_pass(&w->aw, 10);
	}
}

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	assert_non_null(mkdtemp(home));
	world_open(&w->aw, on_frame);
	w->aw.a.login_printer = printer;
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;
	world_close(&w->aw);
	free(w);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", home);
	assert_int_equal(system(cmd), 0);
	strcpy(home, "/tmp/sbloginXXXXXX");
	return 0;
}

static const char profile[] = "echo run >> \"$HOME/runs\"\n"
			      "export SB_LOGIN_VAR=from-profile\n"
			      "PATH=\"$PATH:$HOME/bin\"\n"
			      "export PATH\n";

static void test_login_environment_kept(void **state)
{
	struct world *w = *state;
	write_profile(profile);
	/* the reference: a login shell's own view */
	struct out *ref = run(w, NULL, false, "printenv PATH; printenv SB_LOGIN_VAR", NULL);
	assert_int_equal(ref->code, 0);
	assert_non_null(strstr(ref->text, "from-profile"));
	int before = runs();
	assert_int_equal(before, 1);
	/* the first one runs sh -lc while the capture runs beside it */
	struct out *o = run(w, "printenv PATH; printenv SB_LOGIN_VAR", true, NULL, NULL);
	assert_string_equal(o->text, ref->text);
	settle(w);
	assert_int_equal(runs(), 3);
	/* from now on no login shell runs, and the view is the same */
	o = run(w, "printenv PATH; printenv SB_LOGIN_VAR", true, NULL, NULL);
	assert_string_equal(o->text, ref->text);
	o = run(w, "printenv SB_LOGIN_VAR", true, NULL, NULL); /* plain words: exec'd directly */
	assert_string_equal(o->text, "from-profile\n");
	/* shell syntax, $VAR, cd, pipes */
	o = run(w, "cd / && pwd && echo \"$SB_LOGIN_VAR\" | tr a-z A-Z", true, NULL, NULL);
	assert_string_equal(o->text, "/\nFROM-PROFILE\n");
	assert_int_equal(o->code, 0);
	/* exit codes, a missing program */
	o = run(w, "exit 7", true, NULL, NULL);
	assert_int_equal(o->code, 7);
	o = run(w, "no-such-program-sb", true, NULL, NULL);
	assert_int_equal(o->code, 127);
	assert_non_null(strstr(o->err, "not found"));
	/* the command's own variables win over the profile's */
	o = run(w, "printenv SB_LOGIN_VAR", true, NULL, "SB_LOGIN_VAR=mine", NULL);
	assert_string_equal(o->text, "mine\n");
	o = run(w, "printenv PATH", true, NULL, "PATH=/usr/bin:/bin", NULL);
	assert_string_equal(o->text, "/usr/bin:/bin\n");
	/* a non-login shell string gets nothing of the profile */
	o = run(w, "printenv SB_LOGIN_VAR", false, NULL, NULL);
	assert_string_equal(o->text, "");
	assert_int_equal(o->code, 1);
	assert_int_equal(runs(), 3);
}

static void test_changed_profile_seen_at_once(void **state)
{
	struct world *w = *state;
	write_profile(profile);
	run(w, "true", true, NULL, NULL);
	settle(w);
	struct out *o = run(w, "printenv SB_LOGIN_VAR", true, NULL, NULL);
	assert_string_equal(o->text, "from-profile\n");
	int before = runs();
	write_profile("echo run >> \"$HOME/runs\"\nexport SB_LOGIN_VAR=changed-profile\necho noise\n");
	/* seen by the next command (through sh -lc while it is worked out again,
	 * whose profile still talks into the command's output) */
	o = run(w, "printenv SB_LOGIN_VAR", true, NULL, NULL);
	assert_string_equal(o->text, "noise\nchanged-profile\n");
	settle(w);
	assert_int_equal(runs(), before + 2);
	o = run(w, "printenv SB_LOGIN_VAR", true, NULL, NULL); /* the profile's output is not the command's */
	assert_string_equal(o->text, "changed-profile\n");
	assert_int_equal(runs(), before + 2);
}

static void test_failed_capture_keeps_the_login_shell(void **state)
{
	struct world *w = *state;
	/* the capture's printer writes to fd 3: a profile that closes it fails it */
	write_profile("echo run >> \"$HOME/runs\"\nexport SB_LOGIN_VAR=from-profile\nexec 3>&-\n");
	for (int i = 1; i <= 3; i++) {
		struct out *o = run(w, "printenv SB_LOGIN_VAR", true, NULL, NULL);
		assert_string_equal(o->text, "from-profile\n");
		settle(w);
	}
	assert_int_equal(runs(), 4); /* one capture, and a login shell for each */
	/* no printer: no login environment kept at all */
	w->aw.a.login_printer = NULL;
	write_profile(profile);
	struct out *o = run(w, "printenv SB_LOGIN_VAR", true, NULL, NULL);
	assert_string_equal(o->text, "from-profile\n");
	assert_int_equal(runs(), 5);
}

static void test_entries_bounded(void **state)
{
	struct world *w = *state;
	write_profile(profile);
	char kv[64];
	for (int i = 0; i < LOGIN_ENTRIES_MAX + 4; i++) {
		snprintf(kv, sizeof(kv), "HOME=%s/h%d", home, i); /* a HOME per request */
		struct out *o = run(w, "true", true, NULL, kv, NULL);
		assert_int_equal(o->code, 0);
	}
	settle(w);
	size_t kept = 0;
	for (struct login_env *l = w->aw.a.logins; l; l = login_next(l))
		kept++;
	assert_int_equal(kept, LOGIN_ENTRIES_MAX);
	/* those kept still serve */
	snprintf(kv, sizeof(kv), "HOME=%s/h0", home);
	struct out *o = run(w, "echo $HOME", true, NULL, kv, NULL);
	char want[80];
	snprintf(want, sizeof(want), "%s\n", kv + 5);
	assert_string_equal(o->text, want);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_login_environment_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_changed_profile_seen_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_capture_keeps_the_login_shell, setup, teardown),
		cmocka_unit_test_setup_teardown(test_entries_bounded, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
