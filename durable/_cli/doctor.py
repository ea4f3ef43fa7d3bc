"""`durable doctor`: checks a database and the path to it (a pooler, prepared statements,
notifications, settings, schema, latency) and says what to fix."""

from __future__ import annotations

import argparse
import dataclasses

from .._embedded import resolve_listen_dsn
from .._store import diagnose
from .common import AddCommand, database_of
from .output import print_json

_MARK = {"ok": "ok     ", "warning": "WARNING", "problem": "PROBLEM"}


def add_commands(command: AddCommand) -> None:
    command(
        "doctor",
        _doctor,
        "Check the database and the path to it: whether a connection pooler sits in between "
        "(and in which mode), whether prepared statements survive it, whether notifications "
        "reach the LISTEN connection (--listen-dsn), whether durable's settings hold on the "
        "server connections, whether the schema is up to date, and the round trip and commit "
        "latency. Each problem says what to fix; exit code 1 when there is one.",
    )


async def _doctor(args: argparse.Namespace) -> int:
    dsn = await database_of(args, create=False)
    findings = await diagnose(dsn, resolve_listen_dsn(args.listen_dsn), args.prepared_statements)
    if args.json:
        print_json([dataclasses.asdict(f) for f in findings])
    else:
        for finding in findings:
            print(f"{_MARK[finding.status]}  {finding.check}: {finding.detail}")
            if finding.fix:
                print(f"         fix: {finding.fix}")
    return 1 if any(f.status == "problem" for f in findings) else 0
