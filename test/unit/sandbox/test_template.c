/* devcontainer.json into struct template: every field, every refusal, build
 * paths that try to leave the folder, build tags, and the shipped templates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* compiled in whole so the static helpers are reachable */
#include "../../../src/sandbox/template.c"

static char tmp[64]; /* a template folder with a Dockerfile, made per run */
static char err[512];
static const struct template_policy strict = { false, false, false, { false } };
static const struct template_policy permissive = { true, true, true, { true, true } };

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[PATH_MAX * 2];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	snprintf(tmp, sizeof(tmp), "/tmp/sandbar-tpl-test-XXXXXX");
	if (!mkdtemp(tmp))
		return -1;
	char sub[PATH_MAX + 16];
	write_file(tmp, "Dockerfile", "FROM sandbar/base:latest\n");
	snprintf(sub, sizeof(sub), "%s/ctx", tmp);
	mkdir(sub, 0755);
	write_file(sub, "Dockerfile", "FROM sandbar/base:latest\nCOPY a.txt /\n");
	write_file(sub, "a.txt", "hello\n");
	snprintf(sub, sizeof(sub), "%s/ctx/deep", tmp);
	mkdir(sub, 0755);
	write_file(sub, "b.txt", "world\n");
	snprintf(sub, sizeof(sub), "%s/escape", tmp);
	if (symlink("/etc", sub) != 0)
		return -1;
	snprintf(sub, sizeof(sub), "%s/ctx/Dockerfile.link", tmp);
	if (symlink("/etc/hostname", sub) != 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	return system(cmd) == 0 ? 0 : -1;
}

static struct template *parse_with(const char *text, const struct template_policy *policy)
{
	err[0] = '\0';
	return template_parse("t", tmp, text, strlen(text), policy, err, sizeof(err));
}

static struct template *ok(const char *text)
{
	struct template *t = parse_with(text, &strict);
	if (!t)
		fail_msg("refused (%s): %s", err, text);
	return t;
}

static void refused_with(const char *text, const struct template_policy *policy, const char *needle)
{
	struct template *t = parse_with(text, policy);
	if (t) {
		template_free(t);
		fail_msg("accepted: %s", text);
	}
	if (!strstr(err, needle))
		fail_msg("error '%s' lacks '%s' for %s", err, needle, text);
}

static void refused(const char *text, const char *needle)
{
	refused_with(text, &strict, needle);
}

static void test_image_and_defaults(void **state)
{
	(void)state;
	struct template *t = ok("{\"image\": \"sandbar/base:latest\", \"somethingElse\": {\"x\": 1}}");
	assert_string_equal(t->name, "t");
	assert_string_equal(t->image, "sandbar/base:latest");
	assert_null(t->build_dockerfile);
	assert_null(t->build_tag);
	assert_string_equal(t->workspace_folder, "/workspace");
	assert_true(t->override_command);
	assert_false(t->init);
	assert_false(t->privileged);
	assert_int_equal(t->nports, 0);
	assert_int_equal(t->nmounts, 0);
	assert_null(t->container_env);
	assert_null(t->cap_add);
	assert_null(t->post_create);
	assert_true(t->host_cpus == 0 && t->host_memory == 0);
	/* unknown fields are kept in the document */
	struct json_object *v;
	assert_true(json_object_object_get_ex(t->config, "somethingElse", &v));
	template_free(t);
}

static void test_source_exactly_one(void **state)
{
	(void)state;
	refused("{}", "exactly one of image or build");
	refused("{\"image\": \"x\", \"build\": {\"dockerfile\": \"Dockerfile\"}}", "exactly one");
	refused("{\"image\": \"x\", \"dockerFile\": \"Dockerfile\"}", "exactly one");
	refused("{\"image\": 5}", "image: expected a string");
	refused("{\"image\": \"\"}", "image: must not be empty");
	refused("{\"build\": \"Dockerfile\"}", "build: expected an object");
	refused("{\"build\": {\"context\": \".\"}}", "build.dockerfile is required");
	refused("[1, 2]", "must hold a JSON object");
	refused("{\"image\": \"x\"", "line 1");
}

static void test_build(void **state)
{
	(void)state;
	struct template *t = ok("{\"build\": {\"dockerfile\": \"Dockerfile\"}}");
	assert_null(t->image);
	assert_string_equal(t->build_dockerfile, "Dockerfile");
	assert_string_equal(t->build_context, tmp);
	assert_null(t->build_args);
	assert_null(t->build_target);
	assert_non_null(t->build_tag);
	assert_int_equal(strncmp(t->build_tag, "sandbar/tpl-t:", 14), 0);
	assert_int_equal(strlen(t->build_tag), 14 + 16);
	char first[64];
	snprintf(first, sizeof(first), "%s", t->build_tag);
	template_free(t);

	/* deterministic */
	t = ok("{\"build\": {\"dockerfile\": \"./Dockerfile\", \"context\": \".\"}}");
	assert_string_equal(t->build_tag, first);
	template_free(t);

	t = ok("{\"build\": {\"dockerfile\": \"ctx/Dockerfile\", \"context\": \"ctx\","
	       " \"args\": {\"B\": \"2\", \"A\": \"1\"}, \"target\": \"dev\"}}");
	assert_string_equal(t->build_dockerfile, "Dockerfile");
	char want[PATH_MAX + 8];
	snprintf(want, sizeof(want), "%s/ctx", tmp);
	assert_string_equal(t->build_context, want);
	assert_string_equal(t->build_target, "dev");
	assert_non_null(t->build_args);
	char withargs[64];
	snprintf(withargs, sizeof(withargs), "%s", t->build_tag);
	assert_string_not_equal(withargs, first);
	template_free(t);

	/* args order does not matter, values do */
	t = ok("{\"build\": {\"dockerfile\": \"ctx/Dockerfile\", \"context\": \"ctx\","
	       " \"args\": {\"A\": \"1\", \"B\": \"2\"}, \"target\": \"dev\"}}");
	assert_string_equal(t->build_tag, withargs);
	template_free(t);
	t = ok("{\"build\": {\"dockerfile\": \"ctx/Dockerfile\", \"context\": \"ctx\","
	       " \"args\": {\"A\": \"1\", \"B\": \"3\"}, \"target\": \"dev\"}}");
	assert_string_not_equal(t->build_tag, withargs);
	template_free(t);

	/* a context file changes the tag */
	char sub[PATH_MAX + 16];
	snprintf(sub, sizeof(sub), "%s/ctx/deep", tmp);
	write_file(sub, "b.txt", "changed\n");
	t = ok("{\"build\": {\"dockerfile\": \"ctx/Dockerfile\", \"context\": \"ctx\","
	       " \"args\": {\"A\": \"1\", \"B\": \"2\"}, \"target\": \"dev\"}}");
	assert_string_not_equal(t->build_tag, withargs);
	template_free(t);

	/* legacy top-level dockerFile + context */
	t = ok("{\"dockerFile\": \"ctx/Dockerfile\", \"context\": \"ctx\"}");
	assert_string_equal(t->build_dockerfile, "Dockerfile");
	assert_string_equal(t->build_context, want);
	template_free(t);
	t = ok("{\"dockerfile\": \"Dockerfile\"}");
	assert_string_equal(t->build_context, tmp);
	template_free(t);

	refused("{\"build\": {\"dockerfile\": \"Dockerfile\", \"args\": {\"A\": 1}}}", "build.args");
	refused("{\"build\": {\"dockerfile\": \"Dockerfile\", \"args\": []}}", "build.args");
	refused("{\"build\": {\"dockerfile\": \"Dockerfile\", \"target\": 3}}", "target");
	refused("{\"build\": {\"dockerfile\": \"Missing\"}}", "build.dockerfile");
}

static void test_build_escapes(void **state)
{
	(void)state;
	refused("{\"build\": {\"dockerfile\": \"Dockerfile\", \"context\": \"..\"}}", "build.context");
	refused("{\"build\": {\"dockerfile\": \"../Dockerfile\"}}", "build.dockerfile");
	refused("{\"build\": {\"dockerfile\": \"Dockerfile\", \"context\": \"ctx/../..\"}}", "build.context");
	refused("{\"build\": {\"dockerfile\": \"/etc/Dockerfile\"}}", "build.dockerfile");
	refused("{\"build\": {\"dockerfile\": \"Dockerfile\", \"context\": \"/\"}}", "build.context");
	refused("{\"build\": {\"dockerfile\": \"Dockerfile\", \"context\": \"ctx\"}}",
		"inside build.context");
	/* symlinks out of the folder */
	refused("{\"build\": {\"dockerfile\": \"escape/hostname\", \"context\": \"escape\"}}",
		"build.context");
	refused("{\"build\": {\"dockerfile\": \"ctx/Dockerfile.link\", \"context\": \"ctx\"}}",
		"build.dockerfile");
	/* ".." that stays inside is fine */
	struct template *t =
		ok("{\"build\": {\"dockerfile\": \"ctx/../Dockerfile\", \"context\": \"ctx/..\"}}");
	assert_string_equal(t->build_context, tmp);
	template_free(t);
}

static void test_normalise_rel(void **state)
{
	char out[64];
	(void)state;
	assert_int_equal(normalise_rel(".", out, sizeof(out)), 0);
	assert_string_equal(out, ".");
	assert_int_equal(normalise_rel("a/./b//c/", out, sizeof(out)), 0);
	assert_string_equal(out, "a/b/c");
	assert_int_equal(normalise_rel("a/b/../../c", out, sizeof(out)), 0);
	assert_string_equal(out, "c");
	assert_int_equal(normalise_rel("a/..", out, sizeof(out)), 0);
	assert_string_equal(out, ".");
	assert_int_equal(normalise_rel("a/../..", out, sizeof(out)), -1);
	assert_int_equal(normalise_rel("../a", out, sizeof(out)), -1);
	assert_int_equal(normalise_rel("/a", out, sizeof(out)), -1);
	assert_int_equal(normalise_rel("..a/b", out, sizeof(out)), 0);
	assert_string_equal(out, "..a/b");
}

static void test_env(void **state)
{
	(void)state;
	struct template *t =
		ok("{\"image\": \"x\", \"containerEnv\": {\"A\": \"1\", \"B\": \"x=y\", \"E\": \"\"},"
		   " \"remoteEnv\": {\"PATH\": \"${containerEnv:PATH}:/opt\"}}");
	assert_string_equal(t->container_env[0], "A=1");
	assert_string_equal(t->container_env[1], "B=x=y");
	assert_string_equal(t->container_env[2], "E=");
	assert_null(t->container_env[3]);
	assert_string_equal(t->remote_env[0], "PATH=${containerEnv:PATH}:/opt");
	assert_null(t->remote_env[1]);
	template_free(t);
	t = ok("{\"image\": \"x\", \"containerEnv\": {}}");
	assert_non_null(t->container_env);
	assert_null(t->container_env[0]);
	template_free(t);
	refused("{\"image\": \"x\", \"containerEnv\": {\"A\": 1}}", "containerEnv.A: expected a string");
	refused("{\"image\": \"x\", \"remoteEnv\": {\"A\": null}}", "remoteEnv.A: expected a string");
	refused("{\"image\": \"x\", \"containerEnv\": {\"A=B\": \"1\"}}", "bad variable name");
	refused("{\"image\": \"x\", \"containerEnv\": {\"\": \"1\"}}", "bad variable name");
	refused("{\"image\": \"x\", \"containerEnv\": [\"A=1\"]}", "containerEnv: expected an object");
	refused("{\"image\": \"x\", \"containerEnv\": {\"A\": \"a\\u0000b\"}}", "NUL");
}

static void test_ports(void **state)
{
	(void)state;
	struct template *t =
		ok("{\"image\": \"x\", \"forwardPorts\": [8080, \"db:5432\", 3000, 8080, \"9000\"],"
		   " \"appPort\": [\"8000:3000\", 4000]}");
	static const int want[] = { 8080, 5432, 3000, 9000, 4000 };
	assert_int_equal(t->nports, ARRAY_LEN(want));
	for (size_t i = 0; i < ARRAY_LEN(want); i++)
		assert_int_equal(t->ports[i], want[i]);
	template_free(t);
	t = ok("{\"image\": \"x\", \"appPort\": 8000}");
	assert_int_equal(t->nports, 1);
	assert_int_equal(t->ports[0], 8000);
	template_free(t);
	t = ok("{\"image\": \"x\", \"appPort\": \"127.0.0.1:80:8001\", \"forwardPorts\": [1, 65535]}");
	assert_int_equal(t->nports, 3);
	assert_int_equal(t->ports[2], 8001);
	template_free(t);
	refused("{\"image\": \"x\", \"forwardPorts\": [0]}", "forwardPorts");
	refused("{\"image\": \"x\", \"forwardPorts\": [65536]}", "not a port number");
	refused("{\"image\": \"x\", \"forwardPorts\": [-1]}", "not a port number");
	refused("{\"image\": \"x\", \"forwardPorts\": [80.5]}", "not a port number");
	refused("{\"image\": \"x\", \"forwardPorts\": [\"db:\"]}", "not a port number");
	refused("{\"image\": \"x\", \"forwardPorts\": [\"db:http\"]}", "not a port number");
	refused("{\"image\": \"x\", \"forwardPorts\": [\"99999999999\"]}", "not a port number");
	refused("{\"image\": \"x\", \"forwardPorts\": [true]}", "not a port number");
	refused("{\"image\": \"x\", \"forwardPorts\": 8080}", "forwardPorts: expected an array");
	refused("{\"image\": \"x\", \"appPort\": {\"p\": 1}}", "appPort");
	refused("{\"image\": \"x\", \"appPort\": [\"8000/tcp\"]}", "appPort");
}

static void test_workspace(void **state)
{
	(void)state;
	struct template *t = ok("{\"image\": \"x\", \"workspaceFolder\": \"/home/sandbox/src\"}");
	assert_string_equal(t->workspace_folder, "/home/sandbox/src");
	template_free(t);
	refused("{\"image\": \"x\", \"workspaceFolder\": \"src\"}", "workspaceFolder");
	refused("{\"image\": \"x\", \"workspaceFolder\": \"/a/../etc\"}", "workspaceFolder");
	refused("{\"image\": \"x\", \"workspaceFolder\": \"/workspaces/${localWorkspaceFolderBasename}\"}",
		"workspaceFolder");
	refused("{\"image\": \"x\", \"workspaceFolder\": 1}", "workspaceFolder");
}

static void test_mounts(void **state)
{
	(void)state;
	struct template *t;
	t = ok("{\"image\": \"x\", \"mounts\": ["
	       "\"type=volume,source=cache,target=/home/sandbox/.cache\","
	       "\"source=tmp1,target=/scratch,type=tmpfs\","
	       "\"src=data,dst=/data,readonly,consistency=cached\","
	       "{\"type\": \"volume\", \"source\": \"go-mod\", \"target\": \"/go/pkg\"},"
	       "{\"type\": \"tmpfs\", \"target\": \"/run/x\", \"readonly\": true}]}");
	assert_int_equal(t->nmounts, 5);
	assert_int_equal(t->mounts[0].type, MOUNT_VOLUME);
	assert_string_equal(t->mounts[0].source, "cache");
	assert_string_equal(t->mounts[0].target, "/home/sandbox/.cache");
	assert_false(t->mounts[0].readonly);
	assert_int_equal(t->mounts[1].type, MOUNT_TMPFS);
	assert_null(t->mounts[1].source);
	assert_string_equal(t->mounts[1].target, "/scratch");
	assert_int_equal(t->mounts[2].type, MOUNT_VOLUME);
	assert_true(t->mounts[2].readonly);
	assert_string_equal(t->mounts[3].source, "go-mod");
	assert_int_equal(t->mounts[4].type, MOUNT_TMPFS);
	assert_true(t->mounts[4].readonly);
	template_free(t);

	refused("{\"image\": \"x\", \"mounts\": [\"type=bind,source=/etc,target=/host\"]}",
		"bind mounts are not allowed (set SANDBAR_ALLOW_BIND_MOUNTS=1)");
	refused("{\"image\": \"x\", \"mounts\": [{\"type\": \"bind\", \"source\": \"/etc\", \"target\": "
		"\"/h\"}]}",
		"bind mounts are not allowed (set SANDBAR_ALLOW_BIND_MOUNTS=1)");
	t = parse_with("{\"image\": \"x\", \"mounts\": [\"type=bind,source=/srv/data,target=/data,ro\"]}",
		       &permissive);
	assert_non_null(t);
	assert_int_equal(t->mounts[0].type, MOUNT_BIND);
	assert_string_equal(t->mounts[0].source, "/srv/data");
	assert_true(t->mounts[0].readonly);
	template_free(t);
	refused_with("{\"image\": \"x\", \"mounts\": [\"type=bind,source=rel,target=/data\"]}", &permissive,
		     "absolute source");

	refused("{\"image\": \"x\", \"mounts\": [\"type=npipe,source=a,target=/b\"]}", "not supported");
	refused("{\"image\": \"x\", \"mounts\": [\"type=volume,target=/b\"]}", "source name");
	refused("{\"image\": \"x\", \"mounts\": [\"type=volume,source=${devcontainerId}-x,target=/b\"]}",
		"source name");
	refused("{\"image\": \"x\", \"mounts\": [\"type=volume,source=ab,target=rel\"]}", "target");
	refused("{\"image\": \"x\", \"mounts\": [\"type=volume,source=ab,target=/\"]}", "target");
	refused("{\"image\": \"x\", \"mounts\": [\"type=volume,source=ab\"]}", "target");
	refused("{\"image\": \"x\", \"mounts\": [\"type=volume,source=ab,source=cd,target=/x\"]}", "source");
	refused("{\"image\": \"x\", \"mounts\": [\"type=volume,source=ab,target=/x,volume-opt=o=1\"]}",
		"option 'volume-opt'");
	refused("{\"image\": \"x\", \"mounts\": [\"type=volume,source=ab,target=/x,readonly=maybe\"]}",
		"readonly");
	refused("{\"image\": \"x\", \"mounts\": [5]}", "mounts[0]");
	refused("{\"image\": \"x\", \"mounts\": {}}", "mounts: expected an array");
	refused("{\"image\": \"x\", \"mounts\": [{\"type\": \"tmpfs\", \"target\": \"/x\", \"readonly\": "
		"1}]}",
		"readonly");
}

static void test_users_and_commands(void **state)
{
	(void)state;
	struct template *t = ok("{\"image\": \"x\", \"containerUser\": \"root\", \"remoteUser\": \"sandbox\","
				" \"postCreateCommand\": \"go version\","
				" \"postStartCommand\": {\"a\": \"echo a\", \"b\": [\"echo\", \"b\"]},"
				" \"init\": true, \"overrideCommand\": false}");
	assert_string_equal(t->container_user, "root");
	assert_string_equal(t->remote_user, "sandbox");
	assert_true(json_object_is_type(t->post_create, json_type_string));
	assert_string_equal(json_object_get_string(t->post_create), "go version");
	assert_true(json_object_is_type(t->post_start, json_type_object));
	assert_true(t->init);
	assert_false(t->override_command);
	template_free(t);
	t = ok("{\"image\": \"x\", \"postCreateCommand\": [\"npm\", \"install\"]}");
	assert_int_equal(json_object_array_length(t->post_create), 2);
	assert_null(t->remote_user);
	template_free(t);
	refused("{\"image\": \"x\", \"postCreateCommand\": 5}", "postCreateCommand");
	refused("{\"image\": \"x\", \"postCreateCommand\": [\"a\", 1]}", "postCreateCommand");
	refused("{\"image\": \"x\", \"postStartCommand\": {\"a\": 1}}", "postStartCommand");
	refused("{\"image\": \"x\", \"postStartCommand\": {\"a\": [null]}}", "postStartCommand");
	refused("{\"image\": \"x\", \"remoteUser\": 1000}", "remoteUser");
	refused("{\"image\": \"x\", \"containerUser\": \"\"}", "containerUser");
	refused("{\"image\": \"x\", \"init\": \"yes\"}", "init: expected true or false");
	refused("{\"image\": \"x\", \"overrideCommand\": 0}", "overrideCommand");
}

static void test_host_requirements(void **state)
{
	(void)state;
	struct template *t = ok("{\"image\": \"x\", \"hostRequirements\": {\"cpus\": 2, \"memory\": \"4gb\","
				" \"storage\": \"32gb\"}}");
	assert_true(t->host_cpus == 2.0);
	assert_true(t->host_memory == 4000000000ull);
	template_free(t);
	t = ok("{\"image\": \"x\", \"hostRequirements\": {\"cpus\": 0.5, \"memory\": \"8GiB\"}}");
	assert_true(t->host_cpus == 0.5);
	assert_true(t->host_memory == 8ull << 30);
	template_free(t);
	refused("{\"image\": \"x\", \"hostRequirements\": {\"cpus\": 0}}", "hostRequirements.cpus");
	refused("{\"image\": \"x\", \"hostRequirements\": {\"cpus\": \"2\"}}", "hostRequirements.cpus");
	refused("{\"image\": \"x\", \"hostRequirements\": {\"memory\": \"lots\"}}",
		"hostRequirements.memory");
	refused("{\"image\": \"x\", \"hostRequirements\": {\"memory\": true}}", "hostRequirements.memory");
	refused("{\"image\": \"x\", \"hostRequirements\": 4}", "hostRequirements");
}

static void test_security(void **state)
{
	(void)state;
	refused("{\"image\": \"x\", \"privileged\": true}",
		"privileged containers are not allowed (set SANDBAR_ALLOW_PRIVILEGED=1)");
	refused("{\"image\": \"x\", \"capAdd\": [\"SYS_PTRACE\"]}",
		"capAdd is not allowed (set SANDBAR_ALLOW_CAP_ADD=1)");
	refused("{\"image\": \"x\", \"runArgs\": [\"--network=host\"]}", "runArgs is not supported");
	refused_with("{\"image\": \"x\", \"runArgs\": [\"--cap-add=ALL\"]}", &permissive, "runArgs");
	refused("{\"image\": \"x\", \"privileged\": \"true\"}", "privileged");

	struct template *t = ok("{\"image\": \"x\", \"privileged\": false, \"capAdd\": [], \"runArgs\": []}");
	assert_false(t->privileged);
	assert_null(t->cap_add);
	template_free(t);

	t = parse_with(
		"{\"image\": \"x\", \"privileged\": true, \"capAdd\": [\"SYS_PTRACE\", \"NET_ADMIN\"]}",
		&permissive);
	assert_non_null(t);
	assert_true(t->privileged);
	assert_string_equal(t->cap_add[0], "SYS_PTRACE");
	assert_string_equal(t->cap_add[1], "NET_ADMIN");
	assert_null(t->cap_add[2]);
	template_free(t);
	refused_with("{\"image\": \"x\", \"capAdd\": [\"SYS PTRACE\"]}", &permissive, "bad capability");
	refused_with("{\"image\": \"x\", \"capAdd\": \"ALL\"}", &permissive, "capAdd");
}

/* customizations.sandbar.runtime: runc by default, gvisor only when the
 * server enables it; other tools' customizations are left alone, an
 * unknown option of ours is refused. */
static void test_runtime(void **state)
{
	(void)state;
	struct template *t = ok("{\"image\": \"x\", \"customizations\": {\"vscode\": {\"extensions\": []}}}");
	assert_int_equal(t->runtime, SANDBOX_RUNTIME_RUNC);
	template_free(t);
	t = ok("{\"image\": \"x\", \"customizations\": {\"sandbar\": {\"runtime\": \"runc\"}}}");
	assert_int_equal(t->runtime, SANDBOX_RUNTIME_RUNC);
	template_free(t);
	refused("{\"image\": \"x\", \"customizations\": {\"sandbar\": {\"runtime\": \"gvisor\"}}}",
		"runtime gvisor is not enabled (set SANDBAR_RUNTIMES=gvisor)");
	t = parse_with("{\"image\": \"x\", \"customizations\": {\"sandbar\": {\"runtime\": \"gvisor\"}}}",
		       &permissive);
	assert_non_null(t);
	assert_int_equal(t->runtime, SANDBOX_RUNTIME_GVISOR);
	template_free(t);
	refused_with("{\"image\": \"x\", \"customizations\": {\"sandbar\": {\"runtime\": \"kata\"}}}",
		     &permissive, "unknown runtime 'kata'");
	refused_with("{\"image\": \"x\", \"customizations\": {\"sandbar\": {\"runtime\": 1}}}", &permissive,
		     "customizations.sandbar.runtime: expected a string");
	refused_with("{\"image\": \"x\", \"customizations\": {\"sandbar\": {\"runtim\": \"runc\"}}}",
		     &permissive, "customizations.sandbar.runtim: unknown option");
	refused("{\"image\": \"x\", \"customizations\": {\"sandbar\": []}}", "customizations.sandbar");
	refused("{\"image\": \"x\", \"customizations\": 1}", "customizations: expected an object");

	struct sandbox_runtimes rt;
	char e[256];
	assert_int_equal(sandbox_runtimes_parse(NULL, &rt, e, sizeof(e)), 0);
	assert_true(rt.enabled[SANDBOX_RUNTIME_RUNC]);
	assert_false(rt.enabled[SANDBOX_RUNTIME_GVISOR]);
	assert_null(sandbox_runtimes_docker(&rt, SANDBOX_RUNTIME_RUNC));
	assert_null(sandbox_runtimes_docker(&rt, SANDBOX_RUNTIME_GVISOR));
	assert_int_equal(sandbox_runtimes_parse("gvisor", &rt, e, sizeof(e)), 0);
	assert_true(rt.enabled[SANDBOX_RUNTIME_GVISOR]);
	assert_string_equal(sandbox_runtimes_docker(&rt, SANDBOX_RUNTIME_GVISOR), "sandbar-gvisor");
	assert_int_equal(sandbox_runtimes_parse("runc,gvisor=runsc", &rt, e, sizeof(e)), 0);
	assert_string_equal(sandbox_runtimes_docker(&rt, SANDBOX_RUNTIME_GVISOR), "runsc");
	assert_null(sandbox_runtimes_docker(&rt, SANDBOX_RUNTIME_RUNC));
	assert_int_equal(sandbox_runtimes_parse("kata", &rt, e, sizeof(e)), -1);
	assert_non_null(strstr(e, "unknown runtime 'kata'"));
	assert_int_equal(sandbox_runtimes_parse("gvisor,", &rt, e, sizeof(e)), 0);
	assert_int_equal(sandbox_runtimes_parse(",gvisor", &rt, e, sizeof(e)), -1);
	assert_int_equal(sandbox_runtimes_parse("gvisor=", &rt, e, sizeof(e)), -1);
	assert_int_equal(sandbox_runtimes_parse("gvisor=a b", &rt, e, sizeof(e)), -1);
	assert_int_equal(sandbox_runtimes_parse("runc=x", &rt, e, sizeof(e)), -1);
	enum sandbox_runtime r;
	assert_int_equal(sandbox_runtime_parse("gvisor", &r), 0);
	assert_int_equal(r, SANDBOX_RUNTIME_GVISOR);
	assert_string_equal(sandbox_runtime_name(r), "gvisor");
	assert_int_equal(sandbox_runtime_parse("GVISOR", &r), -1);
	assert_int_equal(sandbox_runtime_parse(NULL, &r), -1);
}

static void test_names(void **state)
{
	(void)state;
	assert_true(template_name_valid("go"));
	assert_true(template_name_valid("python-3.12"));
	assert_true(template_name_valid("A_b.c-9"));
	assert_false(template_name_valid(""));
	assert_false(template_name_valid("."));
	assert_false(template_name_valid(".."));
	assert_false(template_name_valid("a/b"));
	assert_false(template_name_valid("a b"));
	assert_false(
		template_name_valid("0123456789012345678901234567890123456789012345678901234567890123x"));
	assert_true(template_name_valid("012345678901234567890123456789012345678901234567890123456789012x"));
}

static void test_tag_name_folding(void **state)
{
	(void)state;
	const char *text = "{\"build\": {\"dockerfile\": \"Dockerfile\"}}";
	struct template *t =
		template_parse("Python_3..12-", tmp, text, strlen(text), &strict, err, sizeof(err));
	assert_non_null(t);
	assert_int_equal(strncmp(t->build_tag, "sandbar/tpl-python-3-12:", 24), 0);
	template_free(t);
}

static void test_shipped_templates(void **state)
{
	(void)state;
	struct template_set *set = template_set_load(SOURCE_ROOT "/devcontainers", &strict);
	assert_non_null(set);
	assert_int_equal(template_set_count(set), 5);
	const struct template *base = template_set_find(set, "base");
	assert_non_null(base);
	assert_string_equal(base->image, "sandbar/base:latest");
	assert_string_equal(base->remote_user, "sandbox");
	assert_int_equal(base->nports, 1);
	assert_int_equal(base->ports[0], 8080);
	static const struct {
		const char *name;
		int port;
		const char *cmd;
	} built[] = { { "agents", 3000, "opencode --version && claude --version && codex --version" },
		      { "go", 8080, "go version" },
		      { "node", 3000, "node --version" },
		      { "python", 3000, "python3 --version" } };
	for (size_t i = 0; i < ARRAY_LEN(built); i++) {
		const struct template *t = template_set_find(set, built[i].name);
		assert_non_null(t);
		assert_null(t->image);
		assert_string_equal(t->build_dockerfile, "Dockerfile");
		assert_non_null(strstr(t->build_tag, "sandbar/tpl-"));
		assert_int_equal(t->nports, 1);
		assert_int_equal(t->ports[0], built[i].port);
		assert_string_equal(t->workspace_folder, "/workspace");
		assert_string_equal(t->remote_user, "sandbox");
		assert_string_equal(json_object_get_string(t->post_create), built[i].cmd);
	}
	assert_null(template_set_find(set, "python-3.12"));
	assert_null(template_set_find(set, "../devcontainers"));
	template_set_free(set);
}

static void test_set_skips_broken(void **state)
{
	(void)state;
	char root[PATH_MAX + 16], sub[PATH_MAX + 32];
	snprintf(root, sizeof(root), "%s/root", tmp);
	assert_int_equal(mkdir(root, 0755), 0);
	snprintf(sub, sizeof(sub), "%s/good", root);
	mkdir(sub, 0755);
	write_file(sub, "devcontainer.json", "// fine\n{\"image\": \"sandbar/base:latest\",}\n");
	snprintf(sub, sizeof(sub), "%s/broken", root);
	mkdir(sub, 0755);
	write_file(sub, "devcontainer.json", "{\"image\": ");
	snprintf(sub, sizeof(sub), "%s/privileged", root);
	mkdir(sub, 0755);
	write_file(sub, "devcontainer.json", "{\"image\": \"x\", \"privileged\": true}");
	snprintf(sub, sizeof(sub), "%s/bad name", root);
	mkdir(sub, 0755);
	write_file(sub, "devcontainer.json", "{\"image\": \"x\"}");
	snprintf(sub, sizeof(sub), "%s/empty", root);
	mkdir(sub, 0755);
	write_file(root, "stray.json", "{}");

	struct template_set *set = template_set_load(root, &strict);
	assert_int_equal(template_set_count(set), 1);
	const struct template *t = template_set_find(set, "good");
	assert_non_null(t);
	char *abs = realpath(root, NULL);
	assert_non_null(abs);
	assert_int_equal(strncmp(t->dir, abs, strlen(abs)), 0);
	assert_true(t->dir[0] == '/');
	free(abs);
	template_set_free(set);

	set = template_set_load(root, &permissive);
	assert_int_equal(template_set_count(set), 2);
	template_set_free(set);

	set = template_set_load("/nonexistent/sandbar", &strict);
	assert_non_null(set);
	assert_int_equal(template_set_count(set), 0);
	assert_null(template_set_find(set, "go"));
	template_set_free(set);
}

int main(void)
{
	log_set_level(LOG_LEVEL_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_image_and_defaults),
		cmocka_unit_test(test_source_exactly_one),
		cmocka_unit_test(test_build),
		cmocka_unit_test(test_build_escapes),
		cmocka_unit_test(test_normalise_rel),
		cmocka_unit_test(test_env),
		cmocka_unit_test(test_ports),
		cmocka_unit_test(test_workspace),
		cmocka_unit_test(test_mounts),
		cmocka_unit_test(test_users_and_commands),
		cmocka_unit_test(test_host_requirements),
		cmocka_unit_test(test_security),
		cmocka_unit_test(test_runtime),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_tag_name_folding),
		cmocka_unit_test(test_shipped_templates),
		cmocka_unit_test(test_set_skips_broken),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
