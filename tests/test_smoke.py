from __future__ import annotations

import asyncio
import gc
from datetime import timedelta

import durable
from durable import WorkflowContext, activity, workflow

from .conftest import wait_for


@activity
async def add(a: int, b: int) -> int:
    return a + b


@activity
def shout(text: str) -> str:
    return text.upper()


@workflow
async def child_wf(ctx: WorkflowContext, text: str) -> str:
    return await ctx.activity(shout, text)


@workflow
async def main_wf(ctx: WorkflowContext, n: int) -> dict[str, object]:
    total = 0
    for i in range(n):
        total = await ctx.activity(add, total, i)
    await ctx.sleep(timedelta(milliseconds=200))
    approved = await ctx.wait_signal("approve", timeout=timedelta(seconds=10))
    a, b = await asyncio.gather(ctx.activity(shout, "a"), ctx.activity(shout, "b"))
    child = await ctx.child(child_wf, "kid")
    return {"total": total, "approved": approved, "ab": a + b, "child": child}


async def test_end_to_end(client: durable.Client) -> None:
    worker = durable.Worker(client, workflows=[main_wf, child_wf], activities=[add, shout])
    async with worker:
        handle = await client.start(main_wf, 5, id="e2e")
        await handle.signal("approve", True)
        result = await handle.result(timeout=20)
    assert result == {"total": 10, "approved": True, "ab": "AB", "child": "KID"}
    history = await handle.history()
    assert history[0].type == "WORKFLOW_STARTED"
    assert history[-1].type == "WORKFLOW_COMPLETED"


async def test_workers_collect_young_garbage_less_often_while_serving(
    client: durable.Client,
) -> None:
    """Cached runs make full collections costly: while any worker of the process serves, a
    young collection waits for 10,000 allocations; the process's own setting comes back."""
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        first = durable.Worker(client, task_queue="gc-a", workflows=[child_wf])
        second = durable.Worker(client, task_queue="gc-b", workflows=[child_wf])
        async with first:
            await wait_for(lambda: gc.get_threshold() == (10_000, 10, 10))
            async with second:
                await asyncio.sleep(0.1)
            assert gc.get_threshold() == (10_000, 10, 10)  # the first one still serves
        assert gc.get_threshold() == (700, 10, 10)

        gc.set_threshold(50_000, 5, 5)
        async with durable.Worker(client, task_queue="gc-c", workflows=[child_wf]):
            await asyncio.sleep(0.1)
            assert gc.get_threshold() == (50_000, 5, 5)  # higher already: kept
        assert gc.get_threshold() == (50_000, 5, 5)
    finally:
        gc.set_threshold(*before)
