/* The agent's state, shared by its modules: the commands it owns and the
 * connections it serves, with the loop's cached clocks. */
#ifndef SANDBAR_AGENT_AGENT_H
#define SANDBAR_AGENT_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct cmd;
struct conn;
struct fs_job;
struct login_env;

struct agent {
	int64_t started_at;  /* wall ms */
	int64_t now;	     /* monotonic ms, cached once per loop pass */
	uint32_t next_id;    /* command ids count up from 1 */
	struct cmd *cmds;    /* in id order */
	size_t exited;	     /* EXITED commands in cmds ... */
	size_t exited_bytes; /* ... and the memory their output holds */
	struct conn *conns;
	struct fs_job *fs_jobs;	  /* removes and moves running in children (fs.c) */
	const char *services_dir; /* where services are kept (service.c); NULL: refused */
	size_t tcp_open;	  /* TCP streams not closed, on every connection (tcp.c) */
	struct login_env *logins; /* login environments, per user and HOME (login.c) */
	/* The program a login shell runs to print its environment NUL-separated
	 * (the agent's own `env0` mode): NULL, no login environment is kept. */
	const char *const *login_printer;
};

int64_t agent_mono_ms(void);
int64_t agent_wall_ms(void);

#endif
