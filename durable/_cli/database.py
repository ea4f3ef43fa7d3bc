"""`durable dev` (and `dev status`, `dev stop`) and `durable migrate`: the embedded database
and the schema."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
import sys

from .._client import redact_dsn
from .._embedded import (
    ENV_DSN,
    ENV_HOME,
    embedded_dsn,
    home_folder,
    running_server,
    stop_server,
)
from .._store import migrate
from .common import AddCommand, Handler, database_of
from .output import print_json

NOT_RUNNING = 3  # `durable dev status`, as `pg_ctl status`


def add_commands(command: AddCommand) -> None:
    dev = command(
        "dev",
        _dev,
        "Start (or reuse) the embedded Postgres, migrate it and print "
        f"its DSN. It keeps running in the background, shared by every process using "
        f"the same folder (${ENV_HOME}, else the nearest .durable/ in the current folder "
        "or a parent, else a new ./.durable/); `durable dev status` tells whether it runs, "
        "`durable dev stop` stops it.",
        dsn=False,
    )
    dev.add_argument(
        "--foreground",
        action="store_true",
        help="keep running until Ctrl-C instead of exiting at once",
    )
    actions = dev.add_subparsers(dest="action", metavar="[ACTION]")
    _add_dev_action(
        actions,
        "status",
        _status,
        "Show the embedded Postgres's folder, whether it is running and its DSN, without "
        f"starting it. Exit code 0 when it is running, {NOT_RUNNING} when it is not.",
    )
    _add_dev_action(
        actions,
        "stop",
        _stop,
        "Stop the embedded Postgres (a fast shutdown: open sessions are disconnected; the "
        "data is kept). Stopping one that is not running is not an error.",
    )
    command("migrate", _migrate, "Apply the database migrations that are not applied yet.")


def _add_dev_action(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Handler,
    summary: str,
) -> None:
    sub = actions.add_parser(name, help=summary, description=summary)
    sub.set_defaults(handler=handler)
    # SUPPRESS: else this default would override `durable dev --json status`
    sub.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print machine-readable JSON"
    )


async def _dev(args: argparse.Namespace) -> int:
    dsn = await asyncio.to_thread(embedded_dsn)
    applied = await _apply_migrations(dsn)
    if args.json:
        print_json({"dsn": dsn, "home": str(home_folder()), "migrations_applied": applied})
    else:
        print(f"embedded Postgres running in {home_folder()}")
        print(f"dsn: {dsn}")
        print(f"export {ENV_DSN}={shlex.quote(dsn)}")
    sys.stdout.flush()
    if args.foreground:
        print("running; press Ctrl-C to stop", file=sys.stderr)
        await _until_stopped()
    return 0


async def _status(args: argparse.Namespace) -> int:
    home = home_folder()
    server = await asyncio.to_thread(running_server, home)
    if args.json:
        print_json(
            {
                "home": str(home),
                "running": server is not None,
                "pid": server.pid if server else None,
                "dsn": server.dsn if server else None,
            }
        )
    elif server is None:
        print(f"embedded Postgres in {home}: not running")
    else:
        print(f"embedded Postgres in {home}: running (pid {server.pid})")
        print(f"dsn: {server.dsn}")
    return 0 if server is not None else NOT_RUNNING


async def _stop(args: argparse.Namespace) -> int:
    home = home_folder()
    was_running = await asyncio.to_thread(stop_server, home)
    if args.json:
        print_json({"home": str(home), "was_running": was_running})
    elif was_running:
        print(f"stopped the embedded Postgres in {home} (its data is kept)")
    else:
        print(f"the embedded Postgres in {home} was not running; nothing to stop")
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
    applied = await _apply_migrations(await database_of(args, create=True))
    if args.json:
        print_json({"applied": applied})
    elif applied:
        print("applied migrations: " + ", ".join(f"{v:04d}" for v in applied))
    else:
        print("schema up to date")
    return 0


async def _apply_migrations(dsn: str) -> list[int]:
    return await migrate(dsn, redact_dsn(dsn))
