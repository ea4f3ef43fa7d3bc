"""The statements of the store's operator controls (used by durable/_store/controls.py and
where named), each with why it is written so."""

from __future__ import annotations

# Controls.pause and a batch pause: the open runs (locked by the caller) are paused: no claim
# takes them (migration 0006) and their owners' next commits fail (the fence moves, the owner
# goes), so that no workflow task of theirs runs until they are resumed. A run paused already
# is left as it is. Returns the runs paused.
_PAUSE_RUNS_SQL = """
UPDATE durable.workflows w SET paused_at = durable.now(), pause_reason = $3, owner = NULL,
    fence = w.fence + 1
FROM unnest($1::text[], $2::uuid[]) AS r(workflow_id, run_id)
WHERE w.workflow_id = r.workflow_id AND w.run_id = r.run_id AND w.closed_at IS NULL
    AND w.paused_at IS NULL
RETURNING w.workflow_name, w.task_queue
"""

# Controls.resume, a batch resume, and cancel requests (closing: a run must run to see one):
# the paused open runs are claimable again, from the due time their messages and timers gave
# them; each queue's workers are woken once. Returns the runs resumed (none: none was paused).
_RESUME_RUNS_SQL = """
WITH resumed AS (UPDATE durable.workflows w SET paused_at = NULL, pause_reason = NULL
    FROM unnest($1::text[], $2::uuid[]) AS r(workflow_id, run_id)
    WHERE w.workflow_id = r.workflow_id AND w.run_id = r.run_id AND w.paused_at IS NOT NULL
        AND w.closed_at IS NULL
    RETURNING w.workflow_name, w.task_queue),
woken AS (SELECT count(pg_notify('durable', 'w' || queue)) AS n
    FROM (SELECT DISTINCT task_queue AS queue FROM resumed) AS queues)
SELECT workflow_name, task_queue, (SELECT n FROM woken) AS woken FROM resumed
"""

# A batch chunk: the open runs of a page (by workflow id and run id: run ids are unique), locked
# in workflow_id order (as posts lock them) and read as they are now, for the action to
# decide on each (one closed meanwhile is left out).
_LOCK_OPEN_RUNS_SQL = """
SELECT workflow_id, run_id, workflow_name, task_queue, status, paused_at, closed_at
FROM durable.workflows
WHERE workflow_id = ANY($1::text[]) AND run_id = ANY($2::uuid[]) AND closed_at IS NULL
ORDER BY workflow_id FOR UPDATE
"""

# The same for a batch reset, which covers closed runs too, whole.
_LOCK_RUNS_SQL = """
SELECT * FROM durable.workflows
WHERE workflow_id = ANY($1::text[]) AND run_id = ANY($2::uuid[])
ORDER BY workflow_id FOR UPDATE
"""
