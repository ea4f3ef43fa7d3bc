"""Workflows used by the multi-process tests; run as a worker with
``python tests/steps_app.py DSN [LEASE_SECONDS]``. Each activity execution is counted
in the table ``step_runs`` of the same database, so tests can tell how often it ran."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta

import asyncpg

import durable
from durable import WorkflowContext, activity, workflow

STEP_SECONDS = float(os.environ.get("STEP_SECONDS", "0.1"))
IS_WORKER_PROCESS = False  # True in a worker process started from the command line


async def ensure_table(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS step_runs (workflow_id text, step int, pid int,"
            " runs int NOT NULL DEFAULT 1, PRIMARY KEY (workflow_id, step, pid))"
        )
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS effects (idempotency_key text, attempt int, pid int)"
        )
    finally:
        await conn.close()


@activity
async def record_step(step: int) -> int:
    info = durable.activity_context().info
    await asyncio.sleep(STEP_SECONDS)
    conn = await asyncpg.connect(os.environ["STEPS_DSN"])
    try:
        await conn.execute(
            "INSERT INTO step_runs (workflow_id, step, pid) VALUES ($1, $2, $3) "
            "ON CONFLICT (workflow_id, step, pid) DO UPDATE SET runs = step_runs.runs + 1",
            info.workflow_id,
            step,
            os.getpid(),
        )
    finally:
        await conn.close()
    return step * step


@workflow
async def steps(ctx: WorkflowContext, count: int) -> int:
    total = 0
    for step in range(count):
        total += await ctx.activity(record_step, step)
    return total


@workflow
async def nap(ctx: WorkflowContext, seconds: float) -> float:
    """Sleep on a durable timer; return how long that took in workflow time."""
    before = ctx.now()
    await ctx.sleep(seconds)
    return (ctx.now() - before).total_seconds()


@activity
async def effect_then_die(tag: str) -> str:
    """Write a side effect; in a worker process's first attempt, then die before returning."""
    info = durable.activity_context().info
    conn = await asyncpg.connect(os.environ["STEPS_DSN"])
    try:
        await conn.execute(
            "INSERT INTO effects (idempotency_key, attempt, pid) VALUES ($1, $2, $3)",
            info.idempotency_key,
            info.attempt,
            os.getpid(),
        )
    finally:
        await conn.close()
    if IS_WORKER_PROCESS and info.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return tag


@workflow
async def dies_in_activity(ctx: WorkflowContext) -> str:
    return await ctx.activity(effect_then_die, "done")


@workflow
async def dies_in_step(ctx: WorkflowContext) -> int:
    first = await ctx.activity(record_step, 1)
    if IS_WORKER_PROCESS:
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies inside a workflow step
    return first + await ctx.activity(record_step, 2)


@workflow
async def dies_continuing_as_new(ctx: WorkflowContext, round_: int) -> int:
    if round_ == 1:
        if IS_WORKER_PROCESS:
            os.kill(os.getpid(), signal.SIGKILL)  # dies in the step that continues as new
        ctx.continue_as_new(round_ + 1)
    return round_


def make_worker(client: durable.Client, lease_seconds: float = 1.0) -> durable.Worker:
    return durable.Worker(
        client,
        workflows=[steps, nap, dies_in_activity, dies_in_step, dies_continuing_as_new],
        activities=[record_step, effect_then_die],
        lease_ttl=timedelta(seconds=lease_seconds),
        poll_interval=timedelta(milliseconds=200),
    )


async def _serve(dsn: str, lease_seconds: float) -> None:
    global IS_WORKER_PROCESS
    IS_WORKER_PROCESS = True
    os.environ["STEPS_DSN"] = dsn
    client = await durable.Client.connect(dsn)
    try:
        await make_worker(client, lease_seconds).run()
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 1.0))
