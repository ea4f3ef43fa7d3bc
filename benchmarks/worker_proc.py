"""A benchmark worker process: ``python -m benchmarks.worker_proc DSN QUEUE [options]``.

Serves every benchmark workflow and activity on QUEUE until SIGTERM.
"""

from __future__ import annotations

import argparse
import logging

import durable

from .runtime import run
from .workflows import ACTIVITIES, WORKFLOWS


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker_proc")
    parser.add_argument("dsn")
    parser.add_argument("queue")
    parser.add_argument("--max-activities", type=int, default=100)
    parser.add_argument("--max-workflow-tasks", type=int, default=100)
    parser.add_argument("--max-cached", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=10)
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    client = await durable.Client.connect(args.dsn, max_connections=args.connections)
    try:
        worker = durable.Worker(
            client,
            task_queue=args.queue,
            workflows=WORKFLOWS,
            activities=ACTIVITIES,
            max_concurrent_activities=args.max_activities,
            max_concurrent_workflow_tasks=args.max_workflow_tasks,
            max_cached_workflows=args.max_cached,
        )
        await worker.run()
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="worker %(process)d: %(message)s")
    run(serve(parse(argv)))


if __name__ == "__main__":
    main()
