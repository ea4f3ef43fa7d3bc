"""A worker killed with SIGKILL loses nothing; two workers share a task queue safely."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

import durable

from .conftest import wait_for
from .steps_app import ensure_table, make_worker, steps

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
