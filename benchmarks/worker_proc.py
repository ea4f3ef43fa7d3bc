"""A benchmark worker process: ``python -m benchmarks.worker_proc DSN QUEUE [options]``.

Serves every benchmark workflow and activity on QUEUE until SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import durable

from .runtime import client_options, run
from .workflows import ACTIVITIES, WORKFLOWS


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker_proc")
    parser.add_argument("dsn")
    parser.add_argument("queue")
    parser.add_argument("--max-activities", type=int, default=100)
    parser.add_argument("--max-workflow-tasks", type=int, default=100)
    parser.add_argument("--max-cached", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument(
        "--telemetry", type=int, default=0, help="OpenTelemetry SDK: 0 off, 1 metrics, 2 both"
    )
    parser.add_argument("--build-id", default=None, help="the worker's build (none: unversioned)")
    return parser.parse_args(argv)


class _Dropped(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _DroppedMetrics(MetricExporter):
    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def telemetry_providers(level: int) -> dict[str, Any]:
    """SDK providers as an application would set them up (1: a meter provider, 2: and a
    tracer provider), with exporters that drop what they get: what metrics and tracing
    cost the worker, without a collector's."""
    providers: dict[str, Any] = {}
    if level >= 1:
        reader = PeriodicExportingMetricReader(_DroppedMetrics(), export_interval_millis=1000)
        providers["meter_provider"] = MeterProvider([reader])
    if level >= 2:
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(BatchSpanProcessor(_Dropped()))
        providers["tracer_provider"] = tracer_provider
    return providers


async def serve(args: argparse.Namespace) -> None:
    providers = telemetry_providers(args.telemetry)
    target, options = client_options(args.dsn)
    client = await durable.Client.connect(
        target, max_connections=args.connections, **options, **providers
    )
    try:
        worker = durable.Worker(
            client,
            task_queue=args.queue,
            workflows=WORKFLOWS,
            activities=ACTIVITIES,
            max_concurrent_activities=args.max_activities,
            max_concurrent_workflow_tasks=args.max_workflow_tasks,
            max_cached_workflows=args.max_cached,
            build_id=args.build_id,
        )
        await worker.run()
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="worker %(process)d: %(message)s")
    run(serve(parse(argv)))


if __name__ == "__main__":
    main()
