-- 1,000 sandbox rows for the memory benchmark of test/bench/bench.py, written
-- straight into the database (no containers). Columns follow monza's schema
-- (spec/monza.md); adjust here when sql/ migrations differ.
INSERT INTO sandboxes (id, name, status, container_id, image, workspace_mount,
	devcontainer_config, env_vars, last_activity, created_at, expires_at)
SELECT gen_random_uuid(), 'bench-seed-' || i, 'stopped', NULL, 'sandbar/base:latest',
	'/workspace', '{"name": "bench", "image": "sandbar/base:latest"}'::jsonb,
	'{"BENCH": "1"}'::jsonb, now(), now() - (i || ' seconds')::interval,
	now() + interval '1 day'
FROM generate_series(1, 1000) AS i;
