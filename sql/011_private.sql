-- A private sandbox's previews need a signed, expiring token (minted by
-- POST /api/sandboxes/{id}/preview-token); the whole sandbox, every port.
ALTER TABLE sandboxes
	ADD COLUMN private boolean NOT NULL DEFAULT false;
