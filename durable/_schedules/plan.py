"""What a schedule does when slots come due: which to start, which to drop, which wait.

Pure decisions on a schedule's state, made under its row lock in the transaction that then
starts the runs and stores the new state, so that each slot is handled exactly once.

Overlap policies, when a slot comes while the schedule's latest run is still open:
``skip`` drops the slot; ``buffer_one`` keeps it to start when that run closes (one at most:
later ones are dropped); ``buffer_all`` keeps every one, to start one after another;
``allow_all`` starts it anyway; ``cancel_other`` asks the open run to cancel and starts the
slot when it has closed (a newer slot replaces a waiting one); ``terminate_other`` terminates
the open run and starts the slot at once (of several slots due together, the last).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .spec import ScheduleSpec

OVERLAP_POLICIES = (
    "skip",
    "buffer_one",
    "buffer_all",
    "allow_all",
    "cancel_other",
    "terminate_other",
)
RECHECK = timedelta(seconds=1)  # how often a schedule with waiting slots looks at its open run
# slots a fire transaction handles, over all its schedules, at most (a long outage is worked
# off in passes; each schedule gets its share, at least SLOTS_AT_LEAST)
SLOTS_PER_PASS = 1000
SLOTS_AT_LEAST = 10


@dataclass(frozen=True)
class DueSlots:
    """The slots due by now from a schedule's next slot on."""

    fire: list[datetime]  # inside the catch-up window, in order
    missed: int  # older than the catch-up window: dropped and counted
    next_slot: datetime | None  # the first slot not due yet (None: the timetable ended)
    more: bool  # its share of SLOTS_PER_PASS reached: more are due


def due_slots(
    spec: ScheduleSpec,
    schedule_id: str,
    next_slot: datetime | None,
    catchup_window: timedelta,
    now: datetime,
    share: int = SLOTS_PER_PASS,
) -> DueSlots:
    """The slots due by ``now`` from ``next_slot`` on, at most ``share`` of them."""
    fire: list[datetime] = []
    missed = 0
    if next_slot is None:
        return DueSlots(fire, missed, None, False)
    slots = spec.slots_after(next_slot - timedelta(microseconds=1))
    for slot in itertools.islice(slots, share):
        due = slot + spec.jitter_for(schedule_id, slot)
        if due > now:
            return DueSlots(fire, missed, slot, False)
        if now - due > catchup_window:
            missed += 1
        else:
            fire.append(slot)
    following = next(slots, None)
    return DueSlots(fire, missed, following, following is not None)


@dataclass
class Overlap:
    """What the overlap policy makes of new slots."""

    start: list[datetime] = field(default_factory=list)
    skipped: list[datetime] = field(default_factory=list)
    buffered: list[datetime] = field(default_factory=list)
    cancel_open: bool = False
    terminate_open: bool = False


def apply_overlap(
    policy: str, slots: Sequence[datetime], buffered: Sequence[datetime], running: bool
) -> Overlap:
    """Start, drop or keep each slot (after the ones kept waiting), given whether the
    schedule's latest run is open."""
    out = Overlap(buffered=list(buffered))
    if out.buffered and not running:
        out.start.append(out.buffered.pop(0))
        running = True
    if policy == "allow_all":
        out.start.extend(slots)
        return out
    if policy == "terminate_other" and slots:
        *superseded, last = slots
        out.skipped.extend(superseded)
        out.terminate_open = running
        out.start.append(last)
        return out
    for slot in slots:
        if not running:
            out.start.append(slot)
            running = True
        elif policy == "skip":
            out.skipped.append(slot)
        elif policy == "buffer_all":
            out.buffered.append(slot)
        elif policy == "buffer_one" and out.buffered:
            out.skipped.append(slot)
        elif policy == "buffer_one":
            out.buffered.append(slot)
        else:  # cancel_other: the newest slot waits for the open run to close
            out.cancel_open = True
            out.skipped.extend(out.buffered)
            out.buffered = [slot]
    return out


def next_look(
    spec: ScheduleSpec,
    schedule_id: str,
    next_slot: datetime | None,
    buffered: Sequence[datetime],
    more: bool,
    now: datetime,
) -> datetime | None:
    """When the schedule needs a worker's look next: at its next slot's fire time, soon
    while slots wait for an open run to close, at once when more slots are due."""
    if more:
        return now
    due = None if next_slot is None else next_slot + spec.jitter_for(schedule_id, next_slot)
    if buffered:
        recheck = now + RECHECK
        return recheck if due is None else min(due, recheck)
    return due
