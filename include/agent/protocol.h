/* The sandbar agent protocol: framed messages between sandbard and the agent
 * (PID 1 in every sandbox), carried over a Docker exec stream. Shared by both
 * sides; plain bytes in and out, no event library.
 *
 * A frame is a 12-byte header and a payload:
 *
 *   u32 len    payload bytes, big-endian, at most AGENT_FRAME_MAX
 *   u8  type   enum agent_msg_type
 *   u8  flags  AGENT_FLAG_*; unknown flags are ignored
 *   u16 zero   reserved, must be 0
 *   u32 id     the command a frame is about (0: none), big-endian
 *
 * The payload is a list of fields: u8 tag, u32 len (big-endian), len bytes.
 * Integers are 8-byte big-endian fields; strings are raw bytes without NUL.
 * A tag may repeat (ARGV, ENV keep their order). Unknown tags are skipped, so
 * either side can add fields without breaking the other; a new message type
 * needs a version bump in HELLO/WELCOME or a FEATURES bit in WELCOME (an old
 * agent closes the connection on a type it does not know).
 *
 * Conversation (C = sandbard, A = agent):
 *   C HELLO {VERSION}                 A WELCOME {VERSION, PID, STARTED_AT}
 *   C SPAWN {TAG, ARGV*, ENV*, CWD, USER, PTY_ROWS, PTY_COLS, STDIN_OPEN,
 *            TIMEOUT_MS, GRACE_MS, RING_BYTES, WINDOW, LOSSLESS}
 *                                     A STARTED id {TAG, PID, STARTED_AT}
 *                                     or SPAWN_FAILED {TAG, CODE, MESSAGE}
 *   WINDOW > 0 in SPAWN subscribes at offset 0 under TAG (see SUBSCRIBE).
 *   C SUBSCRIBE id {TAG, OFFSET, WINDOW, LOSSLESS}
 *                                     A OUTPUT id {TAG, STREAM, OFFSET, DATA}...
 *                                     A EXITED id {TAG, EXIT_CODE, SIGNAL,
 *                                       TIMED_OUT, STARTED_AT, ENDED_AT, OFFSET}
 *   A subscription is a cursor into the command's output ring. The agent sends
 *   OUTPUT from the cursor while fewer than WINDOW bytes are unacknowledged;
 *   C sends ACK {TAG, OFFSET} as it consumes. Once the cursor has reached the
 *   end of the output of an exited command, the agent sends EXITED (always
 *   after the last OUTPUT) and drops the subscription. A cursor that fell out
 *   of the ring gets OUTPUT with AGENT_FLAG_GAP, no DATA, and OFFSET = the
 *   oldest byte still kept: the bytes in between are lost.
 *   LOSSLESS 1 (in SPAWN with a WINDOW, or in SUBSCRIBE) asks for every byte
 *   instead: while the ring holds no room beyond this subscription's
 *   unacknowledged bytes, the agent stops reading the command's output (its
 *   writes block, as on any full pipe) and reads on when it ACKs. The hold
 *   goes with the subscription (UNSUBSCRIBE, EXITED, connection closed); the
 *   exit status and TIMEOUT_MS are not held up, EXITED still follows the last
 *   byte. Default 0: the ring keeps the newest output, a late reader gets a
 *   GAP. An agent that predates LOSSLESS skips it (ring semantics).
 *   C ACK {TAG, OFFSET}; C UNSUBSCRIBE {TAG}
 *   QUIET 1 (in an ACK, or a SUBSCRIBE after a new stream) says the reader
 *   wants no more output, only the exit: the agent sends no OUTPUT for the
 *   subscription from then on (its cursor follows the end of the ring), drops
 *   its LOSSLESS hold, and sends EXITED once the command has exited, with the
 *   offset its output reached. sandbard sends it when nobody listens to a
 *   command any more (a detached command after its 201, an exec whose client
 *   left), so that output nobody reads never crosses the Docker stream. An
 *   agent that predates QUIET skips it: the ACK (OFFSET past the cursor)
 *   acknowledges what was sent, and output goes on flowing, acknowledged as it
 *   comes.
 *   C STDIN id {DATA}; C STDIN_CLOSE id; C SIGNAL id {SIGNO} (to the process
 *   group); C RESIZE id {PTY_ROWS, PTY_COLS}; C FORGET id (drop an exited
 *   command and its ring)
 *   C LIST {TAG}                      A STATUS id {TAG, PID, STATE, EXIT_CODE,
 *                                       SIGNAL, TIMED_OUT, STARTED_AT, ENDED_AT,
 *                                       OFFSET}... then LIST_END {TAG}
 *   A ERROR id {TAG, CODE, MESSAGE} answers a request it cannot act on
 *   (unknown command, bad fields); C PING {TAG} / A PONG {TAG}.
 *
 * Shell strings: C SPAWN {..., ARGV*, SHELL, LOGIN}. An agent that knows SHELL
 * runs the string as `/bin/sh -c SHELL` would, and ignores ARGV: a string of
 * only plain and single-quoted words (no expansion, operator, redirection,
 * assignment, reserved word or builtin) is exec'd directly as those words,
 * falling back to /bin/sh -c if that exec fails (so a missing program still
 * says "sh: 1: x: not found", exit 127), with PWD set as sh exports it;
 * anything else goes to /bin/sh -c. LOGIN 1 adds the user's login
 * environment: what `/bin/sh -l` (/etc/profile, /etc/profile.d/, ~/.profile)
 * exports when it starts from PATH (sandbard's default) and HOME alone,
 * worked out once per user and HOME (src/agent/login.c: at the agent's start
 * for `init --login USER`, else at the first such SPAWN, which runs /bin/sh
 * -lc SHELL itself meanwhile, and again when one of those files changed),
 * laid over ENV: a variable ENV lacks, or holds with
 * the value the profile started from, takes the profile's; any other value
 * in ENV wins. Until the agent knows it, or when it cannot (no /bin/sh, a
 * failing or slow profile), the SPAWN runs /bin/sh -lc SHELL. An agent that
 * knows SHELL only runs /bin/sh -lc SHELL; one that predates SHELL skips both
 * and runs ARGV, which sandbard sets to /bin/sh -c (or -lc) SHELL: no
 * FEATURES bit is needed, every agent gives a login shell's meaning.
 *
 * Services (an agent that says FEATURES & AGENT_FEATURE_SERVICES; an older one
 * would skip SERVICE and run a plain command, so sandbard sends it to no other):
 *   C SPAWN {..., SERVICE, PORT}        as any SPAWN; SERVICE is sandbard's
 *     record id ([A-Za-z0-9._-], starting with a letter or digit, at most
 *     AGENT_SERVICE_ID_MAX bytes). The agent keeps the frame as sent in its
 *     services folder (/.sandbar/services/<SERVICE>, root only) and, at every
 *     start of its init, after the image's own command, spawns each kept one
 *     again (the same fields; nobody subscribed; new command ids). At most
 *     AGENT_SERVICES_MAX are kept: SPAWN_FAILED CODE EDQUOT beyond, EEXIST for
 *     a SERVICE kept already. PORT (1..65535, a service or not): the agent
 *     tries a non-blocking TCP connect to its own address (the first non-
 *     loopback IPv4 one, else 127.0.0.1) on that port a few times a second
 *     while the command runs, until one succeeds: READY from then on.
 *   STATUS of such a command carries SERVICE, PORT and READY as well.
 *   C UNSERVICE {TAG, SERVICE}          A UNSERVICED {TAG, COUNT, PID}: the
 *     SERVICE is kept no more (COUNT 1 when it was), its running command, if
 *     any, is an ordinary one from now on and its group got SIGTERM (PID, 0
 *     when none ran). Idempotent: sandbard sends it again after a broken channel.
 *
 * Files (id 0; every request carries a TAG, answers echo it; USER as in SPAWN
 * is whom the agent acts for: setfsuid/setfsgid and the user's groups around
 * each syscall, so the kernel checks that user's permissions and what is
 * created belongs to them; no USER: root). CODE of an ERROR is an errno.
 *   C FS {TAG, OP, PATH, USER, ...}     one operation (enum agent_fs_op):
 *     STAT                            A FS_ENTRY {PATH, SIZE, MODE, MTIME, UID,
 *                                       GID, LINK} then FS_DONE (ENOENT: ERROR)
 *     LIST {DEPTH, LIMIT}             A FS_ENTRY {PATH, ...}* (pre-order, names
 *                                       sorted, symlinks not followed into) then
 *                                       FS_DONE {COUNT, TRUNCATED}
 *     MKDIR {MODE, FLAGS(PARENTS)}    A FS_DONE {CREATED}
 *     REMOVE {FLAGS(RECURSIVE)}       A FS_DONE (a recursive remove runs in a
 *                                       child process as USER)
 *     MOVE {PATH2, FLAGS(OVERWRITE, PARENTS), SIZE}   A FS_DONE
 *       SIZE: PATH (a regular file, a link not followed) is cut to SIZE bytes
 *       first. Across file systems (EXDEV) the tree is copied (modes, owners,
 *       times, links kept) in a child process as USER, then PATH removed; a
 *       failed copy removes what it made. An agent that does both announces
 *       AGENT_FEATURE_FS_MOVE_SIZE; sandbard sends SIZE only to such an agent.
 *     EDIT {DATA = old text, DATA2 = new text}  A FS_DONE {COUNT, SIZE}: the file
 *       is rewritten (temporary + rename, mode kept) only when COUNT is 1
 *   C FS_READ {TAG, PATH, USER, OFFSET, LENGTH, FLAGS(SUFFIX), WINDOW}
 *                                     A FS_ENTRY {SIZE, MODE, MTIME, OFFSET,
 *                                       LENGTH, DATA = the file's first <= 512
 *                                       bytes}, FS_DATA {OFFSET, DATA}...,
 *                                       FS_DONE {SIZE = bytes sent}
 *   A regular file only. OFFSET/LENGTH select a range (LENGTH absent: to the
 *   end; SUFFIX: the last LENGTH bytes), clamped to the size at open; an
 *   empty or unsatisfiable range gets LENGTH 0 and FS_DONE at once. Flow
 *   control as for output: at most WINDOW bytes past the last FS_ACK {TAG,
 *   OFFSET} (absolute file offsets). C FS_CLOSE {TAG} drops a stream.
 *   C FS_WRITE {TAG, PATH, USER, MODE, FLAGS(PARENTS)} then FS_DATA {TAG,
 *   DATA}... then FS_COMMIT {TAG}     A FS_DONE {SIZE, CREATED}
 *   The bytes go to a temporary in PATH's directory, renamed over PATH at
 *   COMMIT (atomic for readers; no fsync: sandboxes are disposable); FS_CLOSE
 *   (or a closed connection) removes it and leaves PATH untouched. An ERROR
 *   may come at any time; later FS_DATA for the stream is ignored.
 *   An agent that knows these says FEATURES & AGENT_FEATURE_FS in WELCOME;
 *   one that predates them closes the connection on the unknown type, so
 *   sandbard sends them only after such a WELCOME.
 *
 * TCP streams (an agent that says FEATURES & AGENT_FEATURE_TCP; an older one
 * closes the connection on the unknown type, so sandbard sends them to no
 * other). id 0; TAG names the stream (chosen by sandbard, unique on the
 * connection); both sides ignore frames for a TAG they no longer know.
 *   C TCP_OPEN {TAG, PORT, WINDOW}     the agent connects, non-blocking, to
 *                                     127.0.0.1:PORT in the sandbox's network
 *                                     namespace
 *                                     A TCP_OPENED {TAG, WINDOW}
 *                                     or TCP_CLOSE {TAG, CODE, MESSAGE}
 *                                       (ECONNREFUSED, EMFILE past
 *                                       AGENT_TCP_STREAMS_MAX open streams)
 *   either way: TCP_DATA {TAG, DATA}; TCP_ACK {TAG, OFFSET = the bytes of
 *   DATA this side has consumed so far}. Each side sends at most the WINDOW
 *   the other gave (TCP_OPEN's for the agent, TCP_OPENED's for sandbard)
 *   past the last ACK it got; an agent sent more closes the stream ENOBUFS.
 *   TCP_SHUT {TAG}: no more DATA from this side (its EOF; the agent passes
 *   sandbard's on as shutdown(SHUT_WR) once the bytes before it are written).
 *   A TCP_CLOSE {TAG} after both SHUTs ends the stream (CODE absent or 0);
 *   with CODE (an errno: ECONNRESET...) it was cut. The agent always ends a
 *   stream with one; sandbard's TCP_CLOSE aborts a stream (no answer). A
 *   stream dies with the connection that opened it.
 *
 * Offsets count every output byte of a command, stdout and stderr (or the PTY)
 * together, from 0. Times are Unix milliseconds. */
#ifndef SANDBAR_AGENT_PROTOCOL_H
#define SANDBAR_AGENT_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_PROTOCOL_VERSION 1
/* The PATH of a command whose environment names none, and the one sandbard
 * sends under everything else: the agent's login environment replaces a PATH
 * still equal to it with the profile's (src/agent/login.c). */
#define AGENT_DEFAULT_PATH    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define AGENT_FRAME_HEADER    12
#define AGENT_FRAME_MAX	      (1u << 20)    /* payload bytes */
#define AGENT_SERVICE_ID_MAX  64	    /* bytes of a SERVICE */
#define AGENT_SERVICES_MAX    32	    /* services one agent keeps (SPAWN_FAILED EDQUOT beyond) */
#define AGENT_TCP_STREAMS_MAX 128	    /* open TCP streams per agent, i.e. per sandbox (EMFILE beyond) */
#define AGENT_TCP_WINDOW      (256u * 1024) /* the default WINDOW of a TCP stream, each way */

enum agent_msg_type {
	AGENT_HELLO = 1,
	AGENT_WELCOME = 2,
	AGENT_SPAWN = 3,
	AGENT_STARTED = 4,
	AGENT_SPAWN_FAILED = 5,
	AGENT_OUTPUT = 6,
	AGENT_EXITED = 7,
	AGENT_STDIN = 8,
	AGENT_STDIN_CLOSE = 9,
	AGENT_SIGNAL = 10,
	AGENT_RESIZE = 11,
	AGENT_SUBSCRIBE = 12,
	AGENT_ACK = 13,
	AGENT_UNSUBSCRIBE = 14,
	AGENT_FORGET = 15,
	AGENT_LIST = 16,
	AGENT_STATUS = 17,
	AGENT_LIST_END = 18,
	AGENT_ERROR = 19,
	AGENT_PING = 20,
	AGENT_PONG = 21,
	AGENT_FS = 22,
	AGENT_FS_ENTRY = 23,
	AGENT_FS_DONE = 24,
	AGENT_FS_READ = 25,
	AGENT_FS_DATA = 26,
	AGENT_FS_ACK = 27,
	AGENT_FS_WRITE = 28,
	AGENT_FS_COMMIT = 29,
	AGENT_FS_CLOSE = 30,
	AGENT_UNSERVICE = 31,
	AGENT_UNSERVICED = 32,
	AGENT_TCP_OPEN = 33,
	AGENT_TCP_OPENED = 34,
	AGENT_TCP_DATA = 35,
	AGENT_TCP_ACK = 36,
	AGENT_TCP_SHUT = 37,
	AGENT_TCP_CLOSE = 38,
	AGENT_MSG_TYPE_MAX
};

enum agent_flag {
	AGENT_FLAG_GAP = 1, /* OUTPUT: the bytes before OFFSET are gone */
};

enum agent_tag {
	AGENT_T_VERSION = 1,
	AGENT_T_PID = 2,
	AGENT_T_STARTED_AT = 3,
	AGENT_T_TAG = 4,
	AGENT_T_ARGV = 5, /* repeated */
	AGENT_T_ENV = 6,  /* repeated "K=V" */
	AGENT_T_CWD = 7,
	AGENT_T_USER = 8,     /* name or numeric uid, resolved in the sandbox */
	AGENT_T_PTY_ROWS = 9, /* both set and > 0: run on a PTY */
	AGENT_T_PTY_COLS = 10,
	AGENT_T_STDIN_OPEN = 11, /* 1: stdin is a pipe fed by STDIN; 0: /dev/null */
	AGENT_T_TIMEOUT_MS = 12, /* 0: none */
	AGENT_T_GRACE_MS = 13,	 /* SIGTERM -> SIGKILL after a timeout */
	AGENT_T_RING_BYTES = 14, /* output kept per command */
	AGENT_T_WINDOW = 15,
	AGENT_T_CODE = 16, /* errno-like code (SPAWN_FAILED, ERROR) */
	AGENT_T_MESSAGE = 17,
	AGENT_T_STREAM = 18, /* enum agent_stream */
	AGENT_T_OFFSET = 19,
	AGENT_T_DATA = 20,
	AGENT_T_EXIT_CODE = 21, /* -1 when killed by a signal */
	AGENT_T_SIGNAL = 22,	/* terminating signal, 0 when exited */
	AGENT_T_TIMED_OUT = 23,
	AGENT_T_ENDED_AT = 24,
	AGENT_T_SIGNO = 25,
	AGENT_T_STATE = 26,    /* enum agent_cmd_state */
	AGENT_T_LOSSLESS = 27, /* 1: hold the producer rather than lose a byte */
	AGENT_T_FEATURES = 28, /* WELCOME: AGENT_FEATURE_* bits */
	AGENT_T_OP = 29,       /* enum agent_fs_op */
	AGENT_T_PATH = 30,     /* absolute */
	AGENT_T_PATH2 = 31,    /* MOVE's destination */
	AGENT_T_MODE = 32,     /* st_mode (type bits included in answers) */
	AGENT_T_FLAGS = 33,    /* AGENT_FS_F_* */
	AGENT_T_SIZE = 34,
	AGENT_T_MTIME = 35, /* Unix ms */
	AGENT_T_UID = 36,
	AGENT_T_GID = 37,
	AGENT_T_LINK = 38, /* 1: PATH itself is a symlink (the rest describes its target if any) */
	AGENT_T_DEPTH = 39,
	AGENT_T_LIMIT = 40,
	AGENT_T_LENGTH = 41,
	AGENT_T_COUNT = 42,
	AGENT_T_TRUNCATED = 43,
	AGENT_T_CREATED = 44,
	AGENT_T_DATA2 = 45,
	AGENT_T_SERVICE = 46, /* SPAWN, STATUS, UNSERVICE: a service's id */
	AGENT_T_PORT = 47,    /* SPAWN, STATUS: the TCP port the command serves; TCP_OPEN */
	AGENT_T_READY = 48,   /* STATUS: 1 once PORT accepted a connection */
	AGENT_T_SHELL = 49,   /* SPAWN: a shell string, run instead of ARGV (see SHELL above) */
	AGENT_T_LOGIN = 50,   /* SPAWN with SHELL: 1, in the user's login environment */
	AGENT_T_QUIET = 51,   /* ACK, SUBSCRIBE: 1, no more OUTPUT, only EXITED (see QUIET above) */
	AGENT_T_TAG_MAX
};

enum agent_feature {
	AGENT_FEATURE_FS = 1,
	AGENT_FEATURE_FS_MOVE_SIZE = 2, /* MOVE takes SIZE (and copies across file systems) */
	AGENT_FEATURE_SERVICES = 4,	/* SPAWN takes SERVICE and PORT; UNSERVICE */
	AGENT_FEATURE_TCP = 8,		/* TCP_* streams to ports inside the sandbox */
};
enum agent_fs_op {
	AGENT_FS_STAT = 1,
	AGENT_FS_LIST = 2,
	AGENT_FS_MKDIR = 3,
	AGENT_FS_REMOVE = 4,
	AGENT_FS_MOVE = 5,
	AGENT_FS_EDIT = 6,
	AGENT_FS_OP_MAX
};
enum agent_fs_flag {
	AGENT_FS_F_PARENTS = 1,	  /* create missing parent directories */
	AGENT_FS_F_RECURSIVE = 2, /* REMOVE a directory and what is in it */
	AGENT_FS_F_OVERWRITE = 4, /* MOVE over an existing destination */
	AGENT_FS_F_SUFFIX = 8,	  /* FS_READ: LENGTH counts from the end */
};

enum agent_stream { AGENT_STREAM_STDOUT = 1, AGENT_STREAM_STDERR = 2, AGENT_STREAM_PTY = 3 };
enum agent_cmd_state { AGENT_CMD_RUNNING = 1, AGENT_CMD_EXITED = 2 };

/* A parsed frame; payload points into the caller's buffer. */
struct agent_frame {
	uint8_t type;
	uint8_t flags;
	uint32_t id;
	const uint8_t *payload;
	uint32_t len;
};

/* One frame from the start of buf: bytes consumed (> 0), 0 when more bytes are
 * needed, -1 when the header is malformed (too long, reserved bits set). */
long agent_frame_parse(const uint8_t *buf, size_t len, struct agent_frame *out);

/* Fields of a payload, in order. */
struct agent_field {
	uint8_t tag;
	uint32_t len;
	const uint8_t *data;
};
struct agent_field_iter {
	const uint8_t *p, *end;
};
void agent_fields_begin(struct agent_field_iter *it, const struct agent_frame *f);
/* 1 with *out filled, 0 at the end, -1 when the payload is malformed. */
int agent_fields_next(struct agent_field_iter *it, struct agent_field *out);
/* The first field with tag: 0 when found, -1 when absent, malformed, or (u64)
 * not 8 bytes long. */
int agent_frame_u64(const struct agent_frame *f, uint8_t tag, uint64_t *out);
int agent_frame_bytes(const struct agent_frame *f, uint8_t tag, const uint8_t **data, uint32_t *len);
/* Whole payload well-formed (every field inside the payload)? */
bool agent_frame_valid(const struct agent_frame *f);

/* Building a frame in a growable buffer. */
struct agent_msg {
	uint8_t *buf;
	size_t len, cap;
	size_t frame_start; /* where the frame being built begins */
	bool overflow;	    /* its payload would exceed AGENT_FRAME_MAX */
};
void agent_msg_init(struct agent_msg *m);
void agent_msg_free(struct agent_msg *m);
/* Starts a new frame at the end of m (several frames may be built in a row). */
void agent_msg_begin(struct agent_msg *m, uint8_t type, uint8_t flags, uint32_t id);
void agent_msg_u64(struct agent_msg *m, uint8_t tag, uint64_t v);
void agent_msg_bytes(struct agent_msg *m, uint8_t tag, const void *data, size_t len);
void agent_msg_str(struct agent_msg *m, uint8_t tag, const char *s);
/* Writes the frame's length; -1 (and the frame dropped) when it overflowed. */
int agent_msg_end(struct agent_msg *m);

const char *agent_msg_type_name(uint8_t type);

#endif
