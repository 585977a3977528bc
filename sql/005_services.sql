-- Services: detached commands the sandbox's agent keeps and starts again at
-- every start of the sandbox, under the same record (its id stays, agent_id,
-- pid and started_at follow the current run), and the TCP port one serves
-- (the agent probes it: "ready"). A removed service is an ordinary command.

ALTER TABLE commands
	ADD COLUMN service boolean NOT NULL DEFAULT false,
	ADD COLUMN port    integer CHECK (port BETWEEN 1 AND 65535);

-- the reconcile pass reads a sandbox's running commands and its services
CREATE INDEX commands_services_idx ON commands (sandbox_id) WHERE service;
