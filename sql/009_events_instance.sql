-- Which instance made each move: sandbard sets its connections'
-- application_name to SANDBAR_INSTANCE_ID, so every insert into
-- sandbox_events records it without a parameter. The reconciler settles at
-- once a start or stop that this instance left half-way (it was killed), and
-- leaves one another instance sharing the database may still be carrying out.
ALTER TABLE sandbox_events
	ADD COLUMN instance text DEFAULT nullif(current_setting('application_name'), '');
