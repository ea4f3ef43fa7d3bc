-- The activities each task queue's workers serve, by name, seen at each registration (as
-- workflow_types holds the workflows): where an activity called by name with no task queue
-- goes (the queue of the calling workflow, if it serves it, else the one seen last).
CREATE TABLE durable.activity_types (
    name        text NOT NULL,
    task_queue  text NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, task_queue)
);
