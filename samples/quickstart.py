"""durable quickstart: a checkout workflow with activities, a durable timer, a signal and a
child workflow, run against the embedded database (no DSN needed).

    python samples/quickstart.py
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta

import durable
from durable import WorkflowContext, activity, workflow

QUEUE = "quickstart"


@dataclass
class Order:
    order_id: str
    item: str
    cents: int


@dataclass
class Receipt:
    order_id: str
    charge_id: str
    approved_by: str
    shipment: str


@activity
async def charge(order_id: str, cents: int) -> str:
    print(f"  [activity] charging {cents / 100:.2f} for {order_id}")
    return f"ch_{order_id}"


@activity
def pack(item: str) -> str:  # a sync activity: runs in the worker's thread pool
    print(f"  [activity] packing {item}")
    return f"box<{item}>"


@workflow
async def ship(ctx: WorkflowContext, order: Order) -> str:
    box = await ctx.activity(pack, order.item)
    await ctx.sleep(timedelta(seconds=1))  # a durable timer: survives worker restarts
    return f"{box} handed to the courier at {ctx.now():%H:%M:%S}"


@workflow
async def checkout(ctx: WorkflowContext, order: Order) -> Receipt:
    ctx.on_query("stage", lambda: stage)
    stage = "charging"
    charge_id = await ctx.activity(charge, order.order_id, order.cents)
    stage = "awaiting approval"
    approver = await ctx.wait_signal("approve", timeout=timedelta(hours=1))
    stage = "shipping"
    shipment = await ctx.child(ship, order)
    stage = "done"
    return Receipt(order.order_id, charge_id, approver, shipment)


async def main() -> None:
    client = await durable.Client.connect()  # no DSN: the embedded Postgres in ./.durable
    worker = durable.Worker(
        client, task_queue=QUEUE, workflows=[checkout, ship], activities=[charge, pack]
    )
    async with worker:
        order = Order(order_id=f"order-{uuid.uuid4().hex[:6]}", item="teapot", cents=4200)
        handle = await client.start(checkout, order, id=order.order_id, task_queue=QUEUE)
        print(f"started workflow {handle.workflow_id}")
        while await handle.query("stage") != "awaiting approval":
            await asyncio.sleep(0.05)
        print(f"stage: {await handle.query('stage')}; sending the approve signal")
        await handle.signal("approve", "alice")
        receipt = await handle.result(timeout=60)
        print(f"result: {receipt}")
        print("history:")
        for event in await handle.history():
            print(f"  {event.seq:>3} {event.type}")
    await client.close()


if __name__ == "__main__":
    asyncio.run(main())
