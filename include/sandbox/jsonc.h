/* JSON with comments and trailing commas (devcontainer.json as VS Code writes
 * it) into json-c objects. Strings are left intact: "//" inside a string is
 * not a comment. */
#ifndef SANDBAR_SANDBOX_JSONC_H
#define SANDBAR_SANDBOX_JSONC_H

#include <stddef.h>

struct json_object;

/* Returns a new object, or NULL with a reason (and line number) in err. */
struct json_object *jsonc_parse(const char *text, size_t len, char *err, size_t errcap);

#endif
