-- What the Hermes dialect (and the tenancy to come) needs of a sandbox: the
-- project it belongs to (requests scoped to a project see only its
-- sandboxes; the native API's are 'default'), its owner (user_id, an exact
-- list filter), its resources as the client wrote them (spec: strings such as
-- "500m" or "1Gi", echoed verbatim; cpu_millis and memory_bytes keep what
-- Docker applies), and the environment configured from outside (merged into
-- env_vars when configured, kept apart so a configure without a body can
-- apply it again).
ALTER TABLE sandboxes
	ADD COLUMN project        text NOT NULL DEFAULT 'default',
	ADD COLUMN user_id        text NOT NULL DEFAULT '',
	ADD COLUMN spec           jsonb NOT NULL DEFAULT '{}',
	ADD COLUMN configured_env jsonb NOT NULL DEFAULT '{}';

-- a project's list, in its stable order
CREATE INDEX sandboxes_project_idx ON sandboxes (cluster, project, created_at, id) WHERE deleted_at IS NULL;
