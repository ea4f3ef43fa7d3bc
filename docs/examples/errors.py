"""The errors durable raises, and where each one comes from (docs/guide/errors.md)."""

import asyncio
import uuid

import durable
from durable import ApplicationError, WorkflowContext, activity, workflow

QUEUE = "errors"


@activity
async def refund(order: str) -> str:
    return f"refunded {order}"


@workflow
async def strict(ctx: WorkflowContext, order: str) -> str:
    if order.startswith("bad"):
        raise ApplicationError("order rejected", order, {"code": 42}, type="Rejected")
    if order == "direct":
        return await refund(order)  # WorkflowError: activities need ctx.activity
    ctx.on_query("order", lambda: order)
    await ctx.wait_signal("go", timeout=10)
    return order


@workflow(name="checkout")
async def checkout_v1(ctx: WorkflowContext) -> str:
    await ctx.wait_signal("go")
    return await ctx.activity(refund, "v1")


@workflow(name="checkout")
async def checkout_v2(ctx: WorkflowContext) -> str:  # a change that old runs cannot replay
    await ctx.sleep(1)
    await ctx.wait_signal("go")
    return await ctx.activity(refund, "v2")


async def main() -> None:
    client = await durable.Client.connect()
    async with durable.Worker(client, QUEUE, [strict, checkout_v1], [refund]):
        # --8<-- [start:failed]
        try:
            await client.execute(strict, "bad-1", task_queue=QUEUE)
        except durable.WorkflowFailedError as exc:  # .cause is what the workflow raised
            cause = exc.cause
            assert isinstance(cause, ApplicationError)
            print(f"{cause.type}: {cause.message} {cause.details}")
        try:
            await client.execute(strict, "direct", task_queue=QUEUE)
        except durable.WorkflowFailedError as exc:
            print(type(exc.cause).__name__, "-", exc.cause)
        # --8<-- [end:failed]

        # --8<-- [start:client_side]
        handle = await client.start(strict, "slow", task_queue=QUEUE)
        try:
            await handle.result(timeout=0.2)  # durable.TimeoutError: still running
        except durable.TimeoutError as exc:
            assert isinstance(exc, asyncio.TimeoutError) and isinstance(exc, durable.DurableError)
            print("timeout:", exc)
        try:
            await handle.query("no-such-query")
        except durable.QueryError as exc:
            print("query:", exc)
        await handle.cancel()
        try:
            await handle.result(timeout=30)
        except durable.WorkflowCancelledError as exc:
            print("cancelled:", exc)
        try:
            await client.get_handle(f"never-started-{uuid.uuid4()}").describe()
        except durable.WorkflowNotFoundError as exc:
            print("not found:", exc)
        try:
            await client.start(strict, object(), task_queue=QUEUE)  # nothing is written
        except durable.PayloadError as exc:
            print("payload:", exc)
        try:
            durable.activity_context()  # outside a running activity
        except durable.WorkflowError as exc:
            print("misuse:", exc)
        # --8<-- [end:client_side]

        # --8<-- [start:nondeterminism]
        old = await client.start(checkout_v1, task_queue=QUEUE)
        while (await old.describe()).history_length < 2:
            await asyncio.sleep(0.05)
    async with durable.Worker(client, QUEUE, [checkout_v2], [refund]):  # incompatible code
        await old.signal("go")
        while not (desc := await old.describe()).last_error:
            await asyncio.sleep(0.05)
        assert desc.last_error.startswith(durable.NondeterminismError.__name__)
        print(desc.status, "-", desc.last_error.splitlines()[0][:80], "...")
    async with durable.Worker(client, QUEUE, [checkout_v1], [refund]):  # compatible again
        print("resumed:", await old.result(timeout=30))
        # --8<-- [end:nondeterminism]
    await client.close()

    # --8<-- [start:unavailable]
    try:  # nothing listens on port 1
        await durable.Client.connect("postgresql://app@127.0.0.1:1/app", connect_timeout=2)
    except durable.DatabaseUnavailableError as exc:
        print("unavailable:", exc.operation, exc.may_have_taken_effect)
    # --8<-- [end:unavailable]


if __name__ == "__main__":
    asyncio.run(main())
