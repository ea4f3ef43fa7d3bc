"""A worker process that traces as an application would: ``python -m tests.traced_app DSN
SPANS_FILE``. It sets its own global tracer provider, which writes every span as one JSON
line to SPANS_FILE as soon as the span ends (so that a SIGKILL loses none), and serves
``traced_steps``. Its activity for step N creates ``<SPANS_FILE>.reached-N`` and waits while
``<SPANS_FILE>.hold-N`` exists, so a test can kill the process in the middle of a workflow.
On SIGTERM it checks that the global provider is still its own and exits 0 (3 if durable
replaced it)."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path

from opentelemetry import trace

import durable
from durable import WorkflowContext, activity, workflow

from .spans import trace_to_file

QUEUE = "traced"


@activity
async def hold_step(step: int) -> int:
    hold = Path(os.environ["SPANS_FILE"] + f".hold-{step}")
    Path(os.environ["SPANS_FILE"] + f".reached-{step}").touch()
    while hold.exists():
        await asyncio.sleep(0.02)
    return step


@workflow(task_queue=QUEUE)
async def traced_steps(ctx: WorkflowContext, count: int) -> int:
    total = 0
    for step in range(count):
        total += await ctx.activity(hold_step, step)
    return total


async def serve(dsn: str) -> None:
    client = await durable.Client.connect(dsn)
    try:
        worker = durable.Worker(
            client,
            task_queue=QUEUE,
            workflows=[traced_steps],
            activities=[hold_step],
            lease_ttl=timedelta(seconds=1),
            poll_interval=timedelta(seconds=0.2),
        )
        await worker.run()
    finally:
        await client.close()


def main() -> int:
    dsn, spans_file = sys.argv[1], sys.argv[2]
    os.environ["SPANS_FILE"] = spans_file
    provider = trace_to_file(Path(spans_file))
    asyncio.run(serve(dsn))
    return 0 if trace.get_tracer_provider() is provider else 3


if __name__ == "__main__":
    sys.exit(main())
