"""History events: the append-only record that replay follows.

An event is either a *command* (issued by workflow code and matched on replay at the
same position) or *incoming* (something that happened to the workflow; on replay it
is delivered in the step where it was originally delivered).

History is a sequence of *steps*. A step delivers its incoming events to the code one at a
time, in the order they arrived, and runs the code until it waits after each (so a message
meets the state that every earlier message left: an update's validator sees what the
handler of the signal before it did); the commands the code issues are recorded where it
issues them, between the incoming events. The last event a step recorded has ``ends_step``
set, and its timestamp is the step's time (the workflow clock while the step ran). A step
that recorded nothing else records a STEP_COMPLETED event. Events at the end of a history
without ``ends_step`` (a start, a fired timer the store recorded) belong to a step that has
not completed yet.

Runs started before rule 2 (their start event has no ``rules``) follow rule 1: a step
delivers all its incoming events first (the start excepted, which runs the body at once), then
runs the code; their histories replay by it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any

import msgpack

from ._errors import PayloadError


class EventType(IntEnum):
    WORKFLOW_STARTED = 1
    WORKFLOW_COMPLETED = 2
    WORKFLOW_FAILED = 3
    WORKFLOW_CANCELLED = 4
    WORKFLOW_CONTINUED_AS_NEW = 5
    WORKFLOW_TERMINATED = 6
    WORKFLOW_TIMED_OUT = 7
    STEP_COMPLETED = 8
    ACTIVITY_SCHEDULED = 10
    ACTIVITY_COMPLETED = 11
    ACTIVITY_FAILED = 12
    ACTIVITY_CANCEL_REQUESTED = 13
    LOCAL_ACTIVITY_COMPLETED = 14
    LOCAL_ACTIVITY_FAILED = 15
    TIMER_STARTED = 20
    TIMER_FIRED = 21
    TIMER_CANCELLED = 22
    SIGNAL_RECEIVED = 30
    CANCEL_REQUESTED = 31
    UPDATE_ACCEPTED = 32
    UPDATE_COMPLETED = 33
    SIGNAL_DROPPED = 34
    CHILD_SCHEDULED = 40
    CHILD_COMPLETED = 41
    CHILD_FAILED = 42
    CHILD_CANCEL_REQUESTED = 43
    CHILD_SIGNALED = 44
    SIDE_EFFECT = 50
    PATCH = 51
    ATTRIBUTES_SET = 52

    @property
    def is_command(self) -> bool:
        return self in COMMANDS

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


COMMANDS = frozenset(
    {
        EventType.WORKFLOW_COMPLETED,
        EventType.WORKFLOW_FAILED,
        EventType.WORKFLOW_CANCELLED,
        EventType.WORKFLOW_CONTINUED_AS_NEW,
        EventType.ACTIVITY_SCHEDULED,
        EventType.ACTIVITY_CANCEL_REQUESTED,
        EventType.TIMER_STARTED,
        EventType.TIMER_CANCELLED,
        EventType.UPDATE_COMPLETED,
        EventType.SIGNAL_DROPPED,
        EventType.CHILD_SCHEDULED,
        EventType.CHILD_CANCEL_REQUESTED,
        EventType.CHILD_SIGNALED,
        EventType.SIDE_EFFECT,
        EventType.PATCH,
        EventType.ATTRIBUTES_SET,
    }
)

TERMINAL = frozenset(
    {
        EventType.WORKFLOW_COMPLETED,
        EventType.WORKFLOW_FAILED,
        EventType.WORKFLOW_CANCELLED,
        EventType.WORKFLOW_CONTINUED_AS_NEW,
        EventType.WORKFLOW_TERMINATED,
        EventType.WORKFLOW_TIMED_OUT,
    }
)

# Attributes that identify a command: replay compares them to detect changed code.
IDENTITY_KEYS: dict[EventType, tuple[str, ...]] = {
    EventType.ACTIVITY_SCHEDULED: ("name",),
    EventType.ACTIVITY_CANCEL_REQUESTED: ("scheduled",),
    EventType.TIMER_CANCELLED: ("started",),
    EventType.UPDATE_COMPLETED: ("update_id",),
    EventType.SIGNAL_DROPPED: ("name",),
    EventType.CHILD_SCHEDULED: ("name", "workflow_id"),
    EventType.CHILD_CANCEL_REQUESTED: ("scheduled",),
    EventType.CHILD_SIGNALED: ("scheduled", "name"),
    EventType.PATCH: ("change_id",),
}

# The replay rules a run follows, recorded in its start event ("rules"): 2, each incoming
# event of a step is delivered and the code run until it waits before the next one; absent,
# rule 1 (see the module's docstring). A run reset to a kept step keeps its old run's rules.
REPLAY_RULES = 2

# Attributes holding encoded payloads (bytes), decoded for people reading a history.
PAYLOAD_KEYS = frozenset({"args", "result", "value", "details"})


@dataclass(slots=True)
class Event:
    seq: int
    type: EventType
    timestamp: datetime
    attrs: dict[str, Any] = field(default_factory=dict)
    ends_step: bool = False  # the last event a completed step recorded

    def describe(self) -> str:
        keys = IDENTITY_KEYS.get(self.type, ())
        shown = ", ".join(f"{k}={self.attrs.get(k)!r}" for k in keys)
        return f"{self.type.name}({shown}) at seq {self.seq}"


def closes_without_code(event: Event) -> bool:
    """Whether the store closed the run with this event, from outside its code (terminated,
    cancelled before it began): replaying that step runs no code."""
    return event.type is EventType.WORKFLOW_TERMINATED or (
        event.type is EventType.WORKFLOW_CANCELLED and bool(event.attrs.get("before_start"))
    )


def split_steps(history: Sequence[Event]) -> list[Sequence[Event]]:
    """The steps of a history, oldest first; the last one has not completed when its last
    event does not end it."""
    steps: list[Sequence[Event]] = []
    start = 0
    for index, event in enumerate(history):
        if event.ends_step:
            steps.append(history[start : index + 1])
            start = index + 1
    if start < len(history):
        steps.append(history[start:])
    return steps


def pack_attrs(attrs: dict[str, Any]) -> bytes:
    return msgpack.packb(attrs, use_bin_type=True)  # type: ignore[no-any-return]


def unpack_attrs(body: bytes) -> dict[str, Any]:
    try:
        attrs = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:
        raise PayloadError(f"corrupt history event body ({len(body)} bytes): {exc}") from exc
    if not isinstance(attrs, dict):
        raise PayloadError(
            f"corrupt history event body: expected a map, got {type(attrs).__name__}"
        )
    return attrs
