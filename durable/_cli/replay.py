"""`durable replay`: recorded histories against the current code."""

from __future__ import annotations

import argparse
import collections
import dataclasses
from typing import Any

from .._client import Client, WorkflowDescription
from .._definitions import WorkflowDefinition
from .._errors import NondeterminismError
from .._replayer import WorkflowInstance
from .common import AddCommand, connect
from .loading import definitions, load
from .output import print_json


def add_commands(command: AddCommand) -> None:
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
    label, target = load(args.target)
    workflows = {w.name: w for w in definitions(label, target)[0]}
    if not workflows:
        raise ValueError(f"{label} defines no @durable.workflow")
    async with connect(args) as client:
        runs = await _runs_to_replay(client, args, workflows)
        outcomes = [await _replay_one(client, workflows, d) for d in runs]
    if args.json:
        print_json([{**dataclasses.asdict(o), "ok": o.ok} for o in outcomes])
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
        instance = WorkflowInstance.replayed(
            workflows[d.workflow_name], d.workflow_id, d.run_id, history
        )
        instance.discard()
    except NondeterminismError as exc:
        outcome.status, outcome.error = "NONDETERMINISM", str(exc)
    except Exception as exc:
        outcome.status, outcome.error = "ERROR", f"{type(exc).__name__}: {exc}"
    return outcome
