"""Metrics: the instruments of API.md, made once per meter provider.

Counts are kept here and read by observable counters when a reader collects (a count costs
an addition under a lock, not an SDK measurement: every step adds a few); histograms are
recorded where things happen, with attribute sets made once per task queue and name; the
gauges read what the workers of this process hold. The backlog gauge reports the count
each worker last read with one indexed query per lease renewal (about a second), since
collection runs outside the event loop that could query.
"""

from __future__ import annotations

import collections
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

Attributes = Mapping[str, str]
# what a worker reports to the gauges: (gauge, value, attributes) triples
GaugeReading = tuple[str, int, Attributes]
# a count's key: (counter, task queue, the attribute naming what is counted, its value)
_CountKey = tuple[str, str, str, str]

WORKFLOW_OUTCOMES = (
    "started",
    "completed",
    "failed",
    "cancelled",
    "terminated",
    "timed_out",
    "continued_as_new",
)
COUNTERS = {
    **{
        f"durable.workflows.{outcome}": ("{workflow}", f"runs {outcome}")
        for outcome in WORKFLOW_OUTCOMES
    },
    "durable.activities.attempts": ("{attempt}", "activity attempts begun"),
    "durable.activities.failed": ("{attempt}", "activity attempts failed"),
    "durable.nondeterminism_errors": (
        "{error}",
        "workflow tasks whose code no longer matched the run's history",
    ),
}
# histogram buckets (the SDK's default ones, 0-10,000, suit milliseconds, not seconds): from
# a step's ~1 ms to a day-long workflow, and a group commit's 1 to 64 steps
SECONDS_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
GAUGES = {
    "durable.task_queue.backlog": "due workflow and activity tasks no worker has claimed yet",
    "durable.worker.cached_workflows": "runs a worker holds in its sticky cache",
    "durable.worker.slots_used": "workflow-task and activity slots in use",
}


class Metrics:
    """durable's instruments on one meter."""

    def __init__(self, provider: metrics.MeterProvider | None) -> None:
        self._provider = provider
        self._enabled = False
        meter = metrics.get_meter("durable") if provider is None else provider.get_meter("durable")
        self._lock = threading.Lock()
        self._counts: collections.Counter[_CountKey] = collections.Counter()
        self._attribute_sets: dict[tuple[str, str, str], dict[str, str]] = {}
        self._sources: weakref.WeakSet[Any] = weakref.WeakSet()
        for name, (unit, description) in COUNTERS.items():
            meter.create_observable_counter(
                name, callbacks=[self._counted(name)], unit=unit, description=description
            )
        self.workflow_task_duration = _seconds(
            meter, "durable.workflow_task.duration", "one live step and its commit"
        )
        self.schedule_to_start = _seconds(
            meter,
            "durable.activity.schedule_to_start",
            "from an attempt's becoming due to its start",
        )
        self.activity_duration = _seconds(
            meter, "durable.activity.duration", "one attempt of an activity"
        )
        self.end_to_end = _seconds(
            meter, "durable.workflow.end_to_end", "from a run's start to its close"
        )
        self.schedule_lateness = _seconds(
            meter,
            "durable.schedule.fire_lateness",
            "from a schedule's slot (plus its jitter) to the start of its run",
        )
        self.commit_batch_size = meter.create_histogram(
            "durable.commit.batch_size",
            unit="{step}",
            description="steps written per commit",
            explicit_bucket_boundaries_advisory=BATCH_BUCKETS,
        )
        for name, description in GAUGES.items():
            meter.create_observable_gauge(
                name, callbacks=[self._gauge(name)], unit="{task}", description=description
            )

    @property
    def enabled(self) -> bool:
        """Whether a meter provider that records is set (the global one may come later)."""
        if not self._enabled:  # (a provider, once set, is never unset)
            provider = self._provider or metrics.get_meter_provider()
            # (the API's stand-in until one is set has no public name)
            self._enabled = not isinstance(provider, metrics.NoOpMeterProvider) and (
                type(provider).__name__ != "_ProxyMeterProvider"
            )
        return self._enabled

    def attributes(self, task_queue: str, key: str, value: str) -> dict[str, str]:
        """The attribute set ``{"task_queue": ..., key: value}``, made once."""
        found = self._attribute_sets.get((task_queue, key, value))
        if found is None:
            found = self._attribute_sets[(task_queue, key, value)] = {
                "task_queue": task_queue,
                key: value,
            }
        return found

    def count(self, counter: str, task_queue: str, key: str, value: str) -> None:
        """Add one to ``counter`` for ``{"task_queue": task_queue, key: value}``."""
        with self._lock:
            self._counts[(counter, task_queue, key, value)] += 1

    def report_from(self, source: Any) -> None:
        """Have the gauges read ``source.gauge_readings()`` (a worker) while it lives."""
        with self._lock:
            self._sources.add(source)

    def stop_reporting(self, source: Any) -> None:
        with self._lock:
            self._sources.discard(source)

    def _counted(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                counts = [(key, n) for key, n in self._counts.items() if key[0] == name]
            return [
                Observation(n, self.attributes(queue, key, value))
                for (_, queue, key, value), n in counts
            ]

        return observe

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


def _seconds(meter: metrics.Meter, name: str, description: str) -> metrics.Histogram:
    return meter.create_histogram(
        name,
        unit="s",
        description=description,
        explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
    )


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
