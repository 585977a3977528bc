-- The sandbox registry (src/sandbox/registry.c): every status the lifecycle
-- knows, a trail of every transition, and times as Unix microseconds for the
-- core's structs. The API's JSON is rendered by each dialect, not here.

ALTER TABLE sandboxes DROP CONSTRAINT sandboxes_status_check;
ALTER TABLE sandboxes ADD CONSTRAINT sandboxes_status_check CHECK (status IN
	('creating', 'starting', 'running', 'stopping', 'stopped', 'expired', 'deleted', 'error', 'warm'));

-- Every move of a sandbox's status, written in the same statement as the move.
CREATE TABLE sandbox_events (
	id          bigserial PRIMARY KEY,
	sandbox_id  uuid NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
	from_status text,
	to_status   text NOT NULL,
	reason      text,
	actor       text,
	at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandbox_events_sandbox_idx ON sandbox_events (sandbox_id, id);

CREATE FUNCTION sandbar_us(t timestamptz) RETURNS bigint
	LANGUAGE sql IMMUTABLE
	AS $$ SELECT (extract(epoch FROM t) * 1000000)::bigint $$;

-- the dialects render the core's structs: no JSON is made here any more
DROP VIEW sandbox_docs;
DROP VIEW command_docs;
DROP FUNCTION sandbar_time(timestamptz);
