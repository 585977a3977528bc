-- Coding-agent tasks, their numbered events and results: kept after the sandbox
-- (no reference to its row) and across restarts (command_id and output_offset
-- let a runner follow the CLI again). The task's env (provider keys) is not here.
CREATE TABLE tasks (
	id             uuid PRIMARY KEY,
	sandbox_id     uuid NOT NULL,
	agent          text NOT NULL CHECK (agent IN ('opencode', 'claude', 'codex', 'custom')),
	prompt         text NOT NULL,
	model          text,
	cwd            text,
	-- custom: the command as given (a shell string or an argv array)
	command        jsonb,
	timeout_ms     bigint NOT NULL,
	-- preparing, running, checkpointing while it runs; then the outcome
	state          text NOT NULL CHECK (state IN ('preparing', 'running', 'checkpointing',
	                 'succeeded', 'failed', 'cancelled', 'timed_out')),
	reason         text,
	command_id     uuid,
	output_offset  bigint NOT NULL DEFAULT 0,
	before_commit  text,
	after_commit   text,
	-- the done event's data once it ended
	result         jsonb,
	last_seq       integer NOT NULL DEFAULT 0,
	owner_instance text,
	created_at     timestamptz NOT NULL DEFAULT now(),
	ended_at       timestamptz
);

-- one task at a time per sandbox, whichever instance starts it
CREATE UNIQUE INDEX tasks_one_running ON tasks (sandbox_id)
	WHERE state IN ('preparing', 'running', 'checkpointing');
CREATE INDEX tasks_sandbox_idx ON tasks (sandbox_id, created_at DESC);

CREATE TABLE task_events (
	task_id uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
	seq     integer NOT NULL,
	type    text NOT NULL,
	data    jsonb NOT NULL,
	at      timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (task_id, seq)
);
