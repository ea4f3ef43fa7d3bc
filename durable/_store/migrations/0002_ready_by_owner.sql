-- Due runs by queue and owner: a worker's claim reads its own due runs and the unowned ones
-- as two index ranges in due order, instead of filtering every due run of the queue.
CREATE INDEX workflows_ready_by_owner ON durable.workflows (task_queue, owner, ready_at)
    WHERE ready_at IS NOT NULL;
DROP INDEX durable.workflows_ready;
