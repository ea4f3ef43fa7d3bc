"""Workers: serving a task queue, options, graceful stops, several workers (docs/guide/worker.md)."""

import asyncio
import os
from datetime import timedelta

import durable
from durable import WorkflowContext, activity, workflow

QUEUE = "worker-guide"


@activity
async def whoami(n: int) -> str:
    return f"{n} on pid {os.getpid()}"


@workflow(task_queue=QUEUE)
async def job(ctx: WorkflowContext, n: int) -> str:
    return await ctx.activity(whoami, n)


async def main() -> None:
    async with await durable.Client.connect() as client:
        # --8<-- [start:options]
        worker = durable.Worker(
            client,
            task_queue=QUEUE,
            workflows=[job],
            activities=[whoami],
            max_concurrent_activities=100,  # activities run at once (also the thread pool size)
            max_concurrent_workflow_tasks=100,  # workflow steps run at once
            shutdown_grace=timedelta(seconds=10),  # how long a stop lets work in flight finish
        )
        # --8<-- [end:options]

        # --8<-- [start:run]
        serving = asyncio.create_task(worker.run())  # until SIGTERM, SIGINT or cancelled
        print(await client.execute(job, 1))
        await worker.shutdown()  # stops taking work, finishes or hands back what it holds
        await serving
        # --8<-- [end:run]

        # --8<-- [start:context]
        a = durable.Worker(client, task_queue=QUEUE, workflows=[job], activities=[whoami])
        b = durable.Worker(client, task_queue=QUEUE, workflows=[job], activities=[whoami])
        async with a, b:  # two workers share the queue (as two processes or machines would)
            results = await asyncio.gather(*(client.execute(job, n) for n in range(10)))
            print(results[-1], "| healthy:", a.healthy and b.healthy)
        # --8<-- [end:context]
        assert len(results) == 10 and not a.healthy


if __name__ == "__main__":
    asyncio.run(main())
