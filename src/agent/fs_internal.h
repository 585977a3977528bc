/* What the agent's file modules share: acting as the requesting user, the
 * answers, temporary files (fs.c), the streams' entry points (fs_stream.c)
 * and the copy behind a move across file systems (fs_copy.c). */
#ifndef SANDBAR_AGENT_FS_INTERNAL_H
#define SANDBAR_AGENT_FS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "request.h"
#include "users.h"

struct conn;

/* Who the agent acts as during one request. */
struct ident {
	bool switched;
	gid_t saved[USERS_GROUPS_MAX];
	int nsaved;
};

/* The requesting user; an unknown one is answered with ERROR ESRCH and -1. */
int fs_ident_resolve(struct conn *c, const struct agent_req *r, struct user_info *u, bool *as_user);
int fs_become(struct ident *id, const struct user_info *u, bool as_user);
void fs_restore(struct ident *id);
char *fs_req_str(const uint8_t *p, uint32_t len);
size_t fs_out_pending(const struct conn *c);
void fs_msg_tag(struct conn *c, const uint8_t *tag, uint32_t len);
void fs_send_error(struct conn *c, const uint8_t *tag, uint32_t tag_len, int code, const char *msg);
int fs_parent_dirs(const char *path);
int fs_tmp_open(const char *dst, char **tmp_out);
int fs_write_all(int fd, const void *p, size_t n);
/* rm -r without following links or crossing mounts: 0 or an errno. */
int fs_remove_tree(const char *path);
/* fs_copy.c, in a job: mv across file systems, 0 or an errno. */
int fs_move_across(const char *from, const char *to, bool overwrite);

/* FS_READ, FS_WRITE and the requests about an open stream. */
void fs_stream_request(struct conn *c, const struct agent_req *r);
void fs_streams_drop_all(struct conn *c);

#endif
