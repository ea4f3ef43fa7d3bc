-- A paused run (paused_at set) runs no workflow task: it is left out of the claims' index,
-- so that thousands of paused runs cost a claim nothing. Messages, timers and activity
-- outcomes still reach its inbox and make it due; it is claimed once resumed.
ALTER TABLE durable.workflows ADD COLUMN paused_at timestamptz, ADD COLUMN pause_reason text;
CREATE INDEX workflows_ready_unpaused ON durable.workflows (task_queue, owner, ready_at)
    WHERE ready_at IS NOT NULL AND paused_at IS NULL;
DROP INDEX durable.workflows_ready_by_owner;
ALTER INDEX durable.workflows_ready_unpaused RENAME TO workflows_ready_by_owner;
