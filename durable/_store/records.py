"""The typed records that leave the store (and the commits that go into it)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from .._definitions import RetryPolicy
from .._events import Event, EventType
from .._failures import Failure
from .._flow import DEFAULT_PRIORITY
from .._types import IdConflictPolicy, IdReusePolicy, Status

E = EventType


_CANCELS = frozenset({E.TIMER_CANCELLED, E.ACTIVITY_CANCEL_REQUESTED, E.CHILD_CANCEL_REQUESTED})


@dataclass(frozen=True)
class WorkflowTask:
    workflow_id: str
    run_id: str
    workflow_name: str
    fence: int
    next_seq: int
    resumed: bool  # some worker ran this run before (it was no longer pending)
    inbox_seq: int | None = None  # the inbox as the claim read it, when it did
    messages: tuple[InboxMessage, ...] = ()
    started: Event | None = None  # a new run's only event, when the claim read it
    fired: Event | None = None  # its due timer, recorded in history by the store (seq next_seq)


@dataclass(frozen=True)
class TaskCommit:
    """What one workflow task writes."""

    events: Sequence[Event]
    next_seq: int  # the run's next seq once these events are appended
    inbox_seq: int  # the inbox version the delivered messages were read at
    next_due: datetime | None  # when its earliest pending timer fires
    consumed: Sequence[int] = ()  # inbox rows delivered
    finished_activities: Sequence[tuple[int, int]] = ()  # (seq, attempt) finished in-process
    rejected_updates: Sequence[tuple[str, Failure]] = ()
    eager_slots: int = 0
    eager_activities: frozenset[tuple[str, str]] = frozenset()
    started_children: bool = True  # the run may have open children to close with it
    has_parent: bool = True  # a parent waits for the run's outcome
    # trace contexts to record, by the seq of the activity or child they are the parent of,
    # and the run's own (for the run it continues as)
    traces: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    run_trace: Mapping[str, str] | None = None

    @functools.cached_property
    def closing(self) -> Event | None:
        """The event that closes the run, if this step closes it."""
        return next((e for e in self.events if e.type.is_terminal), None)

    @functools.cached_property
    def withdrawn(self) -> frozenset[int]:
        """Activities, timers and children this step scheduled and cancelled again: never
        sent (neither their scheduling nor their cancellation has an effect)."""
        cancelled = {
            e.attrs["started" if e.type is E.TIMER_CANCELLED else "scheduled"]
            for e in self.events
            if e.type in _CANCELS
        }
        return frozenset(e.seq for e in self.events if e.seq in cancelled)

    def has_effect(self, event: Event) -> bool:
        """Whether the event changes anything beyond history (it is not withdrawn)."""
        if not self.withdrawn:
            return True
        ref = event.attrs.get("started" if event.type is E.TIMER_CANCELLED else "scheduled")
        return event.seq not in self.withdrawn and ref not in self.withdrawn


@dataclass(frozen=True)
class InboxMessage:
    id: int
    type: EventType
    attrs: dict[str, Any]


@dataclass
class ActivityTask:
    workflow_id: str
    run_id: str
    seq: int
    task_queue: str
    activity_name: str
    args: bytes
    attempt: int
    retry: RetryPolicy
    heartbeat_timeout: float | None
    deadline: datetime | None
    heartbeat_details: bytes | None
    schedule_deadline: datetime | None
    visible_at: datetime | None = None  # when the attempt became due (None: started at once)
    trace: Mapping[str, str] | None = None  # the context of the span that scheduled it
    workflow_name: str = ""  # its run's workflow (for its spans; the reaper leaves it out)


@dataclass(frozen=True)
class ActivityClaim:
    """The attempts a claim took, and when the queue's limits may let more be taken if they
    held due ones back (None: they did not)."""

    tasks: list[ActivityTask]
    held_back_until: datetime | None


@dataclass(frozen=True)
class WorkflowType:
    """A workflow type as the workers of ``task_queue`` registered it: how many positional
    arguments it takes (at least, at most: None for any number), None if they did not say
    (workers from before the count was recorded)."""

    task_queue: str
    arity: tuple[int, int | None] | None


@dataclass(frozen=True)
class QueryCall:
    id: str
    workflow_id: str
    run_id: str
    workflow_name: str
    name: str
    args: bytes


@dataclass(frozen=True)
class StartRequest:
    workflow_id: str
    workflow_name: str
    task_queue: str
    args: bytes
    id_reuse_policy: IdReusePolicy = "allow_duplicate"
    id_conflict_policy: IdConflictPolicy = "fail"
    start_delay: timedelta | None = None
    execution_timeout: timedelta | None = None
    attributes: dict[str, Any] | None = None
    parent: tuple[str, str, int] | None = None
    trace: Mapping[str, str] | None = None  # the trace context it was started in
    priority: int = DEFAULT_PRIORITY  # 1 highest .. 5 lowest
    # a debounced start (see durable/_store/debouncing.py): its run begins ``debounce`` after
    # the last such start of its id, at most ``debounce_max`` after the first (None: no cap)
    debounce: timedelta | None = None
    debounce_max: timedelta | None = None

    @property
    def is_plain(self) -> bool:
        """Started with the default policies, no parent and no debounce: nothing to check
        but the id."""
        return (
            self.id_reuse_policy == "allow_duplicate"
            and self.id_conflict_policy == "fail"
            and self.parent is None
            and self.debounce is None
        )


@dataclass(frozen=True, slots=True)
class ListFilter:
    """Which runs a list or a batch covers: those matching every filter given."""

    status: str | None = None  # "paused" for an open run paused
    workflow_name: str | None = None
    attributes: dict[str, Any] | None = None  # the runs whose attributes contain these
    started_after: datetime | None = None
    started_by: datetime | None = None  # (a batch: the runs started by the time it began)
    open_only: bool = False


Cursor = tuple[datetime, str, str]  # (started_at, workflow_id, run_id) of a page's last run


@dataclass(frozen=True, slots=True)
class BatchPage:
    """One chunk of a batch action: the runs acted on (workflow name, task queue of each)
    and where the next chunk begins (None: this was the last)."""

    acted: list[tuple[str, str]]
    after: Cursor | None


@dataclass(frozen=True, slots=True)
class Builds:
    """A worker's build: the one it pins the runs it starts to (None: it pins none), and
    every build whose runs it may claim (its own and those it lists as compatible)."""

    build_id: str | None = None
    accepted: tuple[str, ...] = ()


NO_BUILD = Builds()


@dataclass(frozen=True, slots=True)
class ResetRun:
    """The run a reset or fork started (``new`` False: a request made again found it)."""

    workflow_id: str
    run_id: str
    seq: int  # the point of the old run's history it was reset to
    workflow_name: str
    task_queue: str
    new: bool = True


def run_status(row: asyncpg.Record) -> Status:
    """A run's status as shown (and filtered on): "paused" for an open run paused (its
    status column keeps what it was: "pending" or "running")."""
    paused = row["paused_at"] is not None and row["closed_at"] is None
    status: Status = "paused" if paused else row["status"]
    return status


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run as the workflows table holds it; its result and failure still sealed (open
    them with Store.open_payload and Store.open_failure)."""

    workflow_id: str
    run_id: str
    workflow_name: str
    task_queue: str
    status: Status
    started_at: datetime
    closed_at: datetime | None
    attributes: dict[str, Any]
    parent_workflow_id: str | None
    history_length: int
    last_error: str | None
    result: bytes | None
    failure: bytes | None
    continued_run_id: str | None
    paused_at: datetime | None = None  # an open run paused then
    pause_reason: str | None = None
    reset_from: tuple[str, int] | None = None  # (run id, seq) a reset or fork started it from
    build_id: str | None = None  # the build it is pinned to
    priority: int = DEFAULT_PRIORITY

    @classmethod
    def of(cls, row: asyncpg.Record) -> RunRow:
        continued = row["continued_run_id"]
        paused_at = row["paused_at"] if row["closed_at"] is None else None
        return cls(
            workflow_id=row["workflow_id"],
            run_id=str(row["run_id"]),
            workflow_name=row["workflow_name"],
            task_queue=row["task_queue"],
            status=run_status(row),
            started_at=row["started_at"],
            closed_at=row["closed_at"],
            attributes=dict(row["attributes"]),
            parent_workflow_id=row["parent_workflow_id"],
            history_length=row["next_seq"] - 1,
            last_error=row["last_error"],
            result=row["result"],
            failure=row["failure"],
            continued_run_id=None if continued is None else str(continued),
            paused_at=paused_at,
            pause_reason=row["pause_reason"] if paused_at is not None else None,
            reset_from=None
            if row["reset_from_run"] is None
            else (str(row["reset_from_run"]), row["reset_from_seq"]),
            build_id=row["build_id"],
            priority=row["priority"],
        )


@dataclass(frozen=True, slots=True)
class PendingActivityRow:
    """An activity of a run that has no outcome yet; its last failure still sealed."""

    seq: int
    activity_name: str
    attempt: int  # attempts made so far
    running: bool
    scheduled_at: datetime
    visible_at: datetime  # when its next attempt may start
    last_failure: bytes | None


@dataclass(frozen=True, slots=True)
class WaitRow:
    """Something an open run waits on besides its activities: a timer (its seq and when it
    fires) or an open child (the seq that started it, its ids, name and status)."""

    kind: str  # "timer" or "child"
    seq: int
    fires_at: datetime | None
    child_id: str | None
    child_run_id: str | None
    child_name: str | None
    child_status: str | None


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """The answer to a query or an update, still sealed."""

    result: bytes | None
    failure: bytes | None


@dataclass(frozen=True, slots=True)
class ReleasedAttempt:
    """An activity attempt given back because the reply to its claim was lost."""

    workflow_id: str
    seq: int
    activity_name: str
    attempt: int


_Step = tuple[WorkflowTask, str, TaskCommit]  # a run's step, the worker committing it
_Rows = list[asyncpg.Record]
