"""Pinned builds: a rolling deploy never hands a run to code that cannot replay it
(docs/guide/deployment.md)."""

import asyncio
from datetime import timedelta

import durable
from durable import WorkflowContext, workflow

QUEUE = "builds"


@workflow(name="report", task_queue=QUEUE)
async def report_v1(ctx: WorkflowContext) -> str:
    await ctx.wait_signal("go")
    return "v1"


@workflow(name="report", task_queue=QUEUE)
async def report_v2(ctx: WorkflowContext) -> str:
    await ctx.sleep(0.01)  # not replayable by runs of v1
    await ctx.wait_signal("go")
    return "v2"


async def main() -> None:
    async with await durable.Client.connect() as client:
        # --8<-- [start:builds]
        old = durable.Worker(client, QUEUE, [report_v1], build_id="2026-12-01")
        new = durable.Worker(
            client,
            QUEUE,
            [report_v2],
            build_id="2026-12-08",
            retention=timedelta(days=30),  # also: purge runs closed over 30 days ago
        )
        async with old:
            first = await client.start(report_v1)
            while (await first.describe()).build_id is None:  # pinned by its first task
                await asyncio.sleep(0.05)
        async with new:  # the old build's workers are gone: its runs wait for one
            second = await client.start(report_v2)
            await first.signal("go")
            await second.signal("go")
            assert await second.result(timeout=30) == "v2"
            await asyncio.sleep(0.5)
            desc = await first.describe()
            print(desc.status, "- pinned to", desc.build_id)  # running - pinned to 2026-12-01
        # A worker of its build takes it (or one listing it in compatible_builds).
        async with durable.Worker(client, QUEUE, [report_v1], build_id="2026-12-01"):
            print("first:", await first.result(timeout=30))
        # --8<-- [end:builds]


if __name__ == "__main__":
    asyncio.run(main())
