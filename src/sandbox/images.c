/* The images sandboxes run: the template's image (present already: no
 * registry is assumed reachable; or, for a `build` template, built once under
 * its content tag) with the agent baked in, as a derived image built once per
 * (template image id, agent hash) through the Engine API and reused, so a
 * create copies nothing into its container. However many creates wait for an
 * image at the same time, one job checks or builds it. Derived images of an
 * older agent are removed once nothing uses them. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "core/sha256.h"
#include "docker/engine.h"
#include "internal.h"
#include "sandbox/template.h"

#define DERIVED_REPO "sandbar/with-agent"

struct image_wait {
	struct image_job *job;
	image_ready_fn cb;
	void *arg;
	struct image_wait *next;
};

enum job_state {
	JOB_INSPECT,	   /* the template's image: present? its id, command, user */
	JOB_BUILD,	   /* a `build` template's image, built */
	JOB_DERIVED,	   /* the derived image: present? */
	JOB_BUILD_DERIVED, /* ... built */
	JOB_DONE,
	JOB_STATE_MAX
};

/* What is known of one template image: its id and the derived image's tag. */
struct image_known {
	struct image_known *next;
	char *name; /* the template's image */
	char id[80];
	char derived[96];
	struct json_object *cmd; /* Entrypoint + Cmd */
	char user[128];
	bool built; /* the derived image exists */
};

/* One template image being checked or built, shared by every create that needs it. */
struct image_job {
	struct image_builds *owner;
	const struct template *tpl;
	char *image; /* the image checked: the template's, or another a pool rollout asks for */
	enum job_state state;
	struct image_known *known;
	struct docker_call *dcall;
	struct image_wait *waiters;
	struct image_job *next;
	bool built; /* a `build` template's image was built by this job */
};

/* A derived image to remove, one at a time. */
struct image_doomed {
	struct image_doomed *next;
	char name[96];
};

struct image_builds {
	struct sandbox_service *svc;
	struct image_job *jobs;
	struct image_known *known;
	struct image_doomed *doomed;
	struct docker_call *removing; /* the list, or a removal of doomed's head */
	char agent_hash[65];
	char ctx_dir[64]; /* the derived images' build context: Dockerfile and the agent */
};

static void job_inspected(struct json_object *info, bool missing, const char *err, void *arg);
static void job_built(const char *err, const char *log, void *arg);
static void job_derived_exists(bool exists, const char *err, void *arg);
static void job_derived_built(const char *err, const char *log, void *arg);
static void job_finish(struct image_job *job, const char *err);
static void job_set_state(struct image_job *job, enum job_state next);
static void doom(struct image_builds *b, const char *name);
static void doomed_next(struct image_builds *b);

const char *template_image(const struct template *t)
{
	return t->image ? t->image : t->build_tag;
}

static int write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -1;
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(fd);
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return close(fd);
}

/* Start-up (before the loop): the build context of derived images. */
struct image_builds *image_builds_new(struct sandbox_service *svc)
{
	struct image_builds *b = calloc(1, sizeof(*b));
	CHECK(b != NULL);
	b->svc = svc;
	unsigned char d[32];
	struct sha256 s;
	sha256_init(&s);
	sha256_update(&s, svc->agent_bin, svc->agent_len);
	sha256_final(&s, d);
	sha256_hex(d, b->agent_hash);
	const char *tmp = getenv("TMPDIR");
	snprintf(b->ctx_dir, sizeof(b->ctx_dir), "%s/sandbar-agent-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(b->ctx_dir)) {
		log_error("images: cannot make a build context in %s: %m", b->ctx_dir);
		b->ctx_dir[0] = '\0';
		return b;
	}
	static const char dockerfile[] = "# sandbar: a template's image with the agent as its init\n"
					 "ARG BASE\nFROM ${BASE}\nCOPY agent /.sandbar/agent\n";
	char path[128];
	snprintf(path, sizeof(path), "%s/Dockerfile", b->ctx_dir);
	int rc = write_file(path, dockerfile, sizeof(dockerfile) - 1, 0644);
	snprintf(path, sizeof(path), "%s/agent", b->ctx_dir);
	rc |= write_file(path, svc->agent_bin, svc->agent_len, 0755);
	if (rc != 0)
		log_error("images: cannot write the build context in %s: %m", b->ctx_dir);
	return b;
}

void image_builds_free(struct image_builds *b)
{
	if (!b)
		return;
	/* the loop has stopped: waiters are forgotten, not called (they would start Docker calls) */
	while (b->jobs) {
		struct image_job *job = b->jobs;
		b->jobs = job->next;
		if (job->dcall)
			docker_call_cancel(job->dcall);
		while (job->waiters) {
			struct image_wait *w = job->waiters;
			job->waiters = w->next;
			free(w);
		}
		free(job->image);
		free(job);
	}
	if (b->removing)
		docker_call_cancel(b->removing);
	while (b->doomed) {
		struct image_doomed *d = b->doomed;
		b->doomed = d->next;
		free(d);
	}
	while (b->known) {
		struct image_known *k = b->known;
		b->known = k->next;
		free(k->name);
		json_object_put(k->cmd);
		free(k);
	}
	if (b->ctx_dir[0]) {
		char path[128];
		snprintf(path, sizeof(path), "%s/Dockerfile", b->ctx_dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/agent", b->ctx_dir);
		unlink(path);
		rmdir(b->ctx_dir);
	}
	free(b);
}

static void prune_listed(struct json_object *list, const char *err, void *arg)
{
	struct image_builds *b = arg;
	b->removing = NULL;
	if (err) {
		log_warn("images: listing derived images failed: %s", err);
		return;
	}
	/* younger ones stay: another sandbard on the Docker host (another build
	 * of it) may have just made one and be about to create from it */
	int64_t newest = (clock_real_ms() - b->svc->cfg->image_prune_age_ms) / 1000;
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		struct json_object *img = json_object_array_get_idx(list, i), *labels, *v;
		const char *agent = NULL;
		if (json_object_object_get_ex(img, "Labels", &labels) &&
		    json_object_object_get_ex(labels, "sandbar.agent", &v))
			agent = json_object_get_string(v);
		int64_t created =
			json_object_object_get_ex(img, "Created", &v) ? json_object_get_int64(v) : 0;
		if (agent && strcmp(agent, b->agent_hash) != 0 && created <= newest &&
		    json_object_object_get_ex(img, "Id", &v))
			doom(b, json_object_get_string(v));
	}
	doomed_next(b);
}

void image_builds_prune(struct image_builds *b)
{
	if (b->removing)
		return;
	b->removing = docker_image_list(b->svc->docker, "sandbar.agent", prune_listed, b);
}

/* Queued behind whatever is being removed; Docker refuses (and the image
 * stays until a later start prunes it) while a container still uses it. */
static void doom(struct image_builds *b, const char *name)
{
	struct image_doomed *d = calloc(1, sizeof(*d)), **pp = &b->doomed;
	CHECK(d != NULL);
	snprintf(d->name, sizeof(d->name), "%s", name);
	while (*pp)
		pp = &(*pp)->next;
	*pp = d;
}

static void doomed_removed(const char *err, void *arg)
{
	struct image_builds *b = arg;
	struct image_doomed *d = b->doomed;
	b->removing = NULL;
	if (err)
		log_info("images: %s stays: %s", d->name, err);
	else
		log_info("images: removed %s (an older agent or base image)", d->name);
	b->doomed = d->next;
	free(d);
	doomed_next(b);
}

static void doomed_next(struct image_builds *b)
{
	if (!b->removing && b->doomed)
		b->removing = docker_image_remove(b->svc->docker, b->doomed->name, doomed_removed, b);
}

static void job_set_state(struct image_job *job, enum job_state next)
{
	static const unsigned legal[JOB_STATE_MAX] = {
		[JOB_INSPECT] = 1u << JOB_BUILD | 1u << JOB_DERIVED | 1u << JOB_DONE,
		[JOB_BUILD] = 1u << JOB_INSPECT | 1u << JOB_DONE,
		[JOB_DERIVED] = 1u << JOB_BUILD_DERIVED | 1u << JOB_DONE,
		[JOB_BUILD_DERIVED] = 1u << JOB_DONE,
	};
	CHECK(next < JOB_STATE_MAX && (legal[job->state] & (1u << next)));
	job->state = next;
}

static struct image_known *known_for(struct image_builds *b, const char *name)
{
	struct image_known *k;
	for (k = b->known; k; k = k->next)
		if (strcmp(k->name, name) == 0)
			return k;
	k = calloc(1, sizeof(*k));
	CHECK(k != NULL);
	k->name = strdup(name);
	CHECK(k->name != NULL);
	k->next = b->known;
	b->known = k;
	return k;
}

struct image_wait *image_ensure(struct sandbox_service *svc, const struct template *t, const char *image,
				image_ready_fn cb, void *arg)
{
	struct image_builds *b = svc->builds;
	struct image_job *job;
	if (!image)
		image = template_image(t);
	for (job = b->jobs; job; job = job->next) {
		if (strcmp(job->image, image) == 0)
			break;
	}
	if (!job) {
		/* even when known, the image is looked at again (one quick
		 * call): a rebuilt or re-imported image has a new id */
		job = calloc(1, sizeof(*job));
		CHECK(job != NULL);
		job->owner = b;
		job->tpl = t;
		job->image = strdup(image);
		CHECK(job->image != NULL);
		job->known = known_for(b, image);
		job->next = b->jobs;
		b->jobs = job;
		job->dcall = docker_image_inspect(svc->docker, image, job_inspected, job);
	}
	struct image_wait *w = calloc(1, sizeof(*w));
	CHECK(w != NULL);
	w->job = job;
	w->cb = cb;
	w->arg = arg;
	w->next = job->waiters;
	job->waiters = w;
	return w;
}

void image_wait_cancel(struct image_wait *w)
{
	/* the job goes on for the others (and caches the image for the next create) */
	struct image_wait **pp = &w->job->waiters;
	while (*pp && *pp != w)
		pp = &(*pp)->next;
	if (*pp)
		*pp = w->next;
	free(w);
}

static void job_inspected(struct json_object *info, bool missing, const char *err, void *arg)
{
	struct image_job *job = arg;
	job->dcall = NULL;
	const struct template *t = job->tpl;
	if (err) {
		job_finish(job, err);
		return;
	}
	if (missing) {
		if (!t->build_tag || job->built || strcmp(job->image, t->build_tag) != 0) {
			char msg[512];
			snprintf(msg, sizeof(msg),
				 "image %s is not present on the Docker host (no registry is used; "
				 "build or import it first)",
				 job->image);
			job_finish(job, msg);
			return;
		}
		job_set_state(job, JOB_BUILD);
		log_info("template %s: building image %s", t->name, t->build_tag);
		struct json_object *labels = json_object_new_object();
		json_object_object_add(labels, "sandbar.managed", json_object_new_string("true"));
		json_object_object_add(labels, "sandbar.template", json_object_new_string(t->name));
		struct docker_build_opts opts = {
			.context_dir = t->build_context,
			.dockerfile = t->build_dockerfile,
			.tag = t->build_tag,
			.buildargs = t->build_args ? json_object_get(t->build_args) : NULL,
			.target = t->build_target,
			.labels = labels,
		};
		job->dcall = docker_image_build(job->owner->svc->docker, &opts, job_built, job);
		return;
	}
	struct image_known *k = job->known;
	struct json_object *v, *config;
	const char *id = json_object_object_get_ex(info, "Id", &v) ? json_object_get_string(v) : "";
	if (strcmp(k->id, id) != 0) {
		/* new, or rebuilt: its command and the derived image follow its
		 * id; the one derived from the old id goes when nothing uses it */
		if (k->id[0] && k->built) {
			doom(job->owner, k->derived);
			doomed_next(job->owner);
		}
		snprintf(k->id, sizeof(k->id), "%s", id);
		k->built = false;
		json_object_put(k->cmd);
		k->cmd = json_object_new_array();
		k->user[0] = '\0';
		if (json_object_object_get_ex(info, "Config", &config)) {
			if (json_object_object_get_ex(config, "User", &v) &&
			    json_object_is_type(v, json_type_string))
				snprintf(k->user, sizeof(k->user), "%s", json_object_get_string(v));
			const char *keys[] = { "Entrypoint", "Cmd" };
			for (size_t i = 0; i < ARRAY_LEN(keys); i++) {
				if (!json_object_object_get_ex(config, keys[i], &v) ||
				    !json_object_is_type(v, json_type_array))
					continue;
				for (size_t n = 0; n < json_object_array_length(v); n++)
					json_object_array_add(
						k->cmd, json_object_get(json_object_array_get_idx(v, n)));
			}
		}
		unsigned char d[32];
		char hex[65];
		struct sha256 s;
		sha256_init(&s);
		sha256_update(&s, k->id, strlen(k->id));
		sha256_update(&s, "\n", 1);
		sha256_update(&s, job->owner->agent_hash, 64);
		sha256_final(&s, d);
		sha256_hex(d, hex);
		snprintf(k->derived, sizeof(k->derived), DERIVED_REPO ":%.24s", hex);
	}
	if (k->built) {
		job_set_state(job, JOB_DONE);
		job_finish(job, NULL);
		return;
	}
	job_set_state(job, JOB_DERIVED);
	job->dcall = docker_image_exists(job->owner->svc->docker, k->derived, job_derived_exists, job);
}

static void job_built(const char *err, const char *log, void *arg)
{
	struct image_job *job = arg;
	job->dcall = NULL;
	if (err) {
		log_warn("template %s: build failed: %s\n%s", job->tpl->name, err, log ? log : "");
		char msg[512];
		snprintf(msg, sizeof(msg), "building %s failed: %s", job->tpl->build_tag, err);
		job_finish(job, msg);
		return;
	}
	log_info("template %s: built %s", job->tpl->name, job->tpl->build_tag);
	job->built = true;
	job_set_state(job, JOB_INSPECT);
	job->dcall = docker_image_inspect(job->owner->svc->docker, job->image, job_inspected, job);
}

static void job_derived_exists(bool exists, const char *err, void *arg)
{
	struct image_job *job = arg;
	job->dcall = NULL;
	struct image_builds *b = job->owner;
	if (err) {
		job_finish(job, err);
		return;
	}
	if (exists) {
		job->known->built = true;
		job_set_state(job, JOB_DONE);
		job_finish(job, NULL);
		return;
	}
	if (!b->ctx_dir[0]) {
		job_finish(job, "the agent's build context could not be written at start-up");
		return;
	}
	job_set_state(job, JOB_BUILD_DERIVED);
	log_info("image %s: baking the agent in (%s)", job->image, job->known->derived);
	struct json_object *args = json_object_new_object();
	json_object_object_add(args, "BASE", json_object_new_string(job->known->id));
	struct json_object *labels = json_object_new_object();
	json_object_object_add(labels, "sandbar.managed", json_object_new_string("true"));
	json_object_object_add(labels, "sandbar.agent", json_object_new_string(b->agent_hash));
	json_object_object_add(labels, "sandbar.base", json_object_new_string(job->known->id));
	struct docker_build_opts opts = {
		.context_dir = b->ctx_dir,
		.tag = job->known->derived,
		.buildargs = args,
		.labels = labels,
	};
	job->dcall = docker_image_build(b->svc->docker, &opts, job_derived_built, job);
}

static void job_derived_built(const char *err, const char *log, void *arg)
{
	struct image_job *job = arg;
	job->dcall = NULL;
	if (err) {
		log_warn("image %s: baking the agent in failed: %s\n%s", job->image, err, log ? log : "");
		char msg[512];
		snprintf(msg, sizeof(msg), "baking the agent into %s failed: %s", job->image, err);
		job_finish(job, msg);
		return;
	}
	job->known->built = true;
	job_set_state(job, JOB_DONE);
	job_finish(job, NULL);
}

static void job_finish(struct image_job *job, const char *err)
{
	struct image_job **pp = &job->owner->jobs;
	while (*pp != job)
		pp = &(*pp)->next;
	*pp = job->next;
	/* waiters may start new jobs from their callbacks: the list is detached first */
	struct image_wait *w = job->waiters;
	struct image_known *k = job->known;
	free(job->image);
	free(job);
	struct run_image img = { .tag = k->derived, .cmd = k->cmd, .user = k->user };
	while (w) {
		struct image_wait *next = w->next;
		w->cb(err, err ? NULL : &img, w->arg);
		free(w);
		w = next;
	}
}
