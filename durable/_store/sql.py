"""The static statements, named, each with why it is written the way it is."""

from __future__ import annotations

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


# Store.claim_workflow_tasks: the worker's own due runs, unowned ones, then those of workers
# whose lease lapsed, each an index range of workflows_ready_by_owner in due order ("ORDER BY
# owner, ready_at": the planner reads IS NULL as a filter, not as a constant, and would sort).
# A worker whose own lease lapsed (an outage longer than the lease) is not one of those: its
# runs are its own, found once; counted twice they would bring each message twice.
_CLAIM_WORKFLOWS_SQL = """
WITH mine AS (
    SELECT workflow_id, run_id, workflow_name, fence, next_seq, true AS resumed
    FROM durable.workflows
    WHERE task_queue = $1 AND owner = $2 AND ready_at <= now()
        AND workflow_name = ANY($3) AND NOT (run_id = ANY($4::uuid[]))
    ORDER BY ready_at LIMIT $5),
unowned AS (
    SELECT workflow_id, run_id, status <> 'pending' AS resumed
    FROM durable.workflows
    WHERE task_queue = $1 AND owner IS NULL AND ready_at <= now() AND workflow_name = ANY($3)
    ORDER BY owner, ready_at LIMIT greatest($5 - (SELECT count(*) FROM mine), 0)
    FOR UPDATE SKIP LOCKED),
orphaned AS (
    SELECT workflow_id, run_id, status <> 'pending' AS resumed
    FROM durable.workflows
    WHERE task_queue = $1 AND ready_at <= now() AND workflow_name = ANY($3)
        AND owner = ANY(ARRAY(SELECT worker_id FROM durable.workers
                              WHERE task_queue = $1 AND expires_at <= now() AND worker_id <> $2))
    ORDER BY ready_at
    LIMIT greatest($5 - (SELECT count(*) FROM mine) - (SELECT count(*) FROM unowned), 0)
    FOR UPDATE SKIP LOCKED),
taken AS (
    UPDATE durable.workflows w SET fence = w.fence + 1, owner = $2,
        status = CASE WHEN w.status = 'pending' THEN 'running' ELSE w.status END
    FROM (SELECT * FROM unowned UNION ALL SELECT * FROM orphaned) o
    WHERE w.workflow_id = o.workflow_id AND w.run_id = o.run_id
    RETURNING w.workflow_id, w.run_id, w.workflow_name, w.fence, w.next_seq, o.resumed),
claimed AS (SELECT * FROM mine UNION ALL SELECT * FROM taken)
SELECT c.*, w.inbox_seq, i.id AS message_id, i.kind, i.body,
    h.ts AS started_ts, h.body AS started_body
FROM claimed c JOIN durable.workflows w ON w.workflow_id = c.workflow_id AND w.run_id = c.run_id
LEFT JOIN LATERAL (
    SELECT id, kind, body, visible_at FROM durable.inbox
    WHERE workflow_id = c.workflow_id AND run_id = c.run_id AND visible_at <= clock_timestamp()
    OFFSET 0) i ON true
LEFT JOIN durable.history h ON NOT c.resumed AND h.workflow_id = c.workflow_id
    AND h.run_id = c.run_id AND h.seq = 1
ORDER BY c.workflow_id, c.run_id, i.visible_at, i.id
"""

# When a run of the queue is due next for this worker (its own but the busy ones, unowned
# ones, those of lapsed workers): the first entry of each index range.
_NEXT_READY_SQL = """
SELECT least(
    (SELECT min(ready_at) FROM durable.workflows WHERE task_queue = $1 AND owner = $2
        AND ready_at IS NOT NULL AND workflow_name = ANY($3) AND NOT (run_id = ANY($4::uuid[]))),
    (SELECT min(ready_at) FROM durable.workflows WHERE task_queue = $1 AND owner IS NULL
        AND ready_at IS NOT NULL AND workflow_name = ANY($3)),
    (SELECT min(ready_at) FROM durable.workflows WHERE task_queue = $1
        AND ready_at IS NOT NULL AND workflow_name = ANY($3)
        AND owner = ANY(ARRAY(SELECT worker_id FROM durable.workers
                              WHERE task_queue = $1 AND expires_at <= now()))))
"""


# Store.record_fired_timers: each run's first message, a due timer, becomes its next history
# event. Runs whose owner, fence or next_seq moved since the claim are left out (their timer
# stays in the inbox and is delivered as a message). Inbox ids are unique: matching each key
# column against its array is exact.
_RECORD_FIRED_SQL = """
WITH advanced AS (
    UPDATE durable.workflows w SET next_seq = f.seq + 1,
        ready_at = now() + make_interval(secs => $8)
    FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::int[]) AS f(workflow_id, run_id, fence, seq)
    WHERE w.workflow_id = f.workflow_id AND w.run_id = f.run_id AND w.owner = $7
        AND w.fence = f.fence AND w.next_seq = f.seq
    RETURNING w.run_id),
moved AS (
    DELETE FROM durable.inbox WHERE workflow_id = ANY($1::text[])
        AND run_id = ANY(ARRAY(SELECT run_id FROM advanced)) AND id = ANY($5::bigint[])),
recorded AS (
    INSERT INTO durable.history (workflow_id, run_id, seq, kind, ts, body)
    SELECT f.workflow_id, f.run_id, f.seq, $9, now(), f.body
    FROM unnest($1::text[], $2::uuid[], $4::int[], $6::bytea[]) AS f(workflow_id, run_id, seq, body)
    WHERE f.run_id = ANY(ARRAY(SELECT run_id FROM advanced)))
SELECT now() AS ts, ARRAY(SELECT run_id FROM advanced) AS run_ids
"""


# Store.claim_queries: the pending queries of runs this worker may read (its own, unowned,
# closed, or held by a lapsed worker). A query is answered only once its run has taken in
# every message that reached it before the query was sent (read-your-writes: a query right
# after a signal sees the signal); until then it waits, and the last row says so.
_CLAIM_QUERIES_SQL = """
WITH picked AS (
    SELECT c.id, w.workflow_name, EXISTS (
        SELECT 1 FROM durable.inbox i WHERE i.workflow_id = c.workflow_id
            AND i.run_id = c.run_id AND i.visible_at <= c.created_at) AS behind
    FROM durable.calls c JOIN durable.workflows w
        ON w.workflow_id = c.workflow_id AND w.run_id = c.run_id
    WHERE c.task_queue = $1 AND c.kind = 1 AND NOT c.done
        AND (c.claimed_until IS NULL OR c.claimed_until < now())
        AND w.workflow_name = ANY($3)
        AND (w.owner IS NULL OR w.owner = $2 OR w.closed_at IS NOT NULL OR NOT EXISTS (
            SELECT 1 FROM durable.workers k WHERE k.worker_id = w.owner AND k.expires_at > now()))
    ORDER BY c.created_at LIMIT $4 FOR UPDATE OF c SKIP LOCKED),
claimed AS (
    UPDATE durable.calls c SET claimed_by = $2, claimed_until = now() + interval '30 seconds'
    FROM picked WHERE c.id = picked.id AND NOT picked.behind
    RETURNING c.id, c.workflow_id, c.run_id, picked.workflow_name, c.name, c.args)
SELECT *, false AS waiting FROM claimed
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, EXISTS (SELECT 1 FROM picked WHERE behind)
"""


# New runs in one statement (one run, or many started together): each run's row (unless its
# workflow id has an open run), its first history event, its execution timeout, and a
# wake-up for the workers of its queue. Returns the runs opened.
_INSERT_RUNS_SQL = """
WITH req AS (
    SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[],
        $6::uuid[], $7::int[], $8::jsonb[], $9::float8[], $10::timestamptz[], $11::bytea[],
        $12::timestamptz[], $13::bytea[])
        AS q(workflow_id, run_id, workflow_name, task_queue, parent_workflow_id,
            parent_run_id, parent_seq, attributes, delay, ts, body, deadline, timeout_body)),
run AS (
    INSERT INTO durable.workflows (workflow_id, run_id, workflow_name, task_queue, status,
        parent_workflow_id, parent_run_id, parent_seq, attributes, ready_at, started_at)
    SELECT workflow_id, run_id, workflow_name, task_queue, 'pending', parent_workflow_id,
        parent_run_id, parent_seq, attributes, now() + make_interval(secs => delay), ts
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
            THEN LEAST(coalesce(w.ready_at, 'infinity'), now()) ELSE w.ready_at END,
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


_CLAIM_ACTIVITY_SET = (
    "owner = $2, attempt = t.attempt + 1, started_at = now(),"
    " deadline = LEAST(now() + make_interval(secs => t.start_to_close), t.schedule_deadline,"
    "  now() + make_interval(secs => t.heartbeat_timeout))"
)
