"""The statements of the store's starting (used by durable/_store/starting.py and
where named), each with why it is written so."""

from __future__ import annotations

# _start_in: the workflow's open run, else its latest, locked while the id conflict and
# reuse policies decide on it.
_START_LATEST_RUN_SQL = """
SELECT run_id, status, closed_at FROM durable.workflows WHERE workflow_id = $1
ORDER BY closed_at IS NULL DESC, created_at DESC LIMIT 1 FOR UPDATE
"""

# _start_debounced: the workflow's open run, locked while a debounced start decides whether
# it takes the start's arguments (a debounced run that has not begun) or the id policies
# decide on it. A worker's claim holds the same lock while it turns the run 'running': once
# this returns, the run either has begun or cannot begin before this transaction ends.
_DEBOUNCED_RUN_SQL = """
SELECT run_id, workflow_name, task_queue, status, owner, debounced, started_at
FROM durable.workflows WHERE workflow_id = $1 AND closed_at IS NULL FOR UPDATE
"""

# _start_debounced: the run a debounced start just opened is marked so.
_MARK_DEBOUNCED_SQL = """
UPDATE durable.workflows SET debounced = true WHERE workflow_id = $1 AND run_id = $2
"""

# _debounce_run: a later debounced start, applied to the locked run that has not begun: its
# first event (the only one: nothing has run) takes the new arguments, the run its new due
# time and attributes, its execution timeout is set anew, and the start is recorded (its
# request, with the run, so that an attempt made again applies nothing more). The fence
# moves on: a claim whose snapshot still holds the old first event, and that locks the run
# only after this commits, reads the event again rather than run the old arguments (see
# _CLAIM_WORKFLOWS_SQL). The queue's workers are woken: the run may be due sooner than it
# was.
_DEBOUNCE_RUN_SQL = """
WITH run AS (
    UPDATE durable.workflows SET ready_at = $3, attributes = $4, fence = fence + 1
    WHERE workflow_id = $1 AND run_id = $2
    RETURNING workflow_id, run_id, task_queue),
started AS (
    UPDATE durable.history h SET body = $5 FROM run
    WHERE h.workflow_id = run.workflow_id AND h.run_id = run.run_id AND h.seq = 1),
dropped AS (
    DELETE FROM durable.inbox i USING run
    WHERE i.workflow_id = run.workflow_id AND i.run_id = run.run_id AND i.kind = $6),
timeout AS (
    INSERT INTO durable.inbox (workflow_id, run_id, kind, visible_at, body)
    SELECT workflow_id, run_id, $6, $7, $8 FROM run WHERE $7::timestamptz IS NOT NULL),
recorded AS (
    INSERT INTO durable.requests (workflow_id, request_id, run_id)
    SELECT workflow_id, $9, run_id FROM run ON CONFLICT DO NOTHING)
SELECT pg_notify('durable', 'w' || task_queue) FROM run
"""

# _start_debounced, under the lock of _DEBOUNCED_RUN_SQL: the run an earlier attempt of this
# debounced start was applied to (none: it was not applied, or it opened a run of its own).
_DEBOUNCED_BEFORE_SQL = """
SELECT run_id FROM durable.requests WHERE workflow_id = $1 AND request_id = $2
"""
