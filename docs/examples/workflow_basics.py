"""Workflow code and its context: timers, concurrency, deterministic values, recorded side
effects, run information, logging and search attributes (docs/guide/workflows.md)."""

import asyncio
import logging
import socket
from datetime import timedelta

import durable
from durable import WorkflowContext, activity, workflow

QUEUE = "workflow-basics"


@activity
def double(n: int) -> int:  # a sync activity: runs in the worker's thread pool
    return 2 * n


# --8<-- [start:timers]
@workflow
async def timers(ctx: WorkflowContext) -> float:
    began = ctx.now()
    await ctx.sleep(0.2)  # seconds, or a timedelta
    await ctx.sleep_until(ctx.now() + timedelta(milliseconds=200))  # an aware datetime
    await asyncio.sleep(0.2)  # inside a workflow, asyncio.sleep is a durable timer too
    try:
        async with asyncio.timeout(0.2):  # so are asyncio.timeout and asyncio.wait_for
            await asyncio.Event().wait()  # (something that never happens)
    except TimeoutError:
        pass
    return (ctx.now() - began).total_seconds()


# --8<-- [end:timers]


# --8<-- [start:concurrency]
@workflow
async def fan_out(ctx: WorkflowContext, numbers: list[int]) -> list[int]:
    # Activities, timers and children run concurrently with the usual asyncio tools.
    doubled = await asyncio.gather(*(ctx.activity(double, n) for n in numbers))
    task = ctx.start_activity(double, 100)  # a task: await it later, or cancel it
    first_done, _ = await asyncio.wait([task], timeout=10)
    return [*doubled, *(t.result() for t in first_done)]


# --8<-- [end:concurrency]


# --8<-- [start:deterministic]
@workflow
async def deterministic(ctx: WorkflowContext) -> dict[str, object]:
    return {
        "now": ctx.now(),  # the step's time, from history on replay (UTC)
        "dice": ctx.random().randint(1, 6),  # seeded from the run: the same on replay
        "token": ctx.uuid4(),  # drawn from ctx.random()
        # run a function once and record its value; replays return the recorded value
        "hostname": await ctx.side_effect(socket.gethostname),
    }


# --8<-- [end:deterministic]


# --8<-- [start:info]
@workflow
async def about_me(ctx: WorkflowContext, tenant: str) -> str:
    info = ctx.info  # a durable.WorkflowInfo
    ctx.logger.info("running for %s", tenant)  # silent while the code replays
    ctx.set_attributes(tenant=tenant, priority="high")  # searchable with client.list
    return f"{info.workflow_name} {info.workflow_id} attempt {info.attempt} on {info.task_queue}"


# --8<-- [end:info]


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("durable.worker").setLevel(logging.WARNING)
    async with await durable.Client.connect() as client:
        worker = durable.Worker(
            client,
            task_queue=QUEUE,
            workflows=[timers, fan_out, deterministic, about_me],
            activities=[double],
        )
        async with worker:
            waited = await client.execute(timers, task_queue=QUEUE)
            assert waited >= 0.8, waited

            assert await client.execute(fan_out, [1, 2, 3], task_queue=QUEUE) == [2, 4, 6, 200]

            values = await client.execute(deterministic, task_queue=QUEUE)
            print("deterministic values:", values)

            # --8<-- [start:attributes]
            print(await client.execute(about_me, "acme", id="about-acme", task_queue=QUEUE))
            found = [d.workflow_id async for d in client.list(attributes={"tenant": "acme"})]
            assert "about-acme" in found
            # --8<-- [end:attributes]

        # The decorators return definitions, registered under a name.
        assert isinstance(timers, durable.WorkflowDefinition) and timers.name == "timers"
        assert isinstance(double, durable.ActivityDefinition) and double.name == "double"
        # Outside a workflow an activity is a plain function: handy in unit tests.
        assert double(21) == 42


if __name__ == "__main__":
    asyncio.run(main())
