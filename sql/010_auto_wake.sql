-- Whether a request for the stopped sandbox (a preview, an exec, a file, a
-- terminal) starts it again instead of answering 409. NULL: the default,
-- which follows idle_action (on for 'stop', off otherwise), so a PATCH of
-- idle_action moves it unless auto_wake itself was set.
ALTER TABLE sandboxes
	ADD COLUMN auto_wake boolean;
