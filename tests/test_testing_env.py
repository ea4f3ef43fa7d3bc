"""durable.testing.WorkflowEnvironment: real Postgres, real workers, a clock that skips."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import asyncpg
import pytest

import durable
from durable.testing import WorkflowEnvironment


@durable.activity
async def double(n: int) -> int:
    return n * 2


_failures: dict[str, int] = {}


@durable.activity(
    retry=durable.RetryPolicy(initial_interval=timedelta(hours=1), backoff_coefficient=1.0)
)
async def fails_twice(key: str) -> int:
    _failures[key] = _failures.get(key, 0) + 1
    if _failures[key] <= 2:
        raise RuntimeError(f"attempt {_failures[key]} fails")
    return _failures[key]


@durable.workflow
async def monthly(ctx: durable.WorkflowContext, n: int) -> tuple[str, str, int]:
    began = ctx.now()
    await ctx.sleep(timedelta(days=30))
    return began.isoformat(), ctx.now().isoformat(), await ctx.activity(double, n)


@durable.workflow
async def waits_a_day(ctx: durable.WorkflowContext) -> str:
    try:
        return str(await ctx.wait_signal("go", timeout=timedelta(days=1)))
    except TimeoutError:
        return "timed out"


@durable.workflow
async def timers_in_order(ctx: durable.WorkflowContext) -> list[str]:
    seen: list[str] = []

    async def after(days: int, label: str) -> None:
        await ctx.sleep(timedelta(days=days))
        seen.append(label)

    await asyncio.gather(after(3, "third"), after(1, "first"), after(2, "second"))
    return seen


@durable.workflow
async def retries_hourly(ctx: durable.WorkflowContext, key: str) -> int:
    return await ctx.activity(fails_twice, key)


@durable.workflow
async def sleeps_a_year(ctx: durable.WorkflowContext) -> None:
    await ctx.sleep(timedelta(days=365))


async def test_a_month_long_workflow_finishes_at_once(server_dsn: str) -> None:
    async with WorkflowEnvironment.start_time_skipping(
        workflows=[monthly], activities=[double], dsn=server_dsn
    ) as env:
        before = env.now()
        began = time.perf_counter()
        handle = await env.client.start(monthly, 21, task_queue=env.task_queue)
        start, end, doubled = await handle.result(timeout=30)
        took = time.perf_counter() - began
        print(f"\n30-day workflow: {took * 1000:.0f} ms of wall time")
        assert doubled == 42
        slept = datetime.fromisoformat(end) - datetime.fromisoformat(start)
        assert slept >= timedelta(days=30)
        assert env.now() - before >= timedelta(days=30)
        history = await handle.history()
        assert history[-1].timestamp - history[0].timestamp >= timedelta(days=30)


async def test_time_does_not_skip_while_nobody_waits(server_dsn: str) -> None:
    async with WorkflowEnvironment.start_time_skipping(
        workflows=[waits_a_day], dsn=server_dsn
    ) as env:
        before = env.now()
        handle = await env.client.start(waits_a_day, task_queue=env.task_queue)
        await asyncio.sleep(0.5)  # real time: the worker ran the first step and waits
        assert (await handle.describe()).status == "running"
        assert env.now() - before < timedelta(minutes=1)
        await env.sleep(timedelta(hours=23))
        assert (await handle.describe()).status == "running"
        await handle.signal("go", "in time")
        assert await handle.result(timeout=30) == "in time"


async def test_sleep_past_a_timeout_fires_it(server_dsn: str) -> None:
    async with WorkflowEnvironment.start_time_skipping(
        workflows=[waits_a_day], dsn=server_dsn
    ) as env:
        handle = await env.client.start(waits_a_day, task_queue=env.task_queue)
        await env.sleep(timedelta(days=2))
        assert (await handle.describe()).status == "completed"
        assert await handle.result(timeout=30) == "timed out"


async def test_timers_fire_in_order(server_dsn: str) -> None:
    async with WorkflowEnvironment.start_time_skipping(
        workflows=[timers_in_order], dsn=server_dsn
    ) as env:
        handle = await env.client.start(timers_in_order, task_queue=env.task_queue)
        assert await handle.result(timeout=30) == ["first", "second", "third"]


async def test_activity_retries_hours_apart_skip_too(server_dsn: str) -> None:
    async with WorkflowEnvironment.start_time_skipping(
        workflows=[retries_hourly], activities=[fails_twice], dsn=server_dsn
    ) as env:
        before = env.now()
        handle = await env.client.start(retries_hourly, "k1", task_queue=env.task_queue)
        assert await handle.result(timeout=30) == 3
        assert env.now() - before >= timedelta(hours=2)


async def test_execution_timeout_is_on_the_skipped_clock(server_dsn: str) -> None:
    async with WorkflowEnvironment.start_time_skipping(
        workflows=[sleeps_a_year], dsn=server_dsn
    ) as env:
        handle = await env.client.start(
            sleeps_a_year, task_queue=env.task_queue, execution_timeout=timedelta(days=7)
        )
        with pytest.raises(durable.WorkflowFailedError):
            await handle.result(timeout=30)
        assert (await handle.describe()).status == "timed_out"


async def test_bad_sleep_is_refused(server_dsn: str) -> None:
    async with WorkflowEnvironment.start_time_skipping(dsn=server_dsn) as env:
        with pytest.raises(ValueError, match="duration"):
            await env.sleep(-1)


async def test_the_database_is_dropped_on_the_way_out(server_dsn: str) -> None:
    async with WorkflowEnvironment.start_time_skipping(dsn=server_dsn) as env:
        name = env.client.store.dsn.rpartition("/")[2]
    admin = await asyncpg.connect(server_dsn)
    try:
        left = await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name)
    finally:
        await admin.close()
    assert left == 0


@pytest.fixture
def _database_url(server_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLE_DATABASE_URL", server_dsn)


@pytest.mark.usefixtures("_database_url")
@pytest.mark.durable(workflows=[monthly], activities=[double])
async def test_the_pytest_plugin(
    durable_env: WorkflowEnvironment, durable_client: durable.Client
) -> None:
    handle = await durable_client.start(monthly, 1, task_queue=durable_env.task_queue)
    assert (await handle.result(timeout=30))[2] == 2
