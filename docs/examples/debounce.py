"""Debounced starts: one run, shortly after the last of a burst (docs/guide/client.md)."""

import asyncio
import uuid
from datetime import timedelta

import durable
from durable import WorkflowContext, workflow

QUEUE = "debounce-guide"


@workflow(task_queue=QUEUE)
async def reindex(ctx: WorkflowContext, doc: str, text: str) -> str:
    return f"indexed {doc}: {text!r}"


async def main() -> None:
    client = await durable.Client.connect()
    async with durable.Worker(client, task_queue=QUEUE, workflows=[reindex]):
        doc = f"doc-{uuid.uuid4().hex[:8]}"
        # --8<-- [start:debounce]
        handles = []
        for text in ("draft", "draft, fixed", "final"):  # three edits in quick succession
            handle = await client.start(
                reindex,
                doc,
                text,
                id=f"reindex-{doc}",  # required: the starts of one id make one run
                debounce=timedelta(seconds=1),  # it begins 1 s after the last start...
                debounce_max=timedelta(seconds=30),  # ...and at most 30 s after the first
            )
            handles.append(handle)
        assert len({h.run_id for h in handles}) == 1  # each start's handle is that run's
        print(await handles[-1].result(timeout=30))  # indexed doc-...: 'final' (once)
        # --8<-- [end:debounce]

        # --8<-- [start:begun]
        # Once the run has begun, a start follows the id policies as any start does. This
        # run has completed, so a new debounced run opens (id_reuse_policy
        # "allow_duplicate"); while it runs, "fail" (the default) would raise
        # WorkflowAlreadyStartedError and "use_existing" return its handle.
        later = await client.start(
            reindex, doc, "after", id=f"reindex-{doc}", debounce=timedelta(seconds=1)
        )
        assert later.run_id != handles[0].run_id
        print(await later.result(timeout=30))
        # --8<-- [end:begun]
    await client.close()


if __name__ == "__main__":
    asyncio.run(main())
