"""What a client reads back: a run's description, its pending activities, its history."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._errors import PayloadError
from .._events import PAYLOAD_KEYS, Event
from .._serialization import decode
from .._store import (
    PendingActivityRow,
    RunRow,
    Store,
)


@dataclass(frozen=True)
class PendingActivity:
    activity_id: str
    activity_name: str
    attempt: int
    state: str
    scheduled_at: datetime
    next_attempt_at: datetime | None
    last_failure: str | None


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
    last_error: str | None  # why its last workflow task failed, while it is retried
    pending_activities: list[PendingActivity] = field(default_factory=list)
    failure: str | None = None  # the message of the failure that closed it
    paused_at: datetime | None = None  # while it is paused: since then, and why
    pause_reason: str | None = None
    reset_from: tuple[str, int] | None = None  # (run id, seq): a reset or fork started it there
    next_run_id: str | None = None  # the run it continued as new as, or a reset of it started
    build_id: str | None = None  # the build it is pinned to (Worker(build_id=...)), if any


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


def description(
    row: RunRow,
    pending: list[tuple[PendingActivityRow, str | None]],
    failure: str | None = None,
) -> WorkflowDescription:
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
        last_error=row.last_error,
        pending_activities=[pending_activity(p, last_failure) for p, last_failure in pending],
        failure=failure,
        paused_at=row.paused_at,
        pause_reason=row.pause_reason,
        reset_from=row.reset_from,
        next_run_id=row.continued_run_id,
        build_id=row.build_id,
    )


def pending_activity(row: PendingActivityRow, last_failure: str | None) -> PendingActivity:
    return PendingActivity(
        activity_id=str(row.seq),
        activity_name=row.activity_name,
        attempt=row.attempt,
        state="running" if row.running else ("backoff" if row.attempt else "scheduled"),
        scheduled_at=row.scheduled_at,
        next_attempt_at=None if row.running else row.visible_at,
        last_failure=last_failure,
    )


def failure_message(store: Store, sealed: bytes | None) -> str | None:
    """A stored failure's message, or a note saying which codec this client would need."""
    try:
        failure = store.open_failure(sealed)
    except PayloadError as exc:
        return f"(unreadable: {exc})"
    return None if failure is None else failure.get("message")
