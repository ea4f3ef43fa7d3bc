"""Talking to workflows and inspecting them: start, signal, query, cancel, terminate, pause,
resume, reset, fork, result, describe, history, list, and batch over a list filter (each also
as ``durable workflow COMMAND``)."""

from __future__ import annotations

import argparse
import collections
import sys
import uuid
from datetime import datetime
from typing import Any

from .._client import Client, HistoryEvent, WorkflowDescription, WorkflowHandle
from .._store import BATCH_ACTIONS
from .common import AddCommand, Handler, add_json_args, attribute, connect, json_value
from .output import dumps, print_json, short, table, time


def add_commands(command: AddCommand) -> None:
    _add_talking(command)
    _add_inspecting(command)
    _add_batch(command)


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """The run a per-run command acts on: a workflow id, and optionally one of its runs."""
    parser.add_argument("id", help="workflow id")
    parser.add_argument(
        "--run-id",
        help="act on this run only (default: the workflow's open run, else its latest)",
    )


def _handle(client: Client, args: argparse.Namespace) -> WorkflowHandle[Any]:
    return client.get_handle(args.id, run_id=args.run_id)


def _add_talking(command: AddCommand) -> None:
    start = command(
        "start",
        _start,
        "Start a workflow by its registered name; prints its workflow id and run id.",
    )
    start.add_argument("name", help="registered workflow name")
    add_json_args(start, "workflow arguments")
    start.add_argument("--id", help="workflow id (default: a new UUID)")
    start.add_argument("--task-queue", help="task queue (default: where a worker registered it)")
    start.add_argument("--wait", action="store_true", help="wait for the result and print it")
    start.add_argument(
        "--timeout", type=float, help="with --wait: give up after S seconds", metavar="S"
    )

    signal = command("signal", _signal, "Send a signal to a running workflow.", json=False)
    add_run_args(signal)
    signal.add_argument("name", help="signal name")
    add_json_args(signal, "signal arguments")

    query = command(
        "query", _query, "Ask a running workflow's query handler; prints the answer as JSON."
    )
    add_run_args(query)
    query.add_argument("name", help="query name")
    add_json_args(query, "query arguments")
    query.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="give up when no worker answers within S seconds (default 30)",
    )

    for name, done, summary, why in (
        (
            "cancel",
            "requested cancellation of",
            "Ask a workflow to cancel (it sees CancelledError and may clean up).",
            "why, recorded in the history",
        ),
        (
            "terminate",
            "terminated",
            "Stop a workflow at once; none of its code runs any more.",
            "why, recorded in the history",
        ),
        (
            "pause",
            "paused",
            "Pause a workflow: none of its code runs until it is resumed; signals, timers "
            "and activity results that arrive meanwhile wait.",
            "why, shown by describe while it is paused",
        ),
        ("resume", "resumed", "Resume a paused workflow, with what arrived meanwhile.", None),
    ):
        sub = command(name, _acting(name, done), summary, json=False)
        add_run_args(sub)
        if why is not None:
            sub.add_argument("--reason", help=why)

    _add_resetting(command)

    result = command(
        "result", _result, "Wait for a workflow to finish and print its result as JSON."
    )
    add_run_args(result)
    result.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds")


def _add_resetting(command: AddCommand) -> None:
    reset = command(
        "reset",
        _reset,
        "Start a workflow again from a point of a run's history (default: just before the "
        "step that took in the failure of the activity or child that failed it, else its "
        "last workflow task); the run is terminated if open. Prints the new run id.",
    )
    add_run_args(reset)
    _add_point_args(reset)
    reset.add_argument("--reason", help="why, recorded in the closed run's history")

    fork = command(
        "fork",
        _fork,
        "Copy a run, from a point of its history, to a new workflow id; the original goes "
        "on untouched. Prints the new workflow id and run id.",
    )
    add_run_args(fork)
    _add_point_args(fork)
    fork.add_argument("--new-id", help="the copy's workflow id (default: derived from ID)")


def _add_point_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seq",
        type=int,
        metavar="N",
        help="the first event of a workflow task (see history; a wrong one lists the valid ones)",
    )
    parser.add_argument(
        "--request-id", help="the request's id: made again with it, it starts no second run"
    )


async def _reset(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        new = await _handle(client, args).reset(args.seq, args.reason, request_id=args.request_id)
        described = await new.describe()
    return _print_reset("reset", described, as_json=args.json)


async def _fork(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        new = await client.fork(
            args.id, args.seq, args.new_id, run_id=args.run_id, request_id=args.request_id
        )
        described = await new.describe()
    return _print_reset("forked", described, as_json=args.json)


def _print_reset(done: str, desc: WorkflowDescription, *, as_json: bool) -> int:
    assert desc.reset_from is not None  # (a run a reset or fork started)
    from_run, seq = desc.reset_from
    out = {
        "workflow_id": desc.workflow_id,
        "run_id": desc.run_id,
        "reset_from": {"run_id": from_run, "seq": seq},
    }
    if as_json:
        print_json(out)
    else:
        print(f"{done} run {from_run} at seq {seq}")
        print(f"workflow id: {desc.workflow_id}")
        print(f"run id:      {desc.run_id}")
    return 0


def _add_inspecting(command: AddCommand) -> None:
    describe = command(
        "describe",
        _describe,
        "Show a workflow's status, name, task queue, run, "
        "times, attributes, pending activities, failure and last error.",
    )
    add_run_args(describe)

    history = command(
        "history", _history, "Print a workflow's recorded history, one event per line."
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


def add_filter_args(parser: argparse.ArgumentParser, what: str) -> None:
    """The filters of client.list, as options."""
    parser.add_argument("--status", type=str.lower, help=f"only {what} with this status (any case)")
    parser.add_argument("--name", help=f"only {what} of this workflow name")
    parser.add_argument(
        "--attr",
        "--attribute",
        dest="attribute",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help=f"only {what} with this attribute value (repeatable)",
    )


def _add_batch(command: AddCommand) -> None:
    batch = command(
        "batch",
        _batch,
        "Cancel, terminate, signal, pause or resume every open workflow run matching the "
        "filters (that had started when the command began), or reset every run matching them "
        "that is its workflow's latest (closed ones too); prints how many it acted on.",
    )
    batch.add_argument("action", choices=BATCH_ACTIONS, help="what to do to each run")
    add_filter_args(batch, "runs")
    batch.add_argument(
        "--started-after",
        type=_aware_time,
        metavar="TIME",
        help="only runs started after this ISO 8601 time with its offset (2026-12-01T09:00Z)",
    )
    batch.add_argument("--reason", help="why (cancel, terminate, pause), recorded on each run")
    batch.add_argument("--signal", metavar="NAME", help="with action signal: the signal's name")
    batch.add_argument(
        "--signal-arg",
        dest="signal_args",
        action="append",
        default=[],
        type=json_value,
        metavar="JSON",
        help="with action signal: an argument of the signal, parsed as JSON (repeatable)",
    )
    batch.add_argument(
        "--request-id",
        help="the batch's request id (default: a new one, printed first): run an interrupted "
        "batch again with it, and no workflow gets its signal or cancel request twice",
    )


def _aware_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time with an offset, e.g. 2026-12-01T09:00:00+00:00"
        )
    return value


async def _batch(args: argparse.Namespace) -> int:
    request_id = args.request_id or str(uuid.uuid4())
    if not args.json:
        print(f"request id: {request_id}", file=sys.stderr, flush=True)
    async with connect(args) as client:
        count = await client.batch(
            args.action,
            status=args.status,
            workflow_name=args.name,
            attributes=dict(attribute(a) for a in args.attribute) or None,
            started_after=args.started_after,
            reason=args.reason,
            signal=args.signal,
            signal_args=args.signal_args,
            request_id=request_id,
        )
    if args.json:
        print_json({"action": args.action, "count": count, "request_id": request_id})
    else:
        print(f"{args.action}: {count} workflow run{'' if count == 1 else 's'} acted on")
    return 0


async def _start(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        handle = await client.start(args.name, *args.args, id=args.id, task_queue=args.task_queue)
        out: dict[str, Any] = {"workflow_id": handle.workflow_id, "run_id": handle.run_id}
        if args.wait:
            out["result"] = await handle.result(timeout=args.timeout)
    if args.json:
        print_json(out)
        return 0
    print(f"workflow id: {out['workflow_id']}")
    print(f"run id:      {out['run_id']}")
    if args.wait:
        print(f"result:      {dumps(out['result'])}")
    return 0


async def _signal(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        await _handle(client, args).signal(args.name, *args.args)
    print(f"sent signal {args.name!r} to {args.id}")
    return 0


async def _query(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        answer = await _handle(client, args).query(args.name, *args.args, timeout=args.timeout)
    print(dumps(answer, indent=2 if args.json else None))
    return 0


def _acting(action: str, done: str) -> Handler:
    """The handler of a command that calls ``handle.<action>`` (with ``--reason`` when the
    command has it) and prints ``done`` and the workflow id."""

    async def act(args: argparse.Namespace) -> int:
        options = {"reason": args.reason} if "reason" in args else {}
        async with connect(args) as client:
            await getattr(_handle(client, args), action)(**options)
        print(f"{done} {args.id}")
        return 0

    return act


async def _result(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        value = await _handle(client, args).result(timeout=args.timeout)
    print(dumps(value, indent=2 if args.json else None))
    return 0


async def _describe(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        desc = await _handle(client, args).describe()
    if args.json:
        print_json(desc)
    else:
        _print_description(desc)
    return 0


def _print_description(desc: WorkflowDescription) -> None:
    rows = [
        ("workflow id", desc.workflow_id),
        ("run id", desc.run_id),
        ("name", desc.workflow_name),
        ("status", _status_line(desc)),
        ("task queue", desc.task_queue),
        ("started", time(desc.started_at)),
        ("closed", time(desc.closed_at)),
        ("parent", desc.parent_workflow_id or "-"),
        ("reset from", _reset_from(desc)),
        ("next run", desc.next_run_id or "-"),
        ("build", desc.build_id or "-"),
        ("history", f"{desc.history_length} events"),
        ("attributes", dumps(desc.attributes) if desc.attributes else "-"),
        ("failure", desc.failure or "-"),
        ("last error", desc.last_error or "-"),
    ]
    for label, value in rows:
        print(f"{label + ':':<13}{value}")
    print(f"{'pending activities:':<13}{'' if desc.pending_activities else ' -'}")
    for p in desc.pending_activities:
        line = (
            f"  {p.activity_id} {p.activity_name} attempt={p.attempt} state={p.state} "
            f"scheduled={time(p.scheduled_at)}"
        )
        if p.next_attempt_at:
            line += f" next_attempt={time(p.next_attempt_at)}"
        if p.last_failure:
            line += f" last_failure={p.last_failure!r}"
        print(line)


def _reset_from(desc: WorkflowDescription) -> str:
    if desc.reset_from is None:
        return "-"
    run_id, seq = desc.reset_from
    return f"run {run_id} at seq {seq}"


def _status_line(desc: WorkflowDescription) -> str:
    if desc.paused_at is None:
        return desc.status
    why = f": {desc.pause_reason}" if desc.pause_reason else ""
    return f"paused since {time(desc.paused_at)}{why}"


async def _history(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        events = await _handle(client, args).history()
    if args.json:
        print_json([event_dict(e) for e in events])
    else:
        for event in events:
            print(_event_line(event))
    return 0


def event_dict(event: HistoryEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "type": event.type,
        "timestamp": event.timestamp,
        "fields": event.fields,
        "ends_step": event.ends_step,
    }


def _event_line(event: HistoryEvent) -> str:
    fields = " ".join(f"{key}={short(value)}" for key, value in event.fields.items())
    stamp = event.timestamp.isoformat(sep=" ", timespec="milliseconds")
    end = "|" if event.ends_step else " "  # the last event of a completed step
    return f"{event.seq:>4}{end} {stamp}  {event.type:<24}  {fields}".rstrip()


async def _list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    attributes = dict(attribute(a) for a in args.attribute) or None
    async with connect(args) as client:
        runs = collections.deque(
            [d async for d in client.list(args.status, args.name, attributes)], maxlen=args.limit
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
