"""S1: 10,000 schedules firing every minute, served by one worker process.

Over a few slots: how late each slot's run started (the time of its first history event,
written by the transaction that fired it, minus its slot), whether every slot fired exactly
once and never early, and the CPU the fires cost Postgres and the worker; then W2, begun
just before the slot after, beside that slot's burst of fires.

The slots measured come after a first slot has fired and its runs closed, and after
ANALYZE: the tables as a deployment that fires schedules has them. Statistics taken on an
empty workflows table (what the other workloads measure on) gave the worker's claim of
workflow tasks a plan that reads every run of the table (a nested loop over the primary
key without a condition: 0.3-0.5 s per claim once 30,000 runs had closed), so a burst's
runs closed 20-50 s after their slot and the next slots of the runs still open were
skipped, until autovacuum analyzed the table again.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

import durable
from durable._schedules import ScheduleSpec, slot_label

from . import workflows as wf
from .runtime import cpu_split, progress, worker_processes
from .stats import median, percentile
from .workloads import (
    WORKER_OPTIONS,
    Env,
    Run,
    ScheduleLoad,
    analyze,
    check,
    connect,
    fan_in_throughput,
    in_batches,
    new_queue,
    per_unit,
    wait_closed,
)

W2_SETUP = 3.0  # seconds W2 is given to start its worker before the slot it runs beside
W2_LEAD = 0.5  # seconds before that slot W2 begins

# Every run of the queue: its slot, when it started (its first event) and closed.
_RUNS_SQL = """
SELECT w.workflow_id, w.attributes->>'scheduled_at' AS slot, h.ts AS started, w.closed_at,
    w.status
FROM durable.workflows w
JOIN durable.history h ON h.workflow_id = w.workflow_id AND h.run_id = w.run_id AND h.seq = 1
WHERE w.task_queue = $1
"""

# What the schedules counted: slots dropped by their overlap policy, or missed.
_COUNTERS_SQL = """
SELECT sum(skipped)::bigint AS skipped, sum(missed)::bigint AS missed
FROM durable.schedules WHERE task_queue = $1
"""


def timetable(load: ScheduleLoad) -> dict[str, Any]:
    """The timetable keywords S1 gives create_schedule."""
    if load.cron is not None:
        return {"cron": load.cron}
    return {"every": timedelta(seconds=load.every)}


def slots_after(load: ScheduleLoad, after: float, count: int) -> list[datetime]:
    """The next ``count`` slots of S1's timetable after the Unix time ``after``."""
    slots = ScheduleSpec.build(**timetable(load)).slots_after(datetime.fromtimestamp(after, UTC))
    return [next(slots) for _ in range(count)]


def of_slots(slots: Sequence[datetime]) -> Callable[[str], bool]:
    """Whether a workflow id is a run of one of ``slots``."""
    labels = {slot_label(slot) for slot in slots}
    return lambda workflow_id: workflow_id.rpartition("@")[2] in labels


async def create_schedules(
    client: durable.Client, queue: str, load: ScheduleLoad, count: int
) -> float:
    """Make ``count`` schedules of ``wf.scheduled`` on ``queue``; the seconds it took."""

    def creator(i: int) -> Callable[[], Awaitable[Any]]:
        return lambda: client.create_schedule(
            f"{queue}-{i}", wf.scheduled, task_queue=queue, **timetable(load)
        )

    began = time.perf_counter()
    await in_batches([creator(i) for i in range(count)])
    return time.perf_counter() - began


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.time()))


async def wait_fired(
    client: durable.Client, queue: str, count: int, slots: Sequence[datetime], period: float
) -> None:
    """Wait until the runs of ``slots`` closed, ``count`` each; when no more close for a
    period and a minute, go on (the figures count what is missing)."""
    try:
        await wait_closed(
            client, queue, count * len(slots), stall=period + 60, counted=of_slots(slots)
        )
    except TimeoutError as exc:
        progress(f"  S1: {exc}")


@dataclass(frozen=True)
class Fires:
    """What the runs of some slots tell, ``count`` schedules each."""

    lateness: list[float]  # seconds from slot to start, per run
    closing: list[float]  # seconds from slot to close, per run
    last_start: list[float]  # per slot: seconds from the slot to its last run's start
    duplicates: int  # runs beyond the first of a slot
    missing: int  # (schedule, slot) pairs without a run
    early: int  # runs started before their slot
    not_completed: int


def tally(rows: Sequence[asyncpg.Record], slots: Sequence[datetime], count: int) -> Fires:
    by_label = {slot_label(slot): slot for slot in slots}
    mine = [r for r in rows if r["slot"] in by_label]
    runs = Counter(r["workflow_id"] for r in mine)
    lateness = [(r["started"] - by_label[r["slot"]]).total_seconds() for r in mine]
    closing = [
        (r["closed_at"] - by_label[r["slot"]]).total_seconds() for r in mine if r["closed_at"]
    ]
    last_start = [
        max((r["started"] - slot).total_seconds() for r in mine if r["slot"] == label)
        for label, slot in by_label.items()
        if any(r["slot"] == label for r in mine)
    ]
    return Fires(
        lateness=lateness,
        closing=closing,
        last_start=last_start,
        duplicates=sum(n - 1 for n in runs.values()),
        missing=count * len(slots) - len(runs),
        early=sum(1 for late in lateness if late < 0),
        not_completed=sum(1 for r in mine if r["status"] != "completed"),
    )


async def s1(env: Env) -> Run:
    load = env.schedules
    count = load.count or env.size(10_000)
    queue = new_queue("S1")
    async with (
        worker_processes(env.dsn, queue, 1, **WORKER_OPTIONS) as procs,
        connect(env.dsn) as client,
    ):
        created_s = await create_schedules(client, queue, load, count)
        warm_up = slots_after(load, time.time(), 1)
        await wait_fired(client, queue, count, warm_up, load.every)
        await analyze(client)
        await client.store.pool.execute("ANALYZE durable.schedules")
        *slots, following = slots_after(load, time.time() + 1, load.slots + 1)
        period = (following - slots[-1]).total_seconds()
        progress(f"  S1: {count} schedules made in {created_s:.1f} s; measuring {len(slots)} slots")
        await sleep_until(slots[0].timestamp() - 0.5)
        async with cpu_split(env.dsn, [procs[0].pid]) as cpu:
            await wait_fired(client, queue, count, slots, period)
        w2_slot = slots_after(load, time.time() + W2_SETUP, 1)
        progress(f"  S1: W2 beside the slot {slot_label(w2_slot[0])}")
        w2 = await fan_in_throughput(env, processes=1, begin_at=w2_slot[0].timestamp() - W2_LEAD)
        await wait_fired(client, queue, count, w2_slot, period)
        rows = await client.store.pool.fetch(_RUNS_SQL, queue)
        counters = await client.store.pool.fetchrow(_COUNTERS_SQL, queue)
    fires, beside = tally(rows, slots, count), tally(rows, w2_slot, count)
    check(not fires.not_completed, f"{fires.not_completed} scheduled runs did not complete")
    check(bool(fires.lateness), "no slot fired")
    fired = len(fires.lateness)
    return Run(
        {
            "p50_lateness_s": percentile(fires.lateness, 50),
            "p99_lateness_s": percentile(fires.lateness, 99),
            "max_lateness_s": max(fires.lateness),
            "fires_per_min": fired * 60 / (len(slots) * period),
            "duplicates": fires.duplicates + beside.duplicates,
            "missing": fires.missing + beside.missing,
            "early": fires.early + beside.early,
            "db_cpu_ms_per_fire": cpu["postgres"] * 1000 / fired,
            "worker_cpu_ms_per_fire": cpu["workers"] * 1000 / fired,
            "w2_beside_steps_per_s": w2.figures["steps_per_s"],
            "p99_lateness_s_beside_w2": percentile(beside.lateness or [0.0], 99),
        },
        {
            "schedules": count,
            "timetable": load.cron or f"every {load.every:g} s",
            "slots": len(slots),
            "create_s": created_s,
            "fires_per_s_in_burst": count / median(fires.last_start),
            "last_start_s_per_slot": " ".join(f"{s:.2f}" for s in fires.last_start),
            "p50_closed_s": percentile(fires.closing, 50),
            "p99_closed_s": percentile(fires.closing, 99),
            "cpu_ms_per_fire": per_unit(cpu, fired),
            "skipped": counters["skipped"],  # (the overlap policy: the run before still open)
            "missed": counters["missed"],
            "w2_wall_s": w2.info["wall_s"],
            "checked_results": fired,
        },
    )


SCHEDULE_WORKLOADS: dict[str, Callable[[Env], Awaitable[Run]]] = {"S1": s1}
