"""`durable check`: workflow code read statically for what breaks determinism."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from .._check import check
from .common import AddCommand
from .loading import definitions, load
from .output import print_json


def add_commands(command: AddCommand) -> None:
    checking = command(
        "check",
        _check,
        "Read the workflow functions of a module (and the functions of its package they "
        "call) for calls that break determinism: the wall clock, random numbers, blocking "
        "sleeps, file and network I/O, threads, the environment, iteration over sets. Each "
        "is printed as file:line with the deterministic alternative; exit code 1 if any.",
        dsn=False,
    )
    checking.add_argument(
        "target",
        metavar="MODULE[:ATTR]",
        help="module with the workflow code (as for `durable worker`)",
    )


def _shown(path: str) -> str:
    """``path`` relative to the current folder when it is inside it (as compilers print)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


async def _check(args: argparse.Namespace) -> int:
    label, target = load(args.target)
    workflows, activities = definitions(label, target)
    findings = check([*workflows, *activities])
    if args.json:
        print_json([dataclasses.asdict(f) for f in findings])
    else:
        for finding in findings:
            print(dataclasses.replace(finding, path=_shown(finding.path)))
        print(
            f"{len(workflows)} workflow(s) of {label} read: "
            + (f"{len(findings)} finding(s)" if findings else "nothing breaks determinism")
        )
    return 1 if findings else 0
