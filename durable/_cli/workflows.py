"""Talking to workflows: start, signal-with-start, signal, query, update, cancel, terminate,
pause, resume, reset, fork, result, and batch over a list filter; with the commands of
``inspecting`` (describe, history, list, count), each also as ``durable workflow COMMAND``."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

from .._client import WorkflowDescription
from .._store import BATCH_ACTIONS
from . import inspecting
from .common import (
    AddCommand,
    Handler,
    add_json_args,
    add_run_args,
    aware_time,
    connect,
    duration,
    json_value,
    run_handle,
)
from .inspecting import add_filter_args, filter_attributes
from .output import dumps, print_json


def add_commands(command: AddCommand) -> None:
    _add_talking(command)
    inspecting.add_commands(command)
    _add_batch(command)


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
    start.add_argument(
        "--debounce",
        type=duration,
        metavar="DURATION",
        help="with --id: begin the run this long after the last such start (e.g. 5s); a "
        "debounced start of an id whose debounced run has not begun replaces its arguments",
    )
    start.add_argument(
        "--debounce-max",
        type=duration,
        metavar="DURATION",
        help="with --debounce: begin it at the latest this long after the first (e.g. 1m)",
    )
    _add_priority(start)
    start.add_argument("--wait", action="store_true", help="wait for the result and print it")
    start.add_argument(
        "--timeout", type=float, help="with --wait: give up after S seconds", metavar="S"
    )

    with_start = command(
        "signal-with-start",
        _signal_with_start,
        "Signal a workflow, starting it first (with the workflow arguments) if it is not "
        "running; prints its workflow id and run id.",
    )
    with_start.add_argument("name", help="registered workflow name")
    add_json_args(with_start, "workflow arguments (used if it starts)")
    with_start.add_argument("--id", required=True, help="workflow id")
    with_start.add_argument("--signal", required=True, metavar="NAME", help="the signal's name")
    _add_signal_args(with_start, "an argument of the signal")
    with_start.add_argument("--task-queue", help="task queue, if it starts")
    _add_priority(with_start)
    _add_request_id(with_start)

    signal = command("signal", _signal, "Send a signal to a running workflow.")
    add_run_args(signal)
    signal.add_argument("name", help="signal name")
    add_json_args(signal, "signal arguments")
    _add_request_id(signal)

    update = command(
        "update",
        _update,
        "Run a running workflow's update handler and print its result as JSON.",
    )
    add_run_args(update)
    update.add_argument("name", help="update name")
    add_json_args(update, "update arguments")
    update.add_argument(
        "--timeout", type=float, metavar="S", help="give up waiting after S seconds"
    )
    _add_request_id(update)

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
        sub = command(name, _acting(name, done), summary)
        add_run_args(sub)
        if why is not None:
            sub.add_argument("--reason", help=why)
        _add_request_id(sub)

    _add_resetting(command)

    result = command(
        "result", _result, "Wait for a workflow to finish and print its result as JSON."
    )
    add_run_args(result)
    result.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds")


def _add_signal_args(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--signal-arg",
        dest="signal_args",
        action="append",
        default=[],
        type=json_value,
        metavar="JSON",
        help=f"{what}, parsed as JSON (repeatable; @PATH: from a file, @-: from stdin)",
    )


def _add_priority(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--priority",
        type=int,
        metavar="N",
        help="1 (highest) to 5 (lowest), default 3 (or the workflow's): its tasks, activities "
        "and children are claimed in priority order, then oldest first",
    )


def _add_request_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--request-id",
        help="the write's request id: sent again with the same one, it is applied once",
    )


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
        new = await run_handle(client, args).reset(
            args.seq, args.reason, request_id=args.request_id
        )
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
        type=aware_time,
        metavar="TIME",
        help="only runs started after this ISO 8601 time with its offset (2026-12-01T09:00Z)",
    )
    batch.add_argument("--reason", help="why (cancel, terminate, pause), recorded on each run")
    batch.add_argument("--signal", metavar="NAME", help="with action signal: the signal's name")
    _add_signal_args(batch, "with action signal: an argument of the signal")
    batch.add_argument(
        "--request-id",
        help="the batch's request id (default: a new one, printed first): run an interrupted "
        "batch again with it, and no workflow gets its signal or cancel request twice",
    )


async def _batch(args: argparse.Namespace) -> int:
    request_id = args.request_id or str(uuid.uuid4())
    if not args.json:
        print(f"request id: {request_id}", file=sys.stderr, flush=True)
    async with connect(args) as client:
        count = await client.batch(
            args.action,
            status=args.status,
            workflow_name=args.name,
            attributes=filter_attributes(args),
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
    async with connect(args, create_database=True) as client:
        handle = await client.start(
            args.name,
            *args.args,
            id=args.id,
            task_queue=args.task_queue,
            debounce=args.debounce,
            debounce_max=args.debounce_max,
            priority=args.priority,
        )
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


async def _signal_with_start(args: argparse.Namespace) -> int:
    async with connect(args, create_database=True) as client:
        handle = await client.signal_with_start(
            args.name,
            *args.args,
            id=args.id,
            signal=args.signal,
            signal_args=tuple(args.signal_args),
            task_queue=args.task_queue,
            request_id=args.request_id,
            priority=args.priority,
        )
    out = {"workflow_id": handle.workflow_id, "run_id": handle.run_id}
    if args.json:
        print_json(out)
    else:
        print(f"sent signal {args.signal!r} to {args.id} (run {handle.run_id})")
    return 0


async def _signal(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        await run_handle(client, args).signal(args.name, *args.args, request_id=args.request_id)
    _done(args, "signal", f"sent signal {args.name!r} to {args.id}")
    return 0


async def _update(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        result = await run_handle(client, args).update(
            args.name, *args.args, timeout=args.timeout, request_id=args.request_id
        )
    print(dumps(result, indent=2 if args.json else None))
    return 0


def _done(args: argparse.Namespace, action: str, text: str) -> None:
    if args.json:
        print_json({"workflow_id": args.id, "run_id": args.run_id, "action": action})
    else:
        print(text)


async def _query(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        answer = await run_handle(client, args).query(args.name, *args.args, timeout=args.timeout)
    print(dumps(answer, indent=2 if args.json else None))
    return 0


def _acting(action: str, done: str) -> Handler:
    """The handler of a command that calls ``handle.<action>`` (with ``--reason`` when the
    command has it) and prints ``done`` and the workflow id."""

    async def act(args: argparse.Namespace) -> int:
        options = {"reason": args.reason} if "reason" in args else {}
        async with connect(args) as client:
            act = getattr(run_handle(client, args), action)
            await act(**options, request_id=args.request_id)
        _done(args, action, f"{done} {args.id}")
        return 0

    return act


async def _result(args: argparse.Namespace) -> int:
    async with connect(args) as client:
        value = await run_handle(client, args).result(timeout=args.timeout)
    print(dumps(value, indent=2 if args.json else None))
    return 0
