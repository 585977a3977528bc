/* The command service's names and the spec's memory: the signals a client
 * may send, command statuses, and freeing a spec. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "commands/commands.h"
#include "core/strv.h"

void command_spec_free(struct command_spec *spec)
{
	strv_free(spec->argv);
	free(spec->shell);
	strv_free(spec->env);
	free(spec->command_json);
	free(spec->cwd);
	free(spec->user);
	free(spec->stdin_data);
	memset(spec, 0, sizeof(*spec));
}

/* ---- signals: the ones a client may send ---- */

static const struct {
	const char *name;
	int signo;
} signals[] = {
	{ "HUP", 1 },	{ "INT", 2 },	{ "QUIT", 3 },	{ "KILL", 9 },	{ "USR1", 10 },
	{ "USR2", 12 }, { "TERM", 15 }, { "CONT", 18 }, { "STOP", 19 },
};

int command_signal_parse(const char *s)
{
	if (!s || !*s)
		return -1;
	if (isdigit((unsigned char)s[0])) {
		char *end;
		errno = 0;
		long n = strtol(s, &end, 10);
		if (errno || *end || n < 1 || n > 31 || (s[0] == '0'))
			return -1;
		return (int)n;
	}
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < ARRAY_LEN(signals); i++)
		if (strcasecmp(s, signals[i].name) == 0)
			return signals[i].signo;
	return -1;
}

const char *command_status_name(enum command_status s)
{
	static const char *const names[COMMAND_STATUS_MAX] = { "running", "exited", "failed", "lost" };
	CHECK(s < COMMAND_STATUS_MAX);
	return names[s];
}

enum command_status command_status_parse(const char *name)
{
	for (int s = 0; s < COMMAND_STATUS_MAX; s++)
		if (strcmp(name, command_status_name((enum command_status)s)) == 0)
			return (enum command_status)s;
	return COMMAND_LOST;
}
