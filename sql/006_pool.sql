-- The warm pool (src/sandbox/pool.c): sandboxes created ahead per template,
-- status `warm` until a create claims one. in_pool marks a member nobody has
-- claimed yet, whatever its status (a failed member is no user's sandbox:
-- never listed); run_image is the image its container runs (the template's
-- image with the agent baked in), so a rollout knows the members of an older
-- image. A claim is one UPDATE of the oldest warm member, FOR UPDATE SKIP
-- LOCKED: two creates never get the same one.

ALTER TABLE sandboxes
	ADD COLUMN in_pool   boolean NOT NULL DEFAULT false,
	ADD COLUMN run_image text;

CREATE INDEX sandboxes_pool_idx ON sandboxes (cluster, template, created_at) WHERE in_pool AND status = 'warm';
