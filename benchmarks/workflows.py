"""The workflows and activities the workloads run (imported by the worker processes too)."""

from __future__ import annotations

import asyncio
import functools
import time
from datetime import UTC, datetime
from typing import Any

from durable import ActivityDefinition, WorkflowContext, WorkflowDefinition, activity, workflow

# perf_counter() at the start of every `tick` run in this process (in-process workloads)
STAMPS: list[float] = []


@activity
async def tick(i: int) -> int:
    STAMPS.append(time.perf_counter())
    return i


@activity
async def stamp() -> float:
    """When it ran, by the worker process's ``perf_counter``."""
    return time.perf_counter()


@activity
async def echo(i: int) -> int:
    return i


@activity
async def wall_clock() -> float:
    return time.time()


@activity
async def lateness(due: float) -> float:
    return time.time() - due


@workflow
async def activity_steps(ctx: WorkflowContext, steps: int) -> int:
    """W1: ``steps`` activities one after the other; returns the sum of 0..steps-1."""
    total = 0
    for i in range(steps):
        total += await ctx.activity(tick, i)
    return total


@workflow
async def local_activity_steps(ctx: WorkflowContext, steps: int) -> int:
    """W1b: the same with local activities."""
    total = 0
    for i in range(steps):
        total += await ctx.local_activity(tick, i)
    return total


@workflow
async def stamped_steps(ctx: WorkflowContext, steps: int, local: bool) -> list[float]:
    """W1c, W1d: ``steps`` activities (or local activities) one after the other; returns
    when each ran, by the clock of the worker process that ran it."""
    call = ctx.local_activity if local else ctx.activity
    return [await call(stamp) for _ in range(steps)]


@workflow
async def one_activity(ctx: WorkflowContext, i: int) -> int:
    """W8: one activity."""
    return await ctx.activity(echo, i)


@workflow
async def echo_steps(ctx: WorkflowContext, steps: int) -> int:
    """W2: ``steps`` activities one after the other, run by worker processes."""
    total = 0
    for i in range(steps):
        total += await ctx.activity(echo, i)
    return total


@workflow
async def first_activity_time(ctx: WorkflowContext) -> float:
    """W3: when its first activity ran (the worker's wall clock)."""
    return await ctx.activity(wall_clock)


@workflow
async def many_events(ctx: WorkflowContext, activities: int, batch: int) -> int:
    """W4: a long history, ``activities`` activities run ``batch`` at a time (2 events each)."""
    total = 0
    for first in range(0, activities, batch):
        last = min(first + batch, activities)
        results = await asyncio.gather(*(ctx.activity(echo, i) for i in range(first, last)))
        total += sum(results)
    return total


@workflow
async def parked(ctx: WorkflowContext) -> str:
    """W5: waits for the signal ``go`` and returns its payload."""
    value: str = await ctx.wait_signal("go")
    return value


@workflow
async def timer_at(ctx: WorkflowContext, due: float) -> float:
    """W6: sleeps until ``due`` (a Unix time) and returns how late it woke, in seconds."""
    await ctx.sleep_until(datetime.fromtimestamp(due, UTC))
    return await ctx.local_activity(lateness, due)


@workflow
async def long_history(ctx: WorkflowContext, steps: int, filler: int) -> int:
    """W7: ``steps`` activities, ``filler`` side effects, then ``steps`` activities again."""
    total = 0
    for i in range(steps):
        total += await ctx.activity(tick, i)
    for i in range(filler):
        await ctx.side_effect(functools.partial(int, i))
    for i in range(steps):
        total += await ctx.activity(tick, i)
    return total


@workflow
async def scheduled(ctx: WorkflowContext) -> None:
    """S1: what each schedule starts, at each of its slots: returns at once."""


WORKFLOWS: list[WorkflowDefinition[Any, Any]] = [
    activity_steps,
    local_activity_steps,
    stamped_steps,
    one_activity,
    echo_steps,
    first_activity_time,
    many_events,
    parked,
    timer_at,
    long_history,
    scheduled,
]
ACTIVITIES: list[ActivityDefinition[Any, Any]] = [tick, stamp, echo, wall_clock, lateness]
