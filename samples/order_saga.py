"""An order saga: reserve stock, charge the card, book shipping; when a step fails for good,
undo the steps already done, in reverse order (compensations), then fail the workflow.

    python samples/order_saga.py
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import durable
from durable import ApplicationError, RetryPolicy, WorkflowContext, activity, workflow

QUEUE = "saga"
FAST_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=3)


@dataclass
class Order:
    order_id: str
    sku: str
    cents: int
    address: str


@activity
async def reserve_stock(sku: str) -> str:
    print(f"  reserve {sku}")
    return f"res-{sku}"


@activity
async def release_stock(reservation: str) -> None:
    print(f"  compensate: release {reservation}")


@activity
async def charge_card(order_id: str, cents: int) -> str:
    print(f"  charge {cents} cents for {order_id}")
    return f"ch-{order_id}"


@activity
async def refund(charge_id: str) -> None:
    print(f"  compensate: refund {charge_id}")


@activity(retry=FAST_RETRY)
async def book_shipping(address: str) -> str:
    attempt = durable.activity_context().info.attempt
    print(f"  book shipping to {address!r} (attempt {attempt})")
    if "nowhere" in address:
        raise ApplicationError("no courier serves this address", address, type="Undeliverable")
    return "ship-1"


@workflow
async def place_order(ctx: WorkflowContext, order: Order) -> str:
    compensations: list[Callable[[], Awaitable[None]]] = []
    try:
        reservation = await ctx.activity(reserve_stock, order.sku)
        compensations.append(lambda: ctx.activity(release_stock, reservation))
        charge_id = await ctx.activity(charge_card, order.order_id, order.cents)
        compensations.append(lambda: ctx.activity(refund, charge_id))
        return await ctx.activity(book_shipping, order.address)
    except (durable.ActivityError, asyncio.CancelledError):
        for undo in reversed(compensations):
            await undo()
        raise


async def main() -> None:
    client = await durable.Client.connect()
    worker = durable.Worker(
        client,
        task_queue=QUEUE,
        workflows=[place_order],
        activities=[reserve_stock, release_stock, charge_card, refund, book_shipping],
    )
    async with worker:
        for address in ("1 Main St", "nowhere"):
            order = Order(f"order-{uuid.uuid4().hex[:6]}", "teapot", 4200, address)
            print(f"order to {address!r}:")
            try:
                shipment = await client.execute(
                    place_order, order, id=order.order_id, task_queue=QUEUE
                )
                print(f"  -> completed, shipment {shipment}")
            except durable.WorkflowFailedError as exc:
                print(f"  -> failed after compensating: {exc.cause}")
    await client.close()


if __name__ == "__main__":
    asyncio.run(main())
