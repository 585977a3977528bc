-- What each sandbox asked for at create (or a PATCH since): its labels,
-- resources, and the policies the reaper applies. expires_at keeps monza's
-- meaning (last activity + idle timeout); ends_at is a hard lifetime after
-- which the sandbox is removed whatever its activity; keepalive_until holds
-- the idle action off until then.

ALTER TABLE sandboxes
	ADD COLUMN labels          jsonb NOT NULL DEFAULT '{}',
	ADD COLUMN cpu_millis      integer CHECK (cpu_millis > 0),
	ADD COLUMN memory_bytes    bigint CHECK (memory_bytes > 0),
	ADD COLUMN idle_timeout_ms bigint CHECK (idle_timeout_ms > 0),
	ADD COLUMN idle_action     text NOT NULL DEFAULT 'expire' CHECK (idle_action IN ('expire', 'stop', 'none')),
	ADD COLUMN ends_at         timestamptz,
	ADD COLUMN keepalive_until timestamptz;

-- the reaper's two deadlines
DROP INDEX sandboxes_reaper_idx;
CREATE INDEX sandboxes_idle_idx ON sandboxes (expires_at) WHERE status = 'running' AND idle_action <> 'none';
CREATE INDEX sandboxes_ends_idx ON sandboxes (ends_at) WHERE ends_at IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX sandboxes_labels_idx ON sandboxes USING gin (labels);
