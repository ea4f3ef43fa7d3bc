"""Metrics: the instruments of API.md, made once per meter provider.

Counters and histograms are recorded where things happen (a step committed, an attempt
ended); the gauges read what the workers of this process hold when a reader collects them.
The backlog gauge reports the count each worker last read with one indexed query per lease
renewal (about a second), since collection runs outside the event loop that could query.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

Attributes = Mapping[str, str]
# what a worker reports to the gauges: (gauge, value, attributes) triples
GaugeReading = tuple[str, int, Attributes]

WORKFLOW_OUTCOMES = (
    "started",
    "completed",
    "failed",
    "cancelled",
    "terminated",
    "timed_out",
    "continued_as_new",
)
GAUGES = {
    "durable.task_queue.backlog": "due workflow and activity tasks no worker has claimed yet",
    "durable.worker.cached_workflows": "runs a worker holds in its sticky cache",
    "durable.worker.slots_used": "workflow-task and activity slots in use",
}


class Metrics:
    """durable's instruments on one meter."""

    def __init__(self, provider: metrics.MeterProvider | None) -> None:
        self._provider = provider
        meter = metrics.get_meter("durable") if provider is None else provider.get_meter("durable")
        self.workflows = {
            outcome: meter.create_counter(
                f"durable.workflows.{outcome}", unit="{workflow}", description=f"runs {outcome}"
            )
            for outcome in WORKFLOW_OUTCOMES
        }
        self.activity_attempts = meter.create_counter(
            "durable.activities.attempts", unit="{attempt}", description="activity attempts begun"
        )
        self.activities_failed = meter.create_counter(
            "durable.activities.failed", unit="{attempt}", description="activity attempts failed"
        )
        self.nondeterminism_errors = meter.create_counter(
            "durable.nondeterminism_errors",
            unit="{error}",
            description="workflow tasks whose code no longer matched the run's history",
        )
        seconds = "s"
        self.workflow_task_duration = meter.create_histogram(
            "durable.workflow_task.duration",
            unit=seconds,
            description="one live step and its commit",
        )
        self.schedule_to_start = meter.create_histogram(
            "durable.activity.schedule_to_start",
            unit=seconds,
            description="from an attempt's becoming due to its start",
        )
        self.activity_duration = meter.create_histogram(
            "durable.activity.duration", unit=seconds, description="one attempt of an activity"
        )
        self.end_to_end = meter.create_histogram(
            "durable.workflow.end_to_end",
            unit=seconds,
            description="from a run's start to its close",
        )
        self.commit_batch_size = meter.create_histogram(
            "durable.commit.batch_size", unit="{step}", description="steps written per commit"
        )
        self._sources: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        for name, description in GAUGES.items():
            meter.create_observable_gauge(
                name, callbacks=[self._gauge(name)], unit="{task}", description=description
            )

    @property
    def enabled(self) -> bool:
        """Whether a meter provider that records is set (the global one may come later)."""
        provider = self._provider or metrics.get_meter_provider()
        # (the API's stand-in until one is set has no public name)
        return not isinstance(provider, metrics.NoOpMeterProvider) and (
            type(provider).__name__ != "_ProxyMeterProvider"
        )

    def report_from(self, source: Any) -> None:
        """Have the gauges read ``source.gauge_readings()`` (a worker) while it lives."""
        with self._lock:
            self._sources.add(source)

    def stop_reporting(self, source: Any) -> None:
        with self._lock:
            self._sources.discard(source)

    def _gauge(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                sources = list(self._sources)
            return [
                Observation(value, dict(attributes))
                for source in sources
                for gauge, value, attributes in source.gauge_readings()
                if gauge == name
            ]

        return observe


_by_provider: dict[int, tuple[Any, Metrics]] = {}
_made = threading.Lock()


def metrics_for(provider: metrics.MeterProvider | None) -> Metrics:
    """The instruments on ``provider`` (None: the global one), made once: a meter refuses a
    second instrument of the same name."""
    with _made:
        key = id(provider)
        found = _by_provider.get(key)
        if found is None or found[0] is not provider:
            found = _by_provider[key] = (provider, Metrics(provider))
        return found[1]
