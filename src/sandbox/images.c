/* Template images: an `image` template must already be present (no registry
 * is assumed reachable); a `build` template is built once under its content
 * tag, however many creates wait for it at the same time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/log.h"
#include "docker/engine.h"
#include "internal.h"
#include "sandbox/template.h"

struct image_wait {
	struct image_job *job;
	image_ready_fn cb;
	void *arg;
	struct image_wait *next;
};

/* One image being checked or built, shared by every create that needs it. */
struct image_job {
	struct image_builds *owner;
	const struct template *tpl;
	struct docker_call *dcall;
	struct image_wait *waiters;
	struct image_job *next;
};

struct image_builds {
	struct sandbox_service *svc;
	struct image_job *jobs;
};

static void job_exists(bool exists, const char *err, void *arg);
static void job_built(const char *err, const char *log, void *arg);
static void job_finish(struct image_job *job, const char *err);

const char *template_image(const struct template *t)
{
	return t->image ? t->image : t->build_tag;
}

struct image_builds *image_builds_new(struct sandbox_service *svc)
{
	struct image_builds *b = calloc(1, sizeof(*b));
	CHECK(b != NULL);
	b->svc = svc;
	return b;
}

void image_builds_free(struct image_builds *b)
{
	if (!b)
		return;
	while (b->jobs) {
		struct image_job *job = b->jobs;
		if (job->dcall)
			docker_call_cancel(job->dcall);
		job->dcall = NULL;
		job_finish(job, "shutting down");
	}
	free(b);
}

struct image_wait *image_ensure(struct sandbox_service *svc, const struct template *t, image_ready_fn cb,
				void *arg)
{
	struct image_builds *b = svc->builds;
	struct image_job *job;
	for (job = b->jobs; job; job = job->next) {
		if (strcmp(template_image(job->tpl), template_image(t)) == 0)
			break;
	}
	if (!job) {
		job = calloc(1, sizeof(*job));
		CHECK(job != NULL);
		job->owner = b;
		job->tpl = t;
		job->next = b->jobs;
		b->jobs = job;
		job->dcall = docker_image_exists(svc->docker, template_image(t), job_exists, job);
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

static void job_exists(bool exists, const char *err, void *arg)
{
	struct image_job *job = arg;
	job->dcall = NULL;
	if (err) {
		job_finish(job, err);
		return;
	}
	if (exists) {
		job_finish(job, NULL);
		return;
	}
	const struct template *t = job->tpl;
	if (!t->build_tag) {
		char msg[512];
		snprintf(msg, sizeof(msg),
			 "image %s is not present on the Docker host (no registry is used; "
			 "build or import it first)",
			 t->image);
		job_finish(job, msg);
		return;
	}
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
	free(job);
	while (w) {
		struct image_wait *next = w->next;
		w->cb(err, w->arg);
		free(w);
		w = next;
	}
}
