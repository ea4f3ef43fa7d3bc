"""Workflows waiting with nothing to do cost nothing and never starve other workflows."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import durable
from durable import WorkflowContext, activity, workflow

from .conftest import wait_for


@workflow
async def parked(ctx: WorkflowContext) -> str:
    return str(await ctx.wait_signal("go"))


@activity
async def one() -> int:
    return 1


@workflow
async def quick(ctx: WorkflowContext) -> int:
    return await ctx.activity(one)


async def _all_parked(client: durable.Client, handles: list[durable.WorkflowHandle[str]]) -> bool:
    parked = await client.store.pool.fetchval(
        "SELECT count(*) FROM durable.workflows WHERE run_id = ANY($1::uuid[])"
        " AND status = 'running' AND ready_at IS NULL",
        [h.run_id for h in handles],
    )
    return bool(parked == len(handles))


async def test_parked_workflows_are_not_due_and_do_not_starve_others(
    client: durable.Client,
) -> None:
    worker = durable.Worker(
        client, workflows=[parked, quick], activities=[one], max_concurrent_workflow_tasks=5
    )
    async with worker:
        handles = [await client.start(parked) for _ in range(40)]
        await wait_for(lambda: _all_parked(client, handles), timeout=30)
        assert await client.execute(quick) == 1
        await asyncio.gather(*(h.signal("go", i) for i, h in enumerate(handles)))
        results = await asyncio.gather(*(h.result(timeout=30) for h in handles))
    assert results == [str(i) for i in range(40)]


@workflow
async def two_steps(ctx: WorkflowContext) -> int:
    first = await ctx.activity(one)
    return first + await ctx.local_activity(one)


@pytest.mark.parametrize("slots", [1, 2, 100])
async def test_a_backlog_runs_on_whatever_slots_a_worker_has(
    client: durable.Client, slots: int
) -> None:
    """25 workflows queued before the worker starts: with one slot of each kind, every freed
    slot claims again at once (it once waited for the 1 s poll: ~25 s for the backlog)."""
    handles = [await client.start(two_steps) for _ in range(25)]
    started = time.monotonic()
    async with durable.Worker(
        client,
        workflows=[two_steps],
        activities=[one],
        max_concurrent_workflow_tasks=slots,
        max_concurrent_activities=slots,
    ):
        results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
    print(f"{slots} slot(s): 25 queued workflows in {time.monotonic() - started:.2f} s")
    assert results == [2] * 25


@activity
async def slow_local() -> int:
    await asyncio.sleep(4.0)
    return 1


@workflow
async def waits_on_slow_local(ctx: WorkflowContext) -> int:
    return await ctx.local_activity(slow_local)


async def test_a_slow_local_activity_gives_its_slot_back(client: durable.Client) -> None:
    """A workflow task waits for its local activities in its slot only for a while: with one
    slot, a workflow whose local activity takes 4 s does not hold up the others."""
    async with durable.Worker(
        client,
        workflows=[waits_on_slow_local, quick],
        activities=[one],
        max_concurrent_workflow_tasks=1,
    ):
        slow = await client.start(waits_on_slow_local)
        await wait_for(lambda: _status_is(client, slow, "running"))
        assert await client.execute(quick) == 1
        assert (await slow.describe()).status == "running"  # its local activity still runs
        assert await slow.result(timeout=20) == 1


async def _status_is(
    client: durable.Client, handle: durable.WorkflowHandle[Any], status: str
) -> bool:
    return (await handle.describe()).status == status
