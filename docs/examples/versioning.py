"""Changing workflow code while runs are in flight: ctx.patched (docs/guide/concepts.md)."""

import asyncio

import durable
from durable import WorkflowContext, activity, workflow

QUEUE = "versioning"


@activity
async def price(cents: int) -> int:
    return cents


@activity
async def price_with_tax(cents: int) -> int:
    return cents * 119 // 100


# --8<-- [start:v1]
@workflow(name="invoice")
async def invoice_v1(ctx: WorkflowContext, cents: int) -> int:
    total = await ctx.activity(price, cents)
    await ctx.wait_signal("send")
    return total


# --8<-- [end:v1]


# --8<-- [start:v2]
@workflow(name="invoice")
async def invoice_v2(ctx: WorkflowContext, cents: int) -> int:
    if ctx.patched("add-tax"):  # new runs (and runs that reach this point with this code)
        total = await ctx.activity(price_with_tax, cents)
    else:  # runs that passed this point with the old code, replayed
        total = await ctx.activity(price, cents)
    await ctx.wait_signal("send")
    return total


# --8<-- [end:v2]


# --8<-- [start:v3]
@workflow(name="invoice")
async def invoice_v3(ctx: WorkflowContext, cents: int) -> int:
    # Once no run that took the old branch remains: the patch's runs still replay.
    ctx.deprecate_patch("add-tax")
    total = await ctx.activity(price_with_tax, cents)
    await ctx.wait_signal("send")
    return total


# --8<-- [end:v3]


async def main() -> None:
    async with await durable.Client.connect() as client:
        activities = [price, price_with_tax]
        async with durable.Worker(client, QUEUE, [invoice_v1], activities):
            old = await client.start(invoice_v1, 100, task_queue=QUEUE)
            while (await old.describe()).history_length < 3:  # priced, waiting for "send"
                await asyncio.sleep(0.05)
        # Deploy the new code while the old run waits: a new worker replays it.
        async with durable.Worker(client, QUEUE, [invoice_v2], activities):
            new = await client.start(invoice_v2, 100, task_queue=QUEUE)
            await old.signal("send")
            await new.signal("send")
            assert await old.result(timeout=30) == 100  # replayed the old branch
            assert await new.result(timeout=30) == 119  # took the new one
            waiting = await client.start(invoice_v2, 200, task_queue=QUEUE)
            while (await waiting.describe()).history_length < 4:
                await asyncio.sleep(0.05)
        async with durable.Worker(client, QUEUE, [invoice_v3], activities):
            await waiting.signal("send")
            assert await waiting.result(timeout=30) == 238


if __name__ == "__main__":
    asyncio.run(main())
