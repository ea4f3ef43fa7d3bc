"""What a client reads back: a run's description, its pending activities, its history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._errors import PayloadError
from .._events import PAYLOAD_KEYS, Event
from .._failures import Failure
from .._serialization import decode
from .._store import (
    PendingActivityRow,
    RunRow,
    Store,
    UnservedWork,
    WaitRow,
)


@dataclass(frozen=True)
class PendingActivity:
    activity_id: str
    activity_name: str
    attempt: int
    state: str
    scheduled_at: datetime
    next_attempt_at: datetime | None
    last_failure: str | None  # the message of its last attempt's failure
    last_failure_type: str | None = None  # its exception type (or ApplicationError's type)
    last_failure_stack: str | None = None  # its traceback, then each cause's, as recorded


@dataclass(frozen=True)
class PendingTimer:
    """A timer the run set and has not seen fire yet."""

    timer_id: str  # the seq of its TIMER_STARTED event
    fires_at: datetime


@dataclass(frozen=True)
class OpenChild:
    """A child workflow the run started that is still open."""

    workflow_id: str
    run_id: str
    workflow_name: str
    status: str


@dataclass(frozen=True)
class WorkflowDescription:
    workflow_id: str
    run_id: str
    workflow_name: str
    task_queue: str
    status: str
    started_at: datetime
    closed_at: datetime | None
    attributes: dict[str, Any]
    parent_workflow_id: str | None
    history_length: int
    # why its last workflow task failed, while it is retried; or what of it waits on a task
    # queue where no worker ever served it
    last_error: str | None
    pending_activities: list[PendingActivity] = field(default_factory=list)
    failure: str | None = None  # the message of the failure that closed it
    failure_type: str | None = None  # its exception type (or ApplicationError's type)
    failure_stack: str | None = None  # its traceback, then each cause's, as recorded
    pending_timers: list[PendingTimer] = field(default_factory=list)  # soonest first
    open_children: list[OpenChild] = field(default_factory=list)
    paused_at: datetime | None = None  # while it is paused: since then, and why
    pause_reason: str | None = None
    reset_from: tuple[str, int] | None = None  # (run id, seq): a reset or fork started it there
    next_run_id: str | None = None  # the run it continued as new as, or a reset of it started
    build_id: str | None = None  # the build it is pinned to (Worker(build_id=...)), if any
    priority: int = 3  # 1 highest .. 5 lowest: how its tasks are claimed
    # the reason given to cancel(), once the run took the request in (or was cancelled
    # before it began); describe() reads it for cancelled and open runs, list() does not
    cancel_reason: str | None = None


@dataclass(frozen=True)
class HistoryEvent:
    """One recorded event: ``.seq``, ``.type``, ``.timestamp`` and its fields as attributes;
    ``.ends_step`` marks the last event of a completed step (the step's time is then its
    timestamp)."""

    seq: int
    type: str
    timestamp: datetime
    fields: dict[str, Any]
    ends_step: bool = False

    def __getattr__(self, name: str) -> Any:
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(f"{self.type} event has no field {name!r}") from None


def history_event(event: Event) -> HistoryEvent:
    fields = {
        key: decode(value) if key in PAYLOAD_KEYS and isinstance(value, bytes) else value
        for key, value in event.attrs.items()
    }
    return HistoryEvent(event.seq, event.type.name, event.timestamp, fields, event.ends_step)


async def read_description(store: Store, row: RunRow) -> WorkflowDescription:
    """The description of the run ``row``, with what only describe() reads: its open work
    and the reason it was asked to cancel."""
    reason = await _cancel_reason(store, row)
    if row.closed_at is not None:
        return description(store, row, cancel_reason=reason)
    pending, waits = await store.open_work(row.workflow_id, row.run_id)
    unserved = await store.unserved_work(row.workflow_id, row.run_id)
    return description(store, row, pending, waits, unserved, cancel_reason=reason)


async def _cancel_reason(store: Store, row: RunRow) -> str | None:
    if row.closed_at is not None and row.status != "cancelled":
        return None
    try:
        return await store.cancel_reason(row.workflow_id, row.run_id)
    except PayloadError as exc:
        return f"(unreadable: {exc})"


def description(
    store: Store,
    row: RunRow,
    pending: Sequence[PendingActivityRow] = (),
    waits: Sequence[WaitRow] = (),
    unserved: Sequence[UnservedWork] = (),
    *,
    cancel_reason: str | None = None,
) -> WorkflowDescription:
    closed_by = _opened(store, row.failure)
    return WorkflowDescription(
        workflow_id=row.workflow_id,
        run_id=row.run_id,
        workflow_name=row.workflow_name,
        task_queue=row.task_queue,
        status=row.status,
        started_at=row.started_at,
        closed_at=row.closed_at,
        attributes=row.attributes,
        parent_workflow_id=row.parent_workflow_id,
        history_length=row.history_length,
        last_error="; ".join(filter(None, [row.last_error, *map(_unserved, unserved)])) or None,
        pending_activities=[pending_activity(p, _opened(store, p.last_failure)) for p in pending],
        failure=_message(closed_by),
        failure_type=_type(closed_by),
        failure_stack=_stack(closed_by),
        pending_timers=[PendingTimer(str(w.seq), w.fires_at) for w in waits if w.fires_at],
        open_children=[
            OpenChild(w.child_id, w.child_run_id, w.child_name or "", w.child_status or "")
            for w in waits
            if w.child_id is not None and w.child_run_id is not None
        ],
        paused_at=row.paused_at,
        pause_reason=row.pause_reason,
        reset_from=row.reset_from,
        next_run_id=row.continued_run_id,
        build_id=row.build_id,
        priority=row.priority,
        cancel_reason=cancel_reason,
    )


def _unserved(work: UnservedWork) -> str:
    """Why work waits that no error explains: nobody ever polled for it."""
    waiting = "the run" if work.seq is None else f"activity {work.seq}"
    return (
        f"no worker has ever served {work.kind} {work.name!r} on task queue "
        f"{work.task_queue!r}: {waiting} waits until one does"
    )


def pending_activity(
    row: PendingActivityRow, last_failure: Failure | str | None
) -> PendingActivity:
    return PendingActivity(
        activity_id=str(row.seq),
        activity_name=row.activity_name,
        attempt=row.attempt,
        state="running" if row.running else ("backoff" if row.attempt else "scheduled"),
        scheduled_at=row.scheduled_at,
        next_attempt_at=None if row.running else row.visible_at,
        last_failure=_message(last_failure),
        last_failure_type=_type(last_failure),
        last_failure_stack=_stack(last_failure),
    )


def _opened(store: Store, sealed: bytes | None) -> Failure | str | None:
    """A stored failure, or a note saying which codec this client would need to read it."""
    try:
        return store.open_failure(sealed)
    except PayloadError as exc:
        return f"(unreadable: {exc})"


def _message(failure: Failure | str | None) -> str | None:
    return failure if not isinstance(failure, dict) else failure.get("message")


def _type(failure: Failure | str | None) -> str | None:
    return failure.get("type") if isinstance(failure, dict) else None


def _stack(failure: Failure | str | None) -> str | None:
    """The failure's recorded traceback, then each cause's (those that have one)."""
    parts: list[str] = []
    cause = failure if isinstance(failure, dict) else None
    while cause is not None and len(parts) < 20:
        traceback = cause.get("traceback")
        if traceback:
            parts.append(str(traceback).rstrip())
        cause = cause.get("cause")
    return "\n\ncaused by:\n".join(parts) or None
