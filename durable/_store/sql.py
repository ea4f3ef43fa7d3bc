"""The static statements, named, each with why it is written the way it is.

Two vocabularies are spelled out in the SQL: ``durable.calls.kind`` is 1 for a query and 2
for an update (runs.KIND_QUERY, runs.KIND_UPDATE), and a notification's payload begins with
the letter listener.NotificationKeys names (w, a, q, c, r).
"""

from __future__ import annotations

import functools

# ====================================================================== workers

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


# ====================================================================== client operations

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


# ====================================================================== workflow tasks

# Store.claim_workflow_tasks: the worker's own due runs, unowned ones, then those of workers
# whose lease lapsed (none paused: see migration 0006), each an index range of
# workflows_ready_by_owner in due order ("ORDER BY owner, ready_at": the planner reads IS
# NULL as a filter, not as a constant, and would sort).
# A worker whose own lease lapsed (an outage longer than the lease) is not one of those: its
# runs are its own, found once; counted twice they would bring each message twice.
# A run pinned to a build ($6: the builds this worker accepts) goes only to such workers; a
# run not pinned yet is pinned to this worker's build ($7, NULL: none).
_CLAIM_WORKFLOWS_SQL = """
WITH mine AS (
    SELECT workflow_id, run_id, workflow_name, fence, next_seq, true AS resumed
    FROM durable.workflows
    WHERE task_queue = $1 AND owner = $2 AND ready_at <= durable.now() AND paused_at IS NULL
        AND workflow_name = ANY($3) AND NOT (run_id = ANY($4::uuid[]))
    ORDER BY ready_at LIMIT $5),
unowned AS (
    SELECT workflow_id, run_id, status <> 'pending' AS resumed
    FROM durable.workflows
    WHERE task_queue = $1 AND owner IS NULL AND ready_at <= durable.now() AND paused_at IS NULL
        AND workflow_name = ANY($3) AND (build_id IS NULL OR build_id = ANY($6::text[]))
    ORDER BY owner, ready_at LIMIT greatest($5 - (SELECT count(*) FROM mine), 0)
    FOR UPDATE SKIP LOCKED),
orphaned AS (
    SELECT workflow_id, run_id, status <> 'pending' AS resumed
    FROM durable.workflows
    WHERE task_queue = $1 AND ready_at <= durable.now() AND paused_at IS NULL AND workflow_name = ANY($3)
        AND owner = ANY(ARRAY(SELECT worker_id FROM durable.workers
                              WHERE task_queue = $1 AND expires_at <= now() AND worker_id <> $2))
        AND (build_id IS NULL OR build_id = ANY($6::text[]))
    ORDER BY ready_at
    LIMIT greatest($5 - (SELECT count(*) FROM mine) - (SELECT count(*) FROM unowned), 0)
    FOR UPDATE SKIP LOCKED),
taken AS (
    UPDATE durable.workflows w SET fence = w.fence + 1, owner = $2,
        status = CASE WHEN w.status = 'pending' THEN 'running' ELSE w.status END,
        build_id = coalesce(w.build_id, $7::text)
    FROM (SELECT * FROM unowned UNION ALL SELECT * FROM orphaned) o
    WHERE w.workflow_id = o.workflow_id AND w.run_id = o.run_id
    RETURNING w.workflow_id, w.run_id, w.workflow_name, w.fence, w.next_seq, o.resumed),
claimed AS (SELECT * FROM mine UNION ALL SELECT * FROM taken)
SELECT c.*, w.inbox_seq, i.id AS message_id, i.kind, i.body,
    h.ts AS started_ts, h.body AS started_body
FROM claimed c JOIN durable.workflows w ON w.workflow_id = c.workflow_id AND w.run_id = c.run_id
LEFT JOIN LATERAL (
    SELECT id, kind, body, visible_at FROM durable.inbox
    WHERE workflow_id = c.workflow_id AND run_id = c.run_id AND visible_at <= durable.clock_timestamp()
    OFFSET 0) i ON true
LEFT JOIN durable.history h ON NOT c.resumed AND h.workflow_id = c.workflow_id
    AND h.run_id = c.run_id AND h.seq = 1
ORDER BY c.workflow_id, c.run_id, i.visible_at, i.id
"""

# When a run of the queue is due next for this worker (its own but the busy ones, unowned
# ones, those of lapsed workers; none paused): the first entry of each index range.
_NEXT_READY_SQL = """
SELECT least(
    (SELECT min(ready_at) FROM durable.workflows WHERE task_queue = $1 AND owner = $2
        AND ready_at IS NOT NULL AND paused_at IS NULL AND workflow_name = ANY($3)
        AND NOT (run_id = ANY($4::uuid[]))),
    (SELECT min(ready_at) FROM durable.workflows WHERE task_queue = $1 AND owner IS NULL
        AND ready_at IS NOT NULL AND paused_at IS NULL AND workflow_name = ANY($3)
        AND (build_id IS NULL OR build_id = ANY($5::text[]))),
    (SELECT min(ready_at) FROM durable.workflows WHERE task_queue = $1
        AND ready_at IS NOT NULL AND paused_at IS NULL AND workflow_name = ANY($3)
        AND owner = ANY(ARRAY(SELECT worker_id FROM durable.workers
                              WHERE task_queue = $1 AND expires_at <= now()))
        AND (build_id IS NULL OR build_id = ANY($5::text[]))))
"""

# Store.record_fired_timers: each run's first message, a due timer, becomes its next history
# event. Runs whose owner, fence or next_seq moved since the claim are left out (their timer
# stays in the inbox and is delivered as a message). Inbox ids are unique: matching each key
# column against its array is exact.
_RECORD_FIRED_SQL = """
WITH advanced AS (
    UPDATE durable.workflows w SET next_seq = f.seq + 1,
        ready_at = durable.now() + make_interval(secs => $8)
    FROM unnest($1::text[], $2::uuid[], $3::bigint[], $4::int[]) AS f(workflow_id, run_id, fence, seq)
    WHERE w.workflow_id = f.workflow_id AND w.run_id = f.run_id AND w.owner = $7
        AND w.fence = f.fence AND w.next_seq = f.seq
    RETURNING w.run_id),
moved AS (
    DELETE FROM durable.inbox WHERE workflow_id = ANY($1::text[])
        AND run_id = ANY(ARRAY(SELECT run_id FROM advanced)) AND id = ANY($5::bigint[])),
recorded AS (
    INSERT INTO durable.history (workflow_id, run_id, seq, kind, ts, body)
    SELECT f.workflow_id, f.run_id, f.seq, $9, durable.now(), f.body
    FROM unnest($1::text[], $2::uuid[], $4::int[], $6::bytea[]) AS f(workflow_id, run_id, seq, body)
    WHERE f.run_id = ANY(ARRAY(SELECT run_id FROM advanced)))
SELECT durable.now() AS ts, ARRAY(SELECT run_id FROM advanced) AS run_ids
"""

# Store.load_inbox: the run's inbox_seq and the messages visible now, in one snapshot (one
# row with NULL message columns for an empty inbox); visible from clock_timestamp(), not
# now(), for the reason told at Store.claim_workflow_tasks.
_LOAD_INBOX_SQL = """
SELECT w.inbox_seq, i.id, i.kind, i.body FROM durable.workflows w
LEFT JOIN durable.inbox i ON i.workflow_id = w.workflow_id AND i.run_id = w.run_id
    AND i.visible_at <= durable.clock_timestamp()
WHERE w.workflow_id = $1 AND w.run_id = $2 ORDER BY i.visible_at, i.id
"""

# Store.commit_workflow_task, a commit with wider effects that leaves the run open: the run
# is due when its first inbox message is (NULL: when a message comes).
_INBOX_READY_AT_SQL = """
UPDATE durable.workflows SET ready_at = (SELECT min(visible_at) FROM durable.inbox i
    WHERE i.workflow_id = $1 AND i.run_id = $2) WHERE workflow_id = $1 AND run_id = $2
RETURNING ready_at
"""

# Store.release_workflow: a run whose task failed is given back, fenced like a commit, with
# the error, and is due again in $6 seconds.
_RELEASE_WORKFLOW_SQL = """
UPDATE durable.workflows SET owner = NULL, task_failures = task_failures + 1,
    last_error = $5, ready_at = durable.now() + make_interval(secs => $6)
WHERE workflow_id = $1 AND run_id = $2 AND owner = $3 AND fence = $4
"""

# Store.claim_queries: the pending queries of runs this worker may read (its own, unowned,
# closed, or held by a lapsed worker). A query is answered only once its run has taken in
# every message that reached it before the query was sent (read-your-writes: a query right
# after a signal sees the signal); until then it waits, and the last row says so. A paused
# run takes in nothing: its queries are answered from what it has taken in.
_CLAIM_QUERIES_SQL = """
WITH picked AS (
    SELECT c.id, w.workflow_name, w.paused_at IS NULL AND EXISTS (
        SELECT 1 FROM durable.inbox i WHERE i.workflow_id = c.workflow_id
            AND i.run_id = c.run_id AND i.visible_at <= c.created_at) AS behind
    FROM durable.calls c JOIN durable.workflows w
        ON w.workflow_id = c.workflow_id AND w.run_id = c.run_id
    WHERE c.task_queue = $1 AND c.kind = 1 AND NOT c.done
        AND (c.claimed_until IS NULL OR c.claimed_until < now())
        AND w.workflow_name = ANY($3) AND (w.build_id IS NULL OR w.build_id = ANY($5::text[]))
        AND (w.owner IS NULL OR w.owner = $2 OR w.closed_at IS NOT NULL OR NOT EXISTS (
            SELECT 1 FROM durable.workers k WHERE k.worker_id = w.owner AND k.expires_at > now()))
    ORDER BY c.created_at LIMIT $4 FOR UPDATE OF c SKIP LOCKED),
claimed AS (
    UPDATE durable.calls c SET claimed_by = $2, claimed_until = now() + interval '30 seconds'
    FROM picked WHERE c.id = picked.id AND NOT picked.behind
    RETURNING c.id, c.workflow_id, c.run_id, picked.workflow_name, c.name, c.args)
SELECT *, false AS waiting FROM claimed
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, EXISTS (SELECT 1 FROM picked WHERE behind)
"""

# Store.fail_waiting_queries: the queries that wait for their run to take in earlier messages
# (those _CLAIM_QUERIES_SQL leaves, by the same condition), answered with why the run cannot
# ($3: its code no longer replays its history) instead of timing out as if no worker ran.
_FAIL_WAITING_QUERIES_SQL = """
WITH answered AS (UPDATE durable.calls c SET done = true, failure = $3
    WHERE c.workflow_id = $1 AND c.run_id = $2 AND c.kind = 1 AND NOT c.done
        AND (c.claimed_until IS NULL OR c.claimed_until < now())
        AND EXISTS (SELECT 1 FROM durable.inbox i WHERE i.workflow_id = c.workflow_id
            AND i.run_id = c.run_id AND i.visible_at <= c.created_at)
    RETURNING c.id)
SELECT pg_notify($4, 'r' || id::text) FROM answered
"""


# ====================================================================== activity tasks

# Store.claim_activity_tasks: the queue's visible unowned tasks of the activities this
# worker runs, in visible order, those locked by a concurrent claim skipped; each is claimed
# as its next attempt, due by its start-to-close, schedule-to-close or first heartbeat, and
# returned with its run's workflow name (its spans carry it), read by the run's key.
_CLAIM_ACTIVITIES_SQL = """
WITH picked AS (
    SELECT workflow_id, run_id, seq FROM durable.activity_tasks
    WHERE task_queue = $1 AND owner IS NULL AND visible_at <= durable.now()
        AND activity_name = ANY($3)
    ORDER BY visible_at LIMIT $4 FOR UPDATE SKIP LOCKED)
UPDATE durable.activity_tasks t SET owner = $2, attempt = t.attempt + 1, started_at = durable.now(),
    deadline = LEAST(durable.now() + make_interval(secs => t.start_to_close), t.schedule_deadline,
        durable.now() + make_interval(secs => t.heartbeat_timeout))
FROM picked WHERE t.workflow_id = picked.workflow_id AND t.run_id = picked.run_id
    AND t.seq = picked.seq
RETURNING t.*, (SELECT w.workflow_name FROM durable.workflows w
    WHERE w.workflow_id = t.workflow_id AND w.run_id = t.run_id) AS workflow_name
"""

# Store.next_activity_visible_at: when the queue's next unowned task of these activities is
# visible (NULL: none).
_NEXT_ACTIVITY_VISIBLE_SQL = """
SELECT min(visible_at) FROM durable.activity_tasks
WHERE task_queue = $1 AND owner IS NULL AND activity_name = ANY($2)
"""

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


# ====================================================================== runs

# _latest_run: the workflow's open run, else its latest.
_LATEST_RUN_SQL = """
SELECT * FROM durable.workflows WHERE workflow_id = $1
ORDER BY closed_at IS NULL DESC, created_at DESC LIMIT 1
"""

# The same, locked (for a handle that changes the run).
_LATEST_RUN_FOR_UPDATE_SQL = """
SELECT * FROM durable.workflows WHERE workflow_id = $1
ORDER BY closed_at IS NULL DESC, created_at DESC LIMIT 1 FOR UPDATE
"""

# The last run of the chain of continue-as-new that begins with a given run.
_CHAIN_END_SQL = """
WITH RECURSIVE chain AS (
    SELECT run_id, continued_run_id, 1 AS depth FROM durable.workflows
    WHERE workflow_id = $1 AND run_id = $2
    UNION ALL
    SELECT w.run_id, w.continued_run_id, c.depth + 1
    FROM chain c JOIN durable.workflows w ON w.workflow_id = $1 AND w.run_id = c.continued_run_id)
SELECT run_id FROM chain ORDER BY depth DESC LIMIT 1
"""

# One run by its ids (Store.run_row; _addressed_run, for the end of a chain).
_RUN_SQL = "SELECT * FROM durable.workflows WHERE workflow_id = $1 AND run_id = $2"

# The same, locked (for a handle that changes the run).
_RUN_FOR_UPDATE_SQL = """
SELECT * FROM durable.workflows WHERE workflow_id = $1 AND run_id = $2 FOR UPDATE
"""

# _first_time: a client request recorded in the transaction; no row if it was applied before.
_RECORD_REQUEST_SQL = """
INSERT INTO durable.requests (workflow_id, request_id) VALUES ($1, $2)
ON CONFLICT DO NOTHING RETURNING true
"""

# New runs in one statement (one run, or many started together): each run's row (unless its
# workflow id has an open run), its first history event, its execution timeout, and a
# wake-up for the workers of its queue. Returns the runs opened.
_INSERT_RUNS_SQL = """
WITH req AS (
    SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[],
        $6::uuid[], $7::int[], $8::jsonb[], $9::float8[], $10::timestamptz[], $11::bytea[],
        $12::timestamptz[], $13::bytea[])
        AS q(workflow_id, run_id, workflow_name, task_queue, parent_workflow_id,
            parent_run_id, parent_seq, attributes, delay, ts, body, deadline, timeout_body)),
run AS (
    INSERT INTO durable.workflows (workflow_id, run_id, workflow_name, task_queue, status,
        parent_workflow_id, parent_run_id, parent_seq, attributes, ready_at, started_at)
    SELECT workflow_id, run_id, workflow_name, task_queue, 'pending', parent_workflow_id,
        parent_run_id, parent_seq, attributes, durable.now() + make_interval(secs => delay), ts
    FROM req
    ON CONFLICT (workflow_id) WHERE closed_at IS NULL DO NOTHING
    RETURNING workflow_id, run_id, task_queue),
started AS (
    INSERT INTO durable.history (workflow_id, run_id, seq, kind, ts, body)
    SELECT r.workflow_id, r.run_id, 1, $14::smallint, q.ts, q.body
    FROM run r JOIN req q ON q.run_id = r.run_id),
timeout AS (
    INSERT INTO durable.inbox (workflow_id, run_id, kind, visible_at, body)
    SELECT r.workflow_id, r.run_id, $15::smallint, q.deadline, q.timeout_body
    FROM run r JOIN req q ON q.run_id = r.run_id WHERE q.deadline IS NOT NULL)
SELECT run_id, (SELECT count(pg_notify('durable', 'w' || queue))
                FROM (SELECT DISTINCT task_queue AS queue FROM run) AS queues) AS woken
FROM run
"""

# _insert_history: events appended to a run's history, each column an array.
_INSERT_HISTORY_SQL = """
INSERT INTO durable.history (workflow_id, run_id, seq, kind, ts, body, ends_step)
SELECT $1, $2, s, k, t, b, e FROM unnest($3::int[], $4::smallint[], $5::timestamptz[],
    $6::bytea[], $7::bool[]) AS x(s, k, t, b, e)
"""

# Messages to open runs, in one statement (one message, or many sent together): each
# addressed run (a given run, or the workflow's open run) is locked in workflow_id order, so
# that concurrent posts cannot deadlock on each other, its inbox_seq bumped by its number of
# messages and made due; the inbox rows go in in the order given, and each queue's workers
# are woken once. Returns a row per message posted (those for closed runs post nothing).
# Each message finds its run by its own index lookup, and a run's messages travel as arrays
# from there on: no join between two sets of a batch, whose plan would rest on row estimates
# that a burst into tables last analyzed nearly empty (or nearly all closed) makes ~1, and
# then compare every row with every other. A run may close between the lookup (statement
# snapshot) and the update (latest version): the update then changes nothing and the run's
# messages are not posted. A run that has not begun keeps its due time: a message does not
# start a delayed run early (a run not delayed is due already).
_POST_SQL = """
WITH post AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::smallint[], $5::bytea[],
        $6::text[]) WITH ORDINALITY AS p(key, workflow_id, run_id, kind, body, request_id, ord)),
seen AS (
    SELECT p.key FROM post p WHERE p.request_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM durable.requests q
        WHERE q.workflow_id = p.workflow_id AND q.request_id = p.request_id)),
locked AS (
    SELECT 1 FROM durable.workflows w
    WHERE w.workflow_id = ANY($2::text[]) AND w.closed_at IS NULL
    ORDER BY w.workflow_id FOR UPDATE),
addressed AS (
    SELECT r.run_id AS open_run_id, p.* FROM post p
    CROSS JOIN LATERAL (SELECT w.run_id FROM durable.workflows w
        WHERE w.workflow_id = p.workflow_id AND w.closed_at IS NULL
            AND (p.run_id IS NULL OR w.run_id = p.run_id) OFFSET 0) r
    WHERE NOT (p.key = ANY(ARRAY(SELECT key FROM seen)))),
runs AS (
    SELECT workflow_id, open_run_id AS run_id, array_agg(key ORDER BY ord) AS keys,
        array_agg(kind ORDER BY ord) AS kinds, array_agg(body ORDER BY ord) AS bodies,
        array_agg(ord ORDER BY ord) AS ords, array_agg(request_id ORDER BY ord) AS request_ids
    FROM addressed GROUP BY workflow_id, open_run_id),
target AS (
    UPDATE durable.workflows w SET
        ready_at = CASE WHEN w.closed_at IS NULL AND w.status <> 'pending'
            THEN LEAST(coalesce(w.ready_at, 'infinity'), durable.now()) ELSE w.ready_at END,
        inbox_seq = w.inbox_seq + CASE WHEN w.closed_at IS NULL THEN cardinality(r.keys) ELSE 0 END
    FROM runs r
    WHERE w.workflow_id = r.workflow_id AND w.run_id = r.run_id AND (SELECT count(*) FROM locked) >= 0
    RETURNING w.workflow_id, w.run_id, w.task_queue, w.status, w.closed_at, r.keys, r.kinds,
        r.bodies, r.ords, r.request_ids),
posted AS (
    INSERT INTO durable.inbox (workflow_id, run_id, kind, body)
    SELECT t.workflow_id, t.run_id, m.kind, m.body
    FROM target t CROSS JOIN LATERAL unnest(t.kinds, t.bodies, t.ords) AS m(kind, body, ord)
    WHERE t.closed_at IS NULL
    ORDER BY m.ord
    RETURNING 1),
recorded AS (
    SELECT t.workflow_id, q.request_id
    FROM target t CROSS JOIN LATERAL unnest(t.request_ids) AS q(request_id)
    WHERE t.closed_at IS NULL AND q.request_id IS NOT NULL),
requested AS (
    INSERT INTO durable.requests (workflow_id, request_id)
    SELECT workflow_id, request_id FROM recorded
    ON CONFLICT DO NOTHING
    RETURNING 1),
checked AS (
    SELECT durable.ensure_new_requests(
        (SELECT count(*) FROM requested) = (SELECT count(*) FROM recorded)) AS ok)
SELECT k.key, t.workflow_id, t.run_id, t.task_queue, t.status, t.closed_at, false AS duplicate,
    (SELECT count(pg_notify('durable', 'w' || queue)) FROM (SELECT DISTINCT task_queue AS queue
        FROM target WHERE closed_at IS NULL) AS queues) AS woken
FROM target t CROSS JOIN LATERAL unnest(t.keys) AS k(key)
WHERE t.closed_at IS NULL AND (SELECT ok FROM checked)
UNION ALL
SELECT key, NULL, NULL, NULL, NULL, NULL, true, 0 FROM seen
"""

# _answer_call: a call answered once (one done already keeps its answer), and the client
# waiting for it woken.
_ANSWER_CALL_SQL = """
WITH answered AS (UPDATE durable.calls SET done = true, result = $2, failure = $3
    WHERE id = $1 AND NOT done RETURNING id)
SELECT pg_notify($4, 'r' || id::text) FROM answered
"""


# ====================================================================== closing

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


# ====================================================================== operator controls

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


# ====================================================================== starting

# _start_in: the workflow's open run, else its latest, locked while the id conflict and
# reuse policies decide on it.
_START_LATEST_RUN_SQL = """
SELECT run_id, status, closed_at FROM durable.workflows WHERE workflow_id = $1
ORDER BY closed_at IS NULL DESC, created_at DESC LIMIT 1 FOR UPDATE
"""


# ====================================================================== resets

# The runs resets or forks with this request id ($2) started already under the workflow ids
# given (the request made again).
_RESETS_DONE_SQL = """
SELECT workflow_id, run_id, reset_from_seq FROM durable.workflows
WHERE workflow_id = ANY($1::text[]) AND reset_request = $2
"""

# Each workflow's open run, else its latest, locked in workflow_id order (as posts lock them).
_LATEST_RUNS_SQL = """
SELECT l.* FROM unnest($1::text[]) AS i(workflow_id)
CROSS JOIN LATERAL (SELECT workflow_id, run_id, closed_at FROM durable.workflows w
    WHERE w.workflow_id = i.workflow_id
    ORDER BY closed_at IS NULL DESC, created_at DESC LIMIT 1 FOR UPDATE) AS l
ORDER BY i.workflow_id
"""

# The runs resets or forks start (arrays in one order), in one statement: each run's row, due
# at once (unless its workflow id has an open run: a start won it meanwhile); its first event
# (the old run's start, with the attributes the reset gives it); and the old run's events after
# its start and before the reset point, copied as they are (still sealed: no payload is opened
# and sealed again). Returns the runs opened.
_INSERT_RESET_RUNS_SQL = """
WITH req AS (
    SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[],
        $6::text[], $7::uuid[], $8::int[], $9::jsonb[], $10::int[], $11::text[], $12::uuid[],
        $13::int[], $14::timestamptz[], $15::bytea[], $16::bool[])
        AS q(workflow_id, run_id, workflow_name, task_queue, status, parent_workflow_id,
            parent_run_id, parent_seq, attributes, next_seq, old_id, old_run, reset_seq,
            ts, body, ends_step)),
run AS (
    INSERT INTO durable.workflows (workflow_id, run_id, workflow_name, task_queue, status,
        parent_workflow_id, parent_run_id, parent_seq, attributes, next_seq, ready_at,
        reset_from_run, reset_from_seq, reset_request)
    SELECT workflow_id, run_id, workflow_name, task_queue, status, parent_workflow_id,
        parent_run_id, parent_seq, attributes, next_seq, durable.now(), old_run, reset_seq, $17
    FROM req
    ON CONFLICT (workflow_id) WHERE closed_at IS NULL DO NOTHING
    RETURNING workflow_id, run_id),
started AS (
    INSERT INTO durable.history (workflow_id, run_id, seq, kind, ts, body, ends_step)
    SELECT r.workflow_id, r.run_id, 1, $18::smallint, q.ts, q.body, q.ends_step
    FROM run r JOIN req q ON q.run_id = r.run_id),
copied AS (
    INSERT INTO durable.history (workflow_id, run_id, seq, kind, ts, body, ends_step)
    SELECT r.workflow_id, r.run_id, h.seq, h.kind, h.ts, h.body, h.ends_step
    FROM run r JOIN req q ON q.run_id = r.run_id
    JOIN durable.history h ON h.workflow_id = q.old_id AND h.run_id = q.old_run
        AND h.seq > 1 AND h.seq < q.reset_seq),
woken AS (
    SELECT count(pg_notify('durable', 'w' || queue)) AS n
    FROM (SELECT DISTINCT task_queue AS queue FROM req) AS queues)
SELECT r.workflow_id, (SELECT n FROM woken) AS woken FROM run r
"""

# The old runs' open children that the kept events started (parent id, old run, new run, seq:
# arrays in one order): they report to the new runs.
_REPOINT_CHILDREN_SQL = """
UPDATE durable.workflows w SET parent_run_id = c.new_run
FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::int[]) AS c(parent_id, old_run, new_run, seq)
WHERE w.parent_workflow_id = c.parent_id AND w.parent_run_id = c.old_run
    AND w.parent_seq = c.seq AND w.closed_at IS NULL
RETURNING w.parent_run_id, w.parent_seq
"""

# Signals and updates open runs were sent and have not taken in yet, each run's oldest first.
_HELD_MESSAGES_SQL = """
SELECT run_id, kind, body FROM durable.inbox
WHERE workflow_id = ANY($1::text[]) AND run_id = ANY($2::uuid[]) AND kind = ANY($3::smallint[])
ORDER BY workflow_id, run_id, id
"""

# The updates open runs have not answered yet, moved to the runs they are reset to (which
# answer them) before the old runs close (which would cut them off).
_REPOINT_UPDATES_SQL = """
UPDATE durable.calls c SET run_id = r.new_run
FROM unnest($1::text[], $2::uuid[], $3::uuid[]) AS r(workflow_id, old_run, new_run)
WHERE c.workflow_id = r.workflow_id AND c.run_id = r.old_run AND c.kind = 2 AND NOT c.done
"""

# The new runs' first messages, in the order given (signals again, timers set again, the
# execution timeout, children's outcomes).
_FILL_INBOX_SQL = """
INSERT INTO durable.inbox (workflow_id, run_id, kind, ref, visible_at, body)
SELECT workflow_id, run_id, kind, ref, coalesce(visible_at, durable.now()), body
FROM unnest($1::text[], $2::uuid[], $3::smallint[], $4::int[], $5::timestamptz[],
    $6::bytea[]) WITH ORDINALITY AS m(workflow_id, run_id, kind, ref, visible_at, body, ord)
ORDER BY ord
"""

# Activities the kept events scheduled and did not see finish, scheduled again for the new
# runs from their first attempt; their queues' workers are woken.
_RESCHEDULE_ACTIVITIES_SQL = """
WITH scheduled AS (
    INSERT INTO durable.activity_tasks (workflow_id, run_id, seq, task_queue, activity_name,
        args, retry, start_to_close, heartbeat_timeout, schedule_deadline, deadline)
    SELECT workflow_id, run_id, seq, task_queue, name, args, retry, start_to_close, heartbeat,
        durable.now() + make_interval(secs => schedule_to_close),
        durable.now() + make_interval(secs => schedule_to_close)
    FROM unnest($1::text[], $2::uuid[], $3::int[], $4::text[], $5::text[], $6::bytea[],
        $7::bytea[], $8::float8[], $9::float8[], $10::float8[])
        AS a(workflow_id, run_id, seq, task_queue, name, args, retry, start_to_close,
            heartbeat, schedule_to_close)
    RETURNING task_queue)
SELECT count(pg_notify('durable', 'a' || q)) FROM (SELECT DISTINCT task_queue AS q FROM scheduled) AS queues
"""

# Reset runs point to the runs they were reset to (a handle on one, and its result, follow).
_MARK_RESET_SQL = """
UPDATE durable.workflows w SET continued_run_id = m.new_run
FROM unnest($1::text[], $2::uuid[], $3::uuid[]) AS m(workflow_id, run_id, new_run)
WHERE w.workflow_id = m.workflow_id AND w.run_id = m.run_id
"""


# ====================================================================== retention

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


# ====================================================================== test databases
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
FROM unnest($2::text[]) AS q(queue) CROSS JOIN (VALUES ('w'), ('a')) AS k(kind)
"""

# Store.time_state: whether any work is due or running now (a run due and not paused, an
# activity attempt running or visible), and when the next piece of work comes due: the
# earliest due time of an open run not paused (its timers, timeouts and messages), or of an
# activity attempt that waits for its retry.
_TIME_STATE_SQL = """
SELECT
    EXISTS (SELECT 1 FROM durable.workflows WHERE closed_at IS NULL AND paused_at IS NULL
            AND ready_at <= durable.now())
    OR EXISTS (SELECT 1 FROM durable.activity_tasks
               WHERE owner IS NOT NULL OR visible_at <= durable.now()) AS busy,
    least(
        (SELECT min(ready_at) FROM durable.workflows WHERE closed_at IS NULL
            AND paused_at IS NULL AND ready_at > durable.now()),
        (SELECT min(visible_at) FROM durable.activity_tasks WHERE owner IS NULL
            AND visible_at > durable.now())) AS next_due
"""


# new_test_database: whether the template of a schema version exists yet.
_DATABASE_EXISTS_SQL = "SELECT true FROM pg_database WHERE datname = $1"

# new_test_database: one process makes a template at a time (a session lock on its name).
_NAME_LOCK_SQL = "SELECT pg_advisory_lock(hashtext($1))"
_NAME_UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtext($1))"


# ====================================================================== connections

# _init_connection, on each new connection: every statement here is meant to be driven by
# an index. The inbox and task tables go from empty to large in seconds, faster than
# autovacuum's statistics, and a plan cached while a table looked empty would scan all of it
# on every commit from then on. JIT never pays for statements this short, and before
# Postgres 18 a disabled scan's cost would make some of them JIT-compile for seconds.
# Statements are planned once per connection (a generic plan) instead of for each of their
# first five runs: planning the commit statement costs about a round trip, so a fresh
# worker's first steps took twice as long as later ones.
_SESSION_SETTINGS_SQL = (
    "SET enable_seqscan = off; SET jit = off; SET plan_cache_mode = force_generic_plan"
)


# ====================================================================== migrations

# Whether the table of applied migrations exists (NULL: not yet).
_MIGRATIONS_TABLE_SQL = "SELECT to_regclass('durable.schema_migrations')"

# The versions applied.
_APPLIED_MIGRATIONS_SQL = "SELECT version FROM durable.schema_migrations"

# One process migrates at a time: a session lock, held across the migrations' transactions.
_MIGRATION_LOCK_SQL = "SELECT pg_advisory_lock($1)"

# Its release, once the migrations are applied (or one failed).
_MIGRATION_UNLOCK_SQL = "SELECT pg_advisory_unlock($1)"

# The schema and the table of applied versions, for a new database.
_CREATE_MIGRATIONS_TABLE_SQL = """
CREATE SCHEMA IF NOT EXISTS durable;
CREATE TABLE IF NOT EXISTS durable.schema_migrations (
    version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())
"""

# A migration applied, in its transaction.
_RECORD_MIGRATION_SQL = "INSERT INTO durable.schema_migrations (version) VALUES ($1)"
