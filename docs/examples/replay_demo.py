"""Replay: a workflow outlives the worker that began it (docs/guide/concepts.md)."""

import asyncio

import durable
from durable import WorkflowContext, activity, workflow

QUEUE = "replay-demo"
calls: list[str] = []  # what really ran, in this process


@activity
async def reserve(item: str) -> str:
    calls.append(f"reserve {item}")
    return f"reservation-{item}"


@workflow
async def order(ctx: WorkflowContext, item: str) -> str:
    reservation = await ctx.activity(reserve, item)
    if ctx.is_replaying:
        calls.append("replayed past the reservation")
    approver = await ctx.wait_signal("approve")  # the first worker stops while we wait here
    return f"{reservation} approved by {approver}"


async def main() -> None:
    async with await durable.Client.connect() as client:
        serve = dict(task_queue=QUEUE, workflows=[order], activities=[reserve])
        async with durable.Worker(client, **serve):
            handle = await client.start(order, "teapot", task_queue=QUEUE)
            while (await handle.describe()).history_length < 3:  # the reservation recorded
                await asyncio.sleep(0.05)
        # The first worker is gone; its run waits in the database, not in memory.
        await handle.signal("approve", "alice")
        async with durable.Worker(client, **serve):  # a new worker (or process, or machine)
            print(await handle.result(timeout=30))
        # The new worker rebuilt the run from history: the activity did not run again.
        assert calls == ["reserve teapot", "replayed past the reservation"], calls


if __name__ == "__main__":
    asyncio.run(main())
