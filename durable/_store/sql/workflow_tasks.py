"""The statements of the store's workflow tasks (used by durable/_store/workflow_tasks.py and
where named), each with why it is written so."""

from __future__ import annotations

from ..._flow import PRIORITIES


# Store.claim_workflow_tasks: the worker's own due runs, unowned ones, then those of workers
# whose lease lapsed (none paused: see migration 0006). Its own and the lapsed workers' are
# index ranges of workflows_ready_by_owner in due order; the unowned ones (new runs, runs
# given back) one range per priority of workflows_unowned_by_priority, the oldest of each
# level locked, then the best of them by priority (less one level per priority_aging they
# waited, if the queue ages) then age.
# A worker whose own lease lapsed (an outage longer than the lease) is not one of those: its
# runs are its own, found once; counted twice they would bring each message twice.
# A run pinned to a build ($6: the builds this worker accepts) goes only to such workers; a
# run not pinned yet is pinned to this worker's build ($7, NULL: none).
# A new run's first event comes along, read in the statement's snapshot, unless the run
# changed between that snapshot and its lock (its fence moved: a debounced start rewrote
# that event, see _DEBOUNCE_RUN_SQL); then the worker loads it afresh.
def _unowned_by_priority() -> str:
    return ",\n".join(
        f"""u{level} AS (
    SELECT workflow_id, run_id, status <> 'pending' AS resumed, priority, ready_at
    FROM durable.workflows
    WHERE task_queue = $1 AND priority = {level} AND owner IS NULL AND ready_at <= durable.now()
        AND paused_at IS NULL AND workflow_name = ANY($3)
        AND (build_id IS NULL OR build_id = ANY($6::text[]))
    ORDER BY ready_at LIMIT greatest($5 - (SELECT count(*) FROM mine), 0)
    FOR UPDATE SKIP LOCKED)"""
        for level in PRIORITIES
    )


_CLAIM_WORKFLOWS_SQL = """
WITH mine AS (
    SELECT workflow_id, run_id, workflow_name, fence, next_seq, true AS resumed
    FROM durable.workflows
    WHERE task_queue = $1 AND owner = $2 AND ready_at <= durable.now() AND paused_at IS NULL
        AND workflow_name = ANY($3) AND NOT (run_id = ANY($4::uuid[]))
    ORDER BY ready_at LIMIT $5),
{unowned_by_priority},
unowned AS (
    SELECT u.workflow_id, u.run_id, u.resumed FROM ({unowned_union}) u
    ORDER BY u.priority - coalesce(floor(extract(epoch FROM durable.now() - u.ready_at)
        / (SELECT priority_aging FROM durable.task_queues WHERE task_queue = $1)), 0), u.ready_at
    LIMIT greatest($5 - (SELECT count(*) FROM mine), 0)),
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
LEFT JOIN durable.history h ON NOT c.resumed AND c.fence = w.fence + 1
    AND h.workflow_id = c.workflow_id AND h.run_id = c.run_id AND h.seq = 1
ORDER BY c.workflow_id, c.run_id, i.visible_at, i.id
""".replace("{unowned_by_priority}", _unowned_by_priority()).replace(
    "{unowned_union}", " UNION ALL ".join(f"SELECT * FROM u{level}" for level in PRIORITIES)
)

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
