/* Services (include/agent/protocol.h): SPAWNs with a SERVICE kept as files in
 * the services folder and spawned again at every start of the agent, and the
 * readiness probes of commands that serve a PORT (non-blocking connects
 * driven by the poll loop, never a wait). */
#ifndef SANDBAR_AGENT_SERVICE_H
#define SANDBAR_AGENT_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent.h"
#include "agent/protocol.h"
#include "request.h"

#define SERVICES_DIR		 "/.sandbar/services" /* env SANDBAR_AGENT_SERVICES overrides */
#define SERVICE_PROBE_MS	 250		      /* between two connects while a port is not ready */
#define SERVICE_PROBE_FIRST_MS	 5    /* the first wait, doubled at each try up to SERVICE_PROBE_MS */
#define SERVICE_PROBE_REFRESH	 16   /* failed probes before the address is looked up again */
#define SERVICE_PROBE_TIMEOUT_MS 1000 /* a connect in flight longer than this failed */

struct cmd;

/* The folder services are kept in: SANDBAR_AGENT_SERVICES, else SERVICES_DIR;
 * NULL when the variable is set empty (services refused with ENOTSUP). */
const char *services_dir(void);

/* A SPAWN with SERVICE (f as it came): kept before the command starts, so
 * that a service never runs unkept. 0, or -1 with *code (errno: EDQUOT past
 * AGENT_SERVICES_MAX, EEXIST, ENOTSUP without a folder, an I/O error) and a
 * message. The write is a small local file: done inline, like the file
 * operations. */
int service_keep(struct agent *a, const struct agent_frame *f, const struct agent_req *r, int *code,
		 char *msg, size_t msglen);
/* The spawn of a kept SPAWN failed: it is not kept after all. */
void service_unkeep(struct agent *a, const struct agent_req *r);
/* The agent's start: every kept service spawned again, oldest first (before
 * the poll loop runs). How many started; the others are logged and stay
 * kept for the next start. */
size_t services_start(struct agent *a);
/* UNSERVICE: kept no more (*kept: it was), its running command an ordinary
 * one from now on, SIGTERM to its group (SIGKILL after its grace) and *pid
 * its pid (0: none ran). */
void service_forget(struct agent *a, const uint8_t *id, uint32_t id_len, bool *kept, pid_t *pid);

/* Probes due at a->now started, slow ones given up; the next deadline (0: none). */
int64_t service_timers(struct agent *a);
/* Poll events on c->probe_fd: the connect's outcome. */
void service_probe_io(struct agent *a, struct cmd *c, short revents);
/* A probe is over (or the command ended): its socket closed, not ready. */
void service_probe_stop(struct cmd *c);

#endif
