/* Fuzzes devcontainer.json parsing: arbitrary bytes through template_parse
 * under a strict and a permissive policy, against a folder with a Dockerfile
 * so build templates get as far as hashing their context. */
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

static void remove_dir(void)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/Dockerfile", dir);
	unlink(path);
	rmdir(dir);
}

static void make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/sandbar-fuzz-tpl-XXXXXX");
	if (!mkdtemp(dir))
		abort();
	char path[128];
	snprintf(path, sizeof(path), "%s/Dockerfile", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		abort();
	fputs("FROM sandbar/base:latest\n", f);
	fclose(f);
	atexit(remove_dir);
	log_set_level(LOG_LEVEL_ERROR);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct template_policy policies[] = { { false, false, false }, { true, true, true } };
	char err[512];
	if (!dir[0])
		make_dir();
	for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
		err[0] = '\0';
		struct template *t =
			template_parse("fuzz", dir, (const char *)data, size, &policies[i], err, sizeof(err));
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
