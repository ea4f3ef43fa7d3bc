"""The worker process of the load tests: ``python tests/load_app.py DSN STATS_FILE``.

Serves task queue ``load`` with small limits and a connection pool smaller than its
concurrency, and every 50 ms writes to STATS_FILE (JSON) how many asyncio tasks it has and
how many runs its sticky cache holds, with the peaks so far. Warnings and errors go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from datetime import timedelta

import durable
from durable import WorkflowContext, activity, workflow

MAX_WORKFLOW_TASKS = 20
MAX_ACTIVITIES = 20
MAX_CACHED = 100
POOL = 4  # connections: fewer than the work the worker may have in flight


@activity
async def touch(n: int) -> int:
    await asyncio.sleep(0.001)
    return n


@workflow
async def parked(ctx: WorkflowContext, n: int, ballast: str) -> int:
    """Holds ``ballast`` (in its arguments and its state) while it waits for ``go``."""
    kept = await ctx.activity(touch, n)
    ctx.set_attributes(stage="parked")
    go: int = await ctx.wait_signal("go")
    return kept + go + len(ballast)


async def _report(worker: durable.Worker, path: str) -> None:
    peak_tasks = peak_cache = 0
    while True:
        tasks, cache = len(asyncio.all_tasks()), len(worker._workflow_tasks.cache)
        peak_tasks, peak_cache = max(peak_tasks, tasks), max(peak_cache, cache)
        stats = {"tasks": tasks, "peak_tasks": peak_tasks, "cache": cache, "peak_cache": peak_cache}
        with open(path + ".tmp", "w") as out:
            json.dump(stats, out)
        os.replace(path + ".tmp", path)
        await asyncio.sleep(0.05)


async def _serve(dsn: str, stats_path: str) -> None:
    client = await durable.Client.connect(dsn, max_connections=POOL)
    worker = durable.Worker(
        client,
        task_queue="load",
        workflows=[parked],
        activities=[touch],
        max_concurrent_workflow_tasks=MAX_WORKFLOW_TASKS,
        max_concurrent_activities=MAX_ACTIVITIES,
        max_cached_workflows=int(os.environ.get("LOAD_MAX_CACHED", MAX_CACHED)),
        poll_interval=timedelta(milliseconds=200),
    )
    reporter = asyncio.create_task(_report(worker, stats_path))
    try:
        await worker.run()
    finally:
        reporter.cancel()
        await client.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(_serve(sys.argv[1], sys.argv[2]))
