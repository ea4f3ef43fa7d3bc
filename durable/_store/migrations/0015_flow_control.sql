-- Flow control: priorities on runs and activity tasks, and limits per task queue.
--
-- Priority 1 (highest) .. 5 (lowest), 3 by default. A claim reads each priority's due
-- tasks as an index range of its own (task_queue, priority, due time), five short ranges
-- instead of one: the oldest of each level, ordered by priority (less one level per
-- priority_aging waited, when the queue ages) then age.
ALTER TABLE durable.workflows ADD COLUMN priority smallint NOT NULL DEFAULT 3;
ALTER TABLE durable.activity_tasks ADD COLUMN priority smallint NOT NULL DEFAULT 3;
CREATE INDEX activity_tasks_ready_by_priority
    ON durable.activity_tasks (task_queue, priority, visible_at) WHERE owner IS NULL;
DROP INDEX durable.activity_tasks_ready;
CREATE INDEX workflows_unowned_by_priority ON durable.workflows (task_queue, priority, ready_at)
    WHERE ready_at IS NOT NULL AND paused_at IS NULL AND owner IS NULL;

-- What client.configure_task_queue set (NULL: no limit), and the queue's token bucket of
-- activity starts: ``tokens`` left at ``tokens_at``, refilled at rate_limit per second up
-- to rate_burst. A claim on a queue with an activity limit locks its row: the claims of a
-- limited queue take turns, so that the count they check is the count they leave.
CREATE TABLE durable.task_queues (
    task_queue             text PRIMARY KEY,
    max_running_activities integer,
    rate_limit             double precision,  -- activity starts per second
    rate_burst             double precision,  -- at most this many at once
    priority_aging         double precision,  -- seconds a waiting task takes to gain a level
    limited                boolean GENERATED ALWAYS AS
                               (max_running_activities IS NOT NULL OR rate_limit IS NOT NULL) STORED,
    tokens                 double precision,
    tokens_at              timestamptz,
    updated_at             timestamptz NOT NULL DEFAULT durable.now()
);
