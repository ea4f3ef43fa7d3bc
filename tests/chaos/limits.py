"""A running limit on the chaos run's task queue, and its invariants: the attempts running
(held by any worker, a dead one's until its lease lapses and they are reaped) never exceed
the limit, sampled every 50 ms through the faults; and none is left running at the end (a
limit leaks nothing: every queued attempt ran, which the workflows' completion shows)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import durable

from . import app

MAX_RUNNING = 10  # across the run's workers (each could run 100)
SAMPLE_EVERY = 0.05

_RUNNING_SQL = (
    "SELECT count(*) FROM durable.activity_tasks WHERE task_queue = $1 AND owner IS NOT NULL"
)


async def configure(client: durable.Client, retry: Callable[..., Awaitable[Any]]) -> None:
    await retry(
        "configure_task_queue",
        lambda: client.configure_task_queue(app.TASK_QUEUE, max_running_activities=MAX_RUNNING),
    )


class RunningSampler:
    def __init__(self, client: durable.Client) -> None:
        self.client = client
        self.most = 0
        self.samples = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):  # the database away: the next sample
                async with asyncio.timeout(2):
                    running = await self.client.store.pool.fetchval(_RUNNING_SQL, app.TASK_QUEUE)
                self.most = max(self.most, running)
                self.samples += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)

    def line(self) -> str:
        return (
            f"running limit {MAX_RUNNING}: at most {self.most} attempts running in "
            f"{self.samples} samples"
        )

    def violations(self) -> list[str]:
        if self.most > MAX_RUNNING:
            return [f"limit: {self.most} attempts ran at once, the limit is {MAX_RUNNING}"]
        return []


async def check_nothing_running(conn: Any) -> list[str]:
    left = await conn.fetchval(_RUNNING_SQL, app.TASK_QUEUE)
    return [f"limit: {left} attempts still held after every worker stopped"] if left else []
