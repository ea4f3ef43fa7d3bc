-- durable schema, version 1. Every hot query is keyed by workflow_id or task_queue.

-- Aborts the statement that calls it unless ok: lets one statement check its own preconditions.
CREATE FUNCTION durable.ensure(ok boolean, message text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION USING ERRCODE = 'DU001', MESSAGE = message;
    END IF;
    RETURN true;
END $$;

CREATE TABLE durable.workers (
    worker_id   uuid PRIMARY KEY,
    task_queue  text NOT NULL,
    identity    text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

-- Which workflow names some worker serves, and on which task queue (lets clients start by name).
CREATE TABLE durable.workflow_types (
    name        text NOT NULL,
    task_queue  text NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, task_queue)
);

CREATE TABLE durable.workflows (
    workflow_id        text NOT NULL,
    run_id             uuid NOT NULL,
    workflow_name      text NOT NULL,
    task_queue         text NOT NULL,
    status             text NOT NULL,
    parent_workflow_id text,
    parent_run_id      uuid,
    parent_seq         integer,
    attributes         jsonb NOT NULL DEFAULT '{}',
    result             bytea,
    failure            bytea,
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz NOT NULL DEFAULT now(),
    closed_at          timestamptz,
    next_seq           integer NOT NULL DEFAULT 2,      -- seq of the next history event
    ready_at           timestamptz,                     -- a workflow task is due then
    owner              uuid,                            -- the worker holding it (sticky)
    fence              bigint NOT NULL DEFAULT 0,       -- bumped whenever ownership changes
    inbox_seq          bigint NOT NULL DEFAULT 0,       -- bumped by every message posted
    task_failures      integer NOT NULL DEFAULT 0,
    last_error         text,
    continued_run_id   uuid,
    PRIMARY KEY (workflow_id, run_id)
) WITH (fillfactor = 70);  -- room on each page for HOT updates: a step rewrites its run's row
CREATE UNIQUE INDEX workflows_one_open_run ON durable.workflows (workflow_id) WHERE closed_at IS NULL;
CREATE INDEX workflows_ready ON durable.workflows (task_queue, ready_at) WHERE ready_at IS NOT NULL;
CREATE INDEX workflows_latest ON durable.workflows (workflow_id, created_at DESC);
CREATE INDEX workflows_by_start ON durable.workflows (started_at, workflow_id);
CREATE INDEX workflows_children ON durable.workflows (parent_workflow_id) WHERE parent_workflow_id IS NOT NULL;
CREATE INDEX workflows_attributes ON durable.workflows USING gin (attributes jsonb_path_ops);

CREATE TABLE durable.history (
    workflow_id text NOT NULL,
    run_id      uuid NOT NULL,
    seq         integer NOT NULL,
    kind        smallint NOT NULL,
    ts          timestamptz NOT NULL,
    body        bytea NOT NULL,
    PRIMARY KEY (workflow_id, run_id, seq)
);

-- What happened to a workflow and is not yet in its history: activity and child outcomes,
-- signals, cancel requests, updates, and timers (visible once they are due).
CREATE TABLE durable.inbox (
    workflow_id text NOT NULL,
    run_id      uuid NOT NULL,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    kind        smallint NOT NULL,
    ref         integer,                 -- the seq of the command it answers (timers)
    visible_at  timestamptz NOT NULL DEFAULT now(),
    body        bytea NOT NULL,
    PRIMARY KEY (workflow_id, run_id, id)
);

CREATE TABLE durable.activity_tasks (
    workflow_id       text NOT NULL,
    run_id            uuid NOT NULL,
    seq               integer NOT NULL,
    task_queue        text NOT NULL,
    activity_name     text NOT NULL,
    args              bytea NOT NULL,
    retry             bytea,
    start_to_close    double precision,
    heartbeat_timeout double precision,
    schedule_deadline timestamptz,
    attempt           integer NOT NULL DEFAULT 0,
    scheduled_at      timestamptz NOT NULL DEFAULT now(),
    visible_at        timestamptz NOT NULL DEFAULT now(),
    owner             uuid,
    started_at        timestamptz,
    deadline          timestamptz,       -- the running attempt times out then
    heartbeat_details bytea,
    last_failure      bytea,
    cancel_requested  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (workflow_id, run_id, seq)
);
CREATE INDEX activity_tasks_ready ON durable.activity_tasks (task_queue, visible_at) WHERE owner IS NULL;
CREATE INDEX activity_tasks_deadline ON durable.activity_tasks (task_queue, deadline) WHERE deadline IS NOT NULL;
CREATE INDEX activity_tasks_running ON durable.activity_tasks (task_queue, owner) WHERE owner IS NOT NULL;

-- Queries and update replies travelling between a client and a worker.
CREATE TABLE durable.calls (
    id            uuid PRIMARY KEY,
    workflow_id   text NOT NULL,
    run_id        uuid NOT NULL,
    kind          smallint NOT NULL,      -- 1 query, 2 update
    task_queue    text NOT NULL,
    name          text NOT NULL,
    args          bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    claimed_by    uuid,
    claimed_until timestamptz,
    done          boolean NOT NULL DEFAULT false,
    result        bytea,
    failure       bytea
);
CREATE INDEX calls_pending_queries ON durable.calls (task_queue, created_at) WHERE kind = 1 AND NOT done;
