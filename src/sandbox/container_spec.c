/* Turns a template and the server's limits into a Docker create body. Every
 * sandbox is labelled, mounts its own workspace volume, publishes its declared
 * ports on ephemeral host ports, and runs without privileges it does not need. */
#include "sandbox/container_spec.h"

#include <json-c/json.h>
#include <stdio.h>

#include "core/config.h"
#include "channel/channel.h"
#include "sandbox/template.h"

static void add_env_list(struct json_object *env, char **list);
static void add_env_object(struct json_object *env, struct json_object *obj);
static struct json_object *build_mounts(const struct container_spec_input *in);
static struct json_object *build_caps(const struct container_spec_input *in);
static struct json_object *sandbox_labels(const struct container_spec_input *in);

/* Docker's default set minus NET_RAW (spoofing), MKNOD, AUDIT_WRITE, SYS_CHROOT
 * and SETFCAP: enough for package managers, sudo-less root setup and servers
 * on low ports, nothing that reaches past the container. */
const char *const container_spec_caps[] = {
	"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE", NULL,
};

uint64_t container_spec_memory(const struct container_spec_input *in)
{
	if (in->memory)
		return in->memory;
	return in->tpl->host_memory ? in->tpl->host_memory : in->cfg->sandbox_memory_limit;
}

double container_spec_cpus(const struct container_spec_input *in)
{
	if (in->cpus > 0)
		return in->cpus;
	return in->tpl->host_cpus > 0 ? in->tpl->host_cpus : in->cfg->sandbox_cpu_limit;
}

struct json_object *container_spec_build(const struct container_spec_input *in)
{
	const struct template *t = in->tpl;
	const struct config *cfg = in->cfg;
	struct json_object *spec = json_object_new_object();
	struct json_object *host = json_object_new_object();

	json_object_object_add(spec, "Image", json_object_new_string(in->image));
	json_object_object_add(spec, "Hostname", json_object_new_string("sandbox"));
	json_object_object_add(spec, "WorkingDir", json_object_new_string(t->workspace_folder));
	/* the agent (copied in before the first start) is init and runs as root, so
	 * that commands can run as any user; it idles when the template overrides
	 * the command, else it starts the image's own as containerUser (or the
	 * image's USER) */
	json_object_object_add(spec, "User", json_object_new_string("0:0"));
	struct json_object *ep = json_object_new_array();
	json_object_array_add(ep, json_object_new_string(AGENT_PATH));
	json_object_array_add(ep, json_object_new_string("init"));
	const char *main_user = t->container_user ? t->container_user : in->image_user;
	bool has_main = !t->override_command && in->image_cmd && json_object_array_length(in->image_cmd) > 0;
	if (has_main && main_user && *main_user) {
		json_object_array_add(ep, json_object_new_string("--user"));
		json_object_array_add(ep, json_object_new_string(main_user));
	}
	/* whom commands run as: the agent works that user's login environment
	 * out as it starts, not at the first shell string (this agent is the
	 * image's, so it knows --login) */
	const char *run_user = t->remote_user ? t->remote_user : t->container_user;
	if (run_user && *run_user) {
		json_object_array_add(ep, json_object_new_string("--login"));
		json_object_array_add(ep, json_object_new_string(run_user));
	}
	if (has_main) {
		json_object_array_add(ep, json_object_new_string("--"));
		for (size_t i = 0; i < json_object_array_length(in->image_cmd); i++)
			json_object_array_add(ep,
					      json_object_get(json_object_array_get_idx(in->image_cmd, i)));
	}
	json_object_object_add(spec, "Entrypoint", ep);
	json_object_object_add(spec, "Cmd", json_object_new_array());

	struct json_object *env = json_object_new_array();
	add_env_list(env, t->container_env);
	add_env_object(env, in->env_vars);
	json_object_object_add(spec, "Env", env);

	json_object_object_add(spec, "Labels", sandbox_labels(in));

	struct json_object *exposed = json_object_new_object();
	struct json_object *bindings = json_object_new_object();
	const int *ports = in->ports ? in->ports : t->ports;
	size_t nports = in->ports ? in->nports : t->nports;
	if (in->network == SANDBOX_NETWORK_NONE)
		nports = 0; /* nothing to publish from: previews go through the agent */
	for (size_t i = 0; i < nports; i++) {
		char key[16];
		snprintf(key, sizeof(key), "%d/tcp", ports[i]);
		json_object_object_add(exposed, key, json_object_new_object());
		struct json_object *b = json_object_new_object();
		json_object_object_add(b, "HostIp", json_object_new_string(cfg->publish_addr));
		json_object_object_add(b, "HostPort", json_object_new_string(""));
		struct json_object *arr = json_object_new_array();
		json_object_array_add(arr, b);
		json_object_object_add(bindings, key, arr);
	}
	json_object_object_add(spec, "ExposedPorts", exposed);
	json_object_object_add(host, "PortBindings", bindings);
	/* our own bridge, where sandboxes cannot reach each other; "" keeps
	 * Docker's default bridge */
	if (in->network == SANDBOX_NETWORK_NONE)
		json_object_object_add(host, "NetworkMode", json_object_new_string("none"));
	else if (cfg->network && cfg->network[0])
		json_object_object_add(host, "NetworkMode", json_object_new_string(cfg->network));

	json_object_object_add(host, "Mounts", build_mounts(in));

	uint64_t memory = container_spec_memory(in);
	double cpus = container_spec_cpus(in);
	json_object_object_add(host, "Memory", json_object_new_int64((int64_t)memory));
	json_object_object_add(host, "MemorySwap", json_object_new_int64((int64_t)memory));
	json_object_object_add(host, "NanoCpus", json_object_new_int64((int64_t)(cpus * 1e9)));
	json_object_object_add(host, "PidsLimit", json_object_new_int64(cfg->sandbox_pids_limit));

	struct json_object *secopt = json_object_new_array();
	json_object_array_add(secopt, json_object_new_string("no-new-privileges"));
	json_object_object_add(host, "SecurityOpt", secopt);
	struct json_object *drop = json_object_new_array();
	json_object_array_add(drop, json_object_new_string("ALL"));
	json_object_object_add(host, "CapDrop", drop);
	json_object_object_add(host, "CapAdd", build_caps(in));
	json_object_object_add(host, "Privileged",
			       json_object_new_boolean(t->privileged && cfg->allow_privileged));
	json_object_object_add(host, "Init", json_object_new_boolean(t->init));
	if (in->runtime && in->runtime[0])
		json_object_object_add(host, "Runtime", json_object_new_string(in->runtime));
	struct json_object *restart = json_object_new_object();
	json_object_object_add(restart, "Name", json_object_new_string("no"));
	json_object_object_add(host, "RestartPolicy", restart);

	json_object_object_add(spec, "HostConfig", host);
	return spec;
}

static void add_env_list(struct json_object *env, char **list)
{
	for (size_t i = 0; list && list[i]; i++)
		json_object_array_add(env, json_object_new_string(list[i]));
}

static void add_env_object(struct json_object *env, struct json_object *obj)
{
	if (!obj)
		return;
	json_object_object_foreach(obj, key, val)
	{
		char kv[8192];
		snprintf(kv, sizeof(kv), "%s=%s", key, json_object_get_string(val));
		json_object_array_add(env, json_object_new_string(kv));
	}
}

static struct json_object *build_mounts(const struct container_spec_input *in)
{
	const struct template *t = in->tpl;
	struct json_object *mounts = json_object_new_array();
	struct json_object *ws = json_object_new_object();
	json_object_object_add(ws, "Type", json_object_new_string("volume"));
	json_object_object_add(ws, "Source", json_object_new_string(in->volume));
	json_object_object_add(ws, "Target", json_object_new_string(t->workspace_folder));
	/* created by Docker with the container, labelled so that it is always found again */
	struct json_object *vopts = json_object_new_object();
	json_object_object_add(vopts, "Labels", sandbox_labels(in));
	json_object_object_add(ws, "VolumeOptions", vopts);
	json_object_array_add(mounts, ws);

	for (size_t i = 0; i < t->nmounts; i++) {
		const struct template_mount *m = &t->mounts[i];
		struct json_object *o = json_object_new_object();
		const char *type = m->type == MOUNT_TMPFS  ? "tmpfs"
				   : m->type == MOUNT_BIND ? "bind"
							   : "volume";
		json_object_object_add(o, "Type", json_object_new_string(type));
		if (m->source)
			json_object_object_add(o, "Source", json_object_new_string(m->source));
		json_object_object_add(o, "Target", json_object_new_string(m->target));
		json_object_object_add(o, "ReadOnly", json_object_new_boolean(m->readonly));
		json_object_array_add(mounts, o);
	}
	return mounts;
}

static struct json_object *build_caps(const struct container_spec_input *in)
{
	struct json_object *caps = json_object_new_array();
	for (size_t i = 0; container_spec_caps[i]; i++)
		json_object_array_add(caps, json_object_new_string(container_spec_caps[i]));
	if (in->cfg->allow_cap_add) {
		for (size_t i = 0; in->tpl->cap_add && in->tpl->cap_add[i]; i++)
			json_object_array_add(caps, json_object_new_string(in->tpl->cap_add[i]));
	}
	return caps;
}

/* Every object made for a sandbox carries these, so it can always be found again. */
static struct json_object *sandbox_labels(const struct container_spec_input *in)
{
	struct json_object *labels = json_object_new_object();
	json_object_object_add(labels, "sandbar.managed", json_object_new_string("true"));
	json_object_object_add(labels, "sandbar.sandbox", json_object_new_string(in->sandbox_id));
	json_object_object_add(labels, "sandbar.cluster", json_object_new_string(in->cluster));
	json_object_object_add(labels, "sandbar.template", json_object_new_string(in->tpl->name));
	return labels;
}
