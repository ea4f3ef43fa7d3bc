"""What a schedule is set to: its timetable, what it starts and how, checked as a whole."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .._errors import ScheduleError
from .._flow import check_priority
from .plan import OVERLAP_POLICIES
from .spec import ScheduleSpec

TIMETABLE = ("cron", "every", "offset", "timezone", "jitter", "start_at", "end_at")
# the client.start options a schedule's runs may take (their id is the slot's)
WORKFLOW_OPTIONS = ("execution_timeout", "attributes", "priority")
RESERVED_ATTRIBUTES = ("schedule_id", "scheduled_at")
DEFAULT_CATCHUP = timedelta(minutes=10)
_MAX_NOTE = 1000


@dataclass(frozen=True)
class ScheduleConfig:
    workflow_name: str
    task_queue: str
    args: bytes  # encoded, not sealed
    spec: ScheduleSpec
    overlap: str = "skip"
    catchup_window: timedelta = DEFAULT_CATCHUP
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # stored form
    note: str | None = None
    paused: bool = False

    def with_timetable(self, changes: Mapping[str, Any]) -> ScheduleConfig:
        """The config with the timetable keywords given changed (cron or every replaces the
        other); checked."""
        current = {key: getattr(self.spec, key) for key in TIMETABLE}
        if "cron" in changes or "every" in changes:
            current.update(cron=None, every=None, offset=None)
        current.update(changes)
        if current["every"] is None and current["offset"] == timedelta(0):
            current["offset"] = None  # (a cron timetable stores none)
        return dataclasses.replace(self, spec=ScheduleSpec.build(**current))


def check_overlap(overlap: object) -> str:
    if overlap not in OVERLAP_POLICIES:
        raise ScheduleError(
            f"overlap={overlap!r} is not a policy: use one of {', '.join(OVERLAP_POLICIES)}"
        )
    return str(overlap)


def check_catchup(window: object) -> timedelta:
    if not isinstance(window, timedelta) or window < timedelta(seconds=1):
        raise ScheduleError(
            f"catchup_window must be a timedelta of at least one second, got {window!r}: how "
            "late a slot may still fire after an outage (e.g. timedelta(minutes=10))"
        )
    return window


def check_note(note: object) -> str | None:
    if note is not None and (not isinstance(note, str) or len(note) > _MAX_NOTE):
        raise ScheduleError(f"note must be a string of at most {_MAX_NOTE} characters or None")
    return note


def check_paused(paused: object) -> bool:
    if not isinstance(paused, bool):
        raise ScheduleError(f"paused must be True or False, got {paused!r}")
    return paused


def stored_options(options: object, check_attributes: Any) -> dict[str, Any]:
    """``workflow_options`` (start options of each run) in their stored form, checked."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ScheduleError(f"workflow_options must be a dict of start options, got {options!r}")
    unknown = sorted(set(options) - set(WORKFLOW_OPTIONS))
    if unknown:
        raise ScheduleError(
            f"workflow_options has {', '.join(map(repr, unknown))}, which a schedule's runs "
            f"cannot take: it takes {', '.join(WORKFLOW_OPTIONS)} (each run's id is the slot's)"
        )
    stored: dict[str, Any] = {}
    timeout = options.get("execution_timeout")
    if timeout is not None:
        if not isinstance(timeout, timedelta) or timeout <= timedelta(0):
            raise ScheduleError(
                f"workflow_options['execution_timeout'] must be a positive timedelta, got {timeout!r}"
            )
        stored["execution_timeout"] = timeout.total_seconds()
    priority = options.get("priority")
    if priority is not None:
        try:
            stored["priority"] = check_priority(priority, "workflow_options['priority']")
        except ValueError as exc:
            raise ScheduleError(str(exc)) from None
    attributes = options.get("attributes")
    if attributes is not None:
        checked = check_attributes(attributes)
        taken = sorted(set(checked) & set(RESERVED_ATTRIBUTES))
        if taken:
            raise ScheduleError(
                f"workflow_options['attributes'] sets {', '.join(map(repr, taken))}, which the "
                "schedule sets on each run: choose other names"
            )
        stored["attributes"] = checked
    return stored


def public_options(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The stored start options as ``workflow_options`` takes them."""
    options: dict[str, Any] = {}
    if stored.get("execution_timeout") is not None:
        options["execution_timeout"] = timedelta(seconds=stored["execution_timeout"])
    if stored.get("attributes"):
        options["attributes"] = dict(stored["attributes"])
    if stored.get("priority") is not None:
        options["priority"] = stored["priority"]
    return options
