"""Signals, queries, updates and conditions (docs/guide/workflows.md)."""

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

import durable
from durable import WorkflowContext, workflow

QUEUE = "messages"


@dataclass
class Cart:
    items: list[str] = field(default_factory=list)
    checked_out: bool = False


# --8<-- [start:cart]
@workflow
async def shopping_cart(ctx: WorkflowContext, customer: str) -> Cart:
    cart = Cart()

    def add_item(item: str) -> None:  # a signal handler: called for every "add" signal
        cart.items.append(item)

    def validate_remove(item: str) -> None:  # runs before the update is recorded
        if item not in cart.items:
            raise ValueError(f"{item!r} is not in the cart")

    def remove_item(item: str) -> int:  # an update handler: its result goes to the caller
        cart.items.remove(item)
        return len(cart.items)

    ctx.on_signal("add", add_item)
    ctx.on_query("items", lambda: list(cart.items))  # read-only, never awaits
    ctx.on_update("remove", remove_item, validator=validate_remove)

    # Wait for a "checkout" signal (signals sent earlier are buffered), at most a day.
    await ctx.wait_signal("checkout", timeout=timedelta(days=1))
    cart.checked_out = True
    return cart


# --8<-- [end:cart]


# --8<-- [start:condition]
@workflow
async def approval(ctx: WorkflowContext, needed: int) -> list[str]:
    approvers: list[str] = []
    ctx.on_signal("approve", approvers.append)
    try:
        # Resume once the predicate holds: it is checked again after every event.
        await ctx.wait_until(lambda: len(approvers) >= needed, timeout=timedelta(seconds=2))
    except durable.TimeoutError:  # also an asyncio.TimeoutError
        approvers.append("(timed out)")
    return approvers


# --8<-- [end:condition]


async def main() -> None:
    async with await durable.Client.connect() as client:
        worker = durable.Worker(client, task_queue=QUEUE, workflows=[shopping_cart, approval])
        async with worker:
            # --8<-- [start:client]
            cart = await client.start(shopping_cart, "ada", task_queue=QUEUE)
            await cart.signal("add", "teapot")
            await cart.signal("add", "kettle")
            print("items:", await cart.query("items"))  # a query sees the signals sent before
            print("left after removing:", await cart.update("remove", "kettle"))
            try:
                await cart.update("remove", "spoon")  # rejected by the validator
            except durable.UpdateError as exc:
                print("rejected:", exc)
            await cart.signal("checkout")
            print(await cart.result(timeout=30))
            # A handle by id rebuilds the result as the type you name (else a plain dict).
            same = client.get_handle(cart.workflow_id, result_type=Cart)
            assert await same.result() == await cart.result()
            # --8<-- [end:client]

            two = await client.start(approval, 2, task_queue=QUEUE)
            await two.signal("approve", "alice")
            await two.signal("approve", "bob")
            assert await two.result(timeout=30) == ["alice", "bob"]
            one_missing = await client.start(approval, 2, task_queue=QUEUE)
            await one_missing.signal("approve", "alice")
            assert await one_missing.result(timeout=30) == ["alice", "(timed out)"]


if __name__ == "__main__":
    asyncio.run(main())
