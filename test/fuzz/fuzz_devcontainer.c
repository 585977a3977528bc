/* Fuzzes devcontainer.json parsing: arbitrary bytes through template_parse
 * under a strict and a permissive policy, against a folder with a Dockerfile
 * (and a subfolder with another and a symlink) so build templates get as far
 * as hashing their context. */
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "sandbox/template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void remove_dir(void)
{
	nftw(dir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *rel, const char *text)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	FILE *f = fopen(path, "w");
	if (!f)
		abort();
	fputs(text, f);
	fclose(f);
}

static void make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/sandbar-fuzz-tpl-XXXXXX");
	if (!mkdtemp(dir))
		abort();
	atexit(remove_dir);
	char path[128];
	snprintf(path, sizeof(path), "%s/sub", dir);
	if (mkdir(path, 0700) != 0)
		abort();
	snprintf(path, sizeof(path), "%s/sub/link", dir);
	if (symlink("../Dockerfile", path) != 0)
		abort();
	write_file("Dockerfile", "FROM sandbar/base:latest\n");
	write_file("sub/Dockerfile", "FROM sandbar/base:latest\nCOPY . /src\n");
	log_set_level(LOG_LEVEL_ERROR);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct template_policy policies[] = { { false, false, false, { false } },
							   { true, true, true, { true, true } } };
	char err[512];
	if (!dir[0])
		make_dir();
	for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
		err[0] = '\0';
		struct template *t = template_parse("Fuzz_t.", dir, (const char *)data, size, &policies[i],
						    err, sizeof(err));
		if (t) {
			/* what the rest of the server relies on */
			if ((t->image == NULL) == (t->build_dockerfile == NULL) || !t->workspace_folder ||
			    t->workspace_folder[0] != '/' || (t->build_dockerfile && !t->build_tag))
				abort();
			for (size_t p = 0; p < t->nports; p++)
				if (t->ports[p] < 1 || t->ports[p] > 65535)
					abort();
			for (size_t m = 0; m < t->nmounts; m++)
				if (!t->mounts[m].target ||
				    (t->mounts[m].type == MOUNT_BIND && !policies[i].allow_bind_mounts))
					abort();
			if ((t->privileged && !policies[i].allow_privileged) ||
			    (t->cap_add && !policies[i].allow_cap_add))
				abort();
			template_free(t);
		} else if (strlen(err) == 0) {
			abort(); /* every refusal says why */
		}
	}
	return 0;
}
