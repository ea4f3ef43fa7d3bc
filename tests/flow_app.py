"""Workflows and activities of the flow-control tests, run by worker processes with
``durable worker tests.flow_app`` (``FLOW_DSN``: the database where each attempt records
when it ran, on the database's clock, and in which process)."""

from __future__ import annotations

import asyncio
import os

import asyncpg

from durable import WorkflowContext, activity, workflow

QUEUE = "flow"
HOLD_SECONDS = float(os.environ.get("FLOW_HOLD_SECONDS", "0.2"))

TABLE_SQL = """
CREATE TABLE IF NOT EXISTS flow_runs (
    label text NOT NULL, pid int NOT NULL,
    started timestamptz NOT NULL, ended timestamptz)
"""


@activity(task_queue=QUEUE)
async def hold(label: str) -> str:
    conn = await asyncpg.connect(os.environ["FLOW_DSN"])
    try:
        started = await conn.fetchval(
            "INSERT INTO flow_runs (label, pid, started) VALUES ($1, $2, clock_timestamp())"
            " RETURNING started",
            label,
            os.getpid(),
        )
        await asyncio.sleep(HOLD_SECONDS)
        await conn.execute(
            "UPDATE flow_runs SET ended = clock_timestamp() WHERE label = $1 AND started = $2",
            label,
            started,
        )
    finally:
        await conn.close()
    return label


@workflow(task_queue=QUEUE)
async def fan_out(ctx: WorkflowContext, prefix: str, count: int) -> list[str]:
    return list(await asyncio.gather(*(ctx.activity(hold, f"{prefix}-{i}") for i in range(count))))


@workflow(task_queue=QUEUE)
async def one_hold(ctx: WorkflowContext, label: str) -> str:
    return await ctx.activity(hold, label)


async def create_table(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(TABLE_SQL)
    finally:
        await conn.close()
