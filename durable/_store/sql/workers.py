"""The statements of the store's workers (used by durable/_store/workers.py and
where named), each with why it is written so."""

from __future__ import annotations

# Store.backlog: due workflow tasks (of runs not paused) and activity tasks of a queue that no
# worker holds, by the indexes the claims use (workflows_ready_by_owner, activity_tasks_ready).
_BACKLOG_SQL = """
SELECT (SELECT count(*) FROM durable.workflows
        WHERE task_queue = $1 AND owner IS NULL AND ready_at <= durable.now() AND paused_at IS NULL)
        AS workflow_tasks,
    (SELECT count(*) FROM durable.activity_tasks
        WHERE task_queue = $1 AND owner IS NULL AND visible_at <= durable.now()) AS activity_tasks
"""

# Store.register_worker: the worker's lease, renewed if it is on record already.
_REGISTER_WORKER_SQL = """
INSERT INTO durable.workers (worker_id, task_queue, identity, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
ON CONFLICT (worker_id) DO UPDATE SET expires_at = EXCLUDED.expires_at
"""

# Store.register_worker: the workflow types the worker serves on its queue ($2), seen now,
# with how many positional arguments each takes (what Store.registered_workflow and
# Store.route_workflow read).
_REGISTER_WORKFLOW_TYPES_SQL = """
INSERT INTO durable.workflow_types (name, task_queue, min_args, max_args)
SELECT name, $2, min_args, max_args
FROM unnest($1::text[], $3::int[], $4::int[]) AS w(name, min_args, max_args)
ON CONFLICT (name, task_queue) DO UPDATE SET seen_at = now(),
    min_args = EXCLUDED.min_args, max_args = EXCLUDED.max_args
"""

# Store.register_worker: forget the workers whose lease lapsed more than an hour ago;
# returns their ids (NULL: none).
_FORGET_LAPSED_WORKERS_SQL = """
WITH gone AS (DELETE FROM durable.workers
    WHERE expires_at < now() - interval '1 hour' RETURNING worker_id)
SELECT array_agg(worker_id) FROM gone
"""

# The open runs of the workers forgotten are unowned: their runs stay claimable (as those of
# a lapsed worker) only while the lapsed lease is on record.
_RELEASE_FORGOTTEN_RUNS_SQL = """
UPDATE durable.workflows SET owner = NULL
WHERE owner = ANY($1) AND closed_at IS NULL
"""

# Store.purge_requests: a batch ($2) of the client requests older than $1 seconds, and the
# answered updates as old; the status counts the updates deleted.
_PURGE_REQUESTS_SQL = """
WITH old AS (DELETE FROM durable.requests WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM durable.requests
    WHERE created_at < now() - make_interval(secs => $1) LIMIT $2))
    RETURNING 1)
DELETE FROM durable.calls WHERE kind = 2 AND done
    AND created_at < now() - make_interval(secs => $1)
    AND (SELECT count(*) FROM old) >= 0
"""

# Store.renew_worker: extend a lease that has not lapsed ("UPDATE 1"); a lease that lapsed
# is not renewed (its runs may have been taken over): the worker registers again.
_RENEW_WORKER_SQL = """
UPDATE durable.workers SET expires_at = now() + make_interval(secs => $2)
WHERE worker_id = $1 AND expires_at > now()
"""

# Store.unregister_worker: the leaving worker's open runs are unowned (closed runs keep
# theirs: rewriting them all is not free).
_RELEASE_WORKER_RUNS_SQL = """
UPDATE durable.workflows SET owner = NULL WHERE owner = $1 AND closed_at IS NULL
"""

# Store.unregister_worker: the queries it claimed and did not answer can be claimed again.
_RELEASE_WORKER_QUERIES_SQL = """
UPDATE durable.calls SET claimed_by = NULL, claimed_until = NULL
WHERE claimed_by = $1 AND NOT done
"""

# Store.unregister_worker: the worker's record goes last.
_DELETE_WORKER_SQL = "DELETE FROM durable.workers WHERE worker_id = $1"

# Store.registered_workflow: where the workflow type $1 is served, and the arguments it
# takes there: on the queue $2 if its workers registered it, else on the queue seen last.
_REGISTERED_WORKFLOW_SQL = """
SELECT task_queue, min_args, max_args FROM durable.workflow_types WHERE name = $1
ORDER BY task_queue = $2 DESC, seen_at DESC LIMIT 1
"""
