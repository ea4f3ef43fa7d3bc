"""`durable dev` and `durable migrate`: the embedded database and the schema."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
import sys

from .._client import redact_dsn
from .._embedded import ENV_DSN, ENV_HOME, embedded_dsn, home_folder, resolve_dsn
from .._store import migrate
from .common import AddCommand
from .output import print_json


def add_commands(command: AddCommand) -> None:
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
        print_json({"applied": applied})
    elif applied:
        print("applied migrations: " + ", ".join(f"{v:04d}" for v in applied))
    else:
        print("schema up to date")
    return 0


async def _apply_migrations(dsn: str) -> list[int]:
    return await migrate(dsn, redact_dsn(dsn))
