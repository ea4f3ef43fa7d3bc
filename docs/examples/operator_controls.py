"""Operating running workflows: pause, resume, reset, fork, batch, export and purge
(docs/guide/operator-controls.md)."""

import asyncio
import uuid
from datetime import UTC, datetime

import durable
from durable import ApplicationError, RetryPolicy, WorkflowContext, activity, workflow

QUEUE = "operator-controls"
provider_up = False  # the payment provider is down until we "fix" it


@activity(retry=RetryPolicy(maximum_attempts=1))
async def settle(invoice: str) -> str:
    if not provider_up:
        raise ApplicationError("provider down", type="ProviderDown")
    return f"settled {invoice}"


@workflow(task_queue=QUEUE)
async def invoice(ctx: WorkflowContext, number: str) -> str:
    seen: list[str] = []
    ctx.on_signal("note", seen.append)
    ctx.on_query("notes", lambda: list(seen))
    await ctx.sleep(0.2)
    return await ctx.activity(settle, number) + f" notes={seen}"


async def main() -> None:
    global provider_up
    tenant = f"t-{uuid.uuid4().hex[:8]}"  # tags this program's runs
    async with await durable.Client.connect() as client:
        async with durable.Worker(client, QUEUE, workflows=[invoice], activities=[settle]):
            # --8<-- [start:pause]
            handle = await client.start(invoice, "inv-1", attributes={"tenant": tenant})
            await handle.pause(reason="waiting for the provider")
            desc = await handle.describe()
            print(desc.status, "-", desc.pause_reason)  # paused - waiting for the provider
            await handle.signal("note", "sent while paused")  # waits in the inbox
            print("query while paused:", await handle.query("notes"))
            # --8<-- [end:pause]

            # --8<-- [start:reset]
            await handle.resume()  # goes on, taking in what arrived meanwhile
            try:
                await handle.result(timeout=30)
            except durable.WorkflowFailedError as exc:
                print("failed:", exc.cause)
            provider_up = True  # the fix is deployed
            # Default point: just before the step that took in the failing activity's outcome.
            new = await handle.reset(reason="provider fixed")
            print("after reset:", await new.result(timeout=30))
            print("reset from:", (await new.describe()).reset_from[1])
            # --8<-- [end:reset]

            # --8<-- [start:fork]
            history = await new.history()
            first_steps = [e.seq for e in history if e.ends_step]
            copy = await client.fork(
                handle.workflow_id, seq=first_steps[0] + 1, new_id=f"{tenant}-copy"
            )
            print("fork:", copy.workflow_id, "->", await copy.result(timeout=30))
            # --8<-- [end:fork]

            # --8<-- [start:batch]
            for n in range(3):
                await client.start(invoice, f"bulk-{n}", attributes={"tenant": tenant})
            # Acts on the open runs that match (here: the three just started).
            acted = await client.batch(
                "terminate", attributes={"tenant": tenant}, reason="bad deploy"
            )
            print("terminated:", acted)
            # --8<-- [end:batch]

        # --8<-- [start:purge]
        cutoff = datetime.now(UTC)  # in production: timedelta(days=30), say
        async for run, events in client.export(cutoff, status="terminated"):
            print("archive:", run.workflow_id[:12], run.status, len(events), "events")
        purged = await client.purge(closed_before=cutoff, status="terminated")  # the same runs
        print("purged:", purged)
        assert await client.count(status="terminated", attributes={"tenant": tenant}) == 0
        # --8<-- [end:purge]


if __name__ == "__main__":
    asyncio.run(main())
