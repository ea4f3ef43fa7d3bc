"""The tutorial's program: a worker and a client in one process (docs/guide/tutorial.md)."""

import asyncio

from tutorial_app import QUEUE, compose_greeting, greet

import durable


async def main() -> None:
    # No DSN: $DURABLE_DATABASE_URL, else the embedded Postgres in ./.durable
    client = await durable.Client.connect()
    worker = durable.Worker(
        client, task_queue=QUEUE, workflows=[greet], activities=[compose_greeting]
    )
    async with worker:  # the worker runs in the background inside the block
        handle = await client.start(greet, "Ada", id="greet-ada")
        print("started", handle.workflow_id)
        print("result:", await handle.result(timeout=30))
        for event in await handle.history():
            print(f"{event.seq:>3} {event.type}")
    await client.close()


if __name__ == "__main__":
    asyncio.run(main())
