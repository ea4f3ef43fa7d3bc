"""Schedules in the chaos run: one per overlap policy, firing every one or two seconds
through the faults, paused when the faults end; and their invariants, checked on the
database afterwards:

- each slot fired at most once (one run per ``<schedule>@<slot>`` id, and the schedule's
  ``fired`` counter equals its runs);
- none before its time (a run's row was written at or after its slot plus its jitter, both
  on the database's clock);
- every slot inside the catch-up window fired or was dropped by the policy, none missed
  (the window is longer than any outage the run makes), and each slot the schedule went
  past is accounted for exactly once: fired + skipped + missed + waiting = the slots
  from its creation to where it stopped;
- the policies that never run two at once (all but allow_all) never did: each run began
  at or after the previous one closed.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

import durable
from durable._schedules import ScheduleSpec

from . import app

CATCHUP = timedelta(seconds=90)  # longer than any outage of a chaos run: nothing is missed


@dataclass(frozen=True)
class Planned:
    schedule_id: str
    overlap: str
    every: timedelta
    jitter: timedelta = timedelta(0)


SCHEDULES = [
    Planned("chaos-skip", "skip", timedelta(seconds=1)),
    Planned("chaos-buffer-one", "buffer_one", timedelta(seconds=2)),
    Planned("chaos-buffer-all", "buffer_all", timedelta(seconds=2)),
    Planned("chaos-allow-all", "allow_all", timedelta(seconds=1), timedelta(milliseconds=700)),
    Planned("chaos-cancel-other", "cancel_other", timedelta(seconds=2)),
    Planned("chaos-terminate-other", "terminate_other", timedelta(seconds=2)),
]

Retry = Callable[..., Awaitable[Any]]
TRANSACTION_SLACK = timedelta(seconds=10)  # longer than a fire may wait for a frozen lock


async def create_all(client: durable.Client, retry: Retry) -> None:
    for planned in SCHEDULES:
        await retry(
            "create_schedule",
            lambda p=planned: client.create_schedule(
                p.schedule_id,
                app.chaos_scheduled,
                every=p.every,
                overlap=p.overlap,
                jitter=p.jitter,
                catchup_window=CATCHUP,
                task_queue=app.TASK_QUEUE,
            ),
            lambda p=planned: _exists(client, p.schedule_id),
        )


async def pause_all_at(
    client: durable.Client, retry: Retry, at: float, clock: Callable[[], float]
) -> None:
    """When the faults end, pause every schedule (its open runs then finish)."""
    await asyncio.sleep(max(0.0, at - clock()))
    for planned in SCHEDULES:
        handle = client.get_schedule(planned.schedule_id)
        await retry("pause_schedule", lambda h=handle: h.pause(note="chaos over"))


async def _exists(client: durable.Client, schedule_id: str) -> bool:
    found = await client.store.pool.fetchval(
        "SELECT count(*) FROM durable.schedules WHERE schedule_id = $1", schedule_id
    )
    return bool(found)


# ---------------------------------------------------------------------------- checks
@dataclass
class Figures:
    fired: collections.Counter[str]
    skipped: collections.Counter[str]

    def line(self) -> str:
        parts = [
            f"{sid.removeprefix('chaos-')} {self.fired[sid]}/{self.skipped[sid]}"
            for sid in sorted(self.fired)
        ]
        return f"schedules (fired/skipped): {', '.join(parts) or '-'}"


async def check(conn: asyncpg.Connection) -> tuple[list[str], Figures]:
    problems: list[str] = []
    figures = Figures(collections.Counter(), collections.Counter())
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    rows = {r["schedule_id"]: r for r in await conn.fetch("SELECT * FROM durable.schedules")}
    runs = collections.defaultdict(list)
    for run in await conn.fetch(
        "SELECT workflow_id, run_id, status, created_at, closed_at, attributes"
        " FROM durable.workflows WHERE attributes ? 'schedule_id' ORDER BY created_at"
    ):
        runs[run["attributes"]["schedule_id"]].append(run)
    for planned in SCHEDULES:
        row = rows.get(planned.schedule_id)
        if row is None:
            problems.append(f"schedule {planned.schedule_id}: missing after the run")
            continue
        figures.fired[planned.schedule_id] = row["fired"]
        figures.skipped[planned.schedule_id] = row["skipped"]
        problems += _check_one(planned, row, runs[planned.schedule_id])
    return problems, figures


def _check_one(planned: Planned, row: asyncpg.Record, runs: list[asyncpg.Record]) -> list[str]:
    sid = planned.schedule_id
    spec = ScheduleSpec.from_json(row["spec"])
    problems = []
    per_id = collections.Counter(r["workflow_id"] for r in runs)
    problems += [
        f"schedule {sid}: slot {wid} fired {n} times" for wid, n in per_id.items() if n > 1
    ]
    if row["fired"] != len(runs):
        problems.append(f"schedule {sid}: counts {row['fired']} fired, {len(runs)} runs exist")
    for run in runs:
        slot = datetime.fromisoformat(run["attributes"]["scheduled_at"].replace("Z", "+00:00"))
        due = slot + spec.jitter_for(sid, slot)
        if run["created_at"] < due:
            problems.append(
                f"schedule {sid}: {run['workflow_id']} started early, at "
                f"{run['created_at'].isoformat()} before {due.isoformat()}"
            )
    if row["missed"]:
        problems.append(f"schedule {sid}: {row['missed']} slots missed inside the catch-up window")
    handled = _slots_between(spec, row["created_at"], row["next_slot"])
    accounted = row["fired"] + row["skipped"] + row["missed"] + len(row["buffered"])
    if accounted != handled:
        problems.append(
            f"schedule {sid}: {handled} slots passed, {accounted} accounted for (fired "
            f"{row['fired']}, skipped {row['skipped']}, missed {row['missed']}, waiting "
            f"{len(row['buffered'])})"
        )
    if planned.overlap != "allow_all":
        problems += _check_one_at_a_time(sid, runs, planned.overlap)
    return problems


def _slots_between(spec: ScheduleSpec, created: datetime, stopped: datetime | None) -> int:
    slots = spec.slots_after(created)
    if stopped is None:
        return sum(1 for _ in slots)
    return sum(1 for _ in itertools.takewhile(lambda s: s < stopped, slots))


def _check_one_at_a_time(sid: str, runs: list[asyncpg.Record], overlap: str) -> list[str]:
    problems = []
    for earlier, later in itertools.pairwise(runs):
        if overlap == "terminate_other" and _terminated_for(earlier, later):
            continue
        if earlier["closed_at"] is None or later["created_at"] < earlier["closed_at"]:
            problems.append(
                f"schedule {sid}: {later['workflow_id']} began while {earlier['workflow_id']} "
                f"was open (closed {earlier['closed_at']})"
            )
    return problems


def _terminated_for(earlier: asyncpg.Record, later: asyncpg.Record) -> bool:
    """Whether ``earlier`` closed in the transaction that started ``later`` (terminated by
    it), or in one that committed while that transaction waited for its row: both stamp
    their transaction's start, so its close may read a little after the start it made
    room for, yet no committed state had both open."""
    closed = earlier["closed_at"]
    return closed is not None and timedelta(0) <= closed - later["created_at"] < TRANSACTION_SLACK
