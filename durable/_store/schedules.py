"""Schedules in the store: their rows, and the handling of their slots.

Every path that handles slots (a worker's fire, a trigger, a backfill) locks the schedule's
row, decides with durable._schedules.plan, starts the runs, and records where the schedule
goes on from, all in one transaction: a slot is handled once whatever crashes. Each slot's
run has the workflow id ``<schedule id>@<slot>``; a slot whose id was used before (a
backfill of slots fired already) is not started again.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from .._errors import ScheduleError
from .._flow import DEFAULT_PRIORITY
from .._schedules import (
    SLOTS_AT_LEAST,
    SLOTS_PER_PASS,
    DueSlots,
    ScheduleConfig,
    ScheduleSpec,
    apply_overlap,
    due_slots,
    next_look,
    slot_label,
)
from .base import StoreBase
from .closing import _cancel_runs, _terminate_run
from .records import StartRequest
from .runs import _first_time, _insert_runs, _latest_run
from .sql.schedules import (
    _DELETE_SCHEDULE_SQL,
    _DUE_SCHEDULES_SQL,
    _INSERT_SCHEDULE_SQL,
    _LATEST_STATUSES_SQL,
    _LIST_SCHEDULES_SQL,
    _LOCK_SCHEDULE_SQL,
    _NEXT_DUE_SQL,
    _PAUSE_SCHEDULE_SQL,
    _RECORD_FIRES_SQL,
    _SCHEDULE_SQL,
    _UPDATE_SCHEDULE_SQL,
    _USED_IDS_SQL,
)

RECENT_KEPT = 10  # slots a schedule remembers (describe().recent)
MAX_BACKFILL = 10_000  # slots one backfill may handle


@dataclass(frozen=True)
class RecentSlot:
    slot: datetime
    workflow_id: str
    action: str  # "started" or "skipped"
    status: str | None = None  # the latest run's status (started slots, when read)


@dataclass(frozen=True)
class ScheduleRecord:
    schedule_id: str
    config: ScheduleConfig
    next_slot: datetime | None
    buffered: tuple[datetime, ...]
    last_workflow_id: str | None
    recent: tuple[RecentSlot, ...]
    fired: int
    skipped: int
    missed: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class FiredSlot:
    """A slot a worker started (what its lateness is measured on)."""

    schedule_id: str
    slot: datetime
    due: datetime  # the slot plus its jitter
    fired_at: datetime


@dataclass
class _Handled:
    """What handling slots of one schedule (its row locked) decided."""

    row: asyncpg.Record
    spec: ScheduleSpec
    next_slot: datetime | None
    starts: list[datetime] = field(default_factory=list)
    buffered: list[datetime] = field(default_factory=list)
    recent: list[RecentSlot] = field(default_factory=list)  # the slots handled now
    skipped: int = 0
    missed: int = 0
    due_at: datetime | None = None

    @property
    def schedule_id(self) -> str:
        return str(self.row["schedule_id"])


class Schedules(StoreBase):
    """The statements on schedules."""

    async def create_schedule(
        self, schedule_id: str, config: ScheduleConfig, *, again: bool = False
    ) -> None:
        """Create a schedule; ``again``: an earlier attempt may have committed (its
        connection broke): a schedule of that id with the same config is that one."""

        async def work(conn: asyncpg.Connection) -> None:
            now = await conn.fetchval("SELECT durable.now()")
            next_slot = _first_slot(config.spec, now)
            due = None if next_slot is None else _fire_time(config.spec, schedule_id, next_slot)
            created = await conn.fetchrow(
                _INSERT_SCHEDULE_SQL,
                schedule_id,
                *self._config_columns(config),
                config.paused,
                config.note,
                next_slot,
                due,
            )
            if created is None:
                row = await conn.fetchrow(_SCHEDULE_SQL, schedule_id)
                if again and row is not None and self._record(row).config == config:
                    return
                raise ScheduleError(
                    f"a schedule with id {schedule_id!r} exists already: choose another id, or "
                    f"change it with client.get_schedule({schedule_id!r}).update(...)"
                )

        await self._retrying(work)

    async def schedule(self, schedule_id: str) -> ScheduleRecord:
        row = await self.pool.fetchrow(_SCHEDULE_SQL, schedule_id)
        if row is None:
            raise _no_schedule(schedule_id)
        record = self._record(row)
        ids = [r.workflow_id for r in record.recent if r.action == "started"]
        statuses = {
            r["workflow_id"]: r["status"] for r in await self.pool.fetch(_LATEST_STATUSES_SQL, ids)
        }
        recent = tuple(
            RecentSlot(r.slot, r.workflow_id, r.action, statuses.get(r.workflow_id, "purged"))
            if r.action == "started"
            else r
            for r in record.recent
        )
        return dataclasses.replace(record, recent=recent)

    async def list_schedules(self, after: str, limit: int) -> list[ScheduleRecord]:
        rows = await self.pool.fetch(_LIST_SCHEDULES_SQL, after, limit)
        return [self._record(row) for row in rows]

    async def next_schedule_due(self, task_queue: str) -> datetime | None:
        due: datetime | None = await self.pool.fetchval(_NEXT_DUE_SQL, task_queue)
        return due

    async def update_schedule(self, schedule_id: str, config: ScheduleConfig) -> None:
        """Set a schedule's config; a new timetable goes on from now."""

        async def work(conn: asyncpg.Connection) -> None:
            row = await self._locked(conn, schedule_id)
            old = self._record(row)
            next_slot = old.next_slot
            if config.spec != old.config.spec:
                next_slot = _first_slot(config.spec, row["now"])
            due = next_look(config.spec, schedule_id, next_slot, old.buffered, False, row["now"])
            await conn.execute(
                _UPDATE_SCHEDULE_SQL,
                schedule_id,
                *self._config_columns(config),
                config.note,
                next_slot,
                due,
            )

        await self._retrying(work)

    async def pause_schedule(self, schedule_id: str, paused: bool, note: str | None) -> None:
        done = await self.pool.fetchrow(_PAUSE_SCHEDULE_SQL, schedule_id, paused, note)
        if done is None:
            raise _no_schedule(schedule_id)

    async def delete_schedule(self, schedule_id: str, *, again: bool = False) -> None:
        """Delete a schedule; ``again``: an earlier attempt may have deleted it (its reply
        was lost), so finding none is no error."""
        if not await self.pool.fetchval(_DELETE_SCHEDULE_SQL, schedule_id) and not again:
            raise _no_schedule(schedule_id)

    # ------------------------------------------------------------------ handling slots
    async def fire_schedules(self, task_queue: str, limit: int) -> tuple[int, list[FiredSlot]]:
        """Handle the slots due of up to ``limit`` schedules of the queue that no other
        worker is handling; returns how many schedules it handled and the slots it started."""

        async def work(conn: asyncpg.Connection) -> tuple[int, list[FiredSlot]]:
            rows = await conn.fetch(_DUE_SCHEDULES_SQL, task_queue, limit)
            specs = [_spec_of(row) for row in rows]
            share = max(SLOTS_AT_LEAST, SLOTS_PER_PASS // max(1, len(rows)))
            dues = [_due_of(row, spec, share) for row, spec in zip(rows, specs, strict=True)]
            ids = [
                run_id_of(r["schedule_id"], s)
                for r, d in zip(rows, dues, strict=True)
                for s in d.fire
            ]
            used = await _used_ids(conn, ids)  # (one statement for the whole batch)
            handled = []
            for row, spec, due in zip(rows, specs, dues, strict=True):
                decided = await self._decide(
                    conn, row, spec, due.fire, due.next_slot, used, due.more
                )
                decided.missed = due.missed
                handled.append(decided)
            return len(rows), await self._record_handled(conn, handled)

        result: tuple[int, list[FiredSlot]] = await self._retrying(work)
        return result

    async def trigger_schedule(
        self, schedule_id: str, request_id: str, overlap: str | None = None
    ) -> None:
        """Handle a slot at the database's now (to the millisecond), by the overlap policy
        (``overlap``, else the schedule's), once per ``request_id``."""

        async def work(conn: asyncpg.Connection) -> None:
            row = await self._locked(conn, schedule_id)
            if not await _first_time(conn, f"{schedule_id}@trigger", request_id):
                return
            now: datetime = row["now"]
            slot = now.replace(microsecond=now.microsecond // 1000 * 1000)
            while await conn.fetchval(_USED_IDS_SQL, [run_id_of(schedule_id, slot)]):
                slot += timedelta(milliseconds=1)  # (two triggers within a millisecond)
            spec = _spec_of(row)
            decided = await self._decide(
                conn, row, spec, [slot], row["next_slot"], set(), overlap=overlap
            )
            await self._record_handled(conn, [decided])

        await self._retrying(work)

    async def backfill_schedule(
        self, schedule_id: str, start: datetime, end: datetime, overlap: str | None = None
    ) -> int:
        """Handle every slot of the timetable in [start, end) by the overlap policy
        (``overlap``, else the schedule's; those started before are not started again);
        returns how many slots that was."""

        async def work(conn: asyncpg.Connection) -> int:
            row = await self._locked(conn, schedule_id)
            spec = _spec_of(row)
            slots = _slots_between(spec, start, end)
            used = await _used_ids(conn, [run_id_of(schedule_id, slot) for slot in slots])
            decided = await self._decide(
                conn, row, spec, slots, row["next_slot"], used, overlap=overlap
            )
            await self._record_handled(conn, [decided])
            return len(slots)

        count: int = await self._retrying(work)
        return count

    async def _decide(
        self,
        conn: asyncpg.Connection,
        row: asyncpg.Record,
        spec: ScheduleSpec,
        slots: Sequence[datetime],
        next_slot: datetime | None,
        used: set[str],
        more: bool = False,
        *,
        overlap: str | None = None,
    ) -> _Handled:
        """What the slots do by the overlap policy (a slot whose run id is ``used`` is left
        out); cancels or terminates the schedule's open run if the policy says so."""
        schedule_id = row["schedule_id"]
        fresh = [slot for slot in slots if run_id_of(schedule_id, slot) not in used]
        waiting = [datetime.fromisoformat(s) for s in row["buffered"]]
        outcome = apply_overlap(overlap or row["overlap"], fresh, waiting, row["running"])
        if outcome.cancel_open or outcome.terminate_open:
            await _stop_open(conn, row["last_workflow_id"], schedule_id, outcome.terminate_open)
        recent = [RecentSlot(s, run_id_of(schedule_id, s), "skipped") for s in outcome.skipped]
        recent += [RecentSlot(s, run_id_of(schedule_id, s), "started") for s in outcome.start]
        due = next_look(spec, schedule_id, next_slot, outcome.buffered, more, row["now"])
        return _Handled(
            row,
            spec,
            next_slot,
            starts=outcome.start,
            buffered=outcome.buffered,
            recent=sorted(recent, key=lambda r: r.slot),
            skipped=len(outcome.skipped),
            due_at=due,
        )

    async def _record_handled(
        self, conn: asyncpg.Connection, handled: Sequence[_Handled]
    ) -> list[FiredSlot]:
        """Start the runs decided and store each schedule's new state, in two statements."""
        starts = [self._start_of(h, slot) for h in handled for slot in h.starts]
        if starts:
            await _insert_runs(conn, starts)
        columns: list[list[Any]] = [[] for _ in range(9)]
        for h in handled:
            kept = [*h.row["recent"], *map(_recent_to_json, h.recent)][-RECENT_KEPT:]
            last = run_id_of(h.schedule_id, h.starts[-1]) if h.starts else None
            values = (
                h.schedule_id,
                h.next_slot,
                h.due_at,
                json.dumps([slot.isoformat() for slot in h.buffered]),
                last,
                json.dumps(kept),
                len(h.starts),
                h.skipped,
                h.missed,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        await conn.execute(_RECORD_FIRES_SQL, *columns)
        return [
            FiredSlot(h.schedule_id, slot, _fire_time(h.spec, h.schedule_id, slot), h.row["now"])
            for h in handled
            for slot in h.starts
        ]

    def _start_of(self, handled: _Handled, slot: datetime) -> tuple[StartRequest, str]:
        row = handled.row
        options = row["options"]
        timeout = options.get("execution_timeout")
        label = slot_label(slot)
        attributes = {
            **options.get("attributes", {}),
            "schedule_id": handled.schedule_id,
            "scheduled_at": label,
        }
        request = StartRequest(
            workflow_id=run_id_of(handled.schedule_id, slot),
            workflow_name=row["workflow_name"],
            task_queue=row["task_queue"],
            args=self.open_payload(row["args"]),
            execution_timeout=None if timeout is None else timedelta(seconds=timeout),
            attributes=attributes,
            priority=options.get("priority", DEFAULT_PRIORITY),
        )
        return request, str(uuid.uuid4())

    # ------------------------------------------------------------------ rows
    async def _locked(self, conn: asyncpg.Connection, schedule_id: str) -> asyncpg.Record:
        row = await conn.fetchrow(_LOCK_SCHEDULE_SQL, schedule_id)
        if row is None:
            raise _no_schedule(schedule_id)
        return row

    def _config_columns(self, config: ScheduleConfig) -> tuple[Any, ...]:
        return (
            config.workflow_name,
            config.task_queue,
            self.codecs.seal(config.args),
            config.spec.to_json(),
            config.overlap,
            config.catchup_window.total_seconds(),
            dict(config.options),
        )

    def _record(self, row: asyncpg.Record) -> ScheduleRecord:
        config = ScheduleConfig(
            workflow_name=row["workflow_name"],
            task_queue=row["task_queue"],
            args=self.open_payload(row["args"]),
            spec=ScheduleSpec.from_json(row["spec"]),
            overlap=row["overlap"],
            catchup_window=timedelta(seconds=row["catchup_window"]),
            options=row["options"],
            note=row["note"],
            paused=row["paused"],
        )
        return ScheduleRecord(
            schedule_id=row["schedule_id"],
            config=config,
            next_slot=row["next_slot"],
            buffered=tuple(datetime.fromisoformat(s) for s in row["buffered"]),
            last_workflow_id=row["last_workflow_id"],
            recent=tuple(_recent_from_json(row["recent"])),
            fired=row["fired"],
            skipped=row["skipped"],
            missed=row["missed"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


def run_id_of(schedule_id: str, slot: datetime) -> str:
    """The workflow id of a slot's run."""
    return f"{schedule_id}@{slot_label(slot)}"


def _spec_of(row: asyncpg.Record) -> ScheduleSpec:
    return ScheduleSpec.from_json(row["spec"])


def _due_of(row: asyncpg.Record, spec: ScheduleSpec, share: int) -> DueSlots:
    """A schedule's due slots, at most its ``share`` of the transaction's (SLOTS_PER_PASS
    over the schedules it fires: an outage of many frequent schedules is worked off in
    transactions of bounded size)."""
    window = timedelta(seconds=row["catchup_window"])
    return due_slots(spec, row["schedule_id"], row["next_slot"], window, row["now"], share)


async def _used_ids(conn: asyncpg.Connection, ids: list[str]) -> set[str]:
    """Which of the workflow ids were used already."""
    return {r["workflow_id"] for r in await conn.fetch(_USED_IDS_SQL, ids)} if ids else set()


def _first_slot(spec: ScheduleSpec, now: datetime) -> datetime | None:
    return next(spec.slots_after(now), None)


def _fire_time(spec: ScheduleSpec, schedule_id: str, slot: datetime) -> datetime:
    return slot + spec.jitter_for(schedule_id, slot)


def _slots_between(spec: ScheduleSpec, start: datetime, end: datetime) -> list[datetime]:
    slots = []
    for slot in spec.slots_after(start - timedelta(microseconds=1)):
        if slot >= end:
            break
        slots.append(slot)
        if len(slots) > MAX_BACKFILL:
            raise ScheduleError(
                f"a backfill from {start.isoformat()} to {end.isoformat()} covers more than "
                f"{MAX_BACKFILL} slots: backfill a shorter range at a time"
            )
    return slots


async def _stop_open(
    conn: asyncpg.Connection, workflow_id: str, schedule_id: str, terminate: bool
) -> None:
    """Cancel or terminate the schedule's open run (its overlap policy says so)."""
    run = await _latest_run(conn, workflow_id, lock=True)
    if run["closed_at"] is not None:
        return
    reason = f"schedule {schedule_id!r} started a newer run (overlap policy)"
    if terminate:
        await _terminate_run(conn, workflow_id, str(run["run_id"]), reason)
    else:
        await _cancel_runs(conn, [run], reason)


def _no_schedule(schedule_id: str) -> ScheduleError:
    return ScheduleError(
        f"no schedule with id {schedule_id!r}: client.list_schedules() lists those there are"
    )


def _recent_to_json(recent: RecentSlot) -> dict[str, str]:
    return {
        "slot": recent.slot.isoformat(),
        "workflow_id": recent.workflow_id,
        "action": recent.action,
    }


def _recent_from_json(entries: list[dict[str, str]]) -> list[RecentSlot]:
    return [
        RecentSlot(datetime.fromisoformat(e["slot"]), e["workflow_id"], e["action"])
        for e in entries
    ]
