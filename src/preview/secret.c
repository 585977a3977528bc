/* The preview secret: configured, or read from (first made in) the data
 * folder. Runs once at start-up, blocking. */
#include "preview/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sys/random.h>
#include <sys/stat.h>

#include "core/sha256.h"

static int read_secret(const char *path, struct preview_secret *out, char *err, size_t errcap);
static int make_secret(const char *path, char *err, size_t errcap);

int preview_secret_load(struct preview_secret *out, const char *configured, const char *data_dir, char *err,
			size_t errcap)
{
	if (configured && *configured) {
		struct sha256 s;
		sha256_init(&s);
		sha256_update(&s, configured, strlen(configured));
		sha256_final(&s, out->key);
		return 0;
	}
	if (mkdir(data_dir, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errcap, "SANDBAR_DATA_DIR %s: %s", data_dir, strerror(errno));
		return -1;
	}
	char path[4096];
	if (snprintf(path, sizeof(path), "%s/%s", data_dir, PREVIEW_SECRET_FILE) >= (int)sizeof(path)) {
		snprintf(err, errcap, "SANDBAR_DATA_DIR is too long");
		return -1;
	}
	if (access(path, F_OK) != 0 && make_secret(path, err, errcap) != 0)
		return -1;
	return read_secret(path, out, err, errcap);
}

static int read_secret(const char *path, struct preview_secret *out, char *err, size_t errcap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		snprintf(err, errcap, "%s: %s", path, strerror(errno));
		return -1;
	}
	unsigned char extra;
	ssize_t n = read(fd, out->key, sizeof(out->key));
	ssize_t more = n == (ssize_t)sizeof(out->key) ? read(fd, &extra, 1) : 0;
	close(fd);
	if (n != (ssize_t)sizeof(out->key) || more != 0) {
		snprintf(err, errcap, "%s: not %zu bytes (remove it to make a new secret)", path,
			 sizeof(out->key));
		return -1;
	}
	return 0;
}

/* Written under a name of its own, then linked: another instance making
 * one at the same time loses the link and reads the winner's. */
static int make_secret(const char *path, char *err, size_t errcap)
{
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	unsigned char key[32];
	if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key)) {
		snprintf(err, errcap, "getrandom: %s", strerror(errno));
		return -1;
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		snprintf(err, errcap, "%s: %s", tmp, strerror(errno));
		return -1;
	}
	bool ok = write(fd, key, sizeof(key)) == (ssize_t)sizeof(key) && fsync(fd) == 0;
	int saved = errno;
	close(fd);
	explicit_bzero(key, sizeof(key));
	if (ok && link(tmp, path) != 0 && errno != EEXIST) {
		saved = errno;
		ok = false;
	}
	unlink(tmp);
	if (!ok) {
		snprintf(err, errcap, "%s: %s", path, strerror(saved));
		return -1;
	}
	return 0;
}
