-- A private sandbox's previews need a signed, expiring token (minted by
-- POST /api/sandboxes/{id}/preview-token): every port of it, or only the
-- private_ports of one that is not private.
ALTER TABLE sandboxes
	ADD COLUMN private boolean NOT NULL DEFAULT false,
	ADD COLUMN private_ports integer[] NOT NULL DEFAULT '{}';
