"""Load and backpressure: far more workflows than a worker can run at once.

A backlog must not make a worker exceed its limits (max_concurrent_activities,
max_concurrent_workflow_tasks, max_cached_workflows), grow its memory or its asyncio task
count with the backlog, or exhaust its connection pool; clients get clear errors and time
outs, and a call cut off by the database leaves all of its writes or none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import psutil  # type: ignore[import-untyped]
import pytest

import durable
from durable import WorkflowContext, activity, workflow

from .conftest import wait_for


class Gauge:
    """How many callers are inside at once, and the most there ever were (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.now = 0
        self.peak = 0
        self.total = 0

    def enter(self) -> None:
        with self._lock:
            self.now += 1
            self.total += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self._lock:
            self.now -= 1


ACTIVITIES = Gauge()  # every activity attempt, async and sync (they share one limit)
SYNC_ACTIVITIES = Gauge()
REPLAYED: set[str] = set()  # workflows whose instance was rebuilt from history


@activity
async def async_probe(n: int) -> int:
    ACTIVITIES.enter()
    try:
        await asyncio.sleep(0.002)
        return n
    finally:
        ACTIVITIES.leave()


@activity
def sync_probe(n: int) -> int:
    ACTIVITIES.enter()
    SYNC_ACTIVITIES.enter()
    try:
        time.sleep(0.002)
        return n * 2
    finally:
        SYNC_ACTIVITIES.leave()
        ACTIVITIES.leave()


@workflow
async def fan(ctx: WorkflowContext, n: int) -> int:
    a, b = await asyncio.gather(ctx.activity(async_probe, n), ctx.activity(sync_probe, n))
    if ctx.is_replaying:
        REPLAYED.add(ctx.info.workflow_id)
    c = await ctx.activity(async_probe, a + b)
    return c + 1


def _gauge_workflow_tasks(worker: durable.Worker) -> Gauge:
    """Count the worker's workflow tasks in flight (what max_concurrent_workflow_tasks limits:
    claiming a run, replaying or stepping it, committing)."""
    gauge = Gauge()
    inner: Callable[..., Any] = worker._workflow_tasks.run_task

    async def counted(*args: Any, **kwargs: Any) -> None:
        gauge.enter()
        try:
            await inner(*args, **kwargs)
        finally:
            gauge.leave()

    worker._workflow_tasks.run_task = counted  # type: ignore[method-assign]
    return gauge


async def _watch_cache(worker: durable.Worker, sizes: list[int]) -> None:
    while True:
        sizes.append(len(worker._workflow_tasks.cache))
        await asyncio.sleep(0.005)


async def test_backlog_respects_worker_limits(dsn: str, client: durable.Client) -> None:
    """1,000 workflows (3,000 activities) through a worker with 4 activity slots, 3 workflow
    task slots and a sticky cache of 2 (fewer runs than it has activities in flight, so runs
    are evicted while they wait): all complete, no limit is ever exceeded."""
    count = 1000
    ACTIVITIES.reset()
    SYNC_ACTIVITIES.reset()
    REPLAYED.clear()
    handles = await asyncio.gather(
        *(client.start(fan, i, id=f"fan-{i}", task_queue="load") for i in range(count))
    )
    worker_client = await durable.Client.connect(dsn)  # a pool of its own, as in production
    worker = durable.Worker(
        worker_client,
        task_queue="load",
        workflows=[fan],
        activities=[async_probe, sync_probe],
        max_concurrent_activities=4,
        max_concurrent_workflow_tasks=3,
        max_cached_workflows=2,
    )
    workflow_tasks = _gauge_workflow_tasks(worker)
    cache_sizes: list[int] = []
    try:
        async with worker:
            watcher = asyncio.create_task(_watch_cache(worker, cache_sizes))
            try:
                await wait_for(lambda: _all_closed(dsn, count), timeout=100, interval=0.2)
            finally:
                watcher.cancel()
    finally:
        await worker_client.close()
    results = await asyncio.gather(*(h.result(timeout=10) for h in handles))
    assert results == [3 * i + 1 for i in range(count)], "every workflow completed correctly"
    assert ACTIVITIES.total == 3 * count, "each activity ran once"
    assert SYNC_ACTIVITIES.total == count

    print(
        f"peaks: activities {ACTIVITIES.peak} (sync {SYNC_ACTIVITIES.peak}), workflow tasks "
        f"{workflow_tasks.peak}, cache {max(cache_sizes)}; replayed {len(REPLAYED)}"
    )
    assert ACTIVITIES.peak <= 4, f"{ACTIVITIES.peak} activities ran at once (limit 4)"
    assert workflow_tasks.peak <= 3, f"{workflow_tasks.peak} workflow tasks at once (limit 3)"
    assert max(cache_sizes) <= 2, f"the sticky cache held {max(cache_sizes)} runs (limit 2)"
    # the limits were reached, so the bounds above were tested, not just idle
    assert ACTIVITIES.peak >= 2 and workflow_tasks.peak >= 2 and max(cache_sizes) == 2
    # runs were evicted from the cache mid-way and completed by replay
    assert REPLAYED, "no workflow was ever rebuilt from its history"


async def _all_closed(dsn: str, count: int) -> bool:
    return await _count(dsn, "closed_at IS NOT NULL") >= count


# ---------------------------------------------------------------------- a worker process

APP = Path(__file__).with_name("load_app.py")
BALLAST = 8 * 1024  # characters each parked workflow holds (in its arguments and state)


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


async def _count(dsn: str, where: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(f"SELECT count(*) FROM durable.workflows WHERE {where}"))
    finally:
        await conn.close()


PARKED = "attributes->>'stage' = 'parked' AND closed_at IS NULL AND ready_at IS NULL"


async def _park(client: durable.Client, dsn: str, first: int, count: int, pid: int) -> int:
    """Start workflows first..first+count-1 and wait until all are parked; returns the peak
    RSS of the worker process meanwhile."""
    peak = _rss(pid)
    done = False

    async def sample() -> None:
        nonlocal peak
        while not done:
            peak = max(peak, _rss(pid))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    try:
        for batch in range(first, first + count, 500):
            await asyncio.gather(
                *(
                    client.start(
                        "parked", i, f"{i:08}" * (BALLAST // 8), id=f"p-{i}", task_queue="load"
                    )
                    for i in range(batch, min(batch + 500, first + count))
                )
            )
        total = first + count
        await wait_for(lambda: _parked(dsn, total), timeout=120, interval=0.2)
    finally:
        done = True
        await sampler
    return max(peak, _rss(pid))


async def _parked(dsn: str, count: int) -> bool:
    return await _count(dsn, PARKED) >= count


@pytest.fixture
async def load_worker(dsn: str, tmp_path: Path) -> AsyncIterator[LoadWorker]:
    stats = tmp_path / "stats.json"
    errors = tmp_path / "worker.err"
    # glibc: blocks of 8 KiB and more (the ballast) get pages of their own, given back when
    # freed, so RSS follows what the worker holds rather than the allocator's high-water mark
    env = {**os.environ, "PYTHONPATH": str(APP.parent.parent), "MALLOC_MMAP_THRESHOLD_": "8192"}
    with errors.open("wb") as err:
        proc = subprocess.Popen([sys.executable, str(APP), dsn, str(stats)], env=env, stderr=err)
    try:
        yield LoadWorker(proc, stats, errors)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


class LoadWorker:
    def __init__(self, proc: subprocess.Popen[bytes], stats: Path, errors: Path) -> None:
        self.proc, self.stats_path, self.errors_path = proc, stats, errors

    def stats(self) -> dict[str, int]:
        return dict(json.loads(self.stats_path.read_text()))

    def errors(self) -> str:
        return self.errors_path.read_text()


async def test_worker_process_under_backlog_stays_bounded(
    dsn: str, client: durable.Client, load_worker: LoadWorker
) -> None:
    """A worker process (20 workflow task slots, 20 activity slots, a pool of 4 connections,
    a sticky cache of 100) works through 1,000 and then 4,000 parked workflows, each holding
    8 KiB: its RSS, its asyncio tasks and its cache do not grow with the backlog."""
    pid = load_worker.proc.pid
    await wait_for(lambda: _live_worker(dsn), timeout=30)
    await _park(client, dsn, 0, 50, pid)  # warm up: imports, caches, the pool
    base = _rss(pid)
    at_1000 = await _park(client, dsn, 50, 950, pid)
    at_4000 = await _park(client, dsn, 1000, 3000, pid)
    stats = load_worker.stats()
    mib = 2**20
    print(
        f"worker RSS: base {base / mib:.1f} MiB, peak with 1,000 parked {at_1000 / mib:.1f} MiB,"
        f" with 4,000 parked {at_4000 / mib:.1f} MiB; asyncio tasks peak {stats['peak_tasks']},"
        f" cache peak {stats['peak_cache']}"
    )
    # Kept in memory (max_cached_workflows=10,000 does that), each parked workflow costs
    # ~14 KiB here: 3,000 more add ~44 MiB, and RSS grows about 4x from 1,000 to 4,000. Bounded,
    # they added 9-10 MiB (allocator noise; RSS stops growing after ~3,000).
    assert at_4000 - at_1000 < 3000 * BALLAST, "the worker's memory grows with the backlog"
    assert at_4000 - base < 2 * (at_1000 - base) + 8 * mib, "growth is near proportional"
    # tasks: the worker's own loops plus, per slot, a workflow task or an activity (its task,
    # the user function's task and a watchdog); never one per workflow of the backlog
    assert stats["peak_tasks"] <= 20 + 3 * 20 + 20, stats
    assert stats["peak_cache"] <= 100, stats

    # runs evicted long ago resume from their history
    olds = [client.get_handle(f"p-{i}") for i in range(0, 4000, 40)]
    for handle in olds:
        await handle.signal("go", 1)
    results = await asyncio.gather(*(h.result(timeout=60) for h in olds))
    assert results == [i + 1 + BALLAST for i in range(0, 4000, 40)]

    load_worker.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(load_worker.proc.wait, 30) == 0
    errors = _without_slow_steps(load_worker.errors())  # e.g. a pool that ran dry, a failed poll
    for word in ("WARNING", "ERROR", "Traceback"):
        assert word not in errors, errors[-3000:]


def _without_slow_steps(log: str) -> str:
    """The log without the slow-step watch's records (a step that held the loop over 100 ms,
    with its stack): they tell how busy the machine was (tests run side by side), not a fault."""
    records = re.split(r"\n(?=(?:DEBUG|INFO|WARNING|ERROR|CRITICAL):)", log)
    return "\n".join(r for r in records if "has held the worker's event loop" not in r)


async def _live_worker(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(
            await conn.fetchval("SELECT count(*) FROM durable.workers WHERE expires_at > now()")
        )
    finally:
        await conn.close()


# ---------------------------------------------------------------------- clear client errors


@workflow
async def counter(ctx: WorkflowContext) -> int:
    state = {"total": 0}

    def add(n: int) -> int:
        state["total"] += n
        return state["total"]

    ctx.on_update("add", add)
    ctx.on_query("total", lambda: state["total"])
    await ctx.wait_signal("stop")
    return state["total"]


async def test_result_query_update_time_out_clearly_without_a_worker(
    dsn: str, client: durable.Client
) -> None:
    handle = await client.start(counter, id="unserved", task_queue="nobody")

    with pytest.raises(durable.TimeoutError) as caught:
        await handle.result(timeout=0.3)
    assert isinstance(caught.value, asyncio.TimeoutError)
    assert "'unserved'" in str(caught.value) and "0.3 s" in str(caught.value)
    with pytest.raises(asyncio.TimeoutError, match=r"'unserved'.*1\.0 s"):
        await handle.result(timeout=timedelta(seconds=1))

    with pytest.raises(durable.TimeoutError) as caught:
        await handle.query("total", timeout=0.3)
    message = str(caught.value)
    assert "query" in message and "'unserved'" in message and "0.3 s" in message, message
    assert await _rows(dsn, "calls") == 0, "a timed-out query leaves no call behind"

    with pytest.raises(durable.TimeoutError) as caught:
        await handle.update("add", 5, timeout=0.3)
    message = str(caught.value)
    assert "update" in message and "'unserved'" in message and "0.3 s" in message, message
    assert "stays queued" in message, "the caller is told the update may still apply"
    assert await _rows(dsn, "calls") == 1, "its call stays, to be answered when it runs"

    # a worker turns up later: the workflow is intact and still serves what is asked now
    async with durable.Worker(client, task_queue="nobody", workflows=[counter]):
        total = await handle.update("add", 2, timeout=30)
        assert await handle.query("total", timeout=30) == total
        await handle.signal("stop")
        assert await handle.result(timeout=30) == total
    assert total == 7, "the timed-out update ran once, as its error said"
    assert await _rows(dsn, "inbox") == 0
    conn = await asyncpg.connect(dsn)
    try:  # answered updates are kept a day, for a resend of their request id
        unanswered = await conn.fetchval("SELECT count(*) FROM durable.calls WHERE NOT done")
    finally:
        await conn.close()
    assert unanswered == 0


async def _rows(dsn: str, table: str, workflow_id: str | None = None) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        if workflow_id is None:
            return int(await conn.fetchval(f"SELECT count(*) FROM durable.{table}"))
        return int(
            await conn.fetchval(
                f"SELECT count(*) FROM durable.{table} WHERE workflow_id = $1", workflow_id
            )
        )
    finally:
        await conn.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connect_to_an_unreachable_database_fails_clearly() -> None:
    refused = f"postgresql://app:s3cret@127.0.0.1:{_free_port()}/db"
    with pytest.raises(durable.DurableError, match="cannot connect to Postgres") as caught:
        await durable.Client.connect(refused)
    assert "s3cret" not in str(caught.value) and "app:***@127.0.0.1" in str(caught.value)

    # a server that accepts the connection and never answers (a hung host, a black hole)
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(durable.DurableError) as caught:
            await durable.Client.connect(
                f"postgresql://app:s3cret@127.0.0.1:{port}/db", connect_timeout=0.5
            )
    finally:
        server.close()
        await server.wait_closed()
    message = str(caught.value)
    assert "cannot connect to Postgres" in message and "no answer within 0.5 s" in message
    assert "s3cret" not in message


async def test_a_start_cut_off_mid_way_is_attempted_again_and_opens_one_run(
    dsn: str, client: durable.Client
) -> None:
    """The database connection dies while a start is half written (its run row inserted, its
    history blocked on a lock): nothing of it stays, the client starts it again, and the
    tables hold one run."""
    admin = await asyncpg.connect(dsn)
    try:
        blocker = admin.transaction()
        await blocker.start()
        await admin.execute("LOCK TABLE durable.history IN ACCESS EXCLUSIVE MODE")
        start = asyncio.create_task(
            client.start(counter, id="cut", task_queue="nobody", execution_timeout=_HOUR)
        )
        blocked = await wait_for(
            lambda: admin.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            ),
            timeout=30,
        )
        # the start holds a lock on its new run row: it got past the first insert
        await admin.execute("SELECT pg_terminate_backend($1)", blocked[0]["pid"])
        await blocker.rollback()
    finally:
        await admin.close()
    handle = await start
    assert (await handle.describe()).status == "pending"
    for table, rows in (("workflows", 1), ("history", 1), ("inbox", 1)):
        assert await _rows(dsn, table, "cut") == rows, table


async def test_calls_while_the_database_is_unreachable_fail_clearly(
    dsn: str, server_dsn: str
) -> None:
    """The database stops accepting connections and drops every open one: starts, signals
    and results are attempted again until their deadline, then fail with an error that says
    so, and write nothing; afterwards the same client works again."""
    client = await durable.Client.connect(dsn, call_timeout=1.0)
    running = await client.start(counter, id="running", task_queue="nobody")
    admin = await asyncpg.connect(dsn)
    try:
        database = await admin.fetchval("SELECT current_database()")
    finally:
        await admin.close()
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database
        )
        errors: dict[str, BaseException] = {}
        calls = {
            "start": lambda: client.start(counter, id="during", task_queue="nobody"),
            "signal": lambda: running.signal("stop"),
            "result": lambda: running.result(timeout=5),
            "query": lambda: running.query("total", timeout=5),
        }
        for name, call in calls.items():
            with pytest.raises(Exception) as caught:
                await call()
            errors[name] = caught.value
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()
    for name, error in errors.items():
        print(f"{name} while the database is unreachable: {type(error).__name__}: {error}")
        assert isinstance(error, durable.DatabaseUnavailableError), (name, repr(error))
        assert "is not currently accepting connections" in str(error), (name, str(error))

    assert await _rows(dsn, "workflows", "during") == 0
    assert await _rows(dsn, "inbox", "running") == 0, "the failed signal was not recorded"
    handle = await client.start(counter, id="during", task_queue="nobody")
    await running.signal("stop")
    assert await _rows(dsn, "inbox", "running") == 1
    assert (await handle.describe()).status == "pending"
    await client.close()


_HOUR = timedelta(hours=1)
