/* A sandbox's row (row.c): private to src/sandbox, where the registry and the
 * lifecycle operations read the table. */
#ifndef SANDBAR_SANDBOX_ROW_H
#define SANDBAR_SANDBOX_ROW_H

#include <libpq-fe.h>

#include "sandbox/registry.h"

/* The columns of a row (of `sandboxes s`), in the order sandbox_from_row reads. */
extern const char sandbox_row_columns[];

/* 0, or -1 for a row the core cannot read (an unknown status). */
int sandbox_from_row(struct sandbox *sb, PGresult *res, int row);
void sandbox_clear(struct sandbox *sb);

#endif
