-- Closed runs by the time they closed: a purge and an export walk them oldest first. Only
-- closed runs enter this index, once each, as they close.
CREATE INDEX workflows_closed ON durable.workflows (closed_at) WHERE closed_at IS NOT NULL;
-- A run's calls, for a purge to delete with the run.
CREATE INDEX calls_by_run ON durable.calls (workflow_id, run_id);
