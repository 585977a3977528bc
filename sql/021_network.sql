-- A sandbox's network policy as made: `full` (SANDBAR_NETWORK, ports
-- published) or `none` (Docker's none network, nothing published). Rows made
-- before it are `full`, whichever network their container is on.
ALTER TABLE sandboxes ADD COLUMN network text NOT NULL DEFAULT 'full' CHECK (network IN ('full', 'none'));
