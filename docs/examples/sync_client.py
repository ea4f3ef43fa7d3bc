"""SyncClient: the client's calls, blocking, for code without an event loop (Flask and Django
views, scripts, threads) (docs/guide/client.md)."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import durable
from durable import WorkflowContext, activity, workflow

QUEUE = "sync-client"


@activity
def add(a: int, b: int) -> int:
    return a + b


@workflow(task_queue=QUEUE)
async def total(ctx: WorkflowContext, numbers: list[int]) -> int:
    result = 0
    for n in numbers:
        result = await ctx.activity(add, result, n)
    return result


async def serve(stop: threading.Event) -> None:  # a worker, as a service would run it
    client = await durable.Client.connect()
    async with (
        client,
        durable.Worker(client, task_queue=QUEUE, workflows=[total], activities=[add]),
    ):
        while not stop.is_set():
            await asyncio.sleep(0.05)


def main() -> None:
    stop = threading.Event()
    worker = threading.Thread(target=asyncio.run, args=(serve(stop),))
    worker.start()
    try:
        # --8<-- [start:sync]
        with durable.SyncClient.connect() as client:  # the arguments of Client.connect
            handle = client.start(total, [1, 2, 3])  # a durable.SyncWorkflowHandle
            print(handle.result(timeout=30))  # blocks until the run closes
            print(handle.describe().status, len(handle.history()), "events")

            # One SyncClient is safe to share between threads.
            with ThreadPoolExecutor(4) as pool:
                sums = list(pool.map(lambda n: client.execute(total, list(range(n))), range(8)))
            print(sums)
            print(sum(1 for _ in client.list(workflow_name="total")), "runs of total")

            # Schedules too: a durable.SyncScheduleHandle blocks on each call.
            nightly = client.create_schedule("nightly-total", total, [4, 5], cron="0 3 * * *")
            nightly.trigger()  # a run now (its overlap policy allows it: none is open)
            described = nightly.describe()
            print(described.next_fire_times[0], [s.schedule_id for s in client.list_schedules()])
            print(client.get_handle(described.recent[-1].workflow_id).result(timeout=30))
            client.get_schedule("nightly-total").delete()  # its runs are left alone
        # --8<-- [end:sync]
        assert sums == [n * (n - 1) // 2 for n in range(8)]
    finally:
        stop.set()
        worker.join()


if __name__ == "__main__":
    main()
