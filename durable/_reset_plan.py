"""Where a run can be reset to, and what a run reset there starts with.

A reset point is the seq of the first event of a step that ran workflow code (or 1: from
the start, with the same input). The new run's history is the old run's events before the
point; its code replays those steps from their recorded results and runs live from there.
What those steps started and did not see finish is started again: activities are
scheduled anew, timers set for the time they were due, children started (or, for one whose
cancellation was asked, told it closed). Signals and updates the old run took in at or after
the point are delivered to the new run again, in their order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._events import Event, EventType, closes_without_code, split_steps
from ._failures import Failure

E = EventType

REDELIVERED = (E.SIGNAL_RECEIVED, E.UPDATE_ACCEPTED)  # messages a reset delivers again

_OUTCOMES = {
    E.ACTIVITY_COMPLETED: E.ACTIVITY_SCHEDULED,
    E.ACTIVITY_FAILED: E.ACTIVITY_SCHEDULED,
    E.CHILD_COMPLETED: E.CHILD_SCHEDULED,
    E.CHILD_FAILED: E.CHILD_SCHEDULED,
}


@dataclass(frozen=True, slots=True)
class ResetPlan:
    seq: int  # the reset point
    kept: Sequence[Event]  # the new run's history: the events before seq (at least the start)
    activities: Sequence[Event]  # ACTIVITY_SCHEDULED kept without outcome: scheduled again
    timers: Sequence[Event]  # TIMER_STARTED kept, neither fired nor cancelled: set again
    children: Sequence[Event]  # CHILD_SCHEDULED kept without outcome: started again
    cancelled_children: Sequence[Event]  # of those, the ones whose cancellation was asked
    messages: Sequence[Event]  # SIGNAL_RECEIVED, UPDATE_ACCEPTED at or after seq: again


def reset_points(history: Sequence[Event]) -> list[int]:
    """The seqs a run with this history can be reset to, oldest first."""
    points = [1]
    for step in split_steps(history):
        if step[0].seq > 1 and not closes_without_code(step[-1]):
            points.append(step[0].seq)
    return points


def default_reset_point(history: Sequence[Event]) -> int:
    """Just before the step that took in the failure of the activity or child that failed
    the run; else just before its last step that ran code."""
    points = reset_points(history)
    culprit = _failed_by(history)
    if culprit is not None:
        return max(p for p in points if p <= culprit)
    return points[-1]


def plan_reset(history: Sequence[Event], seq: int | None) -> ResetPlan:
    """What a run reset to ``seq`` (None: the default point) starts with; ValueError naming
    the valid points when ``seq`` is not one."""
    points = reset_points(history)
    if seq is None:
        seq = default_reset_point(history)
    elif seq not in points:
        raise ValueError(
            f"seq={seq!r} is not the first event of a workflow task of this run; valid reset "
            f"points: {', '.join(map(str, points))}"
        )
    kept = [e for e in history if e.seq < seq] or [history[0]]
    answered = {e.attrs["scheduled"] for e in kept if e.type in _OUTCOMES}
    fired = {e.attrs["started"] for e in kept if e.type in (E.TIMER_FIRED, E.TIMER_CANCELLED)}
    cancel_asked = {
        e.attrs["scheduled"]
        for e in kept
        if e.type in (E.ACTIVITY_CANCEL_REQUESTED, E.CHILD_CANCEL_REQUESTED)
    }
    open_ = [e for e in kept if e.seq not in answered]
    children = [e for e in open_ if e.type is E.CHILD_SCHEDULED]
    return ResetPlan(
        seq=seq,
        kept=kept,
        # an activity whose cancellation was asked was given up: its await ended then
        activities=[
            e for e in open_ if e.type is E.ACTIVITY_SCHEDULED and e.seq not in cancel_asked
        ],
        timers=[e for e in open_ if e.type is E.TIMER_STARTED and e.seq not in fired],
        children=children,
        cancelled_children=[e for e in children if e.seq in cancel_asked],
        messages=[e for e in history if e.seq >= seq and e.type in REDELIVERED],
    )


def _failed_by(history: Sequence[Event]) -> int | None:
    """The seq of the outcome event of the activity or child whose failure failed the run
    (the last such event that matches the failure's cause), or None."""
    closing = history[-1]
    if closing.type is not E.WORKFLOW_FAILED:
        return None
    cause = _activity_or_child_cause(closing.attrs.get("failure"))
    if cause is None:
        return None
    scheduled = {e.seq: e for e in history if e.type in (E.ACTIVITY_SCHEDULED, E.CHILD_SCHEDULED)}
    for event in reversed(history):
        if event.type not in (E.ACTIVITY_FAILED, E.CHILD_FAILED):
            continue
        origin = scheduled.get(event.attrs["scheduled"])
        if origin is not None and _matches(cause, origin):
            return event.seq
    return None


def _activity_or_child_cause(failure: Failure | None) -> Failure | None:
    depth = 0
    while failure is not None and depth < 50:
        if failure.get("kind") in ("activity", "child"):
            return failure
        failure, depth = failure.get("cause"), depth + 1
    return None


def _matches(cause: Failure, scheduled: Event) -> bool:
    if cause.get("kind") == "activity":
        return scheduled.type is E.ACTIVITY_SCHEDULED and scheduled.attrs.get("name") == cause.get(
            "activity_name"
        )
    return scheduled.type is E.CHILD_SCHEDULED and scheduled.attrs.get("workflow_id") == cause.get(
        "workflow_id"
    )
