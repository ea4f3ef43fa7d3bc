-- Schedules: a timetable (cron in a zone, or an interval) that starts a workflow at each
-- slot. Workers of the schedule's task queue fire it: one indexed query finds the schedules
-- due (due_at, stored, never recomputed by scanning); each is handled under its row lock in
-- the transaction that starts its runs and moves next_slot on, so a slot is handled once.
CREATE TABLE durable.schedules (
    schedule_id      text PRIMARY KEY,
    workflow_name    text NOT NULL,
    task_queue       text NOT NULL,
    args             bytea NOT NULL,
    spec             jsonb NOT NULL,             -- cron/every/offset/timezone/jitter/start_at/end_at
    overlap          text NOT NULL,
    catchup_window   double precision NOT NULL,  -- seconds
    options          jsonb NOT NULL DEFAULT '{}', -- the start options of each run
    paused           boolean NOT NULL DEFAULT false,
    note             text,
    next_slot        timestamptz,                -- the first slot not handled (NULL: none left)
    due_at           timestamptz,                -- a worker looks then (NULL: paused or ended)
    buffered         jsonb NOT NULL DEFAULT '[]', -- slots waiting for the open run (ISO)
    last_workflow_id text,                       -- the latest run's workflow id (overlap)
    recent           jsonb NOT NULL DEFAULT '[]', -- the last slots handled: slot, id, action
    fired            bigint NOT NULL DEFAULT 0,
    skipped          bigint NOT NULL DEFAULT 0,  -- dropped by the overlap policy
    missed           bigint NOT NULL DEFAULT 0,  -- older than the catch-up window
    created_at       timestamptz NOT NULL DEFAULT durable.now(),
    updated_at       timestamptz NOT NULL DEFAULT durable.now()
);
CREATE INDEX schedules_due ON durable.schedules (task_queue, due_at) WHERE due_at IS NOT NULL;
