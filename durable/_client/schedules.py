"""Schedules from a client: create, find and list them, and what a handle does with one."""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from .._errors import ScheduleError
from .._schedules import (
    DEFAULT_CATCHUP,
    TIMETABLE,
    ScheduleConfig,
    ScheduleSpec,
    check_catchup,
    check_note,
    check_overlap,
    check_paused,
    public_options,
    stored_options,
)
from .._serialization import decode, encode_args
from .._store import ScheduleRecord, Store
from .._validate import check_attributes, check_name
from .base import ClientBase
from .requests import request_id_of

if TYPE_CHECKING:
    from .client import Client

T = TypeVar("T")
_NEXT_SHOWN = 5
_ID_SUFFIX = len("@2026-01-01T00:00:00.000Z")
_UPDATABLE = (*TIMETABLE, "workflow", "args", "task_queue", "overlap", "catchup_window", "note",
              "workflow_options")  # fmt: skip


@dataclass(frozen=True)
class ScheduleRun:
    """A slot a schedule handled lately: the run it started, or ``status`` "skipped" when
    its overlap policy dropped it ("purged": its run is gone)."""

    scheduled_at: datetime
    workflow_id: str
    status: str


@dataclass(frozen=True)
class ScheduleDescription:
    schedule_id: str
    workflow_name: str
    task_queue: str
    args: list[Any]  # the workflow's arguments, as plain values
    cron: str | None
    every: timedelta | None
    offset: timedelta
    timezone: str
    overlap: str
    catchup_window: timedelta
    jitter: timedelta
    start_at: datetime | None
    end_at: datetime | None
    paused: bool
    note: str | None
    workflow_options: dict[str, Any]
    next_fire_times: list[datetime]  # the next five: slot plus jitter, in the schedule's zone
    recent: list[ScheduleRun]  # the last ten slots handled, in the order handled
    fired: int  # runs started
    skipped: int  # slots the overlap policy dropped
    missed: int  # slots older than the catch-up window when a worker came to them
    waiting: int  # slots waiting for the open run to close (buffer and cancel policies)
    created_at: datetime
    updated_at: datetime


class ScheduleHandle:
    """One schedule, by id (``client.get_schedule(id)``; nothing is read until used)."""

    def __init__(self, client: Client, schedule_id: str) -> None:
        self.client = client
        self.schedule_id = schedule_id

    def __repr__(self) -> str:
        return f"ScheduleHandle({self.schedule_id!r})"

    async def _call(self, operation: str, attempt: Callable[[], Awaitable[T]], **kw: Any) -> T:
        return await self.client._call(operation, None, attempt, **kw)

    @property
    def _store(self) -> Store:
        return self.client.store

    async def describe(self) -> ScheduleDescription:
        """The schedule's settings, its next fire times, the slots it handled lately and
        its counters; ScheduleError if there is no such schedule."""
        record = await self._call(
            "describe_schedule", functools.partial(self._store.schedule, self.schedule_id)
        )
        now = await self._call("database time", self._store.database_time)
        return describe(record, now)

    async def pause(self, note: str | None = None) -> None:
        """Stop firing (slots that pass while paused are made up on unpause within the
        catch-up window, the rest counted missed)."""
        await self._pause(True, note)

    async def unpause(self, note: str | None = None) -> None:
        """Fire again: slots passed meanwhile fire if inside the catch-up window."""
        await self._pause(False, note)

    async def _pause(self, paused: bool, note: str | None) -> None:
        pause = functools.partial(
            self._store.pause_schedule, self.schedule_id, paused, check_note(note)
        )
        await self._call("pause_schedule" if paused else "unpause_schedule", pause, writes=True)

    async def trigger(self, *, overlap: str | None = None, request_id: str | None = None) -> None:
        """Fire now (a slot at the database's time), as the overlap policy allows
        (``overlap``: this once, another policy than the schedule's); once per
        ``request_id`` (default: a new one), however often it is sent again."""
        policy = None if overlap is None else check_overlap(overlap)
        trigger = functools.partial(
            self._store.trigger_schedule, self.schedule_id, request_id_of(request_id), policy
        )
        await self._call("trigger_schedule", trigger, writes=True)

    async def backfill(self, start: datetime, end: datetime, *, overlap: str | None = None) -> None:
        """Fire every slot of the timetable in [start, end), as the overlap policy allows
        (``overlap``: this once, another policy than the schedule's, e.g. "allow_all" or
        "buffer_all" to run each missed slot); a slot that fired before is not fired again."""
        policy = None if overlap is None else check_overlap(overlap)
        start, end = _instant("start", start), _instant("end", end)
        if end <= start:
            raise ScheduleError(
                f"backfill needs start before end, got start={start.isoformat()}, "
                f"end={end.isoformat()}"
            )
        backfill = functools.partial(
            self._store.backfill_schedule, self.schedule_id, start, end, policy
        )
        await self._call("backfill_schedule", backfill, writes=True)

    async def update(self, **changes: Any) -> None:
        """Change any of the settings ``create_schedule`` takes (``workflow`` and ``args``
        too); a new timetable (``cron=`` or ``every=`` replaces the other) goes on from now.
        Checked before anything is written."""
        unknown = sorted(set(changes) - set(_UPDATABLE))
        if unknown:
            raise ScheduleError(
                f"update() got {', '.join(map(repr, unknown))}: it takes "
                f"{', '.join(_UPDATABLE)} (pause() and unpause() pause)"
            )
        current = await self._call(
            "update_schedule", functools.partial(self._store.schedule, self.schedule_id)
        )
        merged = await self.client._schedule_changes(current.config, changes)
        update = functools.partial(self._store.update_schedule, self.schedule_id, merged)
        await self._call("update_schedule", update, writes=True)

    async def delete(self) -> None:
        """Delete the schedule; runs it started are left alone."""
        attempts = 0

        async def delete() -> None:
            nonlocal attempts
            attempts += 1
            await self._store.delete_schedule(self.schedule_id, again=attempts > 1)

        await self._call("delete_schedule", delete, writes=True)


class ScheduleMethods(ClientBase):
    """The schedule calls of a Client."""

    async def create_schedule(
        self,
        schedule_id: str,
        workflow: object,
        *args: Any,
        cron: str | None = None,
        every: timedelta | None = None,
        offset: timedelta | None = None,
        timezone: str = "UTC",
        task_queue: str | None = None,
        overlap: str = "skip",
        catchup_window: timedelta = DEFAULT_CATCHUP,
        jitter: timedelta = timedelta(0),
        start_at: datetime | None = None,
        end_at: datetime | None = None,
        paused: bool = False,
        note: str | None = None,
        workflow_options: Mapping[str, Any] | None = None,
    ) -> ScheduleHandle:
        """Start ``workflow(*args)`` at each slot of a timetable: ``cron`` (five fields or
        ``@daily``-style, read in ``timezone``) or ``every`` (from the Unix epoch, shifted by
        ``offset``). Each slot's run has workflow id ``"<schedule_id>@<slot, ISO UTC>"`` and
        attributes ``schedule_id`` and ``scheduled_at``; workers of ``task_queue`` fire it
        once, ``jitter`` at most after the slot (the same for the same slot). ``overlap``
        decides what a slot does while the last run is open; ``catchup_window`` how late
        after an outage a slot still fires. Raises ScheduleError before writing anything."""
        schedule_id = check_schedule_id(schedule_id)
        spec = ScheduleSpec.build(
            cron=cron,
            every=every,
            offset=offset,
            timezone=timezone,
            jitter=jitter,
            start_at=start_at,
            end_at=end_at,
        )
        config = await self._config_of(
            schedule_id,
            workflow,
            args,
            spec,
            task_queue,
            overlap,
            catchup_window,
            workflow_options,
            note,
            paused,
        )
        attempts = 0

        async def attempt() -> None:
            nonlocal attempts
            attempts += 1
            await self.store.create_schedule(schedule_id, config, again=attempts > 1)

        await self._call("create_schedule", None, attempt, writes=True)
        return ScheduleHandle(typing.cast("Client", self), schedule_id)

    def get_schedule(self, schedule_id: str) -> ScheduleHandle:
        """A handle to schedule ``schedule_id`` (not read until used)."""
        return ScheduleHandle(typing.cast("Client", self), check_schedule_id(schedule_id))

    async def list_schedules(self) -> AsyncIterator[ScheduleDescription]:
        """Every schedule, in id order."""
        after = ""
        while True:
            page = functools.partial(self.store.list_schedules, after, 200)
            records = await self._call("list_schedules", None, page)
            now = await self._call("database time", None, self.store.database_time)
            for record in records:
                yield describe(record, now)
            if len(records) < 200:
                return
            after = records[-1].schedule_id

    async def _config_of(
        self,
        schedule_id: str,
        workflow: object,
        args: Sequence[Any],
        spec: ScheduleSpec,
        task_queue: str | None,
        overlap: str,
        catchup_window: timedelta,
        workflow_options: Mapping[str, Any] | None,
        note: str | None,
        paused: bool,
    ) -> ScheduleConfig:
        """The schedule's config, every part checked (the workflow and its arguments as
        ``client.start`` checks them)."""
        options = _stored_options(workflow_options)
        overlap = check_overlap(overlap)
        catchup_window = check_catchup(catchup_window)
        note, paused = check_note(note), check_paused(paused)
        request, _ = await self._start_request(
            workflow,
            tuple(args),
            schedule_id,
            task_queue,
            "allow_duplicate",
            "fail",
            None,
            None,
            None,
        )
        return ScheduleConfig(
            request.workflow_name,
            request.task_queue,
            request.args,
            spec,
            overlap,
            catchup_window,
            options,
            note,
            paused,
        )

    async def _schedule_changes(
        self, current: ScheduleConfig, changes: Mapping[str, Any]
    ) -> ScheduleConfig:
        """``current`` with ``changes`` (update's keywords) made, checked."""
        timetable = {key: changes[key] for key in TIMETABLE if key in changes}
        config = current.with_timetable(timetable) if timetable else current
        if "task_queue" in changes:
            queue = check_name("task_queue", changes["task_queue"])
            config = dataclasses.replace(config, task_queue=queue)
        if {"workflow", "args"} & set(changes):
            config = await self._retarget(config, changes)
        if "overlap" in changes:
            config = dataclasses.replace(config, overlap=check_overlap(changes["overlap"]))
        if "catchup_window" in changes:
            config = dataclasses.replace(
                config, catchup_window=check_catchup(changes["catchup_window"])
            )
        if "note" in changes:
            config = dataclasses.replace(config, note=check_note(changes["note"]))
        if "workflow_options" in changes:
            config = dataclasses.replace(
                config, options=_stored_options(changes["workflow_options"])
            )
        return config

    async def _retarget(self, config: ScheduleConfig, changes: Mapping[str, Any]) -> ScheduleConfig:
        """``config`` with other arguments (``args``: none by default), for another workflow
        if ``workflow`` is given (checked as ``client.start`` checks a start of it; the
        arguments alone are not checked against a workflow known by name only)."""
        args = changes.get("args", ())
        if isinstance(args, str | bytes) or not isinstance(args, Sequence):
            raise ScheduleError(f"args must be a list of the workflow's arguments, got {args!r}")
        if "workflow" not in changes:
            return dataclasses.replace(config, args=encode_args(tuple(args), {}))
        request, _ = await self._start_request(
            changes["workflow"],
            tuple(args),
            "schedule",
            changes.get("task_queue"),
            "allow_duplicate",
            "fail",
            None,
            None,
            None,
        )
        return dataclasses.replace(
            config,
            workflow_name=request.workflow_name,
            task_queue=request.task_queue,
            args=request.args,
        )


def check_schedule_id(schedule_id: object) -> str:
    """A schedule id, checked: it leaves room for the slot in its runs' workflow ids."""
    if not isinstance(schedule_id, str) or not schedule_id:
        raise ScheduleError(f"schedule_id must be a non-empty string, got {schedule_id!r}")
    try:
        check_name("schedule_id", schedule_id + "@" + "0" * (_ID_SUFFIX - 1))
    except ValueError as exc:
        raise ScheduleError(f"{exc} (with the slot its runs' workflow ids add)") from None
    return schedule_id


def _stored_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    try:
        return stored_options(options, check_attributes)
    except ValueError as exc:
        if isinstance(exc, ScheduleError):
            raise
        raise ScheduleError(f"workflow_options['attributes']: {exc}") from None


def _instant(arg: str, value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ScheduleError(f"{arg} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def describe(record: ScheduleRecord, now: datetime) -> ScheduleDescription:
    """A schedule as a client reads it, its next fire times reckoned from ``now``."""
    config, spec = record.config, record.config.spec
    after = now if record.next_slot is None else record.next_slot - timedelta(microseconds=1)
    upcoming = (
        [] if record.next_slot is None else spec.fire_times(record.schedule_id, after, _NEXT_SHOWN)
    )
    return ScheduleDescription(
        schedule_id=record.schedule_id,
        workflow_name=config.workflow_name,
        task_queue=config.task_queue,
        args=list(decode(config.args)),
        cron=spec.cron,
        every=spec.every,
        offset=spec.offset,
        timezone=spec.timezone,
        overlap=config.overlap,
        catchup_window=config.catchup_window,
        jitter=spec.jitter,
        start_at=spec.start_at,
        end_at=spec.end_at,
        paused=config.paused,
        note=config.note,
        workflow_options=public_options(config.options),
        next_fire_times=upcoming,
        recent=[ScheduleRun(r.slot, r.workflow_id, r.status or r.action) for r in record.recent],
        fired=record.fired,
        skipped=record.skipped,
        missed=record.missed,
        waiting=len(record.buffered),
        created_at=record.created_at,
        updated_at=record.updated_at,
    )
