"""What a worker reports: the spans of the steps it runs live, of the activities and
children they start, of each activity attempt and fired timer, and the metrics of API.md.

Nothing here runs for a replay, and spans are made only while a tracer provider that
records is set (the global one unless the Client was given one).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span

from .._activity import ActivityInfo
from .._clock import Clock
from .._events import Event, EventType
from .._replayer import WorkflowInstance
from .._telemetry import Telemetry, carrier, failed, run_context, span_carrier

E = EventType
_log = logging.getLogger("durable.worker")

_OUTCOMES = {
    E.WORKFLOW_COMPLETED: "completed",
    E.WORKFLOW_FAILED: "failed",
    E.WORKFLOW_CANCELLED: "cancelled",
    E.WORKFLOW_TIMED_OUT: "timed_out",
    E.WORKFLOW_CONTINUED_AS_NEW: "continued_as_new",
}
_PRODUCED = {E.ACTIVITY_SCHEDULED: "StartActivity", E.CHILD_SCHEDULED: "StartChildWorkflow"}


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class StepSpans:
    """The spans of one live step: its RunWorkflow span (current while it runs) and the
    StartActivity / StartChildWorkflow spans of what it schedules, ended once committed."""

    __slots__ = ("produced", "step")

    def __init__(self, step: Span | None) -> None:
        self.step = step
        self.produced: list[Span] = []


_UNOBSERVED_STEP = contextlib.nullcontext(StepSpans(None))
_UNOBSERVED_ATTEMPT: AbstractContextManager[Span | None] = contextlib.nullcontext(None)


class WorkerTelemetry:
    """The spans and metrics of one worker's task queue."""

    def __init__(
        self, telemetry: Telemetry, task_queue: str, build_id: str | None, clock: Clock
    ) -> None:
        self.clock = clock
        self.tracing = telemetry.tracing
        self.metrics = telemetry.metrics
        self.task_queue = task_queue
        self.build_id = build_id
        self._observed = False
        self._look_again_at = 0.0

    # ------------------------------------------------------------------ workflow steps
    def run_parent(self, instance: WorkflowInstance) -> otel_context.Context:
        """The context a run's spans descend from (see durable._telemetry.tracing), kept
        with the cached instance."""
        parent = instance.trace_parent
        if not isinstance(parent, otel_context.Context):
            parent = instance.trace_parent = run_context(
                instance.trace_carrier, instance.info.run_id
            )
        return parent

    def run_carrier(self, instance: WorkflowInstance) -> dict[str, str] | None:
        """The run's trace context to hand to the run it continues as."""
        return instance.trace_carrier or carrier(self.run_parent(instance))

    def _attributes(self, instance: WorkflowInstance) -> dict[str, Any]:
        info = instance.info
        attributes = {
            "durable.workflow_id": info.workflow_id,
            "durable.run_id": info.run_id,
            "durable.workflow_name": info.workflow_name,
            "durable.task_queue": self.task_queue,
        }
        if self.build_id is not None:
            attributes["durable.build_id"] = self.build_id
        return attributes

    @property
    def observed(self) -> bool:
        """Whether a provider records anything (else nothing here costs more than this).
        Until one does, the providers are looked at again at most once a second: a global
        provider the application sets later is seen within a second."""
        if self._observed:
            return True
        now = time.monotonic()
        if now >= self._look_again_at:
            self._look_again_at = now + 1.0
            self._observed = self.metrics.enabled or self.tracing.enabled
        return self._observed

    def step(self, instance: WorkflowInstance) -> AbstractContextManager[StepSpans]:
        """A live step of ``instance``, from its first line of workflow code to its commit."""
        return self._observed_step(instance) if self.observed else _UNOBSERVED_STEP

    @contextlib.contextmanager
    def _observed_step(self, instance: WorkflowInstance) -> Iterator[StepSpans]:
        began = time.perf_counter()
        spans = StepSpans(None)
        if not self.tracing.enabled:
            try:
                yield spans
            finally:
                self._step_took(instance, began)
            return
        name = instance.info.workflow_name
        spans.step = self.tracing.start(
            "RunWorkflow", name, self.run_parent(instance), self._attributes(instance)
        )
        try:
            with trace.use_span(spans.step, end_on_exit=True, record_exception=False):
                try:
                    yield spans
                except BaseException as exc:
                    failed(spans.step, exc)
                    raise
        finally:
            for produced in spans.produced:  # a step that failed to commit ends them too
                if produced.is_recording():
                    produced.end()
            self._step_took(instance, began)

    def _step_took(self, instance: WorkflowInstance, began: float) -> None:
        self.metrics.workflow_task_duration.record(
            time.perf_counter() - began, self._per_workflow(instance.info.workflow_name)
        )

    def _per_workflow(self, workflow_name: str) -> dict[str, str]:
        return self.metrics.attributes(self.task_queue, "workflow_name", workflow_name)

    def _count(self, counter: str, workflow_name: str) -> None:
        self.metrics.count(counter, self.task_queue, "workflow_name", workflow_name)

    def timers_fired(
        self,
        instance: WorkflowInstance,
        spans: StepSpans,
        incoming: Sequence[tuple[EventType, Mapping[str, Any]]],
        recorded: Event | None,
    ) -> None:
        """A ``Timer`` span for each fired timer the step delivers (among ``incoming``, or
        ``recorded`` by its claim), from when it was set to now; call before the step
        applies them."""
        if spans.step is None:
            return
        fired = [attrs["started"] for etype, attrs in incoming if etype is E.TIMER_FIRED]
        if recorded is not None:
            fired.append(recorded.attrs["started"])
        parent = self.run_parent(instance)
        for seq in fired:
            window = instance.timer_window(seq)
            if window is None:
                continue
            set_at, due = window
            span = self.tracing.start(
                "Timer",
                "",
                parent,
                {**self._attributes(instance), "durable.timer.fire_at": due},
                start_time=_ns(set_at),
            )
            span.end()

    def traces_for(
        self, instance: WorkflowInstance, events: Sequence[Event], spans: StepSpans
    ) -> dict[int, Mapping[str, str]]:
        """Start a StartActivity / StartChildWorkflow span for each activity or child the
        step schedules; their contexts by seq, to be recorded with them."""
        if spans.step is None:
            return {}
        traces: dict[int, Mapping[str, str]] = {}
        base = self._attributes(instance)
        for event in events:
            kind = _PRODUCED.get(event.type)
            if kind is None:
                continue
            attributes = {
                **base,
                "durable.activity_id": str(event.seq),
                "durable.args_bytes": len(event.attrs["args"]),
            }
            if kind == "StartActivity":
                attributes["durable.task_queue"] = event.attrs["task_queue"]
            else:
                attributes["durable.child_workflow_id"] = event.attrs["workflow_id"]
            span = self.tracing.start(kind, event.attrs["name"], None, attributes)
            spans.produced.append(span)
            written = span_carrier(span)
            if written:
                traces[event.seq] = written
        return traces

    def committed(self, instance: WorkflowInstance, events: Sequence[Event]) -> None:
        """Count what the committed step began or ended (and log a failure)."""
        if not events:
            return
        info = instance.info
        if events[-1].type is E.WORKFLOW_FAILED:
            message = (events[-1].attrs.get("failure") or {}).get("message", "")
            _log.warning(
                "workflow %s (%s) failed: %s",
                info.workflow_id,
                info.workflow_name,
                message,
                extra={"workflow_id": info.workflow_id, "run_id": info.run_id},
            )
        if not (self.observed and self.metrics.enabled):
            return
        if events[0].seq == 2:  # the run's first step
            self._count("durable.workflows.started", info.workflow_name)
        closing = events[-1] if events[-1].type in _OUTCOMES else None
        if closing is None:
            return
        self._count(f"durable.workflows.{_OUTCOMES[closing.type]}", info.workflow_name)
        self.metrics.end_to_end.record(
            (self.clock.now() - info.started_at).total_seconds(),
            self._per_workflow(info.workflow_name),
        )

    def nondeterminism(self, workflow_name: str) -> None:
        self._count("durable.nondeterminism_errors", workflow_name)

    # ------------------------------------------------------------------ activities
    def attempt(
        self,
        info: ActivityInfo,
        workflow_name: str,
        parent: Mapping[str, str] | None,
        due: datetime | None = None,
        args: bytes | None = None,
    ) -> AbstractContextManager[Span | None]:
        """One attempt of an activity of a run of ``workflow_name``, its span (RunActivity
        under the StartActivity span whose context ``parent`` is, or RunLocalActivity in its
        run's trace) current while the function runs; counted, and timed from ``due`` (None:
        it started at once)."""
        if not self.observed:
            return _UNOBSERVED_ATTEMPT
        return self._observed_attempt(info, workflow_name, parent, due, args)

    @contextlib.contextmanager
    def _observed_attempt(
        self,
        info: ActivityInfo,
        workflow_name: str,
        parent: Mapping[str, str] | None,
        due: datetime | None,
        args: bytes | None,
    ) -> Iterator[Span | None]:
        attributes = self.metrics.attributes(self.task_queue, "activity_name", info.activity_name)
        self.metrics.count(
            "durable.activities.attempts", self.task_queue, "activity_name", info.activity_name
        )
        if not info.is_local:
            waited = (self.clock.now() - due).total_seconds() if due else 0.0
            self.metrics.schedule_to_start.record(max(0.0, waited), attributes)
        began = time.perf_counter()
        try:
            if not self.tracing.enabled:
                yield None
                return
            span = self.tracing.start(
                "RunLocalActivity" if info.is_local else "RunActivity",
                info.activity_name,
                run_context(parent, info.run_id),
                {
                    "durable.workflow_id": info.workflow_id,
                    "durable.run_id": info.run_id,
                    "durable.workflow_name": workflow_name,
                    "durable.activity_id": info.activity_id,
                    "durable.task_queue": info.task_queue,
                    "durable.attempt": info.attempt,
                    **({} if args is None else {"durable.args_bytes": len(args)}),
                },
            )
            with trace.use_span(span, end_on_exit=True, record_exception=False):
                yield span
        finally:
            self.metrics.activity_duration.record(time.perf_counter() - began, attributes)

    def attempt_failed(
        self, info: ActivityInfo, span: Span | None, message: str, retry_at: datetime | None
    ) -> None:
        """An attempt failed: counted, on its span, and logged once."""
        self.metrics.count(
            "durable.activities.failed", self.task_queue, "activity_name", info.activity_name
        )
        if span is not None and span.is_recording():
            span.set_status(trace.Status(trace.StatusCode.ERROR, message))
        then = f"next attempt at {retry_at.isoformat()}" if retry_at else "not retried"
        _log.warning(
            "activity %s (attempt %d) of workflow %s failed: %s; %s",
            info.activity_name,
            info.attempt,
            info.workflow_id,
            message,
            then,
            extra={
                "workflow_id": info.workflow_id,
                "run_id": info.run_id,
                "activity_id": info.activity_id,
                "attempt": info.attempt,
            },
        )
