-- 1,000 sandbox rows for the memory benchmark of test/bench/bench.py, written
-- straight into the database (no containers). Columns follow sql/ (monza's
-- schema plus template, cluster, owner_instance); adjust here when they change.
-- psql variable :cluster is the server's SANDBAR_CLUSTER.
INSERT INTO sandboxes (id, name, template, status, container_id, image, workspace_mount,
	devcontainer_config, env_vars, cluster, owner_instance, last_activity,
	created_at, expires_at)
SELECT gen_random_uuid(), 'bench-seed-' || i, 'base', 'stopped', NULL, 'sandbar/base:latest',
	'/workspace', '{"name": "bench", "image": "sandbar/base:latest"}'::jsonb,
	'{"BENCH": "1"}'::jsonb, :'cluster', 'bench', now(),
	now() - (i || ' seconds')::interval, now() + interval '1 day'
FROM generate_series(1, 1000) AS i;
