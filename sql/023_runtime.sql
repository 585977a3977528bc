-- The container runtime a sandbox was made with: `runc` (Docker's default)
-- or `gvisor` (runsc, enabled with SANDBAR_RUNTIMES). A recreate (PATCH of
-- its image) makes the container again with it. Rows made before it are runc.
ALTER TABLE sandboxes
	ADD COLUMN IF NOT EXISTS runtime text NOT NULL DEFAULT 'runc' CHECK (runtime IN ('runc', 'gvisor'));
