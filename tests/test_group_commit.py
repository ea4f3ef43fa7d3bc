"""Group commit, at the store: commits of different runs that arrive together go out as one
pipelined transaction; each gets its own rows back, and a run whose fence moved fails alone
while the rest of its batch still commits."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

import durable
from durable._events import Event
from durable._events import EventType as E
from durable._serialization import decode, encode
from durable._store import (
    KIND_UPDATE,
    LostOwnership,
    MissedMessages,
    Store,
    TaskCommit,
    WorkflowTask,
)
from durable._store.commit import _commit_call
from durable._store.runs import _post_arrays
from durable._store.sql.runs import _POST_SQL
from durable._store.sql.workflow_tasks import _CLAIM_WORKFLOWS_SQL

from .conftest import wait_for

QUEUE = "batch"


@durable.workflow(name="batched")
async def batched(ctx: durable.WorkflowContext) -> None:
    """Never run: the test drives the store by hand."""


async def claimed_runs(client: durable.Client, worker_id: str, count: int) -> list[WorkflowTask]:
    await started_runs(client, worker_id, count)
    return await claim_runs(client, worker_id, count)


async def started_runs(client: durable.Client, worker_id: str, count: int) -> None:
    await client.store.register_worker(worker_id, QUEUE, "test", 60, ["batched"])
    for i in range(count):
        await client.start(batched, id=f"run-{i}", task_queue=QUEUE)


async def claim_runs(client: durable.Client, worker_id: str, count: int) -> list[WorkflowTask]:
    tasks = await client.store.claim_workflow_tasks(QUEUE, worker_id, ["batched"], [], count)
    assert len(tasks) == count
    return sorted(tasks, key=lambda t: t.workflow_id)


def side_effect_step(task: WorkflowTask, *, schedule: bool = False) -> TaskCommit:
    now = datetime.now(UTC)
    events = [Event(2, E.SIDE_EFFECT, now, {"value": encode(task.workflow_id)})]
    if schedule:  # an activity this worker runs itself: the commit returns its claimed row
        attrs = {
            "name": "act",
            "task_queue": QUEUE,
            "args": encode([]),
            "retry": None,
            "start_to_close": 30.0,
            "schedule_to_close": None,
            "heartbeat": None,
        }
        events.append(Event(3, E.ACTIVITY_SCHEDULED, now, attrs))
    return TaskCommit(
        events=events,
        next_seq=2 + len(events),
        inbox_seq=task.inbox_seq or 0,
        next_due=None,
        eager_slots=10,
        eager_activities=frozenset({(QUEUE, "act")}),
    )


async def history_seqs(store: Store, workflow_id: str, run_id: str) -> list[int]:
    return [e.seq for e in await store.load_history(workflow_id, run_id)]


async def commit_together(
    store: Store, worker_id: str, tasks: list[WorkflowTask], commits: list[TaskCommit]
) -> list[object]:
    return await asyncio.gather(
        *(store.commit_workflow_task(t, worker_id, c) for t, c in zip(tasks, commits, strict=True)),
        return_exceptions=True,
    )


async def test_a_batch_commits_every_run_and_returns_each_its_own_rows(
    client: durable.Client,
) -> None:
    worker_id = str(uuid.uuid4())
    tasks = await claimed_runs(client, worker_id, 4)
    commits = [side_effect_step(t, schedule=i % 2 == 1) for i, t in enumerate(tasks)]
    outcomes = await commit_together(client.store, worker_id, tasks, commits)
    for i, (task, outcome) in enumerate(zip(tasks, outcomes, strict=True)):
        assert isinstance(outcome, tuple), outcome
        eager, _ = outcome
        assert [(a.workflow_id, a.seq) for a in eager] == ([(task.workflow_id, 3)] if i % 2 else [])
        expected = [1, 2, 3] if i % 2 else [1, 2]
        assert await history_seqs(client.store, task.workflow_id, task.run_id) == expected


async def test_a_lost_fence_fails_only_its_own_commit(client: durable.Client) -> None:
    worker_id = str(uuid.uuid4())
    tasks = await claimed_runs(client, worker_id, 3)
    await client.store.pool.execute(  # another worker took run-1 over
        "UPDATE durable.workflows SET fence = fence + 1 WHERE workflow_id = 'run-1'"
    )
    outcomes = await commit_together(
        client.store, worker_id, tasks, [side_effect_step(t) for t in tasks]
    )
    assert isinstance(outcomes[1], LostOwnership)
    assert isinstance(outcomes[0], tuple) and isinstance(outcomes[2], tuple)
    seqs = [await history_seqs(client.store, t.workflow_id, t.run_id) for t in tasks]
    assert seqs == [[1, 2], [1], [1, 2]]


async def test_a_repeated_commit_is_refused_not_duplicated(client: durable.Client) -> None:
    worker_id = str(uuid.uuid4())
    tasks = await claimed_runs(client, worker_id, 2)
    commits = [side_effect_step(t) for t in tasks]
    await commit_together(client.store, worker_id, tasks, commits)
    again = await commit_together(client.store, worker_id, tasks, commits)
    assert all(isinstance(o, LostOwnership) for o in again)
    for task in tasks:
        assert await history_seqs(client.store, task.workflow_id, task.run_id) == [1, 2]


@pytest.fixture(autouse=True)
def _needs_a_batching_pool(client: durable.Client) -> None:
    assert client.store.pool.get_max_size() >= 4  # room for several batches in flight


def closing_step(task: WorkflowTask, result: str) -> TaskCommit:
    now = datetime.now(UTC)
    event = Event(2, E.WORKFLOW_COMPLETED, now, {"result": encode(result)}, ends_step=True)
    return TaskCommit(
        events=[event],
        next_seq=3,
        inbox_seq=task.inbox_seq or 0,
        next_due=None,
        consumed=[m.id for m in task.messages],
        started_children=False,
        has_parent=False,
    )


async def test_a_run_closed_by_the_commit_statement_leaves_nothing_behind(
    client: durable.Client,
) -> None:
    worker_id = str(uuid.uuid4())
    await started_runs(client, worker_id, 2)
    update = await client.store.create_call(KIND_UPDATE, "run-0", None, "late", encode([]))
    tasks = await claim_runs(client, worker_id, 2)  # the step reads the update, never answers
    outcomes = await commit_together(
        client.store, worker_id, tasks, [closing_step(t, f"done {t.workflow_id}") for t in tasks]
    )
    assert outcomes == [([], None), ([], None)]
    for task in tasks:
        handle = client.get_handle(task.workflow_id)
        assert await handle.result(timeout=5) == f"done {task.workflow_id}"
        assert (await handle.describe()).status == "completed"
    pool = client.store.pool
    assert await pool.fetchval("SELECT count(*) FROM durable.inbox") == 0
    assert (
        await pool.fetchval("SELECT count(*) FROM durable.workflows WHERE ready_at IS NOT NULL")
        == 0
    )
    outcome = await client.store.call_outcome(update)
    assert outcome is not None and outcome.result is None
    failure = client.store.open_failure(outcome.failure)
    assert failure is not None
    assert failure["message"] == "workflow 'run-0' closed (completed) before the update completed"


async def test_a_closing_step_that_missed_a_message_writes_nothing(client: durable.Client) -> None:
    """A message that reached the run after its closing step read the inbox: the commit
    fails as a whole (MissedMessages) and the run stays open with the message."""
    worker_id = str(uuid.uuid4())
    tasks = await claimed_runs(client, worker_id, 2)
    await client.get_handle("run-1").signal("late")
    outcomes = await commit_together(
        client.store, worker_id, tasks, [closing_step(t, "done") for t in tasks]
    )
    assert outcomes[0] == ([], None)
    assert isinstance(outcomes[1], MissedMessages)
    assert (await client.get_handle("run-0").describe()).status == "completed"
    late = await client.get_handle("run-1").describe()
    assert (late.status, late.history_length) == ("running", 1)
    assert await _count(client.store.pool, "inbox") == 1


@durable.activity(name="nobody-serves-this", task_queue="nobody")
async def unserved() -> None:
    """Scheduled but never run: no worker serves its queue."""


@durable.workflow(name="leaves-work-behind", task_queue=QUEUE)
async def leaves_work_behind(ctx: durable.WorkflowContext) -> str:
    pending = [ctx.start_activity(unserved), asyncio.ensure_future(ctx.sleep(3600))]
    await ctx.wait_signal("stop")
    assert not any(p.done() for p in pending)
    return "done"


async def test_a_closing_workflow_takes_its_pending_tasks_and_timers_with_it(
    client: durable.Client,
) -> None:
    pool = client.store.pool
    async with durable.Worker(client, task_queue=QUEUE, workflows=[leaves_work_behind]):
        handle = await client.start(leaves_work_behind, task_queue=QUEUE)
        await wait_for(lambda: _count(pool, "activity_tasks"), timeout=20)
        assert await _count(pool, "inbox") == 1  # the timer
        await handle.signal("stop")
        assert await handle.result(timeout=20) == "done"
    assert [await _count(pool, t) for t in ("activity_tasks", "inbox")] == [0, 0]


async def _count(pool: asyncpg.Pool, table: str) -> int:
    return int(await pool.fetchval(f"SELECT count(*) FROM durable.{table}"))


async def test_starts_made_together_each_get_their_run_event_and_timeout(
    client: durable.Client,
) -> None:
    handles = await asyncio.gather(
        *(
            client.start(
                batched,
                id=f"together-{i}",
                task_queue=QUEUE,
                execution_timeout=timedelta(hours=1) if i % 2 else None,
                attributes={"i": i},
            )
            for i in range(30)
        ),
        client.start(batched, id="together-0", task_queue=QUEUE),
        return_exceptions=True,
    )
    assert isinstance(handles[-1], durable.WorkflowAlreadyStartedError)
    pool = client.store.pool
    runs = await pool.fetch(
        "SELECT w.workflow_id, w.attributes, count(h.seq) AS events,"
        " (SELECT count(*) FROM durable.inbox i WHERE i.run_id = w.run_id) AS timeouts"
        " FROM durable.workflows w JOIN durable.history h ON h.run_id = w.run_id"
        " GROUP BY w.workflow_id, w.attributes, w.run_id ORDER BY w.workflow_id"
    )
    assert len(runs) == 30
    for run in runs:
        i = int(run["workflow_id"].split("-")[1])
        assert (run["attributes"], run["events"], run["timeouts"]) == ({"i": i}, 1, i % 2)


async def test_signals_sent_together_each_reach_their_open_run_once_and_in_order(
    client: durable.Client,
) -> None:
    for i in range(3):
        await client.start(batched, id=f"signalled-{i}", task_queue=QUEUE)
    closed = await client.start(batched, id="signalled-closed", task_queue=QUEUE)
    await closed.terminate("closed before the signals")
    sends = [client.get_handle(f"signalled-{i % 3}").signal("s", i) for i in range(36)]
    sends.append(client.get_handle("signalled-closed").signal("s", -1))
    sends.append(client.get_handle("never-started").signal("s", -2))
    outcomes = await asyncio.gather(*sends, return_exceptions=True)
    assert outcomes[:36] == [None] * 36
    assert all(isinstance(x, durable.WorkflowNotFoundError) for x in outcomes[36:38])
    pool = client.store.pool
    for i in range(3):
        run = await pool.fetchrow(
            "SELECT run_id, inbox_seq, ready_at IS NOT NULL AS due FROM durable.workflows"
            " WHERE workflow_id = $1",
            f"signalled-{i}",
        )
        inbox = await client.store.load_inbox(f"signalled-{i}", str(run["run_id"]))
        received = [m.attrs for m in inbox[1]]
        signals = [a for a in received if "name" in a]
        assert [decode(a["args"])[0][0] for a in signals] == list(range(i, 36, 3))
        assert run["due"] and run["inbox_seq"] == inbox[0] == len(received) == len(signals)
    assert await _count(pool, "inbox") == 36
    # a run no worker has begun is cancelled at once: none of its code ran, none cleans up
    await client.get_handle("signalled-0").cancel("before it began")
    assert (await client.get_handle("signalled-0").describe()).status == "cancelled"
    assert await _count(pool, "inbox") == 24


def _most_rows_compared_in_vain(plan: dict[str, Any]) -> int:
    """The most rows any node of an EXPLAIN ANALYZE plan joined and then threw away."""
    own = int(plan.get("Rows Removed by Join Filter", 0))
    return max([own, *(_most_rows_compared_in_vain(p) for p in plan.get("Plans", []))])


async def _explained(conn: asyncpg.Connection, sql: str, args: list[Any], mode: str) -> int:
    """Run ``sql`` under EXPLAIN ANALYZE (then roll it back) with the given plan cache mode."""
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
        plan = json.loads(await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args))
    finally:
        await transaction.rollback()
    return _most_rows_compared_in_vain(plan[0]["Plan"])


@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
async def test_a_burst_finds_each_run_by_its_key_whatever_the_statistics_say(
    client: durable.Client, mode: str
) -> None:
    """Statistics taken while nearly every run was closed and the inbox empty (what
    autovacuum mostly sees) make the planner expect one row where a burst brings 64: the
    statements of a burst must still find each run by its key, not compare each message or
    step with every run of the batch (or every inbox row with every claimed run)."""
    pool, worker_id = client.store.pool, str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO durable.workflows (workflow_id, run_id, workflow_name, task_queue, status,"
        " closed_at) SELECT 'old-' || i, gen_random_uuid(), 'batched', $1, 'completed', now()"
        " FROM generate_series(1, 500) AS i",
        QUEUE,
    )
    await pool.execute(  # an inbox that held messages once: pages, but no rows when analyzed
        "INSERT INTO durable.inbox (workflow_id, run_id, kind, body)"
        " SELECT workflow_id, run_id, $1, '' FROM durable.workflows, generate_series(1, 10)",
        int(E.SIGNAL_RECEIVED),
    )
    await pool.execute("DELETE FROM durable.inbox")
    await pool.execute("ANALYZE durable.workflows, durable.inbox")
    tasks = await claimed_runs(client, worker_id, 64)
    posts = [
        (str(i), t.workflow_id, None, E.SIGNAL_RECEIVED, b"", f"request {i}")
        for i, t in enumerate(tasks)
    ]
    steps = [(t, worker_id, side_effect_step(t)) for t in tasks]
    commit_sql, commit_args = _commit_call(client.store.codecs, steps)
    async with pool.acquire() as conn:
        assert await _explained(conn, _POST_SQL, _post_arrays(posts), mode) <= len(tasks)
        assert await _explained(conn, commit_sql, commit_args, mode) <= len(tasks)
        await asyncio.gather(*(client.get_handle(t.workflow_id).signal("s", 1) for t in tasks))
        claim_args = [QUEUE, worker_id, ["batched"], [], 100, [], None]
        assert await _explained(conn, _CLAIM_WORKFLOWS_SQL, claim_args, mode) <= len(tasks)
