"""The ``durable`` command line: a dev database, migrations, workers, and talking to workflows.

Every command but `dev` takes ``--dsn`` (default: ``$DURABLE_DATABASE_URL``, else the embedded
database, which only the commands that write may create: see common.database_of); most take
``--json`` for machine-readable output. Each group of commands is a
module declaring its arguments beside its handlers: ``database`` (dev, migrate), ``worker``,
``workflows`` (start, signal-with-start, signal, query, update, cancel, terminate, pause,
resume, reset, fork, result, batch) with ``inspecting`` (describe, history, list, count),
all also grouped as ``durable workflow ...``; ``schedules`` (``durable schedule create ...
delete``); ``queues`` (``durable queue describe|configure``); ``retention`` (export,
purge), ``replay`` and ``check``; ``common``, ``loading`` and ``output`` are what they share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from .. import __version__
from .._embedded import ENV_DSN, ENV_HOME, ENV_LISTEN_DSN
from .._errors import DurableError
from . import check, database, doctor, queues, replay, retention, schedules, worker, workflows
from .common import AddCommand, Handler
from .output import to_jsonable

__all__ = ["build_parser", "main", "to_jsonable"]

ENV_CODECS = "DURABLE_CODECS"


def main(argv: list[str] | None = None) -> int:
    """Run the ``durable`` command line; returns the process exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help or a usage error
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return _run(args.handler(args), fast=args.command == "worker")
    except (DurableError, ValueError, TypeError) as exc:
        if getattr(args, "json", False):  # machine-readable, on stderr: stdout stays clean
            error = {"error": {"type": type(exc).__name__, "message": str(exc)}}
            print(json.dumps(error), file=sys.stderr)
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `durable list | head`: the reader has all it wanted
        _discard_stdout()
        return 0


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="durable", description="Durable workflows on Postgres: command line tools."
    )
    parser.add_argument("--version", action="version", version=f"durable {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    with_dsn = argparse.ArgumentParser(add_help=False)
    with_dsn.add_argument(
        "--dsn",
        default=None,
        help=f"Postgres DSN (default: ${ENV_DSN}, else the embedded database of ${ENV_HOME} "
        "or the nearest .durable/ folder)",
    )
    with_dsn.add_argument(
        "--listen-dsn",
        default=None,
        help=f"DSN of the connection that LISTENs for notifications (default: "
        f"${ENV_LISTEN_DSN}, else --dsn): behind a pooler in transaction mode, a direct "
        "connection or one through a session-mode pool",
    )
    with_dsn.add_argument(
        "--no-prepared-statements",
        dest="prepared_statements",
        action="store_false",
        help="do not keep prepared statements on connections: for a pooler in transaction "
        "mode that cannot keep them (PgBouncer < 1.21)",
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

    def adder(to: Any) -> AddCommand:
        def command(
            name: str, handler: Handler, summary: str, *, dsn: bool = True, json: bool = True
        ) -> argparse.ArgumentParser:
            parents = [p for p, wanted in ((with_dsn, dsn), (with_json, json)) if wanted]
            sub: argparse.ArgumentParser = to.add_parser(
                name, parents=parents, help=summary, description=summary
            )
            sub.set_defaults(handler=handler)
            return sub

        return command

    for group in (database, worker, workflows, retention, replay, check, doctor):
        group.add_commands(adder(commands))
    # the commands on workflows, also as "durable workflow COMMAND" (as in API.md)
    for name, group, help, description in (
        ("workflow", workflows, "the workflow commands (start ... list) as one group", None),
        (
            "schedule",
            schedules,
            "create, list, describe, pause, unpause, trigger, backfill, update, delete schedules",
            "Schedules: start a workflow at each slot of a cron or interval timetable.",
        ),
        (
            "queue",
            queues,
            "describe, configure task queues (their limits, backlog and workers)",
            "Task queues: the limits held across all their workers, and what they hold.",
        ),
    ):
        grouped = commands.add_parser(name, help=help, description=description)
        group.add_commands(
            adder(grouped.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND"))
        )
    return parser
