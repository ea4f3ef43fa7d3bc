"""The statements of the store's test databases (used by durable/_store/test_databases.py and
where named), each with why it is written so."""

from __future__ import annotations

# new_test_database: a test database's clock, the server's plus the time skipped so far.
# durable.now() and durable.clock_timestamp() (migration 0010) are replaced by these, so that
# every statement of the engine reads the skipped clock; a subquery keeps them from being
# inlined, and they are evaluated once per statement (STABLE) or per call (VOLATILE), as the
# originals are.
_VIRTUAL_CLOCK_SQL = """
CREATE TABLE durable.skipped_time (skipped interval NOT NULL);
INSERT INTO durable.skipped_time VALUES (interval '0');
CREATE OR REPLACE FUNCTION durable.now() RETURNS timestamptz LANGUAGE sql STABLE
    AS 'SELECT now() + (SELECT skipped FROM durable.skipped_time)';
CREATE OR REPLACE FUNCTION durable.clock_timestamp() RETURNS timestamptz LANGUAGE sql VOLATILE
    AS 'SELECT clock_timestamp() + (SELECT skipped FROM durable.skipped_time)';
"""

# Store.skip_time: time moves forward to $1 of skipped time (never back), and the workers of
# the queues given ($2) are woken: what was due by then is due now.
_SKIP_TIME_SQL = """
WITH moved AS (UPDATE durable.skipped_time SET skipped = greatest(skipped, $1::interval))
SELECT count(pg_notify('durable', kind || queue))
FROM unnest($2::text[]) AS q(queue) CROSS JOIN (VALUES ('w'), ('a'), ('s')) AS k(kind)
"""

# Store.time_state: whether any work is due or running now (a run due and not paused, an
# activity attempt running or visible), and when the next piece of work comes due: the
# earliest due time of an open run not paused (its timers, timeouts and messages), of an
# activity attempt that waits for its retry, or of a schedule some live worker fires (one of
# a queue nobody serves would keep the environment busy for ever).
_TIME_STATE_SQL = """
SELECT
    EXISTS (SELECT 1 FROM durable.workflows WHERE closed_at IS NULL AND paused_at IS NULL
            AND ready_at <= durable.now())
    OR EXISTS (SELECT 1 FROM durable.activity_tasks
               WHERE owner IS NOT NULL OR visible_at <= durable.now())
    OR EXISTS (SELECT 1 FROM durable.schedules s WHERE due_at <= durable.now()
               AND EXISTS (SELECT 1 FROM durable.workers w
                           WHERE w.task_queue = s.task_queue AND w.expires_at > now())) AS busy,
    least(
        (SELECT min(ready_at) FROM durable.workflows WHERE closed_at IS NULL
            AND paused_at IS NULL AND ready_at > durable.now()),
        (SELECT min(visible_at) FROM durable.activity_tasks WHERE owner IS NULL
            AND visible_at > durable.now()),
        (SELECT min(due_at) FROM durable.schedules s WHERE due_at > durable.now()
            AND EXISTS (SELECT 1 FROM durable.workers w
                        WHERE w.task_queue = s.task_queue AND w.expires_at > now()))) AS next_due
"""


# new_test_database: whether the template of a schema version exists yet.
_DATABASE_EXISTS_SQL = "SELECT true FROM pg_database WHERE datname = $1"

# new_test_database: one process makes a template at a time (a session lock on its name).
_NAME_LOCK_SQL = "SELECT pg_advisory_lock(hashtext($1))"
_NAME_UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtext($1))"
