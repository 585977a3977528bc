-- Indexes the reaper and the warm pool can use. The planner takes a partial
-- index only when the query's WHERE implies the index's: the lifetime one of
-- 004 (`deleted_at IS NULL`) is implied by no query, so the reaper's
-- `status IN (...)` on ends_at scanned the table; the pool counts its members
-- by (cluster, template) on every pass and every GET /api/pool.

DROP INDEX sandboxes_ends_idx;
CREATE INDEX sandboxes_ends_idx ON sandboxes (cluster, ends_at)
	WHERE ends_at IS NOT NULL AND status IN ('running', 'stopped', 'error');

CREATE INDEX sandboxes_pool_count_idx ON sandboxes (cluster, template)
	WHERE in_pool AND status IN ('creating', 'warm', 'error');
