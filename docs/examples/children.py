"""Child workflows and continue-as-new (docs/guide/workflows.md)."""

import asyncio
import uuid

import durable
from durable import WorkflowContext, activity, workflow

QUEUE = "children"


# --8<-- [start:children]
@workflow
async def ship(ctx: WorkflowContext, parcel: str, carrier: str | None) -> str:
    if carrier is None:
        carrier = await ctx.wait_signal("carrier", timeout=60)
    return f"{parcel} via {carrier}"


@workflow
async def fulfil(ctx: WorkflowContext, parcels: list[str]) -> list[str]:
    # start_child returns a handle at once: signal it, cancel it, or await its result.
    handles: list[durable.ChildWorkflowHandle[str]] = [
        ctx.start_child(ship.with_options(id=f"ship-{p}"), p, None) for p in parcels
    ]
    for handle in handles:
        await handle.signal("carrier", "bike")
    shipped = list(await asyncio.gather(*handles))
    assert all(handle.done() for handle in handles)
    shipped.append(await ctx.child(ship, "letter", "post"))  # start one and wait for its result
    # A child that fails, is cancelled or terminated raises ChildWorkflowError.
    lost = ctx.start_child(ship, "lost parcel", None)  # default id: derived from the parent's
    await ctx.sleep(0.1)
    lost.cancel()
    try:
        await lost
    except durable.ChildWorkflowError as exc:
        shipped.append(f"{exc.workflow_id == lost.workflow_id}: {type(exc.cause).__name__}")
    return shipped


# --8<-- [end:children]


# --8<-- [start:waiting]
@activity
async def load_truck(parcel: str) -> None:  # no worker of this example serves it
    pass


@workflow
async def depot(ctx: WorkflowContext) -> None:
    ctx.start_child(ship, "crate", None)  # waits for a "carrier" signal
    ctx.start_activity(load_truck, "crate")  # waits for a worker that serves it
    await ctx.sleep(3600)


def show_waits(desc: durable.WorkflowDescription) -> None:
    activities: list[durable.PendingActivity] = desc.pending_activities
    timers: list[durable.PendingTimer] = desc.pending_timers
    children: list[durable.OpenChild] = desc.open_children
    for a in activities:
        print(f"activity {a.activity_name}: {a.state}, attempt {a.attempt}")
    for t in timers:
        print(f"timer {t.timer_id}: fires at {t.fires_at:%H:%M}")
    for c in children:
        print(f"child {c.workflow_id}: {c.workflow_name} {c.status}")


# --8<-- [end:waiting]


# --8<-- [start:continue_as_new]
@workflow
async def countdown(ctx: WorkflowContext, n: int, log: list[int]) -> list[int]:
    log.append(n)
    if n == 0:
        return log
    await ctx.sleep(0.05)
    # End this run and start a fresh one (same workflow id, empty history) with new
    # arguments: what long-lived workflows do to keep their history short.
    ctx.continue_as_new(n - 1, log)


# --8<-- [end:continue_as_new]


async def main() -> None:
    async with await durable.Client.connect() as client:
        worker = durable.Worker(client, QUEUE, workflows=[fulfil, ship, countdown, depot])
        async with worker:
            print(await client.execute(fulfil, ["p1", "p2"], task_queue=QUEUE))

            # --8<-- [start:describe]
            handle = await client.start(depot, task_queue=QUEUE)
            while not (desc := await handle.describe()).pending_activities:
                await asyncio.sleep(0.05)
            show_waits(desc)
            await handle.terminate()  # its open children are terminated with it
            # --8<-- [end:describe]

            # --8<-- [start:continue_client]
            workflow_id = f"countdown-{uuid.uuid4()}"
            handle = await client.start(countdown, 3, [], id=workflow_id, task_queue=QUEUE)
            assert await handle.result(timeout=30) == [3, 2, 1, 0]  # follows every run
            runs = [
                d.status
                async for d in client.list(workflow_name="countdown")
                if d.workflow_id == workflow_id
            ]
            assert runs == ["continued_as_new"] * 3 + ["completed"], runs
            # --8<-- [end:continue_client]


if __name__ == "__main__":
    asyncio.run(main())
