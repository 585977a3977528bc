-- Admission control (src/sandbox/admission.c) sums, before each create and
-- start, the memory limits of the cluster's sandboxes that hold memory: an
-- index-only scan of those rows, however many deleted ones the table keeps.

CREATE INDEX sandboxes_holding_idx ON sandboxes (cluster) INCLUDE (memory_bytes)
	WHERE status IN ('creating', 'starting', 'running', 'stopping', 'warm');
