/* The Docker Engine create body for a sandbox: template + server limits +
 * hardened defaults. Pure (no I/O), so the unit tests check it field by field. */
#ifndef SANDBAR_SANDBOX_CONTAINER_SPEC_H
#define SANDBAR_SANDBOX_CONTAINER_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include "sandbox/registry.h"

struct config;
struct json_object;
struct template;

/* Capabilities every sandbox keeps after dropping ALL (see README, "Security"). */
extern const char *const container_spec_caps[];

struct container_spec_input {
	const struct template *tpl;
	const struct config *cfg;
	const char *sandbox_id;
	const char *cluster;
	const char *image;
	const char *volume;
	struct json_object *env_vars; /* object of strings, may be NULL (borrowed) */
	/* the image's Entrypoint + Cmd (array of strings, borrowed, may be NULL):
	 * the agent, as init, starts it unless the template overrides the command */
	struct json_object *image_cmd;
	const char *image_user; /* the image's USER (may be NULL or ""): its command runs as it */
	/* 0 / NULL: the template's hostRequirements, else the server's default limits */
	uint64_t memory;
	double cpus;
	/* the ports to publish (the template's and extra ones); NULL: the template's */
	const int *ports;
	size_t nports;
	enum sandbox_network network; /* NONE publishes no port whatever ports says */
	const char *runtime;	      /* Docker's runtime (HostConfig.Runtime); NULL: Docker's default */
};

/* The memory (bytes) and CPUs the sandbox gets. */
uint64_t container_spec_memory(const struct container_spec_input *in);
double container_spec_cpus(const struct container_spec_input *in);
/* A new JSON object for POST /containers/create. */
struct json_object *container_spec_build(const struct container_spec_input *in);

#endif
