"""The statements of the store's runs (used by durable/_store/runs.py and
where named), each with why it is written so."""

from __future__ import annotations

# _latest_run: the workflow's open run, else its latest.
_LATEST_RUN_SQL = """
SELECT * FROM durable.workflows WHERE workflow_id = $1
ORDER BY closed_at IS NULL DESC, created_at DESC LIMIT 1
"""

# The same, locked (for a handle that changes the run).
_LATEST_RUN_FOR_UPDATE_SQL = """
SELECT * FROM durable.workflows WHERE workflow_id = $1
ORDER BY closed_at IS NULL DESC, created_at DESC LIMIT 1 FOR UPDATE
"""

# The last run of the chain of continue-as-new that begins with a given run.
_CHAIN_END_SQL = """
WITH RECURSIVE chain AS (
    SELECT run_id, continued_run_id, 1 AS depth FROM durable.workflows
    WHERE workflow_id = $1 AND run_id = $2
    UNION ALL
    SELECT w.run_id, w.continued_run_id, c.depth + 1
    FROM chain c JOIN durable.workflows w ON w.workflow_id = $1 AND w.run_id = c.continued_run_id)
SELECT run_id FROM chain ORDER BY depth DESC LIMIT 1
"""

# One run by its ids (Store.run_row; _addressed_run, for the end of a chain).
_RUN_SQL = "SELECT * FROM durable.workflows WHERE workflow_id = $1 AND run_id = $2"

# The same, locked (for a handle that changes the run).
_RUN_FOR_UPDATE_SQL = """
SELECT * FROM durable.workflows WHERE workflow_id = $1 AND run_id = $2 FOR UPDATE
"""

# _first_time: a client request recorded in the transaction; no row if it was applied before.
_RECORD_REQUEST_SQL = """
INSERT INTO durable.requests (workflow_id, request_id) VALUES ($1, $2)
ON CONFLICT DO NOTHING RETURNING true
"""

# New runs in one statement (one run, or many started together): each run's row (unless its
# workflow id has an open run), its first history event, its execution timeout, and a
# wake-up for the workers of its queue. Returns the runs opened.
_INSERT_RUNS_SQL = """
WITH req AS (
    SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[],
        $6::uuid[], $7::int[], $8::jsonb[], $9::float8[], $10::timestamptz[], $11::bytea[],
        $12::timestamptz[], $13::bytea[], $16::smallint[])
        AS q(workflow_id, run_id, workflow_name, task_queue, parent_workflow_id,
            parent_run_id, parent_seq, attributes, delay, ts, body, deadline, timeout_body,
            priority)),
run AS (
    INSERT INTO durable.workflows (workflow_id, run_id, workflow_name, task_queue, status,
        parent_workflow_id, parent_run_id, parent_seq, attributes, ready_at, started_at,
        priority)
    SELECT workflow_id, run_id, workflow_name, task_queue, 'pending', parent_workflow_id,
        parent_run_id, parent_seq, attributes, durable.now() + make_interval(secs => delay), ts,
        priority
    FROM req
    ON CONFLICT (workflow_id) WHERE closed_at IS NULL DO NOTHING
    RETURNING workflow_id, run_id, task_queue),
started AS (
    INSERT INTO durable.history (workflow_id, run_id, seq, kind, ts, body)
    SELECT r.workflow_id, r.run_id, 1, $14::smallint, q.ts, q.body
    FROM run r JOIN req q ON q.run_id = r.run_id),
timeout AS (
    INSERT INTO durable.inbox (workflow_id, run_id, kind, visible_at, body)
    SELECT r.workflow_id, r.run_id, $15::smallint, q.deadline, q.timeout_body
    FROM run r JOIN req q ON q.run_id = r.run_id WHERE q.deadline IS NOT NULL)
SELECT run_id, (SELECT count(pg_notify('durable', 'w' || queue))
                FROM (SELECT DISTINCT task_queue AS queue FROM run) AS queues) AS woken
FROM run
"""

# _insert_history: events appended to a run's history, each column an array.
_INSERT_HISTORY_SQL = """
INSERT INTO durable.history (workflow_id, run_id, seq, kind, ts, body, ends_step)
SELECT $1, $2, s, k, t, b, e FROM unnest($3::int[], $4::smallint[], $5::timestamptz[],
    $6::bytea[], $7::bool[]) AS x(s, k, t, b, e)
"""

# Messages to open runs, in one statement (one message, or many sent together): each
# addressed run (a given run, or the workflow's open run) is locked in workflow_id order, so
# that concurrent posts cannot deadlock on each other, its inbox_seq bumped by its number of
# messages and made due; the inbox rows go in in the order given, and each queue's workers
# are woken once. Returns a row per message posted (those for closed runs post nothing).
# Each message finds its run by its own index lookup, and a run's messages travel as arrays
# from there on: no join between two sets of a batch, whose plan would rest on row estimates
# that a burst into tables last analyzed nearly empty (or nearly all closed) makes ~1, and
# then compare every row with every other. A run may close between the lookup (statement
# snapshot) and the update (latest version): the update then changes nothing and the run's
# messages are not posted. A run that has not begun keeps its due time: a message does not
# start a delayed run early (a run not delayed is due already).
_POST_SQL = """
WITH post AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::smallint[], $5::bytea[],
        $6::text[]) WITH ORDINALITY AS p(key, workflow_id, run_id, kind, body, request_id, ord)),
seen AS (
    SELECT p.key FROM post p WHERE p.request_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM durable.requests q
        WHERE q.workflow_id = p.workflow_id AND q.request_id = p.request_id)),
locked AS (
    SELECT 1 FROM durable.workflows w
    WHERE w.workflow_id = ANY($2::text[]) AND w.closed_at IS NULL
    ORDER BY w.workflow_id FOR UPDATE),
addressed AS (
    SELECT r.run_id AS open_run_id, p.* FROM post p
    CROSS JOIN LATERAL (SELECT w.run_id FROM durable.workflows w
        WHERE w.workflow_id = p.workflow_id AND w.closed_at IS NULL
            AND (p.run_id IS NULL OR w.run_id = p.run_id) OFFSET 0) r
    WHERE NOT (p.key = ANY(ARRAY(SELECT key FROM seen)))),
runs AS (
    SELECT workflow_id, open_run_id AS run_id, array_agg(key ORDER BY ord) AS keys,
        array_agg(kind ORDER BY ord) AS kinds, array_agg(body ORDER BY ord) AS bodies,
        array_agg(ord ORDER BY ord) AS ords, array_agg(request_id ORDER BY ord) AS request_ids
    FROM addressed GROUP BY workflow_id, open_run_id),
target AS (
    UPDATE durable.workflows w SET
        ready_at = CASE WHEN w.closed_at IS NULL AND w.status <> 'pending'
            THEN LEAST(coalesce(w.ready_at, 'infinity'), durable.now()) ELSE w.ready_at END,
        inbox_seq = w.inbox_seq + CASE WHEN w.closed_at IS NULL THEN cardinality(r.keys) ELSE 0 END
    FROM runs r
    WHERE w.workflow_id = r.workflow_id AND w.run_id = r.run_id AND (SELECT count(*) FROM locked) >= 0
    RETURNING w.workflow_id, w.run_id, w.task_queue, w.status, w.closed_at, r.keys, r.kinds,
        r.bodies, r.ords, r.request_ids),
posted AS (
    INSERT INTO durable.inbox (workflow_id, run_id, kind, body)
    SELECT t.workflow_id, t.run_id, m.kind, m.body
    FROM target t CROSS JOIN LATERAL unnest(t.kinds, t.bodies, t.ords) AS m(kind, body, ord)
    WHERE t.closed_at IS NULL
    ORDER BY m.ord
    RETURNING 1),
recorded AS (
    SELECT t.workflow_id, q.request_id
    FROM target t CROSS JOIN LATERAL unnest(t.request_ids) AS q(request_id)
    WHERE t.closed_at IS NULL AND q.request_id IS NOT NULL),
requested AS (
    INSERT INTO durable.requests (workflow_id, request_id)
    SELECT workflow_id, request_id FROM recorded
    ON CONFLICT DO NOTHING
    RETURNING 1),
checked AS (
    SELECT durable.ensure_new_requests(
        (SELECT count(*) FROM requested) = (SELECT count(*) FROM recorded)) AS ok)
SELECT k.key, t.workflow_id, t.run_id, t.task_queue, t.status, t.closed_at, false AS duplicate,
    (SELECT count(pg_notify('durable', 'w' || queue)) FROM (SELECT DISTINCT task_queue AS queue
        FROM target WHERE closed_at IS NULL) AS queues) AS woken
FROM target t CROSS JOIN LATERAL unnest(t.keys) AS k(key)
WHERE t.closed_at IS NULL AND (SELECT ok FROM checked)
UNION ALL
SELECT key, NULL, NULL, NULL, NULL, NULL, true, 0 FROM seen
"""

# _answer_call: a call answered once (one done already keeps its answer), and the client
# waiting for it woken.
_ANSWER_CALL_SQL = """
WITH answered AS (UPDATE durable.calls SET done = true, result = $2, failure = $3
    WHERE id = $1 AND NOT done RETURNING id)
SELECT pg_notify($4, 'r' || id::text) FROM answered
"""
