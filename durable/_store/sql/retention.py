"""The statements of the store's retention (used by durable/_store/retention.py and
where named), each with why it is written so."""

from __future__ import annotations

# Store.purge_closed: up to $3 of the runs closed before $1 (with status $2, if given),
# oldest first, deleted with their history, inbox, tasks and calls. Runs another purge (or a
# reset) holds are skipped, not waited for; open runs are never touched, and no commit waits
# on a closed run's row. Each table is reached by "= ANY" on its key (run ids are unique, so
# the two arrays match exactly the runs chosen), never by a join the planner could make a
# scan of the whole table.
_PURGE_CLOSED_SQL = """
WITH doomed AS (
    SELECT workflow_id, run_id FROM durable.workflows
    WHERE closed_at < $1 AND ($2::text IS NULL OR status = $2)
    ORDER BY closed_at LIMIT $3 FOR UPDATE SKIP LOCKED),
history AS (DELETE FROM durable.history
    WHERE workflow_id = ANY(ARRAY(SELECT workflow_id FROM doomed))
        AND run_id = ANY(ARRAY(SELECT run_id FROM doomed))),
inbox AS (DELETE FROM durable.inbox
    WHERE workflow_id = ANY(ARRAY(SELECT workflow_id FROM doomed))
        AND run_id = ANY(ARRAY(SELECT run_id FROM doomed))),
tasks AS (DELETE FROM durable.activity_tasks
    WHERE workflow_id = ANY(ARRAY(SELECT workflow_id FROM doomed))
        AND run_id = ANY(ARRAY(SELECT run_id FROM doomed))),
calls AS (DELETE FROM durable.calls
    WHERE workflow_id = ANY(ARRAY(SELECT workflow_id FROM doomed))
        AND run_id = ANY(ARRAY(SELECT run_id FROM doomed))),
runs AS (DELETE FROM durable.workflows
    WHERE workflow_id = ANY(ARRAY(SELECT workflow_id FROM doomed))
        AND run_id = ANY(ARRAY(SELECT run_id FROM doomed))
        AND closed_at IS NOT NULL
    RETURNING 1)
SELECT count(*) FROM runs
"""

# Store.closed_page: the next $6 runs closed before $1 (status $2, if given) after the run
# ($3, $4, $5) in (closed_at, workflow_id, run_id) order ($3 NULL: the first page).
_CLOSED_PAGE_SQL = """
SELECT * FROM durable.workflows
WHERE closed_at < $1 AND ($2::text IS NULL OR status = $2)
    AND closed_at >= coalesce($3::timestamptz, '-infinity')
    AND (closed_at, workflow_id, run_id) > (coalesce($3::timestamptz, '-infinity'), $4, $5::uuid)
ORDER BY closed_at, workflow_id, run_id LIMIT $6
"""

# The histories of the runs of a page, each in seq order.
_HISTORIES_SQL = """
SELECT workflow_id, run_id, seq, kind, ts, body, ends_step FROM durable.history
WHERE workflow_id = ANY($1::text[]) AND run_id = ANY($2::uuid[])
ORDER BY workflow_id, run_id, seq
"""
