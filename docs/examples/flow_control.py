"""Flow control: priorities, and limits held across every worker (docs/guide/flow-control.md)."""

import asyncio
import time
import uuid
from datetime import timedelta

import durable
from durable import WorkflowContext, activity, workflow

QUEUE = f"payments-{uuid.uuid4().hex[:6]}"  # this program's queue
charged: list[str] = []


@activity(task_queue=QUEUE)
async def charge(card: str) -> str:
    charged.append(card)
    await asyncio.sleep(0.05)  # the payment provider
    return f"charged {card}"


@workflow(task_queue=QUEUE)
async def checkout(ctx: WorkflowContext, card: str) -> str:
    return await ctx.activity(charge, card)


async def main() -> None:
    async with await durable.Client.connect() as client:
        # --8<-- [start:priority]
        backfill = [await client.start(checkout, f"nightly-{i}", priority=5) for i in range(4)]
        urgent = await client.start(checkout, "interactive", priority=1)
        async with durable.Worker(
            client,
            QUEUE,
            workflows=[checkout],
            activities=[charge],
            max_concurrent_workflow_tasks=1,
            max_concurrent_activities=1,
        ):
            for handle in [urgent, *backfill]:
                await handle.result(timeout=30)
        print("charged in order:", charged)  # interactive first, then the nightly ones
        # --8<-- [end:priority]

        # --8<-- [start:limits]
        await client.configure_task_queue(
            QUEUE,
            max_running_activities=2,  # across every worker of the queue
            rate_limit=durable.RateLimit(10, per=timedelta(seconds=1)),
            priority_aging=timedelta(minutes=1),  # waiting a minute lifts a task one level
        )
        began = time.monotonic()
        async with durable.Worker(client, QUEUE, workflows=[checkout], activities=[charge]):
            handles = [await client.start(checkout, f"card-{i}") for i in range(20)]
            for handle in handles:
                await handle.result(timeout=30)
        # the bucket starts full: 10 at once, then 10 per second
        print(f"20 charges took {time.monotonic() - began:.1f} s")
        # --8<-- [end:limits]

        # --8<-- [start:describe]
        queue: durable.TaskQueueDescription = await client.describe_task_queue(QUEUE)
        config: durable.TaskQueueConfig = queue.config
        print("limits:", config.max_running_activities, config.rate_limit, config.priority_aging)
        print("waiting by priority:", queue.backlog, "running:", queue.running)
        worker: durable.TaskQueueWorker
        for worker in queue.workers:
            print("worker", worker.identity, "lease until", worker.lease_until)
        # --8<-- [end:describe]
        await client.configure_task_queue(QUEUE)  # no limits any more


if __name__ == "__main__":
    asyncio.run(main())
