/* A move across file systems, as mv does it: the tree copied beside the
 * destination (modes, times, symlinks; owners when root), renamed into place,
 * then the source removed. Runs in a job (a child process), never the loop. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs_internal.h"

#define COPY_BUF (256u * 1024)

static int copy_entry(const char *from, const char *to, bool owner, char *buf);
static int copy_file(const char *from, const char *to, char *buf);
static int copy_dir(const char *from, const char *to, bool owner, char *buf);
static int copy_meta(const char *to, const struct stat *st, bool owner);
static int place(const char *tmp, const char *to, bool overwrite);

static int copy_file(const char *from, const char *to, char *buf)
{
	int in = open(from, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0)
		return -1;
	int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0) {
		int e = errno;
		close(in);
		errno = e;
		return -1;
	}
	int rc = 0;
	for (;;) {
		ssize_t n = read(in, buf, COPY_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -1 : 0;
			break;
		}
		if (fs_write_all(out, buf, (size_t)n) != 0) {
			rc = -1;
			break;
		}
	}
	int e = errno;
	close(in);
	if (close(out) != 0 && rc == 0)
		return -1;
	errno = e;
	return rc;
}

static int copy_dir(const char *from, const char *to, bool owner, char *buf)
{
	if (mkdir(to, 0700) != 0)
		return -1;
	DIR *d = opendir(from);
	if (!d)
		return -1;
	int rc = 0;
	struct dirent *de;
	char *sf = NULL, *st = NULL;
	errno = 0;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (asprintf(&sf, "%s/%s", from, de->d_name) < 0 ||
		    asprintf(&st, "%s/%s", to, de->d_name) < 0) {
			rc = -1;
			errno = ENOMEM;
		} else {
			rc = copy_entry(sf, st, owner, buf);
		}
		free(sf);
		free(st);
		sf = st = NULL;
		errno = rc ? errno : 0;
	}
	if (rc == 0 && errno != 0)
		rc = -1; /* readdir failed */
	int e = errno;
	closedir(d);
	errno = e;
	return rc;
}

/* Mode, owner (root only: as a user, what is made is the user's), times. */
static int copy_meta(const char *to, const struct stat *st, bool owner)
{
	bool link = S_ISLNK(st->st_mode);
	if (owner && fchownat(AT_FDCWD, to, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) != 0)
		return -1;
	if (!link && chmod(to, st->st_mode & 07777) != 0)
		return -1;
	struct timespec times[2] = { st->st_atim, st->st_mtim };
	return utimensat(AT_FDCWD, to, times, AT_SYMLINK_NOFOLLOW);
}

static int copy_entry(const char *from, const char *to, bool owner, char *buf)
{
	struct stat st;
	if (lstat(from, &st) != 0)
		return -1;
	int rc;
	if (S_ISREG(st.st_mode)) {
		rc = copy_file(from, to, buf);
	} else if (S_ISDIR(st.st_mode)) {
		rc = copy_dir(from, to, owner, buf);
	} else if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(from, target, sizeof(target) - 1);
		if (n < 0)
			return -1;
		target[n] = '\0';
		rc = symlink(target, to);
	} else {
		rc = mknod(to, st.st_mode, st.st_rdev); /* fifos, sockets; devices as root */
	}
	if (rc != 0)
		return -1;
	return copy_meta(to, &st, owner);
}

/* tmp over to, refusing an existing to unless overwrite: 0 or an errno. */
static int place(const char *tmp, const char *to, bool overwrite)
{
	if (!overwrite) {
		struct stat st;
		if (renameat2(AT_FDCWD, tmp, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
			return 0;
		if (errno != EINVAL)
			return errno;
		if (lstat(to, &st) == 0) /* a file system without RENAME_NOREPLACE */
			return EEXIST;
	}
	return rename(tmp, to) == 0 ? 0 : errno;
}

int fs_move_across(const char *from, const char *to, bool overwrite)
{
	char *buf = malloc(COPY_BUF), *tmp = NULL;
	if (!buf)
		return ENOMEM;
	const char *slash = strrchr(to, '/');
	int dlen = (int)(slash - to), rc = EEXIST;
	struct stat st;
	/* a free name beside the destination: the copy appears there whole */
	for (unsigned n = 0; n < 16 && rc == EEXIST; n++) {
		free(tmp);
		if (asprintf(&tmp, "%.*s/.sandbar-move-%d-%u.tmp", dlen, to, (int)getpid(), n) < 0) {
			tmp = NULL;
			rc = ENOMEM;
		} else if (lstat(tmp, &st) != 0) {
			rc = 0;
		}
	}
	if (rc == 0) {
		if (copy_entry(from, tmp, geteuid() == 0, buf) != 0)
			rc = errno;
		else
			rc = place(tmp, to, overwrite);
		if (rc != 0)
			fs_remove_tree(tmp); /* what the copy made */
		else
			rc = fs_remove_tree(from);
	}
	free(tmp);
	free(buf);
	return rc;
}
