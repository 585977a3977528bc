-- Sandboxes, their published ports and an activity trail. The database is the
-- source of truth for every control-plane instance sharing it; containers are
-- found again through their labels (sandbar.sandbox = id).

CREATE TABLE sandboxes (
	id                  uuid PRIMARY KEY,
	name                text NOT NULL,
	template            text NOT NULL,
	status              text NOT NULL
	                    CHECK (status IN ('creating', 'running', 'stopped', 'expired', 'deleted', 'error')),
	status_reason       text,
	container_id        text,
	volume_name         text,
	image               text,
	workspace_mount     text NOT NULL DEFAULT '/workspace',
	devcontainer_config jsonb NOT NULL DEFAULT '{}',
	env_vars            jsonb NOT NULL DEFAULT '{}',
	setup_output        text,
	-- which installation (SANDBAR_CLUSTER) and instance (SANDBAR_INSTANCE_ID) owns it
	cluster             text NOT NULL,
	owner_instance      text NOT NULL,
	host_id             text NOT NULL DEFAULT 'local',
	last_activity       timestamptz NOT NULL DEFAULT now(),
	created_at          timestamptz NOT NULL DEFAULT now(),
	expires_at          timestamptz NOT NULL,
	deleted_at          timestamptz
);

-- the reaper looks for the earliest deadline among live sandboxes
CREATE INDEX sandboxes_reaper_idx ON sandboxes (expires_at) WHERE status = 'running';
CREATE INDEX sandboxes_created_idx ON sandboxes (created_at DESC);

CREATE TABLE port_mappings (
	id             uuid PRIMARY KEY,
	sandbox_id     uuid NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
	host_port      integer NOT NULL CHECK (host_port BETWEEN 1 AND 65535),
	container_port integer NOT NULL CHECK (container_port BETWEEN 1 AND 65535),
	UNIQUE (sandbox_id, container_port)
);

CREATE TABLE activity_logs (
	id         bigserial PRIMARY KEY,
	sandbox_id uuid NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
	kind       text NOT NULL,
	detail     text,
	at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX activity_logs_sandbox_idx ON activity_logs (sandbox_id, at);

-- RFC 3339 in UTC with microseconds, as Go's time.Time marshals it
CREATE FUNCTION sandbar_time(t timestamptz) RETURNS text
	LANGUAGE sql IMMUTABLE
	AS $$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;

-- The sandbox object of the API, rendered once here so every dialect and
-- every route returns the same bytes for the same row.
CREATE VIEW sandbox_docs AS
SELECT s.id, s.cluster, s.status, s.created_at, s.deleted_at,
	json_build_object(
		'id', s.id,
		'name', s.name,
		'template', s.template,
		'status', s.status,
		'status_reason', s.status_reason,
		'container_id', coalesce(s.container_id, ''),
		'image', coalesce(s.image, ''),
		'workspace_mount', s.workspace_mount,
		'devcontainer_config', s.devcontainer_config,
		'env_vars', s.env_vars,
		'port_mappings', coalesce((
			SELECT json_agg(json_build_object(
				'id', p.id, 'sandbox_id', p.sandbox_id,
				'host_port', p.host_port, 'container_port', p.container_port)
				ORDER BY p.container_port)
			FROM port_mappings p WHERE p.sandbox_id = s.id), '[]'::json),
		'setup_output', s.setup_output,
		'last_activity', sandbar_time(s.last_activity),
		'created_at', sandbar_time(s.created_at),
		'expires_at', sandbar_time(s.expires_at),
		'deleted_at', sandbar_time(s.deleted_at)
	) AS doc
FROM sandboxes s;
