"""Schedules: ``durable schedule create|list|describe|pause|unpause|trigger|backfill|update|
delete``, what the client's schedule calls do, from a shell."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any
from zoneinfo import ZoneInfo

from .._client import ScheduleDescription
from .._schedules import OVERLAP_POLICIES
from .common import (
    AddCommand,
    Handler,
    add_attribute_option,
    add_json_args,
    age,
    attribute,
    aware_time,
    connect,
    duration,
    json_value,
)
from .output import dumps, print_json, seconds_in, span, table, time

# the options of create and update that are create_schedule's keywords of the same name
_KEYWORDS = (
    "cron",
    "every",
    "offset",
    "timezone",
    "task_queue",
    "overlap",
    "catchup_window",
    "jitter",
    "start_at",
    "end_at",
)


def add_commands(command: AddCommand) -> None:
    _add_create(command)
    command("list", _list, "List the schedules, in id order.")
    describe = command(
        "describe",
        _describe,
        "Show a schedule: its timetable and settings, whether it is paused, its next fire "
        "times, the slots it handled lately with their runs' status, and its counters.",
    )
    _add_id(describe)
    _add_acting(command)
    backfill = command(
        "backfill",
        _backfill,
        "Fire every slot of a schedule's timetable from --start (included) to --end (not), "
        "as its overlap policy allows; a slot that fired before does not fire again.",
    )
    _add_id(backfill)
    for option in ("--start", "--end"):
        backfill.add_argument(
            option,
            required=True,
            type=aware_time,
            metavar="TIME",
            help="ISO 8601 time with its offset (2026-12-01T00:00Z)",
        )
    _add_update(command)
    delete = command(
        "delete", _acting("delete"), "Delete a schedule; the runs it started are left alone."
    )
    _add_id(delete)


def _add_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", help="the schedule's id")


def _add_create(command: AddCommand) -> None:
    create = command(
        "create",
        _create,
        "Create a schedule: start workflow NAME with the arguments at each slot of a --cron "
        "or --every timetable (each run's workflow id is ID@<slot in ISO 8601 UTC>); prints "
        "when it fires next.",
    )
    _add_id(create)
    create.add_argument("name", help="registered workflow name")
    add_json_args(create, "workflow arguments")
    _add_settings(create, required=True)
    create.add_argument(
        "--paused", action="store_true", help="create it paused (`schedule unpause` starts it)"
    )


def _add_acting(command: AddCommand) -> None:
    for name, summary in (
        ("pause", "Pause a schedule: no slot fires until it is unpaused."),
        (
            "unpause",
            "Unpause a schedule; slots that passed while paused fire if within its catch-up "
            "window, the others are counted missed.",
        ),
    ):
        sub = command(name, _acting(name), summary)
        _add_id(sub)
        sub.add_argument("--note", help="why, shown by describe")
    trigger = command(
        "trigger",
        _acting("trigger"),
        "Fire a schedule now (a slot at the database's time), as its overlap policy allows.",
    )
    _add_id(trigger)


def _add_update(command: AddCommand) -> None:
    update = command(
        "update",
        _update,
        "Change a schedule: only the settings given change (a new --cron or --every replaces "
        "the timetable, which goes on from now); prints when it fires next.",
    )
    _add_id(update)
    update.add_argument("--workflow", metavar="NAME", help="start this registered workflow")
    update.add_argument(
        "--arg",
        dest="workflow_args",
        action="append",
        type=json_value,
        metavar="JSON",
        help="an argument of the workflow, as JSON (repeatable; @PATH: from a file): given, "
        "they replace the arguments (with --workflow and no --arg, it takes none)",
    )
    _add_settings(update, required=False)


def _add_settings(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """The options of create (``required``: a timetable) and update."""
    timetable = parser.add_mutually_exclusive_group(required=required)
    timetable.add_argument(
        "--cron",
        metavar="EXPR",
        help="five fields, minute hour day month weekday ('0 3 * * *'), or @hourly, @daily, "
        "@weekly, @monthly, @yearly; read in --timezone",
    )
    timetable.add_argument(
        "--every",
        type=age,
        metavar="DURATION",
        help="a fixed interval (30s, 15m, 1h, 1d), counted from the Unix epoch",
    )
    parser.add_argument(
        "--offset",
        type=duration,
        metavar="DURATION",
        help="with --every: shift each slot by this much (--every 1h --offset 5m: at :05)",
    )
    parser.add_argument(
        "--timezone", metavar="ZONE", help="IANA zone the cron is read in (default UTC)"
    )
    parser.add_argument(
        "--task-queue", help="task queue of its runs (default: where a worker registered it)"
    )
    parser.add_argument(
        "--overlap",
        choices=OVERLAP_POLICIES,
        metavar="POLICY",
        help="what a slot does while the schedule's last run is still open: "
        f"{', '.join(OVERLAP_POLICIES)} (default skip)",
    )
    parser.add_argument(
        "--catchup-window",
        type=age,
        metavar="DURATION",
        help="how late after an outage a slot still fires (default 10m)",
    )
    parser.add_argument(
        "--jitter",
        type=duration,
        metavar="DURATION",
        help="fire each slot up to this much late (the same for the same slot; default 0s)",
    )
    for option, what in (("--start-at", "before"), ("--end-at", "after")):
        parser.add_argument(
            option,
            type=aware_time,
            metavar="TIME",
            help=f"no slot {what} this ISO 8601 time with its offset (2026-12-01T00:00Z)",
        )
    parser.add_argument("--note", help="a note shown by describe ('' for none)")
    parser.add_argument(
        "--execution-timeout",
        type=age,
        metavar="DURATION",
        help="each run's execution timeout (e.g. 1h)",
    )
    add_attribute_option(
        parser, "an attribute of each run (repeatable), besides schedule_id and scheduled_at"
    )


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The create_schedule keywords the options give."""
    given = {key: getattr(args, key) for key in _KEYWORDS if getattr(args, key) is not None}
    if args.note is not None:
        given["note"] = args.note or None
    return given


def _run_options(args: argparse.Namespace, current: dict[str, Any]) -> dict[str, Any] | None:
    """The runs' start options (workflow_options): ``current`` with those given changed
    (attributes key by key); None when none is given."""
    attributes = dict(attribute(a) for a in args.attribute)
    if args.execution_timeout is None and not attributes:
        return None
    options = dict(current)
    if args.execution_timeout is not None:
        options["execution_timeout"] = args.execution_timeout
    if attributes:
        options["attributes"] = {**current.get("attributes", {}), **attributes}
    return options


async def _create(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        handle = await client.create_schedule(
            args.id,
            args.name,
            *args.args,
            **_settings(args),
            paused=args.paused,
            workflow_options=_run_options(args, {}),
        )
        described = await handle.describe()
    return _print_changed("created", described, as_json=args.json)


async def _update(args: argparse.Namespace) -> int:
    changes = _settings(args)
    if args.workflow is not None:
        changes["workflow"] = args.workflow
    if args.workflow_args is not None:
        changes["args"] = args.workflow_args
    run_options = args.execution_timeout is not None or bool(args.attribute)
    if not changes and not run_options:
        raise ValueError(
            "schedule update changes nothing: give the settings to change, e.g. "
            "--cron '0 4 * * *' (see durable schedule update --help)"
        )
    async with connect(args) as client:
        handle = client.get_schedule(args.id)
        if run_options:
            current = (await handle.describe()).workflow_options
            changes["workflow_options"] = _run_options(args, current)
        await handle.update(**changes)
        described = await handle.describe()
    return _print_changed("updated", described, as_json=args.json)


def _print_changed(done: str, desc: ScheduleDescription, *, as_json: bool) -> int:
    if as_json:
        print_json(schedule_json(desc))
        return 0
    upcoming = desc.next_fire_times
    if desc.paused:
        fires = "it is paused"
    elif upcoming:
        fires = f"it fires next at {time(upcoming[0])}"
    else:
        fires = "its timetable has no more slots"
    print(f"{done} schedule {desc.schedule_id}: {fires}")
    return 0


async def _list(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        schedules = [d async for d in client.list_schedules()]
    if args.json:
        print_json([schedule_json(d) for d in schedules])
    else:
        print_list(schedules)
    return 0


async def _describe(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        described = await client.get_schedule(args.id).describe()
    if args.json:
        print_json(schedule_json(described))
    else:
        print_description(described)
    return 0


_DONE = {
    "pause": "paused",
    "unpause": "unpaused",
    "trigger": "triggered",
    "delete": "deleted",
}


def _acting(action: str) -> Handler:
    """The handler of a command that calls ``handle.<action>`` (with ``--note`` when the
    command has it)."""

    async def act(args: argparse.Namespace) -> int:
        options = {"note": args.note} if "note" in args else {}
        async with connect(args) as client:
            await getattr(client.get_schedule(args.id), action)(**options)
        _done(args, action, f"{_DONE[action]} schedule {args.id}")
        return 0

    return act


async def _backfill(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        await client.get_schedule(args.id).backfill(args.start, args.end)
    _done(
        args,
        "backfill",
        f"backfilled schedule {args.id} from {time(args.start)} to {time(args.end)}",
    )
    return 0


def _done(args: argparse.Namespace, action: str, text: str) -> None:
    if args.json:
        print_json({"schedule_id": args.id, "action": action})
    else:
        print(text)


# ---------------------------------------------------------------------------- printing
def schedule_json(desc: ScheduleDescription) -> dict[str, Any]:
    """A description as JSON values: durations in seconds."""
    plain: dict[str, Any] = seconds_in(dataclasses.asdict(desc))
    return plain


def print_description(desc: ScheduleDescription) -> None:
    rows = [
        ("schedule id", desc.schedule_id),
        ("workflow", desc.workflow_name),
        ("task queue", desc.task_queue),
        ("timetable", _timetable(desc)),
        ("time zone", desc.timezone),
        ("jitter", span(desc.jitter) if desc.jitter else "-"),
        ("start at", time(desc.start_at)),
        ("end at", time(desc.end_at)),
        ("overlap", desc.overlap),
        ("catch-up window", span(desc.catchup_window)),
        ("state", "paused" if desc.paused else "active"),
        ("note", desc.note or "-"),
        ("run options", _run_options_line(desc.workflow_options)),
        ("counters", _counters(desc)),
        ("created", time(desc.created_at)),
        ("updated", time(desc.updated_at)),
    ]
    for label, value in rows:
        print(f"{label + ':':<17}{value}")
    print(f"next fire times:{'' if desc.next_fire_times else ' - (the timetable has ended)'}")
    for fire in desc.next_fire_times:
        print(f"  {time(fire)}")
    print(f"recent slots:{'' if desc.recent else ' -'}")
    if desc.recent:
        zone = ZoneInfo(desc.timezone)  # (as the fire times)
        table(
            [
                ("  SLOT", "WORKFLOW ID", "STATUS"),
                *(
                    (f"  {time(r.scheduled_at.astimezone(zone))}", r.workflow_id, r.status)
                    for r in desc.recent
                ),
            ]
        )


def _timetable(desc: ScheduleDescription) -> str:
    if desc.every is None:
        return f"cron {desc.cron}"
    shifted = f", offset {span(desc.offset)}" if desc.offset else ""
    return f"every {span(desc.every)}{shifted}"


def _run_options_line(options: dict[str, Any]) -> str:
    parts = []
    if "execution_timeout" in options:
        parts.append(f"execution timeout {span(options['execution_timeout'])}")
    if "attributes" in options:
        parts.append(f"attributes {dumps(options['attributes'])}")
    return ", ".join(parts) or "-"


def _counters(desc: ScheduleDescription) -> str:
    return (
        f"{desc.fired} fired, {desc.skipped} skipped (overlap), {desc.missed} missed "
        f"(outside the catch-up window), {desc.waiting} waiting"
    )


def print_list(schedules: list[ScheduleDescription]) -> None:
    if not schedules:
        print("no schedules")
        return
    header = ("SCHEDULE ID", "WORKFLOW", "TIMETABLE", "ZONE", "STATE", "NEXT FIRE", "FIRED")
    table(
        [
            header,
            *(
                (
                    d.schedule_id,
                    d.workflow_name,
                    _timetable(d),
                    d.timezone,
                    "paused" if d.paused else "active",
                    time(d.next_fire_times[0] if d.next_fire_times else None),
                    str(d.fired),
                )
                for d in schedules
            ),
        ]
    )
