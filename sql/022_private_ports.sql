-- Only some ports of a sandbox that is not private may need a preview token:
-- its private_ports (011 made the whole-sandbox flag; this column came after
-- 011 had been applied, so it has its own migration).
ALTER TABLE sandboxes
	ADD COLUMN IF NOT EXISTS private_ports integer[] NOT NULL DEFAULT '{}';
