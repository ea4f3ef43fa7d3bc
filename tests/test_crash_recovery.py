"""A worker killed with SIGKILL loses nothing; two workers share a task queue safely; a
stalled worker cannot write over the worker that took its workflow over."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

import durable
from durable._events import Event, EventType
from durable._serialization import encode
from durable._store import ActivityTask, LostOwnership, Store, TaskCommit, WorkflowTask

from .conftest import wait_for
from .steps_app import (
    dies_continuing_as_new,
    dies_in_activity,
    dies_in_step,
    ensure_table,
    make_worker,
    nap,
    steps,
)

APP = Path(__file__).with_name("steps_app.py")


@pytest.fixture
async def spawn(dsn: str) -> AsyncIterator[Callable[[], subprocess.Popen[bytes]]]:
    await ensure_table(dsn)
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(APP.parent.parent)}
        proc = subprocess.Popen([sys.executable, str(APP), dsn, "1.0"], env=env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


async def _completed_steps(handle: durable.WorkflowHandle[int]) -> set[int]:
    events = await handle.history()
    scheduled = {e.seq: e.args[0][0] for e in events if e.type == "ACTIVITY_SCHEDULED"}
    return {scheduled[e.scheduled] for e in events if e.type == "ACTIVITY_COMPLETED"}


async def _runs(dsn: str, workflow_id: str) -> dict[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT step, sum(runs) AS runs FROM step_runs WHERE workflow_id = $1 GROUP BY step",
            workflow_id,
        )
    finally:
        await conn.close()
    return {r["step"]: r["runs"] for r in rows}


async def test_sigkilled_worker_loses_nothing(
    dsn: str,
    client: durable.Client,
    spawn: Callable[[], subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = spawn()
    handle = await client.start(steps, 8, id="crash")
    await wait_for(lambda: _at_least(handle, 3), timeout=30)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    recorded_before_kill = await _completed_steps(handle)

    monkeypatch.setenv("STEPS_DSN", dsn)
    async with make_worker(client):
        assert await handle.result(timeout=60) == sum(i * i for i in range(8))

    runs = await _runs(dsn, "crash")
    assert set(runs) == set(range(8)), "every step ran"
    for step in recorded_before_kill:
        assert runs[step] == 1, f"step {step} was recorded before the kill but ran again"
    assert await _completed_steps(handle) == set(range(8))
    events = await handle.history()
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "history is contiguous"


async def test_activity_whose_worker_dies_after_its_side_effect_runs_again_with_the_same_key(
    dsn: str,
    client: durable.Client,
    spawn: Callable[[], subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker dies after the activity did its work, before the outcome was recorded: the
    activity runs again (at least once) with the same idempotency key, and its result is
    recorded once."""
    first = spawn()
    handle = await client.start(dies_in_activity, id="dies-in-activity")
    assert await asyncio.to_thread(first.wait, 30) == -signal.SIGKILL
    assert await handle.history() and (await handle.describe()).status == "running"

    monkeypatch.setenv("STEPS_DSN", dsn)
    async with make_worker(client):
        assert await handle.result(timeout=30) == "done"
    conn = await asyncpg.connect(dsn)
    try:
        effects = await conn.fetch("SELECT * FROM effects ORDER BY attempt")
    finally:
        await conn.close()
    assert [(r["attempt"], r["pid"]) for r in effects] == [(1, first.pid), (2, os.getpid())]
    assert effects[0]["idempotency_key"] == effects[1]["idempotency_key"]
    types = [e.type for e in await handle.history()]
    assert types.count("ACTIVITY_SCHEDULED") == types.count("ACTIVITY_COMPLETED") == 1


async def test_worker_dying_inside_a_workflow_step_leaves_the_last_commit(
    dsn: str,
    client: durable.Client,
    spawn: Callable[[], subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker dies while workflow code runs (the first activity's result was handed to
    the code in memory, the step is not committed): nothing of that step is written; another
    worker replays the history and runs the step again. The first activity's outcome was never
    committed, so it runs again (at least once); each completion is recorded once."""
    first = spawn()
    handle = await client.start(dies_in_step, id="dies-in-step")
    assert await asyncio.to_thread(first.wait, 30) == -signal.SIGKILL
    types = [e.type for e in await handle.history()]
    assert types == ["WORKFLOW_STARTED", "ACTIVITY_SCHEDULED"]  # as of the last commit

    monkeypatch.setenv("STEPS_DSN", dsn)
    async with make_worker(client):
        assert await handle.result(timeout=30) == 1 + 4
    runs = await _runs(dsn, "dies-in-step")
    assert runs[1] >= 1 and runs[2] == 1
    events = await handle.history()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.type for e in events] == [
        "WORKFLOW_STARTED",
        "ACTIVITY_SCHEDULED",
        "ACTIVITY_COMPLETED",
        "ACTIVITY_SCHEDULED",
        "ACTIVITY_COMPLETED",
        "WORKFLOW_COMPLETED",
    ]


async def test_worker_dying_as_it_continues_as_new_leaves_one_next_run(
    dsn: str,
    client: durable.Client,
    spawn: Callable[[], subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = spawn()
    handle = await client.start(dies_continuing_as_new, 1, id="dies-continuing")
    assert await asyncio.to_thread(first.wait, 30) == -signal.SIGKILL
    assert (await handle.describe()).status == "running"  # run 1 was not closed

    monkeypatch.setenv("STEPS_DSN", dsn)
    async with make_worker(client):
        assert await handle.result(timeout=30) == 2
    runs = [d async for d in client.list(workflow_name="dies_continuing_as_new")]
    assert sorted(d.status for d in runs) == ["completed", "continued_as_new"]


CLIENT_START = """
import asyncio, sys
import durable
from tests.steps_app import steps

async def main():
    client = await durable.Client.connect(sys.argv[1])
    await client.start(steps, 1, id="mid-start")

asyncio.run(main())
"""


async def test_client_killed_in_the_middle_of_a_start_leaves_nothing(
    dsn: str, client: durable.Client
) -> None:
    """A client process dies after its start inserted the run but before it committed: the
    start is one transaction, so nothing of it remains, and the id can be started again."""
    admin = await asyncpg.connect(dsn)
    try:
        locked = admin.transaction()
        await locked.start()
        await admin.execute("LOCK TABLE durable.history IN ACCESS EXCLUSIVE MODE")
        env = {**os.environ, "PYTHONPATH": str(APP.parent.parent)}
        proc = subprocess.Popen([sys.executable, "-c", CLIENT_START, dsn], env=env)
        try:
            blocked = await wait_for(lambda: _backend_inserting_history(dsn), timeout=30)
        finally:
            proc.kill()
            proc.wait(timeout=10)
        await locked.rollback()
        await wait_for(lambda: _backend_gone(dsn, blocked), timeout=30)
    finally:
        await admin.close()
    assert [d async for d in client.list()] == []
    handle = await client.start(steps, 1, id="mid-start")
    assert [e.type for e in await handle.history()] == ["WORKFLOW_STARTED"]


async def _backend_inserting_history(dsn: str) -> int | None:
    conn = await asyncpg.connect(dsn)
    try:
        # the start statement inserts the run, then its history, which the test locked (the
        # statement's text is shown cut at track_activity_query_size: its start is matched)
        pid: int | None = await conn.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE '%INSERT INTO durable.workflows%'"
        )
        return pid
    finally:
        await conn.close()


async def _backend_gone(dsn: str, pid: int) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)
    finally:
        await conn.close()


async def _timer_started(handle: durable.WorkflowHandle[float]) -> bool:
    return any(e.type == "TIMER_STARTED" for e in await handle.history())


async def test_timer_fires_after_its_worker_was_killed(
    dsn: str,
    client: durable.Client,
    spawn: Callable[[], subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = spawn()
    handle = await client.start(nap, 1.5, id="nap")
    await wait_for(lambda: _timer_started(handle), timeout=30)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)

    monkeypatch.setenv("STEPS_DSN", dsn)
    async with make_worker(client):
        assert await handle.result(timeout=30) >= 1.5  # in workflow time
    events = await handle.history()
    (started,) = [e for e in events if e.type == "TIMER_STARTED"]
    (fired,) = [e for e in events if e.type == "TIMER_FIRED"]
    assert fired.timestamp.timestamp() >= started.fire_at, "the timer fired early"


async def _live_workers(dsn: str, count: int) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        live = await conn.fetchval("SELECT count(*) FROM durable.workers WHERE expires_at > now()")
    finally:
        await conn.close()
    return bool(live >= count)


async def _at_least(handle: durable.WorkflowHandle[int], count: int) -> bool:
    return len(await _completed_steps(handle)) >= count


async def test_two_workers_share_a_queue(
    dsn: str, client: durable.Client, spawn: Callable[[], subprocess.Popen[bytes]]
) -> None:
    workers = [spawn(), spawn()]
    await wait_for(lambda: _live_workers(dsn, 2), timeout=30)
    handles = [await client.start(steps, 4, id=f"shared-{i}") for i in range(16)]
    results = await asyncio.gather(*(h.result(timeout=90) for h in handles))
    assert results == [sum(i * i for i in range(4))] * 16

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT workflow_id, step, pid, runs FROM step_runs")
    finally:
        await conn.close()
    assert {r["pid"] for r in rows} == {w.pid for w in workers}, "both workers did work"
    executions: dict[tuple[str, int], int] = {}
    for r in rows:
        key = (r["workflow_id"], r["step"])
        executions[key] = executions.get(key, 0) + r["runs"]
    assert len(executions) == 16 * 4
    assert set(executions.values()) == {1}, "no activity ran twice (no task ran on two workers)"
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        assert await asyncio.to_thread(worker.wait, 20) == 0


# ---------------------------------------------------------------------------- fencing


@durable.workflow
async def parked(ctx: durable.WorkflowContext) -> str:
    return str(await ctx.wait_signal("go"))


def _one_event(task: WorkflowTask, value: bytes) -> TaskCommit:
    event = Event(task.next_seq, EventType.SIDE_EFFECT, datetime.now(UTC), {"value": value})
    consumed = [m.id for m in task.messages]
    return TaskCommit([event], task.next_seq + 1, task.inbox_seq or 0, None, consumed)


async def test_a_stalled_worker_cannot_write_over_its_successor(
    dsn: str, client: durable.Client
) -> None:
    """Worker A claims a run, stalls past its lease, B takes the run over: A's commit is
    refused (before and after B's), and the history holds only B's event."""
    store = client.store
    stalled, successor = str(uuid.uuid4()), str(uuid.uuid4())
    for worker_id in (stalled, successor):
        await store.register_worker(worker_id, "default", worker_id, 60.0, ["parked"])
    handle = await client.start(parked, id="fenced")
    (task_a,) = await store.claim_workflow_tasks("default", stalled, ["parked"], [], 10)
    await store.pool.execute(  # A stalls: its lease lapses without it noticing
        "UPDATE durable.workers SET expires_at = now() - interval '1 second' WHERE worker_id = $1",
        stalled,
    )
    (task_b,) = await store.claim_workflow_tasks("default", successor, ["parked"], [], 10)
    assert task_b.fence > task_a.fence
    with pytest.raises(LostOwnership):
        await store.commit_workflow_task(task_a, stalled, _one_event(task_a, b"A"))
    await store.commit_workflow_task(task_b, successor, _one_event(task_b, b"B"))
    with pytest.raises(LostOwnership):
        await store.commit_workflow_task(task_a, stalled, _one_event(task_a, b"A"))
    history = await store.load_history("fenced", handle.run_id or "")
    assert [(e.seq, e.type) for e in history] == [
        (1, EventType.WORKFLOW_STARTED),
        (2, EventType.SIDE_EFFECT),
    ]
    assert history[1].attrs["value"] == b"B"


async def test_runs_of_a_worker_gone_for_an_hour_stay_claimable(client: durable.Client) -> None:
    """A worker's record is purged an hour after its lease lapsed; its runs go with it back
    to the unowned ones (a claim finds lapsed owners through their records)."""
    store = client.store
    gone, successor = str(uuid.uuid4()), str(uuid.uuid4())
    await store.register_worker(gone, "default", gone, 60.0, ["parked"])
    await client.start(parked, id="orphan")
    (task_a,) = await store.claim_workflow_tasks("default", gone, ["parked"], [], 10)
    await store.pool.execute(
        "UPDATE durable.workers SET expires_at = now() - interval '2 hours' WHERE worker_id = $1",
        gone,
    )
    await store.register_worker(successor, "default", successor, 60.0, ["parked"])
    assert await store.pool.fetchval("SELECT count(*) FROM durable.workers") == 1
    (task_b,) = await store.claim_workflow_tasks("default", successor, ["parked"], [], 10)
    assert (task_b.workflow_id, task_b.fence) == ("orphan", task_a.fence + 1)


async def test_a_worker_leaving_hands_back_its_open_runs_and_leaves_closed_ones_alone(
    client: durable.Client,
) -> None:
    """Shutdown and the purge of lapsed workers release open runs only: rewriting every run
    a worker ever closed would take a scan and a new row version for each."""
    store, leaving, lapsed = client.store, str(uuid.uuid4()), str(uuid.uuid4())
    for worker_id in (leaving, lapsed):
        await store.register_worker(worker_id, "default", worker_id, 60.0, ["parked"])
    await client.start(parked, id="done")
    await client.start(parked, id="open")
    await client.start(parked, id="lapsed-open")
    await store.claim_workflow_tasks("default", leaving, ["parked"], [], 2)
    await store.claim_workflow_tasks("default", lapsed, ["parked"], [], 1)
    await client.get_handle("done").terminate("closed before its worker leaves")
    await store.pool.execute("UPDATE durable.workflows SET owner = $1", leaving)
    await store.pool.execute(
        "UPDATE durable.workflows SET owner = $1 WHERE workflow_id = 'lapsed-open'", lapsed
    )
    versions = "SELECT workflow_id, xmin::text AS version, owner FROM durable.workflows"
    before = {r["workflow_id"]: r for r in await store.pool.fetch(versions)}
    await store.unregister_worker(leaving)
    await store.pool.execute(
        "UPDATE durable.workers SET expires_at = now() - interval '2 hours' WHERE worker_id = $1",
        lapsed,
    )
    await store.register_worker(str(uuid.uuid4()), "default", "next", 60.0, ["parked"])
    after = {r["workflow_id"]: r for r in await store.pool.fetch(versions)}
    assert after["open"]["owner"] is None and after["lapsed-open"]["owner"] is None
    assert after["done"]["version"] == before["done"]["version"]
    assert str(after["done"]["owner"]) == leaving


LOCAL_RUNS: list[str] = []


@durable.activity
async def after_sleep(tag: str) -> str:
    LOCAL_RUNS.append(tag)
    return tag.upper()


@durable.workflow
async def sleeps_then_works(ctx: durable.WorkflowContext) -> str:
    await ctx.sleep(0.3)
    return await ctx.local_activity(after_sleep, "x")


async def test_a_timer_recorded_by_a_worker_that_died_is_not_fired_again(
    client: durable.Client,
) -> None:
    """A worker's claim records the due timer in history, then the worker dies before its
    next commit: the run is due again one lease later, and its successor replays the fired
    timer from history (it is not delivered a second time) and goes on from there."""
    LOCAL_RUNS.clear()
    store, dead = client.store, str(uuid.uuid4())
    async with durable.Worker(client, workflows=[sleeps_then_works]):
        handle = await client.start(sleeps_then_works, id="recorded-timer")
        await wait_for(
            lambda: store.pool.fetchval(
                "SELECT next_seq > 2 FROM durable.workflows WHERE workflow_id = 'recorded-timer'"
            )
        )
    await store.register_worker(dead, "default", "dead", 60.0, ["sleeps_then_works"])
    await asyncio.sleep(0.4)  # the timer is due
    tasks = await store.claim_workflow_tasks("default", dead, ["sleeps_then_works"], [], 10)
    (task,) = await store.record_fired_timers(dead, tasks, lease=0.2)
    assert task.fired is not None and task.messages == ()
    await store.pool.execute(
        "UPDATE durable.workers SET expires_at = now() - interval '1 second' WHERE worker_id = $1",
        dead,
    )
    async with durable.Worker(client, workflows=[sleeps_then_works]):
        assert await handle.result(timeout=20) == "X"
    kinds = [e.type for e in await handle.history()]
    assert kinds.count("TIMER_FIRED") == 1
    assert LOCAL_RUNS == ["x"]


@durable.activity(retry=durable.RetryPolicy(initial_interval=timedelta(milliseconds=10)))
async def remote(text: str) -> str:
    return text  # never run here: the test claims and completes its attempts by hand


@durable.workflow
async def awaits_remote(ctx: durable.WorkflowContext) -> str:
    return await ctx.activity(remote, "x")


async def test_a_stalled_worker_cannot_record_an_outcome_for_a_retried_attempt(
    client: durable.Client,
) -> None:
    """Worker A claims attempt 1, stalls past its lease; the attempt is reaped and B claims
    attempt 2: A's late outcome is discarded, B's is the one the workflow sees."""
    store = client.store
    stalled, successor = str(uuid.uuid4()), str(uuid.uuid4())
    for worker_id in (stalled, successor):
        await store.register_worker(worker_id, "default", worker_id, 60.0, [])
    async with durable.Worker(client, workflows=[awaits_remote]):  # runs the workflow only
        handle = await client.start(awaits_remote, id="fenced-activity")
        (task_a,) = await wait_for(lambda: _claim(store, stalled))
        await store.pool.execute(
            "UPDATE durable.workers SET expires_at = now() - interval '1 second'"
            " WHERE worker_id = $1",
            stalled,
        )
        await store.reap_activities("default")  # (the worker's own reaper may be first)
        (task_b,) = await wait_for(lambda: _claim(store, successor))
        assert task_b.attempt == task_a.attempt + 1
        assert not await store.complete_activity(task_a, stalled, encode("late"))
        assert await store.complete_activity(task_b, successor, encode("on time"))
        assert await handle.result(timeout=20) == "on time"
    types = [e.type for e in await handle.history()]
    assert types.count("ACTIVITY_COMPLETED") == 1


@durable.activity
async def _double(n: int) -> int:
    return 2 * n


@durable.workflow
async def _doubles(ctx: durable.WorkflowContext, n: int) -> int:
    return await ctx.activity(_double, n)


async def test_a_step_that_loses_the_database_runs_again_and_says_so_in_one_line(
    client: durable.Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection that dies under a step's commit (the commit may or may not have landed)
    gives the run back: the step runs again from history, and the worker logs a warning, not
    an error with a traceback (under faults every terminated connection made one)."""
    real = client.store.commit_workflow_task
    lost: list[str] = []

    async def dies_once(task: WorkflowTask, worker_id: str, commit: TaskCommit) -> object:
        if not lost:
            lost.append(task.workflow_id)
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle")
        return await real(task, worker_id, commit)

    monkeypatch.setattr(client.store, "commit_workflow_task", dies_once)
    caplog.set_level("WARNING", logger="durable.worker")
    async with durable.Worker(client, workflows=[_doubles], activities=[_double]):
        assert await client.execute(_doubles, 21) == 42
    assert lost
    worker_lines = [r for r in caplog.records if r.name == "durable.worker"]
    assert [r.levelname for r in worker_lines if "lost the database" in r.getMessage()] == [
        "WARNING"
    ]
    assert not [r for r in worker_lines if r.levelname == "ERROR"], worker_lines


async def _claim(store: Store, worker_id: str) -> list[ActivityTask]:
    """The attempts of activity "remote" claimed for ``worker_id`` (at most one)."""
    return (await store.claim_activity_tasks("default", worker_id, ["remote"], 1)).tasks
