"""The client: starting workflows, handles, reading runs back (docs/guide/client.md)."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import durable
from durable import WorkflowContext, workflow

QUEUE = "client-guide"


# --8<-- [start:subscription]
@workflow(task_queue=QUEUE)
async def subscription(ctx: WorkflowContext, plan: str) -> str:
    ctx.on_query("plan", lambda: plan)
    changes: list[str] = []
    ctx.on_signal("change", changes.append)
    try:
        await ctx.wait_signal("stop", timeout=timedelta(seconds=20))
    except asyncio.CancelledError:
        return "cancelled and cleaned up"  # returning here completes the run instead
    return f"{plan} with {changes}"


# --8<-- [end:subscription]


async def main() -> None:
    # --8<-- [start:connect]
    client = await durable.Client.connect(  # all arguments optional
        None,  # dsn: None reads $DURABLE_DATABASE_URL, else uses the embedded database
        call_timeout=30.0,  # every later call returns or raises within this many seconds
    )
    # --8<-- [end:connect]
    worker = durable.Worker(client, task_queue=QUEUE, workflows=[subscription])
    async with worker:
        wid = f"sub-{uuid.uuid4()}"
        # --8<-- [start:start]
        handle = await client.start(
            subscription,
            "basic",  # the workflow's arguments, after the function
            id=wid,  # default: a new UUID
            task_queue=QUEUE,  # default: the workflow's own, else "default"
            attributes={"customer": "ada"},  # searchable (client.list, client.count)
            execution_timeout=timedelta(hours=1),  # the run is timed_out after this
        )
        print(handle)  # a durable.WorkflowHandle of this run
        try:
            await client.start(subscription, "basic", id=wid)  # the id is running
        except durable.WorkflowAlreadyStartedError as exc:
            print("already started:", exc.workflow_id)
        same = await client.start(subscription, "basic", id=wid, id_conflict_policy="use_existing")
        assert same.run_id == handle.run_id
        # --8<-- [end:start]

        # --8<-- [start:handle]
        again = client.get_handle(wid)  # by id: its open run, else its latest
        print("plan:", await again.query("plan"))
        await again.signal("change", "monthly billing")
        desc = await again.describe()  # a durable.WorkflowDescription
        print(desc.status, desc.workflow_name, desc.task_queue, desc.attributes)
        await again.signal("stop")
        print("result:", await handle.result(timeout=30))
        for event in await handle.history():  # durable.HistoryEvent objects
            print(f"  {event.seq} {event.type} {event.timestamp:%H:%M:%S}")
        # --8<-- [end:handle]

        # --8<-- [start:by_name]
        # By registered name, without importing the workflow's code (a worker must have
        # registered it once; its task queue comes from there).
        by_name = await client.start("subscription", "pro", attributes={"customer": "ada"})
        print("plan:", await by_name.query("plan"))  # answered once its code has run
        # A run whose code has begun sees CancelledError at its await; one that has not
        # begun yet is closed "cancelled" at once, as there is no code to tell.
        await by_name.cancel(reason="customer left")
        print("after cancel:", await by_name.result(timeout=30))
        # --8<-- [end:by_name]

        # --8<-- [start:signal_with_start]
        # Signal the workflow, starting it first if it is not running: one atomic call.
        sws = await client.signal_with_start(
            subscription, "trial", id=f"sub-{uuid.uuid4()}", signal="change", signal_args=("x",)
        )
        await sws.terminate(reason="test account")  # at once; no workflow code runs any more
        try:
            await sws.result(timeout=30)
        except durable.WorkflowTerminatedError as exc:
            print("terminated:", exc)
        # --8<-- [end:signal_with_start]

        # --8<-- [start:delay]
        later = await client.start(subscription, "gold", start_delay=timedelta(hours=1))
        print("delayed run:", (await later.describe()).status)  # pending until then
        await later.terminate()
        # --8<-- [end:delay]

        # --8<-- [start:list]
        since = datetime.now(UTC) - timedelta(minutes=5)
        async for d in client.list(workflow_name="subscription", started_after=since):
            print(f"  {d.workflow_id[:12]} {d.status:<10} {d.attributes}")
        print("ada's:", await client.count(attributes={"customer": "ada"}, started_after=since))
        print("open:", await client.count(status="running", workflow_name="subscription"))
        # --8<-- [end:list]
    await client.close()


if __name__ == "__main__":
    asyncio.run(main())
