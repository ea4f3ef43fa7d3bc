"""The statements of the store's client operations (used by durable/_store/client_ops.py and
where named), each with why it is written so."""

from __future__ import annotations

import functools

# Store.database_time: the database's clock (a batch covers the runs started by then).
_DATABASE_TIME_SQL = "SELECT durable.now()"

# Store.open_work: the run's activity tasks, in schedule order.
_PENDING_ACTIVITIES_SQL = """
SELECT seq, activity_name, attempt, owner IS NOT NULL AS running, scheduled_at,
    visible_at, last_failure FROM durable.activity_tasks
WHERE workflow_id = $1 AND run_id = $2 ORDER BY seq
"""

# Store.open_work: what else an open run waits on — its timers (set, not yet delivered) and its
# open children — as (kind, seq, fires_at, child id, child run, child name, child status).
_WAITS_SQL = """
SELECT 'timer' AS kind, ref AS seq, visible_at AS fires_at, NULL AS child_id,
    NULL::uuid AS child_run_id, NULL AS child_name, NULL AS child_status
FROM durable.inbox WHERE workflow_id = $1 AND run_id = $2 AND kind = $3
UNION ALL
SELECT 'child', parent_seq, NULL, workflow_id, run_id, workflow_name,
    CASE WHEN paused_at IS NULL THEN status ELSE 'paused' END
FROM durable.workflows
WHERE parent_workflow_id = $1 AND parent_run_id = $2 AND closed_at IS NULL
ORDER BY 1 DESC, 3, 2
"""

# Store.cancel_reason: the body of the first cancel request the run took in, or of the event
# that closed it cancelled before it began (either holds the reason given to cancel()).
_CANCEL_REQUEST_SQL = """
SELECT body FROM durable.history
WHERE workflow_id = $1 AND run_id = $2 AND kind = ANY($3::smallint[]) ORDER BY seq LIMIT 1
"""

# Store.load_history: the run's events, in order.
_LOAD_HISTORY_SQL = """
SELECT seq, kind, ts, body, ends_step FROM durable.history
WHERE workflow_id = $1 AND run_id = $2 ORDER BY seq
"""

# Store.list_workflows: a page of runs matching the filters given, in (started_at,
# workflow_id, run_id) order from after the previous page's last run. One statement per
# combination of filters, not one with "$n IS NULL OR ...": sessions plan generically (see
# _SESSION_SETTINGS_SQL), and one generic plan for every combination could use no index.
_LIST_FILTERS = {
    # a paused run's status column keeps what it was ("running" or "pending")
    "status": "(CASE WHEN paused_at IS NULL OR closed_at IS NOT NULL THEN status"
    " ELSE 'paused' END) = $%d",
    "workflow_name": "workflow_name = $%d",
    "attributes": "attributes @> $%d",
    "started_after": "started_at > $%d",
    "started_by": "started_at <= $%d",
    "open_only": "closed_at IS NULL",
    "after": "(started_at, workflow_id, run_id::text) > ($%d, $%d, $%d)",
}


@functools.cache
def _list_workflows_sql(filters: tuple[str, ...]) -> str:
    """The statement for ``filters`` (names of _LIST_FILTERS, in its order): their values
    are its parameters in that order (three for ``after``), then the limit."""
    where, used = _list_where(filters)
    return (
        f"SELECT * FROM durable.workflows {where}"
        f"ORDER BY started_at, workflow_id, run_id::text LIMIT ${used + 1}"
    )


@functools.cache
def _count_workflows_sql(filters: tuple[str, ...]) -> str:
    """Store.count_workflows: how many runs match ``filters`` (as _list_workflows_sql)."""
    return f"SELECT count(*) FROM durable.workflows {_list_where(filters)[0]}"


def _list_where(filters: tuple[str, ...]) -> tuple[str, int]:
    """The WHERE clause of ``filters``, and how many parameters it takes."""
    conditions, used = [], 0
    for name in filters:
        clause = _LIST_FILTERS[name]
        count = clause.count("%d")
        conditions.append(clause % tuple(range(used + 1, used + count + 1)))
        used += count
    return (f"WHERE {' AND '.join(conditions)} " if conditions else ""), used


# Store.create_call, an update sent again: whether its call is still on record (old
# answered updates are purged with the requests: see _PURGE_REQUESTS_SQL).
_CALL_EXISTS_SQL = "SELECT 1 FROM durable.calls WHERE id = $1"

# Store.create_call, a query: wake the workers of the run's queue (channel and key as
# parameters: see listener.NotificationKeys).
_NOTIFY_SQL = "SELECT pg_notify($1, $2)"

# Store.create_call: the query or update request ($4: 1 a query, 2 an update), for the
# workers of the run's queue.
_INSERT_CALL_SQL = """
INSERT INTO durable.calls (id, workflow_id, run_id, kind, task_queue, name, args)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""

# Store.call_outcome: the answer to a call once it is done; a query's call is deleted by
# the same statement (both parts read one snapshot: the answer is that of the row deleted).
_CALL_OUTCOME_SQL = """
WITH answer AS (SELECT id, kind, result, failure FROM durable.calls
    WHERE id = $1 AND done),
forgotten AS (DELETE FROM durable.calls WHERE id = $1 AND kind = 1 AND done)
SELECT result, failure FROM answer
"""

# Store.forget_call: a call whose answer is no longer awaited.
_FORGET_CALL_SQL = "DELETE FROM durable.calls WHERE id = $1"
