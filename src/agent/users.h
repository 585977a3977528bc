/* Users of the sandbox, read from its own /etc/passwd and /etc/group: a
 * static binary must not go through NSS. */
#ifndef SANDBAR_AGENT_USERS_H
#define SANDBAR_AGENT_USERS_H

#include <stddef.h>
#include <sys/types.h>

#define USERS_GROUPS_MAX 64

struct user_info {
	uid_t uid;
	gid_t gid;
	gid_t groups[USERS_GROUPS_MAX]; /* supplementary, primary included */
	size_t ngroups;
	char home[512];
};

/* name is a user name or a numeric uid (which needs no passwd entry: then gid
 * = uid and home "/"). root names the files (NULL: "/"). 0 or -1. */
int users_resolve(const char *root, const char *name, struct user_info *out);

#endif
