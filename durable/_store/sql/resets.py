"""The statements of the store's resets (used by durable/_store/resets.py and
where named), each with why it is written so."""

from __future__ import annotations

# The runs resets or forks with this request id ($2) started already under the workflow ids
# given (the request made again).
_RESETS_DONE_SQL = """
SELECT workflow_id, run_id, reset_from_seq FROM durable.workflows
WHERE workflow_id = ANY($1::text[]) AND reset_request = $2
"""

# Each workflow's open run, else its latest, locked in workflow_id order (as posts lock them).
_LATEST_RUNS_SQL = """
SELECT l.* FROM unnest($1::text[]) AS i(workflow_id)
CROSS JOIN LATERAL (SELECT workflow_id, run_id, closed_at FROM durable.workflows w
    WHERE w.workflow_id = i.workflow_id
    ORDER BY closed_at IS NULL DESC, created_at DESC LIMIT 1 FOR UPDATE) AS l
ORDER BY i.workflow_id
"""

# The runs resets or forks start (arrays in one order), in one statement: each run's row, due
# at once (unless its workflow id has an open run: a start won it meanwhile); its first event
# (the old run's start, with the attributes the reset gives it); and the old run's events after
# its start and before the reset point, copied as they are (still sealed: no payload is opened
# and sealed again). Returns the runs opened.
_INSERT_RESET_RUNS_SQL = """
WITH req AS (
    SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[],
        $6::text[], $7::uuid[], $8::int[], $9::jsonb[], $10::int[], $11::text[], $12::uuid[],
        $13::int[], $14::timestamptz[], $15::bytea[], $16::bool[])
        AS q(workflow_id, run_id, workflow_name, task_queue, status, parent_workflow_id,
            parent_run_id, parent_seq, attributes, next_seq, old_id, old_run, reset_seq,
            ts, body, ends_step)),
run AS (
    INSERT INTO durable.workflows (workflow_id, run_id, workflow_name, task_queue, status,
        parent_workflow_id, parent_run_id, parent_seq, attributes, next_seq, ready_at,
        reset_from_run, reset_from_seq, reset_request)
    SELECT workflow_id, run_id, workflow_name, task_queue, status, parent_workflow_id,
        parent_run_id, parent_seq, attributes, next_seq, durable.now(), old_run, reset_seq, $17
    FROM req
    ON CONFLICT (workflow_id) WHERE closed_at IS NULL DO NOTHING
    RETURNING workflow_id, run_id),
started AS (
    INSERT INTO durable.history (workflow_id, run_id, seq, kind, ts, body, ends_step)
    SELECT r.workflow_id, r.run_id, 1, $18::smallint, q.ts, q.body, q.ends_step
    FROM run r JOIN req q ON q.run_id = r.run_id),
copied AS (
    INSERT INTO durable.history (workflow_id, run_id, seq, kind, ts, body, ends_step)
    SELECT r.workflow_id, r.run_id, h.seq, h.kind, h.ts, h.body, h.ends_step
    FROM run r JOIN req q ON q.run_id = r.run_id
    JOIN durable.history h ON h.workflow_id = q.old_id AND h.run_id = q.old_run
        AND h.seq > 1 AND h.seq < q.reset_seq),
woken AS (
    SELECT count(pg_notify('durable', 'w' || queue)) AS n
    FROM (SELECT DISTINCT task_queue AS queue FROM req) AS queues)
SELECT r.workflow_id, (SELECT n FROM woken) AS woken FROM run r
"""

# The old runs' open children that the kept events started (parent id, old run, new run, seq:
# arrays in one order): they report to the new runs.
_REPOINT_CHILDREN_SQL = """
UPDATE durable.workflows w SET parent_run_id = c.new_run
FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::int[]) AS c(parent_id, old_run, new_run, seq)
WHERE w.parent_workflow_id = c.parent_id AND w.parent_run_id = c.old_run
    AND w.parent_seq = c.seq AND w.closed_at IS NULL
RETURNING w.parent_run_id, w.parent_seq
"""

# Signals and updates open runs were sent and have not taken in yet, each run's oldest first.
_HELD_MESSAGES_SQL = """
SELECT run_id, kind, body FROM durable.inbox
WHERE workflow_id = ANY($1::text[]) AND run_id = ANY($2::uuid[]) AND kind = ANY($3::smallint[])
ORDER BY workflow_id, run_id, id
"""

# The updates open runs have not answered yet, moved to the runs they are reset to (which
# answer them) before the old runs close (which would cut them off).
_REPOINT_UPDATES_SQL = """
UPDATE durable.calls c SET run_id = r.new_run
FROM unnest($1::text[], $2::uuid[], $3::uuid[]) AS r(workflow_id, old_run, new_run)
WHERE c.workflow_id = r.workflow_id AND c.run_id = r.old_run AND c.kind = 2 AND NOT c.done
"""

# The new runs' first messages, in the order given (signals again, timers set again, the
# execution timeout, children's outcomes).
_FILL_INBOX_SQL = """
INSERT INTO durable.inbox (workflow_id, run_id, kind, ref, visible_at, body)
SELECT workflow_id, run_id, kind, ref, coalesce(visible_at, durable.now()), body
FROM unnest($1::text[], $2::uuid[], $3::smallint[], $4::int[], $5::timestamptz[],
    $6::bytea[]) WITH ORDINALITY AS m(workflow_id, run_id, kind, ref, visible_at, body, ord)
ORDER BY ord
"""

# Activities the kept events scheduled and did not see finish, scheduled again for the new
# runs from their first attempt; their queues' workers are woken.
_RESCHEDULE_ACTIVITIES_SQL = """
WITH scheduled AS (
    INSERT INTO durable.activity_tasks (workflow_id, run_id, seq, task_queue, activity_name,
        args, retry, start_to_close, heartbeat_timeout, schedule_deadline, deadline, priority)
    SELECT workflow_id, run_id, seq, task_queue, name, args, retry, start_to_close, heartbeat,
        durable.now() + make_interval(secs => schedule_to_close),
        durable.now() + make_interval(secs => schedule_to_close), priority
    FROM unnest($1::text[], $2::uuid[], $3::int[], $4::text[], $5::text[], $6::bytea[],
        $7::bytea[], $8::float8[], $9::float8[], $10::float8[], $11::smallint[])
        AS a(workflow_id, run_id, seq, task_queue, name, args, retry, start_to_close,
            heartbeat, schedule_to_close, priority)
    RETURNING task_queue)
SELECT count(pg_notify('durable', 'a' || q)) FROM (SELECT DISTINCT task_queue AS q FROM scheduled) AS queues
"""

# Reset runs point to the runs they were reset to (a handle on one, and its result, follow).
_MARK_RESET_SQL = """
UPDATE durable.workflows w SET continued_run_id = m.new_run
FROM unnest($1::text[], $2::uuid[], $3::uuid[]) AS m(workflow_id, run_id, new_run)
WHERE w.workflow_id = m.workflow_id AND w.run_id = m.run_id
"""
