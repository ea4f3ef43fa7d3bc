"""OpenTelemetry for durable: traces (``tracing``), metrics (``metrics``) and the
Prometheus and health endpoint of ``durable worker --metrics-port`` (``endpoint``).

durable uses the global tracer and meter providers unless a Client is given others, and
never sets a global provider itself.
"""

from __future__ import annotations

from opentelemetry import metrics, trace

from .metrics import Metrics, metrics_for
from .tracing import Carrier, Tracing, carrier, failed, ids_of_current, run_context, span_carrier

__all__ = [
    "Carrier",
    "Metrics",
    "Telemetry",
    "Tracing",
    "carrier",
    "failed",
    "ids_of_current",
    "run_context",
    "span_carrier",
]


class Telemetry:
    """The tracer and the instruments a client (and the workers built on it) report to."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.tracing = Tracing(tracer_provider)
        self.metrics = metrics_for(meter_provider)
