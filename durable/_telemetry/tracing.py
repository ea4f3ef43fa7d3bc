"""Traces: the span names and kinds of API.md, and how a run's trace context travels.

A run carries the trace context current when it was started (W3C ``traceparent``, written
by the global propagator) in its WORKFLOW_STARTED event; every span a worker makes for it
descends from that context, on any worker, after any crash. A run started with no context
gets one made from its run id, and hands it on to the runs it continues as, so that a
workflow is one trace whatever happens to it. Spans are made for live steps only: the
replay of a recorded history makes none.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

Carrier = dict[str, str]  # a trace context as the propagator writes it: {"traceparent": ...}

# span kinds by span name prefix (OTel conventions for messaging and RPC)
KINDS = {
    "StartWorkflow": SpanKind.PRODUCER,
    "SignalWorkflow": SpanKind.PRODUCER,
    "QueryWorkflow": SpanKind.CLIENT,
    "UpdateWorkflow": SpanKind.CLIENT,
    "RunWorkflow": SpanKind.CONSUMER,
    "StartActivity": SpanKind.PRODUCER,
    "RunActivity": SpanKind.CONSUMER,
    "RunLocalActivity": SpanKind.INTERNAL,
    "StartChildWorkflow": SpanKind.PRODUCER,
    "Timer": SpanKind.INTERNAL,
}
_RUN_TRACES = uuid.UUID("0b6f8f5e-2f4c-4d8e-9a51-6a3d9b1c7e20")  # namespace of made-up contexts


class Tracing:
    """Makes durable's spans with one tracer (the global provider's unless given one)."""

    def __init__(self, provider: trace.TracerProvider | None = None) -> None:
        self._provider = provider
        self._enabled = False
        if provider is None:  # a proxy: follows a provider the application sets later
            self.tracer = trace.get_tracer("durable")
        else:
            self.tracer = provider.get_tracer("durable")

    @property
    def enabled(self) -> bool:
        """Whether spans would be recorded: a provider is set that is not the API's no-op
        (checked each time: the application may set the global one after connecting)."""
        if not self._enabled:  # (a provider, once set, is never unset)
            provider = self._provider or trace.get_tracer_provider()
            self._enabled = not isinstance(
                provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider
            )
        return self._enabled

    def start(
        self,
        kind: str,
        name: str,
        parent: otel_context.Context | None,
        attributes: Mapping[str, Any],
        start_time: int | None = None,
    ) -> Span:
        """A span ``<kind>:<name>`` of the kind API.md gives it, under ``parent`` (the
        current context when None)."""
        return self.tracer.start_span(
            f"{kind}:{name}" if name else kind,
            context=parent,
            kind=KINDS[kind],
            attributes=attributes,
            start_time=start_time,
        )

    @contextlib.contextmanager
    def current(
        self,
        kind: str,
        name: str,
        attributes: Mapping[str, Any],
        parent: otel_context.Context | None = None,
    ) -> Iterator[Span]:
        """A span that is current inside the block and records what the block raised."""
        span = self.start(kind, name, parent, attributes)
        with trace.use_span(span, end_on_exit=True, record_exception=False):
            try:
                yield span
            except BaseException as exc:
                failed(span, exc)
                raise


def failed(span: Span, exc: BaseException) -> None:
    """Mark ``span`` as failed by ``exc``: error status and an exception event."""
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def carrier(context: otel_context.Context | None = None) -> Carrier | None:
    """The trace context of ``context`` (default: the current one) to record, or None when
    it holds no valid span."""
    if not trace.get_current_span(context).get_span_context().is_valid:
        return None
    written: Carrier = {}
    propagate.inject(written, context=context)
    return written or None


def span_carrier(span: Span) -> Carrier | None:
    """The trace context that makes ``span`` the parent."""
    return carrier(trace.set_span_in_context(span))


def run_context(recorded: Mapping[str, str] | None, run_id: str) -> otel_context.Context:
    """The parent of a run's spans: the context recorded with its start, else one made
    from its run id (a trace of its own, the same on every worker)."""
    if recorded:
        return propagate.extract(recorded)
    made = uuid.UUID(run_id).int, uuid.uuid5(_RUN_TRACES, run_id).int & (2**64 - 1)
    parent = SpanContext(
        trace_id=made[0] or 1,
        span_id=made[1] or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


def ids_of_current() -> dict[str, str]:
    """``trace_id`` and ``span_id`` of the current span (hex, as backends show them), for
    log records; empty when there is none."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}
