/* A sandbox's row (row.c): private to src/sandbox, where the registry and the
 * lifecycle operations read the table. */
#ifndef SANDBAR_SANDBOX_ROW_H
#define SANDBAR_SANDBOX_ROW_H

#include <libpq-fe.h>

#include "sandbox/registry.h"

/* The columns of a row (of `sandboxes s`), in the order sandbox_from_row
 * reads: a string literal, so every query's text is a constant. */
#define SANDBOX_ROW_COLUMNS                                                                                  \
	"s.id, s.name, s.template, s.status, s.status_reason, coalesce(s.container_id, ''), "                \
	"coalesce(s.image, ''), s.workspace_mount, s.devcontainer_config::text, s.env_vars::text, "          \
	"s.setup_output, sandbar_us(s.last_activity), sandbar_us(s.created_at), sandbar_us(s.expires_at), "  \
	"sandbar_us(s.deleted_at), coalesce((SELECT json_agg(json_build_object('id', p.id, "                 \
	"'c', p.container_port, 'h', p.host_port) ORDER BY p.container_port) "                               \
	"FROM port_mappings p WHERE p.sandbox_id = s.id), '[]')::text, s.labels::text, "                     \
	"coalesce(s.cpu_millis, 0), coalesce(s.memory_bytes, 0), coalesce(s.idle_timeout_ms, 0), "           \
	"s.idle_action, sandbar_us(s.ends_at), sandbar_us(s.keepalive_until), "                              \
	"coalesce(s.auto_wake, s.idle_action = 'stop'), s.private, array_to_string(s.private_ports, ','), "  \
	"s.project, s.user_id, s.spec::text, s.configured_env::text, s.network, "                            \
	"s.runtime"

/* 0, or -1 for a row the core cannot read (an unknown status). */
int sandbox_from_row(struct sandbox *sb, PGresult *res, int row);
void sandbox_clear(struct sandbox *sb);

#endif
