"""Schedules: timetables (spec), the decisions made when slots come due (plan), and what a
schedule is set to (config). Pure: the store runs the decisions in its transactions, the
client checks what users give, the worker asks the store to fire."""

from .config import (
    DEFAULT_CATCHUP,
    RESERVED_ATTRIBUTES,
    TIMETABLE,
    WORKFLOW_OPTIONS,
    ScheduleConfig,
    check_catchup,
    check_note,
    check_overlap,
    check_paused,
    public_options,
    stored_options,
)
from .plan import (
    OVERLAP_POLICIES,
    SLOTS_AT_LEAST,
    SLOTS_PER_PASS,
    DueSlots,
    apply_overlap,
    due_slots,
    next_look,
)
from .spec import ScheduleSpec, slot_label

__all__ = [
    "DEFAULT_CATCHUP",
    "OVERLAP_POLICIES",
    "RESERVED_ATTRIBUTES",
    "SLOTS_AT_LEAST",
    "SLOTS_PER_PASS",
    "TIMETABLE",
    "WORKFLOW_OPTIONS",
    "DueSlots",
    "ScheduleConfig",
    "ScheduleSpec",
    "apply_overlap",
    "check_catchup",
    "check_note",
    "check_overlap",
    "check_paused",
    "due_slots",
    "next_look",
    "public_options",
    "slot_label",
    "stored_options",
]
