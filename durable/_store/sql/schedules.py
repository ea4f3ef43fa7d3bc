"""The statements of schedules (used by durable/_store/schedules.py), each with why it is
written so. A schedule's row is the lock under which its slots are handled: the fire of a
worker, a trigger and a backfill all take it before they decide anything."""

from __future__ import annotations

# Each statement that may move a schedule's due time earlier wakes the workers of its queue
# (key "s" + queue: see listener.NotificationKeys.schedules).

# Schedules.create_schedule: a new schedule, unless its id is taken (then no row comes back).
_INSERT_SCHEDULE_SQL = """
WITH created AS (
    INSERT INTO durable.schedules (schedule_id, workflow_name, task_queue, args, spec, overlap,
        catchup_window, options, paused, note, next_slot, due_at)
    VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8::jsonb, $9, $10, $11,
        CASE WHEN $9 THEN NULL ELSE $12::timestamptz END)
    ON CONFLICT (schedule_id) DO NOTHING
    RETURNING task_queue)
SELECT pg_notify('durable', 's' || task_queue) FROM created
"""

# The schedule's row (for describe), and the latest run of each workflow id it started
# lately (their status): one statement.
_SCHEDULE_SQL = "SELECT * FROM durable.schedules WHERE schedule_id = $1"

# A schedule's row locked for a trigger, a backfill, an update or a pause: waits for a fire
# in progress (it holds the lock) and sees what it did. ``running``: its latest run is open.
_LOCK_SCHEDULE_SQL = """
SELECT s.*, durable.now() AS now,
    EXISTS (SELECT 1 FROM durable.workflows w
            WHERE w.workflow_id = s.last_workflow_id AND w.closed_at IS NULL) AS running
FROM durable.schedules s WHERE s.schedule_id = $1
FOR UPDATE OF s
"""

# Schedules.fire_schedules: the schedules of a queue due now, earliest first, locked; those
# another worker is firing are skipped, not waited for (it handles them). The partial index
# schedules_due (task_queue, due_at) makes this a range scan of what is due.
_DUE_SCHEDULES_SQL = """
SELECT s.*, durable.now() AS now,
    EXISTS (SELECT 1 FROM durable.workflows w
            WHERE w.workflow_id = s.last_workflow_id AND w.closed_at IS NULL) AS running
FROM durable.schedules s
WHERE s.task_queue = $1 AND s.due_at <= durable.now()
ORDER BY s.due_at
LIMIT $2
FOR UPDATE OF s SKIP LOCKED
"""

# Schedules.next_schedule_due: when a worker of the queue must look next (the same index).
_NEXT_DUE_SQL = """
SELECT min(due_at) FROM durable.schedules WHERE task_queue = $1 AND due_at IS NOT NULL
"""

# Which of the workflow ids a fire would start were used already (by a backfill, a trigger,
# or a fire whose schedule was recreated): those slots are not started again.
_USED_IDS_SQL = """
SELECT DISTINCT workflow_id FROM durable.workflows WHERE workflow_id = ANY($1::text[])
"""

# The outcome of handling slots of several schedules (locked by the caller), in one
# statement: where each goes on from, what waits, what it started last, the slots it handled
# lately, and its counters (the two lists as JSON text: an array of jsonb lists would read
# as a two-dimensional array). A schedule paused meanwhile is not due.
_RECORD_FIRES_SQL = """
UPDATE durable.schedules s SET
    next_slot = u.next_slot,
    due_at = CASE WHEN s.paused THEN NULL ELSE u.due_at END,
    buffered = u.buffered::jsonb,
    last_workflow_id = coalesce(u.last_workflow_id, s.last_workflow_id),
    recent = u.recent::jsonb,
    fired = s.fired + u.fired,
    skipped = s.skipped + u.skipped,
    missed = s.missed + u.missed
FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[], $5::text[],
    $6::text[], $7::bigint[], $8::bigint[], $9::bigint[])
    AS u(schedule_id, next_slot, due_at, buffered, last_workflow_id, recent, fired, skipped,
        missed)
WHERE s.schedule_id = u.schedule_id
"""

# Schedules.update_schedule: the new settings of a schedule (locked by the caller).
_UPDATE_SCHEDULE_SQL = """
WITH updated AS (
    UPDATE durable.schedules SET workflow_name = $2, task_queue = $3, args = $4, spec = $5::jsonb,
        overlap = $6, catchup_window = $7, options = $8::jsonb, note = $9, next_slot = $10,
        due_at = CASE WHEN paused THEN NULL ELSE $11::timestamptz END,
        updated_at = durable.now()
    WHERE schedule_id = $1
    RETURNING task_queue)
SELECT pg_notify('durable', 's' || task_queue) FROM updated
"""

# Schedules.pause_schedule: a paused schedule is not due; unpaused, a worker looks at once
# (slots passed meanwhile are made up within the catch-up window, the rest counted missed).
_PAUSE_SCHEDULE_SQL = """
WITH changed AS (
    UPDATE durable.schedules SET paused = $2, note = coalesce($3, note),
        due_at = CASE WHEN $2 THEN NULL
                      WHEN next_slot IS NULL AND buffered = '[]' THEN NULL
                      ELSE durable.now() END,
        updated_at = durable.now()
    WHERE schedule_id = $1
    RETURNING task_queue)
SELECT pg_notify('durable', 's' || task_queue) FROM changed
"""

# Schedules.delete_schedule: the schedule goes; the runs it started are left alone.
_DELETE_SCHEDULE_SQL = "DELETE FROM durable.schedules WHERE schedule_id = $1 RETURNING true"

# Schedules.list_schedules: a page of schedules in id order after the id $1 ('' first).
_LIST_SCHEDULES_SQL = """
SELECT * FROM durable.schedules WHERE schedule_id > $1 ORDER BY schedule_id LIMIT $2
"""

# The status of the latest run of each workflow id given (a schedule's recent slots).
_LATEST_STATUSES_SQL = """
SELECT DISTINCT ON (workflow_id) workflow_id,
    CASE WHEN closed_at IS NULL AND paused_at IS NOT NULL THEN 'paused' ELSE status END AS status
FROM durable.workflows WHERE workflow_id = ANY($1::text[])
ORDER BY workflow_id, created_at DESC
"""
