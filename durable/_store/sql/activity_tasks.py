"""The statements of the store's activity tasks (used by durable/_store/activity_tasks.py and
where named), each with why it is written so."""

from __future__ import annotations

from ..._flow import PRIORITIES


# The claims of activity tasks read the queue's visible unowned tasks of the activities the
# worker runs as one index range per priority (activity_tasks_ready_by_priority): the oldest
# of each level, locked (those a concurrent claim locked skipped), then the best of them by
# priority, less one level per priority_aging they waited (the queue's, if set), then age.
# Each is claimed as its next attempt, due by its start-to-close, schedule-to-close or first
# heartbeat, and returned with its run's workflow name (its spans carry it). ``allowed``
# says how many may be taken (n) and how the queue ages; each statement ends with the rows
# taken, or one row of NULL task columns if none, beside what ``allowed`` found.
def _claim_activities(allowed: str, last: str) -> str:
    branches = ",\n".join(
        f"""p{level} AS (
    SELECT workflow_id, run_id, seq, priority, visible_at FROM durable.activity_tasks
    WHERE task_queue = $1 AND priority = {level} AND owner IS NULL
        AND visible_at <= durable.now() AND activity_name = ANY($3)
    ORDER BY visible_at LIMIT (SELECT n FROM allowed) FOR UPDATE SKIP LOCKED)"""
        for level in PRIORITIES
    )
    union = " UNION ALL ".join(f"SELECT * FROM p{level}" for level in PRIORITIES)
    return f"""
WITH allowed AS ({allowed}),
{branches},
picked AS (
    SELECT c.* FROM ({union}) c
    ORDER BY c.priority - coalesce(floor(extract(epoch FROM durable.now() - c.visible_at)
        / (SELECT aging FROM allowed)), 0), c.visible_at
    LIMIT (SELECT n FROM allowed)),
taken AS (
    UPDATE durable.activity_tasks t SET owner = $2, attempt = t.attempt + 1,
        started_at = durable.now(),
        deadline = LEAST(durable.now() + make_interval(secs => t.start_to_close),
            t.schedule_deadline, durable.now() + make_interval(secs => t.heartbeat_timeout))
    FROM picked WHERE t.workflow_id = picked.workflow_id AND t.run_id = picked.run_id
        AND t.seq = picked.seq
    RETURNING t.*, (SELECT w.workflow_name FROM durable.workflows w
        WHERE w.workflow_id = t.workflow_id AND w.run_id = t.run_id) AS workflow_name){last}
SELECT t.*, a.* FROM allowed a LEFT JOIN taken t ON true
"""


# Store.claim_activity_tasks, a queue without activity limits: up to $4 tasks; none (and
# ``limited``) if the queue has limits after all: then the claim of a limited queue.
_CLAIM_ACTIVITIES_SQL = _claim_activities(
    """
    SELECT CASE WHEN coalesce(q.limited, false) THEN 0 ELSE $4::int END AS n,
        q.priority_aging AS aging, coalesce(q.limited, false) AS limited,
        NULL::float8 AS available, NULL::float8 AS rate_limit, NULL::bigint AS running,
        NULL::int AS max_running
    FROM (SELECT 1) AS one LEFT JOIN durable.task_queues q ON q.task_queue = $1""",
    "",
)

# Store.claim_activity_tasks, a queue with limits, in a transaction whose first statement
# locked the queue's row (_LOCK_QUEUE_SQL): the claims of a limited queue take turns, and
# this statement, begun after the lock, counts the attempts running with every earlier claim
# in view. Up to $4 tasks, no more than the queue's running limit leaves (attempts held by
# any worker count) nor the tokens its bucket holds (refilled at rate_limit per second up to
# rate_burst since tokens_at); the tokens taken are spent.
_CLAIM_LIMITED_ACTIVITIES_SQL = _claim_activities(
    """
    SELECT greatest(0, least($4::int,
            coalesce(q.max_running_activities - r.running, $4::int),
            coalesce(floor(b.available)::int, $4::int)))::int AS n,
        q.priority_aging AS aging, coalesce(q.limited, false) AS limited, b.available,
        q.rate_limit, r.running, q.max_running_activities AS max_running
    FROM (SELECT 1) AS one LEFT JOIN durable.task_queues q ON q.task_queue = $1
    CROSS JOIN LATERAL (SELECT count(*) AS running FROM durable.activity_tasks
        WHERE task_queue = $1 AND owner IS NOT NULL) r
    CROSS JOIN LATERAL (SELECT least(q.rate_burst, coalesce(q.tokens, q.rate_burst)
        + q.rate_limit * greatest(0, extract(epoch FROM durable.now()
            - coalesce(q.tokens_at, durable.now())))) AS available) b""",
    """,
spent AS (
    UPDATE durable.task_queues q SET tokens = a.available - (SELECT count(*) FROM taken),
        tokens_at = durable.now()
    FROM allowed a WHERE q.task_queue = $1 AND a.available IS NOT NULL)""",
)

# Store.claim_activity_tasks: the limited queue's row, locked until the claim commits.
_LOCK_QUEUE_SQL = "SELECT 1 FROM durable.task_queues WHERE task_queue = $1 FOR UPDATE"

# Store.next_activity_visible_at: when the queue's next unowned task of these activities is
# visible (NULL: none): the first entry of each priority's index range.
_NEXT_ACTIVITY_VISIBLE_SQL = "SELECT least({})".format(
    ", ".join(
        f"""(SELECT min(visible_at) FROM durable.activity_tasks
    WHERE task_queue = $1 AND priority = {level} AND owner IS NULL AND activity_name = ANY($2))"""
        for level in PRIORITIES
    )
)

# Store.fail_activity: whether this worker still holds the attempt (NULL: lost), locked
# while its retry or failure is written.
_LOCK_ATTEMPT_SQL = """
SELECT 1 FROM durable.activity_tasks WHERE workflow_id = $1 AND run_id = $2
    AND seq = $3 AND attempt = $4 AND owner = $5 FOR UPDATE
"""

# Store._finish_activity: the task goes if this worker still holds the attempt (NULL:
# lost); its outcome is then posted to the run.
_FINISH_ATTEMPT_SQL = """
DELETE FROM durable.activity_tasks WHERE workflow_id = $1 AND run_id = $2
    AND seq = $3 AND attempt = $4 AND owner = $5 RETURNING 1
"""

# Store.heartbeat_activity: the details kept ($6 NULL: the last ones) and the deadline
# moved to the earliest of start-to-close, schedule-to-close and the next heartbeat; no row
# if the attempt is lost.
_HEARTBEAT_SQL = """
UPDATE durable.activity_tasks SET heartbeat_details = coalesce($6, heartbeat_details),
    deadline = LEAST(started_at + make_interval(secs => start_to_close), schedule_deadline,
        durable.now() + make_interval(secs => heartbeat_timeout))
WHERE workflow_id = $1 AND run_id = $2 AND seq = $3 AND attempt = $4 AND owner = $5
RETURNING cancel_requested, deadline
"""

# Store.reap_activities: up to 100 of the queue's tasks past their deadline or held by a
# worker without a live lease, locked for their retry or failure (a concurrent reaper's
# skipped).
_REAP_ACTIVITIES_SQL = """
SELECT * FROM durable.activity_tasks t WHERE t.task_queue = $1 AND (
    t.deadline < durable.now() OR (t.owner IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM durable.workers k WHERE k.worker_id = t.owner
        AND k.expires_at > now())))
LIMIT 100 FOR UPDATE SKIP LOCKED
"""

# Store.release_unstarted_activities: the attempts claimed for this worker more than $3
# seconds ago, but those of its busy runs ($4) and those it runs ($5-$7), visible again.
_RELEASE_UNSTARTED_SQL = """
UPDATE durable.activity_tasks SET owner = NULL, started_at = NULL,
    visible_at = durable.now(), deadline = schedule_deadline
WHERE task_queue = $1 AND owner = $2
    AND started_at < durable.now() - make_interval(secs => $3)
    AND NOT (run_id = ANY($4::uuid[]))
    AND (run_id, seq, attempt) NOT IN (
        SELECT * FROM unnest($5::uuid[], $6::int[], $7::int[]))
RETURNING workflow_id, seq, activity_name, attempt
"""

# _retry_or_fail: the next attempt, visible after the retry delay ($4), with the failure
# and the heartbeat details kept ($6 NULL: the last ones).
_RETRY_ACTIVITY_SQL = """
UPDATE durable.activity_tasks SET owner = NULL, started_at = NULL,
    visible_at = durable.now() + make_interval(secs => $4), deadline = schedule_deadline,
    last_failure = $5, heartbeat_details = coalesce($6, heartbeat_details)
WHERE workflow_id = $1 AND run_id = $2 AND seq = $3
"""

# _retry_or_fail: no attempt is left: the task goes (its failure is then posted to the run).
_DELETE_ACTIVITY_SQL = """
DELETE FROM durable.activity_tasks WHERE workflow_id = $1 AND run_id = $2 AND seq = $3
"""
