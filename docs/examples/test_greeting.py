"""Tests of the tutorial's code, as a project would write them today (docs/guide/testing.md).

pytest docs/examples/test_greeting.py
"""

import asyncio
import uuid

from tutorial_app import compose_greeting, greet

import durable


# --8<-- [start:unit]
def test_the_activity_is_a_plain_function_outside_workflows() -> None:
    assert asyncio.run(compose_greeting("Ada")) == "Hello, Ada!"


# --8<-- [end:unit]


# --8<-- [start:integration]
async def run_greet(name: str) -> tuple[str, list[str]]:
    queue = f"test-{uuid.uuid4()}"  # a queue of its own: no other worker takes its tasks
    async with await durable.Client.connect() as client:  # $DURABLE_DATABASE_URL
        worker = durable.Worker(client, queue, workflows=[greet], activities=[compose_greeting])
        async with worker:
            handle = await client.start(greet, name, task_queue=queue)
            result = await handle.result(timeout=30)
            return result, [event.type for event in await handle.history()]


def test_greet_runs_its_activity_and_timer() -> None:
    result, events = asyncio.run(run_greet("Ada"))
    assert result == "Hello, Ada!"
    assert events == [
        "WORKFLOW_STARTED",
        "ACTIVITY_SCHEDULED",
        "ACTIVITY_COMPLETED",
        "TIMER_STARTED",
        "TIMER_FIRED",
        "WORKFLOW_COMPLETED",
    ]


# --8<-- [end:integration]
