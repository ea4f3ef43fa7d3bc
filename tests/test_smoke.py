from __future__ import annotations

import asyncio
from datetime import timedelta

import durable
from durable import WorkflowContext, activity, workflow


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
