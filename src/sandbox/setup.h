/* Setup commands (setup.c): private to src/sandbox, where create and start
 * run them. */
#ifndef SANDBAR_SANDBOX_SETUP_H
#define SANDBAR_SANDBOX_SETUP_H

struct agent_channel;
struct json_object;
struct setup_run;

#define SETUP_OUTPUT_CAP (64 * 1024) /* output kept of a sandbox's setup commands */

enum setup_when { SETUP_CREATE, SETUP_START };

/* [{label, argv, user}] of a devcontainer.json: at create the workspace's
 * ownership, postCreateCommand and postStartCommand; at a start,
 * postStartCommand. Named commands (an object) run in document order. */
struct json_object *setup_commands(struct json_object *config, const char *workspace, enum setup_when when);
/* The container's Env (a JSON array of "K=V"), then remoteEnv, then env_vars on top. */
char **setup_env(struct json_object *container_env, struct json_object *config, struct json_object *env_vars);

/* failure: NULL when every command exited 0, else which one and how. */
typedef void (*setup_done_fn)(const char *failure, void *arg);
/* Runs cmds (taken) with env (taken) in cwd; done(failure) once, from the
 * loop (free the run from it or later). NULL, and no callback, when cmds is
 * empty. */
struct setup_run *setup_run_start(struct agent_channel *ch, struct json_object *cmds, char **env,
				  const char *cwd, setup_done_fn done, void *arg);
/* Stops the command that runs: no callback follows; the output stays. */
void setup_run_stop(struct setup_run *r);
/* The output so far as valid UTF-8 (malloc'd). */
char *setup_run_output(const struct setup_run *r);
/* Stops what runs (no callback follows) and frees. */
void setup_run_free(struct setup_run *r);

#endif
