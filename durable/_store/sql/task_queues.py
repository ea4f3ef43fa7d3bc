"""The statements of task queues' settings (used by durable/_store/task_queues.py), each with
why it is written so."""

from __future__ import annotations

# TaskQueues.configure_task_queue: the queue's limits, all at once (NULL: none); its bucket
# starts full again. Its workers are woken: a limit raised lets them take more at once.
_CONFIGURE_QUEUE_SQL = """
WITH configured AS (
    INSERT INTO durable.task_queues AS q (task_queue, max_running_activities, rate_limit,
        rate_burst, priority_aging)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (task_queue) DO UPDATE SET max_running_activities = EXCLUDED.max_running_activities,
        rate_limit = EXCLUDED.rate_limit, rate_burst = EXCLUDED.rate_burst,
        priority_aging = EXCLUDED.priority_aging, tokens = NULL, tokens_at = NULL,
        updated_at = durable.now()
    RETURNING q.task_queue)
SELECT pg_notify('durable', 'a' || task_queue) FROM configured
"""

# TaskQueues.describe_task_queue: its settings (no row: none), what waits by priority (due
# workflow tasks and activity attempts no worker took), the attempts running, and its live
# workers; in one snapshot.
_QUEUE_SETTINGS_SQL = """
SELECT max_running_activities, rate_limit, rate_burst, priority_aging
FROM durable.task_queues WHERE task_queue = $1
"""

_QUEUE_BACKLOG_SQL = """
SELECT priority, sum(n)::bigint AS n FROM (
    SELECT priority, count(*) AS n FROM durable.activity_tasks
    WHERE task_queue = $1 AND owner IS NULL AND visible_at <= durable.now() GROUP BY priority
    UNION ALL
    SELECT priority, count(*) FROM durable.workflows
    WHERE task_queue = $1 AND owner IS NULL AND ready_at <= durable.now() AND paused_at IS NULL
    GROUP BY priority) AS due
GROUP BY priority ORDER BY priority
"""

_QUEUE_RUNNING_SQL = """
SELECT count(*) FROM durable.activity_tasks WHERE task_queue = $1 AND owner IS NOT NULL
"""

_QUEUE_WORKERS_SQL = """
SELECT identity, started_at, expires_at FROM durable.workers
WHERE task_queue = $1 AND expires_at > now() ORDER BY started_at
"""
