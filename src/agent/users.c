/* /etc/passwd and /etc/group, parsed by hand (name:x:uid:gid:gecos:home:shell
 * and name:x:gid:member,member). */
#include "users.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int split(char *line, char **f, int max);
static int parse_id(const char *s, unsigned long *out);
static void add_group(struct user_info *u, gid_t g);
static void read_groups(const char *root, const char *name, struct user_info *u);

static int split(char *line, char **f, int max)
{
	int n = 0;
	line[strcspn(line, "\n")] = '\0';
	f[n++] = line;
	for (char *p = line; *p && n < max; p++) {
		if (*p == ':') {
			*p = '\0';
			f[n++] = p + 1;
		}
	}
	return n;
}

static int parse_id(const char *s, unsigned long *out)
{
	char *end;
	if (!*s || *s < '0' || *s > '9')
		return -1;
	unsigned long v = strtoul(s, &end, 10);
	if (*end || v > 0xfffffffeul)
		return -1;
	*out = v;
	return 0;
}

static void add_group(struct user_info *u, gid_t g)
{
	for (size_t i = 0; i < u->ngroups; i++) {
		if (u->groups[i] == g)
			return;
	}
	if (u->ngroups < USERS_GROUPS_MAX)
		u->groups[u->ngroups++] = g;
}

static void read_groups(const char *root, const char *name, struct user_info *u)
{
	char path[512], line[4096];
	snprintf(path, sizeof(path), "%s/etc/group", root ? root : "");
	FILE *fp = fopen(path, "re");
	if (!fp)
		return;
	while (fgets(line, sizeof(line), fp)) {
		char *f[4];
		unsigned long gid;
		if (split(line, f, 4) < 4 || parse_id(f[2], &gid) != 0)
			continue;
		for (char *m = strtok(f[3], ","); m; m = strtok(NULL, ",")) {
			if (strcmp(m, name) == 0)
				add_group(u, (gid_t)gid);
		}
	}
	fclose(fp);
}

int users_resolve(const char *root, const char *name, struct user_info *out)
{
	char path[512], line[4096];
	unsigned long want = 0;
	bool numeric = parse_id(name, &want) == 0;
	memset(out, 0, sizeof(*out));
	snprintf(path, sizeof(path), "%s/etc/passwd", root ? root : "");
	FILE *fp = fopen(path, "re");
	bool found = false;
	char pwname[256] = "";
	while (fp && fgets(line, sizeof(line), fp)) {
		char *f[7];
		unsigned long uid, gid;
		if (split(line, f, 7) < 7 || parse_id(f[2], &uid) != 0 || parse_id(f[3], &gid) != 0)
			continue;
		if (numeric ? uid != want : strcmp(f[0], name) != 0)
			continue;
		out->uid = (uid_t)uid;
		out->gid = (gid_t)gid;
		snprintf(out->home, sizeof(out->home), "%s", f[5][0] ? f[5] : "/");
		snprintf(pwname, sizeof(pwname), "%s", f[0]);
		found = true;
		break;
	}
	if (fp)
		fclose(fp);
	if (!found) {
		if (!numeric)
			return -1;
		out->uid = (uid_t)want;
		out->gid = (gid_t)want;
		snprintf(out->home, sizeof(out->home), "/");
	}
	add_group(out, out->gid);
	if (found)
		read_groups(root, pwname, out);
	return 0;
}
