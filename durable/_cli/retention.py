"""Retention: export the closed runs a purge would delete (JSON lines), and purge them."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TextIO

from .._client import Client, HistoryEvent, WorkflowDescription
from .._types import CLOSED_STATUSES, OPEN_STATUSES
from .common import AddCommand, aware_time, connect, duration, is_duration
from .inspecting import event_dict
from .output import dumps, print_json


def add_commands(command: AddCommand) -> None:
    export = command(
        "export",
        _export,
        "Write the closed runs a purge with the same options would delete (or, with --open, "
        "the runs still open), each with its history, as JSON lines (one run per line), oldest "
        "first: what durable.testing.Replayer reads.",
        json=False,
    )
    chosen = export.add_mutually_exclusive_group(required=True)
    _add_selection(export, chosen)
    chosen.add_argument(
        "--open",
        action="store_true",
        help="the runs still open (pending, running, paused) instead: the histories a new "
        "deploy must replay",
    )
    export.add_argument(
        "--output", "-o", metavar="FILE", help="write to FILE instead of standard output"
    )
    purge = command(
        "purge",
        _purge,
        "Delete the runs closed before a time, with their history, inbox, tasks and calls "
        "(open runs never), in small batches; prints how many.",
    )
    _add_selection(purge, purge)


def _add_selection(
    parser: argparse.ArgumentParser, when: argparse.ArgumentParser | argparse._ActionsContainer
) -> None:
    when.add_argument(
        "--closed-before",
        required=when is parser,
        type=closed_before,
        metavar="AGE|TIME",
        help="how long ago (30d, 12h, 90m, 45s: by the database's clock; 0s: every run "
        "closed by now) or an ISO 8601 time with its offset (2026-11-01T00:00Z); to export "
        "and then purge the same runs, give both the same time",
    )
    parser.add_argument(
        "--status",
        type=str.lower,
        choices=CLOSED_STATUSES,
        help="only runs that closed with this status",
    )


def closed_before(text: str) -> datetime | timedelta:
    """``30d`` (an age: ``0s`` is now) or an ISO 8601 time with an offset."""
    if is_duration(text):
        return duration(text)
    try:
        return aware_time(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an age (30d, 12h, 90m, 45s) nor an ISO 8601 time with an "
            "offset (2026-11-01T00:00:00+00:00)"
        ) from None


async def _export(args: argparse.Namespace) -> int:
    count = 0
    with _opened(args.output) as out:
        async with connect(args) as client:
            async for run, history in _runs(client, args):
                line = dataclasses.asdict(run)
                del line["pending_activities"]  # (the history holds them)
                line["history"] = [event_dict(e) for e in history]
                out.write(dumps(line) + "\n")
                count += 1
    print(f"exported {count} run{'' if count == 1 else 's'}", file=sys.stderr)
    return 0


async def _runs(
    client: Client, args: argparse.Namespace
) -> AsyncIterator[tuple[WorkflowDescription, list[HistoryEvent]]]:
    if not args.open:
        async for closed in client.export(args.closed_before, args.status):
            yield closed
        return
    for status in OPEN_STATUSES:
        async for run in client.list(status=status):
            handle = client.get_handle(run.workflow_id, run_id=run.run_id)
            yield run, await handle.history()


@contextmanager
def _opened(path: str | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    with open(path, "w", encoding="utf-8") as out:
        yield out


async def _purge(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        purged = await client.purge(args.closed_before, args.status)
    if args.json:
        print_json({"purged": purged})
    else:
        print(f"purged {purged} closed run{'' if purged == 1 else 's'}")
    return 0
