"""The statements of the store's closing (used by durable/_store/closing.py and
where named), each with why it is written so."""

from __future__ import annotations

# _close_run, in one statement: the run's status and outcome; its activity tasks and its
# inbox swept, but for the messages a new run carries over ($7); its pending updates
# answered ($8), unless it continues as new ($6: they move to the new run); its closing
# notified; and, when it started children ($9), its open children (two arrays, one order).
_CLOSE_RUN_SQL = """
WITH closed AS (
    UPDATE durable.workflows SET status = $3, closed_at = durable.now(), ready_at = NULL,
        result = $4, failure = $5, continued_run_id = $6
    WHERE workflow_id = $1 AND run_id = $2),
tasks AS (
    DELETE FROM durable.activity_tasks WHERE workflow_id = $1 AND run_id = $2),
inbox AS (
    DELETE FROM durable.inbox WHERE workflow_id = $1 AND run_id = $2
        AND NOT (kind = ANY($7::smallint[]))),
updates AS (
    UPDATE durable.calls SET done = true, failure = $8
    WHERE workflow_id = $1 AND run_id = $2 AND kind = 2 AND NOT done AND $6::uuid IS NULL)
SELECT pg_notify('durable', 'c' || $1) AS notified,
    array(SELECT workflow_id FROM durable.workflows WHERE $9 AND parent_workflow_id = $1
        AND parent_run_id = $2 AND closed_at IS NULL ORDER BY workflow_id) AS ids,
    array(SELECT run_id::text FROM durable.workflows WHERE $9 AND parent_workflow_id = $1
        AND parent_run_id = $2 AND closed_at IS NULL ORDER BY workflow_id) AS run_ids
"""

# _close_run, continue-as-new: the messages carried over move to the new run ($3).
_MOVE_INBOX_SQL = """
UPDATE durable.inbox SET run_id = $3 WHERE workflow_id = $1 AND run_id = $2
"""

# _close_run, continue-as-new: the calls not answered yet move with them.
_MOVE_CALLS_SQL = """
UPDATE durable.calls SET run_id = $3 WHERE workflow_id = $1 AND run_id = $2 AND NOT done
"""

# _close_run, continue-as-new: the new run is due now.
_NEW_RUN_DUE_SQL = """
UPDATE durable.workflows SET ready_at = durable.now() WHERE workflow_id = $1 AND run_id = $2
"""

# _close_without_code: open runs closed from outside their code (terminated, or cancelled
# before they began), many in one statement (a batch) or one: each run locked in workflow_id
# order (as posts lock them); its fence moved, so that its owner's next commit fails; its
# closing event ($3, with each run's attributes in $4) appended at its next seq as a step of
# its own, which runs no code on replay; its status ($5) and failure ($6: one per run) set;
# its activity tasks and inbox swept; its pending updates answered ($7: one answer per run);
# its closing notified. The arrays are in the order of $1. Returns the runs it closed (one
# closed meanwhile is left out), with what their parent must be told. Run ids are unique:
# matching each key column against its array is exact.
_CLOSE_WITHOUT_CODE_SQL = """
WITH locked AS (
    SELECT 1 FROM durable.workflows WHERE workflow_id = ANY($1::text[])
        AND run_id = ANY($2::uuid[]) AND closed_at IS NULL ORDER BY workflow_id FOR UPDATE),
closed AS (
    UPDATE durable.workflows w SET next_seq = w.next_seq + 1, fence = w.fence + 1, owner = NULL,
        status = $5, closed_at = durable.now(), ready_at = NULL, failure = r.failure
    FROM unnest($1::text[], $2::uuid[], $4::bytea[], $6::bytea[])
        AS r(workflow_id, run_id, body, failure)
    WHERE w.workflow_id = r.workflow_id AND w.run_id = r.run_id AND w.closed_at IS NULL
        AND (SELECT count(*) FROM locked) >= 0
    RETURNING w.workflow_id, w.run_id, w.next_seq - 1 AS seq, w.workflow_name, w.task_queue,
        w.parent_workflow_id, w.parent_run_id, w.parent_seq, r.body),
recorded AS (
    INSERT INTO durable.history (workflow_id, run_id, seq, kind, ts, body, ends_step)
    SELECT workflow_id, run_id, seq, $3, durable.now(), body, true FROM closed),
tasks AS (
    DELETE FROM durable.activity_tasks WHERE workflow_id = ANY($1::text[])
        AND run_id = ANY(ARRAY(SELECT run_id FROM closed))),
inbox AS (
    DELETE FROM durable.inbox WHERE workflow_id = ANY($1::text[])
        AND run_id = ANY(ARRAY(SELECT run_id FROM closed))),
updates AS (
    UPDATE durable.calls c SET done = true, failure = u.failure
    FROM unnest($1::text[], $2::uuid[], $7::bytea[]) AS u(workflow_id, run_id, failure)
    WHERE c.workflow_id = u.workflow_id AND c.run_id = u.run_id AND c.kind = 2 AND NOT c.done
        AND u.run_id = ANY(ARRAY(SELECT run_id FROM closed)))
SELECT c.workflow_id, c.run_id, c.seq, c.workflow_name, c.task_queue, c.parent_workflow_id,
    c.parent_run_id, c.parent_seq, pg_notify('durable', 'c' || c.workflow_id) IS NULL AS notified
FROM closed c
"""

# _close_without_code: the open children of the runs it closed, to close by the parent close
# policy (by workflows_children).
_OPEN_CHILDREN_SQL = """
SELECT parent_workflow_id, workflow_id, run_id FROM durable.workflows
WHERE parent_workflow_id = ANY($1::text[]) AND parent_run_id = ANY($2::uuid[])
    AND closed_at IS NULL
ORDER BY parent_workflow_id, workflow_id
"""
