"""Task queues: ``durable queue describe|configure``, the limits configure_task_queue sets
(held across every worker) and what describe_task_queue shows, from a shell."""

from __future__ import annotations

import argparse
import dataclasses
import re
from datetime import timedelta
from typing import Any

from .._client import TaskQueueDescription
from .._flow import RateLimit, TaskQueueConfig
from .common import AddCommand, connect, duration, is_duration
from .output import print_json, seconds_in, span, table, time

NONE = "none"  # the value that drops one limit


def add_commands(command: AddCommand) -> None:
    describe = command(
        "describe",
        _describe,
        "Show a task queue: its limits, its backlog of due tasks by priority, the activities "
        "running across all workers, and its live workers.",
    )
    describe.add_argument("name", help="the task queue")
    configure = command(
        "configure",
        _configure,
        "Change a task queue's limits, held across all its workers together; they take "
        "effect at the next claim. Only the limits given change (the current ones are read "
        f"first): give '{NONE}' to drop one, --clear to drop all. Prints the limits.",
    )
    configure.add_argument("name", help="the task queue")
    configure.add_argument(
        "--max-running-activities",
        metavar="N",
        help=f"at most N activities of the queue running at once, across all workers ({NONE}: "
        "no limit)",
    )
    configure.add_argument(
        "--rate-limit",
        metavar="COUNT/PERIOD",
        help="at most COUNT activity starts per PERIOD across all workers, as a token bucket "
        f"(COUNT at once, refilled evenly): 100/1s, 100/s, 5/1m ({NONE}: no limit)",
    )
    configure.add_argument(
        "--priority-aging",
        metavar="DURATION",
        help="a due task waiting this long gains one priority level, so none starves: 30s, "
        f"1m, 1h ({NONE}: tasks keep their priority)",
    )
    configure.add_argument(
        "--clear",
        action="store_true",
        help="start from no limits rather than the current ones (alone: drop them all)",
    )


async def _describe(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        described = await client.describe_task_queue(args.name)
    if args.json:
        print_json(queue_json(described))
    else:
        print_description(described)
    return 0


async def _configure(args: argparse.Namespace) -> int:
    changes = _changes(args)  # checked before anything is read or written
    if not changes and not args.clear:
        raise ValueError(
            "queue configure changes nothing: give the limits to change (--max-running-"
            f"activities, --rate-limit, --priority-aging; '{NONE}' drops one), or --clear to "
            "drop them all"
        )
    async with connect(args) as client:
        # read, then written: two configures of one queue at once may lose one's change
        current = TaskQueueConfig()
        if not args.clear:
            current = (await client.describe_task_queue(args.name)).config
        config = dataclasses.replace(current, **changes)
        # every field, so that limits this command has no option for are kept too
        limits = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        await client.configure_task_queue(args.name, **limits)
        described = await client.describe_task_queue(args.name)
    if args.json:
        print_json(queue_json(described))
    else:
        print(f"configured task queue {args.name}: {_limits_line(described.config)}")
    return 0


# ---------------------------------------------------------------------------- the options
def _changes(args: argparse.Namespace) -> dict[str, Any]:
    """The TaskQueueConfig fields the options given change (None: dropped)."""
    parsers = {
        "max_running_activities": _max_running,
        "rate_limit": _rate_limit,
        "priority_aging": _aging,
    }
    return {
        field: parse(getattr(args, field))
        for field, parse in parsers.items()
        if getattr(args, field) is not None
    }


def _max_running(text: str) -> int | None:
    if _is_none(text):
        return None
    value = int(text) if re.fullmatch(r"\s*-?\d+\s*", text) else 0
    if value < 1:
        raise ValueError(
            "--max-running-activities must be a whole number of at least 1 (activities of the "
            f"queue running at once, across all workers), or {NONE} for no limit; got {text!r}"
        )
    return value


_RATE = re.compile(r"\s*(\d+)\s*/\s*(\S+)\s*")


def _rate_limit(text: str) -> RateLimit | None:
    if _is_none(text):
        return None
    found = _RATE.fullmatch(text)
    count = int(found[1]) if found else 0
    per = _period(found[2]) if found else None
    if count < 1 or per is None:
        raise ValueError(
            "--rate-limit must be COUNT/PERIOD, at least 1 activity start per a positive "
            f"period, such as 100/1s, 100/s or 5/1m, or {NONE} for no limit; got {text!r}"
        )
    return RateLimit(count, per)


def _period(text: str) -> timedelta | None:
    """A rate's period: a positive duration, or a bare unit for one of it (``s``: 1s)."""
    return _positive_duration(text if text[:1].isdigit() else f"1{text}")


def _aging(text: str) -> timedelta | None:
    if _is_none(text):
        return None
    value = _positive_duration(text)
    if value is None:
        raise ValueError(
            "--priority-aging must be a positive duration such as 30s, 1m or 1h (the wait "
            f"after which a due task gains one priority level), or {NONE}; got {text!r}"
        )
    return value


def _positive_duration(text: str) -> timedelta | None:
    if not is_duration(text):
        return None
    value = duration(text)
    return value if value > timedelta(0) else None


def _is_none(text: str) -> bool:
    return text.strip().lower() == NONE


# ---------------------------------------------------------------------------- printing
def queue_json(desc: TaskQueueDescription) -> dict[str, Any]:
    """A description as JSON values: durations in seconds, the backlog's priorities as keys."""
    plain: dict[str, Any] = seconds_in(dataclasses.asdict(desc))
    plain["backlog"] = {str(p): n for p, n in sorted(desc.backlog.items())}
    return plain


def print_description(desc: TaskQueueDescription) -> None:
    config = desc.config
    rows = [
        ("task queue", desc.task_queue),
        ("max running", _max_running_text(config)),
        ("rate limit", _rate_text(config)),
        ("priority aging", span(config.priority_aging) if config.priority_aging else "-"),
        ("running", _count(desc.running, "activity", "activities")),
        ("backlog", _backlog_line(desc.backlog)),
    ]
    for label, value in rows:
        print(f"{label + ':':<16}{value}")
    print(f"workers:{'' if desc.workers else ' - (no live worker)'}")
    if desc.workers:
        table(
            [
                ("  IDENTITY", "STARTED", "LEASE UNTIL"),
                *(
                    (f"  {w.identity}", time(w.started_at), time(w.lease_until))
                    for w in desc.workers
                ),
            ]
        )


def _limits_line(config: TaskQueueConfig) -> str:
    parts = []
    if config.max_running_activities is not None:
        parts.append(f"max running {_max_running_text(config)}")
    if config.rate_limit is not None:
        parts.append(f"rate limit {_rate_text(config)}")
    if config.priority_aging is not None:
        parts.append(f"priority aging {span(config.priority_aging)}")
    return ", ".join(parts) or "no limits"


def _max_running_text(config: TaskQueueConfig) -> str:
    limit = config.max_running_activities
    return "-" if limit is None else _count(limit, "activity", "activities")


def _rate_text(config: TaskQueueConfig) -> str:
    rate = config.rate_limit
    return "-" if rate is None else f"{rate.count}/{span(rate.per)} activity starts"


def _backlog_line(backlog: dict[int, int]) -> str:
    if not backlog:
        return "-"
    levels = ", ".join(f"{n} at priority {p}" for p, n in sorted(backlog.items()))
    return f"{_count(sum(backlog.values()), 'due task', 'due tasks')}: {levels}"


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"
