"""Looking at workflows: describe (why a run failed, what it waits on), history (readable
times and durations), list and count."""

from __future__ import annotations

import argparse
import collections
from datetime import UTC, datetime, timedelta
from typing import Any

from .._client import HistoryEvent, WorkflowDescription, WorkflowHandle
from .._errors import QueryError
from .._errors import TimeoutError as DurableTimeoutError
from .._replayer import WAITS_QUERY
from .common import (
    AddCommand,
    add_attribute_option,
    add_run_args,
    attribute,
    connect,
    run_handle,
)
from .output import dumps, print_json, short, table, time

# history fields that hold a time as epoch seconds, and those that hold a duration in seconds
_TIME_FIELDS = frozenset({"fire_at", "execution_deadline"})
_DURATION_FIELDS = frozenset({"start_to_close", "heartbeat", "schedule_to_close", "seconds"})


def add_commands(command: AddCommand) -> None:
    describe = command(
        "describe",
        _describe,
        "Show a workflow's status (with the reason given to cancel it), run, times, "
        "attributes, its result or the failure that closed it (message, type, stack), and "
        "what it waits on: pending activities with their attempts and last failure (message, "
        "type, stack), timers, open children.",
    )
    add_run_args(describe)

    history = command(
        "history",
        _history,
        "Print a workflow's recorded history, one event per line, with each step's time "
        "since the start ('|' ends a step).",
    )
    add_run_args(history)

    listing = command("list", _list, "List workflow runs (the most recent ones), oldest first.")
    add_filter_args(listing, "runs")
    listing.add_argument(
        "--limit",
        type=int,
        default=100,
        metavar="N",
        help="show at most the N most recent runs (default 100)",
    )

    count = command("count", _count, "Count the workflow runs matching the filters.")
    add_filter_args(count, "runs")


def add_filter_args(parser: argparse.ArgumentParser, what: str) -> None:
    """The filters of client.list, as options."""
    parser.add_argument("--status", type=str.lower, help=f"only {what} with this status (any case)")
    parser.add_argument("--name", help=f"only {what} of this workflow name")
    add_attribute_option(parser, f"only {what} with this attribute value (repeatable)")


def filter_attributes(args: argparse.Namespace) -> dict[str, Any] | None:
    return dict(attribute(a) for a in args.attribute) or None


# ---------------------------------------------------------------------------- describe
async def _describe(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        handle = run_handle(client, args)
        desc = await handle.describe()
        result = await handle.result() if desc.status == "completed" else None
        waits = await _awaited(handle) if desc.closed_at is None else None
    if args.json:
        print_json({**vars(desc), "result": result, "awaits": waits})
    else:
        _print_description(desc, result, waits)
    return 0


async def _awaited(handle: WorkflowHandle[Any]) -> dict[str, Any] | None:
    """What the run's code awaits besides history's work (signals, conditions), as the worker
    holding it answers; None if no worker answers within _WAITS_TIMEOUT."""
    try:
        waits: dict[str, Any] = await handle.query(WAITS_QUERY, timeout=_WAITS_TIMEOUT)
    except (DurableTimeoutError, QueryError):
        return None
    return waits


_WAITS_TIMEOUT = 2.0  # seconds describe waits for a worker to say what a run awaits


def _print_description(
    desc: WorkflowDescription, result: Any, waits: dict[str, Any] | None
) -> None:
    rows = [
        ("workflow id", desc.workflow_id),
        ("run id", desc.run_id),
        ("name", desc.workflow_name),
        ("status", _status_line(desc)),
        ("task queue", desc.task_queue),
        ("started", time(desc.started_at)),
        ("closed", _closed_line(desc)),
        ("parent", desc.parent_workflow_id or "-"),
        ("reset from", _reset_from(desc)),
        ("next run", desc.next_run_id or "-"),
        ("build", desc.build_id or "-"),
        ("priority", str(desc.priority)),
        ("history", f"{desc.history_length} events"),
        ("attributes", dumps(desc.attributes) if desc.attributes else "-"),
        ("last error", desc.last_error or "-"),
    ]
    if desc.status == "completed":
        rows.append(("result", dumps(result)))
    if desc.failure is not None:
        kind = f" ({desc.failure_type})" if desc.failure_type else ""
        rows.append(("failure", f"{desc.failure}{kind}"))
    for label, value in rows:
        print(f"{label + ':':<13}{value}")
    if desc.failure_stack:
        print("stack:")
        print(_indented(desc.failure_stack))
    if desc.closed_at is None:
        _print_waits(desc, waits)


def _print_waits(desc: WorkflowDescription, waits: dict[str, Any] | None) -> None:
    print(f"pending activities:{'' if desc.pending_activities else ' -'}")
    for p in desc.pending_activities:
        line = f"  {p.activity_id} {p.activity_name}: {p.state}, attempt {p.attempt}"
        line += f", scheduled {time(p.scheduled_at)}"
        if p.next_attempt_at:
            line += f", next attempt {time(p.next_attempt_at)}"
        print(line)
        if p.last_failure:
            kind = f" ({p.last_failure_type})" if p.last_failure_type else ""
            print(f"    last failure: {p.last_failure}{kind}")
        if p.last_failure_stack:
            print(_indented(p.last_failure_stack, 6))
    print(f"pending timers:{'' if desc.pending_timers else ' -'}")
    for t in desc.pending_timers:
        print(f"  {t.timer_id}: fires {time(t.fires_at)}")
    print(f"open children:{'' if desc.open_children else ' -'}")
    for c in desc.open_children:
        print(f"  {c.workflow_id} ({c.workflow_name}, run {c.run_id[:8]}): {c.status}")
    if waits is None:
        print(f"awaited signals: unknown (no worker answered within {_WAITS_TIMEOUT:g} s)")
        return
    print(f"awaited signals: {', '.join(waits['signals']) or '-'}")
    if waits["conditions"]:
        print(f"awaited conditions (ctx.wait_until): {waits['conditions']}")


def _closed_line(desc: WorkflowDescription) -> str:
    if desc.closed_at is None:
        return "-"
    return f"{time(desc.closed_at)} (after {_duration(desc.closed_at - desc.started_at)})"


def _reset_from(desc: WorkflowDescription) -> str:
    if desc.reset_from is None:
        return "-"
    run_id, seq = desc.reset_from
    return f"run {run_id} at seq {seq}"


def _status_line(desc: WorkflowDescription) -> str:
    line = desc.status
    if desc.paused_at is not None:
        why = f": {desc.pause_reason}" if desc.pause_reason else ""
        line = f"paused since {time(desc.paused_at)}{why}"
    if desc.cancel_reason:
        asked = ":" if desc.status == "cancelled" else ", cancel requested:"
        line += f"{asked} {desc.cancel_reason}"
    return line


# ---------------------------------------------------------------------------- history
async def _history(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        events = await run_handle(client, args).history()
    if args.json:
        print_json([event_dict(e) for e in events])
        return 0
    began = events[0].timestamp if events else None
    for event in events:
        print(_event_line(event, began))
        for block in _long_fields(event):
            print(_indented(block, 8))
    return 0


def event_dict(event: HistoryEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "type": event.type,
        "timestamp": event.timestamp,
        "fields": event.fields,
        "ends_step": event.ends_step,
    }


def _event_line(event: HistoryEvent, began: datetime | None) -> str:
    fields = " ".join(
        f"{key}={_field(key, value)}" for key, value in event.fields.items() if not _is_long(value)
    )
    stamp = event.timestamp.isoformat(sep=" ", timespec="milliseconds")
    since = f"+{_duration(event.timestamp - began)}" if began else ""
    end = "|" if event.ends_step else " "  # the last event of a completed step
    return f"{event.seq:>4}{end} {stamp} {since:>9}  {event.type:<24}  {fields}".rstrip()


def _field(key: str, value: Any) -> str:
    if key in _TIME_FIELDS and isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).isoformat(sep=" ", timespec="milliseconds")
    if key in _DURATION_FIELDS and isinstance(value, int | float):
        return _duration(timedelta(seconds=value))
    if isinstance(value, dict) and "message" in value and "kind" in value:  # a failure
        kind = value.get("type") or value.get("kind")
        return short(f"{kind}: {value['message']}", 120)
    return short(value, 120)


def _is_long(value: Any) -> bool:
    return isinstance(value, str) and "\n" in value


def _long_fields(event: HistoryEvent) -> list[str]:
    """Multi-line texts of an event (a failure's traceback), printed as they are."""
    blocks = [f"{key}:\n{value.rstrip()}" for key, value in event.fields.items() if _is_long(value)]
    for key, value in event.fields.items():
        failure = value if isinstance(value, dict) else None
        while failure is not None:
            if failure.get("traceback"):
                blocks.append(f"{key} traceback:\n{str(failure['traceback']).rstrip()}")
            failure = failure.get("cause") if isinstance(failure.get("cause"), dict) else None
            key = "cause"
    return blocks


# ---------------------------------------------------------------------------- list, count
async def _list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    async with connect(args) as client:
        runs = collections.deque(
            [d async for d in client.list(args.status, args.name, filter_attributes(args))],
            maxlen=args.limit,
        )
    if args.json:
        print_json(list(runs))
        return 0
    if not runs:
        print("no workflows")
        return 0
    header = ("WORKFLOW ID", "RUN", "NAME", "STATUS", "STARTED", "CLOSED")
    table(
        [
            header,
            *(
                (
                    d.workflow_id,
                    d.run_id[:8],
                    d.workflow_name,
                    d.status,
                    time(d.started_at),
                    time(d.closed_at),
                )
                for d in runs
            ),
        ]
    )
    return 0


async def _count(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        count = await client.count(args.status, args.name, filter_attributes(args))
    if args.json:
        print_json({"count": count})
    else:
        print(count)
    return 0


# ---------------------------------------------------------------------------- formatting
def _duration(span: timedelta) -> str:
    """1.234s, 2m03s, 1h02m, 3d04h."""
    seconds = span.total_seconds()
    if seconds < 60:
        return f"{seconds:.3f}s"
    minutes, second = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{second:02d}s"
    hours, minute = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minute:02d}m"
    days, hour = divmod(hours, 24)
    return f"{days}d{hour:02d}h"


def _indented(text: str, by: int = 2) -> str:
    return "\n".join(" " * by + line for line in text.splitlines())
