-- Commands run in sandboxes through the agent. The agent keeps the output (its
-- ring buffer); the database keeps what outlives sandbard: which commands
-- exist, where (agent_id on the sandbox's agent), and how they ended.

CREATE TABLE commands (
	id          uuid PRIMARY KEY,
	sandbox_id  uuid NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
	agent_id    integer NOT NULL,
	-- the command as given: a shell string or an argv array
	command     jsonb NOT NULL,
	detached    boolean NOT NULL DEFAULT false,
	status      text NOT NULL CHECK (status IN ('running', 'exited', 'failed', 'lost')),
	exit_code   integer,
	signal      integer,
	timed_out   boolean NOT NULL DEFAULT false,
	pid         integer,
	output_bytes bigint NOT NULL DEFAULT 0,
	owner_instance text,
	started_at  timestamptz NOT NULL,
	ended_at    timestamptz
);

CREATE INDEX commands_sandbox_idx ON commands (sandbox_id, started_at DESC);
CREATE INDEX commands_running_idx ON commands (sandbox_id) WHERE status = 'running';

-- The command object of the API, rendered once here like sandbox_docs.
CREATE VIEW command_docs AS
SELECT c.id, c.sandbox_id, c.started_at,
	json_build_object(
		'id', c.id,
		'sandbox_id', c.sandbox_id,
		'command', c.command,
		'status', c.status,
		'exit_code', c.exit_code,
		'signal', c.signal,
		'timed_out', c.timed_out,
		'pid', c.pid,
		'started_at', sandbar_time(c.started_at),
		'ended_at', sandbar_time(c.ended_at)
	) AS doc
FROM commands c;
