/* The Docker create body of a sandbox, field by field: labels, workspace
 * volume, ports, limits (server defaults and hostRequirements), hardening,
 * environment, and what the policy lets a template add. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "core/check.h"
#include "core/config.h"
#include "sandbox/container_spec.h"
#include "sandbox/template.h"

static struct config cfg;
static const struct template_policy permissive = { true, true, true, { true, true } };

static struct template *parse(const char *text)
{
	char err[256] = "";
	struct template *t = template_parse("t1", "/tmp", text, strlen(text), &permissive, err, sizeof(err));
	if (!t)
		fail_msg("template_parse: %s", err);
	return t;
}

static struct json_object *spec_of(struct template *t, struct json_object *env)
{
	struct container_spec_input in = {
		.tpl = t,
		.cfg = &cfg,
		.sandbox_id = "11111111-2222-4333-8444-555555555555",
		.cluster = "c1",
		.image = "img:1",
		.volume = "sandbar-ws-11111111-2222-4333-8444-555555555555",
		.env_vars = env,
	};
	return container_spec_build(&in);
}

static struct json_object *get(struct json_object *o, const char *path)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *save, *key = strtok_r(buf, ".", &save); key && o; key = strtok_r(NULL, ".", &save)) {
		if (json_object_is_type(o, json_type_array))
			o = json_object_array_get_idx(o, (size_t)atoi(key));
		else if (!json_object_object_get_ex(o, key, &o))
			return NULL;
	}
	return o;
}

static const char *str(struct json_object *o, const char *path)
{
	struct json_object *v = get(o, path);
	return v ? json_object_get_string(v) : NULL;
}

static int64_t num(struct json_object *o, const char *path)
{
	struct json_object *v = get(o, path);
	assert_non_null(v);
	return json_object_get_int64(v);
}

static void test_defaults_hardening_and_labels(void **state)
{
	struct template *t = parse("{\"image\": \"x\", \"forwardPorts\": [8080, 3000]}");
	struct json_object *s = spec_of(t, NULL);
	assert_string_equal(str(s, "Image"), "img:1");
	struct json_object *labels = get(s, "Labels"), *v;
	assert_true(json_object_object_get_ex(labels, "sandbar.managed", &v));
	assert_string_equal(json_object_get_string(v), "true");
	assert_true(json_object_object_get_ex(labels, "sandbar.sandbox", &v));
	assert_string_equal(json_object_get_string(v), "11111111-2222-4333-8444-555555555555");
	assert_true(json_object_object_get_ex(labels, "sandbar.cluster", &v));
	assert_string_equal(json_object_get_string(v), "c1");
	assert_string_equal(str(s, "WorkingDir"), "/workspace");
	/* overrideCommand defaults to true: the agent is init and idles */
	assert_string_equal(str(s, "Entrypoint.0"), "/.sandbar/agent");
	assert_string_equal(str(s, "Entrypoint.1"), "init");
	assert_null(get(s, "Entrypoint.2"));
	assert_int_equal(json_object_array_length(get(s, "Cmd")), 0);

	assert_int_equal(num(s, "HostConfig.Memory"), 2LL << 30);
	assert_int_equal(num(s, "HostConfig.MemorySwap"), 2LL << 30);
	assert_int_equal(num(s, "HostConfig.NanoCpus"), 2000000000LL);
	assert_int_equal(num(s, "HostConfig.PidsLimit"), 1024);
	assert_string_equal(str(s, "HostConfig.SecurityOpt.0"), "no-new-privileges");
	assert_string_equal(str(s, "HostConfig.CapDrop.0"), "ALL");
	assert_false(json_object_get_boolean(get(s, "HostConfig.Privileged")));
	struct json_object *caps = get(s, "HostConfig.CapAdd");
	for (size_t i = 0; i < json_object_array_length(caps); i++)
		assert_string_not_equal(json_object_get_string(json_object_array_get_idx(caps, i)),
					"NET_RAW");

	/* the workspace volume, labelled, at the workspace folder */
	assert_string_equal(str(s, "HostConfig.Mounts.0.Type"), "volume");
	assert_string_equal(str(s, "HostConfig.Mounts.0.Source"),
			    "sandbar-ws-11111111-2222-4333-8444-555555555555");
	assert_string_equal(str(s, "HostConfig.Mounts.0.Target"), "/workspace");
	struct json_object *vl = get(s, "HostConfig.Mounts.0.VolumeOptions.Labels");
	assert_true(json_object_object_get_ex(vl, "sandbar.sandbox", NULL));

	/* ports exposed and published on ephemeral ports of the publish address */
	assert_non_null(get(s, "ExposedPorts.8080/tcp"));
	assert_non_null(get(s, "ExposedPorts.3000/tcp"));
	struct json_object *pb = get(s, "HostConfig.PortBindings"), *b;
	assert_true(json_object_object_get_ex(pb, "8080/tcp", &b));
	assert_string_equal(json_object_get_string(get(b, "0.HostIp")), "127.0.0.1");
	assert_string_equal(json_object_get_string(get(b, "0.HostPort")), "");
	/* on our own bridge (inter-container traffic off), SANDBAR_NETWORK */
	assert_string_equal(str(s, "HostConfig.NetworkMode"), "sandbar");
	json_object_put(s);
	template_free(t);
}

/* `none`: Docker's none network and nothing published (previews use the
 * agent); an empty SANDBAR_NETWORK leaves Docker's default bridge. */
static void test_network_policy(void **state)
{
	struct template *t = parse("{\"image\": \"x\", \"forwardPorts\": [8080]}");
	struct container_spec_input in = {
		.tpl = t,
		.cfg = &cfg,
		.sandbox_id = "s",
		.cluster = "c1",
		.image = "img:1",
		.volume = "v",
		.network = SANDBOX_NETWORK_NONE,
	};
	struct json_object *s = container_spec_build(&in);
	assert_string_equal(str(s, "HostConfig.NetworkMode"), "none");
	assert_int_equal(json_object_object_length(get(s, "ExposedPorts")), 0);
	assert_int_equal(json_object_object_length(get(s, "HostConfig.PortBindings")), 0);
	json_object_put(s);

	char *saved = cfg.network;
	cfg.network = "";
	in.network = SANDBOX_NETWORK_FULL;
	s = container_spec_build(&in);
	assert_null(get(s, "HostConfig.NetworkMode"));
	assert_non_null(get(s, "ExposedPorts.8080/tcp"));
	json_object_put(s);
	cfg.network = saved;

	/* a runtime other than Docker's default is named; runc is left to Docker */
	in.runtime = "sandbar-gvisor";
	s = container_spec_build(&in);
	assert_string_equal(str(s, "HostConfig.Runtime"), "sandbar-gvisor");
	json_object_put(s);
	in.runtime = NULL;
	s = container_spec_build(&in);
	assert_null(get(s, "HostConfig.Runtime"));
	json_object_put(s);

	enum sandbox_network n;
	assert_int_equal(sandbox_network_parse("none", &n), 0);
	assert_int_equal(n, SANDBOX_NETWORK_NONE);
	assert_int_equal(sandbox_network_parse("full", &n), 0);
	assert_int_equal(n, SANDBOX_NETWORK_FULL);
	assert_int_equal(sandbox_network_parse("host", &n), -1);
	template_free(t);
}

static void test_host_requirements_env_and_policy(void **state)
{
	struct template *t =
		parse("{\"image\": \"x\", \"hostRequirements\": {\"cpus\": 1.5, \"memory\": \"512mb\"},"
		      " \"containerEnv\": {\"A\": \"1\"}, \"overrideCommand\": false, \"init\": true,"
		      " \"privileged\": true, \"capAdd\": [\"SYS_PTRACE\"],"
		      " \"mounts\": [\"type=tmpfs,target=/scratch\"]}");
	struct json_object *env = json_object_new_object();
	json_object_object_add(env, "B", json_object_new_string("two words"));
	struct json_object *s = spec_of(t, env);
	assert_int_equal(num(s, "HostConfig.Memory"), 512000000LL);
	assert_int_equal(num(s, "HostConfig.NanoCpus"), 1500000000LL);
	assert_string_equal(str(s, "Env.0"), "A=1");
	assert_string_equal(str(s, "Env.1"), "B=two words");
	assert_string_equal(str(s, "Entrypoint.0"), "/.sandbar/agent"); /* the image has no command */
	assert_null(get(s, "Entrypoint.2"));
	assert_true(json_object_get_boolean(get(s, "HostConfig.Init")));
	{
		/* the agent starts the image's own Entrypoint + Cmd */
		struct json_object *cmd = json_object_new_array();
		json_object_array_add(cmd, json_object_new_string("/entry.sh"));
		json_object_array_add(cmd, json_object_new_string("serve"));
		struct container_spec_input in = {
			.tpl = t,
			.cfg = &cfg,
			.sandbox_id = "s",
			.cluster = "c1",
			.image = "img:1",
			.volume = "v",
			.image_cmd = cmd,
		};
		struct json_object *s2 = container_spec_build(&in);
		assert_string_equal(str(s2, "Entrypoint.1"), "init");
		assert_string_equal(str(s2, "Entrypoint.2"), "--");
		assert_string_equal(str(s2, "Entrypoint.3"), "/entry.sh");
		assert_string_equal(str(s2, "Entrypoint.4"), "serve");
		assert_int_equal(json_object_array_length(get(s2, "Cmd")), 0);
		json_object_put(s2);
		/* with users: the main command's (--user), and whose login
		 * environment the agent works out as it starts (--login: remoteUser,
		 * else containerUser) */
		struct template *t2 =
			parse("{\"image\": \"x\", \"overrideCommand\": false, \"containerUser\": \"app\","
			      " \"remoteUser\": \"dev\"}");
		in.tpl = t2;
		s2 = container_spec_build(&in);
		static const char *const want[] = {
			"/.sandbar/agent", "init", "--user", "app", "--login", "dev", "--",
			"/entry.sh",	   "serve"
		};
		struct json_object *ep = get(s2, "Entrypoint");
		assert_int_equal(json_object_array_length(ep), ARRAY_LEN(want));
		for (size_t i = 0; i < ARRAY_LEN(want); i++)
			assert_string_equal(json_object_get_string(json_object_array_get_idx(ep, i)),
					    want[i]);
		json_object_put(s2);
		template_free(t2);
		json_object_put(cmd);
	}
	assert_string_equal(str(s, "HostConfig.Mounts.1.Type"), "tmpfs");
	assert_string_equal(str(s, "HostConfig.Mounts.1.Target"), "/scratch");

	/* the template asked; the server's policy decides */
	assert_false(json_object_get_boolean(get(s, "HostConfig.Privileged")));
	struct json_object *caps = get(s, "HostConfig.CapAdd");
	for (size_t i = 0; i < json_object_array_length(caps); i++)
		assert_string_not_equal(json_object_get_string(json_object_array_get_idx(caps, i)),
					"SYS_PTRACE");
	json_object_put(s);

	cfg.allow_privileged = cfg.allow_cap_add = true;
	s = spec_of(t, env);
	assert_true(json_object_get_boolean(get(s, "HostConfig.Privileged")));
	caps = get(s, "HostConfig.CapAdd");
	assert_string_equal(
		json_object_get_string(json_object_array_get_idx(caps, json_object_array_length(caps) - 1)),
		"SYS_PTRACE");
	cfg.allow_privileged = cfg.allow_cap_add = false;
	json_object_put(s);
	json_object_put(env);
	template_free(t);
}

static int setup(void **state)
{
	char err[256];
	unsetenv("SANDBOX_MEMORY_LIMIT");
	unsetenv("SANDBOX_CPU_LIMIT");
	unsetenv("SANDBAR_NETWORK");
	return config_load(&cfg, err, sizeof(err));
}

static int teardown(void **state)
{
	config_free(&cfg);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_hardening_and_labels),
		cmocka_unit_test(test_host_requirements_env_and_policy),
		cmocka_unit_test(test_network_policy),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
